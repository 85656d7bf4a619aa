//! The sync of one account: stages in order, each page one batched upsert, task state in
//! DynamoDB and account status in Postgres.
//!
//! Stages: accounts → balances (+ an intraday capture) → positions (set replace) →
//! transactions → orders (+ live) → EOD balance snapshots. A full sync reads from the
//! account's opening; an incremental one from each entity's watermark minus a trailing window,
//! because the broker changes rows after the fact. Re-running any task converges to the same
//! rows.

use std::time::Instant;

use chrono::{DateTime, Duration, NaiveDate, TimeDelta, Utc};
use deadpool_postgres::Pool;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use uuid::Uuid;

use crate::Retry;
use crate::db::DbError;
use crate::db::sync::{self as store, BalanceTarget, SyncAccount};
use crate::domain::tasks::{Counts, TaskKind, TaskMessage, TaskStatus, TaskUpdate};
use crate::iam::Permissions;
use crate::ports::{
    Actions, LeaseStore, Redelivery, SyncQueue, TaskError, TaskReader, TaskUpdater, TokenCipher,
    TokenOpener, TokenSealer,
};
use crate::secrets::{CipherError, OAuthClient, Purpose, SecretContext};
use crate::tastytrade::{
    AccessToken, BrokerError, Grant, OrderQuery, SnapshotQuery, TastytradeClient, TimeOfDay,
    TransactionQuery,
};

/// Tunables of the sync, from the worker's configuration.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// Re-read this far behind the watermark on incremental, manual and realtime syncs.
    pub trailing: TimeDelta,
    /// Re-read this far behind on the daily deep sync.
    pub deep_trailing: TimeDelta,
    /// Transactions and snapshots are read in windows this long, orders in half of it.
    pub window: TimeDelta,
    /// How long a worker holds an account when its invocation has no deadline; with one, the
    /// lease ends shortly after it (see `lease_ttl`).
    pub lease: TimeDelta,
    /// A full sync of an account without an opening date starts this far back.
    pub max_history: TimeDelta,
    /// Checkpoint and continue in a new invocation when the deadline is this close.
    pub deadline_margin: std::time::Duration,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            trailing: TimeDelta::days(7),
            deep_trailing: TimeDelta::days(30),
            window: TimeDelta::days(366),
            lease: TimeDelta::minutes(15),
            max_history: TimeDelta::days(366 * 15),
            deadline_margin: std::time::Duration::from_secs(20),
        }
    }
}

/// What the sync needs, built once per cold start.
#[derive(Debug)]
pub struct SyncDeps<C: TokenCipher, T: WorkerTasks, Q: WorkerQueue> {
    pub pool: Pool,
    pub broker: TastytradeClient,
    pub cipher: C,
    pub tasks: T,
    /// Where continuations go.
    pub queue: Q,
    /// The deployment's OAuth client, for grants linked through the authorization-code flow.
    pub oauth_client: Option<OAuthClient>,
    pub settings: SyncSettings,
}

/// The task ports a sync uses: it reads its task (to drop stale deliveries), records its
/// progress and outcome, and holds the account's lease.
pub trait WorkerTasks: TaskReader + TaskUpdater + LeaseStore {}
impl<T: TaskReader + TaskUpdater + LeaseStore> WorkerTasks for T {}

/// The queue ports of the worker: continuations, and its back-off between deliveries.
pub trait WorkerQueue: SyncQueue + Redelivery {}
impl<Q: SyncQueue + Redelivery> WorkerQueue for Q {}

impl<C: TokenCipher, T: WorkerTasks, Q: WorkerQueue> Permissions for SyncDeps<C, T, Q> {
    fn held() -> Vec<Actions> {
        vec![
            crate::db::POOL_ACTIONS,
            // The OAuth client, for grants of the authorization-code flow.
            crate::secrets::SECRET_ACTIONS,
            <C as TokenSealer>::ACTIONS,
            <C as TokenOpener>::ACTIONS,
            <T as TaskReader>::ACTIONS,
            <T as TaskUpdater>::ACTIONS,
            <T as LeaseStore>::ACTIONS,
            <Q as SyncQueue>::ACTIONS,
            <Q as Redelivery>::ACTIONS,
        ]
    }
}

/// How a task ended, when it did end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Completed(Counts),
    /// The grant is dead: the account waits for the user to link again.
    NeedsReauth,
    /// Will fail the same way again; the message is done with.
    Failed(String),
    /// The account was unlinked or deleted after the task was queued.
    Skipped,
    /// The deadline came near: a continuation message resumes at the cursor.
    Continued(Cursor),
}

/// The task should run again later: the message must stay on the queue.
#[derive(Debug, thiserror::Error)]
#[error("sync interrupted, to be retried: {0}")]
pub struct Retryable(pub String);

/// Why a stage stopped.
#[derive(Debug, thiserror::Error)]
enum StageError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Cipher(#[from] CipherError),
    #[error(transparent)]
    Tasks(#[from] TaskError),
    #[error("{0}")]
    Gone(&'static str),
    #[error("the invocation's deadline is near")]
    Deadline(Cursor),
}

impl StageError {
    /// The failure category of the `SyncFailures` metric.
    fn category(&self) -> &'static str {
        match self {
            StageError::Broker(_) => "broker",
            StageError::Db(_) => "database",
            StageError::Cipher(_) => "encryption",
            StageError::Tasks(_) => "task_store",
            StageError::Gone(_) | StageError::Deadline(_) => "gone",
        }
    }
}

/// Runs one task message to an outcome, or asks for a retry. `deadline` is the invocation's
/// (Lambda's) deadline: the sync hands over to a continuation before it.
pub async fn run<C: TokenCipher, T: WorkerTasks, Q: WorkerQueue>(
    deps: &SyncDeps<C, T, Q>,
    message: &TaskMessage,
    deadline: Option<Instant>,
) -> Result<Outcome, Retryable> {
    let span = tracing::info_span!("sync", task_id = %message.task_id, account_id = %message.account_id, kind = message.kind.as_str());
    // `instrument`, not `enter`: a guard held across an await would tag whatever else the
    // runtime polls on this thread meanwhile with this sync's ids.
    run_in_span(deps, message, deadline).instrument(span).await
}

async fn run_in_span<C: TokenCipher, T: WorkerTasks, Q: WorkerQueue>(
    deps: &SyncDeps<C, T, Q>,
    message: &TaskMessage,
    deadline: Option<Instant>,
) -> Result<Outcome, Retryable> {
    let task = message.task_id;
    let account_id = message.account_id;
    let account = match store::load_account(&deps.pool, account_id).await {
        Ok(Some(account)) => account,
        Ok(None) => {
            crate::metrics::sync_failed("gone");
            finish(
                deps,
                task,
                TaskStatus::Failed,
                &Counts::default(),
                Some("the account is no longer linked"),
            )
            .await;
            return Ok(Outcome::Skipped);
        }
        Err(e) => {
            let detail = e.to_string();
            return retry_or_fail(deps, task, account_id, e.retry(), "database", &detail).await;
        }
    };
    // A worker that dies after its work but before the queue hears of it leaves its message to
    // be delivered again: a copy of a task that has ended, or of a continuation that has
    // already handed over to the next, must not run (and fork the task into two chains).
    match deps.tasks.get(task).await {
        Ok(Some(record)) if !record.status.is_active() => {
            tracing::info!(status = record.status.as_str(), "the task already ended");
            return Ok(Outcome::Skipped);
        }
        Ok(Some(record)) if record.resume_cursor != message.cursor => {
            tracing::info!("a later continuation of this task is queued");
            return Ok(Outcome::Skipped);
        }
        Ok(_) => {}
        Err(e) => return Err(Retryable(e.to_string())),
    }
    match deps
        .tasks
        .acquire_lease(account_id, task, lease_ttl(deps.settings.lease, deadline))
        .await
    {
        Ok(true) => {}
        Ok(false) => return Err(Retryable("another sync of this account is running".into())),
        Err(e) => return Err(Retryable(e.to_string())),
    }
    let checkpoint_at = deadline.map(|d| d.checked_sub(deps.settings.deadline_margin).unwrap_or(d));
    let result = stages(deps, message, &account, Deadline(checkpoint_at)).await;
    if let Err(e) = deps.tasks.release_lease(account_id, task).await {
        tracing::warn!(error = %e, "lease not released; it expires on its own");
    }
    let counts = match result {
        Ok(counts) => counts,
        Err((StageError::Deadline(cursor), _)) => {
            return continue_later(deps, message, cursor).await;
        }
        Err((e, counts)) => return classify(deps, task, account_id, e, &counts).await,
    };
    finish(deps, task, TaskStatus::Completed, &counts, None).await;
    tracing::info!(written = counts.total_written(), "sync completed");
    Ok(Outcome::Completed(counts))
}

/// How long to hold the account: `lease`, but never past the invocation's deadline (plus a
/// little for clocks), because nothing of this invocation runs after it. A worker that dies
/// then leaves a lease that ends with its invocation, instead of one that blocks the account's
/// next message until it goes to the DLQ.
fn lease_ttl(lease: TimeDelta, deadline: Option<Instant>) -> TimeDelta {
    const SLACK: std::time::Duration = std::time::Duration::from_secs(5);
    deadline
        .map(|d| d.saturating_duration_since(Instant::now()) + SLACK)
        .and_then(|left| TimeDelta::from_std(left).ok())
        .map_or(lease, |left| left.min(lease))
}

/// Queues the continuation that resumes at `cursor`, then records the cursor in the task.
async fn continue_later<C: TokenCipher, T: WorkerTasks, Q: WorkerQueue>(
    deps: &SyncDeps<C, T, Q>,
    message: &TaskMessage,
    cursor: Cursor,
) -> Result<Outcome, Retryable> {
    let json = serde_json::to_value(&cursor).map_err(|e| Retryable(e.to_string()))?;
    let next = TaskMessage {
        cursor: Some(json.clone()),
        ..message.clone()
    };
    // Queued first, recorded second: the record names the one live continuation, so a death
    // between the two leaves this message live (it runs again; SQS drops the identical
    // continuation, or the first one sent finds itself stale), never none. If either step
    // fails, this message is retried and resumes from its own cursor.
    deps.queue
        .enqueue(&next)
        .await
        .map_err(|e| Retryable(e.to_string()))?;
    let update = TaskUpdate {
        status: TaskStatus::InProgress,
        stage: "continuing",
        progress_percentage: 50,
        counts: &cursor.counts,
        error_message: None,
        cursor: Some(&json),
    };
    deps.tasks
        .update(message.task_id, update)
        .await
        .map_err(|e| Retryable(e.to_string()))?;
    tracing::info!(stage = ?cursor.stage, from = %cursor.from, "deadline near; continuing in a new invocation");
    Ok(Outcome::Continued(cursor))
}

async fn classify<C: TokenCipher, T: WorkerTasks, Q: WorkerQueue>(
    deps: &SyncDeps<C, T, Q>,
    task: Uuid,
    account_id: Uuid,
    error: StageError,
    counts: &Counts,
) -> Result<Outcome, Retryable> {
    let revoked = matches!(
        error,
        StageError::Broker(BrokerError::GrantRevoked { .. } | BrokerError::AuthExpired { .. })
            | StageError::Cipher(CipherError::Refused)
    );
    if revoked {
        tracing::warn!(error = %error, "grant no longer works; account needs a re-link");
        crate::metrics::sync_failed("grant_revoked");
        crate::metrics::reauth_required();
        let message = "tastytrade no longer accepts this account's authorization; link it again";
        if let Err(e) = store::mark_failed(&deps.pool, account_id, "NEEDS_REAUTH", message).await {
            return Err(Retryable(e.to_string()));
        }
        finish(deps, task, TaskStatus::NeedsReauth, counts, Some(message)).await;
        return Ok(Outcome::NeedsReauth);
    }
    let retry = match &error {
        StageError::Broker(e) => e.retry(),
        StageError::Db(e) => e.retry(),
        StageError::Cipher(e) => e.retry(),
        StageError::Tasks(e) => e.retry(),
        StageError::Gone(_) | StageError::Deadline(_) => Retry::NonRetryable,
    };
    retry_or_fail(
        deps,
        task,
        account_id,
        retry,
        error.category(),
        &error.to_string(),
    )
    .await
}

/// A retryable error marks the task `retrying` and returns the [`Retryable`] to hand back to
/// SQS; anything else fails the task and the account for good (`Ok(Outcome::Failed)`).
async fn retry_or_fail<C: TokenCipher, T: WorkerTasks, Q: WorkerQueue>(
    deps: &SyncDeps<C, T, Q>,
    task: Uuid,
    account_id: Uuid,
    retry: Retry,
    category: &'static str,
    detail: &str,
) -> Result<Outcome, Retryable> {
    crate::metrics::sync_failed(category);
    match retry {
        Retry::Retryable => {
            tracing::warn!(error = detail, "sync interrupted; it will be retried");
            finish(
                deps,
                task,
                TaskStatus::Retrying,
                &Counts::default(),
                Some("temporarily interrupted; retrying"),
            )
            .await;
            Err(Retryable(detail.to_owned()))
        }
        Retry::NonRetryable => {
            tracing::error!(error = detail, "sync failed");
            let message = "the sync failed; it will run again on schedule";
            if let Err(e) = store::mark_failed(&deps.pool, account_id, "FAILED", message).await {
                tracing::warn!(error = %e, "the account's failed status was not recorded");
            }
            finish(
                deps,
                task,
                TaskStatus::Failed,
                &Counts::default(),
                Some(message),
            )
            .await;
            Ok(Outcome::Failed(detail.to_owned()))
        }
    }
}

async fn finish<C: TokenCipher, T: WorkerTasks, Q: WorkerQueue>(
    deps: &SyncDeps<C, T, Q>,
    task: Uuid,
    status: TaskStatus,
    counts: &Counts,
    error: Option<&str>,
) {
    let update = TaskUpdate::finished(status, counts, error);
    if let Err(e) = deps.tasks.update(task, update).await {
        tracing::warn!(error = %e, "could not record the task's outcome");
    }
}

async fn progress<C: TokenCipher, T: WorkerTasks, Q: WorkerQueue>(
    deps: &SyncDeps<C, T, Q>,
    task: Uuid,
    stage: &str,
    percentage: u8,
    counts: &Counts,
) -> Result<(), StageError> {
    let update = TaskUpdate {
        status: TaskStatus::InProgress,
        stage,
        progress_percentage: percentage,
        counts,
        error_message: None,
        cursor: None,
    };
    Ok(deps.tasks.update(task, update).await?)
}

/// The access token an earlier sync cached, if it is still good for a while.
async fn cached_access_token<C: TokenCipher, T: WorkerTasks, Q: WorkerQueue>(
    deps: &SyncDeps<C, T, Q>,
    account: &SyncAccount,
) -> Option<AccessToken> {
    let (sealed, expires_at) = account.access_token.as_ref()?;
    if *expires_at <= Utc::now() + TimeDelta::minutes(2) {
        return None;
    }
    let context = SecretContext {
        purpose: Purpose::AccessToken,
        user_id: &account.user_id,
        credential_id: account.credential_id,
    };
    // A cache that cannot be opened is only a cache: mint a new token instead.
    let token = deps.cipher.open(context, sealed).await.ok()?;
    Some(AccessToken {
        token,
        expires_at: *expires_at,
    })
}

async fn open_grant<C: TokenCipher, T: WorkerTasks, Q: WorkerQueue>(
    deps: &SyncDeps<C, T, Q>,
    account: &SyncAccount,
) -> Result<Grant, StageError> {
    let context = |purpose| SecretContext {
        purpose,
        user_id: &account.user_id,
        credential_id: account.credential_id,
    };
    let refresh_token = deps
        .cipher
        .open(context(Purpose::RefreshToken), &account.refresh_token)
        .await?;
    let (client_id, client_secret) = match (&account.client_secret, &deps.oauth_client) {
        (Some(sealed), _) => (
            None,
            deps.cipher
                .open(context(Purpose::ClientSecret), sealed)
                .await?,
        ),
        (None, Some(client)) => (
            Some(client.client_id.clone()),
            SecretString::from(client.client_secret.expose_secret().to_owned()),
        ),
        (None, None) => {
            return Err(StageError::Gone(
                "the grant's OAuth client is not configured",
            ));
        }
    };
    Ok(Grant {
        environment: account.environment,
        client_id,
        client_secret,
        refresh_token,
    })
}

/// Where each entity's read starts.
fn start_of(
    kind: TaskKind,
    watermark: Option<DateTime<Utc>>,
    opened: DateTime<Utc>,
    settings: &SyncSettings,
) -> DateTime<Utc> {
    let trailing = if kind == TaskKind::Deep {
        settings.deep_trailing
    } else {
        settings.trailing
    };
    match (kind, watermark) {
        (TaskKind::Full, _) | (_, None) => opened,
        (_, Some(mark)) => (mark - trailing).max(opened),
    }
}

/// `[start, end]` cut into consecutive windows of at most `size`.
fn windows(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    size: TimeDelta,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut out = Vec::new();
    let mut from = start;
    while from < end {
        let to = (from + size).min(end);
        out.push((from, to));
        from = to;
    }
    if out.is_empty() {
        out.push((start, end));
    }
    out
}

/// The paged stages, in order; a continuation resumes at one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Transactions,
    Orders,
    BalanceSnapshots,
}

/// Where a continuation resumes: the stage, the instant (or day) its reads restart from, the
/// fixed end of the whole sync, and the counts so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub stage: Stage,
    pub from: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub counts: Counts,
}

/// Checked after every page: past it, the sync checkpoints and hands over to a continuation.
#[derive(Debug, Clone, Copy)]
struct Deadline(Option<Instant>);

impl Deadline {
    fn passed(self) -> bool {
        self.0.is_some_and(|d| Instant::now() >= d)
    }
}

async fn stages<C: TokenCipher, T: WorkerTasks, Q: WorkerQueue>(
    deps: &SyncDeps<C, T, Q>,
    message: &TaskMessage,
    account: &SyncAccount,
    deadline: Deadline,
) -> Result<Counts, (StageError, Counts)> {
    let resume: Option<Cursor> = message
        .cursor
        .as_ref()
        .and_then(|c| serde_json::from_value(c.clone()).ok());
    let mut counts = resume
        .as_ref()
        .map(|c| c.counts.clone())
        .unwrap_or_default();
    match stages_inner(deps, message, account, &mut counts, resume, deadline).await {
        Ok(()) => Ok(counts),
        Err(e) => Err((e, counts)),
    }
}

async fn stages_inner<C: TokenCipher, T: WorkerTasks, Q: WorkerQueue>(
    deps: &SyncDeps<C, T, Q>,
    message: &TaskMessage,
    account: &SyncAccount,
    counts: &mut Counts,
    resume: Option<Cursor>,
    deadline: Deadline,
) -> Result<(), StageError> {
    let task = message.task_id;
    let number = account.account_number.as_str();
    let pool = &deps.pool;
    let resume_stage = resume.as_ref().map(|c| c.stage);
    let resume_from = |stage: Stage| resume.as_ref().filter(|c| c.stage == stage).map(|c| c.from);
    let now = resume.as_ref().map_or_else(Utc::now, |c| c.now);
    let opened = account.opened_at.unwrap_or(now - deps.settings.max_history);
    let checkpoint = |stage: Stage, from: DateTime<Utc>, counts: &Counts| {
        StageError::Deadline(Cursor {
            stage,
            from,
            now,
            counts: counts.clone(),
        })
    };

    progress(deps, task, "accounts", 0, counts).await?;
    store::mark_running(pool, account.id).await?;
    let cached = cached_access_token(deps, account).await;
    let cached_secret = cached.as_ref().map(|t| t.token.expose_secret().to_owned());
    let session = deps
        .broker
        .session(open_grant(deps, account).await?, cached);
    let listed = session.accounts().await?;
    // A token minted just now is kept, sealed, for the syncs that follow within its lifetime.
    let current = session.access_token().await?;
    if cached_secret.as_deref() != Some(current.token.expose_secret()) {
        let context = SecretContext {
            purpose: Purpose::AccessToken,
            user_id: &account.user_id,
            credential_id: account.credential_id,
        };
        let sealed = deps.cipher.seal(context, &current.token).await?;
        store::store_access_token(pool, account.credential_id, &sealed, current.expires_at).await?;
    }
    if !listed
        .iter()
        .any(|a| a.item.account.account_number == number)
    {
        return Err(StageError::Gone("the grant no longer reaches this account"));
    }

    // The cheap stages run again on every continuation: they are a handful of rows.
    progress(deps, task, "balances", 10, counts).await?;
    let balances = session.balances(number).await?;
    let client = pool.get().await.map_err(DbError::from)?;
    let written = store::upsert_balances(
        &client,
        account.id,
        number,
        &balances,
        BalanceTarget::Current,
    )
    .await?
        + store::upsert_balances(
            &client,
            account.id,
            number,
            &balances,
            BalanceTarget::Capture(now),
        )
        .await?;
    drop(client);
    if resume.is_none() {
        counts.add("balances", balances.len(), written);
    }
    let currencies: Vec<String> = balances
        .iter()
        .filter_map(|b| b.item.currency.clone())
        .collect();

    progress(deps, task, "positions", 20, counts).await?;
    let positions = session.positions(number, true).await?;
    let written = store::replace_positions(pool, account.id, number, &positions).await?;
    if resume.is_none() {
        counts.add("positions", positions.len(), written);
    }

    if resume_stage.is_none_or(|s| s <= Stage::Transactions) {
        progress(deps, task, "transactions", 30, counts).await?;
        let from = resume_from(Stage::Transactions).unwrap_or_else(|| {
            start_of(
                message.kind,
                account.transactions_synced_to,
                opened,
                &deps.settings,
            )
        });
        let all = windows(from, now, deps.settings.window);
        let last_window = all.len() - 1;
        for (index, (start, end)) in all.into_iter().enumerate() {
            let query = TransactionQuery {
                start_at: Some(start),
                end_at: Some(end),
                ..TransactionQuery::default()
            };
            let mut pages = session.transactions(number, &query);
            while let Some(page) = pages.next().await {
                let page = page?;
                let client = pool.get().await.map_err(DbError::from)?;
                let written =
                    store::upsert_transactions(&client, account.id, number, &page.items).await?;
                counts.add("transactions", page.items.len(), written);
                // Rows come oldest first: restarting at the last one's time re-reads a few
                // rows at most, and the upsert absorbs them.
                let last = page.items.iter().filter_map(|r| r.item.executed_at).max();
                if deadline.passed()
                    && let Some(from) = resume_point(
                        pages.is_finished(),
                        index == last_window,
                        end,
                        last.unwrap_or(start).max(start),
                    )
                {
                    return Err(checkpoint(Stage::Transactions, from, counts));
                }
            }
        }
    }

    if resume_stage.is_none_or(|s| s <= Stage::Orders) {
        progress(deps, task, "orders", 60, counts).await?;
        let from = resume_from(Stage::Orders).unwrap_or_else(|| {
            start_of(
                message.kind,
                account.orders_synced_to,
                opened,
                &deps.settings,
            )
        });
        let all = windows(from, now, deps.settings.window / 2);
        let last_window = all.len() - 1;
        for (index, (start, end)) in all.into_iter().enumerate() {
            let query = OrderQuery {
                start_at: Some(start),
                end_at: Some(end),
                ..OrderQuery::default()
            };
            let mut pages = session.orders(number, &query);
            while let Some(page) = pages.next().await {
                let page = page?;
                let client = pool.get().await.map_err(DbError::from)?;
                let written =
                    store::upsert_orders(&client, account.id, number, &page.items).await?;
                counts.add("orders", page.items.len(), written);
                let last = page.items.iter().filter_map(|r| r.item.received_at).max();
                if deadline.passed()
                    && let Some(from) = resume_point(
                        pages.is_finished(),
                        index == last_window,
                        end,
                        last.unwrap_or(start).max(start),
                    )
                {
                    return Err(checkpoint(Stage::Orders, from, counts));
                }
            }
        }
        let mut live = session.live_orders(number);
        while let Some(page) = live.next().await {
            let page = page?;
            let client = pool.get().await.map_err(DbError::from)?;
            let written = store::upsert_orders(&client, account.id, number, &page.items).await?;
            counts.add("orders", page.items.len(), written);
        }
    }

    progress(deps, task, "balance_snapshots", 85, counts).await?;
    let snapshots_from = match (
        resume_from(Stage::BalanceSnapshots),
        message.kind,
        account.snapshots_synced_to,
    ) {
        (Some(from), _, _) => from.date_naive(),
        (None, TaskKind::Full, _) | (None, _, None) => opened.date_naive(),
        (None, kind, Some(mark)) => {
            let trailing = if kind == TaskKind::Deep {
                deps.settings.deep_trailing
            } else {
                deps.settings.trailing
            };
            (mark - Duration::days(trailing.num_days())).max(opened.date_naive())
        }
    };
    let today = now.date_naive();
    for (start, end) in date_windows(snapshots_from, today, deps.settings.window.num_days()) {
        for currency in &currencies {
            let query = SnapshotQuery {
                time_of_day: TimeOfDay::Eod,
                snapshot_date: None,
                start_date: Some(start),
                end_date: Some(end),
                currency: Some(currency.clone()),
                per_page: None,
            };
            let mut pages = session.balance_snapshots(number, &query);
            while let Some(page) = pages.next().await {
                let page = page?;
                let client = pool.get().await.map_err(DbError::from)?;
                let written = store::upsert_balances(
                    &client,
                    account.id,
                    number,
                    &page.items,
                    BalanceTarget::BrokerSnapshot,
                )
                .await?;
                counts.add("balance_snapshots", page.items.len(), written);
            }
        }
        // Snapshot windows resume whole: every currency of the window again.
        if deadline.passed() && end < today {
            let next = crate::sync::day_start(end + Duration::days(1));
            return Err(checkpoint(Stage::BalanceSnapshots, next, counts));
        }
    }
    store::mark_success(pool, account.id, now, now, today).await?;
    Ok(())
}

/// Where a stage interrupted after a page resumes: at the last row read (re-reading the few
/// rows of that instant), at the next window when this one is done, and nowhere (`None`) when
/// the stage is done; resuming at the last row of a finished stage would never end.
fn resume_point(
    page_finished_window: bool,
    last_window: bool,
    window_end: DateTime<Utc>,
    last_seen: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match (page_finished_window, last_window) {
        (true, true) => None,
        (true, false) => Some(window_end),
        (false, _) => Some(last_seen),
    }
}

fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// Consecutive date windows `[start, end]` of at most `days` days (inclusive, not overlapping).
fn date_windows(start: NaiveDate, end: NaiveDate, days: i64) -> Vec<(NaiveDate, NaiveDate)> {
    let mut out = Vec::new();
    let mut from = start;
    while from <= end {
        let to = (from + Duration::days(days - 1)).min(end);
        out.push((from, to));
        from = to + Duration::days(1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_ends_soon_after_the_invocation_that_holds_it() {
        let lease = TimeDelta::minutes(15);
        let in_a_minute = Instant::now() + std::time::Duration::from_secs(60);

        let bounded = lease_ttl(lease, Some(in_a_minute));

        assert!(bounded > TimeDelta::seconds(60) && bounded <= TimeDelta::seconds(65));
        assert_eq!(
            lease_ttl(lease, None),
            lease,
            "no deadline: the whole lease"
        );
        assert!(lease_ttl(lease, Some(Instant::now())) <= TimeDelta::seconds(5));
        let in_an_hour = Instant::now() + std::time::Duration::from_secs(3600);
        assert_eq!(lease_ttl(lease, Some(in_an_hour)), lease, "never longer");
    }

    #[test]
    fn windows_cover_the_range_without_gaps() {
        let start = Utc::now() - TimeDelta::days(1000);
        let end = Utc::now();
        let w = windows(start, end, TimeDelta::days(366));
        assert_eq!(w.first().unwrap().0, start);
        assert_eq!(w.last().unwrap().1, end);
        assert!(w.windows(2).all(|p| p[0].1 == p[1].0));
        let d = date_windows(start.date_naive(), end.date_naive(), 366);
        assert!(d.windows(2).all(|p| p[0].1 + Duration::days(1) == p[1].0));
        assert_eq!(d.last().unwrap().1, end.date_naive());
    }

    #[test]
    fn incremental_reads_start_a_trailing_window_before_the_watermark() {
        let settings = SyncSettings::default();
        let opened = Utc::now() - TimeDelta::days(900);
        let mark = Utc::now() - TimeDelta::hours(1);
        assert_eq!(
            start_of(TaskKind::Incremental, Some(mark), opened, &settings),
            mark - TimeDelta::days(7)
        );
        assert_eq!(
            start_of(TaskKind::Deep, Some(mark), opened, &settings),
            mark - TimeDelta::days(30)
        );
        assert_eq!(
            start_of(TaskKind::Full, Some(mark), opened, &settings),
            opened
        );
        assert_eq!(
            start_of(TaskKind::Incremental, None, opened, &settings),
            opened
        );
    }
}
