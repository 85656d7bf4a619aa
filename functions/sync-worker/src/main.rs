//! Wires the sync dependencies once per cold start and serves SQS batches: from Lambda's event
//! source mapping when deployed, or by polling the queue itself elsewhere (`SYNC_QUEUE_URL`,
//! `SYNC_QUEUE_ARN`; `SYNC_VISIBILITY_SECONDS` overrides the queue's visibility timeout;
//! `SYNC_EXIT_WHEN_IDLE=N` exits after N seconds without a message).

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use tastysync_shared::config::{DatabaseConfig, Env};
use tastysync_shared::secrets::{KmsEnvelope, OAuthClient};
use tastysync_shared::sync::{SyncDeps, SyncSettings};
use tastysync_shared::tasks::{DynamoTasks, SqsQueue};
use tastysync_shared::tastytrade::{BrokerConfig, TastytradeClient};
use tastysync_shared::{aws, db, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let env = Env::process();
    let sdk = aws::sdk_config().await;
    let oauth_client = match env.optional("OAUTH_CLIENT_SECRET_ARN") {
        Some(arn) => {
            Some(OAuthClient::load(&aws_sdk_secretsmanager::Client::new(&sdk), arn).await?)
        }
        None => None,
    };
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue_url = env.required("SYNC_QUEUE_URL")?.to_owned();
    let deps = SyncDeps {
        pool: db::pool(&DatabaseConfig::from_env(&env)?)?,
        broker: TastytradeClient::new(BrokerConfig::from_env(&env)?)?,
        cipher: KmsEnvelope::new(
            aws_sdk_kms::Client::new(&sdk),
            env.required("TOKEN_KMS_KEY_ID")?,
        ),
        tasks: DynamoTasks::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            env.required("TASKS_TABLE")?,
        ),
        queue: SqsQueue::new(sqs.clone(), &queue_url),
        oauth_client,
        settings: SyncSettings::default(),
    };
    if !telemetry::in_lambda() {
        let poller = sync_worker::local::Poller {
            sqs,
            queue_url,
            queue_arn: env
                .optional("SYNC_QUEUE_ARN")
                .unwrap_or_default()
                .to_owned(),
            visibility: env
                .optional("SYNC_VISIBILITY_SECONDS")
                .and_then(|s| s.parse().ok())
                .map(std::time::Duration::from_secs),
            invocation_timeout: std::time::Duration::from_secs(
                env.parsed_or("SYNC_INVOCATION_SECONDS", 120u64)?,
            ),
        };
        let idle = env
            .optional("SYNC_EXIT_WHEN_IDLE")
            .and_then(|s| s.parse().ok())
            .map(std::time::Duration::from_secs);
        poller.run(&deps, idle).await?;
        return Ok(());
    }
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = invocation_deadline(event.context.deadline);
        Ok::<_, Error>(sync_worker::handle(deps, event.payload, deadline).await)
    }))
    .await
}

/// Lambda gives the deadline as epoch milliseconds; the sync wants an `Instant`.
fn invocation_deadline(epoch_ms: u64) -> Option<std::time::Instant> {
    let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).ok()?;
    Some(
        std::time::Instant::now()
            + std::time::Duration::from_millis(epoch_ms.saturating_sub(now_ms)),
    )
}
