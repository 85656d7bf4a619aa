//! The sync worker against Postgres, moto and the simulator: the database must end equal to
//! the simulator's truth.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::Value;
use sync_worker::local::Poller;
use tastysync_shared::secrets::KmsEnvelope;
use tastysync_shared::sync::{SyncDeps, SyncSettings};
use tastysync_shared::tasks::{Counts, DynamoTasks, NewTask, SqsQueue, TaskKind, TaskStore};
use tastysync_shared::tastytrade::client::Stats;
use tastysync_shared::tastytrade::{BrokerConfig, RetryPolicy, TastytradeClient};
use tastytrade_sim::Activity;
use tastytrade_sim::data::Sizes;
use uuid::Uuid;

use crate::link::{World, link_personal, world_with};

pub(crate) fn worker(w: &World) -> SyncDeps<KmsEnvelope, DynamoTasks, SqsQueue> {
    let mut config = BrokerConfig::for_base_url(w.sim.credentials.base_url.parse().unwrap());
    config.retry = RetryPolicy {
        max_attempts: 6,
        base_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(50),
        max_elapsed: Duration::from_secs(20),
    };
    SyncDeps {
        pool: w.db.pool.clone(),
        broker: TastytradeClient::new(config).unwrap(),
        cipher: KmsEnvelope::new(
            aws_sdk_kms::Client::new(&w.aws.sdk),
            &w.aws.stack.kms_key_arn,
        ),
        tasks: DynamoTasks::new(w.aws.dynamodb(), &w.aws.stack.table),
        queue: SqsQueue::new(w.aws.sqs(), &w.aws.stack.queue_url),
        oauth_client: None,
        settings: SyncSettings::default(),
    }
}

fn poller(w: &World, invocation_timeout: Duration) -> Poller {
    Poller {
        sqs: w.aws.sqs(),
        queue_url: w.aws.stack.queue_url.clone(),
        queue_arn: w.aws.stack.queue_arn.clone(),
        visibility: Some(Duration::from_secs(600)),
        invocation_timeout,
    }
}

/// Feeds the queue to the worker until it is empty (as the event source mapping would);
/// returns the ids reported as failed.
pub(crate) async fn drain(
    w: &World,
    deps: &SyncDeps<KmsEnvelope, DynamoTasks, SqsQueue>,
) -> Vec<String> {
    drain_with_timeout(w, deps, Duration::from_secs(120))
        .await
        .0
}

/// [`drain`] with each invocation given `timeout` before its deadline; also returns how many
/// invocations it took.
async fn drain_with_timeout(
    w: &World,
    deps: &SyncDeps<KmsEnvelope, DynamoTasks, SqsQueue>,
    timeout: Duration,
) -> (Vec<String>, usize) {
    let poller = poller(w, timeout);
    let mut invocations = 0;
    while let Some(polled) = poller.poll_once(deps).await.unwrap() {
        invocations += 1;
        assert!(
            invocations < 300,
            "the queue never drains: the sync makes no progress"
        );
        if !polled.failed.is_empty() {
            return (polled.failed, invocations);
        }
    }
    (Vec::new(), invocations)
}

async fn run_task(
    deps: &SyncDeps<KmsEnvelope, DynamoTasks, SqsQueue>,
    account_id: Uuid,
    kind: TaskKind,
) -> Counts {
    let task = NewTask::new("user-a", account_id, kind);
    deps.tasks.create(&task).await.unwrap();
    match tastysync_shared::sync::run(deps, &task.message(), None)
        .await
        .unwrap()
    {
        tastysync_shared::sync::Outcome::Completed(counts) => counts,
        other => panic!("the {kind:?} sync ended {other:?}"),
    }
}

async fn stored_ids(client: &tokio_postgres::Client, sql: &str, account_id: Uuid) -> BTreeSet<i64> {
    client
        .query(sql, &[&account_id])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn id_set(ids: &Value) -> BTreeSet<i64> {
    ids.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

/// Asserts the database holds exactly the simulator's truth for `account_number`.
async fn assert_database_equals_truth(w: &World, account_number: &str) {
    let truth = w.sim.simulator.truth(account_number).unwrap();
    let client = w.db.client().await;
    let id: Uuid = client
        .query_one(
            "SELECT id FROM tastytrade_accounts WHERE account_number = $1",
            &[&account_number],
        )
        .await
        .unwrap()
        .get(0);

    let ids = stored_ids(
        &client,
        "SELECT tastytrade_transaction_id FROM transactions WHERE account_id = $1",
        id,
    )
    .await;
    let truth_ids = id_set(&truth["transactions"]["ids"]);
    assert_eq!(ids.len(), truth_ids.len(), "transaction count");
    assert!(ids == truth_ids, "transaction ids differ");
    let sums = client
        .query_one("SELECT coalesce(sum(net_value), 0)::text, coalesce(sum(value), 0)::text FROM transactions WHERE account_id = $1", &[&id])
        .await
        .unwrap();
    let decimal = |v: &Value| Decimal::from_str(v.as_str().unwrap()).unwrap();
    assert_eq!(
        Decimal::from_str(sums.get(0)).unwrap(),
        decimal(&truth["transactions"]["net-value-sum"]),
        "sum of signed net values"
    );
    assert_eq!(
        Decimal::from_str(sums.get(1)).unwrap(),
        decimal(&truth["transactions"]["value-sum"]),
        "sum of signed values"
    );

    let order_ids = stored_ids(
        &client,
        "SELECT tastytrade_order_id FROM orders WHERE account_id = $1",
        id,
    )
    .await;
    let truth_orders = id_set(&truth["orders"]["ids"]);
    assert!(
        order_ids == truth_orders,
        "order ids differ ({} vs {})",
        order_ids.len(),
        truth_orders.len()
    );
    let count = |sql: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(sql, &[&id])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    assert_eq!(
        count("SELECT count(*) FROM order_legs WHERE account_id = $1").await,
        truth["orders"]["legs"].as_i64().unwrap()
    );
    assert_eq!(
        count("SELECT count(*) FROM order_fills WHERE account_id = $1").await,
        truth["orders"]["fills"].as_i64().unwrap()
    );

    let positions: BTreeSet<(String, String)> = client
        .query(
            "SELECT symbol, quantity::text FROM positions WHERE account_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get(0),
                Decimal::from_str(r.get(1)).unwrap().normalize().to_string(),
            )
        })
        .collect();
    let truth_positions: BTreeSet<(String, String)> = truth["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["symbol"].as_str().unwrap().to_owned(),
                decimal(&p["quantity"]).normalize().to_string(),
            )
        })
        .collect();
    assert_eq!(positions, truth_positions, "positions");
    assert_eq!(
        count("SELECT count(*) FROM account_balance_snapshots WHERE account_id = $1 AND time_of_day = 'EOD'").await,
        truth["snapshots"]["count"].as_i64().unwrap(),
        "EOD snapshots"
    );
    assert_eq!(
        count("SELECT count(*) FROM account_balances WHERE account_id = $1").await,
        truth["balances"].as_array().unwrap().len() as i64
    );
    let status: String = client
        .query_one(
            "SELECT last_sync_status FROM tastytrade_accounts WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "SUCCESS");
}

#[tokio::test]
async fn a_full_sync_of_100k_transactions_and_20k_orders_equals_the_truth() {
    let w = world_with(Sizes {
        accounts: 1,
        transactions: 100_000,
        orders: 20_000,
        years: 5,
    })
    .await;
    link_personal(&w, "user-a").await;
    let deps = worker(&w);

    let failed = drain(&w, &deps).await;

    assert!(failed.is_empty(), "{failed:?}");
    assert_database_equals_truth(&w, &w.sim.credentials.account_numbers[0]).await;
}

#[tokio::test]
async fn an_incremental_sync_catches_late_postings_fee_changes_reversals_fills_and_closed_positions()
 {
    let w = world_with(Sizes {
        accounts: 2,
        transactions: 3_000,
        orders: 400,
        years: 2,
    })
    .await;
    let linked = link_personal(&w, "user-a").await;
    let deps = worker(&w);
    assert!(drain(&w, &deps).await.is_empty());
    let number = w.sim.credentials.account_numbers[0].clone();
    let account_id: Uuid = linked
        .iter()
        .find(|a| a["account_number"] == number.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_database_equals_truth(&w, &number).await;

    let activity = Activity {
        transactions: 4,
        days_back: 3,
        finalize_fees: true,
        reversals: 1,
        fills: 3,
        close_positions: 1,
    };
    let outcome = w.sim.simulator.add_activity(&number, &activity).unwrap();
    assert!(
        outcome.finalized > 0,
        "the generated history has estimated fees to finalise"
    );
    let counts = run_task(&deps, account_id, TaskKind::Incremental).await;

    assert!(counts.total_written() > 0);
    assert_database_equals_truth(&w, &number).await;

    let refreshes = Stats::get(&deps.broker.stats().token_refreshes);
    let idle = run_task(&deps, account_id, TaskKind::Incremental).await;
    assert_eq!(
        Stats::get(&deps.broker.stats().token_refreshes),
        refreshes,
        "the access token cached (sealed) by the last sync was reused"
    );
    assert_eq!(
        idle.total_written(),
        0,
        "an incremental sync with nothing new rewrote {:?}",
        idle.written
    );
}

#[tokio::test]
async fn a_revoked_grant_ends_the_task_as_needs_reauth_without_retries() {
    let w = world_with(Sizes {
        accounts: 1,
        transactions: 50,
        orders: 10,
        years: 1,
    })
    .await;
    let linked = link_personal(&w, "user-a").await;
    w.sim.simulator.revoke(&w.sim.credentials.refresh_token);
    let deps = worker(&w);

    let failed = drain(&w, &deps).await;

    assert!(failed.is_empty(), "a dead grant is not retried: {failed:?}");
    let client = w.db.client().await;
    let id: Uuid = linked[0]["id"].as_str().unwrap().parse().unwrap();
    let (status, error): (String, Option<String>) = {
        let row = client
            .query_one(
                "SELECT last_sync_status, last_error FROM tastytrade_accounts WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(status, "NEEDS_REAUTH");
    assert!(error.unwrap().contains("link it again"));
    let tasks = crate::link::table_items(&w).await;
    assert!(
        tasks.iter().any(|t| t.contains("needs_reauth")),
        "{tasks:?}"
    );
    assert_eq!(
        Stats::get(&deps.broker.stats().requests),
        2,
        "one confirmation of invalid_grant, no retry storm"
    );
}

#[tokio::test]
async fn a_full_sync_past_its_deadline_continues_in_new_invocations_and_still_equals_the_truth() {
    let w = world_with(Sizes {
        accounts: 1,
        transactions: 12_000,
        orders: 1_500,
        years: 3,
    })
    .await;
    link_personal(&w, "user-a").await;
    let mut deps = worker(&w);
    deps.settings.deadline_margin = Duration::ZERO;

    // Every invocation is already at its deadline: it syncs one page, then hands over.
    let (failed, invocations) = drain_with_timeout(&w, &deps, Duration::ZERO).await;

    assert!(failed.is_empty(), "{failed:?}");
    assert!(invocations >= 6, "only {} continuations", invocations - 1);
    assert_database_equals_truth(&w, &w.sim.credentials.account_numbers[0]).await;
    let tasks = crate::link::table_items(&w).await;
    assert!(
        tasks
            .iter()
            .any(|t| t.contains("completed") && t.contains("resume_cursor")),
        "{tasks:?}"
    );
}

/// The worker binary (built by `make test` before the tests run).
fn worker_binary() -> std::path::PathBuf {
    let dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let binary = dir.join("sync-worker");
    assert!(
        binary.exists(),
        "{} is missing: run the tests through `make test`",
        binary.display()
    );
    binary
}

fn spawn_worker(w: &World, exit_when_idle: bool) -> tokio::process::Child {
    let mut command = worker_command(w);
    command.stdout(std::process::Stdio::null());
    if exit_when_idle {
        command.env("SYNC_EXIT_WHEN_IDLE", "6");
    }
    command.spawn().unwrap()
}

/// The worker binary in poll mode against the world's stack, with short invocations.
pub(crate) fn worker_command(w: &World) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(worker_binary());
    command
        .env("DATABASE_URL", &w.db.url)
        .env("TOKEN_KMS_KEY_ID", &w.aws.stack.kms_key_arn)
        .env("TASKS_TABLE", &w.aws.stack.table)
        .env("SYNC_QUEUE_URL", &w.aws.stack.queue_url)
        .env("SYNC_QUEUE_ARN", &w.aws.stack.queue_arn)
        .env("TASTYTRADE_PRODUCTION_URL", &w.sim.credentials.base_url)
        .env("TASTYTRADE_SANDBOX_URL", &w.sim.credentials.base_url)
        // A killed worker's message comes back after this long, as after a Lambda crash.
        // (Three: a live worker's message must not come back while a loaded machine is slow.)
        .env("SYNC_VISIBILITY_SECONDS", "3")
        // Invocations so short that each one syncs a page and hands over to a continuation:
        // kills land on many different messages, and none is received maxReceiveCount times
        // (which would rightly send it to the DLQ).
        .env("SYNC_INVOCATION_SECONDS", "1")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn a_worker_killed_again_and_again_mid_sync_still_ends_equal_to_the_truth() {
    let w = world_with(Sizes {
        accounts: 1,
        transactions: 30_000,
        orders: 3_000,
        years: 4,
    })
    .await;
    link_personal(&w, "user-a").await;
    let mut rng = fastrand::Rng::with_seed(5);

    // Ten in every run; `make soak` asks for fifty.
    let kills: usize = std::env::var("SOAK_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    for _ in 0..kills {
        let mut worker = spawn_worker(&w, false);
        // Long enough for the redelivered message to come back and the sync to get going.
        tokio::time::sleep(Duration::from_millis(rng.u64(3_200..5_500))).await;
        worker.kill().await.unwrap();
    }
    let mut last = spawn_worker(&w, true);
    let status = tokio::time::timeout(Duration::from_secs(300), last.wait())
        .await
        .unwrap()
        .unwrap();

    println!(
        "crash consistency: the worker was killed {kills} times at random points; checking the database against the truth"
    );
    assert!(status.success());
    assert_database_equals_truth(&w, &w.sim.credentials.account_numbers[0]).await;
    let dead = w
        .aws
        .sqs()
        .receive_message()
        .queue_url(&w.aws.stack.dlq_url)
        .send()
        .await
        .unwrap();
    assert!(
        dead.messages.unwrap_or_default().is_empty(),
        "a message reached the DLQ"
    );
}

#[tokio::test]
async fn a_full_sync_through_a_fault_storm_ends_equal_to_the_truth_with_retries_within_their_caps()
{
    let w = world_with(Sizes {
        accounts: 1,
        transactions: 20_000,
        orders: 2_000,
        years: 2,
    })
    .await;
    link_personal(&w, "user-a").await;
    let mut deps = worker(&w);
    // Enough attempts that a request failing every one of them (0.45^12) is not expected in a
    // run of a few hundred; the cap itself is what is checked below.
    let max_attempts = 12;
    let mut config = BrokerConfig::for_base_url(w.sim.credentials.base_url.parse().unwrap());
    config.retry = RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(20),
        max_elapsed: Duration::from_secs(60),
    };
    deps.broker = TastytradeClient::new(config).unwrap();
    w.sim.simulator.set_faults(tastytrade_sim::server::Faults {
        rate_429: 0.30,
        rate_5xx: 0.10,
        rate_drop: 0.03,
        rate_truncate: 0.03,
        expire_tokens_every: 4,
        ..Default::default()
    });

    let failed = drain(&w, &deps).await;

    w.sim
        .simulator
        .set_faults(tastytrade_sim::server::Faults::default());
    let stats = deps.broker.stats();
    let (requests, retries, throttled, refreshes) = (
        Stats::get(&stats.requests),
        Stats::get(&stats.retries),
        Stats::get(&stats.throttled),
        Stats::get(&stats.token_refreshes),
    );
    println!(
        "fault storm: {requests} requests sent, {retries} retries, {throttled} 429s, {refreshes} token refreshes; no task failed"
    );
    assert!(failed.is_empty(), "{failed:?}");
    assert_database_equals_truth(&w, &w.sim.credentials.account_numbers[0]).await;
    let calls = requests - retries;
    assert!(
        retries <= calls * u64::from(max_attempts - 1),
        "no call retried past its cap"
    );
    assert!(
        throttled * 5 > requests,
        "about 30% of requests met a 429: {throttled} of {requests}"
    );
    assert!(
        refreshes >= 2,
        "tokens expired and were refreshed: {refreshes}"
    );
}

#[tokio::test]
async fn postgres_restarted_mid_sync_costs_a_retry_and_the_sync_still_completes_equal_to_the_truth()
{
    let cluster = tastysync_tests::PrivatePostgres::start();
    let db = tastysync_tests::TestDb::empty_on(&cluster.admin_url()).await;
    tastysync_shared::db::migrations::apply(&db.pool)
        .await
        .unwrap();
    let w = crate::link::world_on(
        Sizes {
            accounts: 1,
            transactions: 30_000,
            orders: 3_000,
            years: 4,
        },
        db,
    )
    .await;
    link_personal(&w, "user-a").await;
    let mut command = worker_command(&w);
    // Long invocations: the restart must land inside a sync, not between continuations.
    command
        .env("SYNC_INVOCATION_SECONDS", "300")
        .stdout(std::process::Stdio::null());
    let mut worker = command.spawn().unwrap();
    let client = w.db.client().await;
    let started = std::time::Instant::now();
    // Wait until the sync is writing, then restart the server under it.
    loop {
        let rows: i64 = client
            .query_one("SELECT count(*) FROM transactions", &[])
            .await
            .unwrap()
            .get(0);
        if rows > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the sync never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(client);
    cluster.restart();
    let restarted_at = started.elapsed();

    // The interrupted message comes back after its back-off (30 s) and the sync resumes.
    let finished = loop {
        // A connection of its own each time: the pool's were cut by the restart.
        let status = match tokio_postgres::connect(&w.db.url, tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                client
                    .query_one("SELECT last_sync_status FROM tastytrade_accounts", &[])
                    .await
                    .map(|row| row.get::<_, String>(0))
                    .unwrap_or_default()
            }
            Err(_) => String::new(),
        };
        if status == "SUCCESS" {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the sync did not complete after the restart (status {status})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    worker.kill().await.unwrap();

    println!(
        "postgres restarted {:.1} s into the sync; the sync completed at {:.1} s",
        restarted_at.as_secs_f64(),
        finished.as_secs_f64()
    );
    assert_database_equals_truth(&w, &w.sim.credentials.account_numbers[0]).await;
    let tasks = crate::link::table_items(&w).await;
    assert!(
        tasks.iter().any(|t| t.contains("completed")),
        "the task ended completed: {tasks:?}"
    );
}
