//! The emulated AWS resources are declared as the deployment declares them, and behave as the
//! sync relies on: FIFO order per group, deduplication, DLQ redrive, TTL on the tasks table.

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use tastysync_local::provision::{self, MAX_RECEIVE_COUNT, QUEUE_VISIBILITY_SECONDS};
use tastysync_shared::wiring::Function;
use tastysync_tests::TestAws;

async fn send(aws: &TestAws, group: &str, dedup: &str, body: &str) {
    aws.sqs()
        .send_message()
        .queue_url(&aws.stack.queue_url)
        .message_group_id(group)
        .message_deduplication_id(dedup)
        .message_body(body)
        .send()
        .await
        .unwrap();
}

/// Receives at most one message, making it visible again at once when `visibility` is 0.
async fn receive(aws: &TestAws, queue_url: &str, visibility: i32) -> Option<(String, String)> {
    aws.sqs()
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(1)
        .visibility_timeout(visibility)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default()
        .into_iter()
        .next()
        .map(|m| {
            (
                m.body.unwrap_or_default(),
                m.receipt_handle.unwrap_or_default(),
            )
        })
}

#[tokio::test]
async fn sync_queue_is_fifo_with_a_redrive_to_a_fifo_dlq() {
    let aws = TestAws::provisioned().await;

    let attributes = aws
        .sqs()
        .get_queue_attributes()
        .queue_url(&aws.stack.queue_url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();

    assert_eq!(attributes[&QueueAttributeName::FifoQueue], "true");
    assert_eq!(
        attributes[&QueueAttributeName::VisibilityTimeout],
        QUEUE_VISIBILITY_SECONDS.to_string()
    );
    let redrive: serde_json::Value =
        serde_json::from_str(&attributes[&QueueAttributeName::RedrivePolicy]).unwrap();
    assert_eq!(redrive["deadLetterTargetArn"], aws.stack.dlq_arn.as_str());
    assert_eq!(
        redrive["maxReceiveCount"].to_string(),
        MAX_RECEIVE_COUNT.to_string()
    );
    assert!(
        aws.stack.dlq_arn.ends_with(".fifo"),
        "a FIFO queue's DLQ must be FIFO"
    );
}

#[tokio::test]
async fn a_message_received_max_receive_count_times_moves_to_the_dlq() {
    let aws = TestAws::provisioned().await;
    send(&aws, "account-1", "poison-1", "poison").await;

    for attempt in 1..=MAX_RECEIVE_COUNT {
        let got = receive(&aws, &aws.stack.queue_url, 0).await;
        assert_eq!(
            got.map(|m| m.0).as_deref(),
            Some("poison"),
            "delivery {attempt}"
        );
    }

    assert_eq!(receive(&aws, &aws.stack.queue_url, 0).await, None);
    let dead = receive(&aws, &aws.stack.dlq_url, 30).await;
    assert_eq!(dead.map(|m| m.0).as_deref(), Some("poison"));
}

#[tokio::test]
async fn a_group_is_delivered_in_order_and_held_while_a_message_is_in_flight() {
    let aws = TestAws::provisioned().await;
    send(&aws, "account-1", "a-1", "first").await;
    send(&aws, "account-1", "a-2", "second").await;

    let (body, receipt) = receive(&aws, &aws.stack.queue_url, 30).await.unwrap();
    assert_eq!(body, "first");
    assert_eq!(
        receive(&aws, &aws.stack.queue_url, 30).await,
        None,
        "group held while in flight"
    );

    aws.sqs()
        .delete_message()
        .queue_url(&aws.stack.queue_url)
        .receipt_handle(receipt)
        .send()
        .await
        .unwrap();
    assert_eq!(
        receive(&aws, &aws.stack.queue_url, 30)
            .await
            .map(|m| m.0)
            .as_deref(),
        Some("second")
    );
}

#[tokio::test]
async fn a_repeated_deduplication_id_is_dropped() {
    let aws = TestAws::provisioned().await;
    send(&aws, "account-1", "task-1", "once").await;
    send(&aws, "account-1", "task-1", "twice").await;

    let (body, receipt) = receive(&aws, &aws.stack.queue_url, 30).await.unwrap();
    aws.sqs()
        .delete_message()
        .queue_url(&aws.stack.queue_url)
        .receipt_handle(receipt)
        .send()
        .await
        .unwrap();

    assert_eq!(body, "once");
    assert_eq!(receive(&aws, &aws.stack.queue_url, 30).await, None);
}

#[tokio::test]
async fn tasks_table_expires_items_on_expires_at_and_indexes_tasks_by_account() {
    let aws = TestAws::provisioned().await;

    let ttl = aws
        .dynamodb()
        .describe_time_to_live()
        .table_name(&aws.stack.table)
        .send()
        .await
        .unwrap()
        .time_to_live_description
        .unwrap();
    assert_eq!(ttl.attribute_name(), Some(provision::TTL_ATTRIBUTE));
    assert_eq!(
        ttl.time_to_live_status().map(|s| s.as_str()),
        Some("ENABLED")
    );

    let table = aws
        .dynamodb()
        .describe_table()
        .table_name(&aws.stack.table)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let indexes: Vec<_> = table
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name())
        .collect();
    assert_eq!(indexes, [provision::ACCOUNT_TASKS_INDEX]);
    assert_eq!(
        table.key_schema()[0].attribute_name(),
        provision::PARTITION_KEY
    );
}

#[tokio::test]
async fn provisioning_again_changes_nothing() {
    let aws = TestAws::provisioned().await;

    let again = provision::provision(&aws.sdk, &aws.names, &serde_json::json!({}))
        .await
        .unwrap();

    assert_eq!(again.queue_url, aws.stack.queue_url);
    assert_eq!(again.dlq_arn, aws.stack.dlq_arn);
    assert_eq!(again.kms_key_arn, aws.stack.kms_key_arn);
    assert_eq!(
        again.oauth_client_secret_arn,
        aws.stack.oauth_client_secret_arn
    );
    assert_eq!(
        again.state_signing_secret_arn,
        aws.stack.state_signing_secret_arn
    );
}

async fn database_secret(aws: &TestAws, name: &str, value: &str) -> String {
    aws_sdk_secretsmanager::Client::new(&aws.sdk)
        .create_secret()
        // Named after the stack's table, which is unique to this test.
        .name(format!("{}-{name}", aws.names.table))
        .secret_string(value)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap()
}

fn secret_source(arn: &str) -> tastysync_shared::config::DatabaseConfig {
    tastysync_shared::config::DatabaseConfig::from_env(&tastysync_shared::config::Env::from_pairs(
        [
            ("DATABASE_SECRET_ARN", arn),
            ("DATABASE_HOST", "proxy.example"),
        ],
    ))
    .unwrap()
}

#[tokio::test]
async fn the_database_password_comes_from_its_secret_and_a_malformed_secret_is_named_not_shown() {
    let aws = TestAws::provisioned().await;
    let good = database_secret(
        &aws,
        "db-good",
        r#"{"username": "tastysync", "password": "pw-1"}"#,
    )
    .await;
    let bad = database_secret(
        &aws,
        "db-bad",
        r#"{"user": "tastysync", "pass": "hunter2"}"#,
    )
    .await;

    let pool = tastysync_shared::db::pool(&secret_source(&good), &aws.sdk).await;
    let refused = tastysync_shared::db::pool(&secret_source(&bad), &aws.sdk)
        .await
        .unwrap_err();

    let pool = pool.unwrap();
    assert_eq!(
        pool.status().max_size,
        tastysync_shared::config::DatabaseConfig::DEFAULT_MAX_CONNECTIONS
    );
    assert!(matches!(
        refused,
        tastysync_shared::db::DbError::Credentials(_)
    ));
    let chain = format!("{refused} {:?}", std::error::Error::source(&refused));
    assert!(!chain.contains("hunter2"), "{chain}");
}

#[tokio::test]
async fn a_function_configured_with_the_master_secret_is_refused_before_reading_it() {
    let aws = TestAws::provisioned().await;
    let secret = database_secret(
        &aws,
        "db",
        r#"{"username": "tastysync", "password": "pw-1"}"#,
    )
    .await;
    let mut config = secret_source(&secret);
    config.user = Function::SyncWorker.database_user();

    let refused = tastysync_shared::db::pool(&config, &aws.sdk_of(Function::SyncWorker))
        .await
        .unwrap_err();

    assert!(
        matches!(refused, tastysync_shared::db::DbError::Misconfigured(_)),
        "{refused}"
    );
}
