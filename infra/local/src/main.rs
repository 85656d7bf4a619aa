//! `tastysync-local provision <prefix> [client_id client_secret]`: creates the stack's AWS
//! resources on the emulator named by `AWS_ENDPOINT_URL` and prints the env lines that point the
//! functions at them.
//!
//! `tastysync-local openapi`: prints the HTTP API's OpenAPI document (`make openapi` commits it).

use std::process::ExitCode;

use tastysync_local::provision::{Names, provision};
use tastysync_shared::aws;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("openapi") {
        print!("{}", tastysync_shared::api::openapi_json());
        return ExitCode::SUCCESS;
    }
    let [command, prefix, rest @ ..] = args.as_slice() else {
        eprintln!("usage: tastysync-local provision <prefix> [client_id client_secret] | openapi");
        return ExitCode::from(2);
    };
    if command != "provision" {
        eprintln!("unknown command {command:?}; known: provision, openapi");
        return ExitCode::from(2);
    }
    let oauth_client = match rest {
        [id, secret] => serde_json::json!({ "client_id": id, "client_secret": secret }),
        _ => {
            serde_json::json!({ "client_id": "tastysync-local", "client_secret": "local-client-secret" })
        }
    };
    let sdk = aws::sdk_config().await;
    match provision(&sdk, &Names::with_prefix(prefix), &oauth_client).await {
        Ok(stack) => {
            for line in stack.env_lines() {
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
