//! AWS resources of one stack, created idempotently.
//!
//! The settings below are the deployment's: keep them in step with `template.yaml`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use tastysync_shared::aws::SdkConfig;

/// glibc allocator settings every function runs with (the template's Globals set the same):
/// a fixed mmap threshold, so a page's multi-MiB buffers (a response body, its rows' JSON, the
/// statement's parameters) are mapped and unmapped whole instead of fragmenting the heap, as
/// glibc's default sliding threshold lets them once the first is freed. The worker's peak RSS
/// in the bench's 100k full sync: 66.4–73.7 MiB without it, 57.1–63.6 MiB with it (three
/// runs each, the same rows/s).
pub const ALLOCATOR_ENV: [(&str, &str); 1] = [("MALLOC_MMAP_THRESHOLD_", "262144")];

/// Deliveries of one sync message before SQS moves it to the DLQ.
pub const MAX_RECEIVE_COUNT: u32 = 5;
/// The sync worker's Lambda timeout.
pub const WORKER_TIMEOUT_SECONDS: u32 = 120;
/// AWS asks for at least six times the consumer's timeout, so a message whose worker is still
/// retrying inside one invocation is not handed to a second one.
pub const QUEUE_VISIBILITY_SECONDS: u32 = 6 * WORKER_TIMEOUT_SECONDS;
/// Fourteen days, the SQS maximum: a DLQ message must outlive a long weekend's investigation.
pub const DLQ_RETENTION_SECONDS: u32 = 14 * 24 * 3600;
/// Attribute DynamoDB's TTL reads (epoch seconds). TTL only cleans up: leases and cooldowns
/// compare their own expiry in their condition expressions.
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// The table's partition key: `TASK#<id>`, `LEASE#ACCOUNT#<id>`, `COOLDOWN#ACCOUNT#<id>`.
pub const PARTITION_KEY: &str = "pk";
pub use tastysync_shared::adapters::dynamo::{
    ACCOUNT_TASKS_INDEX, ACCOUNT_TASKS_PK, ACCOUNT_TASKS_SK,
};

/// Names of one stack's resources; the prefix keeps stacks (and tests) apart on one emulator.
#[derive(Debug, Clone)]
pub struct Names {
    pub queue: String,
    pub dlq: String,
    pub table: String,
    pub kms_alias: String,
    pub oauth_client_secret: String,
    pub state_signing_secret: String,
    pub event_bus: String,
}

impl Names {
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            queue: format!("{prefix}sync.fifo"),
            dlq: format!("{prefix}sync-dlq.fifo"),
            table: format!("{prefix}tasks"),
            kms_alias: format!("alias/{prefix}tokens"),
            oauth_client_secret: format!("{prefix}tastytrade-oauth-client"),
            state_signing_secret: format!("{prefix}link-state-signing-key"),
            event_bus: format!("{prefix}events"),
        }
    }
}

/// What the functions need to find the resources: written to the stack's env file.
#[derive(Debug, Clone)]
pub struct Stack {
    pub queue_url: String,
    pub queue_arn: String,
    pub dlq_url: String,
    pub dlq_arn: String,
    pub table: String,
    pub kms_key_id: String,
    pub kms_key_arn: String,
    pub oauth_client_secret_arn: String,
    pub state_signing_secret_arn: String,
    pub event_bus: String,
    pub event_bus_arn: String,
}

impl Stack {
    /// `NAME=value` lines for the functions' environment.
    pub fn env_lines(&self) -> Vec<String> {
        [
            ("SYNC_QUEUE_URL", &self.queue_url),
            ("SYNC_DLQ_URL", &self.dlq_url),
            ("TASKS_TABLE", &self.table),
            ("TOKEN_KMS_KEY_ID", &self.kms_key_arn),
            ("OAUTH_CLIENT_SECRET_ARN", &self.oauth_client_secret_arn),
            ("STATE_SIGNING_SECRET_ARN", &self.state_signing_secret_arn),
            ("EVENT_BUS_NAME", &self.event_bus),
        ]
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .chain(ALLOCATOR_ENV.iter().map(|(k, v)| format!("{k}={v}")))
        .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{resource}: {source}")]
    Aws {
        resource: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{0}: the emulator's answer lacked a field it always sends")]
    Incomplete(&'static str),
}

fn aws_err<E>(resource: &'static str) -> impl FnOnce(E) -> ProvisionError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| ProvisionError::Aws {
        resource,
        source: Box::new(e),
    }
}

/// Creates what is missing and returns where everything is. Running it twice changes nothing.
///
/// `oauth_client` is the deployment's tastytrade OAuth client (`client_id`, `client_secret`),
/// stored as the deployment stores it; a new stack gets a fresh random state-signing key.
pub async fn provision(
    sdk: &SdkConfig,
    names: &Names,
    oauth_client: &serde_json::Value,
) -> Result<Stack, ProvisionError> {
    let (queue_url, queue_arn, dlq_url, dlq_arn) = queues(sdk, names).await?;
    let table = tasks_table(sdk, names).await?;
    let (kms_key_id, kms_key_arn) = kms_key(sdk, names).await?;
    let secrets = aws_sdk_secretsmanager::Client::new(sdk);
    let oauth_client_secret_arn = secret(
        &secrets,
        &names.oauth_client_secret,
        &oauth_client.to_string(),
    )
    .await?;
    let signing_key = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let state_signing_secret_arn =
        secret(&secrets, &names.state_signing_secret, &signing_key).await?;
    let event_bus_arn = event_bus(sdk, &names.event_bus).await?;
    Ok(Stack {
        queue_url,
        queue_arn,
        dlq_url,
        dlq_arn,
        table,
        kms_key_id,
        kms_key_arn,
        oauth_client_secret_arn,
        state_signing_secret_arn,
        event_bus: names.event_bus.clone(),
        event_bus_arn,
    })
}

async fn queues(
    sdk: &SdkConfig,
    names: &Names,
) -> Result<(String, String, String, String), ProvisionError> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let fifo = |extra: Vec<(QueueAttributeName, String)>| {
        let mut attributes = HashMap::from([
            (QueueAttributeName::FifoQueue, "true".to_owned()),
            // Every message carries its own deduplication id (task id + cursor): content-based
            // deduplication would drop a legitimate continuation that repeats a body.
            (
                QueueAttributeName::ContentBasedDeduplication,
                "false".to_owned(),
            ),
        ]);
        attributes.extend(extra);
        attributes
    };

    let dlq_url = sqs
        .create_queue()
        .queue_name(&names.dlq)
        .set_attributes(Some(fifo(vec![(
            QueueAttributeName::MessageRetentionPeriod,
            DLQ_RETENTION_SECONDS.to_string(),
        )])))
        .send()
        .await
        .map_err(aws_err("sync DLQ"))?
        .queue_url
        .ok_or(ProvisionError::Incomplete("sync DLQ"))?;
    let dlq_arn = queue_arn(&sqs, &dlq_url).await?;

    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": MAX_RECEIVE_COUNT,
    });
    let queue_url = sqs
        .create_queue()
        .queue_name(&names.queue)
        .set_attributes(Some(fifo(vec![
            (
                QueueAttributeName::VisibilityTimeout,
                QUEUE_VISIBILITY_SECONDS.to_string(),
            ),
            (QueueAttributeName::RedrivePolicy, redrive.to_string()),
        ])))
        .send()
        .await
        .map_err(aws_err("sync queue"))?
        .queue_url
        .ok_or(ProvisionError::Incomplete("sync queue"))?;
    let queue_arn = queue_arn(&sqs, &queue_url).await?;
    Ok((queue_url, queue_arn, dlq_url, dlq_arn))
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, ProvisionError> {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(aws_err("queue attributes"))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or(ProvisionError::Incomplete("queue attributes"))
}

async fn tasks_table(sdk: &SdkConfig, names: &Names) -> Result<String, ProvisionError> {
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let exists = ddb
        .describe_table()
        .table_name(&names.table)
        .send()
        .await
        .is_ok();
    if !exists {
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
        };
        let account_tasks = GlobalSecondaryIndex::builder()
            .index_name(ACCOUNT_TASKS_INDEX)
            .key_schema(key(ACCOUNT_TASKS_PK, KeyType::Hash).map_err(aws_err("index key"))?)
            .key_schema(key(ACCOUNT_TASKS_SK, KeyType::Range).map_err(aws_err("index key"))?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(aws_err("account-tasks index"))?;
        ddb.create_table()
            .table_name(&names.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute(PARTITION_KEY).map_err(aws_err("table attribute"))?)
            .attribute_definitions(attribute(ACCOUNT_TASKS_PK).map_err(aws_err("table attribute"))?)
            .attribute_definitions(attribute(ACCOUNT_TASKS_SK).map_err(aws_err("table attribute"))?)
            .key_schema(key(PARTITION_KEY, KeyType::Hash).map_err(aws_err("table key"))?)
            .global_secondary_indexes(account_tasks)
            .send()
            .await
            .map_err(aws_err("tasks table"))?;
    }
    ddb.update_time_to_live()
        .table_name(&names.table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(TTL_ATTRIBUTE)
                .build()
                .map_err(aws_err("tasks table TTL"))?,
        )
        .send()
        .await
        .map_err(aws_err("tasks table TTL"))?;
    Ok(names.table.clone())
}

async fn kms_key(sdk: &SdkConfig, names: &Names) -> Result<(String, String), ProvisionError> {
    let kms = aws_sdk_kms::Client::new(sdk);
    if let Ok(found) = kms.describe_key().key_id(&names.kms_alias).send().await
        && let Some(meta) = found.key_metadata
    {
        return Ok((
            meta.key_id,
            meta.arn.ok_or(ProvisionError::Incomplete("KMS key"))?,
        ));
    }
    let meta = kms
        .create_key()
        .description("tastysync: envelope encryption of tastytrade tokens")
        .send()
        .await
        .map_err(aws_err("KMS key"))?
        .key_metadata
        .ok_or(ProvisionError::Incomplete("KMS key"))?;
    kms.create_alias()
        .alias_name(&names.kms_alias)
        .target_key_id(&meta.key_id)
        .send()
        .await
        .map_err(aws_err("KMS alias"))?;
    Ok((
        meta.key_id,
        meta.arn.ok_or(ProvisionError::Incomplete("KMS key"))?,
    ))
}

/// Creates the secret with `value` if it is missing; an existing secret keeps its value, as a
/// rotated secret would.
async fn secret(
    client: &aws_sdk_secretsmanager::Client,
    name: &str,
    value: &str,
) -> Result<String, ProvisionError> {
    if let Ok(found) = client.describe_secret().secret_id(name).send().await {
        return found.arn.ok_or(ProvisionError::Incomplete("secret"));
    }
    client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .map_err(aws_err("secret"))?
        .arn
        .ok_or(ProvisionError::Incomplete("secret"))
}

/// The stack's event bus (template: `EventBus`); its ARN.
async fn event_bus(sdk: &SdkConfig, name: &str) -> Result<String, ProvisionError> {
    let events = aws_sdk_eventbridge::Client::new(sdk);
    if let Ok(found) = events.describe_event_bus().name(name).send().await {
        return found
            .arn
            .ok_or(ProvisionError::Incomplete("DescribeEventBus"));
    }
    events
        .create_event_bus()
        .name(name)
        .send()
        .await
        .map_err(aws_err("event bus"))?
        .event_bus_arn
        .ok_or(ProvisionError::Incomplete("CreateEventBus"))
}
