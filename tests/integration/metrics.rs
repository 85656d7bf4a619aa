//! The worker's CloudWatch EMF lines, checked against the Embedded Metric Format
//! specification's structure (docs.aws.amazon.com, "Specification: Embedded metric format").

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use tastysync_shared::metrics;
use tastytrade_sim::data::Sizes;

use crate::link::{link_personal, world_with};
use crate::sync::{run_until_idle, worker_command};

/// The units the specification allows.
const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// What in `document` breaks the specification; empty when it conforms.
fn emf_violations(document: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(root) = document.as_object() else {
        return vec!["the document is not a JSON object".into()];
    };
    let aws = &root["_aws"];
    let now_ms = chrono::Utc::now().timestamp_millis();
    match aws["Timestamp"].as_i64() {
        // CloudWatch rejects timestamps more than two weeks old or two hours ahead.
        Some(t) if t > now_ms - 14 * 24 * 3_600_000 && t < now_ms + 2 * 3_600_000 => {}
        other => problems.push(format!(
            "_aws.Timestamp is not a recent epoch-ms integer: {other:?}"
        )),
    }
    let Some(directives) = aws["CloudWatchMetrics"].as_array() else {
        problems.push("_aws.CloudWatchMetrics is not an array".into());
        return problems;
    };
    for directive in directives {
        match directive["Namespace"].as_str() {
            Some(ns) if (1..=255).contains(&ns.len()) => {}
            other => problems.push(format!("Namespace {other:?} is not a 1-255 char string")),
        }
        for set in directive["Dimensions"].as_array().into_iter().flatten() {
            let Some(keys) = set.as_array() else {
                problems.push(format!("dimension set {set} is not an array"));
                continue;
            };
            if keys.len() > 30 {
                problems.push(format!("dimension set {set} has more than 30 keys"));
            }
            for key in keys {
                match key.as_str().and_then(|k| root.get(k)) {
                    Some(Value::String(v)) if (1..=1024).contains(&v.len()) => {}
                    _ => problems.push(format!("dimension {key} is not a root string member")),
                }
            }
        }
        if !directive["Dimensions"].is_array() {
            problems.push("Dimensions is not an array".into());
        }
        let Some(metrics) = directive["Metrics"].as_array() else {
            problems.push("Metrics is not an array".into());
            continue;
        };
        if metrics.len() > 100 {
            problems.push("more than 100 metrics in one directive".into());
        }
        for metric in metrics {
            let Some(name) = metric["Name"]
                .as_str()
                .filter(|n| (1..=1024).contains(&n.len()))
            else {
                problems.push(format!("metric {metric} has no valid Name"));
                continue;
            };
            match root.get(name) {
                Some(Value::Number(_)) => {}
                Some(Value::Array(values))
                    if values.len() <= 100 && values.iter().all(Value::is_number) => {}
                other => problems.push(format!(
                    "{name}'s value {other:?} is not a number or up to 100 numbers"
                )),
            }
            if let Some(unit) = metric.get("Unit")
                && !unit.as_str().is_some_and(|u| UNITS.contains(&u))
            {
                problems.push(format!(
                    "{name} has unit {unit}, which the specification lacks"
                ));
            }
            if let Some(resolution) = metric.get("StorageResolution")
                && resolution != 1
                && resolution != 60
            {
                problems.push(format!("{name} has StorageResolution {resolution}"));
            }
        }
    }
    problems
}

/// The EMF documents among a process's output lines.
pub(crate) fn emf_documents(output: &str) -> Vec<Value> {
    output
        .lines()
        .filter(|line| line.starts_with('{') && line.contains("\"_aws\""))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The sum of metric `name` over the documents whose `label` dimension is `value`.
pub(crate) fn metric_sum(documents: &[Value], name: &str, label: &str, value: &str) -> u64 {
    documents
        .iter()
        .filter(|d| d[label] == value)
        .filter_map(|d| d[name].as_u64())
        .sum()
}

#[tokio::test]
async fn a_worker_sync_prints_emf_lines_that_follow_the_specification() {
    let w = world_with(Sizes {
        accounts: 1,
        transactions: 2_000,
        orders: 200,
        years: 1,
    })
    .await;
    link_personal(&w, "user-a").await;
    let mut command = worker_command(&w);
    command.env("METRICS_NAMESPACE", "tastysync-test");

    let output = run_until_idle(command, "3", Duration::from_secs(180)).await;

    let stdout = String::from_utf8(output.stdout).unwrap();
    let documents = emf_documents(&stdout);
    assert!(!documents.is_empty(), "no EMF lines in:\n{stdout}");
    for document in &documents {
        let problems = emf_violations(document);
        assert!(problems.is_empty(), "{problems:#?}\nin {document}");
        let directive = &document["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "tastysync-test");
        assert!(
            directive["Dimensions"][0]
                .as_array()
                .unwrap()
                .contains(&"function".into())
        );
        assert_eq!(document["function"], "sync-worker");
    }
    let mut rows: BTreeMap<String, u64> = BTreeMap::new();
    let mut names = BTreeSet::new();
    for document in &documents {
        for metric in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
        {
            let name = metric["Name"].as_str().unwrap().to_owned();
            if name == metrics::ROWS_WRITTEN {
                *rows
                    .entry(document["entity"].as_str().unwrap().to_owned())
                    .or_default() += document[&name].as_u64().unwrap();
            }
            names.insert(name);
        }
    }
    for expected in [
        metrics::SYNC_DURATION,
        metrics::ROWS_WRITTEN,
        metrics::BROKER_CALLS,
        metrics::QUEUE_LAG,
    ] {
        assert!(
            names.contains(expected),
            "{expected} missing from {names:?}"
        );
    }
    // A first sync inserts every row once: RowsWritten per entity is what the tables hold.
    let client = w.db.client().await;
    let mut stored = BTreeMap::new();
    for (entity, sql) in [
        ("transactions", "SELECT count(*) FROM transactions"),
        (
            "orders",
            "SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM order_legs)
                  + (SELECT count(*) FROM order_fills)",
        ),
        ("positions", "SELECT count(*) FROM positions"),
        (
            "balances",
            "SELECT (SELECT count(*) FROM account_balances)
                  + (SELECT count(*) FROM account_balance_snapshots WHERE source = 'capture')",
        ),
        (
            "balance_snapshots",
            "SELECT count(*) FROM account_balance_snapshots WHERE source = 'broker'",
        ),
        ("net_liq_history", "SELECT count(*) FROM net_liq_history"),
        ("watchlists", "SELECT count(*) FROM watchlists"),
        ("complex_orders", "SELECT count(*) FROM complex_orders"),
        (
            "greeks",
            "SELECT count(*) FROM positions WHERE greeks_updated_at IS NOT NULL",
        ),
    ] {
        let count: i64 = client.query_one(sql, &[]).await.unwrap().get(0);
        assert!(count > 0, "the sync stored no {entity}");
        stored.insert(entity.to_owned(), count as u64);
    }
    assert_eq!(
        rows, stored,
        "RowsWritten per entity against the rows stored"
    );
}

#[test]
fn a_document_that_breaks_the_specification_is_caught() {
    let broken = serde_json::json!({
        "_aws": {
            "Timestamp": "yesterday",
            "CloudWatchMetrics": [{
                "Namespace": "tastysync",
                "Dimensions": [["function", "missing"]],
                "Metrics": [{"Name": "Rows", "Unit": "Rows"}, {"Name": "Absent"}]
            }]
        },
        "function": "sync-worker",
        "Rows": "many"
    });

    let problems = emf_violations(&broken);

    assert_eq!(problems.len(), 5, "{problems:#?}");
}
