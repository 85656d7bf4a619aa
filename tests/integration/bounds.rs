//! What the worker takes in from a broker that sends too much: a body past the cap, pages
//! without end, a sync that never finishes. Each fails its task with nothing stored lost.

use std::time::Duration;

use tastysync_shared::domain::tasks::{NewTask, TaskKind, TaskStatus};
use tastysync_shared::ports::{TaskCreator, TaskHistory, TaskReader};
use tastysync_shared::sync::{self, Outcome};
use tastysync_shared::tastytrade::client::Limits;
use tastysync_shared::wiring::{Function, SyncWorker};
use tastytrade_sim::Faults;
use tastytrade_sim::data::Sizes;
use uuid::Uuid;

use crate::link::{World, link_personal, world_with};
use crate::sync::{drain_with_timeout, one_synced_account, worker_with};

/// Runs one task of `kind` to its end; the outcome and the task as recorded.
async fn run(
    deps: &SyncWorker,
    account_id: Uuid,
    kind: TaskKind,
) -> (Outcome, tastysync_shared::domain::tasks::TaskRecord) {
    let task = NewTask::new("user-a", account_id, kind);
    deps.tasks.create(&task).await.unwrap();
    let outcome = sync::run(deps, &task.message(), None).await.unwrap();
    let record = deps.tasks.get(task.task_id).await.unwrap().unwrap();
    (outcome, record)
}

/// Every stored transaction and order, as text, in a fixed order.
async fn stored(w: &World) -> String {
    let client = w.db.client().await;
    let row = client
        .query_one(
            "SELECT (SELECT string_agg(t::text, '|' ORDER BY t.tastytrade_transaction_id) FROM transactions t)
                 || (SELECT string_agg(o::text, '|' ORDER BY o.tastytrade_order_id) FROM orders o)",
            &[],
        )
        .await
        .unwrap();
    row.get(0)
}

async fn one_linked_account(w: &World) -> Uuid {
    let linked = link_personal(w, "user-a").await;
    linked[0]["id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_body_longer_than_the_cap_fails_the_sync_and_keeps_what_was_stored() {
    let (w, _, account_id) = one_synced_account(40, 5).await;
    let deps = worker_with(
        &w,
        Limits {
            max_body_bytes: 256 << 10,
            ..Limits::default()
        },
    );
    let before = stored(&w).await;
    w.sim.simulator.set_faults(Faults {
        padded_path: Some("/transactions".into()),
        padded_bytes: 1 << 20,
        ..Faults::default()
    });

    let (outcome, task) = run(&deps, account_id, TaskKind::Deep).await;

    assert_eq!(outcome, Outcome::Failed { category: "broker" });
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(stored(&w).await, before, "stored rows changed");
}

#[tokio::test]
async fn a_scan_past_its_page_cap_fails_after_a_bounded_number_of_requests() {
    let w = world_with(Sizes {
        accounts: 1,
        transactions: 60,
        orders: 2,
        years: 1,
    })
    .await;
    let account_id = one_linked_account(&w).await;
    let deps = worker_with(
        &w,
        Limits {
            max_pages_per_scan: 10,
            ..Limits::default()
        },
    );
    // One row a page: 60 pages where the cap allows 10.
    w.sim.simulator.set_faults(Faults {
        rows_per_page: Some(1),
        ..Faults::default()
    });

    let (outcome, task) = run(&deps, account_id, TaskKind::Full).await;

    assert_eq!(outcome, Outcome::Failed { category: "broker" });
    assert_eq!(task.status, TaskStatus::Failed);
    let pages = (w.sim.simulator.requests().iter())
        .filter(|r| r.path.ends_with("/transactions"))
        .count();
    let most = 10 + deps.settings.grant_concurrency;
    assert!(
        pages <= most,
        "{pages} pages asked for, at most {most} expected"
    );
}

#[tokio::test]
async fn a_sync_that_keeps_handing_over_fails_at_its_continuation_cap_with_its_pages_kept() {
    let w = world_with(Sizes {
        accounts: 1,
        transactions: 6_000,
        orders: 600,
        years: 3,
    })
    .await;
    let account_id = one_linked_account(&w).await;
    let mut deps = worker_with(&w, Limits::default());
    // Every invocation starts past its checkpoint time: one page, then a hand-over.
    deps.settings.deadline_margin = Duration::from_secs(30);
    deps.settings.handover_reserve = Duration::from_millis(200);
    deps.settings.max_continuations = 2;

    let (failed, invocations) = drain_with_timeout(&w, &deps, Duration::from_secs(10)).await;

    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(invocations, 3, "the first invocation and two continuations");
    let status = w.aws.tasks_of(Function::SyncStatus);
    let tasks = status.recent(account_id, 5).await.unwrap();
    assert_eq!(tasks[0].status, TaskStatus::Failed, "{tasks:?}");
    let client = w.db.client().await;
    let stored: i64 = (client
        .query_one("SELECT count(*) FROM transactions", &[])
        .await)
        .unwrap()
        .get(0);
    assert!(stored > 0, "the pages the invocations stored were lost");
}
