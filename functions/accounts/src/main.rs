//! Wires the pool once per cold start and serves API Gateway events.

use lambda_http::{Error, Request, service_fn};
use tastysync_shared::config::{DatabaseConfig, Env};
use tastysync_shared::routes::accounts::{AccountsDeps, unlink_policy};
use tastysync_shared::{db, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let env = Env::process();
    let deps = AccountsDeps {
        pool: db::pool(&DatabaseConfig::from_env(&env)?)?,
        unlink_data: unlink_policy(&env)?,
    };
    let deps = &deps;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(accounts::handle(deps, request).await)
    }))
    .await
}
