//! `make bench`, near-real-time: the release `account-streamer` and `sync-worker` binaries
//! against the simulator's account streamer.
//!
//! 1. Fill latency: `BENCH_FILLS` (200) fills, ten a second, on one linked account; for each,
//!    the time from the simulator's fill to its filled order row in Postgres (pushed, stored by
//!    the streamer) and to its last trade transaction row (read by the realtime sync the
//!    streamer queued). p50, p99 and max of each.
//! 2. Scale: `BENCH_STREAMER_GRANTS` (1,000) grants of one account each on one shard: the time
//!    until every socket is open, the streamer's peak resident memory, and its CPU time per
//!    notification over one balance change per account (each checked stored against the
//!    simulator's truth before a figure is printed).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use tastysync_shared::config::Env;
use tastysync_shared::routes::link;
use tastysync_shared::wiring::{Function, LinkAccount};
use tastysync_tests::{TestAws, TestDb, event, request};
use tastytrade_sim::Activity;
use tastytrade_sim::data::Sizes;
use tastytrade_sim::server::{Config, Running};

pub struct Figures {
    pub fills: usize,
    pub fill_to_order: Percentiles,
    pub fill_to_transaction: Percentiles,
    pub grants: usize,
    pub connect_all: Duration,
    pub peak_rss_mib: f64,
    pub notifications: usize,
    pub cpu_per_notification: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Percentiles {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let at = |q: f64| {
            let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len());
            samples[index - 1]
        };
        Self {
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

pub async fn figures() -> Figures {
    let fills = super::size("BENCH_FILLS", 200);
    let grants = super::size("BENCH_STREAMER_GRANTS", 1_000);
    let (fill_to_order, fill_to_transaction) = fill_latency(fills).await;
    let (grants, connect_all, peak_rss_mib, cpu_per_notification) = many_grants(grants).await;
    Figures {
        fills,
        fill_to_order,
        fill_to_transaction,
        grants,
        connect_all,
        peak_rss_mib,
        notifications: grants,
        cpu_per_notification,
    }
}

/// A simulator of `accounts`, a database and a stack, with every account linked by its own
/// grant (one account per grant, as separate customers would have).
struct World {
    sim: Running,
    db: TestDb,
    aws: TestAws,
}

async fn world(accounts: usize, transactions: usize) -> World {
    let sim = tastytrade_sim::Simulator::spawn(Config {
        seed: 5,
        sizes: Sizes {
            accounts,
            transactions,
            orders: 2,
            years: 1,
        },
        ..Config::default()
    })
    .await
    .expect("the simulator starts");
    let db = TestDb::migrated().await;
    let oauth = json!({"client_id": sim.credentials.client_id, "client_secret": sim.credentials.client_secret});
    let aws = TestAws::provisioned_with(&oauth).await;
    let env = Env::from_pairs([
        ("DATABASE_URL", db.url.as_str()),
        ("TOKEN_KMS_KEY_ID", aws.stack.kms_key_arn.as_str()),
        ("TASKS_TABLE", aws.stack.table.as_str()),
        ("SYNC_QUEUE_URL", aws.stack.queue_url.as_str()),
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
    ]);
    let deps = LinkAccount::from_env(&env, &aws.sdk_of(Function::LinkAccount))
        .await
        .expect("link dependencies");
    let numbers = sim.credentials.account_numbers.clone();
    for chunk in numbers.chunks(16) {
        let links = chunk.iter().map(|number| {
            let refresh_token = sim.simulator.grant_for(&[number.as_str()]);
            let mut link_event = event("link-personal-grant.json");
            link_event["body"] = json!({
                "environment": "sandbox",
                "refresh_token": refresh_token,
                "client_secret": sim.credentials.client_secret,
            })
            .to_string()
            .into();
            let deps = &deps;
            async move {
                let linked = link::link(deps, &request(&link_event))
                    .await
                    .expect("links");
                assert_eq!(linked.status(), 201);
            }
        });
        futures_util::future::join_all(links).await;
    }
    World { sim, db, aws }
}

/// The release binary `name` beside this one, against `w`'s stack and simulator.
fn function(w: &World, name: &str) -> tokio::process::Command {
    let binary = std::env::current_exe()
        .expect("own path")
        .with_file_name(name);
    let sim = &w.sim.credentials;
    let mut command = tokio::process::Command::new(&binary);
    command
        .env("DATABASE_URL", &w.db.url)
        .env("DATABASE_MAX_CONNECTIONS", "8")
        .env("TOKEN_KMS_KEY_ID", &w.aws.stack.kms_key_arn)
        .env("TASKS_TABLE", &w.aws.stack.table)
        .env("SYNC_QUEUE_URL", &w.aws.stack.queue_url)
        .env("SYNC_QUEUE_ARN", &w.aws.stack.queue_arn)
        .env("EVENT_BUS_NAME", &w.aws.stack.event_bus)
        .env("TASTYTRADE_SANDBOX_URL", &sim.base_url)
        .env("TASTYTRADE_SANDBOX_STREAMER_URL", &sim.streamer_url)
        .env("SYNC_INVOCATION_SECONDS", "120")
        .env("STREAMER_TICK_SECONDS", "1")
        // Every grant on one shard, as the figure says (the deployment's shards hold 500).
        .env("STREAMER_GRANTS_PER_SHARD", "100000")
        .env("RUST_LOG", "warn")
        // Its metrics (EMF lines) would bury the table.
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

/// Each fill's time to its order row and to its transaction rows.
async fn fill_latency(fills: usize) -> (Percentiles, Percentiles) {
    let w = world(1, 200).await;
    let number = w.sim.credentials.account_numbers[0].clone();
    let mut worker = function(&w, "sync-worker")
        .spawn()
        .expect("the worker starts");
    // The link's full sync first, so that only realtime syncs remain.
    wait_for(
        &w.db,
        "SELECT count(*) FROM tastytrade_accounts WHERE last_sync_status = 'SUCCESS'",
        1,
    )
    .await;
    let mut streamer = function(&w, "account-streamer")
        .spawn()
        .expect("the streamer starts");
    while w.sim.simulator.streamer_connections() < 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = w.db.client().await;
    // Fill id → (fill time, order id, its transactions).
    let mut pending: Vec<(Instant, i64, Vec<i64>)> = Vec::with_capacity(fills);
    let mut to_order: HashMap<i64, Duration> = HashMap::new();
    let mut to_transactions: HashMap<i64, Duration> = HashMap::new();
    let one = Activity {
        trades: 1,
        ..Activity::default()
    };
    let started = Instant::now();
    let mut next_fill = Instant::now();
    while to_transactions.len() < fills {
        if pending.len() < fills && Instant::now() >= next_fill {
            let outcome = w.sim.simulator.add_activity(&number, &one).expect("a fill");
            pending.push((
                Instant::now(),
                outcome.traded_orders[0],
                outcome.trade_transactions.clone(),
            ));
            next_fill += Duration::from_millis(100);
        }
        let orders: Vec<i64> = pending
            .iter()
            .filter(|(_, order, _)| !to_order.contains_key(order))
            .map(|(_, order, _)| *order)
            .collect();
        let stored: Vec<i64> = client
            .query(
                "SELECT tastytrade_order_id FROM orders
                 WHERE tastytrade_order_id = ANY($1) AND status = 'Filled'",
                &[&orders],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let waiting: Vec<i64> = pending
            .iter()
            .filter(|(_, order, _)| !to_transactions.contains_key(order))
            .flat_map(|(_, _, txs)| txs.iter().copied())
            .collect();
        let stored_transactions: Vec<i64> = client
            .query(
                "SELECT tastytrade_transaction_id FROM transactions
                 WHERE tastytrade_transaction_id = ANY($1)",
                &[&waiting],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        for (filled_at, order, txs) in &pending {
            if stored.contains(order) {
                to_order
                    .entry(*order)
                    .or_insert_with(|| filled_at.elapsed());
            }
            if !to_transactions.contains_key(order)
                && txs.iter().all(|t| stored_transactions.contains(t))
            {
                to_transactions.insert(*order, filled_at.elapsed());
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{} of {fills} fills' transactions stored after five minutes",
            to_transactions.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // No more syncs queued; the worker ends those still on the queue before the check.
    let _ = streamer.kill().await;
    wait_idle(&w).await;
    let _ = worker.kill().await;
    assert_eq!(to_order.len(), fills, "every fill's order stored");
    let truth = w.sim.simulator.truth(&number).expect("truth");
    tastysync_tests::truth::assert_database_equals_truth(&client, &truth, &number).await;
    (
        Percentiles::of(to_order.into_values().collect()),
        Percentiles::of(to_transactions.into_values().collect()),
    )
}

/// Until the queue is empty and the account's last sync has ended.
async fn wait_idle(w: &World) {
    let client = w.db.client().await;
    let started = Instant::now();
    loop {
        let attributes = w
            .aws
            .sqs()
            .get_queue_attributes()
            .queue_url(&w.aws.stack.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .unwrap_or_default();
        let count = |name| {
            attributes
                .get(&name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let queued = count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            + count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible);
        let status: String = client
            .query_one("SELECT last_sync_status FROM tastytrade_accounts", &[])
            .await
            .unwrap()
            .get(0);
        if queued == 0 && status != "RUNNING" {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the worker never went idle"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_for(db: &TestDb, sql: &str, expected: i64) {
    let client = db.client().await;
    let started = Instant::now();
    loop {
        let count: i64 = client.query_one(sql, &[]).await.unwrap().get(0);
        if count >= expected {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{sql}: {count} of {expected}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The process's user and system CPU time so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime are the 12th and
    // 13th of them, in clock ticks (100 a second on Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// `grants` grants on one shard: how many are open (closed accounts are not streamed), the
/// time to connect them all, peak memory, CPU per notification.
async fn many_grants(grants: usize) -> (usize, Duration, f64, Duration) {
    let w = world(grants, 2).await;
    // The links queued full syncs nobody here runs: only the streamer is measured.
    w.aws
        .sqs()
        .purge_queue()
        .queue_url(&w.aws.stack.queue_url)
        .send()
        .await
        .expect("purge");
    // Closed accounts are not streamed (nor synced on schedule): the open ones are the grants.
    let client = w.db.client().await;
    let open: Vec<String> = client
        .query(
            "SELECT account_number FROM tastytrade_accounts WHERE NOT is_closed",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let grants = open.len();
    let started = Instant::now();
    let mut streamer = function(&w, "account-streamer")
        .spawn()
        .expect("the streamer starts");
    let pid = streamer.id().expect("the streamer runs");
    let mut peak = 0;
    while w.sim.simulator.streamer_connections() < grants {
        peak = peak.max(super::peak_rss_kib(pid).unwrap_or(0));
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{} of {grants} grants connected after ten minutes",
            w.sim.simulator.streamer_connections()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_all = started.elapsed();
    // Settle: the gap syncs of every connect are queued before the CPU is counted.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = cpu_time(pid);
    let change = Activity {
        cash_change_cents: 1_000,
        ..Activity::default()
    };
    let mut expected = HashMap::new();
    for number in &open {
        w.sim
            .simulator
            .add_activity(number, &change)
            .expect("a balance change");
        let truth = w.sim.simulator.truth(number).expect("truth");
        let cash = truth["balances"][0]["cash-balance"]
            .as_str()
            .unwrap()
            .to_owned();
        expected.insert(number.clone(), cash);
    }
    let stored_at = Instant::now();
    loop {
        peak = peak.max(super::peak_rss_kib(pid).unwrap_or(0));
        let rows = client
            .query(
                "SELECT a.account_number, b.cash_balance::text FROM account_balances b
                 JOIN tastytrade_accounts a ON a.id = b.account_id
                 WHERE b.removed_at IS NULL AND b.currency = 'USD' AND NOT a.is_closed",
                &[],
            )
            .await
            .unwrap();
        let equal = rows
            .iter()
            .filter(|r| {
                let number: String = r.get(0);
                let cash: String = r.get(1);
                expected
                    .get(&number)
                    .is_some_and(|e| e.parse::<rust_decimal::Decimal>().ok() == cash.parse().ok())
            })
            .count();
        if equal == grants {
            break;
        }
        assert!(
            stored_at.elapsed() < Duration::from_secs(300),
            "{equal} of {grants} balances stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu = cpu_time(pid).saturating_sub(before);
    peak = peak.max(super::peak_rss_kib(pid).unwrap_or(0));
    let _ = streamer.kill().await;
    (
        grants,
        connect_all,
        peak as f64 / 1024.0,
        cpu / u32::try_from(grants).unwrap_or(1),
    )
}
