//! Wires the pool, the task table and the queue once per cold start and serves the schedule's
//! events.

// The tick's future nests the SDK's deeply; the default limit is too tight for its layout.
#![recursion_limit = "256"]

use lambda_runtime::{Error, LambdaEvent, service_fn};
use tastysync_shared::config::Env;
use tastysync_shared::schedule::SchedulerDeps;
use tastysync_shared::{aws, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let deps = SchedulerDeps::from_env(&Env::process(), &aws::sdk_config().await)?;
    let deps = &deps;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let report = sync_scheduler::handle(deps, event.payload).await?;
            Ok::<_, Error>(serde_json::json!({ "queued": report.map_or(0, |r| r.queued) }))
        },
    ))
    .await
}
