//! `sync-trigger` and `sync-status`: start a manual sync, and follow sync tasks.
//!
//! A manual trigger joins a task already on its way for the account (whoever started it)
//! rather than queueing a second one; otherwise it creates a task and starts the account's
//! cooldown in one atomic write, so that of many concurrent triggers exactly one queues a sync.

use chrono::{TimeDelta, Utc};
use lambda_http::{Body, Request, Response};
use uuid::Uuid;

use crate::api::SyncTaskStatus;
use crate::config::{ConfigError, Env};
use crate::domain::accounts::AccountStatus;
use crate::domain::audit::{AuditAction, AuditOutcome};
use crate::domain::requests::Limit;
use crate::domain::tasks::{
    Counts, ManualClaim, NewTask, TaskKind, TaskRecord, TaskStatus, TaskUpdate,
};
use crate::http::{self, ApiError};
use crate::iam::Permissions;
use crate::ports::{
    AccountRepo, Actions, AuditLog, CooldownStore, IdempotencyKeys, RequestLimiter, SyncQueue,
    TaskHistory, TaskReader, TaskUpdater,
};

/// How many of an account's tasks the list shows, newest first.
const RECENT_TASKS: i32 = 20;

/// When tasks count as on their way.
#[derive(Debug, Clone, Copy)]
pub struct TaskSettings {
    /// The shortest time between two manual syncs of one account (`SYNC_TRIGGER_COOLDOWN_SECONDS`,
    /// default 60).
    pub cooldown: TimeDelta,
    /// A task not updated for this long is presumed lost (its worker died and the message went
    /// to the DLQ) and no longer holds back a trigger (`TASK_STALE_AFTER_SECONDS`, default 1800:
    /// longer than a worker invocation plus every back-off between deliveries).
    pub stale_after: TimeDelta,
}

impl TaskSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            cooldown: TimeDelta::seconds(env.parsed_or("SYNC_TRIGGER_COOLDOWN_SECONDS", 60i64)?),
            stale_after: TimeDelta::seconds(env.parsed_or("TASK_STALE_AFTER_SECONDS", 1800i64)?),
        })
    }
}

/// What the trigger route uses, built once per cold start.
#[derive(Debug)]
pub struct TriggerDeps<A: TriggerStore, T: TriggerTasks, Q: SyncQueue> {
    pub accounts: A,
    pub tasks: T,
    pub queue: Q,
    pub settings: TaskSettings,
    /// How many manual syncs a user may ask for (`UserLimits::trigger`).
    pub limit: Limit,
}

/// The database ports the trigger uses: the account, the audit trail, idempotency keys.
pub trait TriggerStore: AccountRepo + AuditLog + IdempotencyKeys {}
impl<A: AccountRepo + AuditLog + IdempotencyKeys> TriggerStore for A {}

/// The task ports the trigger uses: it looks for a task on its way, claims the cooldown with a
/// new task, and marks that task failed if it cannot be queued.
pub trait TriggerTasks:
    TaskHistory + TaskReader + CooldownStore + TaskUpdater + RequestLimiter
{
}
impl<T: TaskHistory + TaskReader + CooldownStore + TaskUpdater + RequestLimiter> TriggerTasks
    for T
{
}

impl<A: TriggerStore, T: TriggerTasks, Q: SyncQueue> Permissions for TriggerDeps<A, T, Q> {
    fn held() -> Vec<Actions> {
        vec![
            <A as AccountRepo>::ACTIONS,
            <A as AuditLog>::ACTIONS,
            <A as IdempotencyKeys>::ACTIONS,
            <T as TaskHistory>::ACTIONS,
            <T as TaskReader>::ACTIONS,
            <T as CooldownStore>::ACTIONS,
            <T as TaskUpdater>::ACTIONS,
            <T as RequestLimiter>::ACTIONS,
            Q::ACTIONS,
        ]
    }
}

/// What the status routes use, built once per cold start.
#[derive(Debug)]
pub struct StatusDeps<A: AccountRepo, T: StatusTasks> {
    pub accounts: A,
    pub tasks: T,
    /// How many reads a user may make (`UserLimits::reads`).
    pub limit: Limit,
}

/// The task ports the status routes use: they read tasks and count the caller's reads.
pub trait StatusTasks: TaskReader + TaskHistory + RequestLimiter {}
impl<T: TaskReader + TaskHistory + RequestLimiter> StatusTasks for T {}

impl<A: AccountRepo, T: StatusTasks> Permissions for StatusDeps<A, T> {
    fn held() -> Vec<Actions> {
        vec![
            A::ACTIONS,
            <T as TaskReader>::ACTIONS,
            <T as TaskHistory>::ACTIONS,
            <T as RequestLimiter>::ACTIONS,
        ]
    }
}

/// Starts a sync of one of the caller's accounts, or answers with the one already on its way.
#[utoipa::path(
    post,
    path = "/sync/tastytrade/{account_db_id}/trigger",
    params(("account_db_id" = Uuid, Path)),
    responses(
        (status = 202, body = SyncTaskStatus, description = "the task queued now, or the one already on its way"),
        (status = 401, body = crate::api::Unauthorized),
        (status = 404, body = crate::api::ErrorBody),
        (status = 409, body = crate::api::ErrorBody, description = "the account must be linked again first"),
        (status = 429, body = crate::api::ErrorBody, description = "the account's cooldown runs; see Retry-After",
            headers(("Retry-After" = u64, description = "seconds until a trigger is accepted"))),
        (status = 503, body = crate::api::ErrorBody),
    ),
)]
pub async fn trigger<A: TriggerStore, T: TriggerTasks, Q: SyncQueue>(
    deps: &TriggerDeps<A, T, Q>,
    request: &Request,
    account_db_id: &str,
) -> Result<Response<Body>, ApiError> {
    let user = http::user_id(request)?;
    let id = http::path_id(account_db_id)?;
    let account = deps
        .accounts
        .find(&user, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if account.last_sync_status == AccountStatus::NeedsReauth {
        return Err(ApiError::Conflict(
            "tastytrade no longer accepts this account's authorization; link it again, then sync"
                .into(),
        ));
    }
    if let Some(task) = on_its_way(&deps.tasks, id, deps.settings.stale_after).await? {
        return Ok(accepted(task));
    }
    let task = NewTask::new(&user, id, TaskKind::Manual);
    match deps
        .tasks
        .create_manual(&task, deps.settings.cooldown)
        .await?
    {
        ManualClaim::Created => {
            if let Err(e) = deps.queue.enqueue(&task.message()).await {
                abandon(deps, &task).await;
                return Err(e.into());
            }
            // The marker only spares the scheduler a duplicate; the sync is queued either way.
            if let Err(e) = deps.accounts.mark_queued(&[id]).await {
                tracing::warn!(account_id = %id, error = %e, "queued marker not set");
            }
            let triggered = (Some(id), AuditAction::Trigger, AuditOutcome::Succeeded);
            super::audit(&deps.accounts, request, &user, triggered).await;
            tracing::info!(user_id = %user, account_id = %id, task_id = %task.task_id, "manual sync queued");
            Ok(accepted(task.pending_record()))
        }
        ManualClaim::CoolingDown { task_id, until } => {
            // The trigger that started the cooldown may have queued a task this one must join.
            if let Some(task_id) = task_id
                && let Some(task) = deps.tasks.get(task_id).await?
                && task.status.is_active()
                && task.user_id == user
            {
                return Ok(accepted(task));
            }
            let refused = (Some(id), AuditAction::Trigger, AuditOutcome::Refused);
            super::audit(&deps.accounts, request, &user, refused).await;
            let wait = (until - Utc::now()).num_milliseconds().max(0);
            Err(ApiError::TooManyRequests {
                retry_after: u64::try_from((wait + 999) / 1000).unwrap_or(1).max(1),
            })
        }
    }
}

/// The task could not be queued: it is marked failed and the cooldown lifted, so the caller
/// may try again at once.
async fn abandon<A: TriggerStore, T: TriggerTasks, Q: SyncQueue>(
    deps: &TriggerDeps<A, T, Q>,
    task: &NewTask,
) {
    let nothing = Counts::default();
    let failed = TaskUpdate::finished(
        TaskStatus::Failed,
        &nothing,
        Some("the sync could not be queued; try again"),
    );
    if let Err(e) = deps.tasks.update(task.task_id, failed).await {
        tracing::warn!(task_id = %task.task_id, error = %e, "unqueued task not marked failed");
    }
    if let Err(e) = deps
        .tasks
        .release_cooldown(task.account_id, task.task_id)
        .await
    {
        tracing::warn!(task_id = %task.task_id, error = %e, "cooldown not lifted; it expires on its own");
    }
}

/// The account's newest task that is still on its way and alive.
async fn on_its_way<T: TaskHistory>(
    tasks: &T,
    account_id: Uuid,
    stale_after: TimeDelta,
) -> Result<Option<TaskRecord>, ApiError> {
    let alive_since = Utc::now() - stale_after;
    Ok(tasks
        .recent(account_id, 10)
        .await?
        .into_iter()
        .find(|t| t.status.is_active() && t.last_updated > alive_since))
}

fn accepted(task: TaskRecord) -> Response<Body> {
    http::json(202, &SyncTaskStatus::from(task))
}

/// One sync task of the caller's.
#[utoipa::path(
    get,
    path = "/sync/status/{task_id}",
    params(("task_id" = Uuid, Path)),
    responses(
        (status = 200, body = SyncTaskStatus),
        (status = 401, body = crate::api::Unauthorized),
        (status = 404, body = crate::api::ErrorBody),
    ),
)]
pub async fn status<A: AccountRepo, T: StatusTasks>(
    deps: &StatusDeps<A, T>,
    request: &Request,
    task_id: &str,
) -> Result<Response<Body>, ApiError> {
    let user = http::user_id(request)?;
    let id = http::path_id(task_id)?;
    let task = deps
        .tasks
        .get(id)
        .await?
        .filter(|t| t.user_id == user)
        .ok_or(ApiError::NotFound)?;
    Ok(http::json(200, &SyncTaskStatus::from(task)))
}

/// The recent sync tasks of one of the caller's accounts, newest first.
#[utoipa::path(
    get,
    path = "/tastytrade-accounts/{account_db_id}/sync-tasks",
    params(("account_db_id" = Uuid, Path)),
    responses(
        (status = 200, body = [SyncTaskStatus]),
        (status = 401, body = crate::api::Unauthorized),
        (status = 404, body = crate::api::ErrorBody),
    ),
)]
pub async fn account_tasks<A: AccountRepo, T: StatusTasks>(
    deps: &StatusDeps<A, T>,
    request: &Request,
    account_db_id: &str,
) -> Result<Response<Body>, ApiError> {
    let user = http::user_id(request)?;
    let id = http::path_id(account_db_id)?;
    deps.accounts
        .find(&user, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let tasks: Vec<SyncTaskStatus> = deps
        .tasks
        .recent(id, RECENT_TASKS)
        .await?
        .into_iter()
        // The account is the caller's; a task of a previous owner of the id (impossible with
        // random ids, but cheap to rule out) stays hidden all the same.
        .filter(|t| t.user_id == user)
        .map(Into::into)
        .collect();
    Ok(http::json(200, &tasks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{InMemoryAccounts, InMemoryQueue, InMemoryTasks, request};

    type Fakes = TriggerDeps<InMemoryAccounts, InMemoryTasks, InMemoryQueue>;

    fn deps() -> Fakes {
        TriggerDeps {
            accounts: InMemoryAccounts::default(),
            tasks: InMemoryTasks::default(),
            queue: InMemoryQueue::default(),
            settings: TaskSettings {
                cooldown: TimeDelta::seconds(60),
                stale_after: TimeDelta::minutes(30),
            },
            limit: crate::domain::requests::UserLimits::default().trigger,
        }
    }

    fn path(account_id: impl std::fmt::Display) -> String {
        format!("/api/v1/sync/tastytrade/{account_id}/trigger")
    }

    /// The status, the `Retry-After` header and the JSON body of a trigger by `user`.
    async fn trigger_as(
        deps: &Fakes,
        user: Option<&str>,
        account_id: impl std::fmt::Display,
    ) -> (u16, Option<String>, serde_json::Value) {
        let id = account_id.to_string();
        let response = http::respond(trigger(deps, &request("POST", &path(&id), user), &id).await);
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let body = match response.body() {
            Body::Text(text) => serde_json::from_str(text).unwrap_or_default(),
            _ => serde_json::Value::Null,
        };
        (response.status().as_u16(), retry_after, body)
    }

    #[tokio::test]
    async fn a_trigger_queues_one_manual_task_and_marks_the_account_queued() {
        let deps = deps();
        let account = deps.accounts.add("user-a", AccountStatus::Success);

        let (status, _, body) = trigger_as(&deps, Some("user-a"), account).await;

        assert_eq!(status, 202);
        assert_eq!(body["kind"], "manual");
        assert_eq!(body["status"], "pending");
        let sent = deps.queue.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].account_id, account);
        assert_eq!(body["task_id"], sent[0].task_id.to_string());
        assert!(deps.accounts.is_queued(account));
    }

    #[tokio::test]
    async fn a_second_trigger_joins_the_task_on_its_way_instead_of_queueing_another() {
        let deps = deps();
        let account = deps.accounts.add("user-a", AccountStatus::Success);

        let (_, _, first) = trigger_as(&deps, Some("user-a"), account).await;
        let (status, _, second) = trigger_as(&deps, Some("user-a"), account).await;

        assert_eq!(status, 202);
        assert_eq!(first["task_id"], second["task_id"]);
        assert_eq!(deps.queue.sent().len(), 1);
    }

    #[tokio::test]
    async fn a_trigger_after_the_task_ended_inside_the_cooldown_is_429_with_retry_after() {
        let deps = deps();
        let account = deps.accounts.add("user-a", AccountStatus::Success);
        let (_, _, first) = trigger_as(&deps, Some("user-a"), account).await;
        let task_id: Uuid = first["task_id"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .unwrap();
        let done = Counts::default();
        deps.tasks
            .update(
                task_id,
                TaskUpdate::finished(TaskStatus::Completed, &done, None),
            )
            .await
            .unwrap();

        let (status, retry_after, body) = trigger_as(&deps, Some("user-a"), account).await;

        assert_eq!(status, 429);
        let seconds: u64 = retry_after.unwrap_or_default().parse().unwrap_or(0);
        assert!((1..=60).contains(&seconds), "{seconds}");
        assert_eq!(body["error"]["code"], "rate_limited");
        deps.tasks.expire_cooldown(account);
        let (status, _, _) = trigger_as(&deps, Some("user-a"), account).await;
        assert_eq!(status, 202, "the cooldown over, a trigger queues again");
        assert_eq!(deps.queue.sent().len(), 2);
        let trail: Vec<_> = (deps.accounts.audit_events().into_iter())
            .map(|e| (e.user_id, e.account_id, e.action, e.outcome))
            .collect();
        let event = |outcome| {
            (
                "user-a".to_owned(),
                Some(account),
                AuditAction::Trigger,
                outcome,
            )
        };
        assert_eq!(
            trail,
            [
                event(AuditOutcome::Succeeded),
                event(AuditOutcome::Refused),
                event(AuditOutcome::Succeeded)
            ]
        );
    }

    #[tokio::test]
    async fn an_unqueued_task_is_failed_and_its_cooldown_lifted_so_the_user_can_retry_at_once() {
        let deps = deps();
        let account = deps.accounts.add("user-a", AccountStatus::Success);
        deps.queue.refuse_sends(true);

        let (status, _, body) = trigger_as(&deps, Some("user-a"), account).await;

        assert_eq!(status, 503);
        assert!(body["error"]["message"].is_string());
        let tasks = deps.tasks.all();
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].status, TaskStatus::Failed);
        deps.queue.refuse_sends(false);
        let (status, _, _) = trigger_as(&deps, Some("user-a"), account).await;
        assert_eq!(status, 202);
    }

    #[tokio::test]
    async fn an_account_that_needs_a_new_link_is_409() {
        let deps = deps();
        let account = deps.accounts.add("user-a", AccountStatus::NeedsReauth);

        let (status, _, body) = trigger_as(&deps, Some("user-a"), account).await;

        assert_eq!(status, 409);
        assert_eq!(body["error"]["code"], "conflict");
        assert!(deps.queue.sent().is_empty());
    }

    #[tokio::test]
    async fn another_users_missing_or_malformed_account_is_404_and_no_claim_is_401() {
        let deps = deps();
        let account = deps.accounts.add("user-a", AccountStatus::Success);

        assert_eq!(trigger_as(&deps, Some("user-b"), account).await.0, 404);
        assert_eq!(
            trigger_as(&deps, Some("user-a"), Uuid::new_v4()).await.0,
            404
        );
        assert_eq!(trigger_as(&deps, Some("user-a"), "not-a-uuid").await.0, 404);
        assert_eq!(trigger_as(&deps, None, account).await.0, 401);
        assert!(deps.queue.sent().is_empty());
        assert!(deps.tasks.all().is_empty());
    }

    #[tokio::test]
    async fn a_task_is_shown_to_its_owner_only() {
        let triggers = deps();
        let account = triggers.accounts.add("user-a", AccountStatus::Success);
        let (_, _, queued) = trigger_as(&triggers, Some("user-a"), account).await;
        let task_id = queued["task_id"].as_str().unwrap_or_default().to_owned();
        let status_deps = StatusDeps {
            accounts: triggers.accounts,
            tasks: triggers.tasks,
            limit: crate::domain::requests::UserLimits::default().reads,
        };
        let read = |user: &'static str| {
            let path = format!("/api/v1/sync/status/{task_id}");
            let task_id = task_id.clone();
            let deps = &status_deps;
            async move {
                http::respond(status(deps, &request("GET", &path, Some(user)), &task_id).await)
                    .status()
                    .as_u16()
            }
        };

        assert_eq!(read("user-a").await, 200);
        assert_eq!(read("user-b").await, 404);
        let listed = http::respond(
            account_tasks(
                &status_deps,
                &request("GET", "/", Some("user-b")),
                &account.to_string(),
            )
            .await,
        );
        assert_eq!(listed.status().as_u16(), 404);
    }
}
