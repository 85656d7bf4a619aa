//! The sync worker against Postgres, moto and the simulator: the database must end equal to
//! the simulator's truth.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::QueueAttributeName;
use chrono::{DateTime, Utc};
use sync_worker::local::Poller;
use tastysync_local::provision::QUEUE_VISIBILITY_SECONDS;
use tastysync_shared::adapters::dynamo::DynamoTasks;
use tastysync_shared::adapters::postgres::PgSyncStore;
use tastysync_shared::adapters::secrets_manager::SecretsManager;
use tastysync_shared::domain::tasks::{
    Counts, NewTask, TaskKind, TaskMessage, TaskRecord, TaskStatus,
};
use tastysync_shared::ports::{SyncQueue, SyncStore, TaskCreator, TaskHistory, TaskReader};
use tastysync_shared::secrets::OAuthClient;
use tastysync_shared::sync::{self, Outcome, SyncDeps, SyncSettings};
use tastysync_shared::tastytrade::client::{Limits, Stats};
use tastysync_shared::tastytrade::{BrokerConfig, RetryPolicy, TastytradeClient};
use tastysync_shared::wiring::{Function, SyncWorker};
use tastytrade_sim::data::Sizes;
use tastytrade_sim::server::Recorded;
use tastytrade_sim::{Activity, Faults};
use uuid::Uuid;

use crate::link::{World, link_personal, world_with};
use crate::tastytrade_client::attempts_per_call;
use tastysync_tests::truth;

pub(crate) fn worker(w: &World) -> SyncWorker {
    worker_with(w, Limits::default())
}

/// [`worker`] taking in at most `limits` of the broker.
pub(crate) fn worker_with(w: &World, limits: Limits) -> SyncWorker {
    let mut config = BrokerConfig::for_simulator(
        w.sim.credentials.base_url.parse().unwrap(),
        w.sim.credentials.streamer_url.parse().unwrap(),
    );
    config.retry = RetryPolicy {
        max_attempts: 6,
        base_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(50),
        max_elapsed: Duration::from_secs(20),
    };
    config.limits = limits;
    SyncDeps {
        store: PgSyncStore::new(w.pool_of(Function::SyncWorker)),
        broker: TastytradeClient::new(config).unwrap(),
        cipher: w.aws.cipher_of(Function::SyncWorker),
        tasks: w.aws.tasks_of(Function::SyncWorker),
        queue: w.aws.queue_of(Function::SyncWorker),
        oauth_client: None,
        events: w.aws.events_of(Function::SyncWorker),
        settings: SyncSettings::default(),
    }
}

fn poller(w: &World, invocation_timeout: Duration) -> Poller {
    Poller {
        sqs: aws_sdk_sqs::Client::new(&w.aws.sdk_of(Function::SyncWorker)),
        queue_url: w.aws.stack.queue_url.clone(),
        queue_arn: w.aws.stack.queue_arn.clone(),
        visibility: Some(Duration::from_secs(600)),
        invocation_timeout,
        batch_size: 10,
    }
}

/// Feeds the queue to the worker until it is empty (as the event source mapping would);
/// returns the ids reported as failed.
pub(crate) async fn drain(w: &World, deps: &SyncWorker) -> Vec<String> {
    drain_with_timeout(w, deps, Duration::from_secs(120))
        .await
        .0
}

/// [`drain`] with each invocation given `timeout` before its deadline; also returns how many
/// invocations it took.
pub(crate) async fn drain_with_timeout(
    w: &World,
    deps: &SyncWorker,
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

pub(crate) async fn run_task(deps: &SyncWorker, account_id: Uuid, kind: TaskKind) -> Counts {
    let task = NewTask::new("user-a", account_id, kind);
    deps.tasks.create(&task).await.unwrap();
    match sync::run(deps, &task.message(), None).await.unwrap() {
        Outcome::Completed(counts) => counts,
        other => panic!("the {kind:?} sync ended {other:?}"),
    }
}

/// One account with a year of history, linked by user-a and fully synced.
pub(crate) async fn one_synced_account(
    transactions: usize,
    orders: usize,
) -> (World, SyncWorker, Uuid) {
    let w = world_with(Sizes {
        accounts: 1,
        transactions,
        orders,
        years: 1,
    })
    .await;
    let linked = link_personal(&w, "user-a").await;
    let account_id: Uuid = linked[0]["id"].as_str().unwrap().parse().unwrap();
    let deps = worker(&w);
    assert!(drain(&w, &deps).await.is_empty());
    (w, deps, account_id)
}

/// The broker's token endpoint.
const TOKEN_PATH: &str = "/oauth/token";

/// How many of `requests` went to the token endpoint.
fn token_requests(requests: &[Recorded]) -> usize {
    requests.iter().filter(|r| r.path == TOKEN_PATH).count()
}

/// Asserts the database holds exactly the simulator's truth for `account_number`.
pub(crate) async fn assert_database_equals_truth(w: &World, account_number: &str) {
    let truth = w.sim.simulator.truth(account_number).unwrap();
    let client = w.db.client().await;
    truth::assert_database_equals_truth(&client, &truth, account_number).await;
}

/// One account of `sizes`, linked by user-a; the broker's log is cleared, then the worker
/// takes the queue, the link's full sync in it, until it is empty and no task failed.
async fn linked_and_synced(sizes: Sizes) -> World {
    let w = world_with(sizes).await;
    link_personal(&w, "user-a").await;
    w.sim.simulator.clear_requests();
    let deps = worker(&w);
    let failed = drain(&w, &deps).await;
    assert!(failed.is_empty(), "{failed:?}");
    w
}

#[tokio::test]
async fn a_full_sync_of_100k_transactions_and_20k_orders_equals_the_truth() {
    let w = linked_and_synced(Sizes {
        accounts: 1,
        transactions: 100_000,
        orders: 20_000,
        years: 5,
    })
    .await;

    assert_database_equals_truth(&w, &w.sim.credentials.account_numbers[0]).await;
    let requests = w.sim.simulator.requests();
    let again: Vec<_> = (attempts_per_call(&requests).into_iter())
        .filter(|(_, n)| *n > 1)
        .collect();
    assert!(again.is_empty(), "read more than once: {again:#?}");
    let pages = requests
        .iter()
        .filter(|r| r.path.ends_with("/transactions"))
        .count();
    assert!(
        pages >= 50,
        "100,000 transactions in pages of 2,000: {pages} reads"
    );
}

#[tokio::test]
async fn the_first_sync_after_a_link_starts_with_the_access_token_the_link_minted() {
    let w = linked_and_synced(Sizes {
        accounts: 1,
        transactions: 200,
        orders: 20,
        years: 1,
    })
    .await;

    let requests = w.sim.simulator.requests();
    let minted = token_requests(&requests);
    assert_eq!(minted, 0, "the first sync minted {minted} access tokens");
    assert!(requests.len() > 5, "{} requests", requests.len());
    assert_database_equals_truth(&w, &w.sim.credentials.account_numbers[0]).await;
}

#[tokio::test]
async fn each_orders_window_after_the_first_is_begun_while_the_last_ones_pages_are_on_their_way() {
    let w = world_with(Sizes {
        accounts: 1,
        transactions: 500,
        orders: 4_000,
        years: 2,
    })
    .await;
    link_personal(&w, "user-a").await;
    w.sim.simulator.set_faults(Faults {
        latency_ms: 40,
        ..Faults::default()
    });
    w.sim.simulator.clear_requests();
    let deps = worker(&w);

    let failed = drain(&w, &deps).await;

    assert!(failed.is_empty(), "{failed:?}");
    assert_database_equals_truth(&w, &w.sim.credentials.account_numbers[0]).await;
    let requests = w.sim.simulator.requests();
    let mut windows = std::collections::BTreeMap::<&str, Vec<&Recorded>>::new();
    for r in requests.iter().filter(|r| r.path.ends_with("/orders")) {
        windows
            .entry(r.param("start-at").unwrap())
            .or_default()
            .push(r);
    }
    let windows: Vec<_> = windows.into_values().collect();
    assert!(windows.len() >= 4, "{} windows", windows.len());
    for pair in windows.windows(2) {
        let (last, next) = (&pair[0], &pair[1]);
        let last_answer = last.iter().map(|r| r.answered).max().unwrap();
        let next_asked = next.iter().map(|r| r.at).min().unwrap();
        assert!(last.len() > 1, "a window of {} pages", last.len());
        assert!(
            next_asked < last_answer,
            "the window from {} was asked for {} after the last answer of the one before",
            next[0].param("start-at").unwrap(),
            next_asked - last_answer
        );
    }
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
        net_liq_bars: 2,
        complex_orders: 1,
        drop_complex_orders: 1,
        ..Activity::default()
    };
    let outcome = w.sim.simulator.add_activity(&number, &activity).unwrap();
    assert!(
        outcome.finalized > 0,
        "the generated history has estimated fees to finalise"
    );
    let marks =
        w.db.client()
            .await
            .query_one(
                "SELECT transactions_synced_to, orders_synced_to, balance_snapshots_synced_to
             FROM tastytrade_accounts WHERE id = $1",
                &[&account_id],
            )
            .await
            .unwrap();
    w.sim.simulator.clear_requests();
    let counts = run_task(&deps, account_id, TaskKind::Incremental).await;

    assert!(counts.total_written() > 0);
    assert_eq!(
        counts.removed.get("complex_orders"),
        Some(&1),
        "the group no longer listed is marked removed"
    );
    assert_database_equals_truth(&w, &number).await;
    let trailing = chrono::Duration::days(7);
    let requests = w.sim.simulator.requests();
    let (transactions, orders) = (
        marks.get::<_, DateTime<Utc>>(0),
        marks.get::<_, DateTime<Utc>>(1),
    );
    assert_reads_from(
        &requests,
        "/transactions",
        "start-at",
        transactions - trailing,
    );
    assert_reads_from(&requests, "/orders", "start-at", orders - trailing);
    // The snapshots come once a day, at the close: read only when one passed since the last
    // sync (the link's, seconds ago, unless a close fell in between).
    let close = tastysync_shared::domain::accounts::latest_close(chrono::Utc::now());
    if transactions < close {
        let snapshots = marks
            .get::<_, chrono::NaiveDate>(2)
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc();
        assert_reads_from(
            &requests,
            "/balance-snapshots",
            "start-date",
            snapshots - trailing,
        );
    } else {
        assert!(
            !requests
                .iter()
                .any(|r| r.path.ends_with("/balance-snapshots")),
            "no close since the last sync, so no snapshot to read"
        );
    }
    let net_liq: Vec<&str> = (requests.iter())
        .filter(|r| r.path.ends_with("/net-liq/history"))
        .filter_map(|r| r.query.iter().find(|(k, _)| k == "time-back"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        net_liq,
        ["1m"],
        "the net-liq read starts at the last bar stored"
    );

    let refreshes = Stats::get(&deps.broker.stats().token_refreshes);
    w.sim.simulator.clear_requests();
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
    // The README's count: balances, trading status, net-liq history, positions, one page each
    // of transactions and orders, and the live orders (GTC orders older than the window are
    // still working); not the account list, the complex orders (no order changed) or the
    // snapshots (no close since the last sync).
    let calls: Vec<String> = (w.sim.simulator.requests().iter())
        .map(|r| r.path.clone())
        .collect();
    assert!(
        calls.len() <= 7,
        "an idle incremental sync called {calls:#?}"
    );
}

#[tokio::test]
async fn watchlists_are_the_grants_read_once_a_quarter_hour_and_follow_the_customers_adds_and_deletes()
 {
    let w = world_with(Sizes {
        accounts: 2,
        transactions: 60,
        orders: 10,
        years: 1,
    })
    .await;
    let linked = link_personal(&w, "user-a").await;
    let deps = worker(&w);
    assert!(drain(&w, &deps).await.is_empty());
    let accounts: Vec<(Uuid, String)> = (linked.iter())
        .map(|a| {
            let id = a["id"].as_str().unwrap().parse().unwrap();
            (id, a["account_number"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_database_equals_truth(&w, &accounts[0].1).await;
    let activity = Activity {
        add_watchlists: 1,
        delete_watchlists: 1,
        ..Activity::default()
    };
    let outcome = w
        .sim
        .simulator
        .add_activity(&accounts[0].1, &activity)
        .unwrap();
    assert_eq!(
        (
            outcome.added_watchlists.len(),
            outcome.deleted_watchlists.len()
        ),
        (1, 1)
    );
    // The link's full syncs read them minutes ago; a quarter hour later one sync of the grant
    // reads them for both accounts.
    w.sim.simulator.clear_requests();
    for (id, _) in &accounts {
        run_task(&deps, *id, TaskKind::Incremental).await;
    }
    let reads = |w: &World| {
        (w.sim.simulator.requests().iter())
            .filter(|r| r.path == "/watchlists")
            .count()
    };
    assert_eq!(reads(&w), 0, "read by the link's full syncs minutes ago");
    let client = w.db.client().await;
    let an_hour_ago =
        "UPDATE tastytrade_credentials SET watchlists_read_at = now() - interval '1 hour'";
    client.execute(an_hour_ago, &[]).await.unwrap();

    for (id, _) in &accounts {
        run_task(&deps, *id, TaskKind::Incremental).await;
    }

    assert_eq!(reads(&w), 1, "one read for the grant's two accounts");
    for (_, number) in &accounts {
        assert_database_equals_truth(&w, number).await;
    }
}

/// Every read of the paths ending in `path_end` asked for `key` (a time or a date), and none
/// from before `floor`: an incremental sync reads only its trailing window.
fn assert_reads_from(requests: &[Recorded], path_end: &str, key: &str, floor: DateTime<Utc>) {
    let reads: Vec<&Recorded> = (requests.iter())
        .filter(|r| r.path.ends_with(path_end))
        .collect();
    assert!(!reads.is_empty(), "nothing read {path_end}");
    for read in reads {
        let value = read
            .param(key)
            .unwrap_or_else(|| panic!("{read:?} has no {key}"));
        let from = DateTime::parse_from_rfc3339(value)
            .map(|t| t.with_timezone(&Utc))
            .or_else(|_| {
                chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
                    .map(|d| d.and_hms_opt(0, 0, 0).unwrap().and_utc())
            })
            .unwrap();
        // Times go out to the millisecond, rounded down.
        let floor = floor - chrono::Duration::milliseconds(1);
        assert!(from >= floor, "{path_end} read from {from}, before {floor}");
    }
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
    w.sim.simulator.clear_requests();
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
    let audited: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_events
             WHERE user_id = 'user-a' AND account_id = $1 AND action = 'needs_reauth'
               AND actor = 'system'",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 1, "the lost grant is in the user's audit trail");
    let tasks = crate::link::table_items(&w).await;
    assert!(
        tasks.iter().any(|t| t.contains("needs_reauth")),
        "{tasks:?}"
    );
    // The access token the link cached died with the grant: the calls that carried it are
    // refused, each once; one refresh learns that the grant is dead and confirms it once,
    // and no call waiting for that refresh asks again.
    let requests = w.sim.simulator.requests();
    let minted = token_requests(&requests);
    assert_eq!(
        minted, 2,
        "one confirmation of invalid_grant, no retry storm"
    );
    let again: Vec<_> = (attempts_per_call(&requests).into_iter())
        .filter(|(_, n)| *n > 1)
        .collect();
    assert!(again.is_empty(), "asked again: {again:#?}");
    assert!(
        (requests.iter())
            .filter(|r| r.path != TOKEN_PATH)
            .all(|r| r.status == 401),
        "{requests:#?}"
    );
}

/// The account's sync status and its grant's status.
async fn statuses(w: &World, account_id: Uuid) -> (String, String) {
    let row =
        w.db.client()
            .await
            .query_one(
                "SELECT a.last_sync_status, c.status FROM tastytrade_accounts a
             JOIN tastytrade_credentials c ON c.id = a.credential_id WHERE a.id = $1",
                &[&account_id],
            )
            .await
            .unwrap();
    (row.get(0), row.get(1))
}

/// A new task of `kind` for the account, run once: the outcome, or the retry it asks for.
async fn deliver(
    deps: &SyncWorker,
    account_id: Uuid,
    kind: TaskKind,
) -> (NewTask, Result<Outcome, sync::Retryable>) {
    let task = NewTask::new("user-a", account_id, kind);
    deps.tasks.create(&task).await.unwrap();
    let outcome = sync::run(deps, &task.message(), None).await;
    (task, outcome)
}

#[tokio::test]
async fn a_fresh_token_refused_once_more_is_retried_and_never_asks_the_user_to_link_again() {
    let (w, deps, account_id) = one_synced_account(200, 50).await;
    // The cached token is refused, and so is the one minted to replace it.
    w.sim.simulator.set_faults(Faults {
        unauthorized_next: 2,
        ..Faults::default()
    });

    let (task, refused) = deliver(&deps, account_id, TaskKind::Incremental).await;

    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        statuses(&w, account_id).await.1,
        "ACTIVE",
        "the grant is kept"
    );
    let again = sync::run(&deps, &task.message(), None).await.unwrap();
    assert!(matches!(again, Outcome::Completed(_)), "{again:?}");
    assert_eq!(
        statuses(&w, account_id).await,
        ("SUCCESS".to_owned(), "ACTIVE".to_owned())
    );
}

#[tokio::test]
async fn the_deployments_client_secret_refused_after_a_rotation_is_retried_not_blamed_on_users() {
    let w = world_with(Sizes {
        accounts: 1,
        transactions: 200,
        orders: 50,
        years: 1,
    })
    .await;
    let linked = crate::link::link_through_tastytrade(&w).await;
    let account_id: Uuid = linked[0]["id"].as_str().unwrap().parse().unwrap();
    let mut deps = worker(&w);
    let secrets = SecretsManager::new(aws_sdk_secretsmanager::Client::new(
        &w.aws.sdk_of(Function::SyncWorker),
    ));
    let arn = &w.aws.stack.oauth_client_secret_arn;
    deps.oauth_client = Some(OAuthClient::load(&secrets, arn).await.unwrap());
    assert!(drain(&w, &deps).await.is_empty());
    // The secret is rotated at tastytrade but not in the deployment; the cached token dies.
    w.sim
        .simulator
        .rotate_client_secret("rotated-at-tastytrade");
    w.sim.simulator.expire_access_tokens();

    let (task, refused) = deliver(&deps, account_id, TaskKind::Incremental).await;

    assert!(refused.is_err(), "{refused:?}");
    let (_, grant) = statuses(&w, account_id).await;
    assert_eq!(grant, "ACTIVE", "the user's grant is not blamed");
    let record = deps.tasks.get(task.task_id).await.unwrap().unwrap();
    assert_eq!(record.status, TaskStatus::Retrying);
    w.sim
        .simulator
        .rotate_client_secret(&w.sim.credentials.client_secret);
    let again = sync::run(&deps, &task.message(), None).await.unwrap();
    assert!(matches!(again, Outcome::Completed(_)), "{again:?}");
    assert_eq!(statuses(&w, account_id).await.0, "SUCCESS");
}

#[tokio::test]
async fn a_sync_that_outlives_an_unlink_and_relink_cannot_mark_the_fresh_link() {
    let w = world_with(Sizes {
        accounts: 1,
        transactions: 10,
        orders: 10,
        years: 1,
    })
    .await;
    let linked = link_personal(&w, "user-a").await;
    let account_id: Uuid = linked[0]["id"].as_str().unwrap().parse().unwrap();
    let store = PgSyncStore::new(w.db.pool.clone());
    let old = store.load_account(account_id).await.unwrap().unwrap();
    let unlinked = crate::link::delete(&w, "user-a", &account_id.to_string()).await;
    assert_eq!(unlinked, 204);
    link_personal(&w, "user-a").await;
    let client = w.db.client().await;
    let state = || {
        let client = &client;
        async move {
            let row = client
                .query_one(
                    "SELECT last_sync_status, transactions_synced_to FROM tastytrade_accounts
                     WHERE id = $1",
                    &[&account_id],
                )
                .await
                .unwrap();
            (
                row.get::<_, String>(0),
                row.get::<_, Option<chrono::DateTime<Utc>>>(1),
            )
        }
    };
    let fresh = state().await;

    let credential = old.credential_id;
    store.mark_running(account_id, credential).await.unwrap();
    let needs_reauth = tastysync_shared::domain::accounts::AccountStatus::NeedsReauth;
    store
        .mark_failed(
            account_id,
            Some(credential),
            needs_reauth,
            "the old grant is dead",
        )
        .await
        .unwrap();
    let today = Utc::now().date_naive();
    store
        .mark_success(account_id, credential, Utc::now(), Utc::now(), today)
        .await
        .unwrap();

    assert_eq!(
        state().await,
        fresh,
        "the old sync's status and watermarks do not reach the fresh link"
    );
    assert_eq!(fresh.1, None);
}

#[tokio::test]
async fn a_gtc_order_filled_on_a_day_no_sync_saw_is_read_by_id_and_stored_filled() {
    let (w, deps, account_id) = one_synced_account(200, 400).await;
    let number = &w.sim.credentials.account_numbers[0];
    let activity = Activity {
        fill_working_days_back: 20,
        ..Activity::default()
    };
    let filled = w
        .sim
        .simulator
        .add_activity(number, &activity)
        .unwrap()
        .filled_working;
    assert!(
        !filled.is_empty(),
        "the generated history has working GTC orders"
    );

    run_task(&deps, account_id, TaskKind::Incremental).await;

    let statuses: Vec<String> =
        w.db.client()
            .await
            .query(
                "SELECT status FROM orders WHERE account_id = $1 AND tastytrade_order_id = ANY($2)",
                &[&account_id, &filled],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert_eq!(statuses.len(), filled.len());
    assert!(
        statuses.iter().all(|s| s == "Filled"),
        "filled 20 days ago, outside the 7-day window: {statuses:?}"
    );
}

#[tokio::test]
async fn rows_the_broker_stops_returning_are_kept_marked_removed_by_the_sync_and_left_out() {
    let (w, deps, account_id) = one_synced_account(300, 100).await;
    let number = &w.sim.credentials.account_numbers[0];
    let recent = Activity {
        transactions: 5,
        fills: 10,
        ..Activity::default()
    };
    w.sim.simulator.add_activity(number, &recent).unwrap();
    run_task(&deps, account_id, TaskKind::Incremental).await;

    let withdrawn = Activity {
        withdraw_transactions: 2,
        drop_first_leg: 2,
        close_currencies: true,
        ..Activity::default()
    };
    let gone = w.sim.simulator.add_activity(number, &withdrawn).unwrap();
    assert_eq!(gone.dropped_legs.len(), 2, "recent orders have two legs");
    let task = NewTask::new("user-a", account_id, TaskKind::Incremental);
    deps.tasks.create(&task).await.unwrap();
    let Outcome::Completed(counts) = sync::run(&deps, &task.message(), None).await.unwrap() else {
        panic!("the sync did not complete");
    };

    assert_database_equals_truth(&w, number).await;
    assert_eq!(counts.removed.get("transactions"), Some(&2));
    assert_eq!(counts.removed.get("balances"), Some(&1));
    let client = w.db.client().await;
    let removed = |sql: &'static str| {
        let client = &client;
        async move {
            let rows = client.query(sql, &[&account_id]).await.unwrap();
            let by: BTreeSet<Uuid> = rows.iter().map(|r| r.get(1)).collect();
            assert_eq!(by, BTreeSet::from([task.task_id]), "{sql}");
            rows.iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<BTreeSet<_>>()
        }
    };
    let transactions = removed(
        "SELECT tastytrade_transaction_id::text, removed_by_task FROM transactions
         WHERE account_id = $1 AND removed_at IS NOT NULL",
    )
    .await;
    let legs = removed(
        "SELECT tastytrade_order_id || ' ' || symbol, removed_by_task FROM order_legs
         WHERE account_id = $1 AND removed_at IS NOT NULL",
    )
    .await;
    let currencies = removed(
        "SELECT currency, removed_by_task FROM account_balances
         WHERE account_id = $1 AND removed_at IS NOT NULL",
    )
    .await;
    let as_text = |ids: &[i64]| ids.iter().map(i64::to_string).collect::<BTreeSet<_>>();
    assert_eq!(transactions, as_text(&gone.withdrawn_transactions));
    let dropped = (gone.dropped_legs.iter()).map(|(order, symbol)| format!("{order} {symbol}"));
    assert_eq!(
        legs,
        dropped.collect(),
        "the dropped legs, not the legs that moved up"
    );
    assert_eq!(currencies, gone.closed_currencies.into_iter().collect());
}

#[tokio::test]
async fn a_broker_slower_than_the_time_left_costs_continuations_never_an_overrun_invocation() {
    let w = world_with(Sizes {
        accounts: 1,
        transactions: 200,
        orders: 1_200,
        years: 1,
    })
    .await;
    link_personal(&w, "user-a").await;
    // Each page of orders (200) takes 2.5 s; an invocation has 8 s, hands over from 5 s on and
    // calls the broker until 6 s. A window's first page tells how many follow, which are read
    // side by side: two windows of three pages are 10 s of pages, one after the other, which
    // no invocation can hold. (Room to spare for a loaded machine, where the simulator and the
    // database are slow too.)
    w.sim.simulator.set_faults(Faults {
        slow_path: Some("/orders".into()),
        slow_ms: 2_500,
        ..Faults::default()
    });
    let mut deps = worker(&w);
    deps.settings.deadline_margin = Duration::from_secs(3);
    deps.settings.handover_reserve = Duration::from_secs(2);

    let (failed, invocations) = drain_with_timeout(&w, &deps, Duration::from_secs(8)).await;

    assert!(
        failed.is_empty(),
        "an invocation overran its timeout or failed: {failed:?}"
    );
    assert!(invocations >= 2, "{invocations} invocations");
    assert_database_equals_truth(&w, &w.sim.credentials.account_numbers[0]).await;
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
    deps.settings.deadline_margin = Duration::from_secs(30);
    deps.settings.handover_reserve = Duration::from_millis(200);

    // Every invocation starts past its checkpoint time: it syncs one page, then hands over.
    let (failed, invocations) = drain_with_timeout(&w, &deps, Duration::from_secs(10)).await;

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

#[tokio::test]
async fn a_copy_of_a_message_already_handed_over_or_of_an_ended_task_does_nothing() {
    let w = world_with(Sizes {
        accounts: 1,
        transactions: 3_000,
        orders: 300,
        years: 2,
    })
    .await;
    let linked = link_personal(&w, "user-a").await;
    let account_id: Uuid = linked[0]["id"].as_str().unwrap().parse().unwrap();
    let mut deps = worker(&w);
    deps.settings.deadline_margin = Duration::from_secs(30);
    let task = NewTask::new("user-a", account_id, TaskKind::Full);
    deps.tasks.create(&task).await.unwrap();
    let original = task.message();
    let run = |message: TaskMessage, deadline: Option<std::time::Instant>| {
        let deps = &deps;
        async move { sync::run(deps, &message, deadline).await.unwrap() }
    };

    // Past its checkpoint time at once: one page, then the continuation is queued and recorded.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let Outcome::Continued(cursor) = run(original.clone(), Some(deadline)).await else {
        panic!("the sync did not hand over");
    };
    let continuation = TaskMessage {
        cursor: Some(serde_json::to_value(&cursor).unwrap()),
        ..original.clone()
    };
    let requests = Stats::get(&deps.broker.stats().requests);
    let handed_over = run(original.clone(), None).await;
    let requests_after_copy = Stats::get(&deps.broker.stats().requests);
    assert!(drain(&w, &deps).await.is_empty());
    let ended = [
        run(original.clone(), None).await,
        run(continuation, None).await,
    ];

    assert!(matches!(handed_over, Outcome::Skipped), "{handed_over:?}");
    assert_eq!(requests_after_copy, requests, "the copy called the broker");
    assert!(
        ended.iter().all(|o| matches!(o, Outcome::Skipped)),
        "{ended:?}"
    );
    let record = deps.tasks.get(task.task_id).await.unwrap().unwrap();
    assert_eq!(record.status, TaskStatus::Completed);
    assert_database_equals_truth(&w, &w.sim.credentials.account_numbers[0]).await;
}

/// The function binary `name` (built by `make test` before the tests run) against the world's
/// stack and simulator, logging to a suite log file of its own (see
/// [`tastysync_tests::capture_logs`]).
pub(crate) fn function_command(w: &World, name: &str) -> tokio::process::Command {
    let binary = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join(name);
    assert!(
        binary.exists(),
        "{} is missing: run the tests through `make test`",
        binary.display()
    );
    let sim = &w.sim.credentials;
    let mut command = tokio::process::Command::new(binary);
    command
        .env("DATABASE_URL", &w.db.url)
        .env("TOKEN_KMS_KEY_ID", &w.aws.stack.kms_key_arn)
        .env("TASKS_TABLE", &w.aws.stack.table)
        .env("SYNC_QUEUE_URL", &w.aws.stack.queue_url)
        .env("SYNC_QUEUE_ARN", &w.aws.stack.queue_arn)
        .env("EVENT_BUS_NAME", &w.aws.stack.event_bus)
        .env("TASTYTRADE_PRODUCTION_URL", &sim.base_url)
        .env("TASTYTRADE_SANDBOX_URL", &sim.base_url)
        .env("TASTYTRADE_STREAMER_URL", &sim.streamer_url)
        .env("TASTYTRADE_SANDBOX_STREAMER_URL", &sim.streamer_url)
        .env("RUST_LOG", tastysync_tests::SUITE_LOG_FILTER)
        .kill_on_drop(true);
    match tastysync_tests::suite_log_file(name) {
        Some(file) => {
            let copy = file.try_clone().unwrap();
            command.stdout(file).stderr(copy);
        }
        None => {
            command.stdout(std::process::Stdio::null());
        }
    }
    command
}

fn spawn_worker(w: &World) -> tokio::process::Child {
    worker_command(w).spawn().unwrap()
}

/// The worker binary in poll mode against the world's stack, with short invocations.
pub(crate) fn worker_command(w: &World) -> tokio::process::Command {
    let mut command = function_command(w, "sync-worker");
    command
        // A killed worker's message comes back after this long, as after a Lambda crash.
        // (Three: a live worker's message must not come back while a loaded machine is slow.)
        .env("SYNC_VISIBILITY_SECONDS", "3")
        // Invocations so short that each one syncs a page or two and hands over to a
        // continuation: kills land on many different messages, and none is received
        // maxReceiveCount times (which would rightly send it to the DLQ). Not one second: a
        // worker's first invocation also opens its connections, and on a busy machine one
        // second was not enough for that and a page, again and again, until the DLQ.
        .env("SYNC_INVOCATION_SECONDS", "2")
        // One message in flight per receive: when two in-flight messages of a FIFO group come
        // back together, moto 5.2.5 delivers the second before the first (SQS keeps their
        // order), and a killed sync's lease then holds the other back for a whole back-off.
        .env("SYNC_BATCH_SIZE", "1");
    command
}

/// Runs `command` (from [`worker_command`]) until the queue has been idle for
/// `idle_seconds`, within `limit`; returns its output, also kept for the scan after the suite.
pub(crate) async fn run_until_idle(
    mut command: tokio::process::Command,
    idle_seconds: &str,
    limit: Duration,
) -> std::process::Output {
    command
        .env("SYNC_EXIT_WHEN_IDLE", idle_seconds)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let output = tokio::time::timeout(limit, command.output())
        .await
        .unwrap()
        .unwrap();
    tastysync_tests::keep_for_the_scan(&output);
    assert!(output.status.success(), "{output:?}");
    output
}

/// The account's lease as the worker left it in the task table: holder, taken and until
/// (epoch milliseconds).
async fn lease(w: &World, account_id: Uuid) -> Option<(Uuid, i64, i64)> {
    lease_in(&w.aws.dynamodb(), &w.aws.stack.table, account_id).await
}

async fn lease_in(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    account_id: Uuid,
) -> Option<(Uuid, i64, i64)> {
    let item = dynamodb
        .get_item()
        .table_name(table)
        .key(
            "pk",
            AttributeValue::S(format!("LEASE#ACCOUNT#{account_id}")),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item?;
    let millis = |name: &str| item.get(name)?.as_n().ok()?.parse::<i64>().ok();
    Some((
        item.get("holder")?.as_s().ok()?.parse().ok()?,
        millis("acquired_at")?,
        millis("lease_until")?,
    ))
}

/// Waits up to twenty seconds for a message's sync to start after `after` (epoch
/// milliseconds): a lease taken later. Returns when it was taken.
async fn next_sync_start(w: &World, account_id: Uuid, after: i64) -> Option<i64> {
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        match lease(w, account_id).await {
            Some((_, acquired, _)) if acquired > after => return Some(acquired),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    None
}

/// Waits up to twenty seconds for the sync that took the lease at `acquired` to end: its lease
/// released, or taken again by the next message.
async fn sync_end(w: &World, account_id: Uuid, acquired: i64) {
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        match lease(w, account_id).await {
            Some((_, taken, _)) if taken == acquired => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            _ => return,
        }
    }
}

/// Where the worker was when it was killed.
#[derive(Debug, Default)]
struct Kills {
    full: usize,
    incremental: usize,
    between: usize,
}

impl Kills {
    fn total(&self) -> usize {
        self.full + self.incremental + self.between
    }

    fn count(&mut self, running: Option<TaskKind>) {
        match running {
            Some(TaskKind::Full) => self.full += 1,
            Some(_) => self.incremental += 1,
            None => self.between += 1,
        }
    }
}

/// The kind of sync a worker spawned at `spawned` (epoch milliseconds) is (or was, when it
/// died) running: that of the task whose live lease it took. `None` between messages.
async fn running_now(
    w: &World,
    deps: &SyncWorker,
    account_id: Uuid,
    spawned: i64,
) -> Option<TaskKind> {
    let (holder, acquired, until) = lease(w, account_id).await?;
    let live = acquired >= spawned && until > chrono::Utc::now().timestamp_millis();
    if !live {
        return None;
    }
    deps.tasks.get(holder).await.unwrap().map(|t| t.kind)
}

/// Waits until none of the account's tasks is still on its way; panics after `limit`.
pub(crate) async fn until_every_task_ended(
    table: &DynamoTasks,
    account_id: Uuid,
    limit: Duration,
) -> Vec<TaskRecord> {
    let started = std::time::Instant::now();
    loop {
        let tasks = table.recent(account_id, 100).await.unwrap();
        if tasks.iter().all(|t| !t.status.is_active()) {
            return tasks;
        }
        assert!(
            started.elapsed() < limit,
            "tasks still on their way after {limit:?}: {:?}",
            tasks
                .iter()
                .map(|t| (t.kind, t.status, t.stage.clone(), t.attempts))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_worker_killed_again_and_again_across_full_and_incremental_syncs_still_ends_equal_to_the_truth()
 {
    // Ten in every run; `make soak` asks for fifty.
    let rounds: usize = std::env::var("SOAK_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let w = world_with(Sizes {
        accounts: 1,
        transactions: 30_000,
        orders: 3_000,
        years: 4,
    })
    .await;
    let linked = link_personal(&w, "user-a").await;
    let account_id: Uuid = linked[0]["id"].as_str().unwrap().parse().unwrap();
    let number = w.sim.credentials.account_numbers[0].clone();
    let deps = worker(&w);
    let mut rng = fastrand::Rng::with_seed(5);

    let full = w.aws.tasks().recent(account_id, 1).await.unwrap()[0].task_id;
    // A broker a little farther away than loopback, so the full sync outlasts half the kills.
    w.sim.simulator.set_faults(tastytrade_sim::server::Faults {
        latency_ms: 25,
        ..Default::default()
    });
    let mut kills = Kills::default();
    let mut incrementals = 0;
    let mut died_mid_sync = false;
    for round in 0..rounds {
        // The first half of the kills (while it lasts) land in the link's full sync (an
        // incremental sync queued beside an unfinished one reads the whole history too, and
        // each would slow it down); before each of the others
        // the account trades, fees turn final, a trade is reversed, a position closes, and an
        // incremental sync is queued.
        let full_running = deps
            .tasks
            .get(full)
            .await
            .unwrap()
            .unwrap()
            .status
            .is_active();
        let incremental_round = round >= rounds / 2 || !full_running;
        if incremental_round {
            let activity = Activity {
                transactions: rng.usize(1..6),
                days_back: rng.i64(0..4),
                finalize_fees: true,
                reversals: rng.usize(0..2),
                fills: rng.usize(0..3),
                close_positions: rng.usize(0..2),
                day_trades: rng.i64(0..2),
                net_liq_bars: rng.usize(0..2),
                ..Activity::default()
            };
            w.sim.simulator.add_activity(&number, &activity).unwrap();
            let task = NewTask::new("user-a", account_id, TaskKind::Incremental);
            deps.tasks.create(&task).await.unwrap();
            deps.queue.enqueue(&task.message()).await.unwrap();
            incrementals += 1;
        }
        let spawned = chrono::Utc::now().timestamp_millis();
        let mut worker = spawn_worker(&w);
        // If the last worker died mid-sync, this one first finishes that message (back after
        // three seconds), so that none is killed twice: five deliveries would rightly send it
        // to the DLQ. Then it dies anywhere in the next stretch (a second and a half of the
        // full sync; 0.7 s, about an incremental sync's length): mid-request, mid-write,
        // between messages or idle.
        let first = next_sync_start(&w, account_id, spawned - 1).await;
        if let (Some(first), true) = (first, died_mid_sync) {
            sync_end(&w, account_id, first).await;
        }
        let stretch = if incremental_round { 700 } else { 1_500 };
        tokio::time::sleep(Duration::from_millis(rng.u64(0..stretch))).await;
        worker.kill().await.unwrap();
        // The lease as the dead worker left it says where it died.
        let running = running_now(&w, &deps, account_id, spawned).await;
        died_mid_sync = running.is_some();
        kills.count(running);
    }
    let mut last = spawn_worker(&w);
    let tasks = until_every_task_ended(&w.aws.tasks(), account_id, Duration::from_secs(300)).await;
    last.kill().await.unwrap();

    println!(
        "crash consistency: {} kills ({} in the full sync, {} in incremental syncs, {} between messages) over \
         {} tasks ({incrementals} incremental after new activity); checking the database against the truth",
        kills.total(),
        kills.full,
        kills.incremental,
        kills.between,
        tasks.len(),
    );
    assert!(
        tasks.iter().all(|t| t.status == TaskStatus::Completed),
        "{:?}",
        tasks.iter().map(|t| (t.kind, t.status)).collect::<Vec<_>>()
    );
    assert!(kills.full > 0 && kills.incremental > 0, "{kills:?}");
    assert_database_equals_truth(&w, &number).await;
    assert_dlq_empty(&w).await;
}

async fn assert_dlq_empty(w: &World) {
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

/// Messages on the world's queue received and neither deleted nor yet visible again.
async fn in_flight(w: &World) -> usize {
    let attributes = w
        .aws
        .sqs()
        .get_queue_attributes()
        .queue_url(&w.aws.stack.queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(
        attributes[&QueueAttributeName::VisibilityTimeout],
        QUEUE_VISIBILITY_SECONDS.to_string(),
        "the queue's visibility is not the template's"
    );
    attributes[&QueueAttributeName::ApproximateNumberOfMessagesNotVisible]
        .parse()
        .unwrap()
}

/// Every lease acquisition (epoch milliseconds) seen per account, sampled every 100 ms until
/// `stop` is set.
fn watch_leases(
    w: &World,
    accounts: Vec<Uuid>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<BTreeSet<i64>>> {
    let (dynamodb, table) = (w.aws.dynamodb(), w.aws.stack.table.clone());
    tokio::spawn(async move {
        let mut seen = vec![BTreeSet::new(); accounts.len()];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            for (account, seen) in accounts.iter().zip(&mut seen) {
                if let Some((_, acquired, _)) = lease_in(&dynamodb, &table, *account).await {
                    seen.insert(acquired);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        seen
    })
}

/// In `make soak` only: it waits out the template's 720 s visibility, as a crashed Lambda's
/// messages do.
#[tokio::test]
#[ignore = "make soak: waits out the template's visibility timeout (12 minutes)"]
async fn kills_with_two_accounts_in_flight_strand_both_messages_for_the_template_visibility_and_lose_nothing()
 {
    const ACCOUNTS: usize = 8;
    let w = world_with(Sizes {
        accounts: ACCOUNTS,
        transactions: 3_000,
        orders: 300,
        years: 2,
    })
    .await;
    let started = chrono::Utc::now().timestamp_millis();
    let linked = link_personal(&w, "user-a").await;
    let accounts: Vec<Uuid> = linked
        .iter()
        .map(|a| a["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(accounts.len(), ACCOUNTS);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let leases = watch_leases(&w, accounts.clone(), stop.clone());
    w.sim.simulator.set_faults(tastytrade_sim::server::Faults {
        latency_ms: 25,
        ..Default::default()
    });
    // The template's visibility (no override), two messages per receive (of different
    // accounts: each account's messages are one FIFO group, and while one is in flight the
    // group's next waits), and invocations short enough that each hands over to a continuation
    // but not so short that one times out on a loaded machine: a timed-out invocation strands
    // its messages for the whole visibility too, as on Lambda.
    let command = || {
        let mut command = worker_command(&w);
        command
            .env_remove("SYNC_VISIBILITY_SECONDS")
            .env("SYNC_BATCH_SIZE", "2")
            .env("SYNC_INVOCATION_SECONDS", "6");
        command
    };
    let mut rng = fastrand::Rng::with_seed(7);
    // Messages stranded by earlier kills stay in flight for the whole visibility, so a new
    // worker's own are those above them.
    let mut stranded = 0;
    let mut kills_with_two = 0;
    let mut kills = 0;
    while kills_with_two < 3 && kills < 6 {
        let mut worker = command().spawn().unwrap();
        let waiting = std::time::Instant::now();
        while in_flight(&w).await < stranded + 2 {
            assert!(
                waiting.elapsed() < Duration::from_secs(60),
                "the worker never had two messages in flight"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(0..300))).await;
        worker.kill().await.unwrap();
        kills += 1;
        let now = in_flight(&w).await;
        if now >= stranded + 2 {
            kills_with_two += 1;
        }
        stranded = now;
    }
    println!(
        "template visibility: {kills} kills, {kills_with_two} with two messages in flight; \
         {stranded} messages stranded for {QUEUE_VISIBILITY_SECONDS} s"
    );
    assert!(kills_with_two >= 2, "{kills_with_two} of {kills} kills");

    let mut last = command().spawn().unwrap();
    let limit = Duration::from_secs(u64::from(QUEUE_VISIBILITY_SECONDS) + 300);
    let mut tasks = Vec::new();
    for account in &accounts {
        tasks.extend(until_every_task_ended(&w.aws.tasks(), *account, limit).await);
    }
    last.kill().await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let leases = leases.await.unwrap();

    assert!(
        tasks.iter().all(|t| t.status == TaskStatus::Completed),
        "{:?}",
        tasks.iter().map(|t| (t.kind, t.status)).collect::<Vec<_>>()
    );
    // A stranded message's account waits out the whole visibility between two of its syncs
    // starting; no other account waits more than a minute (nothing came back early, nothing
    // else was held up), and each stranded message is a different account's.
    let visibility_ms = i64::from(QUEUE_VISIBILITY_SECONDS) * 1_000;
    let longest_waits: Vec<i64> = leases
        .iter()
        .map(|acquired| {
            std::iter::once(started)
                .chain(acquired.iter().copied())
                .collect::<Vec<_>>()
                .windows(2)
                .map(|pair| pair[1] - pair[0])
                .max()
                .unwrap_or(0)
        })
        .collect();
    println!(
        "template visibility: each account's longest wait between two syncs starting (s): {:?}",
        longest_waits
            .iter()
            .map(|ms| ms / 1_000)
            .collect::<Vec<_>>()
    );
    let waited_out = longest_waits
        .iter()
        .filter(|&&wait| wait >= visibility_ms)
        .count();
    assert_eq!(
        waited_out, stranded,
        "longest waits (ms): {longest_waits:?}"
    );
    assert!(
        longest_waits
            .iter()
            .all(|&wait| wait >= visibility_ms || wait < 60_000),
        "a message came back before its visibility ended: {longest_waits:?}"
    );
    for number in &w.sim.credentials.account_numbers {
        assert_database_equals_truth(&w, number).await;
    }
    assert_dlq_empty(&w).await;
}

/// One account with two years of history (20,000 transactions, 2,000 orders), linked by user-a,
/// the simulator's request log cleared after the link.
async fn two_linked_years() -> World {
    let w = world_with(Sizes {
        accounts: 1,
        transactions: 20_000,
        orders: 2_000,
        years: 2,
    })
    .await;
    link_personal(&w, "user-a").await;
    w.sim.simulator.clear_requests();
    w
}

#[tokio::test]
async fn a_full_sync_through_a_fault_storm_ends_equal_to_the_truth_with_retries_within_their_caps()
{
    let w = two_linked_years().await;
    let mut deps = worker(&w);
    // Enough attempts that a request failing every one of them (0.45^12) is not expected in a
    // run of a few hundred; the cap itself is what is checked below.
    let max_attempts = 12;
    let mut config = BrokerConfig::for_simulator(
        w.sim.credentials.base_url.parse().unwrap(),
        w.sim.credentials.streamer_url.parse().unwrap(),
    );
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
        // Every 16th request: with the grant's four in flight, as often per call as every 4th
        // was one at a time. (A token refused right after the refresh it came from fails the
        // call, as it should: the token is then not the problem.)
        expire_tokens_every: 16,
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
    // A 401 (tokens expire every 16 requests) refreshes and starts the call's attempts once more.
    let attempts = attempts_per_call(&w.sim.simulator.requests());
    let (call, most) = attempts.iter().max_by_key(|(_, n)| **n).unwrap();
    assert!(
        *most <= 2 * max_attempts as usize,
        "{call} reached the broker {most} times"
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

// Two threads: the simulator notes when each request arrives and when it answered a 429. On
// one thread shared with the worker, a request sent before the worker could hear the 429
// waited behind the worker's parsing (more pages are read ahead now) and was noted as arriving
// after it, as if the worker had ignored the Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_never_has_more_than_its_requests_in_flight_and_a_429_holds_back_all_of_them() {
    let w = two_linked_years().await;
    let deps = worker(&w);
    w.sim.simulator.set_faults(tastytrade_sim::server::Faults {
        latency_ms: 20,
        rate_429: 0.15,
        retry_after_seconds: Some(1),
        ..Default::default()
    });

    let failed = drain(&w, &deps).await;

    w.sim
        .simulator
        .set_faults(tastytrade_sim::server::Faults::default());
    assert!(failed.is_empty(), "{failed:?}");
    assert_database_equals_truth(&w, &w.sim.credentials.account_numbers[0]).await;
    let most = w.sim.simulator.most_in_flight();
    let concurrency = deps.settings.grant_concurrency;
    assert_eq!(
        most.values().copied().max(),
        Some(concurrency),
        "the grant's requests overlap, {concurrency} at most: {most:?}"
    );
    assert!(
        Stats::get(&deps.broker.stats().throttled) > 0,
        "the broker throttled the grant"
    );
    assert_eq!(
        w.sim.simulator.sent_while_held(),
        0,
        "no request of the grant was sent while a 429's Retry-After ran"
    );
}

// Two threads: the probe for a page's upsert must not wait behind the simulator, which renders
// the pages the worker asks for in this process (on one thread, with four pages of
// transactions asked for at once, the upserts could all run while the probe waited).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    // Long invocations: the restart must land inside a sync, not between continuations. The
    // worker's log is read afterwards, to see the restart cost a retry.
    let log_path = std::env::temp_dir().join(format!("restart-{}.log", Uuid::new_v4()));
    let log = std::fs::File::create(&log_path).unwrap();
    command
        .env("SYNC_INVOCATION_SECONDS", "300")
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut worker = command.spawn().unwrap();
    let client = w.db.client().await;
    let started = std::time::Instant::now();
    // Wait until a page's upsert is in flight, then restart the server under it.
    loop {
        let writing: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'
                   AND query LIKE 'INSERT INTO transactions%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if writing > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the sync never started"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
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
    // The account is marked synced before the task is recorded completed: let the worker
    // finish that write before it goes.
    let recorded = std::time::Instant::now();
    while !crate::link::table_items(&w)
        .await
        .iter()
        .any(|t| t.contains("completed"))
    {
        assert!(
            recorded.elapsed() < Duration::from_secs(30),
            "the task was never recorded completed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.kill().await.unwrap();
    let status = worker.wait().await.unwrap();
    let logged = std::fs::read(&log_path).unwrap();
    std::fs::remove_file(&log_path).unwrap();
    tastysync_tests::keep_for_the_scan(&std::process::Output {
        status,
        stdout: logged.clone(),
        stderr: Vec::new(),
    });
    let logged = String::from_utf8_lossy(&logged);
    assert!(
        logged.contains("message returned to the queue"),
        "the restart landed while the sync was writing, so its message was retried"
    );

    println!(
        "postgres restarted {:.1} s into the sync; the sync completed at {:.1} s",
        restarted_at.as_secs_f64(),
        finished.as_secs_f64()
    );
    assert_database_equals_truth(&w, &w.sim.credentials.account_numbers[0]).await;
}
