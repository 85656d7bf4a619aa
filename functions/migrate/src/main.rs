//! `migrate`: wires the pool and runs [`handler`] once, either as a Lambda (on deploy) or as a
//! command (the local stack and the tests), so both paths apply the same embedded migrations.

mod handler;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use tastysync_shared::config::{DatabaseConfig, Env};
use tastysync_shared::{db, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = DatabaseConfig::from_env(&Env::process())?;
    let pool = db::pool(&config)?;

    if telemetry::in_lambda() {
        let pool = &pool;
        lambda_runtime::run(service_fn(move |_event: LambdaEvent<Value>| async move {
            handler::run(pool).await.map_err(Error::from)
        }))
        .await
    } else {
        let outcome = handler::run(&pool).await?;
        println!("{}", serde_json::to_string(&outcome)?);
        Ok(())
    }
}
