//! Wires the sync dependencies once per cold start and serves SQS batches: from Lambda's event
//! source mapping when deployed, or by polling the queue itself elsewhere (see
//! [`sync_worker::local::Poller::from_env`]).

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent};
use sync_worker::local::Poller;
use tastysync_shared::config::Env;
use tastysync_shared::wiring::Function;
use tastysync_shared::wiring::SyncWorker;
use tastysync_shared::{aws, metrics, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let env = Env::process();
    let sdk = aws::sdk_config_for(&env, Function::SyncWorker).await;
    let deps = SyncWorker::from_env(&env, &sdk).await?;
    let recorder = metrics::init("sync-worker", &env)?;
    if !telemetry::in_lambda() {
        let (poller, exit_when_idle) = Poller::from_env(&env, &sdk)?;
        poller.run(&deps, exit_when_idle, Some(recorder)).await?;
        return Ok(());
    }
    let deps = &deps;
    metrics::run_lambda(recorder, move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = invocation_deadline(event.context.deadline);
        Ok::<_, Error>(sync_worker::handle(deps, event.payload, deadline).await)
    })
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
