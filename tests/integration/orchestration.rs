//! Manual triggers, task status and the scheduler, through the handlers, against Postgres, moto
//! and the simulator.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tastysync_shared::adapters::postgres::PgAccounts;
use tastysync_shared::domain::requests::UserLimits;
use tastysync_shared::routes::sync_tasks::{StatusDeps, TaskSettings, TriggerDeps};
use tastysync_shared::schedule::{ScheduleSettings, SchedulerDeps, TickReport};
use tastysync_shared::wiring::{Function, SyncScheduler, SyncStatus, SyncTrigger};
use tastysync_tests::{QueueConsumer, event, request};
use tastytrade_sim::data::Sizes;
use uuid::Uuid;

use crate::link::{World, as_user, link_personal, queued_messages, read, with_path, world_with};
use crate::sync::{drain, worker};

async fn world() -> World {
    world_with(Sizes {
        accounts: 1,
        transactions: 30,
        orders: 6,
        years: 1,
    })
    .await
}

fn trigger_deps(w: &World) -> SyncTrigger {
    TriggerDeps {
        accounts: PgAccounts::new(w.pool_of(Function::SyncTrigger)),
        tasks: w.aws.tasks_of(Function::SyncTrigger),
        queue: w.aws.queue_of(Function::SyncTrigger),
        settings: TaskSettings {
            cooldown: chrono::TimeDelta::seconds(60),
            stale_after: chrono::TimeDelta::minutes(30),
        },
        limit: UserLimits::default().trigger,
    }
}

async fn status_deps(w: &World) -> SyncStatus {
    StatusDeps {
        accounts: PgAccounts::new(w.db.pool_of(Function::SyncStatus).await),
        tasks: w.aws.tasks_of(Function::SyncStatus),
        limit: UserLimits::default().reads,
    }
}

/// POST trigger as `user`: the status, the body and the Retry-After header.
async fn trigger(deps: &SyncTrigger, user: &str, account: &str) -> (u16, Value, Option<u64>) {
    let path = format!("/api/v1/sync/tastytrade/{account}/trigger");
    let response = sync_trigger::handle(
        deps,
        request(&as_user(with_path(event("sync-trigger.json"), &path), user)),
    )
    .await;
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let (status, body) = read(response);
    (status, body, retry_after)
}

async fn status(w: &World, user: &str, task: &str) -> (u16, Value) {
    let path = format!("/api/v1/sync/status/{task}");
    read(
        sync_status::handle(
            &status_deps(w).await,
            request(&as_user(with_path(event("sync-status.json"), &path), user)),
        )
        .await,
    )
}

async fn account_tasks(w: &World, user: &str, account: &str) -> (u16, Value) {
    let path = format!("/api/v1/tastytrade-accounts/{account}/sync-tasks");
    read(
        sync_status::handle(
            &status_deps(w).await,
            request(&as_user(
                with_path(event("account-sync-tasks.json"), &path),
                user,
            )),
        )
        .await,
    )
}

/// Links user-a's account (its full sync queued); returns its id.
async fn linked(w: &World) -> String {
    link_personal(w, "user-a").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Links user-a's account and runs its first (full) sync to the end.
async fn linked_and_synced(w: &World) -> String {
    let account = linked(w).await;
    assert!(drain(w, &worker(w)).await.is_empty());
    account
}

#[tokio::test]
async fn twenty_concurrent_triggers_run_exactly_one_sync() {
    let w = world().await;
    let account = linked_and_synced(&w).await;
    let deps = trigger_deps(&w);

    let calls = (0..20).map(|_| trigger(&deps, "user-a", &account));
    let answers = futures_util::future::join_all(calls).await;

    let mut task_ids = BTreeSet::new();
    for (code, body, retry_after) in &answers {
        match code {
            202 => {
                task_ids.insert(body["task_id"].as_str().unwrap().to_owned());
            }
            429 => assert!(retry_after.is_some_and(|s| (1..=60).contains(&s))),
            other => panic!("a trigger answered {other}: {body}"),
        }
    }
    assert_eq!(
        task_ids.len(),
        1,
        "every accepted trigger names the same task"
    );
    let task = task_ids.pop_first().unwrap();
    let messages = queued_messages(&w).await;
    assert_eq!(messages.len(), 1, "one message was queued: {messages:?}");
    assert!(messages[0].1.contains(&task));

    let (_, tasks) = account_tasks(&w, "user-a", &account).await;
    let manual: Vec<&Value> = tasks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "manual")
        .collect();
    assert_eq!(manual.len(), 1, "exactly one manual task exists: {tasks}");
}

#[tokio::test]
async fn a_trigger_joins_the_sync_already_on_its_way() {
    let w = world().await;
    let account = linked(&w).await;
    let (_, tasks) = account_tasks(&w, "user-a", &account).await;
    let full = tasks[0]["task_id"].as_str().unwrap().to_owned();
    assert_eq!(tasks[0]["kind"], "full");

    let (code, body, _) = trigger(&trigger_deps(&w), "user-a", &account).await;

    assert_eq!(code, 202, "{body}");
    assert_eq!(body["task_id"], full.as_str());
    assert_eq!(body["status"], "pending");
    assert_eq!(queued_messages(&w).await.len(), 1, "no second message");
}

#[tokio::test]
async fn a_second_trigger_inside_the_cooldown_answers_429_and_a_finished_sync_shows_its_counts() {
    let w = world().await;
    let account = linked_and_synced(&w).await;
    let deps = trigger_deps(&w);
    let (code, first, _) = trigger(&deps, "user-a", &account).await;
    assert_eq!(code, 202, "{first}");
    assert!(drain(&w, &worker(&w)).await.is_empty());

    let (code, body, retry_after) = trigger(&deps, "user-a", &account).await;

    assert_eq!(code, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(retry_after.is_some_and(|s| (1..=60).contains(&s)));
    let (code, done) = status(&w, "user-a", first["task_id"].as_str().unwrap()).await;
    assert_eq!(code, 200);
    assert_eq!(done["status"], "completed");
    assert_eq!(done["progress_percentage"], 100);
    assert_eq!(done["kind"], "manual");
    assert!(
        done["counts"]["read"]["balances"].as_u64().unwrap() > 0,
        "{done}"
    );
    assert!(done["details"].as_str().unwrap().starts_with("completed"));
}

#[tokio::test]
async fn an_account_waiting_for_a_relink_answers_409_and_queues_nothing() {
    let w = world().await;
    let account = linked_and_synced(&w).await;
    w.db.client()
        .await
        .execute(
            "UPDATE tastytrade_accounts SET last_sync_status = 'NEEDS_REAUTH'",
            &[],
        )
        .await
        .unwrap();

    let (code, body, _) = trigger(&trigger_deps(&w), "user-a", &account).await;

    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("link it again")
    );
    assert!(queued_messages(&w).await.is_empty());
}

#[tokio::test]
async fn another_users_task_and_account_are_404_and_no_claims_is_401() {
    let w = world().await;
    let account = linked(&w).await;
    let (_, tasks) = account_tasks(&w, "user-a", &account).await;
    let task = tasks[0]["task_id"].as_str().unwrap().to_owned();
    assert_eq!(status(&w, "user-a", &task).await.0, 200);

    assert_eq!(status(&w, "user-b", &task).await.0, 404);
    assert_eq!(account_tasks(&w, "user-b", &account).await.0, 404);
    assert_eq!(trigger(&trigger_deps(&w), "user-b", &account).await.0, 404);
    assert_eq!(
        status(&w, "user-a", &Uuid::new_v4().to_string()).await.0,
        404
    );
    assert_eq!(status(&w, "user-a", "not-a-uuid").await.0, 404);

    let mut anonymous = with_path(
        event("sync-status.json"),
        &format!("/api/v1/sync/status/{task}"),
    );
    anonymous["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("authorizer");
    let (code, body) = read(sync_status::handle(&status_deps(&w).await, request(&anonymous)).await);
    assert_eq!(code, 401, "{body}");
    assert_eq!(
        queued_messages(&w).await.len(),
        1,
        "only the link's sync is queued"
    );
}

/// Enough accounts that each of the hour's twelve slots holds hundreds.
const ACCOUNTS: i32 = 10_000;

fn scheduler(w: &World) -> SyncScheduler {
    SchedulerDeps {
        accounts: PgAccounts::new(w.pool_of(Function::SyncScheduler)),
        tasks: w.aws.tasks_of(Function::SyncScheduler),
        queue: w.aws.queue_of(Function::SyncScheduler),
        settings: ScheduleSettings::default(),
    }
}

/// A scheduler whose every tick serves every account (one slot an hour).
fn one_slot_scheduler(w: &World) -> SyncScheduler {
    SchedulerDeps {
        settings: ScheduleSettings {
            ticks_per_hour: 1,
            ..ScheduleSettings::default()
        },
        ..scheduler(w)
    }
}

async fn tick(deps: &SyncScheduler, at: &str) -> TickReport {
    tick_of(deps, "incremental", at).await
}

async fn tick_of(deps: &SyncScheduler, kind: &str, at: &str) -> TickReport {
    let event = json!({"kind": kind, "scheduled_time": at});
    sync_scheduler::handle(deps, event).await.unwrap().unwrap()
}

#[tokio::test]
async fn an_hour_of_ticks_queues_each_of_ten_thousand_accounts_exactly_once_even_when_redelivered()
{
    let w = world().await;
    w.db.many_accounts(ACCOUNTS).await;
    let deps = scheduler(&w);
    let consumer = QueueConsumer::start(&w.aws);
    let hour: DateTime<Utc> = "2026-11-25T14:00:00Z".parse().unwrap();
    let per_slot = ACCOUNTS as usize / 12;

    let mut sent = 0;
    let mut slots = BTreeSet::new();
    for minute in (0..60).step_by(5) {
        let at = (hour + chrono::TimeDelta::minutes(minute)).to_rfc3339();
        let report = tick(&deps, &at).await;
        let again = tick(&deps, &at).await;
        assert_eq!(
            again.queued, 0,
            "a redelivered tick queues nothing: {again:?}"
        );
        assert!(
            report.queued.abs_diff(per_slot) < per_slot / 5,
            "slots spread the load evenly: {report:?}"
        );
        sent += report.queued;
        slots.insert(report.slot);
    }
    // The next hour: every account is still marked queued (no worker ran), so nothing goes twice.
    let next = tick(&deps, "2026-11-25T15:05:00Z").await;
    let consumed = consumer.finish().await;

    assert_eq!(next.queued, 0, "{next:?}");
    assert_eq!(slots.len(), 12, "each five-minute tick serves its own slot");
    assert_eq!(sent, ACCOUNTS as usize);
    let mut per_account: HashMap<&str, usize> = HashMap::new();
    for message in &consumed {
        *per_account.entry(message.group.as_str()).or_default() += 1;
    }
    let ids: BTreeSet<String> = accounts_numbered(&w, "ACC%").await.into_iter().collect();
    assert_eq!(consumed.len(), ACCOUNTS as usize, "one message per account");
    assert!(
        per_account.values().all(|&n| n == 1),
        "no account twice: {:?}",
        per_account
            .iter()
            .filter(|(_, n)| **n > 1)
            .take(3)
            .collect::<Vec<_>>()
    );
    assert!(
        per_account.keys().all(|group| ids.contains(*group)),
        "only open, linked accounts (not CLOSED, not REAUTH)"
    );
}

async fn accounts_numbered(w: &World, pattern: &str) -> Vec<String> {
    w.db.client()
        .await
        .query(
            "SELECT id::text FROM tastytrade_accounts WHERE account_number LIKE $1",
            &[&pattern],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn a_deep_tick_queues_an_account_whose_incremental_sync_of_the_slot_is_already_queued() {
    let w = world().await;
    linked(&w).await;
    let deps = one_slot_scheduler(&w);
    let now = Utc::now().to_rfc3339();
    let incremental = tick(&deps, &now).await;
    assert_eq!(
        incremental.queued, 0,
        "the link's sync is on its way: {incremental:?}"
    );

    let deep = tick_of(&deps, "deep", &now).await;

    assert_eq!(deep.queued, 1, "the deep sync still runs: {deep:?}");
}

#[tokio::test]
async fn a_tick_queues_an_account_whose_first_sync_was_never_queued_and_skips_fresh_ones() {
    let w = world().await;
    let account: Uuid = linked(&w).await.parse().unwrap();
    // As if the link's enqueue had failed: no marker. The first tick of its slot queues it.
    w.db.client()
        .await
        .execute("UPDATE tastytrade_accounts SET sync_queued_at = NULL", &[])
        .await
        .unwrap();
    let deps = one_slot_scheduler(&w);
    let now = Utc::now().to_rfc3339();

    let report = tick(&deps, &now).await;

    assert_eq!(report.queued, 1, "{report:?}");
    let by_group: HashMap<String, usize> =
        queued_messages(&w)
            .await
            .into_iter()
            .fold(HashMap::new(), |mut m, (g, _)| {
                *m.entry(g).or_default() += 1;
                m
            });
    assert_eq!(by_group.get(&account.to_string()), Some(&2));

    // Once synced, the account is not due again within the hour.
    assert!(drain(&w, &worker(&w)).await.is_empty());
    let later = tick(&deps, &Utc::now().to_rfc3339()).await;
    assert_eq!(later.due, 0, "{later:?}");
}
