//! Wires the link dependencies once per cold start and serves API Gateway events.

use lambda_http::{Error, Request, service_fn};
use tastysync_shared::config::Env;
use tastysync_shared::routes::link::LinkDeps;
use tastysync_shared::{aws, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let sdk = aws::sdk_config().await;
    let deps = LinkDeps::from_env(&Env::process(), &sdk).await?;
    let deps = &deps;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(link_account::handle(deps, request).await)
    }))
    .await
}
