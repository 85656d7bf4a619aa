//! The local stack's commands. Each reads the stack's addresses from the environment
//! (`.local/<stack>/env`, which `stack.sh up` writes).
//!
//! - `tastysync-local provision <prefix> [client_id client_secret]`: creates the stack's IAM
//!   identities (an admin, and one per function with its policy from `template.yaml`) and AWS
//!   resources on the emulator named by `AWS_ENDPOINT_URL`, turns the emulator's IAM
//!   enforcement on, and prints the env lines that point the functions at them.
//! - `tastysync-local gateway [host:port]`: serves the HTTP API, the worker and the schedule
//!   clock (see `gateway`) until interrupted, and prints curl examples with a dev JWT.
//! - `tastysync-local demo`: `make demo`'s end-to-end run (see `demo`).
//! - `tastysync-local jwt [sub]`: prints a dev JWT for the gateway.
//! - `tastysync-local openapi`: prints the HTTP API's OpenAPI document (`make openapi`).

use std::process::ExitCode;
use std::time::Duration;

use tastysync_local::provision::{Names, provision};
use tastysync_local::{demo, gateway, identity};
use tastysync_shared::config::Env;
use tastysync_shared::{aws, telemetry};

const USAGE: &str = "usage: tastysync-local provision <prefix> [client_id client_secret] | gateway [host:port] | demo | jwt [sub] | openapi";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["openapi"] => {
            print!("{}", tastysync_shared::api::openapi_json());
            ExitCode::SUCCESS
        }
        ["jwt", rest @ ..] => {
            let sub = rest.first().copied().unwrap_or("dev-user");
            println!(
                "{}",
                gateway::dev_token(&Env::process(), sub, Duration::from_secs(12 * 3600))
            );
            ExitCode::SUCCESS
        }
        ["provision", prefix, rest @ ..] => provision_command(prefix, rest).await,
        ["gateway", rest @ ..] => {
            telemetry::init();
            let addr = rest.first().copied().unwrap_or("127.0.0.1:8787");
            gateway_command(addr).await
        }
        ["demo"] => {
            // The demo prints its own story; the functions' logs would drown it.
            if std::env::var_os("RUST_LOG").is_some() {
                telemetry::init();
            }
            let sdk = aws::sdk_config().await;
            match demo::run(Env::process(), &sdk).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("\ndemo failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

async fn provision_command(prefix: &str, rest: &[&str]) -> ExitCode {
    let oauth_client = match rest {
        [id, secret] => serde_json::json!({ "client_id": id, "client_secret": secret }),
        _ => {
            serde_json::json!({ "client_id": "tastysync-local", "client_secret": "local-client-secret" })
        }
    };
    let sdk = aws::sdk_config().await;
    match provision_stack(&sdk, prefix, &oauth_client).await {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("provisioning failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// With IAM enforcement off: the stack's identities, then its resources (as its admin); then
/// enforcement on, so that from here on every call needs its identity's policy.
async fn provision_stack(
    sdk: &aws::SdkConfig,
    prefix: &str,
    oauth_client: &serde_json::Value,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let endpoint = Env::process().required("AWS_ENDPOINT_URL")?.to_owned();
    identity::enforce(&endpoint, false).await?;
    let (admin, mut lines) = identity::provision(sdk, prefix).await?;
    let stack = provision(&admin.sdk(sdk), &Names::with_prefix(prefix), oauth_client).await?;
    identity::enforce(&endpoint, true).await?;
    lines.extend(stack.env_lines());
    // Later lines win when the env file is sourced: the stack's tools and tests act as admin.
    lines.push(format!("AWS_ACCESS_KEY_ID={}", admin.key_id));
    lines.push(format!("AWS_SECRET_ACCESS_KEY={}", admin.secret));
    Ok(lines)
}

async fn gateway_command(addr: &str) -> ExitCode {
    let Ok(addr) = addr.parse() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let env = Env::process();
    let sdk = aws::sdk_config().await;
    let running = match gateway::start(&env, &sdk, addr).await {
        Ok(running) => running,
        Err(e) => {
            eprintln!("the gateway could not start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let token = gateway::dev_token(&env, "dev-user", Duration::from_secs(12 * 3600));
    let api = format!("{}/api/v1", running.url);
    println!("local API on {api} (worker polling the queue; Ctrl-C stops)\n");
    println!("export TOKEN={token}   # a dev JWT for user dev-user, 12 h");
    println!("curl -s -H \"Authorization: Bearer $TOKEN\" {api}/tastytrade-accounts");
    println!(
        "curl -s -H \"Authorization: Bearer $TOKEN\" -H 'content-type: application/json' \\\n  -d '{{\"environment\":\"sandbox\",\"refresh_token\":\"...\",\"client_secret\":\"...\"}}' {api}/tastytrade-accounts/link"
    );
    println!(
        "curl -s -X POST -H \"Authorization: Bearer $TOKEN\" {api}/sync/tastytrade/ACCOUNT_ID/trigger"
    );
    println!("curl -s -H \"Authorization: Bearer $TOKEN\" {api}/sync/status/TASK_ID");
    println!("curl -s -H \"Authorization: Bearer $TOKEN\" {api}/tastytrade-accounts/ACCOUNT_ID");
    println!(
        "curl -s -H \"Authorization: Bearer $TOKEN\" '{api}/tastytrade-accounts/ACCOUNT_ID/transactions?limit=100'"
    );
    println!(
        "curl -s -H \"Authorization: Bearer $TOKEN\" '{api}/tastytrade-accounts/ACCOUNT_ID/orders?status=Filled'"
    );
    println!(
        "curl -s -H \"Authorization: Bearer $TOKEN\" '{api}/tastytrade-accounts/ACCOUNT_ID/balance-history?points=100'"
    );
    println!(
        "curl -s -H \"Authorization: Bearer $TOKEN\" {api}/tastytrade-accounts/ACCOUNT_ID/positions"
    );
    println!(
        "curl -s -H \"Authorization: Bearer $TOKEN\" {api}/tastytrade-accounts/ACCOUNT_ID/balances"
    );
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
