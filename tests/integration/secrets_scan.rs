//! After linking and syncing with tokens that expire every few requests, no secret the
//! simulator issued appears in the worker's logs (at debug level), in any table, in the task
//! table or on the queues: neither as text nor as the hex of stored bytes.

use std::time::Duration;

use tastysync_tests::leaks::{self, Secrets};
use tastytrade_sim::data::Sizes;
use tastytrade_sim::server::Faults;

use crate::link::{World, link_personal, world_with};
use crate::sync::{run_until_idle, worker_command};

async fn queued_bodies(w: &World) -> String {
    let mut bodies = String::new();
    for url in [&w.aws.stack.queue_url, &w.aws.stack.dlq_url] {
        let received = w
            .aws
            .sqs()
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
        for message in received.messages.unwrap_or_default() {
            bodies.push_str(&message.body.unwrap_or_default());
        }
    }
    bodies
}

#[tokio::test]
async fn no_issued_token_or_client_secret_is_in_logs_tables_tasks_or_queues() {
    let w = world_with(Sizes {
        accounts: 2,
        transactions: 1_500,
        orders: 150,
        years: 2,
    })
    .await;
    w.sim.simulator.set_faults(Faults {
        expire_tokens_every: 5,
        ..Faults::default()
    });
    link_personal(&w, "user-a").await;
    let mut command = worker_command(&w);
    command.env("RUST_LOG", "debug");

    let output = run_until_idle(command, "3", Duration::from_secs(180)).await;

    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let tables = leaks::every_table(&**w.db.client().await).await;
    let tasks = crate::link::table_items(&w).await.join("\n");
    let queues = queued_bodies(&w).await;
    let secrets = Secrets::new(w.sim.simulator.issued_secrets());
    let mut places: Vec<(String, &str)> = vec![
        ("worker logs".into(), logs.as_str()),
        ("task table".into(), tasks.as_str()),
        ("queues".into(), queues.as_str()),
    ];
    places.extend(
        tables
            .iter()
            .map(|(t, text)| (format!("table {t}"), text.as_str())),
    );
    let hits: Vec<String> = places
        .iter()
        .flat_map(|(place, text)| {
            secrets
                .found_in(text)
                .into_iter()
                .map(move |secret| format!("{place} holds {secret}"))
        })
        .collect();

    println!(
        "scanned {} log lines, {} tables ({} bytes), the task table and the queues for {} issued secrets: {} hits",
        logs.lines().count(),
        tables.len(),
        tables.iter().map(|(_, t)| t.len()).sum::<usize>(),
        secrets.len(),
        hits.len()
    );
    assert!(
        secrets.len() >= 4,
        "several access tokens were issued: {}",
        secrets.len()
    );
    assert!(logs.lines().count() > 50, "debug logs were captured");
    assert!(
        tables
            .iter()
            .any(|(t, text)| t == "tastytrade_credential_secrets" && !text.is_empty()),
        "the sealed secrets are there to scan"
    );
    assert!(hits.is_empty(), "{hits:#?}");
}
