//! `make bench`: figures for the sync, printed as tables (never asserted: these machines are
//! shared and noisy), then one `bench-json {...}` line holding every figure under a stable key.
//!
//! 1. Like for like: a full sync of one simulated account (100,000 transactions, 20,000
//!    orders; `BENCH_TRANSACTIONS`, `BENCH_ORDERS`) by the release `sync-worker` process, and
//!    the peer on the same simulator: the tastyware `tastytrade` Python SDK (pinned in
//!    `infra/local/requirements.txt`) fetching the history and psycopg writing the same rows
//!    into copies of our tables (`infra/local/baseline.py`). Both sides' rows are checked
//!    against the simulator's truth before a figure is printed; the ratio counts the same rows
//!    on both sides (transactions, orders, legs, fills) over each side's wall time. Then the
//!    same for a transactions-only account. Also: rows per second over every row we store, the
//!    worker's peak resident memory (`VmHWM`, read every 10 ms), and where the sync's time
//!    went per entity (the worker's `tastysync::spent` log line).
//! 2. An incremental sync with nothing new: broker calls made and rows rewritten.
//! 3. The full sync by the worker process with 80 ms added to every broker response
//!    (`BENCH_LATENCY_MS`): wall time over the concurrent floor (the requests the simulator
//!    received, `SYNC_GRANT_CONCURRENCY` at a time, times the latency) and over the sequential
//!    floor (one at a time).
//! 4. Growth: transactions-only full syncs at 10,000 and 100,000 transactions, and 1,000,000
//!    with `BENCH_SCALE=1`: rows per second and peak memory.
//! 5. Function binaries (release, stripped): size, and the time from process start to the
//!    first `GET /runtime/invocation/next` at a local Lambda Runtime API (median of 5).
//! 6. Warm API handlers through the local gateway (JWT checked, API Gateway event built):
//!    p50 and p99 of `BENCH_API_REQUESTS` (1,000) sequential calls per route.
//! 7. Scheduler fan-out: an hour of ticks (`BENCH_SCHEDULER_TICKS`, default 12) over 10,000
//!    accounts (`BENCH_SCHEDULER_ACCOUNTS`) on the emulator, with a consumer draining the queue
//!    as the workers would: total and slowest-tick seconds, messages queued and consumed, and
//!    how many accounts were consumed more than once (0 is the only right answer).
//! 8. Near-real-time (`src/bench/realtime.rs`): fill to order row and fill to transaction rows
//!    over 200 fills, and 1,000 grants on one streamer shard.
//!
//! `BENCH_ONLY=sync` runs 1–4 only; `BENCH_ONLY=realtime` runs 8 only; `BENCH_TIMELINE=<file>`
//! writes the requests of 3's latency run, for a look at where the grant's requests sat idle.
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

/// The near-real-time rows of the table, and their figures for `bench-json`.
fn realtime_rows(
    figures: &realtime::Figures,
) -> (
    Vec<(String, String)>,
    serde_json::Map<String, serde_json::Value>,
) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (order, transaction) = (&figures.fill_to_order, &figures.fill_to_transaction);
    let rows = vec![
        (
            format!(
                "realtime: {} fills, fill to filled order row, p50 / p99 / max (goal p99 <= 1,000 ms)",
                figures.fills
            ),
            format!(
                "{:.0} ms / {:.0} ms / {:.0} ms",
                ms(order.p50),
                ms(order.p99),
                ms(order.max)
            ),
        ),
        (
            "realtime: fill to its transaction rows, p50 / p99 / max (goal p99 <= 15,000 ms)"
                .to_owned(),
            format!(
                "{:.0} ms / {:.0} ms / {:.0} ms",
                ms(transaction.p50),
                ms(transaction.p99),
                ms(transaction.max)
            ),
        ),
        (
            format!(
                "realtime: {} grants on one shard: all connected after / streamer peak RSS",
                figures.grants
            ),
            format!(
                "{:.1} s / {:.1} MiB",
                figures.connect_all.as_secs_f64(),
                figures.peak_rss_mib
            ),
        ),
        (
            format!(
                "realtime: streamer CPU per notification ({} balance changes, heartbeats included)",
                figures.notifications
            ),
            format!("{:.2} ms", ms(figures.cpu_per_notification)),
        ),
    ];
    let json = json!({
        "realtime_fill_to_order_p99_ms": ms(order.p99).round(),
        "realtime_fill_to_transaction_p99_ms": ms(transaction.p99).round(),
        "realtime_streamer_grants": figures.grants,
        "realtime_streamer_peak_rss_mib": round1(figures.peak_rss_mib),
        "realtime_cpu_per_notification_ms": round2(ms(figures.cpu_per_notification)),
    });
    let serde_json::Value::Object(json) = json else {
        unreachable!("an object")
    };
    (rows, json)
}

/// The targets beside today's figures (before #21) and this run's.
struct Target {
    figure: &'static str,
    today: &'static str,
    target: &'static str,
    measured: String,
}

#[tokio::main]
async fn main() {
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    // `BENCH_ONLY=realtime`: only the near-real-time figures (a few minutes).
    if only == "realtime" {
        let (rows, figures) = realtime_rows(&realtime::figures().await);
        print_table(&rows);
        println!("bench-json {}", serde_json::Value::Object(figures));
        return;
    }
    let mut json = serde_json::Map::new();
    let mut rows: Vec<(String, String)> = Vec::new();
    let transactions = size("BENCH_TRANSACTIONS", 100_000);
    let orders = size("BENCH_ORDERS", 20_000);
    let sim = simulator(transactions, orders).await;
    let aws = TestAws::provisioned_with(&oauth(&sim)).await;
    let env = stack_env(&sim, &aws);

    // 1. Like for like: ours by the worker process, then the peer, on the same simulator.
    let ours = worker_full_sync(&sim, &aws, &env, 0).await;
    let number = sim.credentials.account_numbers[0].clone();
    let truth = sim.simulator.truth(&number).expect("the account's truth");
    let peer = python_peer(&sim, &truth).await;
    let same_rows = history_rows(&truth);
    let ratio = peer.seconds / ours.wall.as_secs_f64();
    let rows_per_s = ours.rows as f64 / ours.wall.as_secs_f64();
    rows.push((
        format!("full sync ({transactions} transactions, {orders} orders): wall time, every row stored ({}), rows/s, worker peak RSS", ours.rows),
        format!("{:.2} s, {rows_per_s:.0} rows/s, {:.1} MiB", ours.wall.as_secs_f64(), ours.peak_mib),
    ));
    rows.push((
        format!("like for like: the same {same_rows} rows (transactions, orders, legs, fills), checked on both sides; ours / the peer's (fetch + write)"),
        format!("{:.2} s / {:.2} s ({:.2} + {:.2}) = {ratio:.2}x", ours.wall.as_secs_f64(), peer.seconds, peer.fetch_seconds, peer.write_seconds),
    ));
    rows.push((
        "columns written per table: ours / the peer's (what the SDK's models carry)".to_owned(),
        columns_compared(&ours.db, &peer.columns).await,
    ));
    for (entity, parts) in ours.spent.as_object().into_iter().flatten() {
        let ms = |part: &str| parts[part].as_u64().unwrap_or(0);
        rows.push((
            format!("where the time went: {entity} (busy time; the entities overlap)"),
            format!(
                "waiting for pages {} ms, parsing {} ms, writing {} ms",
                ms("fetch_ms"),
                ms("parse_ms"),
                ms("write_ms")
            ),
        ));
    }

    // 1b. A transactions-only account, as a new user's often is.
    let only_transactions = simulator(transactions, 0).await;
    let only_aws = TestAws::provisioned_with(&oauth(&only_transactions)).await;
    let only_env = stack_env(&only_transactions, &only_aws);
    let ours_tx = worker_full_sync(&only_transactions, &only_aws, &only_env, 0).await;
    let number_tx = &only_transactions.credentials.account_numbers[0];
    let truth_tx = only_transactions.simulator.truth(number_tx).expect("truth");
    let peer_tx = python_peer(&only_transactions, &truth_tx).await;
    let ratio_tx = peer_tx.seconds / ours_tx.wall.as_secs_f64();
    rows.push((
        format!(
            "like for like, transactions only: the same {} rows; ours / the peer's",
            history_rows(&truth_tx)
        ),
        format!(
            "{:.2} s / {:.2} s = {ratio_tx:.2}x",
            ours_tx.wall.as_secs_f64(),
            peer_tx.seconds
        ),
    ));

    // 2. An incremental sync with nothing new, in this process.
    let idle = idle_incremental(&ours.db, &aws, &sim).await;
    rows.push((
        "incremental, nothing new: broker calls / rows written / wall time".to_owned(),
        format!(
            "{} / {} / {:.2} s",
            idle.calls,
            idle.written,
            idle.wall.as_secs_f64()
        ),
    ));
    rows.push((
        "incremental, nothing new: the calls by endpoint".to_owned(),
        idle.endpoints.clone(),
    ));

    // 3. The full sync again, on a database of its own, with latency on every response.
    let latency = latency_run(&sim).await;
    let over_concurrent = latency.wall.as_secs_f64() / latency.concurrent_floor.as_secs_f64();
    let over_sequential = latency.wall.as_secs_f64() / latency.sequential_floor.as_secs_f64();
    rows.push((
        format!("full sync with {} ms per response: wall / concurrent floor ({} requests, {} at a time) / sequential floor", latency.latency_ms, latency.requests, latency.concurrency),
        format!("{:.1} s / {:.1} s / {:.1} s", latency.wall.as_secs_f64(), latency.concurrent_floor.as_secs_f64(), latency.sequential_floor.as_secs_f64()),
    ));
    rows.push((
        format!(
            "full sync with {} ms per response: the broker's mean answer time, arrival to answer",
            latency.latency_ms
        ),
        format!("{:.1} ms", latency.answer_ms),
    ));

    // 4. Growth: transactions-only accounts of 10k and 100k (above), and 1M when asked.
    let mut growth = vec![(10_000, None), (transactions, Some(&ours_tx))];
    let scale = std::env::var("BENCH_SCALE").as_deref() == Ok("1");
    if scale {
        growth.push((1_000_000, None));
    }
    let mut growth_json = serde_json::Map::new();
    for (size, done) in growth {
        let measured = match done {
            Some(run) => (run.rows, run.wall, run.peak_mib),
            None => {
                let sim = simulator(size, 0).await;
                let aws = TestAws::provisioned_with(&oauth(&sim)).await;
                let run = worker_full_sync(&sim, &aws, &stack_env(&sim, &aws), 0).await;
                (run.rows, run.wall, run.peak_mib)
            }
        };
        let (stored, wall, peak) = measured;
        let per_s = stored as f64 / wall.as_secs_f64();
        rows.push((
            format!("growth: {size} transactions only ({stored} rows): rows/s, worker peak RSS"),
            format!("{per_s:.0} rows/s, {peak:.1} MiB"),
        ));
        growth_json.insert(
            size.to_string(),
            json!({"rows_per_s": per_s.round(), "peak_rss_mib": round1(peak)}),
        );
    }

    let mut targets = vec![
        Target {
            figure: "like-for-like rows/s over the Python path (same rows, both checked)",
            today: "0.93x (1.0x transactions only)",
            target: ">= 3x, aiming at 5x",
            measured: format!("{ratio:.2}x ({ratio_tx:.2}x transactions only)"),
        },
        Target {
            figure: "full sync, 100k transactions + 20k orders, rows/s",
            today: "21.9k",
            target: ">= 50k",
            measured: format!("{:.1}k", rows_per_s / 1000.0),
        },
        Target {
            figure: "80 ms per response: wall time over the floor",
            today: "1.68-1.90 of the sequential floor",
            target: "<= 1.2 of the concurrent floor, <= 0.4 of the sequential one",
            measured: format!(
                "{over_concurrent:.2} of the concurrent floor, {over_sequential:.2} of the sequential one"
            ),
        },
        Target {
            figure: "idle incremental: broker calls / rows written",
            today: "20 / 0",
            target: "<= 7 / 0",
            measured: format!("{} / {}", idle.calls, idle.written),
        },
        Target {
            figure: "worker peak RSS during the 100k sync",
            today: "50.3 MiB",
            target: "<= 64 MiB",
            measured: format!("{:.1} MiB", ours.peak_mib),
        },
    ];
    json.extend([
        ("like_for_like_ratio".to_owned(), json!(round2(ratio))),
        (
            "like_for_like_ratio_transactions_only".to_owned(),
            json!(round2(ratio_tx)),
        ),
        ("rows_per_s".to_owned(), json!(rows_per_s.round())),
        (
            "latency_wall_over_concurrent_floor".to_owned(),
            json!(round2(over_concurrent)),
        ),
        (
            "latency_wall_over_sequential_floor".to_owned(),
            json!(round2(over_sequential)),
        ),
        (
            "latency_broker_answer_ms".to_owned(),
            json!(round2(latency.answer_ms)),
        ),
        ("idle_calls".to_owned(), json!(idle.calls)),
        ("idle_rows_written".to_owned(), json!(idle.written)),
        (
            "worker_peak_rss_mib".to_owned(),
            json!(round1(ours.peak_mib)),
        ),
        ("growth".to_owned(), growth_json.into()),
        ("spent".to_owned(), ours.spent.clone()),
    ]);

    if only != "sync" {
        // 5. Function binaries: size and time to ready.
        // The functions start against the like-for-like run's database.
        let env = env.clone().with("DATABASE_URL", ours.db.url.clone());
        let binaries = startup_times(&env).await;
        let largest = binaries.iter().map(|b| b.bytes).max().unwrap_or(0) as f64 / 1_048_576.0;
        targets.push(Target {
            figure: "largest function binary, stripped",
            today: "16.6 MiB",
            target: "<= 8 MiB",
            measured: format!("{largest:.1} MiB"),
        });
        json.insert("max_binary_mib".to_owned(), json!(round1(largest)));
        let slowest = binaries.iter().map(|b| b.ready).max().unwrap_or_default();
        json.insert(
            "max_start_to_ready_ms".to_owned(),
            json!(round1(slowest.as_secs_f64() * 1000.0)),
        );
        for binary in &binaries {
            rows.push((
                format!(
                    "binary {}: stripped size, start to ready (median of 5)",
                    binary.name
                ),
                format!(
                    "{:.1} MiB, {:.1} ms",
                    binary.bytes as f64 / 1_048_576.0,
                    binary.ready.as_secs_f64() * 1000.0
                ),
            ));
        }

        // 6. The API through the local gateway. The queue is emptied first, so that the
        // gateway's worker has nothing to sync while it is measured.
        purge(&aws).await;
        let api = gateway_latencies(&env, &aws, &idle.owner, idle.task_id, idle.account_id).await;
        for (route, p50, p99) in &api {
            rows.push((
                format!("gateway, warm: {route} p50 / p99"),
                format!(
                    "{:.2} ms / {:.2} ms",
                    p50.as_secs_f64() * 1000.0,
                    p99.as_secs_f64() * 1000.0
                ),
            ));
        }

        // 7. Scheduler fan-out, on a database and queue of its own.
        rows.extend(scheduler_fan_out().await);

        // 8. Near-real-time.
        let (realtime_rows, realtime_json) = realtime_rows(&realtime::figures().await);
        rows.extend(realtime_rows);
        json.extend(realtime_json);
    }

    println!("| figure | today | target | measured |");
    println!("|---|---|---|---|");
    for t in &targets {
        println!(
            "| {} | {} | {} | {} |",
            t.figure, t.today, t.target, t.measured
        );
    }
    println!();
    print_table(&rows);
    println!("bench-json {}", serde_json::Value::Object(json));
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn print_table(rows: &[(String, String)]) {
    println!("| figure | value |");
    println!("|---|---|");
    for (figure, value) in rows {
        println!("| {figure} | {value} |");
    }
}

fn oauth(sim: &tastytrade_sim::server::Running) -> serde_json::Value {
    json!({"client_id": sim.credentials.client_id, "client_secret": sim.credentials.client_secret})
}

/// The functions' environment for `sim` and `aws` (its database is set per run).
fn stack_env(sim: &tastytrade_sim::server::Running, aws: &TestAws) -> Env {
    // The worker process runs with the deployment's allocator settings.
    let allocator = tastysync_local::provision::ALLOCATOR_ENV;
    Env::from_pairs(allocator.into_iter().chain([
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
        ("TASTYTRADE_SANDBOX_URL", sim.credentials.base_url.as_str()),
    ]))
}

/// Empties the stack's queue. SQS allows one purge of a queue a minute: a second one within
/// it (the gateway's, a minute after the full sync's on a fast machine) waits its turn.
async fn purge(aws: &TestAws) {
    let started = Instant::now();
    loop {
        let purged = (aws.sqs().purge_queue())
            .queue_url(&aws.stack.queue_url)
            .send()
            .await;
        match purged {
            Ok(_) => return,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_purge_queue_in_progress())
                    && started.elapsed() < Duration::from_secs(90) =>
            {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Err(e) => panic!("purge: {e:?}"),
        }
    }
}

/// The rows the peer writes as well: transactions, orders, their legs and fills.
fn history_rows(truth: &serde_json::Value) -> i64 {
    let n = |v: &serde_json::Value| v.as_i64().unwrap_or(0);
    n(&truth["transactions"]["count"])
        + n(&truth["orders"]["count"])
        + n(&truth["orders"]["legs"])
        + n(&truth["orders"]["fills"])
}

/// A full sync by the release worker process, of the simulator's one account linked into a
/// database of its own, checked equal to the truth.
struct WorkerRun {
    db: TestDb,
    wall: Duration,
    peak_mib: f64,
    /// Every row stored, in every synced table.
    rows: i64,
    spent: serde_json::Value,
    /// The requests the broker received from the worker, and the most of them it had in flight
    /// at once.
    requests: u64,
    most_in_flight: usize,
    /// The broker's mean time from a request's arrival to its answer, as the simulator saw it.
    answer_ms: f64,
}

/// The full sync, with `latency_ms` added to every broker response once the account is linked.
async fn worker_full_sync(
    sim: &tastytrade_sim::server::Running,
    aws: &TestAws,
    env: &Env,
    latency_ms: u64,
) -> WorkerRun {
    use tokio::io::AsyncBufReadExt;
    let db = TestDb::migrated().await;
    let env = env.clone().with("DATABASE_URL", db.url.clone());
    // Only this link's full sync is waiting for the worker.
    purge(aws).await;
    link_simulated_grant(sim, aws, &env).await;
    sim.simulator.set_faults(tastytrade_sim::server::Faults {
        latency_ms,
        ..Default::default()
    });
    sim.simulator.clear_requests();
    let worker = std::env::current_exe()
        .expect("own path")
        .with_file_name("sync-worker");
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let mut child = tokio::process::Command::new(&worker)
        .envs(env.vars())
        .env("SYNC_INVOCATION_SECONDS", "900")
        .env("RUST_LOG", "warn,tastysync::spent=info")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", worker.display()));
    let pid = child.id().expect("the worker runs");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("piped")).lines();
    let spent = tokio::spawn(async move {
        let mut spent = serde_json::Value::Null;
        while let Ok(Some(line)) = lines.next_line().await {
            // The worker's log is coloured: its escape sequences out first.
            let mut plain = String::with_capacity(line.len());
            let mut escaped = false;
            for c in line.chars() {
                match (escaped, c) {
                    (false, '\u{1b}') => escaped = true,
                    (true, 'm') => escaped = false,
                    (false, c) => plain.push(c),
                    (true, _) => {}
                }
            }
            let line = plain;
            if let Some(at) = line.find("spent=") {
                let mut values = serde_json::Deserializer::from_str(&line[at + 6..])
                    .into_iter::<serde_json::Value>();
                if let Some(Ok(value)) = values.next() {
                    spent = value;
                }
            }
        }
        spent
    });
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
            started.elapsed() < Duration::from_secs(3600),
            "the sync did not finish"
        );
        // Often: the wait past the sync's end is counted in its wall time.
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let wall = started.elapsed();
    peak = peak.max(peak_rss_kib(pid).unwrap_or(0));
    sim.simulator
        .set_faults(tastytrade_sim::server::Faults::default());
    let received = sim.simulator.requests();
    let requests = received.len() as u64;
    if let (Ok(path), true) = (std::env::var("BENCH_TIMELINE"), latency_ms > 0) {
        write_timeline(&path, started_at, wall, &received);
    }
    let answer_ms = received
        .iter()
        .map(|r| (r.answered - r.at).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        .sum::<f64>()
        / requests.max(1) as f64;
    let most_in_flight = sim
        .simulator
        .most_in_flight()
        .into_values()
        .max()
        .unwrap_or(0);
    // The log line is written before the account's status: a moment for it to arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = child.kill().await;
    let spent = spent.await.unwrap_or_default();
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
    WorkerRun {
        db,
        wall,
        peak_mib: peak as f64 / 1024.0,
        rows,
        spent,
        requests,
        answer_ms,
        most_in_flight,
    }
}

/// `BENCH_TIMELINE=<file>`: the latency run's requests, one a line (arrival and answer in ms
/// after the worker was started, then the request), under a first line with the wall time:
/// where the grant's requests sat idle.
fn write_timeline(
    path: &str,
    started_at: chrono::DateTime<chrono::Utc>,
    wall: Duration,
    received: &[tastytrade_sim::server::Recorded],
) {
    let ms = |t: chrono::DateTime<chrono::Utc>| {
        (t - started_at).num_microseconds().unwrap_or(0) as f64 / 1000.0
    };
    let mut out = format!("wall {:.1}\n", wall.as_secs_f64() * 1000.0);
    for r in received {
        let (at, answered) = (ms(r.at), ms(r.answered));
        out += &format!(
            "{at:.1} {answered:.1} {} {} {:?}\n",
            r.method, r.path, r.query
        );
    }
    std::fs::write(path, out).unwrap();
}

/// The peer's run (`infra/local/baseline.py`) on a database of its own, its rows checked
/// against the truth by the assertions ours pass.
struct PeerRun {
    seconds: f64,
    fetch_seconds: f64,
    write_seconds: f64,
    columns: serde_json::Value,
}

async fn python_peer(sim: &tastytrade_sim::server::Running, truth: &serde_json::Value) -> PeerRun {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let db = TestDb::migrated().await;
    let account_id = uuid::Uuid::new_v4();
    let output = tokio::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("infra/local/baseline.py"))
        .env("TT_BASE_URL", &sim.credentials.base_url)
        .env("TT_SECRET", &sim.credentials.client_secret)
        .env("TT_REFRESH", &sim.credentials.refresh_token)
        .env("DATABASE_URL", &db.url)
        .env("PEER_ACCOUNT_ID", account_id.to_string())
        .output()
        .await
        .expect("the project virtualenv's Python runs");
    assert!(
        output.status.success(),
        "the peer failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the peer reports JSON");
    // The peer's figure counts only if it stored what the broker holds, as ours does.
    let client = db.client().await;
    client
        .batch_execute("SET search_path TO peer, public")
        .await
        .unwrap();
    tastysync_tests::truth::assert_history_equals_truth(&client, truth, account_id).await;
    let seconds = |key: &str| report[key].as_f64().expect("seconds");
    PeerRun {
        seconds: seconds("seconds"),
        fetch_seconds: seconds("fetch_seconds"),
        write_seconds: seconds("write_seconds"),
        columns: report["columns"].clone(),
    }
}

/// Per table, how many columns we write (all of the table's) and how many the peer wrote.
async fn columns_compared(db: &TestDb, peer: &serde_json::Value) -> String {
    let client = db.client().await;
    let mut out = Vec::new();
    for table in ["transactions", "orders", "order_legs", "order_fills"] {
        let ours: i64 = client
            .query_one(
                "SELECT count(*) FROM information_schema.columns
                 WHERE table_schema = 'public' AND table_name = $1",
                &[&table],
            )
            .await
            .unwrap()
            .get(0);
        out.push(format!("{table} {ours} / {}", peer[table]));
    }
    out.join(", ")
}

struct Idle {
    endpoints: String,
    calls: u64,
    written: u64,
    wall: Duration,
    owner: String,
    account_id: uuid::Uuid,
    task_id: uuid::Uuid,
}

/// An incremental sync of the account `db` holds, fully synced, with nothing new at the broker.
async fn idle_incremental(
    db: &TestDb,
    aws: &TestAws,
    sim: &tastytrade_sim::server::Running,
) -> Idle {
    let (account_id, owner) = linked_account(db).await;
    let deps = in_process_worker(db, aws, &sim.credentials);
    let task = NewTask::new(&owner, account_id, TaskKind::Incremental);
    deps.tasks.create(&task).await.expect("task");
    sim.simulator.clear_requests();
    let started = Instant::now();
    let outcome = sync::run(&deps, &task.message(), None)
        .await
        .expect("incremental sync");
    let wall = started.elapsed();
    let Outcome::Completed(counts) = outcome else {
        panic!("incremental sync ended {outcome:?}")
    };
    // The endpoints called, account numbers and ids left out.
    let mut endpoints = std::collections::BTreeMap::<String, usize>::new();
    for request in sim.simulator.requests() {
        let shape: Vec<&str> = (request.path.split('/'))
            .map(|part| {
                let numbered = part.chars().any(|c| c.is_ascii_digit());
                if numbered { "{n}" } else { part }
            })
            .collect();
        *endpoints.entry(shape.join("/")).or_default() += 1;
    }
    Idle {
        endpoints: format!("{endpoints:?}"),
        calls: Stats::get(&deps.broker.stats().requests),
        written: counts.total_written(),
        wall,
        owner,
        account_id,
        task_id: task.task_id,
    }
}

/// Ticks of an hour over many accounts, a consumer draining the queue as the workers would.
async fn scheduler_fan_out() -> Vec<(String, String)> {
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
    let (mut queued, mut slowest) = (0, Duration::ZERO);
    let started = Instant::now();
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
        queued += report.queued;
    }
    let elapsed = started.elapsed();
    let consumed = consumer.finish().await;
    let mut per_account = std::collections::HashMap::<&str, usize>::new();
    for message in &consumed {
        *per_account.entry(message.group.as_str()).or_default() += 1;
    }
    let twice = per_account.values().filter(|&&n| n > 1).count();
    vec![
        (
            format!("scheduler: {ticks} ticks over {scheduled} accounts (emulator)"),
            format!(
                "{:.1} s in all, slowest tick {:.1} s",
                elapsed.as_secs_f64(),
                slowest.as_secs_f64()
            ),
        ),
        (
            "scheduler: queued / consumed / accounts consumed twice".to_owned(),
            format!("{queued} / {} / {twice}", consumed.len()),
        ),
    ]
}

struct LatencyRun {
    latency_ms: u64,
    wall: Duration,
    requests: u64,
    answer_ms: f64,
    concurrency: usize,
    /// The requests `concurrency` at a time, each taking the latency.
    concurrent_floor: Duration,
    /// The requests one at a time.
    sequential_floor: Duration,
}

/// The full sync by the worker process, as in the like-for-like run, with `latency_ms` on every
/// broker response. The worker runs apart from the simulator, as it runs apart from the broker:
/// in one process they would share the runtime's two threads, and a page being printed would
/// hold back the worker's handling of the pages that arrived.
async fn latency_run(sim: &tastytrade_sim::server::Running) -> LatencyRun {
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
    // A stack of its own: its queue holds only this link's sync.
    let aws = TestAws::provisioned_with(&oauth(sim)).await;
    let env = stack_env(sim, &aws);
    let run = worker_full_sync(sim, &aws, &env, latency_ms).await;
    // The worker inherits this process's environment.
    let concurrency = size(
        "SYNC_GRANT_CONCURRENCY",
        SyncSettings::default().grant_concurrency,
    );
    assert!(
        run.most_in_flight <= concurrency,
        "the grant had {} requests in flight at once, more than {concurrency}",
        run.most_in_flight
    );
    let rounds = run.requests.div_ceil(concurrency as u64);
    LatencyRun {
        latency_ms,
        wall: run.wall,
        requests: run.requests,
        answer_ms: run.answer_ms,
        concurrency,
        concurrent_floor: Duration::from_millis(latency_ms * rounds),
        sequential_floor: Duration::from_millis(latency_ms * run.requests),
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
        .with("SYNC_QUEUE_ARN", aws.stack.queue_arn.clone())
        // One user's thousands of calls a minute, far past the per-user limit (600): each is
        // still counted (its DynamoDB update is in the figures), none refused.
        .with("USER_LIMIT_READS_PER_MINUTE", "1000000");
    let running = tastysync_local::gateway::start(&env, &aws.sdk, ([127, 0, 0, 1], 0).into())
        .await
        .expect("the gateway starts");
    let token = tastysync_local::gateway::dev_token(&env, owner, Duration::from_secs(3600));
    let http = tastysync_shared::tls::http()
        .build()
        .expect("an HTTP client");
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
