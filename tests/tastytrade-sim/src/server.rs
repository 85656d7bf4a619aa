//! The simulator's HTTP side.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration as StdDuration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Duration, NaiveDate, Timelike, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::data::{Account, Generator, Sizes};

/// Order-api version that makes `start-date`/`start-at` mandatory on order search.
const ORDER_SEARCH_NEEDS_START: &str = "20261012";

#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    pub sizes: Sizes,
    /// The last day of generated history; defaults to today.
    pub anchor: NaiveDate,
    pub token_seconds: i64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            seed: 7,
            sizes: Sizes {
                accounts: 3,
                transactions: 2_000,
                orders: 400,
                years: 3,
            },
            anchor: Utc::now().date_naive(),
            token_seconds: 900,
        }
    }
}

/// Faults applied to every broker endpoint (not to `/__sim`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// The broker's response time: each answer leaves no sooner than this after its request
    /// arrived, the simulator's own work included.
    pub latency_ms: u64,
    /// Probabilities in [0, 1].
    pub rate_429: f64,
    pub rate_5xx: f64,
    pub rate_drop: f64,
    pub rate_truncate: f64,
    /// After this many successful API requests every access token expires (0: never).
    pub expire_tokens_every: u64,
    /// The server's clock runs this many seconds ahead of the client's: a token dies this much
    /// sooner than its `expires_in` promised.
    pub clock_skew_seconds: i64,
    /// Requests whose path contains this answer `slow_ms` later (on top of `latency_ms`).
    pub slow_path: Option<String>,
    pub slow_ms: u64,
    /// A 429 carries `Retry-After` with this many seconds. The broker documents no quota
    /// headers and leaves `Retry-After` unconfirmed (reference §5); a client must honour it
    /// when it comes.
    pub retry_after_seconds: Option<u64>,
    /// The next this many API requests answer 401 although their token is valid, as the
    /// broker has done right after a refresh; each one refused counts down.
    pub unauthorized_next: u32,
    /// Success answers to requests whose path contains this carry `padded_bytes` of
    /// whitespace after their JSON: still valid, and as long as the fault makes them.
    pub padded_path: Option<String>,
    pub padded_bytes: usize,
    /// `/transactions` pages hold at most this many rows, whatever `per-page` asked (and the
    /// page count says so), as a broker that lowers its page size would.
    pub rows_per_page: Option<usize>,
    /// The token endpoint answers this `expires_in` instead of the configured one.
    pub expires_in: Option<i64>,
    /// The market-data feed's faults.
    pub dxlink: crate::dxlink::DxLinkFaults,
    /// The account streamer's faults.
    pub streamer: crate::streamer::StreamerFaults,
}

/// What a real account shows and the seeded simulator does not unless asked:
/// `POST /__sim/quirks`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Quirks {
    /// How `GET /accounts/{n}/balances` answers (`/balances/{currency}` is unchanged).
    pub balances: BalancesShape,
    /// Rows planted in the seeded data that no model or schema can take as they are.
    pub poison: Vec<Poison>,
}

/// A bad row a real account can send, each planted in one row of every account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Poison {
    /// The oldest transaction's `net-value` is not a number.
    GarbageDecimal,
    /// The second oldest transaction's `description` holds a NUL character.
    NulCharacter,
    /// The oldest order with a fill sends that fill without its `fill-id`.
    FillWithoutId,
    /// The oldest EOD snapshot says `time-of-day: Midday`.
    UnknownTimeOfDay,
    /// The second oldest EOD snapshot has no `snapshot-date`.
    SnapshotWithoutDate,
    /// The first position comes as two lots of its symbol, as the broker's non-net view lists
    /// them: twice the quantity, and the quantity again the other way.
    DuplicatePosition,
    /// The oldest net-liq bar has no `time`.
    NetLiqWithoutTime,
}

impl Quirks {
    fn poisoned(&self, poison: Poison) -> bool {
        self.poison.contains(&poison)
    }

    /// The transaction as sent: its rendered JSON, or the row a quirk spoils.
    fn transaction(
        &self,
        account: &crate::data::Account,
        tx: &crate::data::Tx,
    ) -> Box<serde_json::value::RawValue> {
        let nth = |n: usize| account.transactions.get(n).map(|t| t.id) == Some(tx.id);
        let garbage = self.poisoned(Poison::GarbageDecimal) && nth(0);
        let nul = self.poisoned(Poison::NulCharacter) && nth(1);
        if !(garbage || nul) {
            return (tx.rendered.get_or(|| tx.render(&account.number))).to_owned();
        }
        let mut row = tx.render(&account.number);
        if garbage {
            row["net-value"] = json!("12.3.4");
        }
        if nul {
            row["description"] = json!("Bought\u{0} 1 SPY");
        }
        crate::data::raw(&row)
    }

    /// The order as sent: its rendered JSON, or the row a quirk spoils.
    fn order(
        &self,
        account: &crate::data::Account,
        order: &crate::data::Order,
    ) -> Box<serde_json::value::RawValue> {
        let spoiled = self.poisoned(Poison::FillWithoutId)
            && (account.orders.iter())
                .find(|o| o.legs.iter().any(|l| !l.fills.is_empty()))
                .is_some_and(|o| o.id == order.id);
        if !spoiled {
            return (order.rendered.get_or(|| order.render(&account.number))).to_owned();
        }
        let mut row = order.render(&account.number);
        let fill = (row["legs"].as_array_mut().into_iter().flatten())
            .find_map(|leg| leg["fills"].as_array_mut()?.first_mut());
        if let Some(Value::Object(fill)) = fill {
            fill.remove("fill-id");
        }
        crate::data::raw(&row)
    }

    fn snapshot(
        &self,
        account: &crate::data::Account,
        snapshot: &crate::data::Snapshot,
        mut row: Value,
    ) -> Value {
        let nth = |n: usize| {
            account
                .snapshots
                .get(n)
                .is_some_and(|s| s.date == snapshot.date && s.currency == snapshot.currency)
        };
        if self.poisoned(Poison::UnknownTimeOfDay) && nth(0) {
            row["time-of-day"] = json!("Midday");
        }
        if let (true, true, Value::Object(fields)) =
            (self.poisoned(Poison::SnapshotWithoutDate), nth(1), &mut row)
        {
            fields.remove("snapshot-date");
        }
        row
    }

    fn net_liq(&self, account: &crate::data::Account, bar: &crate::data::NetLiqBar) -> Value {
        let mut row = bar.render();
        let oldest = account.net_liq.first().is_some_and(|b| b.time == bar.time);
        if let (true, true, Value::Object(fields)) =
            (self.poisoned(Poison::NetLiqWithoutTime), oldest, &mut row)
        {
            fields.remove("time");
        }
        row
    }

    fn positions(&self, account: &crate::data::Account, mut rows: Vec<Value>) -> Vec<Value> {
        let (true, Some(first)) = (
            self.poisoned(Poison::DuplicatePosition),
            account.positions.first(),
        ) else {
            return rows;
        };
        let magnitude = first.quantity.abs();
        let mut lot = rows[0].clone();
        rows[0]["quantity"] = json!((magnitude * Decimal::TWO).to_string());
        lot["quantity"] = json!(magnitude.to_string());
        let other = if first.quantity < Decimal::ZERO {
            "Long"
        } else {
            "Short"
        };
        lot["quantity-direction"] = json!(other);
        rows.insert(1, lot);
        rows
    }
}

/// The shapes `GET /accounts/{n}/balances` has had (reference §3.4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalancesShape {
    /// `data.items`, one per currency: the API since 2024.
    #[default]
    Items,
    /// `data` is the USD balance itself, as before 2024.
    Object,
    /// `data.items` is empty.
    Empty,
    /// 406, as a version that no longer serves the endpoint would.
    Refused,
}

/// New activity for `POST /__sim/accounts/{n}/activity`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Activity {
    /// New transactions, executed `days_back` days ago (0: now).
    pub transactions: usize,
    pub days_back: i64,
    /// Turn every estimated fee final, changing its amount.
    pub finalize_fees: bool,
    /// Reverse this many recent trades with `reverses-id` rows.
    pub reversals: usize,
    /// New orders received now (mostly filled).
    pub fills: usize,
    /// Close this many positions (they disappear from `/positions`).
    pub close_positions: usize,
    /// Fill every working GTC order as of this many days ago (0: none): orders that leave
    /// `/orders/live` on a day no sync saw.
    pub fill_working_days_back: i64,
    /// The broker stops returning this many of the latest transactions (a busted trade).
    pub withdraw_transactions: usize,
    /// The latest orders with two legs or more, this many, lose their first leg: the others
    /// move up in `legs[]`.
    pub drop_first_leg: usize,
    /// Balances in every currency but the first are closed.
    pub close_currencies: bool,
    /// Day trades made now: the trading status counts them.
    pub day_trades: i64,
    /// New OCO groups placed now, each with its two orders.
    pub complex_orders: usize,
    /// The broker stops listing this many of the oldest complex orders (their orders stay).
    pub drop_complex_orders: usize,
    /// The customer adds this many watchlists, and deletes this many of the oldest.
    pub add_watchlists: usize,
    pub delete_watchlists: usize,
    /// New net-liq bars, one a second up to now, each moving the value by $123.45.
    pub net_liq_bars: usize,
    /// Orders filled now, each with one `Trade` transaction per fill (pushed on the streamer
    /// as `Order`; the transactions only over REST, as the broker has no such notification).
    pub trades: usize,
    /// The oldest working orders, this many, are cancelled now.
    pub cancels: usize,
    /// The first currency's cash balance and net liquidating value move by this many cents.
    pub cash_change_cents: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ActivityOutcome {
    pub transactions: usize,
    pub finalized: usize,
    pub reversals: usize,
    pub fills: usize,
    pub closed_positions: usize,
    /// The working orders filled in the past, by id.
    pub filled_working: Vec<i64>,
    pub withdrawn_transactions: Vec<i64>,
    /// The orders that lost their first leg, with that leg's symbol.
    pub dropped_legs: Vec<(i64, String)>,
    pub closed_currencies: Vec<String>,
    pub net_liq_bars: usize,
    pub complex_orders: usize,
    pub dropped_complex_orders: Vec<i64>,
    pub added_watchlists: Vec<String>,
    pub deleted_watchlists: Vec<String>,
    /// The orders `trades` filled, by id, and the transactions of their fills.
    pub traded_orders: Vec<i64>,
    pub trade_transactions: Vec<i64>,
    pub cancelled_orders: Vec<i64>,
    /// The notifications pushed to the account's streamer sessions.
    pub notifications: usize,
}

/// What a script or test needs to act as a linked user.
#[derive(Debug, Clone, Serialize)]
pub struct Credentials {
    pub base_url: String,
    /// The account streamer (`ws://`).
    pub streamer_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    pub account_numbers: Vec<String>,
}

#[derive(Debug)]
struct GrantState {
    revoked: bool,
    /// How the request log names the grant (`grant-1`, ...): never its refresh token.
    label: String,
    /// The accounts the grant reaches; `None`: every account of the simulator.
    accounts: Option<Vec<String>>,
}

/// One request the broker's endpoints received, as the request log keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub at: DateTime<Utc>,
    /// When the answer left: its head, the body following.
    pub answered: DateTime<Utc>,
    /// The grant whose access token the request carried, if any.
    pub grant: Option<String>,
    pub status: u16,
}

impl Recorded {
    /// The value of the query parameter `key`, if the request sent it.
    pub fn param(&self, key: &str) -> Option<&str> {
        param(&self.query, key)
    }
}

#[derive(Debug)]
struct CodeState {
    refresh_token: String,
    client_id: String,
    redirect_uri: String,
    /// The authorize request's PKCE `S256` challenge, if it sent one (RFC 7636).
    code_challenge: Option<String>,
}

#[derive(Debug)]
struct TokenState {
    refresh_token: String,
    expires_at: DateTime<Utc>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    generator: Generator,
    /// Each account shared with the handlers serving it, which read it without the lock;
    /// changed copy-on-write.
    accounts: Vec<Arc<Account>>,
    client_id: String,
    client_secret: String,
    grants: HashMap<String, GrantState>,
    /// Each authorization code's grant and the authorize request it answered.
    codes: HashMap<String, CodeState>,
    tokens: HashMap<String, TokenState>,
    /// Every access token ever issued, expired ones included, for leak checks.
    issued_tokens: Vec<String>,
    faults: Faults,
    quirks: Quirks,
    fault_rng: fastrand::Rng,
    served: u64,
    /// Every request to the broker's endpoints, in order.
    requests: Vec<Recorded>,
    counter: u64,
    /// The customer's watchlists.
    watchlists: Vec<crate::data::Watchlist>,
    /// Where the market-data feed listens (`ws://`), and the quote tokens it takes.
    dxlink_url: String,
    dxlink_tokens: std::collections::HashSet<String>,
    /// Where the account streamer listens (`ws://`), what it pushes, and its open sessions.
    streamer_url: String,
    streamer: tokio::sync::broadcast::Sender<crate::streamer::Push>,
    streamer_sessions: usize,
    /// Per grant, its requests being answered now, the most ever at once, and the instant
    /// before which a 429's `Retry-After` asked it to send nothing.
    in_flight: HashMap<String, usize>,
    most_in_flight: HashMap<String, usize>,
    held_until: HashMap<String, (chrono::DateTime<Utc>, chrono::DateTime<Utc>)>,
    /// Requests that arrived while their grant was told to wait.
    sent_while_held: u64,
    /// Every Greeks event carries this time (the simulator's start, to the millisecond).
    greeks_time_ms: i64,
}

impl Inner {
    /// The greeks of the account's option positions, by position symbol.
    fn option_greeks(&self, account: &Account) -> Vec<(String, crate::dxlink::Greeks)> {
        let (seed, today) = (self.config.seed, self.config.anchor);
        (account.positions.iter())
            .filter_map(|p| {
                let greeks = crate::dxlink::price_position(seed, p, today, self.greeks_time_ms)?;
                Some((p.symbol.clone(), greeks))
            })
            .collect()
    }

    /// The grant behind `token` while the token is valid, unexpired and its grant unrevoked.
    fn live_grant(&self, token: &str) -> Option<&GrantState> {
        let state = self.tokens.get(token)?;
        let grant = self.grants.get(&state.refresh_token)?;
        (state.expires_at > Utc::now() && !grant.revoked).then_some(grant)
    }

    fn account(&self, number: &str) -> Result<&Arc<Account>, Reject> {
        self.accounts
            .iter()
            .find(|a| a.number == number)
            .ok_or(Reject::NotFound)
    }
}

/// The account, to change: copied first if a handler is reading it, its rows' rendered JSON
/// forgotten.
fn changing(account: &mut Arc<Account>) -> &mut Account {
    let account = Arc::make_mut(account);
    account.forget_rendered();
    account
}

/// The simulator's state, shared by its handlers.
#[derive(Debug, Clone)]
pub struct Simulator {
    inner: Arc<Mutex<Inner>>,
}

/// A running simulator: its address and its first grant.
#[derive(Debug)]
pub struct Running {
    pub simulator: Simulator,
    pub credentials: Credentials,
    pub addr: SocketAddr,
}

/// Appends `secret` to the file `TASTYSYNC_ISSUED_SECRETS` names, when it names one: every
/// simulator of a test run adds what it hands out, so that the scan after the suite knows
/// what to look for.
fn record_issued(secret: &str) {
    use std::io::Write;
    let Some(path) = std::env::var_os("TASTYSYNC_ISSUED_SECRETS") else {
        return;
    };
    // One short append per line: lines from concurrent test processes do not interleave.
    // A secret left out would make the scan pass blind, so a ledger that fails is fatal.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(format!("{secret}\n").as_bytes()))
        .expect("the issued-secrets ledger takes the secret");
}

impl Simulator {
    pub fn new(config: Config) -> Self {
        let mut generator = Generator::new(config.seed, config.anchor);
        let mut accounts = generator.accounts(&config.sizes);
        generator.complex_orders(&mut accounts);
        for account in &accounts {
            account.render_all();
        }
        let refresh_token = format!(
            "rt-{:016x}",
            config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        );
        let client_secret = format!(
            "sim-secret-{:x}",
            config.seed.wrapping_mul(31).wrapping_add(17)
        );
        record_issued(&client_secret);
        record_issued(&refresh_token);
        let inner = Inner {
            client_id: format!("sim-client-{}", config.seed),
            client_secret,
            grants: HashMap::from([(
                refresh_token,
                GrantState {
                    revoked: false,
                    label: "grant-1".into(),
                    accounts: None,
                },
            )]),
            codes: HashMap::new(),
            tokens: HashMap::new(),
            issued_tokens: Vec::new(),
            faults: Faults::default(),
            quirks: Quirks::default(),
            fault_rng: fastrand::Rng::with_seed(config.seed ^ 0xFA17),
            served: 0,
            requests: Vec::new(),
            counter: 0,
            watchlists: crate::data::Watchlist::seeded(),
            // No feed until `serve` binds one.
            dxlink_url: "ws://127.0.0.1:9".to_owned(),
            dxlink_tokens: std::collections::HashSet::new(),
            streamer_url: "ws://127.0.0.1:9".to_owned(),
            streamer: tokio::sync::broadcast::channel(4096).0,
            streamer_sessions: 0,
            in_flight: HashMap::new(),
            most_in_flight: HashMap::new(),
            held_until: HashMap::new(),
            sent_while_held: 0,
            greeks_time_ms: Utc::now().timestamp_millis(),
            generator,
            accounts: accounts.into_iter().map(Arc::new).collect(),
            config,
        };
        Self {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    /// The account and the quirks in force, for a handler to read without holding the lock:
    /// pages of one grant are served side by side, as the broker serves them.
    fn account_and_quirks(&self, number: &str) -> Result<(Arc<Account>, Quirks), Reject> {
        let inner = self.lock();
        Ok((inner.account(number)?.clone(), inner.quirks.clone()))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A handler that panicked mid-update leaves data a test would misread; keep serving
        // anyway, since the test that caused it has already failed.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Serves on a random loopback port in the current runtime.
    pub async fn spawn(config: Config) -> std::io::Result<Running> {
        Self::serve(config, "127.0.0.1:0".parse().expect("static address")).await
    }

    pub async fn serve(config: Config, addr: SocketAddr) -> std::io::Result<Running> {
        let simulator = Self::new(config);
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let feed = tokio::net::TcpListener::bind((addr.ip(), 0)).await?;
        simulator.lock().dxlink_url = format!("ws://{}", feed.local_addr()?);
        tokio::spawn(crate::dxlink::serve(feed, simulator.clone()));
        let streamer = tokio::net::TcpListener::bind((addr.ip(), 0)).await?;
        simulator.lock().streamer_url = format!("ws://{}", streamer.local_addr()?);
        tokio::spawn(crate::streamer::serve(streamer, simulator.clone()));
        let router = simulator.router();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "simulator stopped");
            }
        });
        let credentials = simulator.credentials(&format!("http://{addr}"));
        Ok(Running {
            simulator,
            credentials,
            addr,
        })
    }

    pub fn credentials(&self, base_url: &str) -> Credentials {
        let inner = self.lock();
        Credentials {
            base_url: base_url.to_owned(),
            streamer_url: inner.streamer_url.clone(),
            client_id: inner.client_id.clone(),
            client_secret: inner.client_secret.clone(),
            refresh_token: inner.grants.keys().next().cloned().unwrap_or_default(),
            account_numbers: inner.accounts.iter().map(|a| a.number.clone()).collect(),
        }
    }

    /// Every request the broker's endpoints received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Forgets the requests recorded so far, and the most each grant had in flight.
    pub fn clear_requests(&self) {
        let mut inner = self.lock();
        inner.requests.clear();
        inner.most_in_flight.clear();
        inner.sent_while_held = 0;
    }

    /// The most requests each grant (by label) had in flight at once.
    pub fn most_in_flight(&self) -> HashMap<String, usize> {
        self.lock().most_in_flight.clone()
    }

    /// How many requests arrived while a 429's `Retry-After` asked their grant to wait.
    pub fn sent_while_held(&self) -> u64 {
        self.lock().sent_while_held
    }

    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    pub fn set_quirks(&self, quirks: Quirks) {
        self.lock().quirks = quirks;
    }

    /// Every secret the simulator has handed out: the client secret, each grant's refresh
    /// token and each access token, for tests that look for leaks.
    pub fn issued_secrets(&self) -> Vec<String> {
        let inner = self.lock();
        let mut secrets = vec![inner.client_secret.clone()];
        secrets.extend(inner.grants.keys().cloned());
        secrets.extend(inner.issued_tokens.iter().cloned());
        secrets
    }

    /// The OAuth client's secret changes at the broker (a rotation): token requests with the
    /// old one get `invalid_client`. Tokens already issued keep working.
    pub fn rotate_client_secret(&self, secret: &str) {
        self.lock().client_secret = secret.to_owned();
    }

    /// Every access token issued so far expires, as after their lifetime.
    pub fn expire_access_tokens(&self) {
        self.lock().tokens.clear();
    }

    /// A new grant (its refresh token) that reaches only `account_numbers`, as another
    /// customer's grant, or one the user limited, would.
    pub fn grant_for(&self, account_numbers: &[&str]) -> String {
        let mut inner = self.lock();
        inner.counter += 1;
        let nonce = inner.fault_rng.u64(..);
        let refresh_token = format!("rt-{}-{nonce:x}", inner.counter);
        let label = format!("grant-{}", inner.grants.len() + 1);
        let accounts = Some(account_numbers.iter().map(|n| (*n).to_owned()).collect());
        let grant = GrantState {
            revoked: false,
            label,
            accounts,
        };
        inner.grants.insert(refresh_token.clone(), grant);
        record_issued(&refresh_token);
        refresh_token
    }

    /// The user revokes the grant: its refresh token and, as RFC 7009 §2.1 advises, the access
    /// tokens issued from it stop working.
    pub fn revoke(&self, refresh_token: &str) {
        let mut inner = self.lock();
        if let Some(grant) = inner.grants.get_mut(refresh_token) {
            grant.revoked = true;
            inner.tokens.retain(|_, t| t.refresh_token != refresh_token);
        }
    }

    /// The deployment's OAuth client is the one registered here (`make stack` and the web
    /// tests register the local stack's, so the code flow works against the simulator).
    pub fn register_client(&self, client_id: &str, client_secret: &str) {
        record_issued(client_secret);
        let mut inner = self.lock();
        client_id.clone_into(&mut inner.client_id);
        client_secret.clone_into(&mut inner.client_secret);
    }

    /// Adds `count` transactions executed `days_back` days ago (late postings when > 0).
    pub fn add_transactions(&self, account_number: &str, count: usize, days_back: i64) -> usize {
        let activity = Activity {
            transactions: count,
            days_back,
            ..Activity::default()
        };
        self.add_activity(account_number, &activity)
            .map_or(0, |o| o.transactions)
    }

    /// Applies new activity to an account, as the broker's books would change between syncs.
    pub fn add_activity(
        &self,
        account_number: &str,
        activity: &Activity,
    ) -> Option<ActivityOutcome> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let index = inner
            .accounts
            .iter()
            .position(|a| a.number == account_number)?;
        let at = Utc::now() - Duration::days(activity.days_back);
        let mut outcome = ActivityOutcome::default();

        for _ in 0..activity.delete_watchlists.min(inner.watchlists.len()) {
            outcome
                .deleted_watchlists
                .push(inner.watchlists.remove(0).name);
        }
        for _ in 0..activity.add_watchlists {
            inner.counter += 1;
            let name = format!("Added {}", inner.counter);
            let entries = vec![
                ("TSLA".to_owned(), "Equity"),
                ("/ESZ6".to_owned(), "Future"),
            ];
            let order_index = inner.counter as i64;
            inner.watchlists.push(crate::data::Watchlist {
                name: name.clone(),
                order_index,
                entries,
            });
            outcome.added_watchlists.push(name);
        }
        let bars = &mut changing(&mut inner.accounts[index]).net_liq;
        for _ in 0..activity.net_liq_bars {
            let last = bars.last().map(|b| (b.time, b.close()));
            let (last_time, open) = last.unwrap_or((at, crate::data::money(5_000_000)));
            let now = Utc::now().with_nanosecond(0).unwrap_or(at);
            let time = now.max(last_time + Duration::seconds(1));
            let close = open + crate::data::money(12_345);
            bars.push(crate::data::NetLiqBar::moving(time, open, close));
            outcome.net_liq_bars += 1;
        }
        if activity.day_trades > 0 {
            let status = &mut changing(&mut inner.accounts[index]).trading_status;
            status.day_trade_count += activity.day_trades;
            status.updated_at = Utc::now();
        }
        let new =
            inner
                .generator
                .transactions(at - Duration::minutes(30), at, activity.transactions);
        outcome.transactions = new.len();
        let account = changing(&mut inner.accounts[index]);
        account.transactions.extend(new);

        if activity.finalize_fees {
            // Estimated fees become final: the row keeps its id, its fees change.
            for tx in account
                .transactions
                .iter_mut()
                .filter(|t| t.is_estimated_fee)
            {
                tx.is_estimated_fee = false;
                tx.regulatory_fees = tx.regulatory_fees.map(|f| f + Decimal::new(1, 3));
                outcome.finalized += 1;
            }
        }
        for _ in 0..activity.reversals {
            let Some(target) = account
                .transactions
                .iter()
                .rev()
                .find(|t| t.reverses_id.is_none() && t.kind == "Trade")
                .cloned()
            else {
                break;
            };
            let mut reversal = target.clone();
            reversal.id = inner.generator.take_transaction_id();
            reversal.executed_at = Utc::now();
            reversal.date = reversal.executed_at.date_naive();
            reversal.value = -target.value;
            reversal.commission = None;
            reversal.clearing_fees = None;
            reversal.regulatory_fees = None;
            reversal.index_option_fees = None;
            reversal.reverses_id = Some(target.id);
            reversal.description = format!("Reversal: {}", target.description);
            account.transactions.push(reversal);
            outcome.reversals += 1;
        }
        let mut pushed: Vec<Value> = Vec::new();
        let push_order = |pushed: &mut Vec<Value>, order: &crate::data::Order| {
            pushed.push(crate::streamer::notification(
                "Order",
                order.render(account_number),
            ));
        };
        for _ in 0..activity.fills {
            let order = inner.generator.order(Utc::now(), false);
            push_order(&mut pushed, &order);
            account.orders.push(order);
            outcome.fills += 1;
        }
        for _ in 0..activity.trades {
            // A second back, so that the fills (a few hundred milliseconds after the order)
            // are not in the future of a read that follows at once.
            let (order, trades) = inner
                .generator
                .filled_order(Utc::now() - Duration::seconds(1));
            push_order(&mut pushed, &order);
            outcome.traded_orders.push(order.id);
            outcome
                .trade_transactions
                .extend(trades.iter().map(|t| t.id));
            account.orders.push(order);
            account.transactions.extend(trades);
        }
        let working = (account.orders.iter_mut())
            .filter(|o| matches!(o.status, "Live" | "Received" | "Routed"))
            .take(activity.cancels);
        for order in working {
            let now = Utc::now();
            order.status = "Cancelled";
            (order.updated_at, order.terminal_at) = (now, Some(now));
            outcome.cancelled_orders.push(order.id);
            push_order(&mut pushed, order);
        }
        if activity.cash_change_cents != 0
            && let Some(balance) = account.balances.first_mut()
        {
            let change = crate::data::money(activity.cash_change_cents);
            balance.cash_balance += change;
            balance.net_liquidating_value += change;
        }
        if activity.cash_change_cents != 0 || activity.trades > 0 {
            let today = inner.config.anchor;
            for balance in account.balances.iter().take(1) {
                let data = balance.render(account_number, today, Utc::now());
                pushed.push(crate::streamer::notification("AccountBalance", data));
            }
        }
        for _ in 0..activity.complex_orders {
            let at = Utc::now() - Duration::minutes(5);
            inner.generator.complex_order(account, "OCO", at);
            outcome.complex_orders += 1;
        }
        let dropped = activity
            .drop_complex_orders
            .min(account.complex_orders.len());
        for group in account.complex_orders.drain(..dropped) {
            outcome.dropped_complex_orders.push(group.id);
        }
        if activity.fill_working_days_back > 0 {
            let at = Utc::now() - Duration::days(activity.fill_working_days_back);
            for order in &mut account.orders {
                if order.time_in_force == "GTC"
                    && matches!(order.status, "Live" | "Received" | "Routed")
                {
                    order.status = "Filled";
                    (order.updated_at, order.terminal_at) = (at, Some(at));
                    outcome.filled_working.push(order.id);
                }
            }
        }
        for _ in 0..activity.close_positions {
            if let Some(mut closed) = account.positions.pop() {
                outcome.closed_positions += 1;
                // A closed position comes once more, with nothing left.
                closed.quantity = Decimal::ZERO;
                let data = closed.render(account_number, true, inner.config.anchor);
                pushed.push(crate::streamer::notification("CurrentPosition", data));
            }
        }
        account.transactions.sort_by_key(|t| (t.executed_at, t.id));
        for _ in 0..activity.withdraw_transactions {
            if let Some(tx) = account.transactions.pop() {
                outcome.withdrawn_transactions.push(tx.id);
            }
        }
        let trimmed = (account.orders.iter_mut().rev())
            .filter(|o| o.legs.len() >= 2)
            .take(activity.drop_first_leg);
        for order in trimmed {
            let leg = order.legs.remove(0);
            outcome.dropped_legs.push((order.id, leg.symbol));
        }
        if activity.close_currencies {
            for balance in account.balances.drain(1..) {
                outcome.closed_currencies.push(balance.currency.to_owned());
            }
        }
        for id in &outcome.filled_working {
            if let Some(order) = account.orders.iter().find(|o| o.id == *id) {
                push_order(&mut pushed, order);
            }
        }
        outcome.notifications = pushed.len();
        if !pushed.is_empty() {
            let push = crate::streamer::Push::Notify {
                account: account_number.to_owned(),
                notifications: pushed,
            };
            // Nobody listening is no error: nothing is replayed, as on the broker.
            let _ = inner.streamer.send(push);
        }
        Some(outcome)
    }

    /// Greeks events from now on carry the present time; returns it (epoch milliseconds).
    pub fn advance_greeks_time(&self) -> i64 {
        let now = Utc::now().timestamp_millis();
        self.lock().greeks_time_ms = now;
        now
    }

    /// Each new session receives what the activity API pushes from then on.
    pub fn streamer_pushes(&self) -> tokio::sync::broadcast::Receiver<crate::streamer::Push> {
        self.lock().streamer.subscribe()
    }

    pub(crate) fn streamer_sessions(&self, change: isize) {
        let mut inner = self.lock();
        inner.streamer_sessions = inner.streamer_sessions.saturating_add_signed(change);
    }

    /// How many account-streamer sessions are open.
    pub fn streamer_connections(&self) -> usize {
        self.lock().streamer_sessions
    }

    pub fn streamer_faults(&self) -> crate::streamer::StreamerFaults {
        self.lock().faults.streamer.clone()
    }

    /// Whether `token` is a live access token whose grant reaches `account_number`.
    pub fn streamer_token_reaches(&self, token: &str, account_number: &str) -> bool {
        let inner = self.lock();
        inner.live_grant(token).is_some_and(|grant| {
            (grant.accounts.as_ref()).is_none_or(|a| a.iter().any(|n| n == account_number))
        })
    }

    /// Closes every streamer session, as a broker restart or a network cut would.
    pub fn drop_streamer_sessions(&self) {
        let _ = self.lock().streamer.send(crate::streamer::Push::DropAll);
    }

    pub fn dxlink_faults(&self) -> crate::dxlink::DxLinkFaults {
        self.lock().faults.dxlink.clone()
    }

    /// Whether `token` is a quote token this simulator handed out.
    pub fn dxlink_token_valid(&self, token: &str) -> bool {
        self.lock().dxlink_tokens.contains(token)
    }

    /// The Greeks events of `symbols` (feed symbols) the feed knows: those of the option
    /// positions of every account, in the order asked.
    pub fn greeks(&self, symbols: &[&str]) -> Vec<crate::dxlink::Greeks> {
        let inner = self.lock();
        let priced: Vec<crate::dxlink::Greeks> = (inner.accounts.iter())
            .flat_map(|a| inner.option_greeks(a))
            .map(|(_, g)| g)
            .collect();
        (symbols.iter())
            .filter_map(|s| priced.iter().find(|g| g.streamer_symbol == *s).cloned())
            .collect()
    }

    /// The ground truth a correct sync of `account_number` ends with.
    pub fn truth(&self, account_number: &str) -> Option<Value> {
        let inner = self.lock();
        let account = inner.accounts.iter().find(|a| a.number == account_number)?;
        let net: Decimal = account.transactions.iter().map(|t| t.net_value()).sum();
        let value: Decimal = account.transactions.iter().map(|t| t.value).sum();
        let legs: usize = account.orders.iter().map(|o| o.legs.len()).sum();
        let fills: usize = account
            .orders
            .iter()
            .flat_map(|o| &o.legs)
            .map(|l| l.fills.len())
            .sum();
        Some(json!({
            "account-number": account.number,
            "transactions": {
                "count": account.transactions.len(),
                "ids": account.transactions.iter().map(|t| t.id).collect::<Vec<_>>(),
                "net-value-sum": net.to_string(),
                "value-sum": value.to_string(),
            },
            "orders": {
                "count": account.orders.len(),
                "ids": account.orders.iter().map(|o| o.id).collect::<Vec<_>>(),
                "legs": legs,
                "fills": fills,
            },
            "positions": account.positions.iter().map(|p| json!({"symbol": p.symbol, "quantity": p.quantity.to_string()})).collect::<Vec<_>>(),
            "balances": account.balances.iter().map(|b| json!({"currency": b.currency, "cash-balance": b.cash_balance.to_string()})).collect::<Vec<_>>(),
            "snapshots": {"count": account.snapshots.len()},
            "net-liq-history": account.net_liq.iter().map(|b| b.render()).collect::<Vec<_>>(),
            "complex-orders": account.complex_orders.iter().map(|c| json!({
                "id": c.id, "type": c.kind, "trigger-order-id": c.trigger, "order-ids": c.orders,
            })).collect::<Vec<_>>(),
            "watchlists": inner.watchlists.iter().map(crate::data::Watchlist::render).collect::<Vec<_>>(),
            "greeks": inner.option_greeks(account).into_iter().map(|(symbol, g)| (symbol, g.render())).collect::<serde_json::Map<_, _>>(),
            "trading-status": account.trading_status.render(&account.number),
        }))
    }

    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/customers/me", get(customer))
            .route("/customers/me/accounts", get(accounts))
            .route("/accounts/{account}/transactions", get(transactions))
            .route("/accounts/{account}/positions", get(positions))
            .route("/accounts/{account}/balances", get(balances))
            .route("/accounts/{account}/balances/{currency}", get(balance))
            .route("/accounts/{account}/balance-snapshots", get(snapshots))
            .route("/accounts/{account}/trading-status", get(trading_status))
            .route("/accounts/{account}/net-liq/history", get(net_liq_history))
            .route("/watchlists", get(watchlists))
            .route("/accounts/{account}/orders", get(orders))
            .route("/accounts/{account}/orders/live", get(live_orders))
            .route("/accounts/{account}/complex-orders", get(complex_orders))
            .route("/accounts/{account}/orders/{id}", get(order_by_id))
            .route("/api-quote-tokens", get(quote_token))
            .route_layer(middleware::from_fn_with_state(self.clone(), authenticate));
        let oauth = Router::new()
            .route("/oauth/token", post(token))
            .route("/auth.html", get(authorize))
            .route_layer(middleware::from_fn(require_user_agent));
        let broker = api
            .merge(oauth)
            .layer(middleware::from_fn_with_state(self.clone(), inject_faults))
            .layer(middleware::from_fn_with_state(self.clone(), record));
        let control = Router::new()
            .route("/__sim/faults", post(set_faults))
            .route("/__sim/quirks", post(set_quirks))
            .route("/__sim/grants/revoke", post(revoke))
            .route("/__sim/streamer/drop", post(drop_streamer))
            .route("/__sim/accounts/{account}/activity", post(add_activity))
            .route("/__sim/accounts/{account}/truth", get(truth))
            .route("/__sim/credentials", get(credentials_route))
            .route("/__sim/requests", get(requests_route));
        broker.merge(control).with_state(self.clone())
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// Why a broker request is refused before any data is read; small, so `?` can carry it.
#[derive(Debug)]
enum Reject {
    Invalid {
        domain: String,
        reason: &'static str,
    },
    NotFound,
}

impl Reject {
    fn invalid(domain: &str, reason: &'static str) -> Self {
        Reject::Invalid {
            domain: domain.to_owned(),
            reason,
        }
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        match self {
            Reject::Invalid { domain, reason } => validation_error(&domain, reason),
            Reject::NotFound => error(
                StatusCode::NOT_FOUND,
                "record_not_found",
                "Record not found",
            ),
        }
    }
}

type Answer = Result<Response, Reject>;

fn validation_error(domain: &str, reason: &str) -> Response {
    let body = json!({"error": {
        "code": "validation_error",
        "message": "Request validation failed",
        "errors": [{"domain": domain, "reason": reason}],
    }});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

fn token_invalid() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "token_invalid",
        "This token is invalid or has expired",
    )
}

fn has_user_agent(headers: &HeaderMap) -> bool {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.contains('/'))
}

async fn require_user_agent(request: Request, next: Next) -> Response {
    if !has_user_agent(request.headers()) {
        return token_invalid();
    }
    next.run(request).await
}

/// Bearer token, valid, unexpired, from an unrevoked grant, and a product User-Agent.
/// The accounts the request's grant reaches (`None`: all of them), for the handlers.
#[derive(Debug, Clone)]
struct Reach(Option<Vec<String>>);

impl Reach {
    fn covers(&self, account_number: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|numbers| numbers.iter().any(|n| n == account_number))
    }
}

async fn authenticate(State(sim): State<Simulator>, mut request: Request, next: Next) -> Response {
    if !has_user_agent(request.headers()) {
        return token_invalid();
    }
    let token = bearer(request.headers());
    {
        let mut inner = sim.lock();
        let Some(reach) = (token.as_deref())
            .and_then(|t| inner.live_grant(t))
            .map(|grant| Reach(grant.accounts.clone()))
        else {
            return token_invalid();
        };
        if inner.faults.unauthorized_next > 0 {
            inner.faults.unauthorized_next -= 1;
            return token_invalid();
        }
        // Account authority is enforced with 403 (reference §3, errors): a grant reads only
        // its own accounts.
        let number = request.uri().path().strip_prefix("/accounts/");
        if let Some(number) = number.and_then(|rest| rest.split('/').next())
            && !reach.covers(number)
        {
            return error(
                StatusCode::FORBIDDEN,
                "not_permitted",
                "User not permitted access",
            );
        }
        request.extensions_mut().insert(reach);
        inner.served += 1;
        let every = inner.faults.expire_tokens_every;
        if every > 0 && inner.served % every == 0 {
            inner.tokens.clear();
        }
    }
    next.run(request).await
}

async fn requests_route(State(sim): State<Simulator>) -> Response {
    axum::Json(sim.requests()).into_response()
}

/// How many requests the log keeps: far more than any test makes.
const REQUEST_LOG_CAPACITY: usize = 200_000;

/// Keeps every request in the request log, with the answer's status.
async fn record(State(sim): State<Simulator>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let query = url::form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let grant = bearer(request.headers()).and_then(|token| {
        let inner = sim.lock();
        let state = inner.tokens.get(&token)?;
        Some(inner.grants.get(&state.refresh_token)?.label.clone())
    });
    let at = Utc::now();
    if let Some(grant) = &grant {
        let mut inner = sim.lock();
        if (inner.held_until.get(grant)).is_some_and(|(heard, until)| *heard < at && at < *until) {
            inner.sent_while_held += 1;
        }
        let now = inner.in_flight.entry(grant.clone()).or_default();
        *now += 1;
        let now = *now;
        let most = inner.most_in_flight.entry(grant.clone()).or_default();
        *most = (*most).max(now);
    }
    let response = next.run(request).await;
    let mut inner = sim.lock();
    if let Some(grant) = &grant {
        if let Some(now) = inner.in_flight.get_mut(grant) {
            *now -= 1;
        }
        let retry_after = (response.headers().get(header::RETRY_AFTER))
            .and_then(|v| v.to_str().ok()?.parse::<i64>().ok());
        if let Some(seconds) =
            retry_after.filter(|_| response.status() == StatusCode::TOO_MANY_REQUESTS)
        {
            // From a moment after the answer: a request sent before its client could hear the
            // 429 did not ignore it.
            let answered = Utc::now();
            let heard = answered + chrono::TimeDelta::milliseconds(100);
            let until = answered + chrono::TimeDelta::seconds(seconds);
            inner.held_until.insert(grant.clone(), (heard, until));
        }
    }
    // A long-lived simulator (the dev stack's) keeps the latest requests, not all of them.
    if inner.requests.len() >= REQUEST_LOG_CAPACITY {
        inner.requests.drain(..REQUEST_LOG_CAPACITY / 10);
    }
    inner.requests.push(Recorded {
        method,
        path,
        query,
        at,
        answered: Utc::now(),
        grant,
        status: response.status().as_u16(),
    });
    response
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
}

/// The broker's answer, faults applied, sent no sooner than `latency_ms` (plus `slow_ms` on the
/// slow path) after the request arrived. The latency is the broker's whole response time, its
/// own work included, as the bench's floor counts it: the simulator works out the answer while
/// the latency runs rather than after it, because its work runs on the client's own cores, and
/// there it would grow with the client's load, which no remote broker's does.
async fn inject_faults(State(sim): State<Simulator>, request: Request, next: Next) -> Response {
    let (roll, faults) = {
        let mut inner = sim.lock();
        (inner.fault_rng.f64(), inner.faults.clone())
    };
    let slow = (faults.slow_path.as_deref()).is_some_and(|p| request.uri().path().contains(p));
    let delay = faults.latency_ms + if slow { faults.slow_ms } else { 0 };
    let answer_at = tokio::time::Instant::now() + StdDuration::from_millis(delay);
    let response = with_faults(faults, roll, request, next).await;
    tokio::time::sleep_until(answer_at).await;
    response
}

async fn with_faults(faults: Faults, roll: f64, request: Request, next: Next) -> Response {
    let mut threshold = faults.rate_429;
    if roll < threshold {
        // The broker's 429 carries no quota headers (reference §5).
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({"error": {"code": "rate_limited", "message": "Too many requests"}})),
        )
            .into_response();
        if let Some(seconds) = faults.retry_after_seconds {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        return response;
    }
    threshold += faults.rate_5xx;
    if roll < threshold {
        return (
            StatusCode::BAD_GATEWAY,
            "<html><body>502 Bad Gateway</body></html>",
        )
            .into_response();
    }
    let padded = (faults.padded_path.as_deref()).is_some_and(|p| request.uri().path().contains(p));
    let response = next.run(request).await;
    if padded && response.status().is_success() {
        let (mut parts, body) = response.into_parts();
        let mut bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default()
            .to_vec();
        bytes.resize(bytes.len() + faults.padded_bytes, b' ');
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::from(bytes));
    }
    threshold += faults.rate_drop;
    let drop = roll < threshold;
    threshold += faults.rate_truncate;
    let truncate = !drop && roll < threshold;
    if !(drop || truncate) || !response.status().is_success() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let half = bytes.slice(..bytes.len() / 2);
    if drop {
        // Half the body, then the connection breaks: the client sees a body error.
        let mut response = Response::from_parts(parts, Body::new(Dropped { first: Some(half) }));
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, bytes.len().into());
        return response;
    }
    // Half the body, cleanly ended: the client sees JSON that stops mid-way.
    let mut response = Response::from_parts(parts, Body::from(half.clone()));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, half.len().into());
    response
}

/// A body that yields its bytes and then fails, which makes the server drop the connection.
struct Dropped {
    first: Option<bytes::Bytes>,
}

impl http_body::Body for Dropped {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Ready(Some(match self.first.take() {
            Some(bytes) => Ok(http_body::Frame::data(bytes)),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "dropped by the simulator",
            )),
        }))
    }
}

fn params(query: Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn list<'a>(params: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    let bracketed = format!("{key}[]");
    params
        .iter()
        .filter(|(k, _)| *k == bracketed)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// `per-page` (1..=max) and `page-offset`; out of range is the broker's `validation_error`.
fn paging(
    params: &[(String, String)],
    default: usize,
    max: usize,
) -> Result<(usize, usize), Reject> {
    let per_page = match param(params, "per-page") {
        None => default,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => return Err(Reject::invalid("per-page", "does not have a valid value")),
        },
    };
    let offset = match param(params, "page-offset") {
        None => 0,
        Some(raw) => raw
            .parse()
            .map_err(|_| Reject::invalid("page-offset", "does not have a valid value"))?,
    };
    Ok((per_page, offset))
}

/// `sort`: `Asc`, or `Desc` (the default); anything else is the broker's `validation_error`.
fn ascending(params: &[(String, String)]) -> Result<bool, Reject> {
    match param(params, "sort") {
        None | Some("Desc") => Ok(false),
        Some("Asc") => Ok(true),
        Some(_) => Err(Reject::invalid("sort", "does not have a valid value")),
    }
}

fn date_param(params: &[(String, String)], key: &str) -> Result<Option<NaiveDate>, Reject> {
    param(params, key)
        .map(|raw| {
            NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                .map_err(|_| Reject::invalid(key, "is invalid"))
        })
        .transpose()
}

fn time_param(params: &[(String, String)], key: &str) -> Result<Option<DateTime<Utc>>, Reject> {
    param(params, key)
        .map(|raw| {
            DateTime::parse_from_rfc3339(raw)
                .map(|t| t.with_timezone(&Utc))
                .or_else(|_| {
                    chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S")
                        .map(|t| t.and_utc())
                })
                .map_err(|_| Reject::invalid(key, "is invalid"))
        })
        .transpose()
}

fn items(context: &str, rows: Vec<Value>) -> Response {
    axum::Json(json!({"context": context, "data": {"items": rows}})).into_response()
}

/// `GET /customers/me`: a fictitious customer with every field the SDK's `Customer` requires.
async fn customer(State(sim): State<Simulator>) -> Response {
    let opened = (sim.lock().accounts.iter().map(|a| a.opened_at).min()).unwrap_or_else(Utc::now);
    let address = json!({
        "street-one": "1 Example Plaza", "city": "Chicago", "state-region": "IL",
        "postal-code": "60601", "country": "USA", "is-foreign": false, "is-domestic": true,
    });
    let margin_types = json!([
        {"name": "Cash", "is-margin": false},
        {"name": "Margin", "is-margin": true},
    ]);
    let data = json!({
        "id": "me",
        "first-name": "Sam",
        "last-name": "Simulated",
        "address": address,
        "mailing-address": address,
        "is-foreign": false,
        "usa-citizenship-type": "Citizen",
        "mobile-phone-number": "+1 555 0100",
        "birth-date": "1980-01-01",
        "email": "sam@example.invalid",
        "tax-number-type": "SSN",
        "subject-to-tax-withholding": false,
        "has-industry-affiliation": false,
        "has-listed-affiliation": false,
        "has-political-affiliation": false,
        "has-delayed-quotes": false,
        "has-pending-or-approved-application": false,
        "is-professional": false,
        "permitted-account-types": [{
            "name": "Individual", "description": "Individual Account",
            "is-tax-advantaged": false, "is-publicly-available": true,
            "has-multiple-owners": false, "margin-types": margin_types,
        }],
        "created-at": opened.to_rfc3339(),
    });
    axum::Json(json!({"context": "/customers/me", "data": data})).into_response()
}

async fn accounts(State(sim): State<Simulator>, Extension(reach): Extension<Reach>) -> Response {
    let inner = sim.lock();
    let rows = inner
        .accounts
        .iter()
        .filter(|a| reach.covers(&a.number))
        .map(|a| {
            json!({
                "account": {
                    "account-number": a.number,
                    "nickname": a.nickname,
                    "account-type-name": a.type_name,
                    "margin-or-cash": a.margin_or_cash,
                    "opened-at": a.opened_at.to_rfc3339(),
                    "created-at": a.opened_at.to_rfc3339(),
                    "is-closed": a.closed_at.is_some(),
                    "closed-at": a.closed_at.map(|t| t.to_rfc3339()),
                    "day-trader-status": false,
                    "is-firm-error": false,
                    "is-firm-proprietary": false,
                    "is-futures-approved": true,
                    "is-foreign": false,
                    "funding-date": a.opened_at.date_naive().to_string(),
                    "suitable-options-level": "No Restrictions",
                },
                "authority-level": "owner",
            })
        })
        .collect();
    items("/customers/me/accounts", rows)
}

async fn transactions(
    State(sim): State<Simulator>,
    Path(number): Path<String>,
    RawQuery(q): RawQuery,
) -> Answer {
    let p = params(q);
    let (per_page, offset) = paging(&p, 250, 2000)?;
    let per_page = (sim.lock().faults.rows_per_page).map_or(per_page, |most| per_page.min(most));
    let (start_date, end_date) = (date_param(&p, "start-date")?, date_param(&p, "end-date")?);
    let (start_at, end_at) = (time_param(&p, "start-at")?, time_param(&p, "end-at")?);
    if param(&p, "type").is_some() && !list(&p, "types").is_empty() {
        return Err(Reject::invalid(
            "types",
            "only one of type and types may be given",
        ));
    }
    let types: Vec<&str> = param(&p, "type")
        .map(|t| vec![t])
        .unwrap_or_else(|| list(&p, "types"));
    let sub_types = list(&p, "sub-type");
    let (symbol, underlying) = (param(&p, "symbol"), param(&p, "underlying-symbol"));
    let (instrument_type, action) = (param(&p, "instrument-type"), param(&p, "action"));
    let currency = param(&p, "currency");
    let (account, quirks) = sim.account_and_quirks(&number)?;
    let ascending = ascending(&p)?;
    let matches = |t: &&crate::data::Tx| {
        start_date.is_none_or(|d| t.date >= d)
            && end_date.is_none_or(|d| t.date <= d)
            && start_at.is_none_or(|s| t.executed_at >= s)
            && end_at.is_none_or(|e| t.executed_at <= e)
            && (types.is_empty() || types.contains(&t.kind))
            && (sub_types.is_empty() || sub_types.contains(&t.sub_type.as_str()))
            && symbol.is_none_or(|s| t.symbol.as_deref() == Some(s))
            && underlying.is_none_or(|s| t.underlying.as_deref() == Some(s))
            && instrument_type.is_none_or(|s| t.instrument_type == Some(s))
            && action.is_none_or(|s| t.action == Some(s))
            && currency.is_none_or(|s| t.currency == s)
    };
    let selected: Vec<&crate::data::Tx> = account.transactions.iter().filter(matches).collect();
    let (window, total) = page_rows(&selected, ascending, offset, per_page, |t| {
        quirks.transaction(&account, t)
    });
    Ok(page_of(
        &format!("/accounts/{number}/transactions"),
        window,
        total,
        per_page,
        offset,
    ))
}

/// The `offset`th page of `per_page` rows of `selected`, rendered, and how many were selected.
fn page_rows<T, R>(
    selected: &[&T],
    ascending: bool,
    offset: usize,
    per_page: usize,
    render: impl Fn(&T) -> R,
) -> (Vec<R>, usize) {
    let page = |rows: &mut dyn Iterator<Item = &&T>| -> Vec<R> {
        rows.skip(offset * per_page)
            .take(per_page)
            .map(|row| render(row))
            .collect()
    };
    let rows = if ascending {
        page(&mut selected.iter())
    } else {
        page(&mut selected.iter().rev())
    };
    (rows, selected.len())
}

/// `{data: {items}, context, pagination}` for one page, cut from `total` matching rows.
fn page_of<T: Serialize>(
    context: &str,
    window: Vec<T>,
    total: usize,
    per_page: usize,
    offset: usize,
) -> Response {
    #[derive(Serialize)]
    struct Page<'a, T> {
        #[serde(rename = "api-version")]
        api_version: &'static str,
        context: &'a str,
        data: Items<T>,
        pagination: Value,
    }
    #[derive(Serialize)]
    struct Items<T> {
        items: Vec<T>,
    }
    let pagination = json!({
        "per-page": per_page,
        "page-offset": offset,
        "item-offset": offset * per_page,
        "total-items": total,
        "total-pages": total.div_ceil(per_page),
        "current-item-count": window.len(),
        "previous-link": null,
        "next-link": null,
        "paging-link-template": null,
    });
    // The rows go out as they are: rendered JSON is printed, not parsed into a tree again.
    let body = Page {
        api_version: "v1",
        context,
        data: Items { items: window },
        pagination,
    };
    axum::Json(body).into_response()
}

async fn positions(
    State(sim): State<Simulator>,
    Path(number): Path<String>,
    RawQuery(q): RawQuery,
) -> Answer {
    let p = params(q);
    let marks = param(&p, "include-marks") == Some("true");
    let inner = sim.lock();
    let today = inner.config.anchor;
    let account = inner.account(&number)?;
    let rows = account
        .positions
        .iter()
        .map(|pos| pos.render(&number, marks, today))
        .collect();
    let rows = inner.quirks.positions(account, rows);
    Ok(items(&format!("/accounts/{number}/positions"), rows))
}

async fn balances(State(sim): State<Simulator>, Path(number): Path<String>) -> Answer {
    let inner = sim.lock();
    let today = inner.config.anchor;
    let account = inner.account(&number)?;
    let context = format!("/accounts/{number}/balances");
    let rows: Vec<Value> = account
        .balances
        .iter()
        .map(|b| {
            b.render(
                &number,
                today,
                crate::data::day_start(today) + Duration::hours(20),
            )
        })
        .collect();
    match inner.quirks.balances {
        BalancesShape::Items => Ok(items(&context, rows)),
        BalancesShape::Empty => Ok(items(&context, Vec::new())),
        BalancesShape::Object => {
            let usd = rows
                .into_iter()
                .find(|b| b["currency"] == "USD")
                .unwrap_or_else(|| json!({}));
            Ok(axum::Json(json!({"context": context, "data": usd})).into_response())
        }
        BalancesShape::Refused => Ok(error(
            StatusCode::NOT_ACCEPTABLE,
            "406",
            "The requested version is not supported.",
        )),
    }
}

async fn balance(
    State(sim): State<Simulator>,
    Path((number, currency)): Path<(String, String)>,
) -> Answer {
    let inner = sim.lock();
    let today = inner.config.anchor;
    let account = inner.account(&number)?;
    let Some(b) = account.balances.iter().find(|b| b.currency == currency) else {
        return Err(Reject::NotFound);
    };
    let body = json!({"context": format!("/accounts/{number}/balances/{currency}"), "data": b.render(&number, today, crate::data::day_start(today) + Duration::hours(20))});
    Ok(axum::Json(body).into_response())
}

async fn trading_status(State(sim): State<Simulator>, Path(number): Path<String>) -> Answer {
    let inner = sim.lock();
    let account = inner.account(&number)?;
    let body = json!({"context": format!("/accounts/{number}/trading-status"), "data": account.trading_status.render(&number)});
    Ok(axum::Json(body).into_response())
}

/// The customer's own watchlists, whichever account the grant reaches.
async fn watchlists(State(sim): State<Simulator>) -> Response {
    let items: Vec<Value> = (sim.lock().watchlists.iter())
        .map(crate::data::Watchlist::render)
        .collect();
    axum::Json(json!({"context": "/watchlists", "data": {"items": items}})).into_response()
}

/// `time-back` (or `start-time`, which the broker once ignored and the sim honours) picks
/// the bars; with neither the broker refuses, as the SDK's own check says.
async fn net_liq_history(
    State(sim): State<Simulator>,
    Path(number): Path<String>,
    RawQuery(q): RawQuery,
) -> Answer {
    let p = params(q);
    let now = Utc::now();
    let from = match (param(&p, "start-time"), param(&p, "time-back")) {
        (Some(start), _) => Some(
            DateTime::parse_from_rfc3339(start)
                .map_err(|_| Reject::invalid("start-time", "does not have a valid value"))?
                .with_timezone(&Utc),
        ),
        (None, Some("all")) => None,
        (None, Some(back)) => match back {
            "1d" => now.checked_sub_signed(Duration::days(1)),
            "1w" => now.checked_sub_signed(Duration::weeks(1)),
            "1m" => now.checked_sub_months(chrono::Months::new(1)),
            "3m" => now.checked_sub_months(chrono::Months::new(3)),
            "6m" => now.checked_sub_months(chrono::Months::new(6)),
            "1y" => now.checked_sub_months(chrono::Months::new(12)),
            _ => return Err(Reject::invalid("time-back", "does not have a valid value")),
        },
        (None, None) => return Err(Reject::invalid("time-back", "is missing")),
    };
    let inner = sim.lock();
    let account = inner.account(&number)?;
    let items: Vec<Value> = (account.net_liq.iter())
        .filter(|b| from.is_none_or(|from| b.time >= from))
        .map(|b| inner.quirks.net_liq(account, b))
        .collect();
    let body =
        json!({"context": format!("/accounts/{number}/net-liq/history"), "data": {"items": items}});
    Ok(axum::Json(body).into_response())
}

async fn snapshots(
    State(sim): State<Simulator>,
    Path(number): Path<String>,
    RawQuery(q): RawQuery,
) -> Answer {
    let p = params(q);
    let (per_page, offset) = paging(&p, 250, 2000)?;
    let time_of_day = match param(&p, "time-of-day") {
        None => return Err(Reject::invalid("time-of-day", "is missing")),
        Some(t @ ("BOD" | "EOD" | "Intraday")) => t.to_owned(),
        Some(_) => {
            return Err(Reject::invalid(
                "time-of-day",
                "does not have a valid value",
            ));
        }
    };
    let (start, end) = (date_param(&p, "start-date")?, date_param(&p, "end-date")?);
    let on = date_param(&p, "snapshot-date")?;
    let currency = param(&p, "currency").unwrap_or("USD").to_owned();
    let inner = sim.lock();
    let account = inner.account(&number)?;
    // Only EOD history is kept; without a range the broker returns just the latest few.
    let mut rows: Vec<&crate::data::Snapshot> = account
        .snapshots
        .iter()
        .filter(|s| time_of_day == "EOD" && s.currency == currency)
        .filter(|s| {
            start.is_none_or(|d| s.date >= d)
                && end.is_none_or(|d| s.date <= d)
                && on.is_none_or(|d| s.date == d)
        })
        .collect();
    if start.is_none() && on.is_none() {
        let keep = rows.len().saturating_sub(5);
        rows.drain(..keep);
    }
    let total = rows.len();
    let window = rows
        .iter()
        .skip(offset * per_page)
        .take(per_page)
        .map(|s| inner.quirks.snapshot(account, s, s.render(&number)))
        .collect();
    Ok(page_of(
        &format!("/accounts/{number}/balance-snapshots"),
        window,
        total,
        per_page,
        offset,
    ))
}

async fn orders(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(number): Path<String>,
    RawQuery(q): RawQuery,
) -> Answer {
    let p = params(q);
    let (per_page, offset) = paging(&p, 100, 200)?;
    let version = headers
        .get("accept-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("20250813");
    if version >= ORDER_SEARCH_NEEDS_START
        && param(&p, "start-date").is_none()
        && param(&p, "start-at").is_none()
    {
        return Err(Reject::invalid("start-date", "is missing"));
    }
    let (start_date, end_date) = (date_param(&p, "start-date")?, date_param(&p, "end-date")?);
    let (start_at, end_at) = (time_param(&p, "start-at")?, time_param(&p, "end-at")?);
    let statuses = list(&p, "status");
    let underlying = param(&p, "underlying-symbol");
    let (account, quirks) = sim.account_and_quirks(&number)?;
    let ascending = ascending(&p)?;
    let selected: Vec<&crate::data::Order> = account
        .orders
        .iter()
        .filter(|o| {
            let day = o.received_at.date_naive();
            start_date.is_none_or(|d| day >= d)
                && end_date.is_none_or(|d| day <= d)
                && start_at.is_none_or(|s| o.received_at >= s)
                && end_at.is_none_or(|e| o.received_at <= e)
                && (statuses.is_empty() || statuses.contains(&o.status))
                && underlying.is_none_or(|s| o.underlying == s)
        })
        .collect();
    let (window, total) = page_rows(&selected, ascending, offset, per_page, |o| {
        quirks.order(&account, o)
    });
    Ok(page_of(
        &format!("/accounts/{number}/orders"),
        window,
        total,
        per_page,
        offset,
    ))
}

/// `GET /accounts/{n}/orders/{id}`: one order, in any status.
async fn order_by_id(
    State(sim): State<Simulator>,
    Path((number, id)): Path<(String, String)>,
) -> Answer {
    let inner = sim.lock();
    let account = inner.account(&number)?;
    let id: i64 = id.parse().map_err(|_| Reject::NotFound)?;
    let Some(order) = account.orders.iter().find(|o| o.id == id) else {
        return Err(Reject::NotFound);
    };
    let data = inner.quirks.order(account, order);
    let body = json!({"context": format!("/accounts/{number}/orders/{id}"), "data": data});
    Ok(axum::Json(body).into_response())
}

async fn live_orders(
    State(sim): State<Simulator>,
    Path(number): Path<String>,
    RawQuery(q): RawQuery,
) -> Answer {
    let p = params(q);
    let (per_page, offset) = paging(&p, 100, 200)?;
    let inner = sim.lock();
    let today = Utc::now().date_naive();
    let account = inner.account(&number)?;
    let live: Vec<&crate::data::Order> = account
        .orders
        .iter()
        .filter(|o| o.is_live_on(today))
        .collect();
    let window = live
        .iter()
        .skip(offset * per_page)
        .take(per_page)
        .map(|o| inner.quirks.order(account, o))
        .collect();
    Ok(page_of(
        &format!("/accounts/{number}/orders/live"),
        window,
        live.len(),
        per_page,
        offset,
    ))
}

/// Every complex order of the account, newest first as the broker lists them, paginated.
async fn complex_orders(
    State(sim): State<Simulator>,
    Path(number): Path<String>,
    RawQuery(q): RawQuery,
) -> Answer {
    let p = params(q);
    let (per_page, offset) = paging(&p, 10, 200)?;
    let inner = sim.lock();
    let account = inner.account(&number)?;
    let all = &account.complex_orders;
    let window = (all.iter().rev())
        .skip(offset * per_page)
        .take(per_page)
        .map(|c| c.render(&number, &account.orders))
        .collect();
    Ok(page_of(
        &format!("/accounts/{number}/complex-orders"),
        window,
        all.len(),
        per_page,
        offset,
    ))
}

async fn quote_token(State(sim): State<Simulator>) -> Response {
    let (token, url) = {
        let mut inner = sim.lock();
        inner.counter += 1;
        let nonce = inner.fault_rng.u64(..);
        let token = format!("dxlink-{}-{nonce:x}", inner.counter);
        inner.dxlink_tokens.insert(token.clone());
        (token, inner.dxlink_url.clone())
    };
    record_issued(&token);
    let now = Utc::now();
    axum::Json(json!({"context": "/api-quote-tokens", "data": {
        "token": token,
        "dxlink-url": url,
        "level": "api",
        "issued-at": now.to_rfc3339(),
        "expires-at": (now + Duration::hours(24)).to_rfc3339(),
    }}))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    refresh_token: Option<String>,
    client_secret: Option<String>,
    client_id: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
}

fn token_error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error_code": code, "error_description": description})),
    )
        .into_response()
}

/// `POST /oauth/token`. Each grant accepts only the encodings the reference documents or the
/// public clients prove (reference §2b): the refresh grant JSON (documented) or a form (RS);
/// the authorization-code exchange a form (TW-HIST, RS; RFC 6749 §4.1.3).
async fn token(State(sim): State<Simulator>, headers: HeaderMap, body: bytes::Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let json = content_type.starts_with("application/json");
    let form = content_type.starts_with("application/x-www-form-urlencoded");
    let parsed: Option<TokenRequest> = if json {
        serde_json::from_slice(&body).ok()
    } else if form {
        serde_json::to_value(
            url::form_urlencoded::parse(&body)
                .into_owned()
                .collect::<HashMap<String, String>>(),
        )
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
    } else {
        None
    };
    let Some(request) = parsed else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Malformed request",
        );
    };
    if json && request.grant_type.as_deref() == Some("authorization_code") {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The authorization code grant must be form-encoded",
        );
    }
    let mut inner = sim.lock();
    if request.client_secret.as_deref() != Some(inner.client_secret.as_str())
        || request
            .client_id
            .as_deref()
            .is_some_and(|id| id != inner.client_id)
    {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Invalid client credentials",
        );
    }
    let (refresh_token, echo) = match request.grant_type.as_deref() {
        Some("refresh_token") => {
            let Some(rt) = request.refresh_token else {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "refresh_token is missing",
                );
            };
            (rt, false)
        }
        Some("authorization_code") => {
            let Some(code) = request.code.and_then(|c| inner.codes.remove(&c)) else {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Invalid authorization code",
                );
            };
            let (Some(redirect_uri), Some(client_id)) = (request.redirect_uri, request.client_id)
            else {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "redirect_uri and client_id are required",
                );
            };
            // RFC 6749 §4.1.3: the code answers one authorize request, of one client, that
            // named one redirect URI; the code is spent either way.
            if url::Url::parse(&redirect_uri).map(String::from).ok() != Some(code.redirect_uri)
                || client_id != code.client_id
            {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The code was issued for another client or redirect_uri",
                );
            }
            // RFC 7636 §4.6: a code whose authorize request sent a challenge is redeemed only
            // with its verifier; a verifier for a code without one is refused (OAuth 2.1).
            let verified = match (&code.code_challenge, &request.code_verifier) {
                (None, None) => true,
                (Some(challenge), Some(verifier)) => s256(verifier) == *challenge,
                _ => false,
            };
            if !verified {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The code verifier does not match the code challenge",
                );
            }
            (code.refresh_token, true)
        }
        _ => {
            return token_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Unsupported grant type",
            );
        }
    };
    if inner.grants.get(&refresh_token).is_none_or(|g| g.revoked) {
        return token_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid JWT");
    }
    inner.counter += 1;
    let nonce = inner.fault_rng.u64(..);
    let access = format!("at-{}-{nonce:x}", inner.counter);
    let seconds = inner.config.token_seconds;
    // The token lives as configured, whatever the answer announces.
    let announced = (inner.faults.expires_in).unwrap_or(seconds);
    let expires_at = Utc::now() + Duration::seconds(seconds - inner.faults.clock_skew_seconds);
    inner.issued_tokens.push(access.clone());
    record_issued(&access);
    inner.tokens.insert(
        access.clone(),
        TokenState {
            refresh_token: refresh_token.clone(),
            expires_at,
        },
    );
    let mut body = json!({"access_token": access, "token_type": "Bearer", "expires_in": announced});
    if echo {
        body["refresh_token"] = json!(refresh_token);
    }
    axum::Json(body).into_response()
}

/// RFC 7636's `S256` challenge of a code verifier.
fn s256(verifier: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

/// The authorize page: approves at once and redirects back with a code, as a user who clicks
/// "Allow" would. Each code mints a new grant.
async fn authorize(State(sim): State<Simulator>, RawQuery(q): RawQuery) -> Response {
    let p = params(q);
    let mut inner = sim.lock();
    if param(&p, "response_type") != Some("code")
        || param(&p, "client_id") != Some(inner.client_id.as_str())
    {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Unknown client or response type",
        );
    }
    let Some(redirect) = param(&p, "redirect_uri").and_then(|r| url::Url::parse(r).ok()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "redirect_uri is invalid",
        );
    };
    let code_challenge = match (
        param(&p, "code_challenge"),
        param(&p, "code_challenge_method"),
    ) {
        (None, None) => None,
        // Only S256: "plain" would hand the verifier to whoever sees the authorize URL.
        (Some(challenge), Some("S256")) if challenge.len() == 43 => Some(challenge.to_owned()),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "code_challenge must be an S256 challenge",
            );
        }
    };
    inner.counter += 1;
    let nonce = inner.fault_rng.u64(..);
    let code = format!("code-{}-{nonce:x}", inner.counter);
    let refresh_token = format!("rt-{}-{:x}", inner.counter, nonce.rotate_left(17));
    // A code is a secret until spent: it joins the ledger the scan after the suite reads.
    record_issued(&code);
    record_issued(&refresh_token);
    let label = format!("grant-{}", inner.grants.len() + 1);
    inner.grants.insert(
        refresh_token.clone(),
        GrantState {
            revoked: false,
            label,
            accounts: None,
        },
    );
    let code_state = CodeState {
        refresh_token,
        client_id: inner.client_id.clone(),
        redirect_uri: redirect.to_string(),
        code_challenge,
    };
    inner.codes.insert(code.clone(), code_state);
    let mut target = redirect;
    target.query_pairs_mut().append_pair("code", &code);
    if let Some(state) = param(&p, "state") {
        target.query_pairs_mut().append_pair("state", state);
    }
    (StatusCode::FOUND, [(header::LOCATION, target.to_string())]).into_response()
}

async fn set_faults(
    State(sim): State<Simulator>,
    axum::Json(faults): axum::Json<Faults>,
) -> Response {
    sim.set_faults(faults);
    StatusCode::NO_CONTENT.into_response()
}

async fn set_quirks(
    State(sim): State<Simulator>,
    axum::Json(quirks): axum::Json<Quirks>,
) -> Response {
    sim.set_quirks(quirks);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Debug, Deserialize)]
struct Revoke {
    refresh_token: String,
}

async fn revoke(State(sim): State<Simulator>, axum::Json(body): axum::Json<Revoke>) -> Response {
    sim.revoke(&body.refresh_token);
    StatusCode::NO_CONTENT.into_response()
}

async fn add_activity(
    State(sim): State<Simulator>,
    Path(number): Path<String>,
    axum::Json(activity): axum::Json<Activity>,
) -> Response {
    match sim.add_activity(&number, &activity) {
        Some(outcome) => axum::Json(outcome).into_response(),
        None => Reject::NotFound.into_response(),
    }
}

async fn drop_streamer(State(sim): State<Simulator>) -> Response {
    sim.drop_streamer_sessions();
    StatusCode::NO_CONTENT.into_response()
}

async fn truth(State(sim): State<Simulator>, Path(number): Path<String>) -> Response {
    sim.truth(&number).map_or_else(
        || Reject::NotFound.into_response(),
        |t| axum::Json(t).into_response(),
    )
}

async fn credentials_route(State(sim): State<Simulator>, headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    axum::Json(sim.credentials(&format!("http://{host}"))).into_response()
}
