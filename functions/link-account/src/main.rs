//! Wires the link dependencies once per cold start and serves API Gateway events.

use lambda_http::{Error, Request, service_fn};
use tastysync_shared::config::Env;
use tastysync_shared::wiring::Function;
use tastysync_shared::wiring::LinkAccount;
use tastysync_shared::{aws, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let env = Env::process();
    let sdk = aws::sdk_config_for(&env, Function::LinkAccount).await;
    let deps = LinkAccount::from_env(&env, &sdk).await?;
    let deps = &deps;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(link_account::handle(deps, request).await)
    }))
    .await
}
