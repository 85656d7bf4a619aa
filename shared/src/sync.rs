//! The sync of one account: each page one batched upsert, task state in DynamoDB and account
//! status in Postgres.
//!
//! Stages: balances (+ an intraday capture), then side by side: the account's state (trading
//! status, net-liq chart, watchlists, positions as a set replace, greeks), transactions,
//! orders (+ live, + complex) and EOD balance snapshots. They share the grant's session, which
//! keeps a few requests in flight (`SYNC_GRANT_CONCURRENCY`); each scan reads its next pages
//! while the last one is written. A full sync reads from the account's opening; an incremental
//! one from each entity's watermark minus a trailing window, because the broker changes rows
//! after the fact, and skips what its watermarks show cannot have changed. Re-running any task
//! converges to the same rows.

use std::time::Instant;

use chrono::{DateTime, Duration, NaiveDate, TimeDelta, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use uuid::Uuid;

use crate::Retry;
use crate::db::DbError;
use crate::domain::accounts::AccountStatus;
use crate::domain::accounts::{BalanceTarget, SyncAccount};
use crate::domain::events::Event;
use crate::domain::rows::{Gone, Quarantined, Stored};
use crate::domain::tasks::{Counts, TaskKind, TaskMessage, TaskRecord, TaskStatus, TaskUpdate};
use crate::iam::Permissions;
use crate::ports::{
    Actions, Broker, EventBus, LeaseStore, Redelivery, SyncQueue, SyncStore, TaskError, TaskReader,
    TaskUpdater, TokenCipher, TokenOpener, TokenSealer,
};
use crate::secrets::{CipherError, OAuthClient, Purpose, SecretContext};
use crate::tastytrade::dxlink::{PositionGreeks, QuoteFeed};
use crate::tastytrade::model::{
    Balance, BrokerId, ComplexOrder, Order, Position, Record, Transaction, net_positions, raw, tree,
};
use crate::tastytrade::occ::{self, OptionSymbol};
use crate::tastytrade::{
    AccessToken, BrokerError, CurrentBalances, Grant, OrderQuery, Page, Pages, Parsed, Session,
    SnapshotQuery, TimeBack, TimeOfDay, TransactionQuery,
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
    /// Every broker call ends this long (at most a quarter of the invocation's time) before the
    /// deadline, however slow the broker: the time to store the last page and hand over.
    pub handover_reserve: std::time::Duration,
    /// How long the greeks stage waits for the market-data feed's events.
    pub greeks_wait: std::time::Duration,
    /// A grant's watchlists are read at most this often by its accounts' syncs (a full sync
    /// always reads them).
    pub watchlists_every: TimeDelta,
    /// Requests of one grant in flight at once (`SYNC_GRANT_CONCURRENCY`).
    pub grant_concurrency: usize,
    /// A task that would hand over more often than this fails instead
    /// (`SYNC_MAX_CONTINUATIONS`): a sync that never ends must not cycle through the queue for
    /// ever. 96 continuations of 15-minute invocations are a day.
    pub max_continuations: u32,
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
            handover_reserve: std::time::Duration::from_secs(5),
            greeks_wait: std::time::Duration::from_secs(5),
            watchlists_every: TimeDelta::minutes(15),
            grant_concurrency: crate::tastytrade::client::DEFAULT_GRANT_CONCURRENCY,
            max_continuations: 96,
        }
    }
}

/// What the sync needs, built once per cold start.
#[derive(Debug)]
pub struct SyncDeps<S: SyncStore, C: TokenCipher, T: WorkerTasks, Q: WorkerQueue, B: Broker, P> {
    pub store: S,
    pub broker: B,
    pub cipher: C,
    pub tasks: T,
    /// Where continuations go.
    pub queue: Q,
    /// The deployment's OAuth client, for grants linked through the authorization-code flow.
    pub oauth_client: Option<OAuthClient>,
    /// Where a sync's end is announced.
    pub events: P,
    pub settings: SyncSettings,
}

/// The task ports a sync uses: it reads its task (to drop stale deliveries), records its
/// progress and outcome, and holds the account's lease.
pub trait WorkerTasks: TaskReader + TaskUpdater + LeaseStore {}
impl<T: TaskReader + TaskUpdater + LeaseStore> WorkerTasks for T {}

/// The queue ports of the worker: continuations, and its back-off between deliveries.
pub trait WorkerQueue: SyncQueue + Redelivery {}
impl<Q: SyncQueue + Redelivery> WorkerQueue for Q {}

impl<S: SyncStore, C: TokenCipher, T: WorkerTasks, Q: WorkerQueue, B: Broker, P: EventBus>
    Permissions for SyncDeps<S, C, T, Q, B, P>
{
    fn held() -> Vec<Actions> {
        vec![
            S::ACTIONS,
            // The OAuth client, for grants of the authorization-code flow.
            crate::secrets::SECRET_ACTIONS,
            <C as TokenSealer>::ACTIONS,
            <C as TokenOpener>::ACTIONS,
            <T as TaskReader>::ACTIONS,
            <T as TaskUpdater>::ACTIONS,
            <T as LeaseStore>::ACTIONS,
            <Q as SyncQueue>::ACTIONS,
            <Q as Redelivery>::ACTIONS,
            P::ACTIONS,
        ]
    }
}

/// How a task ended, when it did end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Completed(Counts),
    /// The grant is dead: the account waits for the user to link again.
    NeedsReauth,
    /// Will fail the same way again; the message is done with. The category of the
    /// `SyncFailures` metric says why.
    Failed {
        category: &'static str,
    },
    /// The account was unlinked or deleted after the task was queued.
    Skipped,
    /// The deadline came near: a continuation message resumes at the cursor.
    Continued(Cursor),
}

/// The task should run again later: the message must stay on the queue.
#[derive(Debug, thiserror::Error)]
#[error("sync interrupted, to be retried: {0}")]
pub struct Retryable(#[source] pub SyncError);

impl<E: Into<SyncError>> From<E> for Retryable {
    fn from(e: E) -> Self {
        Retryable(e.into())
    }
}

/// Why a sync stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
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
    #[error("another sync of this account is running")]
    Busy,
    #[error("the continuation's cursor could not be written")]
    Cursor(#[from] serde_json::Error),
    #[error("the invocation's deadline is near")]
    Deadline(Box<Cursor>),
    /// Every account has a cash balance; none at all means the broker's answer is not one we
    /// can trust, so nothing about the account is marked synced.
    #[error("tastytrade returned no balance for this account")]
    NoBalance,
    #[error("the sync did not finish in {0} continuations")]
    TooManyContinuations(u32),
}

impl SyncError {
    /// The failure category of the `SyncFailures` metric.
    fn category(&self) -> &'static str {
        match self {
            SyncError::Broker(BrokerError::ClientRejected { .. }) => "oauth_client",
            SyncError::Broker(BrokerError::OutOfTime) => "out_of_time",
            SyncError::Broker(_) | SyncError::NoBalance => "broker",
            SyncError::Db(_) => "database",
            SyncError::Cipher(_) => "encryption",
            SyncError::Tasks(_) => "task_store",
            SyncError::Gone(_) | SyncError::Deadline(_) => "gone",
            SyncError::Busy => "busy",
            SyncError::Cursor(_) => "cursor",
            SyncError::TooManyContinuations(_) => "too_many_continuations",
        }
    }

    fn retry(&self) -> Retry {
        match self {
            // Neither is worth the client's quick retries, both are worth the queue's slow
            // ones: a fresh token refused once more (the grant refreshed, so it lives), and the
            // deployment's OAuth client refused (our configuration, fixed by a redeploy).
            SyncError::Broker(
                BrokerError::AuthExpired { .. } | BrokerError::ClientRejected { .. },
            ) => Retry::Retryable,
            SyncError::Broker(e) => e.retry(),
            SyncError::Db(e) => e.retry(),
            SyncError::Cipher(e) => e.retry(),
            SyncError::Tasks(e) => e.retry(),
            SyncError::Busy => Retry::Retryable,
            SyncError::Gone(_)
            | SyncError::Deadline(_)
            | SyncError::Cursor(_)
            | SyncError::NoBalance
            | SyncError::TooManyContinuations(_) => Retry::NonRetryable,
        }
    }
}

/// Runs one task message to an outcome, or asks for a retry. `deadline` is the invocation's
/// (Lambda's) deadline: the sync hands over to a continuation before it.
pub async fn run<
    S: SyncStore,
    C: TokenCipher,
    T: WorkerTasks,
    Q: WorkerQueue,
    B: Broker,
    P: EventBus,
>(
    deps: &SyncDeps<S, C, T, Q, B, P>,
    message: &TaskMessage,
    deadline: Option<Instant>,
) -> Result<Outcome, Retryable> {
    let span = tracing::info_span!("sync", task_id = %message.task_id, account_id = %message.account_id, kind = message.kind.as_str());
    // `instrument`, not `enter`: a guard held across an await would tag whatever else the
    // runtime polls on this thread meanwhile with this sync's ids.
    let outcome = run_in_span(deps, message, deadline)
        .instrument(span.clone())
        .await;
    if let Ok(outcome) = &outcome {
        announce(deps, message, outcome).instrument(span).await;
    }
    outcome
}

/// Announces how the task ended, now that its rows and its task record are written: the
/// record names the user and the error, and its creation starts the duration.
async fn announce<
    S: SyncStore,
    C: TokenCipher,
    T: WorkerTasks,
    Q: WorkerQueue,
    B: Broker,
    P: EventBus,
>(
    deps: &SyncDeps<S, C, T, Q, B, P>,
    message: &TaskMessage,
    outcome: &Outcome,
) {
    if matches!(outcome, Outcome::Skipped | Outcome::Continued(_)) {
        return;
    }
    let record = match deps.tasks.get(message.task_id).await {
        Ok(Some(record)) => record,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "task not read; its end is not announced");
            return;
        }
    };
    let (account_id, task_id, kind) = (message.account_id, message.task_id, message.kind);
    let user_id = record.user_id.clone();
    let error = |fallback: &str| {
        record
            .error_message
            .clone()
            .unwrap_or_else(|| fallback.into())
    };
    let events = match outcome {
        Outcome::Completed(counts) => vec![Event::SyncCompleted {
            account_id,
            user_id,
            task_id,
            kind,
            counts: counts.clone(),
            duration_ms: u64::try_from((Utc::now() - record.created_at).num_milliseconds())
                .unwrap_or_default(),
        }],
        Outcome::NeedsReauth => vec![
            Event::SyncFailed {
                account_id,
                user_id: user_id.clone(),
                task_id,
                kind,
                error: error("the grant was revoked"),
            },
            Event::AccountNeedsReauth {
                account_id,
                user_id,
            },
        ],
        Outcome::Failed { category } => vec![Event::SyncFailed {
            account_id,
            user_id,
            task_id,
            kind,
            error: error(category),
        }],
        Outcome::Skipped | Outcome::Continued(_) => Vec::new(),
    };
    deps.events.publish(&events).await;
}

async fn run_in_span<S: SyncStore, C: TokenCipher, T: WorkerTasks, Q: WorkerQueue, B: Broker, P>(
    deps: &SyncDeps<S, C, T, Q, B, P>,
    message: &TaskMessage,
    deadline: Option<Instant>,
) -> Result<Outcome, Retryable> {
    let task = message.task_id;
    let account_id = message.account_id;
    let account = match deps.store.load_account(account_id).await {
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
        Err(e) => return retry_or_fail(deps, task, (account_id, None), e.into()).await,
    };
    let record = deps.tasks.get(task).await?;
    if let Some(reason) = stale_delivery(record.as_ref(), message) {
        tracing::info!(reason, "stale delivery skipped");
        return Ok(Outcome::Skipped);
    }
    let ttl = lease_ttl(deps.settings.lease, deadline);
    if !deps.tasks.acquire_lease(account_id, task, ttl).await? {
        return Err(SyncError::Busy.into());
    }
    let settings = &deps.settings;
    let before = |margin| deadline.map(|d: Instant| d.checked_sub(margin).unwrap_or(d));
    // The hand-over takes a moment, not most of a short invocation: at most a quarter of it.
    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    let reserve = left.map_or(settings.handover_reserve, |left| {
        settings.handover_reserve.min(left / 4)
    });
    let deadline = Deadline {
        checkpoint_at: before(settings.deadline_margin),
        calls_until: before(reserve),
    };
    let result = stages(deps, message, &account, deadline).await;
    if let Err(e) = deps.tasks.release_lease(account_id, task).await {
        tracing::warn!(error = %e, "lease not released; it expires on its own");
    }
    let counts = match result {
        Ok(counts) => counts,
        Err((SyncError::Deadline(mut cursor), _)) if !same_cursor(message, &cursor) => {
            cursor.continuations = continuations(message) + 1;
            if cursor.continuations > settings.max_continuations {
                let endless = SyncError::TooManyContinuations(settings.max_continuations);
                let link = (account_id, Some(account.credential_id));
                return retry_or_fail(deps, task, link, endless).await;
            }
            return continue_later(deps, message, *cursor).await;
        }
        // Out of time without a step forward: a continuation would repeat this message (and
        // the queue would drop it as a duplicate), so the message itself comes back.
        Err((SyncError::Deadline(_), _)) => {
            let stuck = SyncError::Broker(BrokerError::OutOfTime);
            return retry_or_fail(deps, task, (account_id, Some(account.credential_id)), stuck)
                .await;
        }
        Err((e, counts)) => return classify(deps, task, &account, e, &counts).await,
    };
    finish(deps, task, TaskStatus::Completed, &counts, None).await;
    tracing::info!(written = counts.total_written(), "sync completed");
    Ok(Outcome::Completed(counts))
}

/// How many times the task has handed over before this message.
fn continuations(message: &TaskMessage) -> u32 {
    resumed(message).map_or(0, |c| c.continuations)
}

/// Why a delivery must not run, if it must not. A worker that dies after its work but before
/// the queue hears of it leaves its message to be delivered again: a copy of a task that has
/// ended, or of a continuation that has already handed over to the next, must not run (and
/// fork the task into two chains).
fn stale_delivery(record: Option<&TaskRecord>, message: &TaskMessage) -> Option<&'static str> {
    match record {
        Some(record) if !record.status.is_active() => Some("the task already ended"),
        Some(record) if record.resume_cursor != message.cursor => {
            Some("a later continuation of this task is queued")
        }
        _ => None,
    }
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
async fn continue_later<
    S: SyncStore,
    C: TokenCipher,
    T: WorkerTasks,
    Q: WorkerQueue,
    B: Broker,
    P,
>(
    deps: &SyncDeps<S, C, T, Q, B, P>,
    message: &TaskMessage,
    cursor: Cursor,
) -> Result<Outcome, Retryable> {
    let json = serde_json::to_value(&cursor).map_err(SyncError::from)?;
    let next = TaskMessage {
        cursor: Some(json.clone()),
        ..message.clone()
    };
    // Queued first, recorded second: the record names the one live continuation, so a death
    // between the two leaves this message live (it runs again; SQS drops the identical
    // continuation, or the first one sent finds itself stale), never none. If either step
    // fails, this message is retried and resumes from its own cursor.
    deps.queue.enqueue(&next).await?;
    let update = TaskUpdate {
        status: TaskStatus::InProgress,
        stage: "continuing",
        progress_percentage: 50,
        counts: &cursor.counts,
        error_message: None,
        cursor: Some(&json),
    };
    deps.tasks.update(message.task_id, update).await?;
    tracing::info!(stage = ?cursor.stage, from = %cursor.from, "deadline near; continuing in a new invocation");
    Ok(Outcome::Continued(cursor))
}

async fn classify<S: SyncStore, C: TokenCipher, T: WorkerTasks, Q: WorkerQueue, B: Broker, P>(
    deps: &SyncDeps<S, C, T, Q, B, P>,
    task: Uuid,
    account: &SyncAccount,
    error: SyncError,
    counts: &Counts,
) -> Result<Outcome, Retryable> {
    // Only a dead refresh token, a client secret the user gave us that tastytrade refuses,
    // or a secret that no longer opens needs the user. A fresh token refused, or the
    // deployment's own OAuth client refused, is retried: parking every account in
    // NEEDS_REAUTH for our fault would make every user link again.
    let revoked = match &error {
        SyncError::Broker(BrokerError::GrantRevoked { .. })
        | SyncError::Cipher(CipherError::Refused) => true,
        SyncError::Broker(BrokerError::ClientRejected { .. }) => account.personal_grant,
        _ => false,
    };
    if revoked {
        tracing::warn!(error = %error, "grant no longer works; account needs a re-link");
        crate::metrics::sync_failed("grant_revoked");
        crate::metrics::reauth_required();
        let message = "tastytrade no longer accepts this account's authorization; link it again";
        let credential = Some(account.credential_id);
        deps.store
            .mark_failed(account.id, credential, AccountStatus::NeedsReauth, message)
            .await?;
        finish(deps, task, TaskStatus::NeedsReauth, counts, Some(message)).await;
        return Ok(Outcome::NeedsReauth);
    }
    let link = (account.id, Some(account.credential_id));
    retry_or_fail(deps, task, link, error).await
}

/// A retryable error marks the task `retrying` and returns the [`Retryable`] to hand back to
/// SQS; anything else fails the task and the account for good (`Ok(Outcome::Failed)`).
/// `link` is the account and the grant the sync used, when it got as far as loading them.
async fn retry_or_fail<
    S: SyncStore,
    C: TokenCipher,
    T: WorkerTasks,
    Q: WorkerQueue,
    B: Broker,
    P,
>(
    deps: &SyncDeps<S, C, T, Q, B, P>,
    task: Uuid,
    (account_id, credential): (Uuid, Option<Uuid>),
    error: SyncError,
) -> Result<Outcome, Retryable> {
    let category = error.category();
    crate::metrics::sync_failed(category);
    match error.retry() {
        Retry::Retryable => {
            tracing::warn!(error = %error, category, "sync interrupted; it will be retried");
            finish(
                deps,
                task,
                TaskStatus::Retrying,
                &Counts::default(),
                Some("temporarily interrupted; retrying"),
            )
            .await;
            Err(Retryable(error))
        }
        Retry::NonRetryable => {
            tracing::error!(error = %error, category, "sync failed");
            let message = "the sync failed; it will run again on schedule";
            if let Err(e) = deps
                .store
                .mark_failed(account_id, credential, AccountStatus::Failed, message)
                .await
            {
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
            Ok(Outcome::Failed { category })
        }
    }
}

async fn finish<S: SyncStore, C: TokenCipher, T: WorkerTasks, Q: WorkerQueue, B: Broker, P>(
    deps: &SyncDeps<S, C, T, Q, B, P>,
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

async fn progress<S: SyncStore, C: TokenCipher, T: WorkerTasks, Q: WorkerQueue, B: Broker, P>(
    deps: &SyncDeps<S, C, T, Q, B, P>,
    task: Uuid,
    stage: &str,
    percentage: u8,
    counts: &Counts,
) -> Result<(), SyncError> {
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
async fn cached_access_token<
    S: SyncStore,
    C: TokenCipher,
    T: WorkerTasks,
    Q: WorkerQueue,
    B: Broker,
    P,
>(
    deps: &SyncDeps<S, C, T, Q, B, P>,
    account: &SyncAccount,
) -> Option<AccessToken> {
    let (token, expires_at) = open_cached(deps, account, Purpose::AccessToken).await?;
    Some(AccessToken { token, expires_at })
}

/// A short-lived token an earlier sync cached, sealed, while it has two minutes left.
async fn open_cached<S: SyncStore, C: TokenCipher, T: WorkerTasks, Q: WorkerQueue, B: Broker, P>(
    deps: &SyncDeps<S, C, T, Q, B, P>,
    account: &SyncAccount,
    purpose: Purpose,
) -> Option<(SecretString, DateTime<Utc>)> {
    let cached = match purpose {
        Purpose::QuoteToken => account.quote_token.as_ref(),
        _ => account.access_token.as_ref(),
    };
    let (sealed, expires_at) = cached?;
    if *expires_at <= Utc::now() + TimeDelta::minutes(2) {
        return None;
    }
    let context = SecretContext {
        purpose,
        user_id: &account.user_id,
        credential_id: account.credential_id,
    };
    // A cache that cannot be opened is only a cache: mint a new token instead.
    let token = deps.cipher.open(context, sealed).await.ok()?;
    Some((token, *expires_at))
}

async fn open_grant<S: SyncStore, C: TokenCipher, T: WorkerTasks, Q: WorkerQueue, B: Broker, P>(
    deps: &SyncDeps<S, C, T, Q, B, P>,
    account: &SyncAccount,
) -> Result<Grant, SyncError> {
    grant_of(&deps.cipher, deps.oauth_client.as_ref(), account).await
}

/// The account's grant, its secrets opened: the user's own OAuth client for a personal grant,
/// else the deployment's.
pub(crate) async fn grant_of<C: TokenOpener>(
    cipher: &C,
    oauth_client: Option<&OAuthClient>,
    account: &SyncAccount,
) -> Result<Grant, SyncError> {
    let context = |purpose| SecretContext {
        purpose,
        user_id: &account.user_id,
        credential_id: account.credential_id,
    };
    let refresh_token = cipher
        .open(context(Purpose::RefreshToken), &account.refresh_token)
        .await?;
    let (client_id, client_secret) = match (&account.client_secret, oauth_client) {
        (Some(sealed), _) => (
            None,
            cipher.open(context(Purpose::ClientSecret), sealed).await?,
        ),
        (None, Some(client)) => (
            Some(client.client_id.clone()),
            SecretString::from(client.client_secret.expose_secret().to_owned()),
        ),
        (None, None) => {
            return Err(SyncError::Gone(
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
    /// The stages after `stage` that ran side by side with it and finished: the continuation
    /// does not run them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finished: Vec<Stage>,
    /// Where the stages after `stage` that ran side by side with it and stopped resume: no
    /// stage loses what an invocation read of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub later: Vec<(Stage, DateTime<Utc>)>,
    /// How many times the task has handed over, this cursor's included.
    #[serde(default)]
    pub continuations: u32,
}

/// The invocation's time: past `checkpoint_at` (checked after every page) the sync hands over
/// to a continuation; no broker call runs past `calls_until`.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    checkpoint_at: Option<Instant>,
    calls_until: Option<Instant>,
}

impl Deadline {
    fn passed(self) -> bool {
        self.checkpoint_at.is_some_and(|d| Instant::now() >= d)
    }
}

/// Whether a best-effort stage may fail alone: the broker answered no, or kept failing after
/// the client's retries. A lost grant, throttling or the invocation's end stop the sync as
/// they would anywhere.
fn spares_the_sync(e: &BrokerError) -> bool {
    e.refused() || matches!(e, BrokerError::Transient { .. })
}

/// A best-effort stage's read: the value, or `None` when the broker's failure spares the sync
/// (then the task carries `message` as a warning); a failure that does not spare it is the
/// sync's.
fn best_effort<T>(
    read: Result<T, BrokerError>,
    stage: &'static str,
    message: &str,
    counts: &mut Counts,
) -> Result<Option<T>, BrokerError> {
    match read {
        Ok(value) => Ok(Some(value)),
        Err(e) if spares_the_sync(&e) => {
            tracing::warn!(stage, error = %e, "a best-effort stage read nothing; what it stored before is kept");
            warn_stage(stage, message, counts);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Tells the user (the task's warnings) and ops (`SyncWarnings`) that `stage` fell short.
fn warn_stage(stage: &'static str, message: &str, counts: &mut Counts) {
    crate::metrics::sync_warning(stage);
    counts.warn(stage, message);
}

/// Whether `cursor` is where `message` already resumed: no step forward.
fn same_cursor(message: &TaskMessage, cursor: &Cursor) -> bool {
    resumed(message).is_some_and(|c| {
        let c = Cursor {
            continuations: cursor.continuations,
            ..c
        };
        &c == cursor
    })
}

/// The cursor a continuation's message resumes at.
fn resumed(message: &TaskMessage) -> Option<Cursor> {
    (message.cursor.as_ref()).and_then(|c| Cursor::deserialize(c).ok())
}

/// What reading ahead hands to the storing: a page, with whether it was its scan's last, or
/// the end of a run of scans (a paged stage's window), after the run's last page.
enum Scanned<T> {
    Page(Result<Page<T>, BrokerError>, bool),
    RunEnd,
}

/// Reads `runs` of scans ahead of whoever stores them, one scan after another: the returned
/// future hands each page to the receiver as it arrives, and never waits for the receiver, so
/// the requests in flight keep moving while a page is stored. Once a scan has asked for all
/// its pages, the next scan's first page (the one that tells its page count) is asked for
/// beside its last ones: a window of eleven pages at four in flight takes three of the
/// broker's round trips, not four. The scans share the first one's room for pages, so memory
/// stays that of one scan. It ends when the runs do, a page fails, the receiver is dropped, or
/// before a run when `more` says no (the deadline: past it the storing stops at the run's end,
/// and a continuation would ask for the next run again). `then`, what follows the scans, is
/// begun beside the last scan's last pages, as a scan's first page is, and dropped when the
/// scans end: it must lose nothing then (see [`Pages::begin`]).
fn scan_ahead<T: DeserializeOwned + Send + 'static, B: Broker>(
    runs: Vec<Vec<Pages<'_, '_, T, B>>>,
    more: impl Fn() -> bool,
    then: impl Future<Output = ()>,
) -> (
    impl Future<Output = ()>,
    tokio::sync::mpsc::UnboundedReceiver<Scanned<T>>,
) {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let mut steps = std::collections::VecDeque::new();
    for (index, run) in runs.into_iter().enumerate() {
        if index > 0 {
            steps.push_back(Step::Begin);
        }
        for pages in run {
            let pages = match steps.iter().find_map(Step::scan) {
                Some(first) => pages.after(first),
                None => pages,
            };
            steps.push_back(Step::Scan(pages));
        }
        steps.push_back(Step::End);
    }
    let reading = async move {
        let mut then = std::pin::pin!(futures_util::FutureExt::fuse(then));
        while let Some(step) = steps.pop_front() {
            let mut pages = match step {
                Step::Begin if more() => continue,
                Step::Begin => return,
                Step::Scan(pages) => pages,
                Step::End if sender.send(Scanned::RunEnd).is_ok() => continue,
                Step::End => return,
            };
            loop {
                let page = if !pages.all_requested() {
                    pages.next().await
                } else if let Some(following) = Step::following(&mut steps, &more) {
                    beside(pages.next(), following.begin()).await
                } else if steps.iter().all(|step| step.scan().is_none()) {
                    beside(pages.next(), then.as_mut()).await
                } else {
                    pages.next().await
                };
                let Some(page) = page else { break };
                let failed = page.is_err();
                let scanned = Scanned::Page(page, pages.is_finished());
                if sender.send(scanned).is_err() || failed {
                    return;
                }
            }
        }
    };
    (reading, receiver)
}

/// `wanted`, with `meanwhile` moving until it comes (a fused `meanwhile` may have ended
/// before): dropped unfinished, `meanwhile` must lose nothing.
async fn beside<T>(wanted: impl Future<Output = T>, meanwhile: impl Future<Output = ()>) -> T {
    let (wanted, meanwhile) = (std::pin::pin!(wanted), std::pin::pin!(meanwhile));
    match futures_util::future::select(wanted, meanwhile).await {
        futures_util::future::Either::Left((wanted, _meanwhile)) => wanted,
        futures_util::future::Either::Right(((), wanted)) => wanted.await,
    }
}

/// What [`scan_ahead`] does next.
enum Step<P> {
    /// A run after the first begins, if `more` says so.
    Begin,
    Scan(P),
    /// A run ends.
    End,
}

impl<P> Step<P> {
    fn scan(&self) -> Option<&P> {
        match self {
            Step::Scan(pages) => Some(pages),
            _ => None,
        }
    }

    /// The next scan in `steps`, if it will be read: one in a later run only while `more`
    /// says so.
    fn following<'s>(
        steps: &'s mut std::collections::VecDeque<Self>,
        more: &impl Fn() -> bool,
    ) -> Option<&'s mut P> {
        for step in steps.iter_mut() {
            match step {
                Step::Begin if !more() => return None,
                Step::Scan(pages) => return Some(pages),
                _ => {}
            }
        }
        None
    }
}

/// Runs the reading and the storing of a scan together (see [`scan_ahead`]); the storing
/// decides: once it ends, early or not, the reading is dropped with its requests.
async fn overlapped<E>(
    reading: impl Future<Output = ()>,
    storing: impl Future<Output = Result<(), E>>,
) -> Result<(), E> {
    let (reading, storing) = (std::pin::pin!(reading), std::pin::pin!(storing));
    match futures_util::future::select(reading, storing).await {
        futures_util::future::Either::Left(((), storing)) => storing.await,
        futures_util::future::Either::Right((stored, _reading)) => stored,
    }
}

/// How a stage that ran beside others ended, and what it counted.
type StageRun = (Result<(), SyncError>, Counts);

/// A stage with counts of its own, so that it can run beside others.
async fn counted(stage: impl AsyncFnOnce(&mut Counts) -> Result<(), SyncError>) -> StageRun {
    let mut counts = Counts::default();
    let result = stage(&mut counts).await;
    (result, counts)
}

/// The stages that ran side by side, folded into the task's `counts` and one outcome: the
/// first error that is not a checkpoint; else the checkpoint of the earliest paged stage that
/// stopped at one, where the continuation resumes, noting the later stages that finished
/// (`already` are those an earlier invocation finished); else success.
fn side_by_side(
    counts: &mut Counts,
    already: &[Stage],
    (state, state_counts): StageRun,
    paged: [(Stage, StageRun); 3],
) -> Result<(), SyncError> {
    counts.absorb(state_counts);
    let mut failure = state.err();
    let (mut stopped, mut finished) = (Vec::<Cursor>::new(), already.to_vec());
    for (stage, (result, stage_counts)) in paged {
        counts.absorb(stage_counts);
        match result {
            Ok(()) => finished.push(stage),
            Err(SyncError::Deadline(cursor)) => stopped.push(*cursor),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    stopped.sort_by_key(|c| c.stage);
    let mut stopped = stopped.into_iter();
    match stopped.next() {
        Some(first) => {
            finished.retain(|s| *s > first.stage);
            finished.sort();
            finished.dedup();
            Err(SyncError::Deadline(Box::new(Cursor {
                counts: counts.clone(),
                finished,
                later: stopped.map(|c| (c.stage, c.from)).collect(),
                ..first
            })))
        }
        None => Ok(()),
    }
}

async fn stages<S: SyncStore, C: TokenCipher, T: WorkerTasks, Q: WorkerQueue, B: Broker, P>(
    deps: &SyncDeps<S, C, T, Q, B, P>,
    message: &TaskMessage,
    account: &SyncAccount,
    deadline: Deadline,
) -> Result<Counts, (SyncError, Counts)> {
    let resume: Option<Cursor> = message
        .cursor
        .as_ref()
        .and_then(|c| serde_json::from_value(c.clone()).ok());
    let mut counts = resume
        .as_ref()
        .map(|c| c.counts.clone())
        .unwrap_or_default();
    let now = resume.as_ref().map_or_else(Utc::now, |c| c.now);
    let run = Run {
        deps,
        message,
        account,
        now,
        opened: account.opened_at.unwrap_or(now - deps.settings.max_history),
        resume,
        deadline,
        spent: Spent::default(),
    };
    let result = run.all_stages(&mut counts).await;
    tracing::info!(target: "tastysync::spent", spent = %run.spent.to_json(), "where the sync's time went");
    match result {
        Ok(()) => Ok(counts),
        Err(e) => Err((e, counts)),
    }
}

/// Where an invocation's time went, per entity: waiting for pages (a request slot of the
/// grant, the broker's answer and its JSON), parsing them into the model, and writing them.
/// The entities run side by side, so these overlap: they show which part holds a sync back,
/// not how its wall time divides.
#[derive(Debug, Default)]
struct Spent(std::sync::Mutex<std::collections::BTreeMap<&'static str, [std::time::Duration; 3]>>);

impl Spent {
    fn add<T>(&self, entity: &'static str, page: &Page<T>, writing: std::time::Duration) {
        let mut spent = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let [fetching, parsing, written] = spent.entry(entity).or_default();
        *fetching += page.fetched_in;
        *parsing += page.parsed_in;
        *written += writing;
    }

    /// `{"transactions": {"fetch_ms": .., "parse_ms": .., "write_ms": ..}, ...}`
    fn to_json(&self) -> serde_json::Value {
        let spent = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let ms = |d: &std::time::Duration| d.as_millis() as u64;
        (spent.iter())
            .map(|(entity, [fetching, parsing, writing])| {
                let parts = serde_json::json!({
                    "fetch_ms": ms(fetching),
                    "parse_ms": ms(parsing),
                    "write_ms": ms(writing),
                });
                ((*entity).to_owned(), parts)
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

/// One invocation's run of a task's stages: what every stage reads.
struct Run<'r, S: SyncStore, C: TokenCipher, T: WorkerTasks, Q: WorkerQueue, B: Broker, P> {
    deps: &'r SyncDeps<S, C, T, Q, B, P>,
    message: &'r TaskMessage,
    account: &'r SyncAccount,
    /// The fixed end of the whole sync, kept across continuations.
    now: DateTime<Utc>,
    /// Where a full read starts.
    opened: DateTime<Utc>,
    resume: Option<Cursor>,
    deadline: Deadline,
    spent: Spent,
}

impl<S: SyncStore, C: TokenCipher, T: WorkerTasks, Q: WorkerQueue, B: Broker, P>
    Run<'_, S, C, T, Q, B, P>
{
    /// accounts beside balances → then side by side: the account's state (trading status,
    /// chart, watchlists, positions and greeks), transactions, orders and balance snapshots →
    /// the account's watermarks. The cheap stages run again on every continuation: they are a
    /// handful of rows.
    async fn all_stages(&self, counts: &mut Counts) -> Result<(), SyncError> {
        self.progress("accounts", 0, counts).await?;
        let (id, credential) = (self.account.id, self.account.credential_id);
        self.deps.store.mark_running(id, credential).await?;
        let cached = cached_access_token(self.deps, self.account).await;
        let session = self
            .deps
            .broker
            .session(open_grant(self.deps, self.account).await?, cached.clone())
            .concurrency(self.deps.settings.grant_concurrency)
            .until(self.deadline.calls_until);
        // A full sync asks whether the grant still reaches the account, beside the balances
        // (a grant that lost the account is refused those, so nothing is written first); any
        // other lets the account's own endpoints tell, and asks only then, which saves a call
        // per sync.
        let full = self.message.kind == TaskKind::Full;
        let (reached, balances) = tokio::join!(
            async {
                match full {
                    true => self.reaches(&session).await,
                    false => Ok(()),
                }
            },
            self.balances(&session, counts)
        );
        reached?;
        let currencies = match balances {
            Err(SyncError::Broker(e)) if e.refused() => {
                if !full {
                    self.reaches(&session).await?;
                }
                return Err(e.into());
            }
            read => read?,
        };
        self.keep_token(&session, cached.as_ref()).await?;
        self.progress("history", 20, counts).await?;
        // No stage below needs another's rows: they share the grant's few requests in flight,
        // so the broker's latency is paid once for all of them, not once per stage.
        let (session, currencies) = (&session, &currencies);
        let state = counted(async |c| self.account_state(session, c).await);
        let transactions = counted(async |c| {
            if !self.runs(Stage::Transactions) {
                return Ok(());
            }
            self.paged::<Transaction>(session, currencies, c).await
        });
        let orders = counted(async |c| {
            if !self.runs(Stage::Orders) {
                return Ok(());
            }
            self.orders(session, currencies, c).await
        });
        let snapshots = counted(async |c| {
            if !self.runs(Stage::BalanceSnapshots) || !self.snapshots_due() {
                return Ok(());
            }
            self.paged::<Balance>(session, currencies, c).await
        });
        // On the heap: side by side, the stages' futures are too large for a thread's stack.
        let (state, transactions, orders, snapshots) = tokio::join!(
            Box::pin(state),
            Box::pin(transactions),
            Box::pin(orders),
            Box::pin(snapshots)
        );
        let already = (self.resume.as_ref()).map_or(&[][..], |c| &c.finished[..]);
        side_by_side(
            counts,
            already,
            state,
            [
                (Stage::Transactions, transactions),
                (Stage::Orders, orders),
                (Stage::BalanceSnapshots, snapshots),
            ],
        )?;
        if self.account.quarantined > 0 || counts.total_rejected() > 0 {
            let full = self.message.kind == TaskKind::Full;
            let store = &self.deps.store;
            store.forget_unseen(self.account.id, self.now, full).await?;
        }
        let today = crate::domain::accounts::trading_day(self.now);
        self.deps
            .store
            .mark_success(id, credential, self.now, self.now, today)
            .await?;
        Ok(())
    }

    /// Whether the end-of-day snapshots are read: by a full or deep sync, and by any other when
    /// a market close has passed since the last sync that completed (the account's watermarks
    /// all move at its end). The broker writes a day's snapshot at its close, so before the
    /// next one there is nothing new to read; the trailing window of the next read, and the
    /// daily deep sync, still catch a late one.
    fn snapshots_due(&self) -> bool {
        matches!(self.message.kind, TaskKind::Full | TaskKind::Deep)
            || self.resume.is_some()
            || (self.account.transactions_synced_to)
                .is_none_or(|last| last < crate::domain::accounts::latest_close(self.now))
    }

    /// The account's state beside its history: trading status, net-liq chart and watchlists
    /// (once per sync, by its first invocation), positions, and the options' greeks.
    async fn account_state(
        &self,
        session: &Session<'_, B>,
        counts: &mut Counts,
    ) -> Result<(), SyncError> {
        if self.resume.is_none() {
            self.trading_status(session).await?;
            self.net_liq_history(session, counts).await?;
            self.watchlists(session, counts).await?;
        }
        let held = self.positions(session, counts).await?;
        if self.resume.is_none() {
            self.greeks(session, &held, counts).await?;
        }
        Ok(())
    }

    /// The orders' windows, then the live orders and the complex orders, which the windows
    /// may not reach. A continuation after the windows reads only these two again.
    ///
    /// The complex orders (the endpoint takes no time filter) are read by a full or deep sync,
    /// and by any other only when one of the account's orders changed: a group changes only
    /// with its orders, which the windows and the live orders read. When they are read
    /// whatever the windows hold, their first page is asked for beside the last window's last
    /// pages, and stored before the live orders, which are read last and so are the freshest
    /// of the orders written; their children are stored after the windows, which would
    /// otherwise mark gone the ones the windows do not list.
    async fn orders(
        &self,
        session: &Session<'_, B>,
        currencies: &[String],
        counts: &mut Counts,
    ) -> Result<(), SyncError> {
        let mut complex = session.complex_orders(&self.account.account_number);
        let read_anyway =
            matches!(self.message.kind, TaskKind::Full | TaskKind::Deep) || self.resume.is_some();
        let begun = async {
            if read_anyway {
                complex.begin().await;
            }
        };
        self.paged_then::<Order>(session, currencies, counts, begun)
            .await?;
        let after_windows = if read_anyway {
            match self.complex_orders(complex, counts).await {
                Ok(()) => self.live_orders(session, counts).await,
                failed => failed,
            }
        } else {
            match self.live_orders(session, counts).await {
                Ok(())
                    if counts
                        .written
                        .get(Order::STAGE_NAME)
                        .is_some_and(|&n| n > 0) =>
                {
                    self.complex_orders(complex, counts).await
                }
                other => other,
            }
        };
        match after_windows {
            Err(SyncError::Broker(BrokerError::OutOfTime)) => {
                Err(self.checkpoint(Stage::Orders, self.now, counts))
            }
            other => other,
        }
    }

    async fn progress(
        &self,
        stage: &str,
        percentage: u8,
        counts: &Counts,
    ) -> Result<(), SyncError> {
        progress(self.deps, self.message.task_id, stage, percentage, counts).await
    }

    /// Where a continuation resumes `stage`, if it stopped inside it.
    fn resumes_from(&self, stage: Stage) -> Option<DateTime<Utc>> {
        let cursor = self.resume.as_ref()?;
        if cursor.stage == stage {
            return Some(cursor.from);
        }
        (cursor.later.iter()).find_map(|(s, from)| (*s == stage).then_some(*from))
    }

    /// Whether `stage` runs in this invocation: not when a continuation resumes after it, nor
    /// when an earlier invocation finished it beside the stage the continuation resumes.
    fn runs(&self, stage: Stage) -> bool {
        (self.resume.as_ref()).is_none_or(|c| c.stage <= stage && !c.finished.contains(&stage))
    }

    /// Keeps a token minted just now, sealed, for the syncs that follow within its lifetime.
    async fn keep_token(
        &self,
        session: &Session<'_, B>,
        cached: Option<&AccessToken>,
    ) -> Result<(), SyncError> {
        let current = session.access_token().await?;
        let cached_secret = cached.map(|t| t.token.expose_secret());
        if cached_secret != Some(current.token.expose_secret()) {
            self.cache(Purpose::AccessToken, &current.token, current.expires_at)
                .await?;
        }
        Ok(())
    }

    /// The grant still reaches the account: the broker's list of the customer's accounts holds
    /// it.
    async fn reaches(&self, session: &Session<'_, B>) -> Result<(), SyncError> {
        let listed = session.accounts().await?;
        let number = &self.account.account_number;
        if listed
            .iter()
            .any(|a| &a.item.account.account_number == number)
        {
            Ok(())
        } else {
            Err(SyncError::Gone("the grant no longer reaches this account"))
        }
    }

    /// Seals `secret` and caches it on the grant until `expires_at`.
    async fn cache(
        &self,
        purpose: Purpose,
        secret: &SecretString,
        expires_at: DateTime<Utc>,
    ) -> Result<(), SyncError> {
        let context = SecretContext {
            purpose,
            user_id: &self.account.user_id,
            credential_id: self.account.credential_id,
        };
        let sealed = self.deps.cipher.seal(context, secret).await?;
        let credential = self.account.credential_id;
        let store = &self.deps.store;
        store
            .cache_token(credential, purpose, &sealed, expires_at)
            .await?;
        Ok(())
    }

    /// The current balances, also recorded as today's intraday snapshot; their currencies.
    async fn balances(
        &self,
        session: &Session<'_, B>,
        counts: &mut Counts,
    ) -> Result<Vec<String>, SyncError> {
        self.progress("balances", 10, counts).await?;
        let number = &self.account.account_number;
        let CurrentBalances {
            rows: Parsed { items, rejected },
            every_currency,
        } = session.current_balances(number).await?;
        if items.is_empty() && rejected.is_empty() {
            return Err(SyncError::NoBalance);
        }
        let store = &self.deps.store;
        let mut stored = store
            .upsert_balances(self.account, &items, BalanceTarget::Current)
            .await?;
        let capture = BalanceTarget::Capture(self.now);
        let captured = store.upsert_balances(self.account, &items, capture).await?;
        stored.changed += captured.changed;
        for rejection in captured.rejected {
            if stored.kept(rejection.index) {
                stored.rejected.push(rejection);
            }
        }
        let currencies: Vec<String> = (items.iter().filter_map(|b| b.item.currency.clone()))
            .chain(rejected.iter().filter_map(|r| r.text("currency")))
            .collect();
        if every_currency {
            let gone = Some(Gone::Balances { seen: &currencies });
            self.remove_gone("balances", gone, counts).await?;
        }
        let read = items.len() + rejected.len();
        let aside = self.settle("balances", &items, rejected, &stored).await?;
        // A continuation does not count the cheap stages again.
        if self.resume.is_none() {
            counts.add("balances", read, stored.changed);
            counts.reject("balances", aside);
        }
        Ok(currencies)
    }

    /// The account's trading status (day trades counted, pattern-day-trader and closing-only
    /// flags...), read once per sync: by its first invocation, since a continuation's short
    /// time is the paged stages'. One the model cannot read leaves the stored one in place; it
    /// is account metadata, not a synced row to quarantine.
    async fn trading_status(&self, session: &Session<'_, B>) -> Result<(), SyncError> {
        let number = &self.account.account_number;
        let Parsed { items, rejected } = session.trading_status(number).await?;
        for status in &items {
            let store = &self.deps.store;
            store
                .store_trading_status(self.account.id, status, Utc::now())
                .await?;
        }
        for unreadable in rejected {
            tracing::warn!(reason = %unreadable.reason, "the trading status does not parse; the stored one is kept");
        }
        Ok(())
    }

    /// The account's net-liq chart, read once per sync like the trading status: all of it on
    /// a full sync, else from the last bar stored. It is best-effort: when the broker refuses
    /// it (it serves no sandbox session, reference §1) or fails, the stored history stays, the
    /// task carries a warning and the sync goes on.
    async fn net_liq_history(
        &self,
        session: &Session<'_, B>,
        counts: &mut Counts,
    ) -> Result<(), SyncError> {
        const STAGE: &str = "net_liq_history";
        let since = (self.message.kind != TaskKind::Full)
            .then_some(self.account.net_liq_synced_to)
            .flatten();
        let window = TimeBack::covering(since, self.now);
        let number = &self.account.account_number;
        let read = session.net_liq_history(number, window).await;
        let message =
            "tastytrade did not serve the net-liq history; the history stored before is kept";
        let Some(Parsed { items, rejected }) = best_effort(read, STAGE, message, counts)? else {
            return Ok(());
        };
        let read = items.len() + rejected.len();
        let store = &self.deps.store;
        let stored = store.upsert_net_liq_history(self.account, &items).await?;
        let aside = self.settle(STAGE, &items, rejected, &stored).await?;
        counts.add(STAGE, read, stored.changed);
        counts.reject(STAGE, aside);
        Ok(())
    }

    /// The account's complex orders (OCO, OTOCO...), every page once per sync (by the
    /// invocation that finishes the orders' windows): the endpoint takes no time filter. Each
    /// group is stored with its child orders, which go where every order goes, marked with the
    /// group's id and their tag; a stored group the list no longer holds is marked removed.
    async fn complex_orders(
        &self,
        scan: Pages<'_, '_, ComplexOrder, B>,
        counts: &mut Counts,
    ) -> Result<(), SyncError> {
        const STAGE: &str = "complex_orders";
        let (reading, mut pages) = scan_ahead(vec![vec![scan]], || true, async {});
        // Every group listed, read or not: the others are no longer listed.
        let mut seen = Vec::new();
        let storing = async {
            while let Some(Scanned::Page(page, _)) = pages.recv().await {
                let mut page = page?;
                let started = std::time::Instant::now();
                seen.extend(page.items.iter().map(|c| c.item.id));
                seen.extend(page.rejected.iter().filter_map(|r| r.broker_id));
                let read = page.items.len() + page.rejected.len();
                let store = &self.deps.store;
                let stored = store
                    .upsert_complex_orders(self.account, &page.items)
                    .await?;
                let rejected = std::mem::take(&mut page.rejected);
                let aside = self.settle(STAGE, &page.items, rejected, &stored).await?;
                counts.add(STAGE, read, stored.changed);
                counts.reject(STAGE, aside);
                let children = (page.items.iter())
                    .flat_map(|c| c.item.children())
                    .map(|order| raw(&order))
                    .collect();
                let Parsed { items, rejected } = Parsed::<Order>::parse(children);
                self.write::<Order>(items, rejected, counts).await?;
                self.spent.add(STAGE, &page, started.elapsed());
            }
            Ok::<_, SyncError>(())
        };
        overlapped(reading, storing).await?;
        let gone = Some(Gone::ComplexOrders { seen: &seen });
        self.remove_gone(STAGE, gone, counts).await
    }

    /// The customer's watchlists, onto the grant: a full sync reads them, any other only when
    /// no sync of the grant's accounts did within `watchlists_every`, so a grant of several
    /// accounts reads them once. Best-effort like the chart. Watchlists the broker no longer
    /// lists are deleted, unless one could not be read (its name is then unknown).
    async fn watchlists(
        &self,
        session: &Session<'_, B>,
        counts: &mut Counts,
    ) -> Result<(), SyncError> {
        const STAGE: &str = "watchlists";
        let credential = self.account.credential_id;
        let since = self.now - self.deps.settings.watchlists_every;
        let claimed = self.deps.store.claim_watchlists(credential, since).await?;
        if !claimed && self.message.kind != TaskKind::Full {
            return Ok(());
        }
        let message = "tastytrade did not serve the watchlists; the ones stored before are kept";
        let read = best_effort(session.watchlists().await, STAGE, message, counts)?;
        let Some(Parsed { items, rejected }) = read else {
            return Ok(());
        };
        for unreadable in &rejected {
            tracing::warn!(reason = %unreadable.reason, "a watchlist does not parse; none is deleted");
        }
        if !rejected.is_empty() {
            let message = format!(
                "{} watchlists could not be read; no stored watchlist was deleted",
                rejected.len()
            );
            warn_stage(STAGE, &message, counts);
        }
        let store = &self.deps.store;
        let written = store
            .replace_watchlists(credential, &items, !rejected.is_empty())
            .await?;
        counts.add(STAGE, items.len() + rejected.len(), written);
        Ok(())
    }

    /// The account's positions, replacing the set in one transaction. The lots of a symbol
    /// become one position; a position that cannot be stored keeps its stored row. Returns
    /// the positions read.
    async fn positions(
        &self,
        session: &Session<'_, B>,
        counts: &mut Counts,
    ) -> Result<Vec<Record<Position>>, SyncError> {
        self.progress("positions", 20, counts).await?;
        let number = &self.account.account_number;
        let Parsed { items, rejected } = session.positions(number, true).await?;
        let read = items.len() + rejected.len();
        let positions = net_positions(items);
        let unreadable: Vec<String> = (rejected.iter()).filter_map(|r| r.text("symbol")).collect();
        let stored = self
            .deps
            .store
            .replace_positions(self.account, &positions, &unreadable)
            .await?;
        let aside = self
            .settle("positions", &positions, rejected, &stored)
            .await?;
        if self.resume.is_none() {
            counts.add("positions", read, stored.changed);
            counts.reject("positions", aside);
        }
        Ok(positions)
    }

    /// The option positions' greeks from the market-data feed (DXLink), read once per sync
    /// like the trading status. Best-effort: a refused quote token, a failed feed or one that
    /// stops early is a warning on the task, and a position the feed sent nothing for keeps
    /// its previous greeks with their time. An option's feed symbol is the position's
    /// `streamer-symbol` when the broker sends one, else, for an equity option, derived from
    /// the OCC symbol; a future option without one is left out, since its feed symbol follows
    /// exchange conventions its symbol does not carry (see `occ`).
    async fn greeks(
        &self,
        session: &Session<'_, B>,
        held: &[Record<Position>],
        counts: &mut Counts,
    ) -> Result<(), SyncError> {
        const STAGE: &str = "greeks";
        let options: std::collections::HashMap<String, &str> = (held.iter())
            .filter_map(|p| {
                let option = occ::parse(&p.item.symbol)?;
                let sent = (p.item.streamer_symbol.clone()).filter(|s| !s.trim().is_empty());
                let feed_symbol = sent.or(match option {
                    OptionSymbol::Occ(o) => Some(o.streamer_symbol()),
                    OptionSymbol::FutureOption => None,
                })?;
                Some((feed_symbol, p.item.symbol.as_str()))
            })
            .collect();
        if options.is_empty() {
            return Ok(());
        }
        let mut symbols: Vec<String> = options.keys().cloned().collect();
        symbols.sort();
        let wait = self.deps.settings.greeks_wait;
        let read_with = |feed: Result<QuoteFeed, BrokerError>| async {
            self.deps.broker.greeks(&feed?, &symbols, wait).await
        };
        let cached = open_cached(self.deps, self.account, Purpose::QuoteToken).await;
        let read = match cached.and_then(|(json, _)| QuoteFeed::from_cache(&json)) {
            // A cached token the feed refuses (revoked before its time) is replaced once.
            Some(feed) => match read_with(Ok(feed)).await {
                Err(e) if e.refused() => read_with(self.fresh_quote_feed(session).await).await,
                read => read,
            },
            None => read_with(self.fresh_quote_feed(session).await).await,
        };
        let message = "the market-data feed did not answer; positions keep their previous greeks";
        let Some(read) = best_effort(read, STAGE, message, counts)? else {
            return Ok(());
        };
        let read_at = Utc::now();
        let rows: Vec<PositionGreeks> = (read.events.into_iter())
            .filter_map(|greeks| {
                let symbol = (*options.get(&greeks.symbol)?).to_owned();
                let time = greeks.time.unwrap_or(read_at);
                Some(PositionGreeks {
                    symbol,
                    time,
                    greeks,
                })
            })
            .collect();
        let written = self.deps.store.store_greeks(self.account.id, &rows).await?;
        counts.add(STAGE, rows.len(), written);
        if let Some(reason) = read.stopped {
            let missing = symbols.len() - rows.len();
            tracing::warn!(missing, reason, "greeks missing for some option positions");
            let message = format!(
                "no greeks arrived for {missing} of {} option positions ({reason}); they keep their previous greeks",
                symbols.len()
            );
            warn_stage(STAGE, &message, counts);
        }
        Ok(())
    }

    /// A fresh market-data feed URL and token from `/api-quote-tokens`, cached sealed for
    /// its lifetime.
    async fn fresh_quote_feed(&self, session: &Session<'_, B>) -> Result<QuoteFeed, BrokerError> {
        let token = session.quote_token().await?;
        let feed = QuoteFeed {
            url: token.dxlink_url.ok_or_else(|| BrokerError::Permanent {
                status: None,
                code: None,
                message: "the quote token came without a dxlink-url".into(),
            })?,
            token: token.token,
        };
        let expires_at = token
            .expires_at
            .unwrap_or_else(|| Utc::now() + TimeDelta::hours(1));
        let sealed = self
            .cache(Purpose::QuoteToken, &feed.to_cache(), expires_at)
            .await;
        if let Err(e) = sealed {
            // Only a cache: the next sync asks for another token.
            tracing::warn!(error = %e, "the quote token could not be cached");
        }
        Ok(feed)
    }

    /// After a page is stored: the rows that did not parse or could not be stored go to
    /// quarantine; stored rows that were in quarantine leave it. Returns the rows set aside.
    async fn settle<R: BrokerId>(
        &self,
        entity: &'static str,
        items: &[Record<R>],
        unparsed: Vec<Quarantined>,
        stored: &Stored,
    ) -> Result<usize, SyncError> {
        let mut aside = unparsed;
        aside.extend(
            (stored.rejected.iter())
                .map(|r| Quarantined::new(tree(&items[r.index].raw), r.reason.clone())),
        );
        if !aside.is_empty() {
            tracing::warn!(
                entity,
                rows = aside.len(),
                "rows the broker sent were set aside"
            );
            let store = &self.deps.store;
            store.quarantine(self.account.id, entity, &aside).await?;
        }
        if self.account.quarantined > 0 {
            let ids: Vec<i64> = (items.iter().enumerate())
                .filter(|(i, _)| stored.kept(*i))
                .filter_map(|(_, r)| r.item.broker_id())
                .collect();
            if !ids.is_empty() {
                self.deps
                    .store
                    .release(self.account.id, entity, &ids)
                    .await?;
            }
        }
        Ok(aside.len())
    }

    /// One paged stage: `E` read in windows from its start to the sync's end, each page one
    /// upsert. Past the deadline it checkpoints: inside a window at the last row read (when
    /// `E` can resume there), else at the next window.
    async fn paged<E: PagedEntity>(
        &self,
        session: &Session<'_, B>,
        currencies: &[String],
        counts: &mut Counts,
    ) -> Result<(), SyncError> {
        self.paged_then::<E>(session, currencies, counts, async {})
            .await
    }

    /// [`Run::paged`], with `then` begun beside the last window's last pages (see
    /// [`scan_ahead`]).
    async fn paged_then<E: PagedEntity>(
        &self,
        session: &Session<'_, B>,
        currencies: &[String],
        counts: &mut Counts,
        then: impl Future<Output = ()>,
    ) -> Result<(), SyncError> {
        let settings = &self.deps.settings;
        let resumed = self.resumes_from(E::STAGE);
        if resumed.is_some_and(|from| from >= self.now) {
            // Handed over after its last window: only what follows the windows is left.
            return Ok(());
        }
        let from = resumed.unwrap_or_else(|| {
            let start = start_of(
                self.message.kind,
                E::watermark(self.account),
                self.opened,
                settings,
            );
            E::align(start)
        });
        let all = windows(from, self.now, E::window(settings));
        let final_index = all.len() - 1;
        let all: Vec<Window> = (all.into_iter().enumerate())
            .map(|(index, (start, end))| Window {
                start,
                end,
                last: index == final_index,
            })
            .collect();
        let number = &self.account.account_number;
        let runs = (all.iter())
            .map(|window| E::reads(session, number, window, currencies))
            .collect();
        // The windows are read back to back: the next one's first page is asked for beside
        // the last one's last pages, and is on its way while they are stored and the window's
        // removals marked; past the deadline the storing checkpoints at the window's end, so
        // the next window is not begun (a first page already read is dropped).
        let (reading, mut scanned) = scan_ahead(runs, || !self.deadline.passed(), then);
        let storing = async {
            for &Window { start, end, last } in &all {
                // The ids the broker returned in the window, parsed or not.
                let mut seen = Vec::new();
                // Where a read cut short resumes: the last row read, or the window.
                let mut resume_at = start;
                loop {
                    let (page, finished) = match scanned.recv().await {
                        Some(Scanned::Page(page, finished)) => (page, finished),
                        Some(Scanned::RunEnd) => break,
                        // Every window's end is handed out unless a page failed before it.
                        None => {
                            return Err(
                                BrokerError::transient("a window's reading ended early").into()
                            );
                        }
                    };
                    let page = match page {
                        Ok(page) => page,
                        Err(BrokerError::OutOfTime) => {
                            return Err(self.checkpoint(E::STAGE, resume_at, counts));
                        }
                        Err(e) => return Err(e.into()),
                    };
                    let reached = E::reached(&page.items);
                    if E::RESUMES_WITHIN_A_WINDOW {
                        resume_at = reached.unwrap_or(start).max(resume_at);
                    }
                    seen.extend(page.items.iter().filter_map(|r| r.item.broker_id()));
                    seen.extend(page.rejected.iter().filter_map(|r| r.broker_id));
                    self.write_page::<E>(E::STAGE_NAME, page, counts).await?;
                    if E::RESUMES_WITHIN_A_WINDOW && self.deadline.passed() && !finished {
                        let reached = reached.unwrap_or(start).max(start);
                        // Rows come oldest first: everything before `reached` was read.
                        let before = reached - TimeDelta::microseconds(1);
                        self.remove_gone(E::STAGE_NAME, E::gone(start, before, &seen), counts)
                            .await?;
                        return Err(self.checkpoint(E::STAGE, reached, counts));
                    }
                }
                self.remove_gone(E::STAGE_NAME, E::gone(start, end, &seen), counts)
                    .await?;
                if self.deadline.passed() && !last {
                    return Err(self.checkpoint(E::STAGE, end, counts));
                }
            }
            Ok(())
        };
        overlapped(reading, storing).await
    }

    /// [`Run::write`] of a page, its time spent counted against `entity`.
    async fn write_page<E: PagedEntity>(
        &self,
        entity: &'static str,
        mut page: Page<E>,
        counts: &mut Counts,
    ) -> Result<(), SyncError> {
        let started = std::time::Instant::now();
        let (items, rejected) = (
            std::mem::take(&mut page.items),
            std::mem::take(&mut page.rejected),
        );
        self.write::<E>(items, rejected, counts).await?;
        self.spent.add(entity, &page, started.elapsed());
        Ok(())
    }

    async fn write<E: PagedEntity>(
        &self,
        items: Vec<Record<E>>,
        unparsed: Vec<Quarantined>,
        counts: &mut Counts,
    ) -> Result<(), SyncError> {
        let read = items.len() + unparsed.len();
        let task = self.message.task_id;
        let stored = E::write(&self.deps.store, self.account, task, &items).await?;
        let aside = self
            .settle(E::STAGE_NAME, &items, unparsed, &stored)
            .await?;
        counts.add(E::STAGE_NAME, read, stored.changed);
        counts.reject(E::STAGE_NAME, aside);
        Ok(())
    }

    /// The live orders (today's, and any still working), which the windows may not reach;
    /// then each order stored as working that is no longer live, by id: a GTC order placed
    /// months ago and filled on a day no sync saw is outside every window.
    async fn live_orders(
        &self,
        session: &Session<'_, B>,
        counts: &mut Counts,
    ) -> Result<(), SyncError> {
        let number = &self.account.account_number;
        // The windows just read every order received since they start: only an older order
        // still working (a GTC order placed long ago) needs the live list, or its id.
        let since = start_of(
            self.message.kind,
            Order::watermark(self.account),
            self.opened,
            &self.deps.settings,
        );
        let working = (self.deps.store)
            .working_orders(self.account.id, since)
            .await?;
        if working.is_empty() {
            return Ok(());
        }
        let mut seen = std::collections::HashSet::new();
        let (reading, mut live) =
            scan_ahead(vec![vec![session.live_orders(number)]], || true, async {});
        let storing = async {
            while let Some(Scanned::Page(page, _)) = live.recv().await {
                let page = page?;
                seen.extend(page.items.iter().map(|r| r.item.id));
                seen.extend(page.rejected.iter().filter_map(|r| r.broker_id));
                self.write_page::<Order>("live_orders", page, counts)
                    .await?;
            }
            Ok::<_, SyncError>(())
        };
        overlapped(reading, storing).await?;
        for id in working.into_iter().filter(|id| !seen.contains(id)) {
            match session.order(number, id).await {
                Ok(order) => {
                    self.write::<Order>(order.items, order.rejected, counts)
                        .await?
                }
                Err(BrokerError::NotFound { .. }) => {
                    tracing::warn!(order_id = id, "a working order is gone at the broker");
                    let gone = Some(Gone::OrdersById(&[id]));
                    self.remove_gone(Order::STAGE_NAME, gone, counts).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Marks `gone` removed, counted against `entity`.
    async fn remove_gone(
        &self,
        entity: &str,
        gone: Option<Gone<'_>>,
        counts: &mut Counts,
    ) -> Result<(), SyncError> {
        let Some(gone) = gone else {
            return Ok(());
        };
        let (account, task) = (self.account.id, self.message.task_id);
        let removed = self.deps.store.mark_removed(account, task, gone).await?;
        if removed > 0 {
            tracing::info!(
                entity,
                removed,
                "rows the broker no longer returns were marked removed"
            );
            counts.remove(entity, removed);
        }
        Ok(())
    }

    fn checkpoint(&self, stage: Stage, from: DateTime<Utc>, counts: &Counts) -> SyncError {
        SyncError::Deadline(Box::new(Cursor {
            stage,
            from,
            now: self.now,
            counts: counts.clone(),
            finished: Vec::new(),
            later: Vec::new(),
            continuations: 0,
        }))
    }
}

/// One window of a paged stage: `[start, end)`, the last one ending at the sync's end.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    last: bool,
}

impl Window {
    /// The window as whole days, both ends included: one that ends at midnight ends the day
    /// before; the last one ends on the sync's last day.
    fn days(&self) -> (NaiveDate, NaiveDate) {
        let end = if self.last {
            self.end.date_naive()
        } else {
            self.end.date_naive() - Duration::days(1)
        };
        (self.start.date_naive(), end)
    }
}

/// What a paged stage needs to know of the entity it reads: where it starts, how it is read
/// and written, and where a read interrupted inside a window resumes.
trait PagedEntity: BrokerId + DeserializeOwned + Send + Sync + Sized + 'static {
    const STAGE: Stage;
    /// The task's stage label, and the key of its counts.
    const STAGE_NAME: &'static str;
    /// Rows come oldest first, so a read can resume at the last row's time; otherwise only
    /// whole windows resume.
    const RESUMES_WITHIN_A_WINDOW: bool;

    fn watermark(account: &SyncAccount) -> Option<DateTime<Utc>>;
    fn window(settings: &SyncSettings) -> TimeDelta;

    /// The stage's first instant as the broker's queries take it.
    fn align(start: DateTime<Utc>) -> DateTime<Utc> {
        start
    }

    /// The reads that cover `window`, each a run of pages.
    fn reads<'s, B: Broker>(
        session: &'s Session<'_, B>,
        number: &str,
        window: &Window,
        currencies: &[String],
    ) -> Vec<Pages<'s, 's, Self, B>>;

    /// The latest time the rows of a page reach.
    fn reached(items: &[Record<Self>]) -> Option<DateTime<Utc>>;

    /// The stored rows that a complete read of `[from, to]` returning `seen` shows gone;
    /// `None` for an entity whose rows do not vanish.
    fn gone(_from: DateTime<Utc>, _to: DateTime<Utc>, _seen: &[i64]) -> Option<Gone<'_>> {
        None
    }

    /// One page as one upsert, by `task_id`.
    fn write<S: SyncStore>(
        store: &S,
        account: &SyncAccount,
        task_id: Uuid,
        items: &[Record<Self>],
    ) -> impl Future<Output = Result<Stored, DbError>> + Send;
}

impl PagedEntity for Transaction {
    const STAGE: Stage = Stage::Transactions;
    const STAGE_NAME: &'static str = "transactions";
    const RESUMES_WITHIN_A_WINDOW: bool = true;

    fn watermark(account: &SyncAccount) -> Option<DateTime<Utc>> {
        account.transactions_synced_to
    }

    fn window(settings: &SyncSettings) -> TimeDelta {
        settings.window
    }

    fn reads<'s, B: Broker>(
        session: &'s Session<'_, B>,
        number: &str,
        window: &Window,
        _currencies: &[String],
    ) -> Vec<Pages<'s, 's, Self, B>> {
        let query = TransactionQuery {
            start_at: Some(window.start),
            end_at: Some(window.end),
            ..TransactionQuery::default()
        };
        vec![session.transactions(number, &query)]
    }

    fn reached(items: &[Record<Self>]) -> Option<DateTime<Utc>> {
        items.iter().filter_map(|r| r.item.executed_at).max()
    }

    fn gone(from: DateTime<Utc>, to: DateTime<Utc>, seen: &[i64]) -> Option<Gone<'_>> {
        Some(Gone::Transactions { from, to, seen })
    }

    async fn write<S: SyncStore>(
        store: &S,
        account: &SyncAccount,
        _task_id: Uuid,
        items: &[Record<Self>],
    ) -> Result<Stored, DbError> {
        store.upsert_transactions(account, items).await
    }
}

impl PagedEntity for Order {
    const STAGE: Stage = Stage::Orders;
    const STAGE_NAME: &'static str = "orders";
    const RESUMES_WITHIN_A_WINDOW: bool = true;

    fn watermark(account: &SyncAccount) -> Option<DateTime<Utc>> {
        account.orders_synced_to
    }

    /// The broker answers order queries over long ranges slowly: half the usual window.
    fn window(settings: &SyncSettings) -> TimeDelta {
        settings.window / 2
    }

    fn reads<'s, B: Broker>(
        session: &'s Session<'_, B>,
        number: &str,
        window: &Window,
        _currencies: &[String],
    ) -> Vec<Pages<'s, 's, Self, B>> {
        let query = OrderQuery {
            start_at: Some(window.start),
            end_at: Some(window.end),
            ..OrderQuery::default()
        };
        vec![session.orders(number, &query)]
    }

    fn reached(items: &[Record<Self>]) -> Option<DateTime<Utc>> {
        items.iter().filter_map(|r| r.item.received_at).max()
    }

    /// Orders are picked by the time they were received. Should the broker filter by another
    /// time, an order it returns only in a later window is restored by that window's upsert.
    fn gone(from: DateTime<Utc>, to: DateTime<Utc>, seen: &[i64]) -> Option<Gone<'_>> {
        Some(Gone::Orders { from, to, seen })
    }

    async fn write<S: SyncStore>(
        store: &S,
        account: &SyncAccount,
        task_id: Uuid,
        items: &[Record<Self>],
    ) -> Result<Stored, DbError> {
        store.upsert_orders(account, task_id, items).await
    }
}

/// End-of-day balance snapshots: whole days, one read per currency per window, resumed by
/// whole windows (every currency of the window again).
impl PagedEntity for Balance {
    const STAGE: Stage = Stage::BalanceSnapshots;
    const STAGE_NAME: &'static str = "balance_snapshots";
    const RESUMES_WITHIN_A_WINDOW: bool = false;

    fn watermark(account: &SyncAccount) -> Option<DateTime<Utc>> {
        account.snapshots_synced_to.map(day_start)
    }

    fn window(settings: &SyncSettings) -> TimeDelta {
        settings.window
    }

    fn align(start: DateTime<Utc>) -> DateTime<Utc> {
        day_start(start.date_naive())
    }

    fn reads<'s, B: Broker>(
        session: &'s Session<'_, B>,
        number: &str,
        window: &Window,
        currencies: &[String],
    ) -> Vec<Pages<'s, 's, Self, B>> {
        let (start_date, end_date) = window.days();
        currencies
            .iter()
            .map(|currency| {
                let query = SnapshotQuery {
                    time_of_day: TimeOfDay::Eod,
                    snapshot_date: None,
                    start_date: Some(start_date),
                    end_date: Some(end_date),
                    currency: Some(currency.clone()),
                    per_page: None,
                };
                session.balance_snapshots(number, &query)
            })
            .collect()
    }

    fn reached(_items: &[Record<Self>]) -> Option<DateTime<Utc>> {
        None
    }

    async fn write<S: SyncStore>(
        store: &S,
        account: &SyncAccount,
        _task_id: Uuid,
        items: &[Record<Self>],
    ) -> Result<Stored, DbError> {
        store
            .upsert_balances(account, items, BalanceTarget::BrokerSnapshot)
            .await
    }
}

/// A text field of a row that did not parse, when it has one.
fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{
        FakeBroker, InMemoryBus, InMemoryQueue, InMemorySyncStore, InMemoryTasks, PlainCipher,
        RowFilter, StoredSync,
    };
    use crate::ports::TaskCreator;
    use serde_json::json;

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

    fn message(cursor: Option<serde_json::Value>) -> TaskMessage {
        TaskMessage {
            task_id: Uuid::from_u128(1),
            account_id: Uuid::from_u128(2),
            kind: TaskKind::Full,
            cursor,
        }
    }

    fn task(status: TaskStatus, resume_cursor: Option<serde_json::Value>) -> TaskRecord {
        let mut record =
            crate::domain::tasks::NewTask::new("user-a", Uuid::from_u128(2), TaskKind::Full)
                .pending_record();
        record.status = status;
        record.resume_cursor = resume_cursor;
        record
    }

    #[test]
    fn a_delivery_of_an_ended_task_or_of_a_superseded_continuation_is_stale() {
        let later = Some(serde_json::json!({"stage": "orders"}));
        let first = message(None);
        let continuation = message(later.clone());

        assert_eq!(stale_delivery(None, &first), None, "no record: run it");
        assert_eq!(
            stale_delivery(Some(&task(TaskStatus::Pending, None)), &first),
            None
        );
        assert_eq!(
            stale_delivery(
                Some(&task(TaskStatus::Retrying, later.clone())),
                &continuation
            ),
            None,
            "the live continuation runs"
        );
        assert!(
            stale_delivery(Some(&task(TaskStatus::InProgress, later.clone())), &first).is_some()
        );
        assert!(stale_delivery(Some(&task(TaskStatus::Completed, None)), &first).is_some());
        assert!(
            stale_delivery(Some(&task(TaskStatus::NeedsReauth, later)), &continuation).is_some()
        );
    }

    type FakeWorker = SyncDeps<
        InMemorySyncStore,
        PlainCipher,
        InMemoryTasks,
        InMemoryQueue,
        FakeBroker,
        InMemoryBus,
    >;

    const NUMBER: &str = "5WT00001";

    /// A worker over the fakes, with no account.
    fn fake_worker() -> FakeWorker {
        SyncDeps {
            store: InMemorySyncStore::default(),
            broker: FakeBroker::default(),
            cipher: PlainCipher,
            tasks: InMemoryTasks::default(),
            queue: InMemoryQueue::default(),
            oauth_client: None,
            events: InMemoryBus::default(),
            settings: SyncSettings::default(),
        }
    }

    /// A broker account opened three years ago with one transaction and one order a month
    /// (oldest first, as the worker asks for them) and a USD balance; the worker has it linked
    /// with a personal grant.
    async fn linked_account(deps: &FakeWorker) -> Uuid {
        let opened = Utc::now() - TimeDelta::days(3 * 365);
        let months: Vec<DateTime<Utc>> = (0..36)
            .map(|m| opened + TimeDelta::days(30 * m + 1))
            .collect();
        let broker = &deps.broker;
        broker.serve(
            "/customers/me/accounts",
            json!({"data": {"items": [{"account": {"account-number": NUMBER, "opened-at": opened}, "authority-level": "owner"}]}}),
        );
        broker.serve(
            &format!("/accounts/{NUMBER}/balances"),
            json!({"data": {"items": [usd_balance()]}}),
        );
        broker.serve(
            &format!("/accounts/{NUMBER}/trading-status"),
            json!({"data": {"account-number": NUMBER, "day-trade-count": 1, "is-pattern-day-trader": false}}),
        );
        broker.serve(
            &format!("/accounts/{NUMBER}/positions"),
            json!({"data": {"items": []}}),
        );
        let bars = (months.iter())
            .map(|at| json!({"time": at.format("%Y-%m-%d %H:%M:%S+00").to_string(), "open": "100.0", "close": "101.5"}))
            .collect::<Vec<_>>();
        broker.serve(
            &format!("/accounts/{NUMBER}/net-liq/history"),
            json!({"data": {"items": bars}}),
        );
        // An OCO pair, whose orders the order search lists too, as the broker does.
        let child = |id: i64, tag: &str| json!({"id": id, "account-number": NUMBER, "status": "Cancelled", "received-at": months[13] + TimeDelta::hours(1), "complex-order-id": 4000, "complex-order-tag": tag, "legs": []});
        broker.serve(
            &format!("/accounts/{NUMBER}/complex-orders"),
            json!({"data": {"items": [{"id": 4000, "account-number": NUMBER, "type": "OCO", "orders": [child(3000, "OCO::orders"), child(3001, "OCO::orders")]}]}}),
        );
        broker.serve(
            "/watchlists",
            json!({"data": {"items": [{"name": "Tech", "watchlist-entries": [{"symbol": "AAPL", "instrument-type": "Equity"}], "order-index": 1}]}}),
        );
        broker.serve(
            &format!("/accounts/{NUMBER}/orders/live"),
            json!({"data": {"items": []}}),
        );
        let transactions = months
            .iter()
            .enumerate()
            .map(|(i, at)| json!({"id": 1000 + i, "account-number": NUMBER, "transaction-type": "Money Movement", "executed-at": at, "transaction-date": at.date_naive(), "value": "1.0", "value-effect": "Credit"}))
            .collect();
        broker.serve_rows(
            &format!("/accounts/{NUMBER}/transactions"),
            transactions,
            RowFilter::Instant("executed-at"),
        );
        let mut orders: Vec<serde_json::Value> = months
            .iter()
            .enumerate()
            .map(|(i, at)| json!({"id": 2000 + i, "account-number": NUMBER, "status": "Filled", "received-at": at, "legs": []}))
            .collect();
        orders.splice(
            14..14,
            [child(3000, "OCO::orders"), child(3001, "OCO::orders")],
        );
        broker.serve_rows(
            &format!("/accounts/{NUMBER}/orders"),
            orders,
            RowFilter::Instant("received-at"),
        );
        let snapshots = months
            .iter()
            .map(|at| json!({"account-number": NUMBER, "currency": "USD", "snapshot-date": at.date_naive(), "time-of-day": "EOD", "net-liquidating-value": "100.0"}))
            .collect();
        broker.serve_rows(
            &format!("/accounts/{NUMBER}/balance-snapshots"),
            snapshots,
            RowFilter::Date("snapshot-date"),
        );

        let (id, credential_id, user_id) = (Uuid::new_v4(), Uuid::new_v4(), "user-a");
        let seal = |purpose, secret: &str| {
            let context = SecretContext {
                purpose,
                user_id,
                credential_id,
            };
            let secret = SecretString::from(secret.to_owned());
            async move { deps.cipher.seal(context, &secret).await.expect("sealed") }
        };
        deps.store.add(SyncAccount {
            id,
            user_id: user_id.into(),
            account_number: NUMBER.into(),
            environment: crate::tastytrade::Environment::Sandbox,
            credential_id,
            personal_grant: true,
            opened_at: Some(opened),
            transactions_synced_to: None,
            orders_synced_to: None,
            snapshots_synced_to: None,
            quarantined: 0,
            net_liq_synced_to: None,
            quote_token: None,
            refresh_token: seal(Purpose::RefreshToken, "refresh").await,
            client_secret: Some(seal(Purpose::ClientSecret, "secret").await),
            access_token: None,
        });
        id
    }

    /// Queues a task of `kind` for the account and runs its message, and every continuation
    /// it hands over to, to the end.
    async fn sync(deps: &FakeWorker, account_id: Uuid, kind: TaskKind) -> (Outcome, usize) {
        let task = crate::domain::tasks::NewTask::new("user-a", account_id, kind);
        deps.tasks.create(&task).await.unwrap();
        let mut message = task.message();
        let mut invocations = 0;
        loop {
            invocations += 1;
            assert!(invocations < 100, "the continuations never end");
            let deadline = Instant::now() + std::time::Duration::from_secs(600);
            match run(deps, &message, Some(deadline)).await.expect("no retry") {
                Outcome::Continued(_) => message = deps.queue.sent().last().unwrap().clone(),
                outcome => return (outcome, invocations),
            }
        }
    }

    /// The transactions reads as (start-at, page-offset): a read made twice appears twice.
    fn transaction_reads(deps: &FakeWorker) -> Vec<(String, String)> {
        deps.broker
            .calls_to(&format!("/accounts/{NUMBER}/transactions"))
            .iter()
            .map(|c| {
                (
                    c.param("start-at").unwrap_or_default().to_owned(),
                    c.param("page-offset").unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn a_full_sync_stores_every_row_once_and_moves_the_watermarks() {
        let deps = fake_worker();
        let account = linked_account(&deps).await;

        let (outcome, _) = sync(&deps, account, TaskKind::Full).await;

        let Outcome::Completed(counts) = outcome else {
            panic!("{outcome:?}")
        };
        let stored = deps.store.stored(account).unwrap();
        // The monthly orders and the two of the complex order.
        assert_eq!((stored.transactions.len(), stored.orders.len()), (36, 38));
        assert_eq!(stored.net_liq.len(), 36);
        assert_eq!(stored.complex_orders.len(), 1);
        // Transactions, orders, snapshots, net-liq bars; the balance and today's capture; the
        // watchlist; the complex order and its two orders.
        assert_eq!(counts.total_written(), 4 * 36 + 2 + 1 + 3, "{counts:?}");
        assert!(stored.watchlists.contains_key("Tech"));
        assert_eq!(stored.status, AccountStatus::Success);
        assert!(
            stored.account.transactions_synced_to.is_some()
                && stored.account.orders_synced_to.is_some()
        );
        let reads = transaction_reads(&deps);
        let distinct: std::collections::HashSet<_> = reads.iter().collect();
        assert_eq!(
            reads.len(),
            distinct.len(),
            "a page was read twice: {reads:?}"
        );
        assert_eq!(
            deps.broker.refreshes(),
            1,
            "one access token serves the whole sync"
        );
    }

    /// The account's transactions, a month apart over three years (ids 1000 to 1035) but the
    /// `withdrawn` ones; the one with `poisoned` id sent with a value no decimal parser reads.
    fn serve_transactions(deps: &FakeWorker, poisoned: Option<i64>, withdrawn: &[i64]) {
        let path = format!("/accounts/{NUMBER}/transactions");
        let opened = Utc::now() - TimeDelta::days(3 * 365);
        let rows = (0..36)
            .filter(|i| !withdrawn.contains(&(1000 + i)))
            .map(|i: i64| {
                let at = opened + TimeDelta::days(30 * i + 1);
                let value = if Some(1000 + i) == poisoned { "1.2.3" } else { "1.0" };
                json!({"id": 1000 + i, "transaction-type": "Money Movement", "executed-at": at, "value": value, "value-effect": "Credit"})
            })
            .collect();
        deps.broker
            .serve_rows(&path, rows, RowFilter::Instant("executed-at"));
    }

    #[tokio::test]
    async fn a_row_that_does_not_parse_waits_in_quarantine_and_the_rest_of_its_page_is_stored() {
        let deps = fake_worker();
        let account = linked_account(&deps).await;
        serve_transactions(&deps, Some(1005), &[]);

        let (outcome, _) = sync(&deps, account, TaskKind::Full).await;

        let Outcome::Completed(counts) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(counts.rejected.get("transactions"), Some(&1));
        let stored = deps.store.stored(account).unwrap();
        assert_eq!(stored.transactions.len(), 35);
        assert_eq!(stored.status, AccountStatus::Success);
        let (row, _) = &stored.quarantined[&("transactions", "1005".to_owned())];
        assert!(row.reason.contains("1.2.3"), "{}", row.reason);
        assert_eq!(row.raw["value"], "1.2.3");
    }

    #[tokio::test]
    async fn a_quarantined_row_leaves_when_a_later_sync_stores_it() {
        let deps = fake_worker();
        let account = linked_account(&deps).await;
        serve_transactions(&deps, Some(1005), &[]);
        sync(&deps, account, TaskKind::Full).await;
        serve_transactions(&deps, None, &[]);

        let (outcome, _) = sync(&deps, account, TaskKind::Full).await;

        assert!(matches!(outcome, Outcome::Completed(c) if c.rejected.is_empty()));
        let stored = deps.store.stored(account).unwrap();
        assert_eq!(stored.transactions.len(), 36);
        assert!(stored.quarantined.is_empty(), "{:?}", stored.quarantined);
    }

    #[tokio::test]
    async fn a_position_that_does_not_parse_leaves_quarantine_once_the_broker_stops_sending_it() {
        let deps = fake_worker();
        let account = linked_account(&deps).await;
        let path = format!("/accounts/{NUMBER}/positions");
        deps.broker.serve(
            &path,
            json!({"data": {"items": [{"symbol": "SPY", "quantity": "lots"}]}}),
        );
        sync(&deps, account, TaskKind::Full).await;
        assert_eq!(deps.store.stored(account).unwrap().quarantined.len(), 1);
        deps.broker.serve(&path, json!({"data": {"items": []}}));

        sync(&deps, account, TaskKind::Incremental).await;

        assert!(
            deps.store.stored(account).unwrap().quarantined.is_empty(),
            "positions are read whole by every sync"
        );
    }

    #[tokio::test]
    async fn an_order_working_at_the_last_sync_and_no_longer_live_is_read_by_id() {
        let deps = fake_worker();
        let account = linked_account(&deps).await;
        sync(&deps, account, TaskKind::Full).await;
        let linked = deps.store.stored(account).unwrap().account;
        let received = Utc::now() - TimeDelta::days(200);
        let order = |status| json!({"id": 9999, "status": status, "time-in-force": "GTC", "received-at": received, "legs": []});
        let working = Record {
            item: serde_json::from_value(order("Live")).unwrap(),
            raw: raw(&order("Live")),
        };
        deps.store
            .upsert_orders(&linked, Uuid::nil(), &[working])
            .await
            .unwrap();
        let path = format!("/accounts/{NUMBER}/orders/9999");
        deps.broker.serve(&path, json!({"data": order("Filled")}));

        let (outcome, _) = sync(&deps, account, TaskKind::Incremental).await;

        assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
        let stored = deps.store.stored(account).unwrap();
        assert_eq!(stored.orders[&9999]["status"], "Filled");
    }

    /// Runs one delivery of a new `kind` task; `Err` when it asks the queue for a retry.
    #[tokio::test]
    async fn each_task_is_announced_once_when_it_ends_with_its_user_and_counts() {
        let deps = fake_worker();
        let account = linked_account(&deps).await;
        // The first call of a sync that is not a full one.
        deps.broker.fail_next(
            &format!("/accounts/{NUMBER}/balances"),
            BrokerError::GrantRevoked { code: None },
        );

        let (revoked, _) = sync(&deps, account, TaskKind::Manual).await;
        let (completed, _) = sync(&deps, account, TaskKind::Full).await;

        assert_eq!(revoked, Outcome::NeedsReauth);
        let names: Vec<&str> = deps.events.published().iter().map(Event::name).collect();
        assert_eq!(names, ["SyncFailed", "AccountNeedsReauth", "SyncCompleted"]);
        let Event::SyncCompleted {
            counts, user_id, ..
        } = &deps.events.published()[2]
        else {
            panic!("the last is the completed sync");
        };
        assert_eq!(
            (user_id.as_str(), Outcome::Completed(counts.clone())),
            ("user-a", completed)
        );
    }

    async fn deliver(deps: &FakeWorker, account_id: Uuid) -> Result<Outcome, Retryable> {
        let task = crate::domain::tasks::NewTask::new("user-a", account_id, TaskKind::Manual);
        deps.tasks.create(&task).await.unwrap();
        run(deps, &task.message(), None).await
    }

    #[tokio::test]
    async fn a_fresh_access_token_refused_once_more_is_retried_and_the_grant_kept() {
        let deps = fake_worker();
        let account = linked_account(&deps).await;
        let unauthorized = || BrokerError::AuthExpired { code: None };
        let balances = format!("/accounts/{NUMBER}/balances");
        deps.broker.fail_next(&balances, unauthorized());
        deps.broker.fail_next(&balances, unauthorized());

        let refused = deliver(&deps, account).await;

        assert!(refused.is_err(), "{refused:?}");
        assert_ne!(
            deps.store.stored(account).unwrap().status,
            AccountStatus::NeedsReauth
        );
        let again = deliver(&deps, account).await;
        assert!(matches!(again, Ok(Outcome::Completed(_))), "{again:?}");
    }

    #[tokio::test]
    async fn the_deployments_oauth_client_refused_is_our_fault_retried_not_the_users() {
        let deps = SyncDeps {
            oauth_client: Some(OAuthClient {
                client_id: "tastysync".into(),
                client_secret: SecretString::from("rotated-badly".to_owned()),
            }),
            ..fake_worker()
        };
        let account = linked_account(&deps).await;
        let mut linked = deps.store.stored(account).unwrap().account;
        (linked.personal_grant, linked.client_secret) = (false, None);
        deps.store.add(linked);
        let invalid_client = BrokerError::ClientRejected {
            code: Some("invalid_client".into()),
        };
        deps.broker.fail_next_refresh(invalid_client);

        let refused = deliver(&deps, account).await;

        let Err(Retryable(error)) = refused else {
            panic!("{refused:?}")
        };
        assert_eq!(error.category(), "oauth_client");
        assert_ne!(
            deps.store.stored(account).unwrap().status,
            AccountStatus::NeedsReauth
        );
    }

    #[tokio::test]
    async fn a_personal_grants_client_secret_refused_needs_the_user_to_link_again() {
        let deps = fake_worker();
        let account = linked_account(&deps).await;
        deps.broker.fail_next_refresh(BrokerError::ClientRejected {
            code: Some("invalid_client".into()),
        });

        let outcome = deliver(&deps, account).await;

        assert!(matches!(outcome, Ok(Outcome::NeedsReauth)), "{outcome:?}");
        assert_eq!(
            deps.store.stored(account).unwrap().status,
            AccountStatus::NeedsReauth
        );
    }

    fn usd_balance() -> serde_json::Value {
        json!({"account-number": NUMBER, "currency": "USD", "cash-balance": "100.0", "net-liquidating-value": "100.0"})
    }

    /// A full sync after the broker answered `/balances` with `answer` (and, if `usd` is
    /// given, `/balances/USD` with it): what was stored, and the outcome.
    async fn sync_with_balances(
        answer: Option<serde_json::Value>,
        usd: Option<serde_json::Value>,
    ) -> (Outcome, StoredSync, FakeWorker) {
        let deps = fake_worker();
        let account = linked_account(&deps).await;
        let path = format!("/accounts/{NUMBER}/balances");
        match answer {
            Some(body) => deps.broker.serve(&path, body),
            None => deps.broker.fail_next(
                &path,
                BrokerError::InvalidRequest {
                    status: 406,
                    code: None,
                    message: "The requested version is not supported.".into(),
                },
            ),
        }
        if let Some(body) = usd {
            deps.broker
                .serve(&format!("{path}/USD"), json!({"data": body}));
        }
        let (outcome, _) = sync(&deps, account, TaskKind::Full).await;
        (outcome, deps.store.stored(account).unwrap(), deps)
    }

    #[tokio::test]
    async fn balances_answered_as_a_single_object_are_stored() {
        let (outcome, stored, _) =
            sync_with_balances(Some(json!({"data": usd_balance()})), None).await;

        assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
        assert_eq!(stored.balance_writes.get("current"), Some(&1));
    }

    #[tokio::test]
    async fn an_empty_balances_list_is_read_again_from_the_usd_endpoint() {
        let (outcome, stored, deps) =
            sync_with_balances(Some(json!({"data": {"items": []}})), Some(usd_balance())).await;

        assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
        assert_eq!(stored.balance_writes.get("current"), Some(&1));
        assert_eq!(
            deps.broker
                .calls_to(&format!("/accounts/{NUMBER}/balances/USD"))
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn a_refused_balances_endpoint_is_read_again_from_the_usd_endpoint() {
        let (outcome, stored, _) = sync_with_balances(None, Some(usd_balance())).await;

        assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
        assert_eq!(stored.balance_writes.get("current"), Some(&1));
    }

    #[tokio::test]
    async fn an_account_with_no_balance_at_all_fails_instead_of_succeeding_silently() {
        let (outcome, stored, _) =
            sync_with_balances(Some(json!({"data": {"items": []}})), None).await;

        assert!(matches!(outcome, Outcome::Failed { .. }), "{outcome:?}");
        assert_eq!(stored.status, AccountStatus::Failed);
        assert_eq!(stored.account.transactions_synced_to, None);
    }

    #[tokio::test]
    async fn the_net_liq_history_is_read_whole_on_a_full_sync_and_from_the_last_bar_after() {
        let deps = fake_worker();
        let account = linked_account(&deps).await;
        let path = format!("/accounts/{NUMBER}/net-liq/history");

        sync(&deps, account, TaskKind::Full).await;
        sync(&deps, account, TaskKind::Incremental).await;

        let windows: Vec<String> = (deps.broker.calls_to(&path).iter())
            .filter_map(|c| c.param("time-back").map(str::to_owned))
            .collect();
        // The fixture's last bar is six weeks old.
        assert_eq!(windows, ["all", "3m"]);
        let stored = deps.store.stored(account).unwrap();
        assert_eq!(stored.net_liq.len(), 36);
    }

    /// The account holds an SPY call, shares and two future options, one of them with the
    /// feed symbol the broker can send; the feed answers for the call and that future option.
    fn holds_an_option(deps: &FakeWorker) -> &'static str {
        const CALL: &str = "SPY   260320C00600000";
        deps.broker.serve(
            &format!("/accounts/{NUMBER}/positions"),
            json!({"data": {"items": [
                {"account-number": NUMBER, "symbol": CALL, "instrument-type": "Equity Option", "quantity": "2", "quantity-direction": "Long"},
                {"account-number": NUMBER, "symbol": "SPY", "instrument-type": "Equity", "quantity": "100", "quantity-direction": "Long"},
                {"account-number": NUMBER, "symbol": "./ESZ6 E2AX6 261113P6100", "instrument-type": "Future Option", "streamer-symbol": "./E2AX26P6100:XCME", "quantity": "1", "quantity-direction": "Short"},
                {"account-number": NUMBER, "symbol": "./NQZ6 Q2AX6 261113C21000", "instrument-type": "Future Option", "quantity": "1", "quantity-direction": "Long"},
            ]}}),
        );
        deps.broker.serve(
            "/api-quote-tokens",
            json!({"data": {"token": "dxlink-1", "dxlink-url": "wss://feed.example/realtime", "expires-at": Utc::now() + TimeDelta::hours(24)}}),
        );
        let number = |n: i64, scale: u32| Some(rust_decimal::Decimal::new(n, scale));
        let greeks = |symbol: &str, delta| crate::tastytrade::dxlink::Greeks {
            symbol: symbol.into(),
            time: DateTime::from_timestamp_millis(1_796_000_000_000),
            price: number(1234, 2),
            volatility: number(21, 2),
            delta: number(delta, 2),
            gamma: number(1, 2),
            theta: number(-8, 2),
            rho: number(3, 2),
            vega: number(40, 2),
        };
        (deps.broker).serve_greeks(vec![
            greeks(".SPY260320C600", 55),
            greeks("./E2AX26P6100:XCME", -30),
        ]);
        CALL
    }

    #[tokio::test]
    async fn option_positions_get_the_feeds_greeks_and_the_quote_token_is_cached_for_its_life() {
        let deps = fake_worker();
        let account = linked_account(&deps).await;
        let call = holds_an_option(&deps);

        sync(&deps, account, TaskKind::Full).await;
        sync(&deps, account, TaskKind::Incremental).await;

        let stored = deps.store.stored(account).unwrap();
        let greeks = &stored.greeks[call];
        assert_eq!(greeks.greeks.delta, Some(rust_decimal::Decimal::new(55, 2)));
        assert_eq!(
            greeks.time,
            DateTime::from_timestamp_millis(1_796_000_000_000).unwrap()
        );
        let asked = vec!["./E2AX26P6100:XCME".to_owned(), ".SPY260320C600".to_owned()];
        assert_eq!(
            deps.broker.greeks_reads(),
            [asked.clone(), asked],
            "the options with a feed symbol, not the shares"
        );
        let future = &stored.greeks["./ESZ6 E2AX6 261113P6100"];
        assert_eq!(
            future.greeks.delta,
            Some(rust_decimal::Decimal::new(-30, 2))
        );
        assert_eq!(
            deps.broker.calls_to("/api-quote-tokens").len(),
            1,
            "the second sync reused the sealed quote token"
        );
    }

    #[tokio::test]
    async fn a_feed_that_refuses_or_stays_silent_is_a_warning_and_the_sync_completes() {
        let deps = fake_worker();
        let account = linked_account(&deps).await;
        let call = holds_an_option(&deps);
        sync(&deps, account, TaskKind::Full).await;
        let refusal = BrokerError::Permanent {
            status: None,
            code: Some("unauthorized".into()),
            message: "the market-data feed refused the quote token".into(),
        };
        // The cached token, then the fresh one that replaces it.
        deps.broker.fail_next_greeks(refusal.clone());
        deps.broker.fail_next_greeks(refusal);

        let (refused, _) = sync(&deps, account, TaskKind::Incremental).await;
        assert_eq!(
            deps.broker.calls_to("/api-quote-tokens").len(),
            2,
            "the refused cached token was replaced once"
        );
        deps.broker.serve_greeks(Vec::new());
        let (silent, _) = sync(&deps, account, TaskKind::Incremental).await;

        for outcome in [refused, silent] {
            let Outcome::Completed(counts) = outcome else {
                panic!("the sync did not complete: {outcome:?}");
            };
            assert!(counts.warnings.contains_key("greeks"), "{counts:?}");
        }
        let stored = deps.store.stored(account).unwrap();
        assert!(
            stored.greeks.contains_key(call),
            "the first read's greeks stay"
        );
    }

    #[tokio::test]
    async fn a_net_liq_history_the_broker_refuses_is_a_warning_and_keeps_the_stored_bars() {
        let deps = fake_worker();
        let account = linked_account(&deps).await;
        sync(&deps, account, TaskKind::Full).await;
        let refusal = BrokerError::Permanent {
            status: Some(403),
            code: Some("forbidden".into()),
            message: "not for this session".into(),
        };
        let path = format!("/accounts/{NUMBER}/net-liq/history");
        deps.broker.fail_next(&path, refusal);

        let (outcome, _) = sync(&deps, account, TaskKind::Incremental).await;

        let Outcome::Completed(counts) = outcome else {
            panic!("the sync did not complete: {outcome:?}");
        };
        assert!(
            counts.warnings.contains_key("net_liq_history"),
            "{counts:?}"
        );
        assert_eq!(deps.store.stored(account).unwrap().net_liq.len(), 36);
    }

    #[tokio::test]
    async fn a_trading_status_the_model_cannot_read_keeps_the_stored_one_and_the_sync_completes() {
        let deps = fake_worker();
        let account = linked_account(&deps).await;
        sync(&deps, account, TaskKind::Full).await;
        let stored = |deps: &FakeWorker| deps.store.stored(account).unwrap().trading_status;
        let before = stored(&deps).expect("the full sync stored the trading status");
        deps.broker.serve(
            &format!("/accounts/{NUMBER}/trading-status"),
            json!({"data": {"account-number": NUMBER, "day-trade-count": "several"}}),
        );

        let (outcome, _) = sync(&deps, account, TaskKind::Incremental).await;

        assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
        assert_eq!(stored(&deps), Some(before));
    }

    #[tokio::test]
    async fn an_idle_incremental_sync_reads_one_trailing_window_per_entity() {
        let deps = fake_worker();
        let account = linked_account(&deps).await;
        sync(&deps, account, TaskKind::Full).await;
        let marked = deps
            .store
            .stored(account)
            .unwrap()
            .account
            .transactions_synced_to
            .unwrap();
        let before = deps.broker.calls().len();

        let (outcome, _) = sync(&deps, account, TaskKind::Incremental).await;

        assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
        let calls = &deps.broker.calls()[before..];
        // Balances, trading status, net-liq history, positions, transactions, orders: not the
        // account list (the account's own endpoints answered), nor the snapshots (none since
        // the last close), the complex orders (no order changed) or the live orders (no order
        // older than the window still working).
        assert_eq!(calls.len(), 6, "{calls:?}");
        let reads = transaction_reads(&deps);
        let (start, _) = reads.last().unwrap();
        let start: DateTime<Utc> = start.parse().unwrap();
        let expected = marked - SyncSettings::default().trailing;
        assert!(
            (start - expected).abs() < TimeDelta::milliseconds(1),
            "the window starts at {start}, a week before the watermark {marked}"
        );
        assert_eq!(
            deps.store.stored(account).unwrap().transactions.len(),
            36,
            "nothing lost"
        );
    }

    #[tokio::test]
    async fn a_sync_past_its_deadline_continues_window_by_window_without_rereading() {
        let mut deps = fake_worker();
        // Every invocation is already within the margin: each one checkpoints after a window.
        deps.settings.deadline_margin = std::time::Duration::from_secs(3600);
        let account = linked_account(&deps).await;

        let (outcome, invocations) = sync(&deps, account, TaskKind::Full).await;

        assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
        assert!(invocations > 3, "it continued {invocations} times");
        let stored = deps.store.stored(account).unwrap();
        assert_eq!((stored.transactions.len(), stored.orders.len()), (36, 38));
        let reads = transaction_reads(&deps);
        let distinct: std::collections::HashSet<_> = reads.iter().collect();
        assert_eq!(
            reads.len(),
            distinct.len(),
            "a continuation re-read a window: {reads:?}"
        );
    }

    #[tokio::test]
    async fn rows_withdrawn_at_the_broker_are_marked_removed_even_by_a_sync_cut_by_its_deadline() {
        let mut deps = fake_worker();
        let account = linked_account(&deps).await;
        sync(&deps, account, TaskKind::Full).await;
        serve_transactions(&deps, None, &[1003, 1030]);
        deps.settings.deadline_margin = std::time::Duration::from_secs(3600);

        let (outcome, invocations) = sync(&deps, account, TaskKind::Full).await;

        let Outcome::Completed(counts) = outcome else {
            panic!("{outcome:?}")
        };
        assert!(invocations > 3, "it continued {invocations} times");
        assert_eq!(counts.removed.get("transactions"), Some(&2));
        let stored = deps.store.stored(account).unwrap();
        let removed: Vec<i64> = (stored.removed.keys())
            .filter(|(entity, _)| *entity == "transactions")
            .map(|(_, id)| *id)
            .collect();
        assert_eq!(removed, [1003, 1030]);
        assert_eq!(stored.transactions.len(), 34);
    }

    #[tokio::test]
    async fn a_rejected_access_token_is_replaced_once_and_the_read_retried() {
        let deps = fake_worker();
        let account = linked_account(&deps).await;
        sync(&deps, account, TaskKind::Full).await;
        deps.broker.expire_tokens();

        let (outcome, _) = sync(&deps, account, TaskKind::Incremental).await;

        assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
        assert_eq!(
            deps.broker.refreshes(),
            2,
            "the cached token, refused, then one new one"
        );
    }

    #[tokio::test]
    async fn a_broker_outage_leaves_the_message_to_be_retried_and_the_watermarks_where_they_were() {
        let deps = fake_worker();
        let account = linked_account(&deps).await;
        let path = format!("/accounts/{NUMBER}/orders");
        deps.broker.fail_next(&path, BrokerError::transient("503"));
        let task = crate::domain::tasks::NewTask::new("user-a", account, TaskKind::Full);
        deps.tasks.create(&task).await.unwrap();

        let result = run(&deps, &task.message(), None).await;

        assert!(
            matches!(result, Err(Retryable(SyncError::Broker(_)))),
            "{result:?}"
        );
        let stored = deps.store.stored(account).unwrap();
        assert_eq!(stored.account.orders_synced_to, None);
        assert_eq!(stored.transactions.len(), 36, "what was read is kept");
        let retried = run(&deps, &task.message(), None)
            .await
            .expect("the retry runs");
        assert!(matches!(retried, Outcome::Completed(_)), "{retried:?}");
    }

    #[tokio::test]
    async fn a_task_for_an_account_unlinked_since_is_skipped() {
        let deps = fake_worker();
        let account = linked_account(&deps).await;
        deps.store.remove(account);

        let (outcome, _) = sync(&deps, account, TaskKind::Full).await;

        assert_eq!(outcome, Outcome::Skipped);
        assert!(deps.broker.calls().is_empty());
    }

    fn cursor(stage: Stage) -> Cursor {
        let mut counts = Counts::default();
        counts.add("transactions", 250, 250);
        Cursor {
            stage,
            from: Utc::now() - TimeDelta::days(30),
            now: Utc::now(),
            counts,
            finished: Vec::new(),
            later: Vec::new(),
            continuations: 1,
        }
    }

    #[tokio::test]
    async fn a_continuation_is_queued_then_recorded_and_makes_its_predecessor_stale() {
        let deps = fake_worker();
        let task = crate::domain::tasks::NewTask::new("user-a", Uuid::from_u128(2), TaskKind::Full);
        deps.tasks.create(&task).await.unwrap();
        let first = task.message();
        let at = cursor(Stage::Orders);

        let outcome = continue_later(&deps, &first, at.clone()).await.unwrap();

        assert_eq!(outcome, Outcome::Continued(at.clone()));
        let sent = deps.queue.sent();
        assert_eq!(sent.len(), 1);
        let next = &sent[0];
        assert_eq!((next.task_id, next.kind), (first.task_id, first.kind));
        let record = deps.tasks.get(first.task_id).await.unwrap().unwrap();
        assert_eq!(
            record.resume_cursor, next.cursor,
            "the task names its live continuation"
        );
        assert_eq!(record.counts, at.counts, "the counts so far travel with it");
        assert!(
            stale_delivery(Some(&record), &first).is_some(),
            "the first message is done"
        );
        assert_eq!(stale_delivery(Some(&record), next), None);
    }

    #[tokio::test]
    async fn a_continuation_the_queue_refuses_leaves_the_task_to_resume_from_its_own_cursor() {
        let deps = fake_worker();
        let task = crate::domain::tasks::NewTask::new("user-a", Uuid::from_u128(2), TaskKind::Full);
        deps.tasks.create(&task).await.unwrap();
        deps.queue.refuse_sends(true);

        let refused = continue_later(&deps, &task.message(), cursor(Stage::Transactions)).await;

        assert!(
            matches!(refused, Err(Retryable(SyncError::Tasks(_)))),
            "{refused:?}"
        );
        let record = deps.tasks.get(task.task_id).await.unwrap().unwrap();
        assert_eq!(
            record.resume_cursor, None,
            "nothing recorded: this message stays live"
        );
        assert_eq!(stale_delivery(Some(&record), &task.message()), None);
    }

    fn deadline_at(stage: Stage) -> SyncError {
        SyncError::Deadline(Box::new(cursor(stage)))
    }

    fn counted_once(entity: &str) -> Counts {
        let mut counts = Counts::default();
        counts.add(entity, 1, 1);
        counts
    }

    #[test]
    fn stages_side_by_side_resume_at_the_earliest_checkpoint_and_skip_the_later_ones_that_finished()
    {
        let mut counts = Counts::default();
        let outcome = side_by_side(
            &mut counts,
            &[],
            (Ok(()), counted_once("positions")),
            [
                (Stage::Transactions, (Ok(()), counted_once("transactions"))),
                (
                    Stage::Orders,
                    (Err(deadline_at(Stage::Orders)), counted_once("orders")),
                ),
                (
                    Stage::BalanceSnapshots,
                    (Ok(()), counted_once("balance_snapshots")),
                ),
            ],
        );
        let Err(SyncError::Deadline(cursor)) = outcome else {
            panic!("a checkpoint: {outcome:?}")
        };
        assert_eq!(cursor.stage, Stage::Orders);
        assert_eq!(cursor.finished, [Stage::BalanceSnapshots], "not run again");
        assert!(cursor.later.is_empty());
        let entities: Vec<&str> = counts.read.keys().map(String::as_str).collect();
        assert_eq!(
            entities,
            ["balance_snapshots", "orders", "positions", "transactions"]
        );
        assert_eq!(cursor.counts, counts, "the continuation carries the counts");
    }

    #[test]
    fn a_failure_beside_a_checkpoint_is_the_outcome_and_stages_that_all_finish_succeed() {
        let mut counts = Counts::default();
        let outcome = side_by_side(
            &mut counts,
            &[],
            (Ok(()), Counts::default()),
            [
                (
                    Stage::Transactions,
                    (Err(deadline_at(Stage::Transactions)), Counts::default()),
                ),
                (
                    Stage::Orders,
                    (Err(SyncError::NoBalance), counted_once("orders")),
                ),
                (Stage::BalanceSnapshots, (Ok(()), Counts::default())),
            ],
        );
        assert!(matches!(outcome, Err(SyncError::NoBalance)), "{outcome:?}");
        assert!(
            side_by_side(
                &mut Counts::default(),
                &[],
                (Ok(()), Counts::default()),
                [
                    (Stage::Transactions, (Ok(()), Counts::default())),
                    (Stage::Orders, (Ok(()), Counts::default())),
                    (Stage::BalanceSnapshots, (Ok(()), Counts::default())),
                ],
            )
            .is_ok()
        );
    }

    #[test]
    fn windows_cover_the_range_without_gaps() {
        let start = Utc::now() - TimeDelta::days(1000);
        let end = Utc::now();
        let w = windows(start, end, TimeDelta::days(366));
        assert_eq!(w.first().unwrap().0, start);
        assert_eq!(w.last().unwrap().1, end);
        assert!(w.windows(2).all(|p| p[0].1 == p[1].0));
    }

    #[test]
    fn snapshot_windows_cover_every_day_once_up_to_the_last() {
        let end = Utc::now();
        let start = day_start((end - TimeDelta::days(1000)).date_naive());
        let all = windows(start, end, TimeDelta::days(366));
        let last = all.len() - 1;
        let days: Vec<(NaiveDate, NaiveDate)> = all
            .into_iter()
            .enumerate()
            .map(|(i, (start, end))| {
                Window {
                    start,
                    end,
                    last: i == last,
                }
                .days()
            })
            .collect();
        assert_eq!(days[0].0, start.date_naive());
        assert!(
            days.windows(2)
                .all(|p| p[0].1 + Duration::days(1) == p[1].0)
        );
        assert_eq!(days[last].1, end.date_naive());
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
