//! `migrate`: wires the pool and runs [`migrate::handle`], either as a Lambda (the deploy's
//! custom resource) or as a command (the local stack and the tests), so both paths apply the
//! same embedded migrations.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use tastysync_shared::config::Env;
use tastysync_shared::wiring::Function;
use tastysync_shared::{aws, db, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let env = Env::process();
    let pool = db::pool_from_env(&env, &aws::sdk_config_for(&env, Function::Migrate).await).await?;

    if telemetry::in_lambda() {
        let http = tastysync_shared::tls::http().build()?;
        let (pool, http) = (&pool, &http);
        lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
            migrate::handle(pool, http, event.payload)
                .await
                .map_err(Error::from)
        }))
        .await
    } else {
        let outcome = migrate::run(&pool).await?;
        println!("{}", serde_json::to_string(&outcome)?);
        Ok(())
    }
}
