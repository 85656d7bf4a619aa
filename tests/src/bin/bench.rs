//! `make bench`: figures for the sync, printed as a table (never asserted: these machines are
//! shared and noisy).
//!
//! 1. A full sync of one simulated account (100,000 transactions, 20,000 orders by default;
//!    `BENCH_TRANSACTIONS`, `BENCH_ORDERS`) by the release `sync-worker` binary in poll mode:
//!    synced rows per second, and the worker process's peak resident memory (its `VmHWM`,
//!    sampled every 50 ms until the sync completes).
//! 2. The peer baseline: the tastyware `tastytrade` Python SDK (pinned in
//!    `infra/local/requirements.txt`) fetches the same account's full history from the same
//!    simulator and psycopg writes it with COPY into a staging table and one upsert
//!    (`infra/local/baseline.py`): its rows per second beside ours, and the ratio.
//! 3. An incremental sync with nothing new: broker calls made and rows rewritten.
//! 4. The same full sync (`BENCH_LATENCY_TRANSACTIONS`, `BENCH_LATENCY_ORDERS`) with 80 ms
//!    added to every broker response (`BENCH_LATENCY_MS`): wall time over the network floor,
//!    the requests made times the latency (the sync pages one request at a time).
//! 5. Function binaries (release, stripped): size, and the time from process start to the
//!    first `GET /runtime/invocation/next` at a local Lambda Runtime API (median of 5).
//! 6. Warm API handlers through the local gateway (JWT checked, API Gateway event built):
//!    p50 and p99 of `BENCH_API_REQUESTS` (1,000) sequential calls to list accounts and to
//!    read a sync status.
//! 7. Scheduler fan-out: an hour of ticks (`BENCH_SCHEDULER_TICKS`, default 12) over 10,000
//!    accounts (`BENCH_SCHEDULER_ACCOUNTS`) on the emulator, with a consumer draining the queue
//!    as the workers would: total and slowest-tick seconds, messages queued and consumed, and
//!    how many accounts were consumed more than once (0 is the only right answer).
//! 8. Near-real-time (`src/bench/realtime.rs`; alone with `BENCH_ONLY=realtime`): fill to order
//!    row and fill to transaction rows over 200 fills, and 1,000 grants on one streamer shard
//!    (connect time, peak memory, CPU per notification). It ends with a `bench-json` line.
//!
//! The simulator runs in this process, so its memory is not counted as the worker's.

// A benchmark that meets an error should stop loudly, like a test.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use chrono::DurationRound;
use serde_json::json;
use tastysync_shared::adapters::postgres::{PgAccounts, PgSyncStore};
use tastysync_shared::config::Env;
use tastysync_shared::domain::tasks::{NewTask, TaskKind};
use tastysync_shared::ports::TaskCreator;
use tastysync_shared::routes::link;
use tastysync_shared::schedule::{self, ScheduleSettings, SchedulerDeps, Tick, TickKind};
use tastysync_shared::sync::{self, Outcome, SyncDeps, SyncSettings};
use tastysync_shared::tastytrade::client::Stats;
use tastysync_shared::tastytrade::{BrokerConfig, TastytradeClient};
use tastysync_shared::wiring::{Function, LinkAccount, SyncWorker};
use tastysync_tests::{QueueConsumer, TestAws, TestDb, event, request};
use tastytrade_sim::data::Sizes;
use tastytrade_sim::server::Config;
use tastytrade_sim::{Credentials, Simulator};

fn size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The benchmark's simulator: one account of five years with this much history.
async fn simulator(transactions: usize, orders: usize) -> tastytrade_sim::server::Running {
    Simulator::spawn(Config {
        seed: 3,
        sizes: Sizes {
            accounts: 1,
            transactions,
            orders,
            years: 5,
        },
        ..Config::default()
    })
    .await
    .expect("the simulator starts")
}

#[path = "../bench/realtime.rs"]
mod realtime;

/// The near-real-time rows of the table.
fn print_realtime(figures: &realtime::Figures) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (order, transaction) = (&figures.fill_to_order, &figures.fill_to_transaction);
    println!(
        "| realtime: {} fills, fill to filled order row, p50 / p99 / max (goal p99 ≤ 1,000 ms) | {:.0} ms / {:.0} ms / {:.0} ms |",
        figures.fills,
        ms(order.p50),
        ms(order.p99),
        ms(order.max)
    );
    println!(
        "| realtime: fill to its transaction rows, p50 / p99 / max (goal p99 ≤ 15,000 ms) | {:.0} ms / {:.0} ms / {:.0} ms |",
        ms(transaction.p50),
        ms(transaction.p99),
        ms(transaction.max)
    );
    println!(
        "| realtime: {} grants on one shard: all connected after / streamer peak RSS | {:.1} s / {:.1} MiB |",
        figures.grants,
        figures.connect_all.as_secs_f64(),
        figures.peak_rss_mib
    );
    println!(
        "| realtime: streamer CPU per notification ({} balance changes, heartbeats included) | {:.2} ms |",
        figures.notifications,
        ms(figures.cpu_per_notification)
    );
    println!(
        "bench-json {}",
        json!({
            "realtime_fill_to_order_p99_ms": ms(order.p99).round(),
            "realtime_fill_to_transaction_p99_ms": ms(transaction.p99).round(),
            "realtime_streamer_grants": figures.grants,
            "realtime_streamer_peak_rss_mib": (figures.peak_rss_mib * 10.0).round() / 10.0,
            "realtime_cpu_per_notification_ms": (ms(figures.cpu_per_notification) * 100.0).round() / 100.0,
        })
    );
}

#[tokio::main]
async fn main() {
    // `BENCH_ONLY=realtime`: only the near-real-time figures (a few minutes instead of the
    // whole table).
    if std::env::var("BENCH_ONLY").as_deref() == Ok("realtime") {
        println!("| figure | value |");
        println!("|---|---|");
        print_realtime(&realtime::figures().await);
        return;
    }
    let transactions = size("BENCH_TRANSACTIONS", 100_000);
    let orders = size("BENCH_ORDERS", 20_000);
    let sim = simulator(transactions, orders).await;
    let db = TestDb::migrated().await;
    let oauth = json!({"client_id": sim.credentials.client_id, "client_secret": sim.credentials.client_secret});
    let aws = TestAws::provisioned_with(&oauth).await;
    let base = sim.credentials.base_url.clone();
    let env = Env::from_pairs([
        ("DATABASE_URL", db.url.as_str()),
        ("TOKEN_KMS_KEY_ID", aws.stack.kms_key_arn.as_str()),
        ("TASKS_TABLE", aws.stack.table.as_str()),
        ("SYNC_QUEUE_URL", aws.stack.queue_url.as_str()),
        ("EVENT_BUS_NAME", aws.stack.event_bus.as_str()),
        (
            "OAUTH_CLIENT_SECRET_ARN",
            aws.stack.oauth_client_secret_arn.as_str(),
        ),
        (
            "STATE_SIGNING_SECRET_ARN",
            aws.stack.state_signing_secret_arn.as_str(),
        ),
        ("OAUTH_REDIRECT_URIS", "http://localhost/callback"),
        ("TASTYTRADE_SANDBOX_URL", base.as_str()),
    ]);
    link_simulated_grant(&sim, &aws, &env).await;

    // 1. The full sync, by the worker process.
    let worker = std::env::current_exe()
        .expect("own path")
        .with_file_name("sync-worker");
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&worker)
        .env("DATABASE_URL", &db.url)
        .env("TOKEN_KMS_KEY_ID", &aws.stack.kms_key_arn)
        .env("TASKS_TABLE", &aws.stack.table)
        .env("SYNC_QUEUE_URL", &aws.stack.queue_url)
        .env("EVENT_BUS_NAME", &aws.stack.event_bus)
        .env("TASTYTRADE_SANDBOX_URL", &base)
        .env("SYNC_INVOCATION_SECONDS", "900")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", worker.display()));
    let pid = child.id().expect("the worker runs");
    let client = db.client().await;
    let mut peak = 0;
    let status = loop {
        peak = peak.max(peak_rss_kib(pid).unwrap_or(0));
        let status: String = client
            .query_one("SELECT last_sync_status FROM tastytrade_accounts", &[])
            .await
            .unwrap()
            .get(0);
        if status == "SUCCESS" || status == "FAILED" {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "the sync did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let elapsed = started.elapsed();
    peak = peak.max(peak_rss_kib(pid).unwrap_or(0));
    let _ = child.kill().await;
    // No figure for a sync that failed or stored something else than the broker holds.
    assert_eq!(status, "SUCCESS", "the full sync ended {status}");
    let number = &sim.credentials.account_numbers[0];
    let truth = sim.simulator.truth(number).expect("the account's truth");
    tastysync_tests::truth::assert_database_equals_truth(&client, &truth, number).await;
    let rows: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM transactions WHERE removed_at IS NULL)
                  + (SELECT count(*) FROM orders WHERE removed_at IS NULL)
                  + (SELECT count(*) FROM order_legs WHERE removed_at IS NULL)
                  + (SELECT count(*) FROM order_fills WHERE removed_at IS NULL)
                  + (SELECT count(*) FROM positions)
                  + (SELECT count(*) FROM account_balances WHERE removed_at IS NULL)
                  + (SELECT count(*) FROM account_balance_snapshots)",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    // 2. The peer baseline, on a database of its own.
    let baseline = python_baseline(&sim, &truth).await;

    // 2b. An incremental sync with nothing new, in this process.
    let (account_id, owner) = linked_account(&db).await;
    let sync_deps = in_process_worker(&db, &aws, &sim.credentials);
    let task = NewTask::new(&owner, account_id, TaskKind::Incremental);
    sync_deps.tasks.create(&task).await.expect("task");
    let idle_started = Instant::now();
    let outcome = sync::run(&sync_deps, &task.message(), None)
        .await
        .expect("incremental sync");
    let idle_elapsed = idle_started.elapsed();
    let Outcome::Completed(counts) = outcome else {
        panic!("incremental sync ended {outcome:?}")
    };

    // 3. The full sync again, on a database of its own, with latency on every response.
    let latency = latency_run(&sim, &aws, &env).await;

    // 4. Function binaries: size and time to ready.
    let binaries = startup_times(&env).await;

    // 5. The API through the local gateway. The queue is emptied first, so that the gateway's
    // worker has nothing to sync while it is measured.
    aws.sqs()
        .purge_queue()
        .queue_url(&aws.stack.queue_url)
        .send()
        .await
        .expect("purge");
    let api = gateway_latencies(&env, &aws, &owner, task.task_id, account_id).await;

    // 6. Scheduler fan-out, on a database and queue of its own.
    let scheduled = size("BENCH_SCHEDULER_ACCOUNTS", 10_000);
    let ticks = u32::try_from(size("BENCH_SCHEDULER_TICKS", 12)).unwrap();
    let fan_db = TestDb::migrated().await;
    fan_db
        .many_accounts(i32::try_from(scheduled).unwrap())
        .await;
    let fan_aws = TestAws::provisioned().await;
    let scheduler = SchedulerDeps {
        accounts: PgAccounts::new(fan_db.pool.clone()),
        tasks: fan_aws.tasks_of(Function::SyncScheduler),
        queue: fan_aws.queue_of(Function::SyncScheduler),
        settings: ScheduleSettings {
            ticks_per_hour: ticks,
            ..ScheduleSettings::default()
        },
    };
    let consumer = QueueConsumer::start(&fan_aws);
    let hour = chrono::Utc::now()
        .duration_trunc(chrono::TimeDelta::hours(1))
        .unwrap();
    let tick_length = chrono::TimeDelta::minutes(i64::from(60 / ticks.max(1)));
    let (mut fan_queued, mut slowest) = (0, Duration::ZERO);
    let fan_started = Instant::now();
    for i in 0..ticks {
        let at = hour + tick_length * i32::try_from(i).unwrap();
        let tick = Tick {
            kind: TickKind::Incremental,
            scheduled_time: Some(at),
        };
        let tick_started = Instant::now();
        let report = schedule::run_tick(&scheduler, &tick, at)
            .await
            .expect("tick");
        slowest = slowest.max(tick_started.elapsed());
        fan_queued += report.queued;
    }
    let fan_elapsed = fan_started.elapsed();
    let consumed = consumer.finish().await;
    let mut per_account = std::collections::HashMap::<&str, usize>::new();
    for message in &consumed {
        *per_account.entry(message.group.as_str()).or_default() += 1;
    }
    let twice = per_account.values().filter(|&&n| n > 1).count();

    // 8. Near-real-time.
    let realtime = realtime::figures().await;

    println!("| figure | value |");
    println!("|---|---|");
    println!("| full sync: account size | {transactions} transactions, {orders} orders |");
    println!("| full sync: rows stored | {rows} |");
    println!(
        "| full sync: wall time (worker process, release) | {:.1} s |",
        elapsed.as_secs_f64()
    );
    println!(
        "| full sync: rows per second | {:.0} |",
        rows as f64 / elapsed.as_secs_f64()
    );
    println!(
        "| full sync: worker peak RSS (VmHWM) | {:.1} MiB |",
        peak as f64 / 1024.0
    );
    let baseline_rows = baseline["transactions"].as_f64().unwrap_or(0.0)
        + baseline["orders"].as_f64().unwrap_or(0.0);
    let baseline_seconds = baseline["seconds"].as_f64().unwrap_or(f64::NAN);
    let ours = rows as f64 / elapsed.as_secs_f64();
    let theirs = baseline_rows / baseline_seconds;
    println!(
        "| peer baseline (tastytrade SDK + psycopg COPY/upsert): transactions and orders | {baseline_rows:.0} rows in {baseline_seconds:.1} s (fetch {:.1} s, write {:.1} s), {theirs:.0} rows/s |",
        baseline["fetch_seconds"].as_f64().unwrap_or(f64::NAN),
        baseline["write_seconds"].as_f64().unwrap_or(f64::NAN),
    );
    println!(
        "| tastysync rows/s over the baseline's (ours also writes legs, fills, positions, balances, snapshots) | {:.1}x |",
        ours / theirs
    );
    println!(
        "| incremental, nothing new: broker calls | {} |",
        Stats::get(&sync_deps.broker.stats().requests)
    );
    println!(
        "| incremental, nothing new: rows rewritten | {} |",
        counts.total_written()
    );
    println!(
        "| incremental, nothing new: wall time | {:.2} s |",
        idle_elapsed.as_secs_f64()
    );
    println!(
        "| full sync with {} ms per response: wall time / network floor | {:.1} s / {:.1} s ({} requests) = {:.2} |",
        latency.latency_ms,
        latency.wall.as_secs_f64(),
        latency.floor.as_secs_f64(),
        latency.requests,
        latency.wall.as_secs_f64() / latency.floor.as_secs_f64()
    );
    for binary in &binaries {
        println!(
            "| binary {}: stripped size, start to ready (median of 5) | {:.1} MiB, {:.1} ms |",
            binary.name,
            binary.bytes as f64 / 1_048_576.0,
            binary.ready.as_secs_f64() * 1000.0
        );
    }
    for (route, p50, p99) in &api {
        println!(
            "| gateway, warm: {route} p50 / p99 | {:.2} ms / {:.2} ms |",
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0
        );
    }
    println!(
        "| scheduler: {ticks} ticks over {scheduled} accounts (emulator) | {:.1} s in all, slowest tick {:.1} s |",
        fan_elapsed.as_secs_f64(),
        slowest.as_secs_f64()
    );
    println!(
        "| scheduler: queued / consumed / accounts consumed twice | {fan_queued} / {} / {twice} |",
        consumed.len()
    );
    print_realtime(&realtime);
}

struct LatencyRun {
    latency_ms: u64,
    wall: Duration,
    floor: Duration,
    requests: u64,
}

/// A full sync of a freshly linked account with `latency_ms` on every broker response, in this
/// process, into a database of its own.
async fn latency_run(
    sim: &tastytrade_sim::server::Running,
    aws: &TestAws,
    env: &Env,
) -> LatencyRun {
    let latency_ms = size("BENCH_LATENCY_MS", 80) as u64;
    let transactions = size("BENCH_LATENCY_TRANSACTIONS", 100_000);
    let orders = size("BENCH_LATENCY_ORDERS", 20_000);
    // The simulator serves what it was seeded with; a smaller run needs a simulator of its own.
    let own;
    let sim = if transactions == size("BENCH_TRANSACTIONS", 100_000)
        && orders == size("BENCH_ORDERS", 20_000)
    {
        sim
    } else {
        own = simulator(transactions, orders).await;
        &own
    };
    let db = TestDb::migrated().await;
    let env = env.clone().with("DATABASE_URL", db.url.clone());
    link_simulated_grant(sim, aws, &env).await;
    let (account_id, owner) = linked_account(&db).await;
    let deps = in_process_worker(&db, aws, &sim.credentials);
    let task = NewTask::new(&owner, account_id, TaskKind::Full);
    deps.tasks.create(&task).await.expect("task");
    sim.simulator.set_faults(tastytrade_sim::server::Faults {
        latency_ms,
        ..Default::default()
    });
    let started = Instant::now();
    let outcome = sync::run(&deps, &task.message(), None)
        .await
        .expect("the sync runs");
    let wall = started.elapsed();
    sim.simulator
        .set_faults(tastytrade_sim::server::Faults::default());
    assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
    let requests = Stats::get(&deps.broker.stats().requests);
    LatencyRun {
        latency_ms,
        wall,
        floor: Duration::from_millis(latency_ms * requests),
        requests,
    }
}

struct Binary {
    name: &'static str,
    bytes: u64,
    ready: Duration,
}

/// Each function's release binary started as Lambda starts it, against a local Runtime API
/// that notes when the first `invocation/next` arrives: the process is then ready for events.
async fn startup_times(env: &Env) -> Vec<Binary> {
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let app = axum::Router::new().route(
        "/2018-06-01/runtime/invocation/next",
        axum::routing::get(move || {
            let ready_tx = ready_tx.clone();
            async move {
                let _ = ready_tx.send(Instant::now());
                // No event ever comes: the process is killed once it has asked.
                std::future::pending::<()>().await;
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let runtime_api = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = std::env::current_exe().expect("own path");
    let mut binaries = Vec::new();
    for name in Function::ALL.map(Function::name) {
        let path = dir.with_file_name(name);
        let bytes = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .len();
        let mut samples = Vec::new();
        for _ in 0..5 {
            let mut command = tokio::process::Command::new(&path);
            command
                .envs(env.vars())
                .env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
                .env("AWS_LAMBDA_FUNCTION_NAME", name)
                .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
                .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
                .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
                .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
                .env("RUST_LOG", "warn")
                .stdout(std::process::Stdio::null())
                .kill_on_drop(true);
            let started = Instant::now();
            let mut child = command.spawn().expect("the function starts");
            let ready = tokio::time::timeout(Duration::from_secs(30), ready_rx.recv())
                .await
                .unwrap_or_else(|_| panic!("{name} never asked for an event"))
                .expect("the runtime API runs");
            samples.push(ready - started);
            let _ = child.kill().await;
        }
        samples.sort();
        binaries.push(Binary {
            name,
            bytes,
            ready: samples[samples.len() / 2],
        });
    }
    binaries
}

/// p50 and p99 of sequential calls to two read routes through the local gateway.
async fn gateway_latencies(
    env: &Env,
    aws: &TestAws,
    owner: &str,
    task_id: uuid::Uuid,
    account_id: uuid::Uuid,
) -> Vec<(&'static str, Duration, Duration)> {
    let env = env
        .clone()
        .with("LOCAL_SCHEDULE_SECONDS", "0")
        .with("SYNC_QUEUE_ARN", aws.stack.queue_arn.clone());
    let running = tastysync_local::gateway::start(&env, &aws.sdk, ([127, 0, 0, 1], 0).into())
        .await
        .expect("the gateway starts");
    let token = tastysync_local::gateway::dev_token(&env, owner, Duration::from_secs(3600));
    let http = reqwest::Client::new();
    let requests = size("BENCH_API_REQUESTS", 1_000);
    let mut figures = Vec::new();
    for (route, path) in [
        (
            "GET /tastytrade-accounts",
            "/api/v1/tastytrade-accounts".to_owned(),
        ),
        (
            "GET /sync/status/{task_id}",
            format!("/api/v1/sync/status/{task_id}"),
        ),
        // The synced account's newest 100 transactions, and its positions (the read API).
        (
            "GET /tastytrade-accounts/{id}/transactions?limit=100",
            format!("/api/v1/tastytrade-accounts/{account_id}/transactions?limit=100"),
        ),
        (
            "GET /tastytrade-accounts/{id}/positions",
            format!("/api/v1/tastytrade-accounts/{account_id}/positions"),
        ),
    ] {
        let url = format!("{}{path}", running.url);
        let mut samples = Vec::with_capacity(requests);
        for i in 0..requests + 20 {
            let started = Instant::now();
            let response = http
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .expect("answers");
            assert_eq!(response.status(), 200, "{route}");
            response.bytes().await.expect("body");
            // The first twenty warm the pool and the connections.
            if i >= 20 {
                samples.push(started.elapsed());
            }
        }
        samples.sort();
        let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
        figures.push((route, at(0.50), at(0.99)));
    }
    figures
}

/// Runs `infra/local/baseline.py` with the project virtualenv's Python against `sim`, into a
/// database of its own; returns its JSON report.
async fn python_baseline(
    sim: &tastytrade_sim::server::Running,
    truth: &serde_json::Value,
) -> serde_json::Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let db = TestDb::empty().await;
    let output = tokio::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("infra/local/baseline.py"))
        .env("TT_BASE_URL", &sim.credentials.base_url)
        .env("TT_SECRET", &sim.credentials.client_secret)
        .env("TT_REFRESH", &sim.credentials.refresh_token)
        .env("DATABASE_URL", &db.url)
        .output()
        .await
        .expect("the project virtualenv's Python runs");
    assert!(
        output.status.success(),
        "the baseline failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The peer's figure counts only if it stored what the broker holds, as ours does.
    let client = db.client().await;
    for (table, entity) in [
        ("baseline_transactions", "transactions"),
        ("baseline_orders", "orders"),
    ] {
        let stored: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .expect("the peer's table")
            .get(0);
        assert_eq!(
            Some(stored),
            truth[entity]["count"].as_i64(),
            "the peer stored {stored} {entity}"
        );
    }
    serde_json::from_slice(&output.stdout).expect("the baseline reports JSON")
}

/// Links the simulator's personal grant through the link route, as a user would.
async fn link_simulated_grant(sim: &tastytrade_sim::server::Running, aws: &TestAws, env: &Env) {
    let deps = LinkAccount::from_env(env, &aws.sdk_of(Function::LinkAccount))
        .await
        .expect("link dependencies");
    let mut link_event = event("link-personal-grant.json");
    link_event["body"] = json!({
        "environment": "sandbox",
        "refresh_token": sim.credentials.refresh_token,
        "client_secret": sim.credentials.client_secret,
    })
    .to_string()
    .into();
    let linked = link::link(&deps, &request(&link_event))
        .await
        .expect("the grant links");
    assert_eq!(linked.status(), 201);
}

/// The one linked account's id and owner.
async fn linked_account(db: &TestDb) -> (uuid::Uuid, String) {
    let row = db
        .client()
        .await
        .query_one("SELECT id, user_id FROM tastytrade_accounts", &[])
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// The worker's dependencies in this process, against `db`, the stack and the simulator.
fn in_process_worker(db: &TestDb, aws: &TestAws, sim: &Credentials) -> SyncWorker {
    let mut broker = BrokerConfig::for_simulator(
        sim.base_url.parse().expect("URL"),
        sim.streamer_url.parse().expect("URL"),
    );
    broker.production_accept_version = None;
    SyncDeps {
        store: PgSyncStore::new(db.pool.clone()),
        broker: TastytradeClient::new(broker).expect("client"),
        cipher: aws.cipher_of(Function::SyncWorker),
        tasks: aws.tasks_of(Function::SyncWorker),
        queue: aws.queue_of(Function::SyncWorker),
        oauth_client: None,
        events: aws.events_of(Function::SyncWorker),
        settings: SyncSettings::default(),
    }
}
