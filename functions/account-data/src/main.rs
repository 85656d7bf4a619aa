//! Wires the pool once per cold start and serves API Gateway events.

use lambda_http::{Error, Request, service_fn};
use tastysync_shared::config::Env;
use tastysync_shared::wiring::{AccountData, Function};
use tastysync_shared::{aws, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let env = Env::process();
    let deps = AccountData::from_env(
        &env,
        &aws::sdk_config_for(&env, Function::AccountData).await,
    )
    .await?;
    let deps = &deps;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(account_data::handle(deps, request).await)
    }))
    .await
}
