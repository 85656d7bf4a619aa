//! `sync-trigger` and `sync-status`: start a manual sync, and follow sync tasks.
//!
//! A manual trigger joins a task already on its way for the account (whoever started it)
//! rather than queueing a second one; otherwise it creates a task and starts the account's
//! cooldown in one atomic write, so that of many concurrent triggers exactly one queues a sync.

use chrono::{TimeDelta, Utc};
use deadpool_postgres::Pool;
use lambda_http::{Body, Request, Response};
use uuid::Uuid;

use crate::api::SyncTaskStatus;
use crate::config::{ConfigError, Env};
use crate::db::{self, accounts};
use crate::domain::tasks::{
    Counts, ManualClaim, NewTask, TaskKind, TaskRecord, TaskStatus, TaskUpdate,
};
use crate::http::{self, ApiError};
use crate::iam::Permissions;
use crate::ports::{Actions, CooldownStore, SyncQueue, TaskHistory, TaskReader, TaskUpdater};

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
pub struct TriggerDeps<T: TriggerTasks, Q: SyncQueue> {
    pub pool: Pool,
    pub tasks: T,
    pub queue: Q,
    pub settings: TaskSettings,
}

/// The task ports the trigger uses: it looks for a task on its way, claims the cooldown with a
/// new task, and marks that task failed if it cannot be queued.
pub trait TriggerTasks: TaskHistory + TaskReader + CooldownStore + TaskUpdater {}
impl<T: TaskHistory + TaskReader + CooldownStore + TaskUpdater> TriggerTasks for T {}

impl<T: TriggerTasks, Q: SyncQueue> Permissions for TriggerDeps<T, Q> {
    fn held() -> Vec<Actions> {
        vec![
            db::POOL_ACTIONS,
            <T as TaskHistory>::ACTIONS,
            <T as TaskReader>::ACTIONS,
            <T as CooldownStore>::ACTIONS,
            <T as TaskUpdater>::ACTIONS,
            Q::ACTIONS,
        ]
    }
}

/// What the status routes use, built once per cold start.
#[derive(Debug)]
pub struct StatusDeps<T: TaskReader + TaskHistory> {
    pub pool: Pool,
    pub tasks: T,
}

impl<T: TaskReader + TaskHistory> Permissions for StatusDeps<T> {
    fn held() -> Vec<Actions> {
        vec![
            db::POOL_ACTIONS,
            <T as TaskReader>::ACTIONS,
            <T as TaskHistory>::ACTIONS,
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
pub async fn trigger<T: TriggerTasks, Q: SyncQueue>(
    deps: &TriggerDeps<T, Q>,
    request: &Request,
    account_db_id: &str,
) -> Result<Response<Body>, ApiError> {
    let user = http::user_id(request)?;
    let id = http::path_id(account_db_id)?;
    let account = accounts::find(&deps.pool, &user, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if account.last_sync_status == "NEEDS_REAUTH" {
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
            if let Err(e) = accounts::mark_queued(&deps.pool, &[id]).await {
                tracing::warn!(account_id = %id, error = %e, "queued marker not set");
            }
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
            let wait = (until - Utc::now()).num_milliseconds().max(0);
            Err(ApiError::TooManyRequests {
                retry_after: u64::try_from((wait + 999) / 1000).unwrap_or(1).max(1),
            })
        }
    }
}

/// The task could not be queued: it is marked failed and the cooldown lifted, so the caller
/// may try again at once.
async fn abandon<T: TriggerTasks, Q: SyncQueue>(deps: &TriggerDeps<T, Q>, task: &NewTask) {
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
pub async fn status<T: TaskReader + TaskHistory>(
    deps: &StatusDeps<T>,
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
pub async fn account_tasks<T: TaskReader + TaskHistory>(
    deps: &StatusDeps<T>,
    request: &Request,
    account_db_id: &str,
) -> Result<Response<Body>, ApiError> {
    let user = http::user_id(request)?;
    let id = http::path_id(account_db_id)?;
    accounts::find(&deps.pool, &user, id)
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
