//! The scheduler: one EventBridge tick in, one sync task per due account out.
//!
//! FIFO queues take no per-message delay, so the hour's load is spread by slots: an account's
//! slot is a hash of its id modulo the ticks per hour, and a tick takes only the accounts of
//! its own slot. A tick fired every five minutes thus sends a twelfth of the accounts, and
//! each account is synced once an hour at a fixed minute. The daily deep sync uses the same
//! slots over one hour of ticks after the US close.
//!
//! Task ids derive from the tick's scheduled time and the account, and an account whose sync
//! is on the queue is marked in Postgres: a redelivered tick finds the accounts it already
//! sent marked, and a task it created but did not send under the same id, so it queues
//! nothing twice.

use chrono::{DateTime, DurationRound, TimeDelta, Timelike, Utc};
use futures_util::future::try_join_all;
use serde::Deserialize;
use tracing::Instrument;
use uuid::Uuid;

use crate::Retry;
use crate::config::{ConfigError, Env};
use crate::db::DbError;
use crate::domain::accounts::{DueAccount, DueQuery};
use crate::domain::tasks::{Counts, NewTask, TaskKind, TaskStatus, TaskUpdate};
use crate::iam::Permissions;
use crate::ports::{
    AccountRepo, Actions, DueAccounts, SyncQueue, TaskCreator, TaskError, TaskReader, TaskUpdater,
};

/// The namespace of tick task ids (UUID v5): any fixed value will do.
const TICK_NAMESPACE: Uuid = Uuid::from_u128(0x7461_7374_7973_796e_6373_6368_6564_756c);

/// Which sync a tick queues. The schedule puts it in the event (`{"kind": "incremental"}`),
/// with the scheduled time (`"scheduled_time": "<aws.scheduler.scheduled-time>"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TickKind {
    Incremental,
    Deep,
}

impl TickKind {
    fn task_kind(self) -> TaskKind {
        match self {
            TickKind::Incremental => TaskKind::Incremental,
            TickKind::Deep => TaskKind::Deep,
        }
    }
}

/// The scheduled event.
#[derive(Debug, Clone, Deserialize)]
pub struct Tick {
    pub kind: TickKind,
    /// When the schedule meant to fire: it names the tick, so a redelivery (or a late firing)
    /// is the same tick. EventBridge rules call it `time`.
    #[serde(alias = "time", default)]
    pub scheduled_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct ScheduleSettings {
    /// Ticks per hour (`SCHEDULE_TICKS_PER_HOUR`, default 12: one every five minutes); it must
    /// divide 60 and match the schedule's rate.
    pub ticks_per_hour: u32,
    /// A queued marker older than this is a lost message (`SCHEDULE_QUEUED_STALE_SECONDS`,
    /// default 7200).
    pub queued_stale_after: TimeDelta,
    /// Accounts read per page.
    pub page_size: i64,
    /// Task items written at once.
    pub concurrency: usize,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            ticks_per_hour: 12,
            queued_stale_after: TimeDelta::hours(2),
            page_size: 500,
            concurrency: 16,
        }
    }
}

impl ScheduleSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let ticks_per_hour = env.parsed_or("SCHEDULE_TICKS_PER_HOUR", defaults.ticks_per_hour)?;
        if ticks_per_hour == 0 || 60 % ticks_per_hour != 0 {
            return Err(ConfigError::Invalid {
                name: "SCHEDULE_TICKS_PER_HOUR",
                reason: "must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60)".into(),
            });
        }
        Ok(Self {
            ticks_per_hour,
            queued_stale_after: TimeDelta::seconds(
                env.parsed_or("SCHEDULE_QUEUED_STALE_SECONDS", 7200i64)?,
            ),
            ..defaults
        })
    }

    fn tick_length(&self) -> TimeDelta {
        TimeDelta::minutes(i64::from(60 / self.ticks_per_hour.max(1)))
    }
}

/// What the scheduler uses, built once per cold start.
#[derive(Debug)]
pub struct SchedulerDeps<A: SchedulerAccounts, T: SchedulerTasks, Q: SyncQueue> {
    pub accounts: A,
    pub tasks: T,
    pub queue: Q,
    pub settings: ScheduleSettings,
}

/// The task ports a tick uses: it creates each due account's task, reads it back when a
/// redelivered tick finds it exists, and marks the ones the queue refused.
pub trait SchedulerTasks: TaskCreator + TaskReader + TaskUpdater {}
impl<T: TaskCreator + TaskReader + TaskUpdater> SchedulerTasks for T {}

/// The account ports a tick uses: the due accounts of its slot, and their queued markers.
pub trait SchedulerAccounts: DueAccounts + AccountRepo {}
impl<A: DueAccounts + AccountRepo> SchedulerAccounts for A {}

impl<A: SchedulerAccounts, T: SchedulerTasks, Q: SyncQueue> Permissions for SchedulerDeps<A, T, Q> {
    fn held() -> Vec<Actions> {
        vec![
            <A as DueAccounts>::ACTIONS,
            <A as AccountRepo>::ACTIONS,
            <T as TaskCreator>::ACTIONS,
            <T as TaskReader>::ACTIONS,
            <T as TaskUpdater>::ACTIONS,
            Q::ACTIONS,
        ]
    }
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    pub slot: u32,
    /// Due accounts found in the slot.
    pub due: usize,
    /// Messages sent.
    pub queued: usize,
    /// Tasks an earlier delivery of this tick had already started.
    pub already_started: usize,
    /// Messages the queue refused; their tasks are marked failed.
    pub refused: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Tasks(#[from] TaskError),
}

impl ScheduleError {
    /// A retryable failure fails the invocation, and EventBridge delivers the tick again.
    pub fn retry(&self) -> Retry {
        match self {
            ScheduleError::Db(e) => e.retry(),
            ScheduleError::Tasks(e) => e.retry(),
        }
    }
}

/// The slot a tick at `at` serves: which `60 / ticks`-minute part of the hour it falls in.
pub fn slot_of(at: DateTime<Utc>, ticks_per_hour: u32) -> u32 {
    let ticks = ticks_per_hour.max(1);
    at.minute() / (60 / ticks).max(1) % ticks
}

/// The id of the task `tick` creates for `account`: the same for every delivery of the tick.
pub fn tick_task_id(kind: TickKind, tick_start: DateTime<Utc>, account_id: Uuid) -> Uuid {
    let name = format!("{kind:?}/{}/{account_id}", tick_start.timestamp());
    Uuid::new_v5(&TICK_NAMESPACE, name.as_bytes())
}

/// Queues a sync of every due account in the tick's slot.
pub async fn run_tick<A: SchedulerAccounts, T: SchedulerTasks, Q: SyncQueue>(
    deps: &SchedulerDeps<A, T, Q>,
    tick: &Tick,
    now: DateTime<Utc>,
) -> Result<TickReport, ScheduleError> {
    let settings = &deps.settings;
    let length = settings.tick_length();
    // A tick without a time is named by the start of the interval it fires in.
    let start = tick
        .scheduled_time
        .unwrap_or(now)
        .duration_trunc(length)
        .unwrap_or(now);
    let slot = slot_of(start, settings.ticks_per_hour);
    let query = DueQuery {
        slots: i32::try_from(settings.ticks_per_hour).unwrap_or(1),
        slot: i32::try_from(slot).unwrap_or(0),
        // The deep sync is not held back by a sync queued before it (the incremental tick of
        // the same slot, say): it reads a month back, which that one does not. Both run, one
        // after the other in the account's FIFO group, the deep one last.
        queued_before: match tick.kind {
            TickKind::Incremental => now - settings.queued_stale_after,
            // Any marker, even one a database clock a little ahead of ours wrote "later".
            TickKind::Deep => now + TimeDelta::days(1),
        },
        // An hourly sync is due when the account's last sync began before its previous slot
        // ended; the deep sync runs whatever happened during the day.
        synced_before: match tick.kind {
            TickKind::Incremental => Some(start - TimeDelta::hours(1) + length),
            TickKind::Deep => None,
        },
    };
    let span = tracing::info_span!("tick", kind = ?tick.kind, slot, start = %start);
    async {
        let mut report = TickReport {
            slot,
            ..TickReport::default()
        };
        let mut after = Uuid::nil();
        loop {
            let page = deps
                .accounts
                .due_page(&query, after, settings.page_size)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            report.due += page.len();
            queue_page(deps, tick.kind, start, now, &page, &mut report).await?;
        }
        tracing::info!(
            due = report.due,
            queued = report.queued,
            already_started = report.already_started,
            refused = report.refused,
            "tick done"
        );
        crate::metrics::syncs_queued(tick.kind.task_kind().as_str(), report.queued);
        Ok(report)
    }
    .instrument(span)
    .await
}

/// Creates the task; true when its message is still to be sent. A task an earlier delivery of
/// the tick created is sent again only if it never started (the message's deduplication id is
/// the task id, so SQS drops a true repeat).
async fn still_to_send<T: TaskCreator + TaskReader>(
    tasks: &T,
    task: &NewTask,
) -> Result<bool, TaskError> {
    match tasks.create(task).await {
        Ok(()) => Ok(true),
        Err(TaskError::Exists(_)) => Ok(tasks
            .get(task.task_id)
            .await?
            .is_some_and(|t| t.status == TaskStatus::Pending && t.attempts == 0)),
        Err(e) => Err(e),
    }
}

/// Creates the page's tasks, sends their messages in batches of ten, and marks the accounts
/// queued.
async fn queue_page<A: SchedulerAccounts, T: SchedulerTasks, Q: SyncQueue>(
    deps: &SchedulerDeps<A, T, Q>,
    kind: TickKind,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
    page: &[DueAccount],
    report: &mut TickReport,
) -> Result<(), ScheduleError> {
    let tasks: Vec<NewTask> = page
        .iter()
        .map(|account| NewTask {
            task_id: tick_task_id(kind, start, account.id),
            user_id: account.user_id.clone(),
            account_id: account.id,
            kind: kind.task_kind(),
            created_at: now,
        })
        .collect();
    let queued = queue_tasks(
        (&deps.accounts, &deps.tasks, &deps.queue),
        deps.settings.concurrency,
        &tasks,
    )
    .await?;
    report.already_started += queued.already_started;
    report.queued += queued.sent;
    report.refused += queued.refused;
    Ok(())
}

/// What [`queue_tasks`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Queued {
    pub sent: usize,
    pub already_started: usize,
    pub refused: usize,
}

/// Creates `tasks` (ids that name them, so a repeat finds its task), sends the messages of the
/// ones not started yet in batches, and marks their accounts queued. A task whose message the
/// queue refused is marked failed: whoever queues the account next retries it.
pub async fn queue_tasks<
    A: AccountRepo,
    T: TaskCreator + TaskReader + TaskUpdater,
    Q: SyncQueue,
>(
    (accounts, task_store, queue): (&A, &T, &Q),
    concurrency: usize,
    tasks: &[NewTask],
) -> Result<Queued, ScheduleError> {
    let mut sending: Vec<&NewTask> = Vec::with_capacity(tasks.len());
    for chunk in tasks.chunks(concurrency.max(1)) {
        let fresh = try_join_all(chunk.iter().map(|task| still_to_send(task_store, task))).await?;
        sending.extend(
            chunk
                .iter()
                .zip(fresh)
                .filter(|(_, fresh)| *fresh)
                .map(|(t, _)| t),
        );
    }
    let messages: Vec<_> = sending.iter().map(|t| t.message()).collect();
    let refused = queue.enqueue_batch(&messages).await?;
    let sent: Vec<Uuid> = sending
        .iter()
        .filter(|t| !refused.contains(&t.task_id))
        .map(|t| t.account_id)
        .collect();
    accounts.mark_queued(&sent).await?;
    for task_id in &refused {
        let nothing = Counts::default();
        let update = TaskUpdate::finished(
            TaskStatus::Failed,
            &nothing,
            Some("the sync could not be queued; it is queued again later"),
        );
        if let Err(e) = task_store.update(*task_id, update).await {
            tracing::warn!(task_id = %task_id, error = %e, "refused task not marked failed");
        }
    }
    Ok(Queued {
        sent: sent.len(),
        already_started: tasks.len() - sending.len(),
        refused: refused.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::accounts::AccountStatus;
    use crate::fakes::{InMemoryAccounts, InMemoryQueue, InMemoryTasks};

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap_or_default()
    }

    #[test]
    fn ticks_every_five_minutes_serve_twelve_slots_in_order() {
        assert_eq!(slot_of(at("2026-11-25T14:00:00Z"), 12), 0);
        assert_eq!(slot_of(at("2026-11-25T14:04:59Z"), 12), 0);
        assert_eq!(slot_of(at("2026-11-25T14:05:00Z"), 12), 1);
        assert_eq!(slot_of(at("2026-11-25T14:55:00Z"), 12), 11);
        assert_eq!(slot_of(at("2026-11-25T14:59:00Z"), 1), 0);
    }

    #[test]
    fn a_tick_names_the_same_task_for_an_account_on_every_delivery() {
        let account = Uuid::from_u128(7);
        let start = at("2026-11-25T14:05:00Z");
        let first = tick_task_id(TickKind::Incremental, start, account);
        assert_eq!(first, tick_task_id(TickKind::Incremental, start, account));
        assert_ne!(first, tick_task_id(TickKind::Deep, start, account));
        assert_ne!(
            first,
            tick_task_id(TickKind::Incremental, at("2026-11-25T15:05:00Z"), account)
        );
        assert_ne!(
            first,
            tick_task_id(TickKind::Incremental, start, Uuid::from_u128(8))
        );
    }

    fn fake_scheduler() -> SchedulerDeps<InMemoryAccounts, InMemoryTasks, InMemoryQueue> {
        SchedulerDeps {
            accounts: InMemoryAccounts::default(),
            tasks: InMemoryTasks::default(),
            queue: InMemoryQueue::default(),
            settings: ScheduleSettings::default(),
        }
    }

    #[tokio::test]
    async fn a_redelivered_tick_queues_nothing_twice_and_leaves_started_tasks_alone() {
        let deps = fake_scheduler();
        for _ in 0..5 {
            deps.accounts.add("user-a", AccountStatus::Success);
        }
        deps.accounts.add("user-b", AccountStatus::NeedsReauth);
        let tick = Tick {
            kind: TickKind::Incremental,
            scheduled_time: Some(at("2026-11-25T14:05:00Z")),
        };
        let now = at("2026-11-25T14:05:03Z");

        let first = run_tick(&deps, &tick, now).await.unwrap();
        assert_eq!((first.due, first.queued, first.already_started), (5, 5, 0));
        let started = deps.queue.sent()[0].task_id;
        let counts = Counts::default();
        let running = TaskUpdate {
            status: TaskStatus::InProgress,
            stage: "accounts",
            progress_percentage: 0,
            counts: &counts,
            error_message: None,
            cursor: None,
        };
        deps.tasks.update(started, running).await.unwrap();
        // The first delivery died before its markers were written: every account is due again.
        deps.accounts.clear_queued();

        let again = run_tick(&deps, &tick, now).await.unwrap();

        assert_eq!((again.due, again.already_started), (5, 1));
        let sent = deps.queue.sent();
        assert_eq!(sent.len(), 5, "each account's message once: {sent:?}");
        assert_eq!(deps.tasks.all().len(), 5, "each account's task once");
        let next_tick = Tick {
            scheduled_time: Some(at("2026-11-25T15:05:00Z")),
            ..tick
        };
        deps.accounts.clear_queued();
        let later = run_tick(&deps, &next_tick, at("2026-11-25T15:05:01Z"))
            .await
            .unwrap();
        assert_eq!(
            later.queued, 5,
            "the next hour's tick is a new task per account"
        );
    }

    #[test]
    fn ticks_per_hour_must_divide_the_hour() {
        let env = Env::from_pairs([("SCHEDULE_TICKS_PER_HOUR", "7")]);
        assert!(ScheduleSettings::from_env(&env).is_err());
        let env = Env::from_pairs([("SCHEDULE_TICKS_PER_HOUR", "4")]);
        assert_eq!(
            ScheduleSettings::from_env(&env).map(|s| s.ticks_per_hour),
            Ok(4)
        );
    }
}
