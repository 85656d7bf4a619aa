//! Schemathesis (PyPI, in the stack's virtualenv) against the OpenAPI document, through the
//! local gateway as a signed-in user who owns an account: bounded in examples per operation
//! and in time, it must find no 5xx and no response that contradicts the document.

use std::time::Duration;

use tastysync_local::gateway;
use tastysync_shared::api::BASE_PATH;

use crate::link::{Served, served_account};

/// Examples per operation: enough to cover each parameter's edge cases, few enough for CI.
const EXAMPLES: &str = "40";

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_response_that_breaks_the_document() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let st = root.join(".venv/bin/st");
    assert!(
        st.exists(),
        "{} is missing: `make test` installs it",
        st.display()
    );
    // The world stays alive (simulator, database, stack) while the fuzzer calls the gateway.
    let Served {
        w: _world,
        account,
        env,
        gateway: running,
    } = served_account().await;
    let token = gateway::dev_token(&env, "user-a", Duration::from_secs(3600));
    let tasks: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "{}{BASE_PATH}/tastytrade-accounts/{account}/sync-tasks",
            running.url
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let task = tasks[0]["task_id"].as_str().unwrap().to_owned();
    let reports = std::env::temp_dir().join(format!("st-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&reports).unwrap();
    // The owner's ids, so that the fuzzer reaches past the 404 of unknown ids into the
    // handlers' logic (other ids are the authorization test's subject).
    let config = reports.join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[parameters]\n\"path.account_db_id\" = \"{account}\"\n\"path.task_id\" = \"{task}\"\n"
        ),
    )
    .unwrap();

    let run = tokio::process::Command::new(&st)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(root.join("openapi.json"))
        .args(["--url", &format!("{}{BASE_PATH}", running.url)])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--max-examples", EXAMPLES, "--seed", "7", "--request-timeout", "10"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--report", "junit", "--report-dir"])
        .arg(&reports)
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("schemathesis finishes within ten minutes")
        .unwrap();

    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("passed") || l.contains("failed") || l.contains("test cases"))
        .collect();
    println!("schemathesis: {}", summary.join(" | "));
    let _ = std::fs::remove_dir_all(&reports);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
