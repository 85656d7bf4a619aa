//! Wires the pool, the task table and the queue once per cold start and serves the schedule's
//! events.

// The tick's future nests the SDK's deeply; the default limit is too tight for its layout.
#![recursion_limit = "256"]

use lambda_runtime::{Error, LambdaEvent};
use tastysync_shared::config::Env;
use tastysync_shared::wiring::Function;
use tastysync_shared::wiring::SyncScheduler;
use tastysync_shared::{aws, metrics, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let env = Env::process();
    let deps = SyncScheduler::from_env(
        &env,
        &aws::sdk_config_for(&env, Function::SyncScheduler).await,
    )
    .await?;
    let recorder = metrics::init("sync-scheduler", &env)?;
    let deps = &deps;
    metrics::run_lambda(
        recorder,
        move |event: LambdaEvent<serde_json::Value>| async move {
            let report = sync_scheduler::handle(deps, event.payload).await?;
            Ok::<_, Error>(serde_json::json!({ "queued": report.map_or(0, |r| r.queued) }))
        },
    )
    .await
}
