//! Wires the streamer's dependencies once per cold start and serves the schedule's events: one
//! shard per invocation, for as long as the invocation may run (or, outside Lambda, in a loop
//! of invocations: see [`account_streamer::run_locally`]).

use lambda_runtime::{Error, LambdaEvent};
use tastysync_shared::config::Env;
use tastysync_shared::wiring::{AccountStreamer, Function};
use tastysync_shared::{aws, metrics, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let env = Env::process();
    let sdk = aws::sdk_config_for(&env, Function::AccountStreamer).await;
    let deps = AccountStreamer::from_env(&env, &sdk).await?;
    let recorder = metrics::init("account-streamer", &env)?;
    // One invocation stores notifications for up to fifteen minutes, more than the recorder
    // buffers between flushes (100 values per histogram): flush as it goes, not only at the
    // end as the runtime layer does.
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(10));
        loop {
            every.tick().await;
            if let Err(e) = recorder.flush(std::io::stdout().lock()) {
                tracing::warn!(error = %e, "metrics not flushed");
            }
        }
    });
    if !telemetry::in_lambda() {
        return account_streamer::run_locally(&deps, &env).await;
    }
    let deps = &deps;
    metrics::run_lambda(
        recorder,
        move |event: LambdaEvent<serde_json::Value>| async move {
            let deadline = invocation_deadline(event.context.deadline);
            account_streamer::handle(deps, event.payload, deadline).await
        },
    )
    .await
}

/// Lambda gives the deadline as epoch milliseconds; the streamer wants an `Instant`.
fn invocation_deadline(epoch_ms: u64) -> std::time::Instant {
    let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(epoch_ms);
    std::time::Instant::now() + std::time::Duration::from_millis(epoch_ms.saturating_sub(now_ms))
}
