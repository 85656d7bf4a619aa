//! In-memory fakes of the ports, for the fast tier: unit tests of the use cases' logic
//! (`cargo test --lib`), with no emulator or database. They keep the contract of the adapters
//! (conditional writes, leases, cooldowns, the queue's deduplication) but none of their
//! storage; the integration suite proves the adapters against the real services.
//!
//! Compiled for this crate's own tests and behind the `test-util` feature for others.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::db::DbError;
use crate::domain::accounts::{
    AccountRow, AccountStatus, BalanceTarget, BrokerAccount, DueAccount, DueQuery, LinkedAccount,
    NewCredential, SyncAccount, SyncedData,
};
use crate::domain::audit::{AuditEvent, AuditEventRead};
use crate::domain::reads::{Keyset, Paged};
use crate::domain::requests::{Admission, Claim, Limit};
use crate::domain::rows::{Gone, Quarantined, Stored};
use crate::domain::tasks::{ManualClaim, NewTask, TaskMessage, TaskRecord, TaskStatus, TaskUpdate};
use crate::ports::{
    AccountRepo, Actions, AuditLog, Broker, CooldownStore, DueAccounts, IdempotencyKeys,
    LeaseStore, Redelivery, RequestLimiter, SecretSource, SyncQueue, SyncStore, TaskCreator,
    TaskError, TaskHistory, TaskReader, TaskUpdater, TokenOpener, TokenSealer,
};
use crate::secrets::{CipherError, Purpose, Sealed, SecretContext};
use crate::tastytrade::dxlink::{FeedRead, Greeks, PositionGreeks, QuoteFeed};
use crate::tastytrade::model::{
    Balance, BrokerId, ComplexOrder, NetLiqPoint, Order, Position, Record, TradingStatus,
    Transaction, Watchlist, tree,
};
use crate::tastytrade::{AccessToken, BrokerError, CodeExchange, Environment, Grant};

/// No AWS call behind any fake.
const NONE: Actions = &[];

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock has failed already; its state is still fine
    // to read for the rest of it.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, Default)]
struct TaskState {
    /// Requests counted per class, user and window start.
    hits: HashMap<(&'static str, String, i64), u32>,
    tasks: HashMap<Uuid, TaskRecord>,
    leases: HashMap<Uuid, (Uuid, DateTime<Utc>)>,
    cooldowns: HashMap<Uuid, (Uuid, DateTime<Utc>)>,
}

/// Every task port, in memory.
#[derive(Debug, Default)]
pub struct InMemoryTasks {
    state: Mutex<TaskState>,
}

impl InMemoryTasks {
    /// Every task, in no particular order.
    pub fn all(&self) -> Vec<TaskRecord> {
        locked(&self.state).tasks.values().cloned().collect()
    }

    /// Ends the account's cooldown as if its time had run out.
    pub fn expire_cooldown(&self, account_id: Uuid) {
        locked(&self.state).cooldowns.remove(&account_id);
    }

    /// Who holds the account's lease, if anyone does.
    pub fn lease_holder(&self, account_id: Uuid) -> Option<Uuid> {
        locked(&self.state)
            .leases
            .get(&account_id)
            .filter(|(_, until)| *until > Utc::now())
            .map(|(holder, _)| *holder)
    }
}

impl TaskReader for InMemoryTasks {
    const ACTIONS: Actions = NONE;

    async fn get(&self, task_id: Uuid) -> Result<Option<TaskRecord>, TaskError> {
        Ok(locked(&self.state).tasks.get(&task_id).cloned())
    }
}

impl TaskHistory for InMemoryTasks {
    const ACTIONS: Actions = NONE;

    async fn recent(&self, account_id: Uuid, limit: i32) -> Result<Vec<TaskRecord>, TaskError> {
        let mut tasks: Vec<TaskRecord> = locked(&self.state)
            .tasks
            .values()
            .filter(|t| t.account_id == account_id)
            .cloned()
            .collect();
        tasks.sort_by_key(|t| std::cmp::Reverse(t.created_at));
        tasks.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(tasks)
    }
}

impl TaskCreator for InMemoryTasks {
    const ACTIONS: Actions = NONE;

    async fn create(&self, task: &NewTask) -> Result<(), TaskError> {
        let mut state = locked(&self.state);
        if state.tasks.contains_key(&task.task_id) {
            return Err(TaskError::Exists(task.task_id));
        }
        state.tasks.insert(task.task_id, task.pending_record());
        Ok(())
    }
}

impl TaskUpdater for InMemoryTasks {
    const ACTIONS: Actions = NONE;

    async fn update(&self, task_id: Uuid, update: TaskUpdate<'_>) -> Result<(), TaskError> {
        let mut state = locked(&self.state);
        // As the table's condition: an update never creates a task.
        let task = state
            .tasks
            .get_mut(&task_id)
            .ok_or_else(|| TaskError::Unavailable(format!("no task {task_id}").into()))?;
        if update.status == TaskStatus::InProgress && update.progress_percentage == 0 {
            task.attempts += 1;
        }
        task.status = update.status;
        task.stage = Some(update.stage.to_owned());
        task.progress_percentage = update.progress_percentage;
        task.counts = update.counts.clone();
        task.error_message = update.error_message.map(str::to_owned);
        if let Some(cursor) = update.cursor {
            task.resume_cursor = Some(cursor.clone());
        }
        task.last_updated = Utc::now();
        Ok(())
    }
}

impl LeaseStore for InMemoryTasks {
    const ACTIONS: Actions = NONE;

    async fn acquire_lease(
        &self,
        account_id: Uuid,
        holder: Uuid,
        ttl: TimeDelta,
    ) -> Result<bool, TaskError> {
        let now = Utc::now();
        let mut state = locked(&self.state);
        match state.leases.get(&account_id) {
            Some((other, until)) if *other != holder && *until >= now => Ok(false),
            _ => {
                state.leases.insert(account_id, (holder, now + ttl));
                Ok(true)
            }
        }
    }

    async fn release_lease(&self, account_id: Uuid, holder: Uuid) -> Result<(), TaskError> {
        let mut state = locked(&self.state);
        if state
            .leases
            .get(&account_id)
            .is_some_and(|(h, _)| *h == holder)
        {
            state.leases.remove(&account_id);
        }
        Ok(())
    }
}

impl RequestLimiter for InMemoryTasks {
    const ACTIONS: Actions = NONE;

    async fn admit(&self, user_id: &str, limit: &Limit) -> Result<Admission, TaskError> {
        let now = Utc::now().timestamp();
        let (start, end) = limit.window_at(now);
        let mut state = locked(&self.state);
        let hits = (state.hits)
            .entry((limit.class, user_id.to_owned(), start))
            .or_default();
        if *hits >= limit.max {
            let retry_after = u64::try_from(end - now).unwrap_or(1).max(1);
            return Ok(Admission::Refused { retry_after });
        }
        *hits += 1;
        Ok(Admission::Admitted)
    }
}

impl CooldownStore for InMemoryTasks {
    const ACTIONS: Actions = NONE;

    async fn create_manual(
        &self,
        task: &NewTask,
        cooldown: TimeDelta,
    ) -> Result<ManualClaim, TaskError> {
        let now = Utc::now();
        let mut state = locked(&self.state);
        if let Some((task_id, until)) = state.cooldowns.get(&task.account_id)
            && *until > now
        {
            return Ok(ManualClaim::CoolingDown {
                task_id: Some(*task_id),
                until: *until,
            });
        }
        if state.tasks.contains_key(&task.task_id) {
            return Err(TaskError::Exists(task.task_id));
        }
        state
            .cooldowns
            .insert(task.account_id, (task.task_id, now + cooldown));
        state.tasks.insert(task.task_id, task.pending_record());
        Ok(ManualClaim::Created)
    }

    async fn release_cooldown(&self, account_id: Uuid, task_id: Uuid) -> Result<(), TaskError> {
        let mut state = locked(&self.state);
        if state
            .cooldowns
            .get(&account_id)
            .is_some_and(|(t, _)| *t == task_id)
        {
            state.cooldowns.remove(&account_id);
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct QueueState {
    sent: Vec<TaskMessage>,
    refuse: bool,
    delays: Vec<(String, std::time::Duration)>,
}

/// The event bus in memory: what was published, in order.
#[derive(Debug, Default)]
pub struct InMemoryBus {
    published: Mutex<Vec<crate::domain::events::Event>>,
}

impl InMemoryBus {
    pub fn published(&self) -> Vec<crate::domain::events::Event> {
        locked(&self.published).clone()
    }
}

impl crate::ports::EventBus for InMemoryBus {
    const ACTIONS: Actions = &[];

    async fn publish(&self, events: &[crate::domain::events::Event]) {
        locked(&self.published).extend_from_slice(events);
    }
}

/// The sync queue in memory: what was sent, in order. A message identical to one already
/// sent is dropped, as SQS FIFO drops a duplicate within its deduplication window.
#[derive(Debug, Default)]
pub struct InMemoryQueue {
    state: Mutex<QueueState>,
}

impl InMemoryQueue {
    pub fn sent(&self) -> Vec<TaskMessage> {
        locked(&self.state).sent.clone()
    }

    /// From now on every send fails as an unavailable queue would (`true`), or succeeds.
    pub fn refuse_sends(&self, refuse: bool) {
        locked(&self.state).refuse = refuse;
    }

    /// The redelivery delays asked for, by receipt handle.
    pub fn delays(&self) -> Vec<(String, std::time::Duration)> {
        locked(&self.state).delays.clone()
    }

    fn send(state: &mut QueueState, message: &TaskMessage) -> Result<(), TaskError> {
        if state.refuse {
            return Err(TaskError::Unavailable("the queue refuses sends".into()));
        }
        if !state.sent.contains(message) {
            state.sent.push(message.clone());
        }
        Ok(())
    }
}

impl SyncQueue for InMemoryQueue {
    const ACTIONS: Actions = NONE;

    async fn enqueue(&self, message: &TaskMessage) -> Result<(), TaskError> {
        Self::send(&mut locked(&self.state), message)
    }

    async fn enqueue_batch(&self, messages: &[TaskMessage]) -> Result<Vec<Uuid>, TaskError> {
        let mut state = locked(&self.state);
        for message in messages {
            Self::send(&mut state, message)?;
        }
        Ok(Vec::new())
    }
}

impl Redelivery for InMemoryQueue {
    const ACTIONS: Actions = NONE;

    async fn delay_redelivery(
        &self,
        receipt_handle: &str,
        delay: std::time::Duration,
    ) -> Result<(), TaskError> {
        locked(&self.state)
            .delays
            .push((receipt_handle.to_owned(), delay));
        Ok(())
    }
}

/// An idempotency key of [`InMemoryAccounts`] (by user and key): the request's fingerprint and
/// the answer kept, once there is one.
type HeldKey = (String, Option<(u16, String)>);

/// One account of [`InMemoryAccounts`].
#[derive(Debug, Clone)]
struct StoredAccount {
    user_id: String,
    row: AccountRow,
    queued: bool,
}

/// The account ports in memory. Every unqueued account is due on every tick (slot arithmetic
/// is the SQL's, proven against Postgres).
#[derive(Debug, Default)]
pub struct InMemoryAccounts {
    accounts: Mutex<BTreeMap<Uuid, StoredAccount>>,
    keys: Mutex<HashMap<(String, String), HeldKey>>,
    audit: Mutex<Vec<(AuditEvent, DateTime<Utc>)>>,
}

impl InMemoryAccounts {
    /// Adds a linked account of `user_id` with `status` as its last sync status; its id.
    pub fn add(&self, user_id: &str, status: AccountStatus) -> Uuid {
        let id = Uuid::new_v4();
        let row = AccountRow {
            id,
            account_number: format!("5WT{}", &id.simple().to_string()[..5]),
            nickname: None,
            account_type_name: None,
            environment: Environment::Sandbox,
            last_sync_status: status,
            last_successful_sync_at: None,
            quarantined_rows: 0,
            last_error: None,
            created_at: Utc::now(),
        };
        locked(&self.accounts).insert(
            id,
            StoredAccount {
                user_id: user_id.into(),
                row,
                queued: false,
            },
        );
        id
    }

    pub fn is_queued(&self, account_id: Uuid) -> bool {
        locked(&self.accounts)
            .get(&account_id)
            .is_some_and(|a| a.queued)
    }

    /// Clears every queued marker, as finished syncs do.
    pub fn clear_queued(&self) {
        for account in locked(&self.accounts).values_mut() {
            account.queued = false;
        }
    }
}

impl InMemoryAccounts {
    /// The audit events recorded so far, oldest first.
    pub fn audit_events(&self) -> Vec<AuditEvent> {
        locked(&self.audit).iter().map(|(e, _)| e.clone()).collect()
    }
}

impl IdempotencyKeys for InMemoryAccounts {
    const ACTIONS: Actions = NONE;

    async fn claim(&self, user_id: &str, key: &str, fingerprint: &str) -> Result<Claim, DbError> {
        let mut keys = locked(&self.keys);
        let id = (user_id.to_owned(), key.to_owned());
        Ok(match keys.get(&id) {
            None => {
                keys.insert(id, (fingerprint.to_owned(), None));
                Claim::New
            }
            Some((held, _)) if held != fingerprint => Claim::Mismatch,
            Some((_, Some((status, body)))) => Claim::Replay {
                status: *status,
                body: body.clone(),
            },
            Some((_, None)) => Claim::InProgress,
        })
    }

    async fn complete(
        &self,
        user_id: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), DbError> {
        if let Some((_, answer)) = locked(&self.keys).get_mut(&(user_id.to_owned(), key.to_owned()))
        {
            *answer = Some((status, body.to_owned()));
        }
        Ok(())
    }

    async fn release(&self, user_id: &str, key: &str) -> Result<(), DbError> {
        locked(&self.keys).remove(&(user_id.to_owned(), key.to_owned()));
        Ok(())
    }
}

/// The trail in memory, keyed for paging by time and position.
impl AuditLog for InMemoryAccounts {
    const ACTIONS: Actions = NONE;

    async fn record(&self, event: &AuditEvent) -> Result<(), DbError> {
        locked(&self.audit).push((event.clone(), Utc::now()));
        Ok(())
    }

    async fn events(
        &self,
        user_id: &str,
        after: Option<Keyset>,
        limit: i64,
    ) -> Result<Paged<AuditEventRead>, DbError> {
        let trail = locked(&self.audit);
        let mut newest_first: Vec<(Keyset, AuditEventRead)> = (trail.iter().enumerate())
            .filter(|(_, (e, _))| e.user_id == user_id)
            .map(|(i, (e, at))| {
                let key = Keyset {
                    at: *at,
                    id: i64::try_from(i).unwrap_or(i64::MAX),
                };
                let source = e.source.clone();
                let read = AuditEventRead {
                    account_id: e.account_id,
                    action: e.action,
                    outcome: e.outcome,
                    actor: if source.is_some() { "user" } else { "system" }.to_owned(),
                    source_ip: source.as_ref().and_then(|s| s.ip.clone()),
                    user_agent: source.and_then(|s| s.user_agent),
                    occurred_at: *at,
                };
                (key, read)
            })
            .filter(|(key, _)| after.is_none_or(|a| (key.at, key.id) < (a.at, a.id)))
            .collect();
        newest_first.reverse();
        let limit = usize::try_from(limit).unwrap_or_default();
        let more = newest_first.len() > limit;
        let next = (limit.checked_sub(1).and_then(|last| newest_first.get(last)))
            .filter(|_| more)
            .map(|(key, _)| *key);
        newest_first.truncate(limit);
        Ok(Paged {
            items: newest_first.into_iter().map(|(_, read)| read).collect(),
            next,
        })
    }
}

impl AccountRepo for InMemoryAccounts {
    const ACTIONS: Actions = NONE;

    async fn list(&self, user_id: &str) -> Result<Vec<AccountRow>, DbError> {
        Ok(locked(&self.accounts)
            .values()
            .filter(|a| a.user_id == user_id)
            .map(|a| a.row.clone())
            .collect())
    }

    async fn find(&self, user_id: &str, account_id: Uuid) -> Result<Option<AccountRow>, DbError> {
        Ok(locked(&self.accounts)
            .get(&account_id)
            .filter(|a| a.user_id == user_id)
            .map(|a| a.row.clone()))
    }

    async fn link(
        &self,
        credential: &NewCredential,
        broker_accounts: &[BrokerAccount],
    ) -> Result<Vec<LinkedAccount>, DbError> {
        Ok(broker_accounts
            .iter()
            .map(|account| LinkedAccount {
                id: self.add(&credential.user_id, AccountStatus::Pending),
                account_number: account.account_number.clone(),
                is_closed: account.is_closed,
                is_new: true,
            })
            .collect())
    }

    async fn unlink(
        &self,
        user_id: &str,
        account_id: Uuid,
        _data: SyncedData,
    ) -> Result<bool, DbError> {
        let mut accounts = locked(&self.accounts);
        if accounts
            .get(&account_id)
            .is_some_and(|a| a.user_id == user_id)
        {
            accounts.remove(&account_id);
            return Ok(true);
        }
        Ok(false)
    }

    async fn mark_queued(&self, account_ids: &[Uuid]) -> Result<(), DbError> {
        let mut accounts = locked(&self.accounts);
        for id in account_ids {
            if let Some(account) = accounts.get_mut(id) {
                account.queued = true;
            }
        }
        Ok(())
    }
}

impl DueAccounts for InMemoryAccounts {
    const ACTIONS: Actions = NONE;

    async fn due_page(
        &self,
        _query: &DueQuery,
        after: Uuid,
        limit: i64,
    ) -> Result<Vec<DueAccount>, DbError> {
        Ok(locked(&self.accounts)
            .range(after..)
            .filter(|(id, a)| {
                **id != after && !a.queued && a.row.last_sync_status != AccountStatus::NeedsReauth
            })
            .take(usize::try_from(limit).unwrap_or(0))
            .map(|(id, a)| DueAccount {
                id: *id,
                user_id: a.user_id.clone(),
            })
            .collect())
    }
}

/// A cipher that "seals" by keeping the secret beside its context and opens only with the
/// same context: the contract of the KMS envelope, with no cryptography (unit tests only).
#[derive(Debug, Default)]
pub struct PlainCipher;

fn context_tag(context: &SecretContext<'_>) -> String {
    serde_json::to_string(&context.pairs()).unwrap_or_default()
}

impl TokenSealer for PlainCipher {
    const ACTIONS: Actions = NONE;

    async fn seal(
        &self,
        context: SecretContext<'_>,
        secret: &SecretString,
    ) -> Result<Sealed, CipherError> {
        Ok(Sealed {
            scheme_version: crate::secrets::SCHEME_VERSION,
            kms_key_id: "plain".into(),
            wrapped_key: context_tag(&context).into_bytes(),
            nonce: vec![0; 12],
            ciphertext: secret.expose_secret().as_bytes().to_vec(),
        })
    }
}

impl TokenOpener for PlainCipher {
    const ACTIONS: Actions = NONE;

    async fn open(
        &self,
        context: SecretContext<'_>,
        sealed: &Sealed,
    ) -> Result<SecretString, CipherError> {
        if sealed.wrapped_key != context_tag(&context).into_bytes() {
            return Err(CipherError::Refused);
        }
        let text =
            String::from_utf8(sealed.ciphertext.clone()).map_err(|_| CipherError::Refused)?;
        Ok(SecretString::from(text))
    }
}

/// An API Gateway (HTTP API, payload 2.0) request as the JWT authorizer hands it over, from
/// `user` (`None`: no `sub` claim).
pub fn request(method: &str, path: &str, user: Option<&str>) -> lambda_http::Request {
    let claims = match user {
        Some(sub) => serde_json::json!({ "sub": sub }),
        None => serde_json::json!({}),
    };
    let event = serde_json::json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "tastysync",
            "domainName": "api.tastysync.example",
            "domainPrefix": "api",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.7", "userAgent": "unit"},
            "requestId": "unit",
            "routeKey": format!("{method} {path}"),
            "stage": "$default",
            "time": "01/Dec/2026:09:00:00 +0000",
            "timeEpoch": 1_795_770_000_000_i64,
            "authorizer": {"jwt": {"claims": claims, "scopes": null}},
        },
        "isBase64Encoded": false,
    });
    lambda_http::request::from_str(&event.to_string())
        .unwrap_or_else(|e| panic!("a well-formed API Gateway event: {e}"))
}

/// The deployment's secrets in memory, by ARN.
#[derive(Debug, Default)]
pub struct InMemorySecrets {
    secrets: HashMap<String, String>,
}

impl InMemorySecrets {
    pub fn with<const N: usize>(secrets: [(&str, &str); N]) -> Self {
        Self {
            secrets: secrets
                .into_iter()
                .map(|(arn, value)| (arn.to_owned(), value.to_owned()))
                .collect(),
        }
    }
}

impl SecretSource for InMemorySecrets {
    const ACTIONS: Actions = NONE;

    async fn read(
        &self,
        arn: &str,
    ) -> Result<Option<SecretString>, Box<dyn std::error::Error + Send + Sync>> {
        match self.secrets.get(arn) {
            Some(value) => Ok(Some(SecretString::from(value.clone()))),
            None => Err(format!("no secret {arn}").into()),
        }
    }
}

/// What [`InMemorySyncStore`] holds of one account: its row and the synced data by broker id.
#[derive(Debug, Clone)]
pub struct StoredSync {
    pub account: SyncAccount,
    pub status: AccountStatus,
    pub last_error: Option<String>,
    pub transactions: BTreeMap<i64, serde_json::Value>,
    pub orders: BTreeMap<i64, serde_json::Value>,
    pub complex_orders: BTreeMap<i64, serde_json::Value>,
    /// Rows written per balance target: current balances, broker snapshots, captures.
    pub balance_writes: BTreeMap<&'static str, usize>,
    pub positions: Vec<serde_json::Value>,
    /// The last trading status stored, as the broker sent it.
    pub trading_status: Option<serde_json::Value>,
    /// Net-liq bars by time, as the broker sent them.
    pub net_liq: BTreeMap<DateTime<Utc>, serde_json::Value>,
    /// The greeks stored on positions, by position symbol.
    pub greeks: BTreeMap<String, PositionGreeks>,
    /// The grant's watchlists by name, as the broker sent them, and when they were claimed.
    pub watchlists: BTreeMap<String, serde_json::Value>,
    pub watchlists_read_at: Option<DateTime<Utc>>,
    /// Rows set aside, by entity and row key (the broker id, else the JSON), with when they
    /// were last seen.
    pub quarantined: BTreeMap<(&'static str, String), (Quarantined, DateTime<Utc>)>,
    /// Rows marked removed, by entity and broker id, with the task that marked them.
    pub removed: BTreeMap<(&'static str, i64), Uuid>,
}

/// The sync's store in memory: rows keyed by broker id, so a re-read page is an upsert that
/// changes nothing, as in Postgres. The column mapping is the SQL's, proven against Postgres.
#[derive(Debug, Default)]
pub struct InMemorySyncStore {
    accounts: Mutex<HashMap<Uuid, StoredSync>>,
}

impl InMemorySyncStore {
    pub fn add(&self, account: SyncAccount) {
        let stored = StoredSync {
            account: account.clone(),
            status: AccountStatus::Pending,
            last_error: None,
            transactions: BTreeMap::new(),
            orders: BTreeMap::new(),
            complex_orders: BTreeMap::new(),
            balance_writes: BTreeMap::new(),
            positions: Vec::new(),
            trading_status: None,
            net_liq: BTreeMap::new(),
            greeks: BTreeMap::new(),
            watchlists: BTreeMap::new(),
            watchlists_read_at: None,
            removed: BTreeMap::new(),
            quarantined: BTreeMap::new(),
        };
        locked(&self.accounts).insert(account.id, stored);
    }

    pub fn remove(&self, account_id: Uuid) {
        locked(&self.accounts).remove(&account_id);
    }

    /// A copy of what is stored for `account_id`.
    pub fn stored(&self, account_id: Uuid) -> Option<StoredSync> {
        locked(&self.accounts).get(&account_id).cloned()
    }

    /// Applies `f` to the account; like an SQL write, nothing happens once it is gone.
    fn with<R: Default>(
        &self,
        account_id: Uuid,
        f: impl FnOnce(&mut StoredSync) -> R,
    ) -> Result<R, DbError> {
        Ok(locked(&self.accounts)
            .get_mut(&account_id)
            .map(f)
            .unwrap_or_default())
    }
}

/// Upserts `rows` by broker id; how many were new or changed.
fn upsert_by_id<T: BrokerId>(
    table: &mut BTreeMap<i64, serde_json::Value>,
    rows: &[Record<T>],
) -> u64 {
    let mut written = 0;
    for row in rows {
        let Some(id) = row.item.broker_id() else {
            continue;
        };
        let raw = tree(&row.raw);
        if table.get(&id) != Some(&raw) {
            table.insert(id, raw);
            written += 1;
        }
    }
    written
}

impl SyncStore for InMemorySyncStore {
    const ACTIONS: Actions = NONE;

    async fn load_account(&self, account_id: Uuid) -> Result<Option<SyncAccount>, DbError> {
        Ok(self.stored(account_id).map(|s| SyncAccount {
            quarantined: s.quarantined.len() as u64,
            ..s.account
        }))
    }

    async fn mark_running(&self, account_id: Uuid, credential_id: Uuid) -> Result<(), DbError> {
        self.with(account_id, |s| {
            if s.account.credential_id == credential_id {
                s.status = AccountStatus::Running;
            }
        })
    }

    async fn mark_success(
        &self,
        account_id: Uuid,
        credential_id: Uuid,
        transactions_to: DateTime<Utc>,
        orders_to: DateTime<Utc>,
        snapshots_to: NaiveDate,
    ) -> Result<(), DbError> {
        self.with(account_id, |s| {
            if s.account.credential_id != credential_id {
                return;
            }
            s.status = AccountStatus::Success;
            s.last_error = None;
            s.account.transactions_synced_to = Some(transactions_to);
            s.account.orders_synced_to = Some(orders_to);
            s.account.snapshots_synced_to = Some(snapshots_to);
        })
    }

    async fn store_trading_status(
        &self,
        account_id: Uuid,
        status: &Record<TradingStatus>,
        _read_at: DateTime<Utc>,
    ) -> Result<(), DbError> {
        self.with(account_id, |s| s.trading_status = Some(tree(&status.raw)))
    }

    async fn mark_failed(
        &self,
        account_id: Uuid,
        credential_id: Option<Uuid>,
        status: AccountStatus,
        error: &str,
    ) -> Result<(), DbError> {
        self.with(account_id, |s| {
            if credential_id.is_some_and(|c| c != s.account.credential_id) {
                return;
            }
            s.status = status;
            s.last_error = Some(error.to_owned());
        })
    }

    async fn cache_token(
        &self,
        credential_id: Uuid,
        purpose: Purpose,
        sealed: &Sealed,
        expires_at: DateTime<Utc>,
    ) -> Result<(), DbError> {
        for stored in locked(&self.accounts).values_mut() {
            if stored.account.credential_id == credential_id {
                let cached = Some((sealed.clone(), expires_at));
                match purpose {
                    Purpose::QuoteToken => stored.account.quote_token = cached,
                    _ => stored.account.access_token = cached,
                }
            }
        }
        Ok(())
    }

    async fn upsert_balances(
        &self,
        account: &SyncAccount,
        rows: &[Record<Balance>],
        target: BalanceTarget,
    ) -> Result<Stored, DbError> {
        let label = match target {
            BalanceTarget::Current => "current",
            BalanceTarget::BrokerSnapshot => "snapshot",
            BalanceTarget::Capture(_) => "capture",
        };
        self.with(account.id, |s| {
            *s.balance_writes.entry(label).or_default() += rows.len();
            Stored::changed(rows.len() as u64)
        })
    }

    async fn replace_positions(
        &self,
        account: &SyncAccount,
        rows: &[Record<Position>],
        _also_held: &[String],
    ) -> Result<Stored, DbError> {
        self.with(account.id, |s| {
            s.positions = rows.iter().map(|r| tree(&r.raw)).collect();
            Stored::changed(rows.len() as u64)
        })
    }

    async fn update_positions(
        &self,
        account: &SyncAccount,
        held: &[Record<Position>],
        closed: &[String],
    ) -> Result<Stored, DbError> {
        self.with(account.id, |s| {
            let symbol = |raw: &serde_json::Value| raw["symbol"].as_str().map(str::to_owned);
            let changed: Vec<String> = (held.iter().map(|r| r.item.symbol.clone()))
                .chain(closed.iter().cloned())
                .collect();
            s.positions
                .retain(|raw| symbol(raw).is_none_or(|s| !changed.contains(&s)));
            s.positions.extend(held.iter().map(|r| tree(&r.raw)));
            Stored::changed((held.len() + closed.len()) as u64)
        })
    }

    async fn upsert_transactions(
        &self,
        account: &SyncAccount,
        rows: &[Record<Transaction>],
    ) -> Result<Stored, DbError> {
        self.with(account.id, |s| {
            Stored::changed(upsert_by_id(&mut s.transactions, rows))
        })
    }

    async fn claim_watchlists(
        &self,
        credential_id: Uuid,
        since: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        // One grant's accounts share its claim, as they share the credential row.
        let mut accounts = locked(&self.accounts);
        let grant = accounts
            .values_mut()
            .filter(|s| s.account.credential_id == credential_id);
        let mut claimed = false;
        for stored in grant {
            if stored.watchlists_read_at.is_none_or(|at| at < since) {
                claimed = true;
            }
            stored.watchlists_read_at = Some(Utc::now());
        }
        Ok(claimed)
    }

    async fn replace_watchlists(
        &self,
        credential_id: Uuid,
        rows: &[Record<Watchlist>],
        keep_unlisted: bool,
    ) -> Result<u64, DbError> {
        let mut accounts = locked(&self.accounts);
        let mut written = 0;
        for stored in accounts
            .values_mut()
            .filter(|s| s.account.credential_id == credential_id)
        {
            if !keep_unlisted {
                stored.watchlists.clear();
            }
            for row in rows {
                stored
                    .watchlists
                    .insert(row.item.name.clone(), tree(&row.raw));
            }
            written = rows.len() as u64;
        }
        Ok(written)
    }

    async fn store_greeks(
        &self,
        account_id: Uuid,
        rows: &[PositionGreeks],
    ) -> Result<u64, DbError> {
        self.with(account_id, |s| {
            for row in rows {
                s.greeks.insert(row.symbol.clone(), row.clone());
            }
            rows.len() as u64
        })
    }

    async fn upsert_complex_orders(
        &self,
        account: &SyncAccount,
        rows: &[Record<ComplexOrder>],
    ) -> Result<Stored, DbError> {
        self.with(account.id, |s| {
            Stored::changed(upsert_by_id(&mut s.complex_orders, rows))
        })
    }

    async fn upsert_net_liq_history(
        &self,
        account: &SyncAccount,
        rows: &[Record<NetLiqPoint>],
    ) -> Result<Stored, DbError> {
        self.with(account.id, |s| {
            let mut changed = 0;
            for row in rows {
                let raw = tree(&row.raw);
                if s.net_liq.insert(row.item.time, raw.clone()).as_ref() != Some(&raw) {
                    changed += 1;
                }
            }
            s.account.net_liq_synced_to = s.net_liq.keys().next_back().copied();
            Stored::changed(changed)
        })
    }

    async fn upsert_orders(
        &self,
        account: &SyncAccount,
        _task_id: Uuid,
        rows: &[Record<Order>],
    ) -> Result<Stored, DbError> {
        self.with(account.id, |s| {
            Stored::changed(upsert_by_id(&mut s.orders, rows))
        })
    }

    async fn mark_removed(
        &self,
        account_id: Uuid,
        task_id: Uuid,
        gone: Gone<'_>,
    ) -> Result<u64, DbError> {
        // The rows of `table` whose `field` time is in `[from, to]`, but the `seen` ones.
        let unseen =
            |table: &BTreeMap<i64, serde_json::Value>, field: &str, from, to, seen: &[i64]| {
                (table.iter())
                    .filter(|(id, raw)| {
                        let at = raw[field]
                            .as_str()
                            .and_then(|t| t.parse::<DateTime<Utc>>().ok());
                        !seen.contains(id) && at.is_some_and(|t| from <= t && t <= to)
                    })
                    .map(|(id, _)| *id)
                    .collect::<Vec<i64>>()
            };
        self.with(account_id, |s| {
            let (entity, table, picked) = match gone {
                Gone::Transactions { from, to, seen } => {
                    let picked = unseen(&s.transactions, "executed-at", from, to, seen);
                    ("transactions", &mut s.transactions, picked)
                }
                Gone::Orders { from, to, seen } => {
                    let picked = unseen(&s.orders, "received-at", from, to, seen);
                    ("orders", &mut s.orders, picked)
                }
                Gone::OrdersById(ids) => ("orders", &mut s.orders, ids.to_vec()),
                Gone::Balances { .. } => return 0,
                Gone::ComplexOrders { seen } => {
                    let unseen = (s.complex_orders.keys())
                        .filter(|id| !seen.contains(id))
                        .copied()
                        .collect();
                    ("complex_orders", &mut s.complex_orders, unseen)
                }
            };
            let mut removed = 0;
            for id in picked {
                if table.remove(&id).is_some() {
                    s.removed.insert((entity, id), task_id);
                    removed += 1;
                }
            }
            removed
        })
    }

    async fn working_orders(
        &self,
        account_id: Uuid,
        before: DateTime<Utc>,
    ) -> Result<Vec<i64>, DbError> {
        const TERMINAL: [&str; 6] = [
            "Filled",
            "Cancelled",
            "Rejected",
            "Expired",
            "Removed",
            "Partially Removed",
        ];
        self.with(account_id, |s| {
            (s.orders.iter())
                .filter(|(_, raw)| {
                    raw["status"]
                        .as_str()
                        .is_some_and(|st| !TERMINAL.contains(&st))
                })
                .filter(|(_, raw)| {
                    (raw["received-at"].as_str())
                        .and_then(|t| t.parse::<DateTime<Utc>>().ok())
                        .is_none_or(|at| at < before)
                })
                .map(|(id, _)| *id)
                .collect()
        })
    }

    async fn quarantine(
        &self,
        account_id: Uuid,
        entity: &'static str,
        rows: &[Quarantined],
    ) -> Result<(), DbError> {
        self.with(account_id, |s| {
            for row in rows {
                let key = row
                    .broker_id
                    .map_or_else(|| row.raw_text(), |id| id.to_string());
                s.quarantined
                    .insert((entity, key), (row.clone(), Utc::now()));
            }
        })
    }

    async fn release(
        &self,
        account_id: Uuid,
        entity: &'static str,
        broker_ids: &[i64],
    ) -> Result<(), DbError> {
        self.with(account_id, |s| {
            s.quarantined.retain(|(e, _), (row, _)| {
                *e != entity || row.broker_id.is_none_or(|id| !broker_ids.contains(&id))
            });
        })
    }

    async fn forget_unseen(
        &self,
        account_id: Uuid,
        seen_since: DateTime<Utc>,
        full: bool,
    ) -> Result<(), DbError> {
        self.with(account_id, |s| {
            s.quarantined.retain(|(entity, _), (_, seen)| {
                *seen >= seen_since || !(full || ["positions", "balances"].contains(entity))
            });
        })
    }
}

/// How a paged endpoint of [`FakeBroker`] narrows its rows to a query, as the broker does.
#[derive(Debug, Clone, Copy)]
pub enum RowFilter {
    Unfiltered,
    /// `start-at` ≤ the row's instant field < `end-at`.
    Instant(&'static str),
    /// `start-date` ≤ the row's date field ≤ `end-date`, and the row's `currency` when asked.
    Date(&'static str),
}

#[derive(Debug, Clone)]
enum Route {
    Body(serde_json::Value),
    Rows {
        rows: Vec<serde_json::Value>,
        filter: RowFilter,
    },
}

/// One GET the fake broker answered (or refused).
#[derive(Debug, Clone)]
pub struct BrokerCall {
    pub path: String,
    pub query: Vec<(String, String)>,
}

impl BrokerCall {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
struct BrokerState {
    routes: HashMap<String, Route>,
    failures: HashMap<String, VecDeque<BrokerError>>,
    calls: Vec<BrokerCall>,
    issued: HashSet<String>,
    refreshes: u32,
    refresh_failures: VecDeque<BrokerError>,
    /// The market-data feed: the events it sends, by symbol, and the reads it saw.
    greeks: HashMap<String, Greeks>,
    greeks_failures: VecDeque<BrokerError>,
    greeks_reads: Vec<Vec<String>>,
}

/// The broker's HTTP API in memory: bodies and row sets by path, paginated with `per-page` and
/// `page-offset` and filtered by window as the broker does, access tokens it issued and
/// honours, injected failures, and a record of every read. The wire format, retries and
/// status mapping are the HTTP client's, proven against the simulator.
#[derive(Debug, Default)]
pub struct FakeBroker {
    state: Mutex<BrokerState>,
}

impl FakeBroker {
    /// `path` answers `body` as it is.
    pub fn serve(&self, path: &str, body: serde_json::Value) {
        locked(&self.state)
            .routes
            .insert(path.to_owned(), Route::Body(body));
    }

    /// `path` answers pages of `rows` (in the order given) narrowed by `filter`.
    pub fn serve_rows(&self, path: &str, rows: Vec<serde_json::Value>, filter: RowFilter) {
        locked(&self.state)
            .routes
            .insert(path.to_owned(), Route::Rows { rows, filter });
    }

    /// The next token refresh fails with `error` (queued, like [`FakeBroker::fail_next`]).
    pub fn fail_next_refresh(&self, error: BrokerError) {
        locked(&self.state).refresh_failures.push_back(error);
    }

    /// The next read of `path` fails with `error` (queued: several calls queue several).
    pub fn fail_next(&self, path: &str, error: BrokerError) {
        locked(&self.state)
            .failures
            .entry(path.to_owned())
            .or_default()
            .push_back(error);
    }

    /// The market-data feed sends `events` (one per symbol) to the reads that ask for them.
    pub fn serve_greeks(&self, events: Vec<Greeks>) {
        let mut state = locked(&self.state);
        state.greeks = events.into_iter().map(|g| (g.symbol.clone(), g)).collect();
    }

    /// The next read of the market-data feed fails with `error`.
    pub fn fail_next_greeks(&self, error: BrokerError) {
        locked(&self.state).greeks_failures.push_back(error);
    }

    /// The symbols each read of the market-data feed asked for.
    pub fn greeks_reads(&self) -> Vec<Vec<String>> {
        locked(&self.state).greeks_reads.clone()
    }

    /// Every access token issued so far stops working, as after the broker rotates them.
    pub fn expire_tokens(&self) {
        locked(&self.state).issued.clear();
    }

    pub fn calls(&self) -> Vec<BrokerCall> {
        locked(&self.state).calls.clone()
    }

    pub fn calls_to(&self, path: &str) -> Vec<BrokerCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.path == path)
            .collect()
    }

    pub fn refreshes(&self) -> u32 {
        locked(&self.state).refreshes
    }

    fn issue(&self) -> AccessToken {
        let mut state = locked(&self.state);
        state.refreshes += 1;
        let token = format!("fake-access-{}", state.refreshes);
        state.issued.insert(token.clone());
        AccessToken {
            token: SecretString::from(token),
            expires_at: Utc::now() + TimeDelta::minutes(15),
        }
    }
}

fn query_param<'q>(query: &'q [(String, String)], key: &str) -> Option<&'q str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Whether `row` falls inside the query's window.
fn row_matches(row: &serde_json::Value, filter: RowFilter, query: &[(String, String)]) -> bool {
    let field = |name: &str| row.get(name).and_then(serde_json::Value::as_str);
    match filter {
        RowFilter::Unfiltered => true,
        RowFilter::Instant(name) => {
            let at = |key| query_param(query, key).and_then(|v| v.parse::<DateTime<Utc>>().ok());
            let Some(value) = field(name).and_then(|v| v.parse::<DateTime<Utc>>().ok()) else {
                return true;
            };
            at("start-at").is_none_or(|start| start <= value)
                && at("end-at").is_none_or(|end| value < end)
        }
        RowFilter::Date(name) => {
            let on = |key| query_param(query, key).and_then(|v| v.parse::<NaiveDate>().ok());
            let Some(value) = field(name).and_then(|v| v.parse::<NaiveDate>().ok()) else {
                return true;
            };
            on("start-date").is_none_or(|start| start <= value)
                && on("end-date").is_none_or(|end| value <= end)
                && query_param(query, "currency").is_none_or(|c| field("currency") == Some(c))
        }
    }
}

/// One page of `rows` as the broker sends it: `data.items` and `pagination`.
fn page_of(rows: Vec<&serde_json::Value>, query: &[(String, String)]) -> serde_json::Value {
    let number = |key, default| {
        query_param(query, key)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(default)
    };
    let per_page = number("per-page", 250).max(1);
    let offset = number("page-offset", 0);
    let total = rows.len();
    let items: Vec<_> = rows
        .into_iter()
        .skip(offset * per_page)
        .take(per_page)
        .collect();
    serde_json::json!({
        "data": { "items": items },
        "pagination": {
            "per-page": per_page,
            "page-offset": offset,
            "item-offset": offset * per_page,
            "total-items": total,
            "total-pages": total.div_ceil(per_page),
            "current-item-count": items.len(),
        },
    })
}

impl Broker for FakeBroker {
    async fn greeks(
        &self,
        _feed: &QuoteFeed,
        symbols: &[String],
        _wait: std::time::Duration,
    ) -> Result<FeedRead, BrokerError> {
        let mut state = locked(&self.state);
        state.greeks_reads.push(symbols.to_vec());
        if let Some(error) = state.greeks_failures.pop_front() {
            return Err(error);
        }
        let events: Vec<Greeks> = (symbols.iter())
            .filter_map(|s| state.greeks.get(s).cloned())
            .collect();
        let stopped = (events.len() < symbols.len()).then(|| "the time ran out".to_owned());
        Ok(FeedRead { events, stopped })
    }

    async fn refresh(&self, _grant: &Grant) -> Result<AccessToken, BrokerError> {
        if let Some(error) = locked(&self.state).refresh_failures.pop_front() {
            return Err(error);
        }
        Ok(self.issue())
    }

    async fn exchange_code(
        &self,
        _environment: Environment,
        _client_id: &str,
        _client_secret: &SecretString,
        code: &SecretString,
        _redirect_uri: &str,
        _code_verifier: Option<&SecretString>,
    ) -> Result<CodeExchange, BrokerError> {
        Ok(CodeExchange {
            refresh_token: SecretString::from(format!("refresh-for-{}", code.expose_secret())),
            access: self.issue(),
        })
    }

    /// One attempt per call: a failure planted for a path is what the sync sees.
    fn retry_policy(&self) -> &crate::tastytrade::RetryPolicy {
        static ONCE: std::sync::LazyLock<crate::tastytrade::RetryPolicy> =
            std::sync::LazyLock::new(|| crate::tastytrade::RetryPolicy {
                max_attempts: 1,
                ..crate::tastytrade::RetryPolicy::default()
            });
        &ONCE
    }

    async fn get(
        &self,
        _environment: Environment,
        path: &str,
        query: &[(String, String)],
        token: &AccessToken,
    ) -> Result<bytes::Bytes, BrokerError> {
        let mut state = locked(&self.state);
        state.calls.push(BrokerCall {
            path: path.to_owned(),
            query: query.to_vec(),
        });
        if !state.issued.contains(token.token.expose_secret()) {
            return Err(BrokerError::AuthExpired { code: None });
        }
        if let Some(error) = state.failures.get_mut(path).and_then(VecDeque::pop_front) {
            return Err(error);
        }
        let body = match state.routes.get(path) {
            Some(Route::Body(body)) => body.clone(),
            Some(Route::Rows { rows, filter }) => {
                let matching = rows
                    .iter()
                    .filter(|r| row_matches(r, *filter, query))
                    .collect();
                page_of(matching, query)
            }
            None => return Err(BrokerError::NotFound { code: None }),
        };
        Ok(body.to_string().into())
    }
}
