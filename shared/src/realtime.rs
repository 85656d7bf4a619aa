//! Near-real-time: the account streamer, one shard of grants per invocation.
//!
//! Lambda runs for at most 15 minutes, so a shard is served by a chain of invocations: the
//! schedule invokes every shard each minute; a DynamoDB lease says who serves it and until
//! when. An invocation that finds the lease held with time to spare exits at once; one that
//! finds it near its end connects every grant first and only then takes the lease over, so the
//! old holder (which checks its lease every few seconds) lets go after its successor is live.
//! The short overlap is harmless: every write is an idempotent upsert.
//!
//! Per grant: connect (a fresh access token), queue a `realtime` sync of its accounts (nothing
//! missed while away is replayed: the gap is healed over REST; only a live hand-over, whose old
//! socket stayed open until the new one was, has no gap), then store each notification
//! as the sync stores the same object (`Order` with its legs and fills, `AccountBalance`,
//! `CurrentPosition`), and, because transactions are never pushed, queue one `realtime` sync
//! per account after a burst of order notifications settles. Heartbeats carry a token
//! refreshed before it expires, so the socket survives the 15-minute access tokens; a refused
//! heartbeat or a dropped socket reconnects with back-off (and heals the gap again).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use futures_util::future::join_all;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use uuid::Uuid;

use crate::config::{ConfigError, Env};
use crate::domain::accounts::{AccountStatus, BalanceTarget, SyncAccount};
use crate::domain::events::Event;
use crate::domain::tasks::{NewTask, TaskKind};
use crate::iam::Permissions;
use crate::ports::{
    AccountRepo, AccountStreams, Actions, Broker, EventBus, ShardHolder, ShardLeases,
    StreamerShards, SyncQueue, SyncStore, TaskCreator, TaskError, TaskReader, TaskUpdater,
    TokenOpener,
};
use crate::schedule::{ScheduleError, queue_tasks};
use crate::secrets::OAuthClient;
use crate::tastytrade::streamer::{Frame, Notification, Pushed};
use crate::tastytrade::{AccessToken, BrokerError, Session};

#[derive(Debug, Clone)]
pub struct StreamerSettings {
    /// Grants one shard serves at most (`STREAMER_GRANTS_PER_SHARD`, default 500: Lambda gives
    /// a process 1,024 file descriptors and each grant holds a socket). The shard count follows
    /// from the grants linked, ⌈grants / this⌉, at each invocation.
    pub grants_per_shard: u32,
    /// The shards the schedule invokes, `{"shard": 0}` to `{"shard": max_shards - 1}`
    /// (`STREAMER_MAX_SHARDS`, default 8, the template's schedules); a shard beyond the count
    /// the grants need exits at once.
    pub max_shards: u32,
    /// The broker drops a socket silent for about a minute; the SDKs beat every 15–20 s.
    pub heartbeat_every: Duration,
    /// A burst of order notifications within this queues one transactions sync
    /// (`STREAMER_DEBOUNCE_MS`, default 1500).
    pub debounce: Duration,
    /// How often the holder renews its lease (and so learns whether it is still its own).
    pub lease_check_every: Duration,
    /// How long a renewal promises the holder is alive (`STREAMER_ALIVE_SECONDS`, default
    /// 60): a holder that died is replaced this long after its last renewal.
    pub alive_for: Duration,
    /// A lease ending within this is taken over by the next invocation (more than the
    /// schedule's minute, so a successor always arrives before the holder stops).
    pub takeover_within: Duration,
    /// Stop this long before the invocation's deadline.
    pub reserve: Duration,
    /// How long a successor waits for its grants' first connects before taking over.
    pub connect_wait: Duration,
    /// Grants opening or connecting at once (`STREAMER_CONNECT_CONCURRENCY`, default 32): a
    /// shard of a thousand grants does not ask the broker and KMS for a thousand tokens at the
    /// same moment.
    pub connect_concurrency: usize,
    /// The first wait before a reconnect; it doubles up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for StreamerSettings {
    fn default() -> Self {
        Self {
            grants_per_shard: 500,
            max_shards: 8,
            heartbeat_every: Duration::from_secs(15),
            debounce: Duration::from_millis(1500),
            lease_check_every: Duration::from_secs(5),
            alive_for: Duration::from_secs(60),
            takeover_within: Duration::from_secs(90),
            reserve: Duration::from_secs(15),
            connect_wait: Duration::from_secs(20),
            connect_concurrency: 32,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl StreamerSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let at_least_one = |name: &'static str, default: u32| -> Result<u32, ConfigError> {
            match env.parsed_or(name, default)? {
                0 => Err(ConfigError::Invalid {
                    name,
                    reason: "must be at least 1".into(),
                }),
                n => Ok(n),
            }
        };
        Ok(Self {
            grants_per_shard: at_least_one("STREAMER_GRANTS_PER_SHARD", defaults.grants_per_shard)?,
            max_shards: at_least_one("STREAMER_MAX_SHARDS", defaults.max_shards)?,
            debounce: Duration::from_millis(env.parsed_or("STREAMER_DEBOUNCE_MS", 1500u64)?),
            alive_for: Duration::from_secs(env.parsed_or("STREAMER_ALIVE_SECONDS", 60u64)?),
            connect_concurrency: env.parsed_or("STREAMER_CONNECT_CONCURRENCY", 32usize)?,
            ..defaults
        })
    }
}

/// The task ports the streamer uses: the shard lease, and the realtime syncs it queues.
pub trait StreamerTasks: ShardLeases + TaskCreator + TaskReader + TaskUpdater {}
impl<T: ShardLeases + TaskCreator + TaskReader + TaskUpdater> StreamerTasks for T {}

/// What the streamer needs, built once per cold start.
#[derive(Debug)]
pub struct StreamerDeps<S, C, A, T, Q, B, E> {
    pub store: S,
    pub cipher: C,
    pub accounts: A,
    pub tasks: T,
    pub queue: Q,
    pub broker: B,
    /// The deployment's OAuth client, for grants linked through the authorization-code flow.
    pub oauth_client: Option<OAuthClient>,
    /// Where each stored notification is announced.
    pub events: E,
    pub settings: StreamerSettings,
}

impl<S, C, A, T, Q, B, E> Permissions for StreamerDeps<S, C, A, T, Q, B, E>
where
    S: SyncStore + StreamerShards,
    C: TokenOpener,
    A: AccountRepo,
    T: StreamerTasks,
    Q: SyncQueue,
    B: Broker + AccountStreams,
    E: EventBus,
{
    fn held() -> Vec<Actions> {
        vec![
            <S as SyncStore>::ACTIONS,
            <S as StreamerShards>::ACTIONS,
            crate::secrets::SECRET_ACTIONS,
            C::ACTIONS,
            A::ACTIONS,
            <T as ShardLeases>::ACTIONS,
            <T as TaskCreator>::ACTIONS,
            <T as TaskReader>::ACTIONS,
            <T as TaskUpdater>::ACTIONS,
            Q::ACTIONS,
            E::ACTIONS,
        ]
    }
}

/// The schedule's event: which shard this invocation serves.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
pub struct ShardEvent {
    pub shard: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamerError {
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Tasks(#[from] TaskError),
    #[error("shard {shard} is not one of the {shards} the schedule invokes")]
    NoSuchShard { shard: u32, shards: u32 },
}

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Another invocation holds the shard with time to spare.
    HeldElsewhere,
    /// Served until the invocation's time was up.
    UntilDeadline,
    /// A successor took the lease over.
    HandedOver,
    /// The grants linked fit in fewer shards than this one's number.
    NotNeeded,
}

/// How many shards `grants` need, `per_shard` to a shard, within the `max` the schedule
/// invokes (past that, shards hold more than `per_shard`; the invocation says so).
pub fn shards_for(grants: u64, per_shard: u32, max: u32) -> u32 {
    let needed = grants.div_ceil(u64::from(per_shard.max(1))).max(1);
    u32::try_from(needed).unwrap_or(u32::MAX).min(max.max(1))
}

/// What one invocation did.
#[derive(Debug, Clone)]
pub struct ShardReport {
    pub shard: u32,
    pub served: Served,
    pub grants: usize,
    pub connects: u64,
    pub notifications: u64,
    pub rows_written: u64,
    pub syncs_queued: u64,
}

/// Counters every grant's loop adds to.
#[derive(Debug, Default)]
struct Tally {
    /// Grants that tried to connect at least once, and those that succeeded.
    attempted: AtomicU64,
    connected_grants: AtomicU64,
    connects: AtomicU64,
    notifications: AtomicU64,
    rows_written: AtomicU64,
    syncs_queued: AtomicU64,
}

impl Tally {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl<S, C, A, T, Q, B, E> StreamerDeps<S, C, A, T, Q, B, E>
where
    S: SyncStore + StreamerShards,
    C: TokenOpener,
    A: AccountRepo,
    T: StreamerTasks,
    Q: SyncQueue,
    B: Broker + AccountStreams,
    E: EventBus,
{
    /// Serves `shard` until `deadline` (the invocation's), or until a successor takes over.
    pub async fn run_shard(
        &self,
        shard: u32,
        deadline: std::time::Instant,
    ) -> Result<ShardReport, StreamerError> {
        let settings = &self.settings;
        if shard >= settings.max_shards {
            return Err(StreamerError::NoSuchShard {
                shard,
                shards: settings.max_shards,
            });
        }
        let deadline = Instant::from_std(deadline);
        let stop_at = deadline.checked_sub(settings.reserve).unwrap_or(deadline);
        let left = chrono::TimeDelta::from_std(stop_at.saturating_duration_since(Instant::now()))
            .unwrap_or_default();
        let me = ShardHolder {
            holder: Uuid::new_v4(),
            until: Utc::now() + left,
            alive_until: Utc::now() + span(settings.alive_for).min(left),
        };
        let mut report = ShardReport {
            shard,
            served: Served::HeldElsewhere,
            grants: 0,
            connects: 0,
            notifications: 0,
            rows_written: 0,
            syncs_queued: 0,
        };
        let grants = self.store.grant_count().await?;
        let shards = shards_for(grants, settings.grants_per_shard, settings.max_shards);
        if grants > u64::from(shards) * u64::from(settings.grants_per_shard) {
            tracing::error!(
                grants,
                shards,
                "more grants than the scheduled shards hold at their size; add schedules and raise STREAMER_MAX_SHARDS"
            );
        }
        if shard >= shards {
            report.served = Served::NotNeeded;
            return Ok(report);
        }
        let seen = self.tasks.holder(shard).await?;
        let now = Utc::now();
        // `Some`: a live lease near its end, taken over once our grants are connected.
        let successor_of = match seen {
            Some(held)
                if held.alive_until > now && held.until > now + span(settings.takeover_within) =>
            {
                tracing::info!(shard, until = %held.until, "shard held elsewhere");
                return Ok(report);
            }
            Some(held) if held.alive_until > now && held.until > now => Some(held),
            _ => {
                if !self.tasks.take(shard, me, None).await? {
                    tracing::info!(shard, "another invocation took the shard first");
                    return Ok(report);
                }
                None
            }
        };
        let accounts = self.store.shard_accounts(shard, shards).await?;
        let grants = by_grant(accounts);
        report.grants = grants.len();
        tracing::info!(
            shard,
            grants = grants.len(),
            takeover = successor_of.is_some(),
            "serving shard"
        );
        let (stop, stopped) = watch::channel(false);
        let tally = Tally::default();
        let connecting = Semaphore::new(settings.connect_concurrency.max(1));
        // A live hand-over leaves no gap: the old holder's sockets stay open until ours are.
        let heal_first = successor_of.is_none();
        let serving = join_all(grants.into_iter().map(|accounts| {
            let grant = (accounts, heal_first);
            self.serve_grant(grant, stopped.clone(), (&tally, &connecting), me.holder)
        }));
        let watching = self.watch_lease(shard, (me, successor_of), stop_at, &tally, report.grants);
        let ((), served) = tokio::join!(
            async {
                serving.await;
            },
            async {
                let served = watching.await;
                let _ = stop.send(true);
                served
            }
        );
        report.served = served?;
        if report.served == Served::UntilDeadline
            && let Err(e) = self.tasks.release(shard, me.holder).await
        {
            tracing::warn!(shard, error = %e, "lease not released; it expires on its own");
        }
        let connected = tally.connected_grants.load(Ordering::Relaxed);
        crate::metrics::grants_unconnected(shard, (report.grants as u64).saturating_sub(connected));
        report.connects = tally.connects.load(Ordering::Relaxed);
        report.notifications = tally.notifications.load(Ordering::Relaxed);
        report.rows_written = tally.rows_written.load(Ordering::Relaxed);
        report.syncs_queued = tally.syncs_queued.load(Ordering::Relaxed);
        tracing::info!(
            shard,
            served = ?report.served,
            connects = report.connects,
            notifications = report.notifications,
            rows_written = report.rows_written,
            syncs_queued = report.syncs_queued,
            "shard done"
        );
        Ok(report)
    }

    /// Holds the lease until `stop_at`: a successor takes it over once its grants have had their
    /// first connect; a holder checks every few seconds that the lease is still its own.
    async fn watch_lease(
        &self,
        shard: u32,
        (me, successor_of): (ShardHolder, Option<ShardHolder>),
        stop_at: Instant,
        tally: &Tally,
        grants: usize,
    ) -> Result<Served, StreamerError> {
        let settings = &self.settings;
        let mut me = me;
        if let Some(old) = successor_of {
            let ready_by = Instant::now() + settings.connect_wait;
            while (tally.attempted.load(Ordering::Relaxed) as usize) < grants
                && Instant::now() < ready_by
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if !self.tasks.take(shard, me, Some(old)).await? {
                tracing::info!(shard, "another invocation took the shard over first");
                return Ok(Served::HandedOver);
            }
            tracing::info!(shard, previous = %old.holder, "took the shard over");
        }
        loop {
            let next = (Instant::now() + settings.lease_check_every).min(stop_at);
            tokio::time::sleep_until(next).await;
            if Instant::now() >= stop_at {
                return Ok(Served::UntilDeadline);
            }
            let renewed = ShardHolder {
                alive_until: (Utc::now() + span(settings.alive_for)).min(me.until),
                ..me
            };
            match self.tasks.take(shard, renewed, Some(me)).await {
                Ok(true) => me = renewed,
                Ok(false) => return Ok(Served::HandedOver),
                // A failed renewal is not a lost lease: keep serving and try again.
                Err(e) => tracing::warn!(shard, error = %e, "lease not renewed"),
            }
        }
    }

    /// The grant's socket, kept connected until `stopped`.
    async fn serve_grant(
        &self,
        (accounts, mut heal): (Vec<SyncAccount>, bool),
        mut stopped: watch::Receiver<bool>,
        (tally, connecting): (&Tally, &Semaphore),
        writer: Uuid,
    ) {
        let first = &accounts[0];
        // Opening the grant and connecting take their turn with the shard's other grants;
        // listening does not.
        let mut turn = connecting.acquire().await.ok();
        let grant = match crate::sync::grant_of(&self.cipher, self.oauth_client.as_ref(), first)
            .await
        {
            Ok(grant) => grant,
            Err(e) => {
                Tally::add(&tally.attempted, 1);
                tracing::warn!(credential_id = %first.credential_id, error = %e, "grant not opened; not streamed");
                return;
            }
        };
        let session = self.broker.session(grant, None);
        let numbers: Vec<String> = accounts.iter().map(|a| a.account_number.clone()).collect();
        let settings = &self.settings;
        let mut backoff = settings.backoff;
        let mut first_attempt = true;
        let mut counted = false;
        while !*stopped.borrow() {
            if turn.is_none() {
                turn = connecting.acquire().await.ok();
            }
            let connected = self.connect(&session, &numbers).await;
            if std::mem::take(&mut first_attempt) {
                Tally::add(&tally.attempted, 1);
            }
            match connected {
                Ok(stream) => {
                    if tally_connected_once(&mut counted) {
                        Tally::add(&tally.connected_grants, 1);
                    }
                    Tally::add(&tally.connects, 1);
                    backoff = settings.backoff;
                    // Nothing pushed while we were away comes again: read it over REST.
                    if std::mem::replace(&mut heal, true) {
                        let all: Vec<&SyncAccount> = accounts.iter().collect();
                        self.queue_syncs(&all, tally).await;
                    }
                    drop(turn.take());
                    let ended =
                        self.listen(&accounts, &session, stream, &mut stopped, tally, writer);
                    if let Err(e) = ended.await {
                        tracing::info!(credential_id = %first.credential_id, error = %e, "streamer session ended; reconnecting");
                    }
                }
                Err(
                    e @ (BrokerError::GrantRevoked { .. } | BrokerError::ClientRejected { .. }),
                ) => {
                    let reason = e.to_string();
                    for account in &accounts {
                        let failed = self.store.mark_failed(
                            account.id,
                            Some(account.credential_id),
                            AccountStatus::NeedsReauth,
                            &reason,
                        );
                        if let Err(e) = failed.await {
                            tracing::warn!(account_id = %account.id, error = %e, "needs-reauth not recorded");
                        }
                    }
                    crate::metrics::reauth_required();
                    return;
                }
                Err(e) => {
                    tracing::warn!(credential_id = %first.credential_id, error = %e, "streamer not connected");
                }
            }
            // The back-off is no one's turn.
            drop(turn.take());
            tokio::select! {
                _ = stopped.changed() => {}
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(settings.max_backoff);
        }
    }

    /// A token, then the socket; a token the streamer refuses is replaced once.
    async fn connect(
        &self,
        session: &Session<'_, B>,
        numbers: &[String],
    ) -> Result<crate::tastytrade::streamer::AccountStream, BrokerError> {
        let token = session.access_token().await?;
        let environment = session.environment();
        match self
            .broker
            .account_stream(environment, numbers, &token)
            .await
        {
            Err(BrokerError::AuthExpired { .. }) => {
                session.forget(&token).await;
                let token = session.access_token().await?;
                self.broker
                    .account_stream(environment, numbers, &token)
                    .await
            }
            other => other,
        }
    }

    /// One connected session: notifications stored, heartbeats with a fresh token, order bursts
    /// turned into syncs. Returns when the socket ends (an error says why) or on `stopped`.
    async fn listen(
        &self,
        accounts: &[SyncAccount],
        session: &Session<'_, B>,
        mut stream: crate::tastytrade::streamer::AccountStream,
        stopped: &mut watch::Receiver<bool>,
        tally: &Tally,
        writer: Uuid,
    ) -> Result<(), BrokerError> {
        let settings = &self.settings;
        let every = settings.heartbeat_every;
        let mut heartbeat = tokio::time::interval_at(Instant::now() + every, every);
        // Accounts with order notifications whose transactions are still to be read, by when.
        let mut pending: HashMap<Uuid, Instant> = HashMap::new();
        let result = loop {
            let due = pending.values().min().copied();
            let flush_at = due.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = stopped.changed() => break Ok(()),
                _ = heartbeat.tick() => {
                    // A token near its end is replaced here, so the session never runs on a dead
                    // one (the broker would silently stop delivering).
                    let beat = async {
                        let token: AccessToken = session.access_token().await?;
                        stream.heartbeat(&token).await
                    };
                    // Not `?`: the bursts still settling are queued on the way out.
                    if let Err(e) = beat.await {
                        break Err(e);
                    }
                }
                () = tokio::time::sleep_until(flush_at), if due.is_some() => {
                    let now = Instant::now();
                    let ready: Vec<&SyncAccount> = accounts
                        .iter()
                        .filter(|a| pending.get(&a.id).is_some_and(|at| *at <= now))
                        .collect();
                    pending.retain(|_, at| *at > now);
                    self.queue_syncs(&ready, tally).await;
                }
                frame = stream.next() => match frame {
                    None => break Err(BrokerError::transient("the account streamer closed the socket")),
                    Some(Err(e)) => break Err(e),
                    Some(Ok(Frame::Ack { .. })) => {}
                    Some(Ok(Frame::Refused { action, message })) => {
                        if action == "heartbeat" {
                            break Err(BrokerError::AuthExpired { code: Some(message) });
                        }
                        tracing::warn!(action, message, "the account streamer refused a message");
                    }
                    Some(Ok(Frame::Notifications(items))) => {
                        for pushed in items {
                            let settles = Instant::now() + settings.debounce;
                            if let Some(account) = self.store(accounts, pushed, tally, writer).await {
                                pending.entry(account).or_insert(settles);
                            }
                        }
                    }
                }
            }
        };
        // Leaving: the bursts still settling are queued now, so nothing waits for the hourly sync.
        let left: Vec<&SyncAccount> = accounts
            .iter()
            .filter(|a| pending.contains_key(&a.id))
            .collect();
        self.queue_syncs(&left, tally).await;
        stream.close().await;
        result
    }

    /// Stores one notification as the sync stores the same object. Returns the account whose
    /// transactions are now to be read (after an order or a transfer), if any.
    async fn store(
        &self,
        accounts: &[SyncAccount],
        pushed: Pushed,
        tally: &Tally,
        writer: Uuid,
    ) -> Option<Uuid> {
        Tally::add(&tally.notifications, 1);
        let Pushed {
            notification,
            sent_at,
        } = pushed;
        let number = match &notification {
            Notification::Order(r) => r.item.account_number.clone(),
            Notification::Balance(r) => r.item.account_number.clone(),
            Notification::Position(r) => r.item.account_number.clone(),
            Notification::Unreadable { row, .. } => row.text("account-number"),
            Notification::Other(_) => None,
        };
        let account = accounts
            .iter()
            .find(|a| number.as_deref() == Some(a.account_number.as_str()));
        let kind = notification_kind(&notification);
        let store = &self.store;
        // An account unlinked since this invocation loaded it (or linked again through another
        // grant) takes nothing more from this socket: its data may have gone with the link.
        if let Some(account) = account
            && let Ok(false) = store.still_linked(account.id, account.credential_id).await
        {
            tracing::info!(account_id = %account.id, kind, "account no longer linked through this grant; notification dropped");
            return None;
        }
        let (written, reread, event) = match (notification, account) {
            (Notification::Other(kind), _) => {
                // A transfer posts transactions, which are only read over REST.
                let reread = kind == "ExternalTransaction";
                return reread.then(|| accounts.first().map(|a| a.id)).flatten();
            }
            (_, None) => {
                tracing::warn!(
                    kind,
                    "notification for an account this grant does not serve"
                );
                return None;
            }
            (Notification::Order(row), Some(account)) => {
                let event = Event::OrderUpdated {
                    account_id: account.id,
                    user_id: account.user_id.clone(),
                    order_id: row.item.id,
                    status: row.item.status.clone(),
                };
                let stored = store.upsert_orders(account, writer, &[row]).await;
                (stored.map(|s| s.changed), Some(account.id), Some(event))
            }
            (Notification::Balance(row), Some(account)) => {
                let event = Event::BalanceUpdated {
                    account_id: account.id,
                    user_id: account.user_id.clone(),
                    currency: row.item.currency.clone(),
                };
                let stored = store
                    .upsert_balances(account, &[row], BalanceTarget::Current)
                    .await;
                (stored.map(|s| s.changed), None, Some(event))
            }
            (Notification::Position(row), Some(account)) => {
                let closed = row.item.signed_quantity().is_none_or(|q| q.is_zero());
                let event = Event::PositionsChanged {
                    account_id: account.id,
                    user_id: account.user_id.clone(),
                    symbol: row.item.symbol.clone(),
                    closed,
                };
                let stored = if closed {
                    store
                        .update_positions(account, &[], &[row.item.symbol])
                        .await
                } else {
                    store.update_positions(account, &[row], &[]).await
                };
                (stored.map(|s| s.changed), None, Some(event))
            }
            (Notification::Unreadable { kind, row }, Some(account)) => (
                store.quarantine(account.id, kind, &[row]).await.map(|()| 0),
                None,
                None,
            ),
        };
        match written {
            Ok(rows) => {
                Tally::add(&tally.rows_written, rows);
                if let Some(sent_at) = sent_at {
                    let lag = (Utc::now() - sent_at).to_std().unwrap_or_default();
                    crate::metrics::notification_stored(kind, lag);
                }
                // Committed: now it may be announced.
                if let Some(event) = event {
                    self.events.publish(&[event]).await;
                }
            }
            // The next sync reads the same object over REST; a realtime one is queued for it.
            Err(e) => {
                tracing::warn!(kind, error = %e, "notification not stored; a sync will read it");
                return account.map(|a| a.id);
            }
        }
        reread
    }

    /// Queues a `realtime` sync of each account. A failure is logged: the hourly sync reads the
    /// same rows, so nothing is lost, only later.
    async fn queue_syncs(&self, accounts: &[&SyncAccount], tally: &Tally) {
        if accounts.is_empty() {
            return;
        }
        let now = Utc::now();
        let tasks: Vec<NewTask> = accounts
            .iter()
            .map(|a| NewTask {
                task_id: Uuid::new_v4(),
                user_id: a.user_id.clone(),
                account_id: a.id,
                kind: TaskKind::Realtime,
                created_at: now,
            })
            .collect();
        match queue_tasks((&self.accounts, &self.tasks, &self.queue), 16, &tasks).await {
            Ok(queued) => Tally::add(&tally.syncs_queued, queued.sent as u64),
            Err(e @ (ScheduleError::Db(_) | ScheduleError::Tasks(_))) => {
                tracing::warn!(error = %e, "realtime sync not queued; the hourly sync reads it");
            }
        }
    }
}

fn span(duration: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(duration).unwrap_or(chrono::TimeDelta::MAX)
}

/// The accounts of each grant together: one socket per grant.
fn by_grant(accounts: Vec<SyncAccount>) -> Vec<Vec<SyncAccount>> {
    let mut grants: Vec<Vec<SyncAccount>> = Vec::new();
    for account in accounts {
        match grants
            .last_mut()
            .filter(|g| g[0].credential_id == account.credential_id)
        {
            Some(grant) => grant.push(account),
            None => grants.push(vec![account]),
        }
    }
    grants
}

/// True the first time only.
fn tally_connected_once(counted: &mut bool) -> bool {
    !std::mem::replace(counted, true)
}

fn notification_kind(notification: &Notification) -> &'static str {
    match notification {
        Notification::Order(_) => "Order",
        Notification::Balance(_) => "AccountBalance",
        Notification::Position(_) => "CurrentPosition",
        Notification::Unreadable { .. } => "Unreadable",
        Notification::Other(_) => "Other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shards_follow_the_grants_up_to_the_scheduled_ones() {
        assert_eq!(shards_for(0, 500, 8), 1, "one shard even for no grant");
        assert_eq!(shards_for(500, 500, 8), 1);
        assert_eq!(shards_for(501, 500, 8), 2);
        assert_eq!(shards_for(3, 2, 8), 2);
        assert_eq!(
            shards_for(10_000, 500, 8),
            8,
            "never more than the schedule invokes"
        );
    }
}
