//! Wires the pool, the task table and the queue once per cold start and serves API Gateway
//! events.

use lambda_http::{Error, Request, service_fn};
use tastysync_shared::config::Env;
use tastysync_shared::wiring::Function;
use tastysync_shared::wiring::SyncTrigger;
use tastysync_shared::{aws, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let env = Env::process();
    let deps = SyncTrigger::from_env(
        &env,
        &aws::sdk_config_for(&env, Function::SyncTrigger).await,
    )
    .await?;
    let deps = &deps;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(sync_trigger::handle(deps, request).await)
    }))
    .await
}
