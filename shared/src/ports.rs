//! The ports: one small trait per capability the use cases need from the outside world.
//!
//! Every port that an AWS adapter serves declares, as `ACTIONS`, the IAM actions its adapter's
//! calls need. A function's dependencies hold each port in a field of its own type parameter,
//! so generic code can call only what those bounds allow, and [`crate::iam`] derives the
//! function's policy as the union over what its dependencies hold: the template test then
//! compares `template.yaml` with that set. Batch and transactional calls are authorised per
//! item on AWS (`SendMessageBatch` needs `sqs:SendMessage`, a `TransactWriteItems` of puts
//! needs `dynamodb:PutItem`), so they are declared under the item's action.
//!
//! Adapters live in [`crate::adapters`]; in-memory fakes behind the `test-util` feature in
//! `fakes`.

use chrono::{DateTime, NaiveDate, Utc};
use secrecy::SecretString;
use uuid::Uuid;

use crate::Retry;
use crate::db::DbError;
use crate::domain::accounts::{
    AccountRow, AccountStatus, BalanceTarget, BrokerAccount, DueAccount, DueQuery, LinkedAccount,
    NewCredential, SyncAccount, SyncedData,
};
use crate::domain::audit::{AuditEvent, AuditEventRead};
use crate::domain::events::Event;
use crate::domain::reads::{
    BalancePoint, BalanceRead, Keyset, NetLiqBar, OrderFilter, OrderRead, Paged, PositionRead,
    SyncedSummary, TransactionFilter, TransactionRead,
};
use crate::domain::requests::{Admission, Claim, Limit};
use crate::domain::rows::{Gone, Quarantined, Stored};
use crate::domain::tasks::{ManualClaim, NewTask, TaskMessage, TaskRecord, TaskUpdate};
use crate::secrets::{CipherError, Purpose, Sealed, SecretContext};
use crate::tastytrade::dxlink::{FeedRead, PositionGreeks, QuoteFeed};
use crate::tastytrade::model::{
    Balance, ComplexOrder, NetLiqPoint, Order, Position, Record, TradingStatus, Transaction,
    Watchlist,
};
use crate::tastytrade::streamer::AccountStream;
use crate::tastytrade::{AccessToken, BrokerError, CodeExchange, Environment, Grant, Session};

/// The IAM actions a port's adapter calls.
pub type Actions = &'static [&'static str];

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("task store or queue unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// IAM refused the call: the function's policy lacks `action`. Retried, so the message
    /// ends in the DLQ (and its alarm) rather than lost, to be redriven once the policy is
    /// fixed.
    #[error("access denied: this function's IAM policy does not grant {action}")]
    Denied { action: &'static str },
    #[error("task {0} already exists")]
    Exists(Uuid),
    #[error("the cooldown of account {0} is too contended to claim")]
    Contended(Uuid),
}

impl TaskError {
    pub fn retry(&self) -> Retry {
        match self {
            TaskError::Unavailable(_) | TaskError::Denied { .. } | TaskError::Contended(_) => {
                Retry::Retryable
            }
            TaskError::Exists(_) => Retry::NonRetryable,
        }
    }
}

/// Reads one task.
pub trait TaskReader: Send + Sync {
    const ACTIONS: Actions;

    /// The task, read consistently; `None` when there is no such task.
    fn get(
        &self,
        task_id: Uuid,
    ) -> impl Future<Output = Result<Option<TaskRecord>, TaskError>> + Send;
}

/// Lists an account's recent tasks.
pub trait TaskHistory: Send + Sync {
    const ACTIONS: Actions;

    /// The account's most recent tasks, newest first.
    fn recent(
        &self,
        account_id: Uuid,
        limit: i32,
    ) -> impl Future<Output = Result<Vec<TaskRecord>, TaskError>> + Send;
}

/// Creates tasks.
pub trait TaskCreator: Send + Sync {
    const ACTIONS: Actions;

    /// Writes a pending task; fails with [`TaskError::Exists`] if the id is taken.
    fn create(&self, task: &NewTask) -> impl Future<Output = Result<(), TaskError>> + Send;
}

/// Records a task's progress and outcome.
pub trait TaskUpdater: Send + Sync {
    const ACTIONS: Actions;

    /// Records progress or an outcome; counts a delivery attempt when the status is in progress
    /// and the stage is the first.
    fn update(
        &self,
        task_id: Uuid,
        update: TaskUpdate<'_>,
    ) -> impl Future<Output = Result<(), TaskError>> + Send;
}

/// The per-account lease that keeps a duplicated delivery from running beside the first.
pub trait LeaseStore: Send + Sync {
    const ACTIONS: Actions;

    /// Takes the account's lease for `holder` until `ttl` from now. False when another holder's
    /// lease is still live.
    fn acquire_lease(
        &self,
        account_id: Uuid,
        holder: Uuid,
        ttl: chrono::TimeDelta,
    ) -> impl Future<Output = Result<bool, TaskError>> + Send;

    /// Gives the lease back, if `holder` still has it.
    fn release_lease(
        &self,
        account_id: Uuid,
        holder: Uuid,
    ) -> impl Future<Output = Result<(), TaskError>> + Send;
}

/// The per-account cooldown between manual syncs.
pub trait CooldownStore: Send + Sync {
    const ACTIONS: Actions;

    /// Creates a manual task and starts the account's cooldown in one atomic write: of many
    /// concurrent callers exactly one gets [`ManualClaim::Created`]; the others learn whose
    /// cooldown holds them back, and until when.
    fn create_manual(
        &self,
        task: &NewTask,
        cooldown: chrono::TimeDelta,
    ) -> impl Future<Output = Result<ManualClaim, TaskError>> + Send;

    /// Ends the cooldown `task_id` started (when its message could not be queued after all).
    fn release_cooldown(
        &self,
        account_id: Uuid,
        task_id: Uuid,
    ) -> impl Future<Output = Result<(), TaskError>> + Send;
}

/// The spent nonces of the authorization-code flow's `state`, so each state links once.
pub trait StateNonces: Send + Sync {
    const ACTIONS: Actions;

    /// Spends `nonce` atomically: true the first time, false ever after (until `until`, when
    /// the state it came from has expired anyway and the record may go).
    fn spend(
        &self,
        nonce: &str,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, TaskError>> + Send;
}

/// Counts a user's requests against a [`Limit`].
pub trait RequestLimiter: Send + Sync {
    const ACTIONS: Actions;

    fn admit(
        &self,
        user_id: &str,
        limit: &Limit,
    ) -> impl Future<Output = Result<Admission, TaskError>> + Send;
}

/// Forgets an account's task items: its tasks, lease and cooldown (a purge).
pub trait TaskPurge: Send + Sync {
    const ACTIONS: Actions;

    fn forget_account(
        &self,
        account_id: Uuid,
    ) -> impl Future<Output = Result<(), TaskError>> + Send;
}

/// The queue the sync worker reads.
pub trait SyncQueue: Send + Sync {
    const ACTIONS: Actions;

    /// One message per task, grouped by account so an account's syncs run one at a time, in
    /// order; the task id (plus cursor) deduplicates.
    fn enqueue(&self, message: &TaskMessage) -> impl Future<Output = Result<(), TaskError>> + Send;

    /// Sends many messages, ten per call; returns the task ids of those the queue refused.
    fn enqueue_batch(
        &self,
        messages: &[TaskMessage],
    ) -> impl Future<Output = Result<Vec<Uuid>, TaskError>> + Send;
}

/// The worker's back-off between deliveries of one message.
pub trait Redelivery: Send + Sync {
    const ACTIONS: Actions;

    /// Hides a received message for `delay` before its next delivery (FIFO queues take no
    /// per-message delay at send time).
    fn delay_redelivery(
        &self,
        receipt_handle: &str,
        delay: std::time::Duration,
    ) -> impl Future<Output = Result<(), TaskError>> + Send;
}

/// Seals tastytrade secrets for storage.
pub trait TokenSealer: Send + Sync {
    const ACTIONS: Actions;

    fn seal(
        &self,
        context: SecretContext<'_>,
        secret: &SecretString,
    ) -> impl Future<Output = Result<Sealed, CipherError>> + Send;
}

/// Opens sealed tastytrade secrets.
pub trait TokenOpener: Send + Sync {
    const ACTIONS: Actions;

    fn open(
        &self,
        context: SecretContext<'_>,
        sealed: &Sealed,
    ) -> impl Future<Output = Result<SecretString, CipherError>> + Send;
}

/// Both halves, for the worker: it opens the grant's tokens and seals the access token it
/// caches.
pub trait TokenCipher: TokenSealer + TokenOpener {}

impl<T: TokenSealer + TokenOpener> TokenCipher for T {}

/// The users' linked accounts, every call scoped to one user but the scheduler's.
pub trait AccountRepo: Send + Sync {
    const ACTIONS: Actions;

    /// The user's linked accounts.
    fn list(&self, user_id: &str) -> impl Future<Output = Result<Vec<AccountRow>, DbError>> + Send;

    /// The user's linked account `account_id`; `None` for a missing, unlinked or foreign one.
    fn find(
        &self,
        user_id: &str,
        account_id: Uuid,
    ) -> impl Future<Output = Result<Option<AccountRow>, DbError>> + Send;

    /// Stores the grant, its sealed secrets and its accounts, all or nothing.
    fn link(
        &self,
        credential: &NewCredential,
        accounts: &[BrokerAccount],
    ) -> impl Future<Output = Result<Vec<LinkedAccount>, DbError>> + Send;

    /// Unlinks the user's account; false when the user has no such linked account.
    fn unlink(
        &self,
        user_id: &str,
        account_id: Uuid,
        data: SyncedData,
    ) -> impl Future<Output = Result<bool, DbError>> + Send;

    /// Records that a sync of each account is on the queue, so ticks skip them until it ends.
    fn mark_queued(&self, account_ids: &[Uuid])
    -> impl Future<Output = Result<(), DbError>> + Send;
}

/// The audit trail: appended to by the routes (and the worker, through
/// [`SyncStore::mark_failed`]), read by its user.
pub trait AuditLog: Send + Sync {
    const ACTIONS: Actions;

    fn record(&self, event: &AuditEvent) -> impl Future<Output = Result<(), DbError>> + Send;

    /// The user's events, newest first, after `after`.
    fn events(
        &self,
        user_id: &str,
        after: Option<Keyset>,
        limit: i64,
    ) -> impl Future<Output = Result<Paged<AuditEventRead>, DbError>> + Send;
}

/// Everything of a user's in the database, for a purge.
pub trait UserData: Send + Sync {
    const ACTIONS: Actions;

    /// Every account of the user, unlinked ones included.
    fn accounts_of(&self, user_id: &str)
    -> impl Future<Output = Result<Vec<Uuid>, DbError>> + Send;

    /// Deletes the user's accounts with everything synced into them, grants with their
    /// secrets, and audit events, leaving only a record that a purge happened; one
    /// transaction.
    fn purge(&self, user_id: &str) -> impl Future<Output = Result<(), DbError>> + Send;
}

/// Answers remembered under a user's `Idempotency-Key`.
pub trait IdempotencyKeys: Send + Sync {
    const ACTIONS: Actions;

    /// Claims `key` for a request whose method, path and body hash to `fingerprint`.
    fn claim(
        &self,
        user_id: &str,
        key: &str,
        fingerprint: &str,
    ) -> impl Future<Output = Result<Claim, DbError>> + Send;

    /// Keeps the claimed request's answer.
    fn complete(
        &self,
        user_id: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> impl Future<Output = Result<(), DbError>> + Send;

    /// Gives the key up (the request failed in a way worth retrying).
    fn release(&self, user_id: &str, key: &str)
    -> impl Future<Output = Result<(), DbError>> + Send;
}

/// The scheduler's view: which accounts a tick is due to sync, across all users.
pub trait DueAccounts: Send + Sync {
    const ACTIONS: Actions;

    /// The next page of due accounts after `after`, in id order.
    fn due_page(
        &self,
        query: &DueQuery,
        after: Uuid,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<DueAccount>, DbError>> + Send;
}

/// Where a sync writes what it read: one account's rows and its sync state. Every write is an
/// idempotent upsert that skips unchanged rows; each returns the rows inserted or changed.
pub trait SyncStore: Send + Sync {
    const ACTIONS: Actions;

    /// The linked account with its sealed secrets; `None` once it is unlinked or deleted.
    fn load_account(
        &self,
        account_id: Uuid,
    ) -> impl Future<Output = Result<Option<SyncAccount>, DbError>> + Send;

    // The account's status is written only while it is linked through the grant the sync
    // used (`credential_id`, new on every link): a sync that outlives an unlink and re-link
    // must not mark the fresh link.

    fn mark_running(
        &self,
        account_id: Uuid,
        credential_id: Uuid,
    ) -> impl Future<Output = Result<(), DbError>> + Send;

    /// The sync ended well: the watermarks move to where it read up to.
    fn mark_success(
        &self,
        account_id: Uuid,
        credential_id: Uuid,
        transactions_to: DateTime<Utc>,
        orders_to: DateTime<Utc>,
        snapshots_to: NaiveDate,
    ) -> impl Future<Output = Result<(), DbError>> + Send;

    /// The account's trading status as the broker answered it at `read_at`.
    fn store_trading_status(
        &self,
        account_id: Uuid,
        status: &Record<TradingStatus>,
        read_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), DbError>> + Send;

    /// `credential_id` is `None` only when the sync could not load the account at all.
    fn mark_failed(
        &self,
        account_id: Uuid,
        credential_id: Option<Uuid>,
        status: AccountStatus,
        error: &str,
    ) -> impl Future<Output = Result<(), DbError>> + Send;

    /// Caches one of the grant's short-lived tokens (`AccessToken`, `QuoteToken`), sealed,
    /// with its expiry.
    fn cache_token(
        &self,
        credential_id: Uuid,
        purpose: Purpose,
        sealed: &Sealed,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), DbError>> + Send;

    fn upsert_balances(
        &self,
        account: &SyncAccount,
        rows: &[Record<Balance>],
        target: BalanceTarget,
    ) -> impl Future<Output = Result<Stored, DbError>> + Send;

    /// The account's positions become `rows`: held ones upserted, the others deleted except
    /// `also_held` (positions whose row was not stored, which must not be taken as closed).
    fn replace_positions(
        &self,
        account: &SyncAccount,
        rows: &[Record<Position>],
        also_held: &[String],
    ) -> impl Future<Output = Result<Stored, DbError>> + Send;

    /// Some of the account's positions changed (the streamer's `CurrentPosition`): `held`
    /// upserted, `closed` (by symbol) deleted, the others untouched.
    fn update_positions(
        &self,
        account: &SyncAccount,
        held: &[Record<Position>],
        closed: &[String],
    ) -> impl Future<Output = Result<Stored, DbError>> + Send;

    fn upsert_transactions(
        &self,
        account: &SyncAccount,
        rows: &[Record<Transaction>],
    ) -> impl Future<Output = Result<Stored, DbError>> + Send;

    /// Whether this sync reads the grant's watchlists: no sync of the grant's accounts did
    /// since `since`. Claiming records the read.
    fn claim_watchlists(
        &self,
        credential_id: Uuid,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, DbError>> + Send;

    /// The customer's watchlists replace the grant's; those the broker no longer lists are
    /// deleted unless `keep_unlisted`. How many were written or deleted.
    fn replace_watchlists(
        &self,
        credential_id: Uuid,
        rows: &[Record<Watchlist>],
        keep_unlisted: bool,
    ) -> impl Future<Output = Result<u64, DbError>> + Send;

    /// The feed's greeks onto the account's positions, by symbol; how many changed.
    fn store_greeks(
        &self,
        account_id: Uuid,
        rows: &[PositionGreeks],
    ) -> impl Future<Output = Result<u64, DbError>> + Send;

    /// Complex orders, by id (their child orders go through `upsert_orders`).
    fn upsert_complex_orders(
        &self,
        account: &SyncAccount,
        rows: &[Record<ComplexOrder>],
    ) -> impl Future<Output = Result<Stored, DbError>> + Send;

    /// Net-liq bars, by their time.
    fn upsert_net_liq_history(
        &self,
        account: &SyncAccount,
        rows: &[Record<NetLiqPoint>],
    ) -> impl Future<Output = Result<Stored, DbError>> + Send;

    /// Orders with their legs and fills; the legs and fills a stored order no longer carries
    /// are marked removed by `task_id`.
    fn upsert_orders(
        &self,
        account: &SyncAccount,
        task_id: Uuid,
        rows: &[Record<Order>],
    ) -> impl Future<Output = Result<Stored, DbError>> + Send;

    /// Marks removed, by `task_id`, the rows a complete read shows the broker no longer
    /// returns; how many.
    fn mark_removed(
        &self,
        account_id: Uuid,
        task_id: Uuid,
        gone: Gone<'_>,
    ) -> impl Future<Output = Result<u64, DbError>> + Send;

    /// The account's stored orders that were still working (not in a terminal status),
    /// received before `before` or at no known time.
    fn working_orders(
        &self,
        account_id: Uuid,
        before: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<i64>, DbError>> + Send;

    /// Sets rows of `entity` aside, or notes that they were seen again.
    fn quarantine(
        &self,
        account_id: Uuid,
        entity: &'static str,
        rows: &[Quarantined],
    ) -> impl Future<Output = Result<(), DbError>> + Send;

    /// Rows of `entity` stored at last leave the quarantine.
    fn release(
        &self,
        account_id: Uuid,
        entity: &'static str,
        broker_ids: &[i64],
    ) -> impl Future<Output = Result<(), DbError>> + Send;

    /// A completed sync forgets the entries it did not see since `seen_since`: every entity's
    /// after a full sync, else those of the entities read whole (positions, balances).
    fn forget_unseen(
        &self,
        account_id: Uuid,
        seen_since: DateTime<Utc>,
        full: bool,
    ) -> impl Future<Output = Result<(), DbError>> + Send;
}

/// The synced data the read API serves. Every read names the caller: another user's account
/// reads as missing.
pub trait SyncedReads: Send + Sync {
    /// Whether `account_id` is one of `user_id`'s linked accounts.
    fn owned(
        &self,
        user_id: &str,
        account_id: Uuid,
    ) -> impl Future<Output = Result<bool, DbError>> + Send;

    /// One page of the account's transactions, newest first, after `after`.
    fn transactions(
        &self,
        user_id: &str,
        account_id: Uuid,
        filter: &TransactionFilter,
        after: Option<Keyset>,
        limit: i64,
    ) -> impl Future<Output = Result<Paged<TransactionRead>, DbError>> + Send;

    /// One page of the account's orders, newest first, after `after`, with legs and fills.
    fn orders(
        &self,
        user_id: &str,
        account_id: Uuid,
        filter: &OrderFilter,
        after: Option<Keyset>,
        limit: i64,
    ) -> impl Future<Output = Result<Paged<OrderRead>, DbError>> + Send;

    /// The account's current positions.
    fn positions(
        &self,
        user_id: &str,
        account_id: Uuid,
    ) -> impl Future<Output = Result<Vec<PositionRead>, DbError>> + Send;

    /// The account's watermarks and row counts; `None` when it is not one of the user's.
    fn synced(
        &self,
        user_id: &str,
        account_id: Uuid,
    ) -> impl Future<Output = Result<Option<SyncedSummary>, DbError>> + Send;

    /// The account's end-of-day values in `currency` over `[from, to]`, oldest first.
    fn balance_history(
        &self,
        user_id: &str,
        account_id: Uuid,
        currency: &str,
        range: (Option<NaiveDate>, Option<NaiveDate>),
    ) -> impl Future<Output = Result<Vec<BalancePoint>, DbError>> + Send;

    /// The account's net-liq bars on the UTC days `[from, to]`, oldest first.
    fn net_liq_history(
        &self,
        user_id: &str,
        account_id: Uuid,
        range: (Option<NaiveDate>, Option<NaiveDate>),
    ) -> impl Future<Output = Result<Vec<NetLiqBar>, DbError>> + Send;

    /// The account's current balances, one per currency.
    fn balances(
        &self,
        user_id: &str,
        account_id: Uuid,
    ) -> impl Future<Output = Result<Vec<BalanceRead>, DbError>> + Send;
}

/// The deployment's secrets, read by name at cold start.
pub trait SecretSource: Send + Sync {
    const ACTIONS: Actions;

    /// The secret's text; `None` when it holds none (a binary secret).
    fn read(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<Option<SecretString>, Box<dyn std::error::Error + Send + Sync>>>
    + Send;
}

/// Where the app's backend hears what happened ([`Event`]). Publishing never fails the caller:
/// the data is committed before and stays whatever becomes of its announcement; the adapter
/// retries what the bus refuses, and logs and counts what it still could not publish.
pub trait EventBus: Send + Sync {
    const ACTIONS: Actions;

    fn publish(&self, events: &[Event]) -> impl Future<Output = ()> + Send;
}

/// The broker's account streamer: a session per grant (see
/// [`crate::tastytrade::streamer`]).
pub trait AccountStreams: Send + Sync {
    /// Connects and subscribes to `accounts` with `token`.
    fn account_stream(
        &self,
        environment: Environment,
        accounts: &[String],
        token: &AccessToken,
    ) -> impl Future<Output = Result<AccountStream, BrokerError>> + Send;
}

/// The grants one streamer shard serves, and the lease that says who serves them.
pub trait StreamerShards: Send + Sync {
    const ACTIONS: Actions;

    /// How many grants have accounts to stream (linked, open, not waiting for a new link).
    fn grant_count(&self) -> impl Future<Output = Result<u64, DbError>> + Send;

    /// Whether the account is still linked through the grant `credential_id`.
    fn still_linked(
        &self,
        account_id: Uuid,
        credential_id: Uuid,
    ) -> impl Future<Output = Result<bool, DbError>> + Send;

    /// The linked accounts, with their sealed secrets, of the grants in `shard` of `shards`.
    fn shard_accounts(
        &self,
        shard: u32,
        shards: u32,
    ) -> impl Future<Output = Result<Vec<SyncAccount>, DbError>> + Send;
}

/// Who holds a streamer shard, until when at the latest (its invocation's end), and until
/// when it has promised to be alive (renewed every few seconds: a holder that died is
/// replaced once its promise lapses, not when its invocation would have ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardHolder {
    pub holder: Uuid,
    pub until: DateTime<Utc>,
    pub alive_until: DateTime<Utc>,
}

/// The shard leases (DynamoDB): one holder at a time, taken over near its end.
pub trait ShardLeases: Send + Sync {
    const ACTIONS: Actions;

    fn holder(
        &self,
        shard: u32,
    ) -> impl Future<Output = Result<Option<ShardHolder>, TaskError>> + Send;

    /// Takes the lease for `me` if its holder and end are still as `seen` left them (`None`:
    /// no lease, or one that has ended). Renewing is taking it from oneself. False when
    /// someone else changed it first.
    fn take(
        &self,
        shard: u32,
        me: ShardHolder,
        seen: Option<ShardHolder>,
    ) -> impl Future<Output = Result<bool, TaskError>> + Send;

    /// Lets the lease go, if `me` still holds it.
    fn release(&self, shard: u32, me: Uuid) -> impl Future<Output = Result<(), TaskError>> + Send;
}

/// The broker's HTTP API: its token endpoint and authenticated reads, each retried as the
/// adapter's policy allows. The typed endpoints, the scans of paginated ones and the
/// per-grant token cache are built on it ([`Session`]), so a fake broker serves them all.
pub trait Broker: Send + Sync + Sized {
    /// A fresh access token for `grant`.
    fn refresh(
        &self,
        grant: &Grant,
    ) -> impl Future<Output = Result<AccessToken, BrokerError>> + Send;

    /// The authorization-code exchange (`grant_type=authorization_code`), with the flow's
    /// PKCE verifier when its authorize URL carried a challenge.
    fn exchange_code(
        &self,
        environment: Environment,
        client_id: &str,
        client_secret: &SecretString,
        code: &SecretString,
        redirect_uri: &str,
        code_verifier: Option<&SecretString>,
    ) -> impl Future<Output = Result<CodeExchange, BrokerError>> + Send;

    /// GET `path` with `token`, once; the body of a success, else the broker's error.
    /// [`Session`] retries it and reads the body.
    fn get(
        &self,
        environment: Environment,
        path: &str,
        query: &[(String, String)],
        token: &AccessToken,
    ) -> impl Future<Output = Result<bytes::Bytes, BrokerError>> + Send;

    /// One Greeks event per symbol of `symbols` (streamer symbols) from the market-data feed,
    /// collected for at most `wait`.
    fn greeks(
        &self,
        feed: &QuoteFeed,
        symbols: &[String],
        wait: std::time::Duration,
    ) -> impl Future<Output = Result<FeedRead, BrokerError>> + Send;

    /// How a session retries a GET that failed.
    fn retry_policy(&self) -> &crate::tastytrade::RetryPolicy;

    /// How much of the broker a session takes in (pages per scan).
    fn limits(&self) -> crate::tastytrade::client::Limits {
        crate::tastytrade::client::Limits::default()
    }

    /// Counts a retry, and a 429 (for the stats and metrics).
    fn note_retry(&self) {}
    fn note_throttled(&self) {}

    /// A session for one grant; `cached` is an access token persisted earlier, if any.
    fn session(&self, grant: Grant, cached: Option<AccessToken>) -> Session<'_, Self> {
        Session::new(self, grant, cached)
    }
}
