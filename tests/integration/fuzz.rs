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
    let tasks: serde_json::Value = tastysync_shared::tls::http()
        .build()
        .expect("an HTTP client")
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

    // Every operation but the deletes, then the deletes alone: a delete that ran early would
    // leave the rest of the run meeting 404s.
    let base = format!("{}{BASE_PATH}", running.url);
    let kept = fuzz(&st, &config, &base, &token, "--exclude-method", &reports).await;
    let deleted = fuzz(&st, &config, &base, &token, "--include-method", &reports).await;
    let _ = std::fs::remove_dir_all(&reports);

    for (phase, run) in [("all but DELETE", &kept), ("DELETE", &deleted)] {
        let (ok, client_errors) = (run.answered(200..300), run.answered(400..500));
        println!(
            "schemathesis, {phase}: {} | {} responses: {ok} 2xx, {client_errors} 4xx",
            run.summary,
            run.statuses.len()
        );
        assert!(
            run.passed,
            "schemathesis found problems ({phase}):\n{}",
            run.output
        );
        assert!(
            ok > 0,
            "no generated request of {phase} got past validation to a 2xx"
        );
    }
}

/// One schemathesis run: whether it passed, its summary and output, and every response's status.
struct Fuzzed {
    passed: bool,
    summary: String,
    output: String,
    statuses: Vec<u16>,
}

impl Fuzzed {
    fn answered(&self, range: std::ops::Range<u16>) -> usize {
        self.statuses.iter().filter(|s| range.contains(s)).count()
    }
}

/// Runs schemathesis over the operations `filter` (`--include-method`/`--exclude-method`)
/// picks with DELETE, reading the statuses back from its HAR report.
async fn fuzz(
    st: &std::path::Path,
    config: &std::path::Path,
    base: &str,
    token: &str,
    filter: &str,
    reports: &std::path::Path,
) -> Fuzzed {
    let har = reports.join(format!("{}.har", filter.trim_start_matches('-')));
    let run = tokio::process::Command::new(st)
        .arg("--config-file")
        .arg(config)
        .arg("run")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi.json"))
        .args(["--url", base])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([filter, "DELETE"])
        .args(["--max-examples", EXAMPLES, "--seed", "7", "--request-timeout", "10"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--report", "junit,har", "--report-dir"])
        .arg(reports)
        .arg("--report-har-path")
        .arg(&har)
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("schemathesis finishes within ten minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("passed") || l.contains("failed") || l.contains("test cases"))
        .collect();
    let har: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&har).unwrap_or_default()).unwrap_or_default();
    let statuses = (har["log"]["entries"].as_array().into_iter().flatten())
        .filter_map(|entry| entry["response"]["status"].as_u64())
        .filter_map(|status| u16::try_from(status).ok())
        .collect();
    Fuzzed {
        passed: output.status.success(),
        summary: summary.join(" | "),
        output: format!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr)),
        statuses,
    }
}
