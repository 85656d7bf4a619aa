//! The secrets scan after the suite (`make test` runs it last, inside the test stack): every
//! refresh token, access token and client secret any simulator of the run issued (the ledger
//! at `TASTYSYNC_ISSUED_SECRETS`) is looked for in every log the tests and their workers wrote
//! (`TASTYSYNC_SUITE_LOGS`), every table of every database in the test cluster, and every
//! item of every DynamoDB table on the emulator. Any hit fails the run.

// A scan that meets an error should stop loudly, like a test.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use tastysync_tests::leaks::{self, Secrets};

/// What was scanned, and what was found where.
#[derive(Debug, Default)]
struct Scan {
    log_files: usize,
    log_bytes: usize,
    databases: usize,
    tables: usize,
    table_bytes: usize,
    task_tables: usize,
    task_items: usize,
    hits: Vec<String>,
}

impl Scan {
    fn look(&mut self, secrets: &Secrets, place: &str, text: &str) {
        for secret in secrets.found_in(text) {
            self.hits.push(format!("{place} holds {secret}"));
        }
    }
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run `make test`"))
}

#[tokio::main]
async fn main() {
    let ledger = PathBuf::from(var("TASTYSYNC_ISSUED_SECRETS"));
    // A scan for nothing proves nothing: the simulators of the run must have recorded what they
    // issued, and the tests must have left logs to look in.
    let issued = std::fs::read_to_string(&ledger).unwrap_or_else(|e| {
        eprintln!(
            "the ledger of issued secrets {} is unreadable: {e}",
            ledger.display()
        );
        std::process::exit(1)
    });
    let secrets = Secrets::new(issued.lines().map(str::to_owned));
    if secrets.is_empty() {
        eprintln!("the ledger of issued secrets {} is empty", ledger.display());
        std::process::exit(1);
    }
    let mut scan = Scan::default();

    for entry in std::fs::read_dir(var("TASTYSYNC_SUITE_LOGS")).unwrap() {
        let path = entry.unwrap().path();
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        scan.log_files += 1;
        scan.log_bytes += text.len();
        scan.look(&secrets, &format!("log {}", path.display()), &text);
    }

    if scan.log_files == 0 {
        eprintln!("the tests left no log to scan");
        std::process::exit(1);
    }

    let admin_url = var("TASTYSYNC_PG_ADMIN_URL");
    let (admin, connection) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let databases = tastysync_tests::texts(
        &admin,
        "SELECT datname::text FROM pg_database WHERE NOT datistemplate ORDER BY 1",
    )
    .await;
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    for database in databases {
        let (client, connection) =
            tokio_postgres::connect(&format!("{base}/{database}"), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(connection);
        scan.databases += 1;
        for (table, text) in leaks::every_table(&client).await {
            scan.tables += 1;
            scan.table_bytes += text.len();
            scan.look(&secrets, &format!("table {database}.{table}"), &text);
        }
    }

    let sdk = tastysync_shared::aws::sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let tables = dynamodb
        .list_tables()
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    for table in tables {
        let items = leaks::dynamo_items(&dynamodb, &table).await;
        scan.task_tables += 1;
        scan.task_items += items.len();
        scan.look(
            &secrets,
            &format!("DynamoDB table {table}"),
            &items.join("\n"),
        );
    }

    println!(
        "secrets scan after the suite: {} issued secrets looked for in {} log files ({} MiB), \
         {} tables of {} databases ({} MiB) and {} items of {} task tables: {} hits",
        secrets.len(),
        scan.log_files,
        scan.log_bytes >> 20,
        scan.tables,
        scan.databases,
        scan.table_bytes >> 20,
        scan.task_items,
        scan.task_tables,
        scan.hits.len()
    );
    if !scan.hits.is_empty() {
        for hit in &scan.hits {
            eprintln!("  {hit}");
        }
        std::process::exit(1);
    }
}
