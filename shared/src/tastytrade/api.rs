//! The endpoints the sync reads (reference §3), and pagination as a stream of pages.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;

use chrono::{DateTime, Months, NaiveDate, SecondsFormat, TimeDelta, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::client::Session;
use super::error::BrokerError;
use super::model::{
    AccountAuthority, Balance, ComplexOrder, NetLiqPoint, Order, Position, QuoteToken, Raw, Record,
    TradingStatus, Transaction, Watchlist, raw, tree,
};
use crate::domain::rows::Quarantined;
use crate::ports::Broker;

/// Page size limits (reference §3.0): above them the broker answers `validation_error`.
pub const MAX_TRANSACTIONS_PER_PAGE: u32 = 2000;
pub const MAX_SNAPSHOTS_PER_PAGE: u32 = 2000;
pub const MAX_ORDERS_PER_PAGE: u32 = 200;
pub const MAX_COMPLEX_ORDERS_PER_PAGE: u32 = 200;

/// The rows a scan holds at most in the pages asked for and not yet stored: four pages of 2,000
/// transactions, eight of 200 orders (see [`ROOM_PER_REQUEST`]). With 80 ms per response, two
/// pages of transactions and four of orders (as many as requests in flight) left the grant's
/// requests idle while pages waited to be stored: the full sync took 7.1 s against 5.7-5.9 s
/// now; the worker's peak in the 100k full sync rose from 53-54 MiB to 57-61 MiB.
const ROWS_BUFFERED: u32 = 8_000;

/// A scan's room in pages, per request the grant may have in flight: room for as many pages
/// again as are in flight keeps the requests moving while the pages received wait for Postgres.
const ROOM_PER_REQUEST: usize = 2;

/// How many times a scan starts over because rows shifted under it before it gives up.
const MAX_RESCANS: u32 = 3;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sort {
    /// Oldest first: rows posted during a scan land after it instead of shifting its pages.
    #[default]
    Asc,
    Desc,
}

impl Sort {
    fn as_str(self) -> &'static str {
        match self {
            Sort::Asc => "Asc",
            Sort::Desc => "Desc",
        }
    }
}

/// How far back `GET /accounts/{n}/net-liq/history` reaches (`time-back`). The SDKs send
/// `start-time` no more, since the broker once ignored it (reference §3.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimeBack {
    Month,
    ThreeMonths,
    SixMonths,
    Year,
    All,
}

impl TimeBack {
    const BOUNDED: [(TimeBack, u32); 4] = [
        (TimeBack::Month, 1),
        (TimeBack::ThreeMonths, 3),
        (TimeBack::SixMonths, 6),
        (TimeBack::Year, 12),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TimeBack::Month => "1m",
            TimeBack::ThreeMonths => "3m",
            TimeBack::SixMonths => "6m",
            TimeBack::Year => "1y",
            TimeBack::All => "all",
        }
    }

    /// The shortest window that still reaches back to `since` from `now` (with a day to
    /// spare): an hourly sync reads a month, one after a long outage as far as it must.
    /// Never `1d` or `1w`: the broker's shortest windows chart finer bars than the rest, and
    /// one series should keep one spacing.
    pub fn covering(since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Self {
        let Some(since) = since else {
            return TimeBack::All;
        };
        let since = since - TimeDelta::days(1);
        (Self::BOUNDED.into_iter())
            .find(|(_, months)| now.checked_sub_months(Months::new(*months)) <= Some(since))
            .map_or(TimeBack::All, |(window, _)| window)
    }
}

/// Query pairs with the broker's conventions: kebab-case keys, `key[]` for arrays.
#[derive(Debug, Default)]
struct Query(Vec<(String, String)>);

impl Query {
    fn put(&mut self, key: &str, value: impl ToString) -> &mut Self {
        self.0.push((key.to_owned(), value.to_string()));
        self
    }
    fn opt(&mut self, key: &str, value: Option<impl ToString>) -> &mut Self {
        if let Some(v) = value {
            self.put(key, v);
        }
        self
    }
    fn list(&mut self, key: &str, values: &[String]) -> &mut Self {
        for v in values {
            self.put(&format!("{key}[]"), v);
        }
        self
    }
    fn time(&mut self, key: &str, value: Option<DateTime<Utc>>) -> &mut Self {
        self.opt(
            key,
            value.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
        )
    }
}

/// Every filter of `GET /accounts/{n}/transactions`.
#[derive(Debug, Clone, Default)]
pub struct TransactionQuery {
    pub start_at: Option<DateTime<Utc>>,
    pub end_at: Option<DateTime<Utc>>,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
    pub sort: Sort,
    /// One type goes as `type`, several as `types[]` (the broker takes one or the other).
    pub types: Vec<String>,
    pub sub_types: Vec<String>,
    pub instrument_type: Option<String>,
    pub symbol: Option<String>,
    pub underlying_symbol: Option<String>,
    pub futures_symbol: Option<String>,
    pub action: Option<String>,
    pub partition_key: Option<String>,
    pub currency: Option<String>,
    /// Defaults to the maximum, 2000.
    pub per_page: Option<u32>,
}

impl TransactionQuery {
    fn query(&self) -> Query {
        let mut q = Query::default();
        q.put("sort", self.sort.as_str())
            .time("start-at", self.start_at)
            .time("end-at", self.end_at)
            .opt("start-date", self.start_date)
            .opt("end-date", self.end_date)
            .list("sub-type", &self.sub_types)
            .opt("instrument-type", self.instrument_type.as_ref())
            .opt("symbol", self.symbol.as_ref())
            .opt("underlying-symbol", self.underlying_symbol.as_ref())
            .opt("futures-symbol", self.futures_symbol.as_ref())
            .opt("action", self.action.as_ref())
            .opt("partition-key", self.partition_key.as_ref())
            .opt("currency", self.currency.as_ref());
        match self.types.as_slice() {
            [] => {}
            [one] => {
                q.put("type", one);
            }
            many => {
                q.list("types", many);
            }
        }
        q
    }
}

/// `GET /accounts/{n}/orders`. Under `Accept-Version: 20261012` a start is required.
#[derive(Debug, Clone, Default)]
pub struct OrderQuery {
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
    pub start_at: Option<DateTime<Utc>>,
    pub end_at: Option<DateTime<Utc>>,
    pub underlying_symbol: Option<String>,
    pub statuses: Vec<String>,
    pub sort: Sort,
    /// Defaults to the maximum, 200.
    pub per_page: Option<u32>,
}

impl OrderQuery {
    fn query(&self) -> Query {
        let mut q = Query::default();
        q.put("sort", self.sort.as_str())
            .opt("start-date", self.start_date)
            .opt("end-date", self.end_date)
            .time("start-at", self.start_at)
            .time("end-at", self.end_at)
            .opt("underlying-symbol", self.underlying_symbol.as_ref())
            .list("status", &self.statuses);
        q
    }
}

/// `GET /accounts/{n}/balance-snapshots`; `time-of-day` is required and case-sensitive.
#[derive(Debug, Clone)]
pub struct SnapshotQuery {
    pub time_of_day: TimeOfDay,
    pub snapshot_date: Option<NaiveDate>,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
    pub currency: Option<String>,
    /// Defaults to the maximum, 2000.
    pub per_page: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeOfDay {
    Bod,
    Eod,
    Intraday,
}

impl TimeOfDay {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeOfDay::Bod => "BOD",
            TimeOfDay::Eod => "EOD",
            TimeOfDay::Intraday => "Intraday",
        }
    }
}

impl SnapshotQuery {
    fn query(&self) -> Query {
        let mut q = Query::default();
        q.put("time-of-day", self.time_of_day.as_str())
            .opt("snapshot-date", self.snapshot_date)
            .opt("start-date", self.start_date)
            .opt("end-date", self.end_date)
            .opt("currency", self.currency.as_ref());
        q
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Pagination {
    #[serde(default)]
    total_items: Option<u64>,
    #[serde(default)]
    total_pages: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct ItemsEnvelope {
    data: Items,
    #[serde(default)]
    pagination: Option<Pagination>,
}

#[derive(Debug, Deserialize)]
struct Items {
    #[serde(default)]
    items: Vec<Raw>,
}

#[derive(Debug, Deserialize)]
struct ObjectEnvelope {
    data: Raw,
}

/// A row's id, read apart from the model, so that a row the model cannot read still counts.
#[derive(Deserialize)]
struct RowId {
    id: Option<i64>,
}

fn row_id(raw: &Raw) -> Option<i64> {
    serde_json::from_str::<RowId>(raw.get()).ok()?.id
}

fn records<T: DeserializeOwned>(
    items: Vec<Raw>,
    what: &str,
) -> Result<Vec<Record<T>>, BrokerError> {
    items.into_iter().map(|raw| record(raw, what)).collect()
}

/// The account's current balances, and whether the answer listed every currency (the items
/// shape): only then is a currency it leaves out gone.
#[derive(Debug)]
pub struct CurrentBalances {
    pub rows: Parsed<Balance>,
    pub every_currency: bool,
}

/// Rows as parsed, and the rows that do not parse, set aside with the parser's reason.
#[derive(Debug)]
pub struct Parsed<T> {
    pub items: Vec<Record<T>>,
    pub rejected: Vec<Quarantined>,
}

impl<T> Default for Parsed<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            rejected: Vec::new(),
        }
    }
}

impl<T: DeserializeOwned> Parsed<T> {
    /// Parses each row alone, so that one the model cannot read costs only itself.
    pub fn parse(rows: Vec<Raw>) -> Self {
        let mut parsed = Self::default();
        for raw in rows {
            match Record::parse(raw) {
                Ok(record) => parsed.items.push(record),
                Err((raw, e)) => {
                    (parsed.rejected).push(Quarantined::new(tree(&raw), e.to_string()))
                }
            }
        }
        parsed
    }

    /// How many rows the broker sent.
    pub fn len(&self) -> usize {
        self.items.len() + self.rejected.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn record<T: DeserializeOwned>(raw: Raw, what: &str) -> Result<Record<T>, BrokerError> {
    Record::parse(raw).map_err(|(_, e)| BrokerError::Permanent {
        status: None,
        code: None,
        message: format!("a {what} the broker sent does not parse: {e}"),
    })
}

fn account_path(account_number: &str, rest: &str) -> String {
    // Account numbers are alphanumeric; encoding them anyway keeps a hostile one from
    // walking to another path.
    let encoded: String = url::form_urlencoded::byte_serialize(account_number.as_bytes()).collect();
    format!("/accounts/{encoded}{rest}")
}

impl<'c, B: Broker> Session<'c, B> {
    /// `GET /customers/me/accounts` (not paginated; closed accounts included).
    pub async fn accounts(&self) -> Result<Vec<Record<AccountAuthority>>, BrokerError> {
        let body: ItemsEnvelope = self.get("/customers/me/accounts", &[]).await?;
        records(body.data.items, "account")
    }

    /// `GET /accounts/{n}/trading-status`: one object, set aside rather than failing the sync
    /// when the model cannot read it.
    pub async fn trading_status(
        &self,
        account_number: &str,
    ) -> Result<Parsed<TradingStatus>, BrokerError> {
        let path = account_path(account_number, "/trading-status");
        let body: ObjectEnvelope = self.get(&path, &[]).await?;
        Ok(Parsed::parse(vec![body.data]))
    }

    /// `GET /accounts/{n}/net-liq/history` over `time_back`, oldest bar first (not
    /// paginated). A bar the model cannot read is set aside; the rest are kept.
    pub async fn net_liq_history(
        &self,
        account_number: &str,
        time_back: TimeBack,
    ) -> Result<Parsed<NetLiqPoint>, BrokerError> {
        let query = [("time-back".to_owned(), time_back.as_str().to_owned())];
        let path = account_path(account_number, "/net-liq/history");
        let body: ItemsEnvelope = self.get(&path, &query).await?;
        Ok(Parsed::parse(body.data.items))
    }

    /// `GET /watchlists`: the customer's own watchlists (not paginated).
    pub async fn watchlists(&self) -> Result<Parsed<Watchlist>, BrokerError> {
        let body: ItemsEnvelope = self.get("/watchlists", &[]).await?;
        Ok(Parsed::parse(body.data.items))
    }

    /// `GET /accounts/{n}/positions` (not paginated).
    pub async fn positions(
        &self,
        account_number: &str,
        include_marks: bool,
    ) -> Result<Parsed<Position>, BrokerError> {
        let query = [("include-marks".to_owned(), include_marks.to_string())];
        let path = account_path(account_number, "/positions");
        let body: ItemsEnvelope = self.get(&path, &query).await?;
        Ok(Parsed::parse(body.data.items))
    }

    /// The account's current balances, one per currency. `GET /accounts/{n}/balances` has
    /// answered a single object and, since 2024, `data.items`; both are read. When it answers
    /// nothing or refuses, `/balances/USD` is asked, as the newer SDKs do. Empty only when the
    /// broker has no balance at all for the account.
    pub async fn current_balances(
        &self,
        account_number: &str,
    ) -> Result<CurrentBalances, BrokerError> {
        match self.balances(account_number).await {
            Ok(balances) if !balances.rows.is_empty() => return Ok(balances),
            Ok(_) => {}
            Err(e) if !e.refused() => return Err(e),
            Err(e) => tracing::warn!(error = %e, "balances refused; reading /balances/USD"),
        }
        let rows = match self.balance_row(account_number, "USD").await {
            Ok(usd) => Parsed::parse(vec![usd]),
            Err(BrokerError::NotFound { .. }) => Parsed::default(),
            Err(e) => return Err(e),
        };
        Ok(CurrentBalances {
            rows,
            every_currency: false,
        })
    }

    /// `GET /accounts/{n}/balances`, in either of its shapes.
    async fn balances(&self, account_number: &str) -> Result<CurrentBalances, BrokerError> {
        let path = account_path(account_number, "/balances");
        let body: ObjectEnvelope = self.get(&path, &[]).await?;
        // A few rows, read as a tree to tell the two shapes apart.
        let (rows, every_currency) = match tree(&body.data) {
            Value::Object(mut data) if data.contains_key("items") => match data.remove("items") {
                Some(Value::Array(items)) => (Parsed::parse(items.iter().map(raw).collect()), true),
                // Not a list: nothing it says can end a currency.
                _ => {
                    return Err(BrokerError::Permanent {
                        status: None,
                        code: None,
                        message: "unexpected balances envelope: items is not a list".into(),
                    });
                }
            },
            Value::Object(data) if data.is_empty() => (Parsed::default(), false),
            Value::Object(_) => (Parsed::parse(vec![body.data]), false),
            _ => {
                return Err(BrokerError::Permanent {
                    status: None,
                    code: None,
                    message: "unexpected balances envelope".into(),
                });
            }
        };
        Ok(CurrentBalances {
            rows,
            every_currency,
        })
    }

    /// `GET /accounts/{n}/balances/{currency}`: a single object.
    pub async fn balance(
        &self,
        account_number: &str,
        currency: &str,
    ) -> Result<Record<Balance>, BrokerError> {
        record(self.balance_row(account_number, currency).await?, "balance")
    }

    async fn balance_row(&self, account_number: &str, currency: &str) -> Result<Raw, BrokerError> {
        let path = account_path(account_number, &format!("/balances/{currency}"));
        let body: ObjectEnvelope = self.get(&path, &[]).await?;
        Ok(body.data)
    }

    /// `GET /accounts/{n}/orders/{id}`: one order in any status.
    pub async fn order(&self, account_number: &str, id: i64) -> Result<Parsed<Order>, BrokerError> {
        let path = account_path(account_number, &format!("/orders/{id}"));
        let body: ObjectEnvelope = self.get(&path, &[]).await?;
        Ok(Parsed::parse(vec![body.data]))
    }

    /// `GET /api-quote-tokens`: the DXLink token for greeks (valid 24 hours).
    pub async fn quote_token(&self) -> Result<QuoteToken, BrokerError> {
        let body: ObjectEnvelope = self.get("/api-quote-tokens", &[]).await?;
        Ok(record::<QuoteToken>(body.data, "quote token")?.item)
    }

    pub fn transactions(
        &self,
        account_number: &str,
        query: &TransactionQuery,
    ) -> Pages<'_, 'c, Transaction, B> {
        let per_page = query.per_page.unwrap_or(MAX_TRANSACTIONS_PER_PAGE);
        Pages::new(
            self,
            account_path(account_number, "/transactions"),
            query.query(),
            per_page,
        )
    }

    pub fn orders(&self, account_number: &str, query: &OrderQuery) -> Pages<'_, 'c, Order, B> {
        let per_page = query.per_page.unwrap_or(MAX_ORDERS_PER_PAGE);
        Pages::new(
            self,
            account_path(account_number, "/orders"),
            query.query(),
            per_page,
        )
    }

    /// `GET /accounts/{n}/orders/live`: today's orders in any status, plus working GTC orders.
    pub fn live_orders(&self, account_number: &str) -> Pages<'_, 'c, Order, B> {
        Pages::new(
            self,
            account_path(account_number, "/orders/live"),
            Query::default(),
            MAX_ORDERS_PER_PAGE,
        )
    }

    /// `GET /accounts/{n}/complex-orders`: every complex order of the account (the endpoint
    /// takes no time filter), with their child orders.
    pub fn complex_orders(&self, account_number: &str) -> Pages<'_, 'c, ComplexOrder, B> {
        Pages::new(
            self,
            account_path(account_number, "/complex-orders"),
            Query::default(),
            MAX_COMPLEX_ORDERS_PER_PAGE,
        )
    }

    pub fn balance_snapshots(
        &self,
        account_number: &str,
        query: &SnapshotQuery,
    ) -> Pages<'_, 'c, Balance, B> {
        let per_page = query.per_page.unwrap_or(MAX_SNAPSHOTS_PER_PAGE);
        Pages::new(
            self,
            account_path(account_number, "/balance-snapshots"),
            query.query(),
            per_page,
        )
    }
}

/// One page of a scan.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<Record<T>>,
    /// The rows of the page that do not parse.
    pub rejected: Vec<Quarantined>,
    pub page_offset: u32,
    /// The broker's `total-items` when this page was served.
    pub total_items: Option<u64>,
    /// True on the first page of a scan that started over: pages already handed out will be
    /// handed out again, which an idempotent upsert absorbs.
    pub restarted: bool,
    /// How long the page took to arrive (a request slot of the grant, the broker's answer and
    /// its JSON), and to parse into the model.
    pub fetched_in: std::time::Duration,
    pub parsed_in: std::time::Duration,
    /// The page's place among the scan's buffered pages, free again once the page is dropped.
    _held: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// A scan of a paginated endpoint, a few pages in memory at a time.
///
/// The first page tells how many there are; from then on the scan keeps up to the session's
/// concurrency of the following pages in flight, so the next pages arrive while the consumer
/// stores the last one. Pages are handed out in order, whatever order they arrive in.
///
/// Pages are offset-based, so a row inserted or removed before the cursor shifts every later
/// page. The scan notices it two ways: a page that starts with a row of the previous page, and
/// a final count different from the last `total-items`. Either way it starts over from page 0
/// (a bounded number of times), and the consumer simply upserts the pages again.
pub struct Pages<'s, 'c, T, B: Broker = super::TastytradeClient> {
    session: &'s Session<'c, B>,
    path: String,
    query: Query,
    per_page: u32,
    /// The offset of the next page handed out.
    offset: u32,
    /// The offset of the next page to ask for.
    requested: u32,
    /// The broker's page count, from the last page handed out.
    total_pages: Option<u64>,
    in_flight: FuturesOrdered<Fetch<'s, T>>,
    /// Pages asked for and not yet dropped by the consumer: the scan's memory bound. A page
    /// takes its place when it is asked for, in order, so the next page due always has one.
    buffered: std::sync::Arc<tokio::sync::Semaphore>,
    /// The room's size in pages.
    room: usize,
    /// The first page, read by [`Pages::begin`] before [`Pages::next`] asked for it.
    begun: Option<Result<Page<T>, BrokerError>>,
    received: u64,
    rescans: u32,
    restarted: bool,
    previous_ids: HashSet<i64>,
    done: bool,
}

impl<T, B: Broker> std::fmt::Debug for Pages<'_, '_, T, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages")
            .field("path", &self.path)
            .field("offset", &self.offset)
            .field("in_flight", &self.in_flight.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// A page on its way: its offset, and the page as received.
type Fetch<'s, T> =
    Pin<Box<dyn Future<Output = (u32, Result<Fetched<T>, BrokerError>)> + Send + 's>>;

/// One page as received: its rows parsed, the ids of all of them, and the broker's counts.
struct Fetched<T> {
    parsed: Parsed<T>,
    /// A row that does not parse still holds its place in the pages.
    ids: HashSet<i64>,
    rows: u64,
    total_items: Option<u64>,
    total_pages: Option<u64>,
    fetched_in: std::time::Duration,
    parsed_in: std::time::Duration,
    held: tokio::sync::OwnedSemaphorePermit,
}

impl<T: DeserializeOwned> Fetched<T> {
    fn parse(
        body: ItemsEnvelope,
        fetched_in: std::time::Duration,
        held: tokio::sync::OwnedSemaphorePermit,
    ) -> Self {
        let started = std::time::Instant::now();
        let rows = body.data.items;
        let ids = rows.iter().filter_map(row_id).collect();
        let pagination = body.pagination.as_ref();
        Self {
            ids,
            rows: rows.len() as u64,
            total_items: pagination.and_then(|p| p.total_items),
            total_pages: pagination.and_then(|p| p.total_pages),
            parsed: Parsed::parse(rows),
            fetched_in,
            parsed_in: started.elapsed(),
            held,
        }
    }
}

impl<'s, 'c, T: DeserializeOwned + Send + 'static, B: Broker> Pages<'s, 'c, T, B> {
    fn new(session: &'s Session<'c, B>, path: String, query: Query, per_page: u32) -> Self {
        // The pages in flight, received and being stored together, and at most
        // `ROWS_BUFFERED` rows: memory stays flat whatever the history's length.
        let room = usize::try_from(ROWS_BUFFERED / per_page.max(1))
            .unwrap_or(1)
            .clamp(1, ROOM_PER_REQUEST * session.concurrent_requests());
        Self {
            session,
            path,
            query,
            per_page,
            offset: 0,
            requested: 0,
            total_pages: None,
            in_flight: FuturesOrdered::new(),
            buffered: std::sync::Arc::new(tokio::sync::Semaphore::new(room)),
            room,
            begun: None,
            received: 0,
            rescans: 0,
            restarted: false,
            previous_ids: HashSet::new(),
            done: false,
        }
    }

    /// Keeps this scan's pages in `earlier`'s room: scans read one after another, the next
    /// begun while the earlier one's pages are still being stored, hold no more pages together
    /// than one scan does.
    pub fn after(mut self, earlier: &Self) -> Self {
        self.buffered = std::sync::Arc::clone(&earlier.buffered);
        self.room = earlier.room;
        self
    }

    /// True once the last page has been handed out (or the scan failed).
    pub fn is_finished(&self) -> bool {
        self.done && self.begun.is_none()
    }

    /// True once every page the broker counts has been asked for: the scan needs no more of
    /// the grant's requests, unless it has to start over.
    pub fn all_requested(&self) -> bool {
        self.done
            || self
                .total_pages
                .is_some_and(|total| u64::from(self.requested) >= total)
    }

    /// Reads the first page ahead of [`Pages::next`], which hands it out: a scan that follows
    /// another in the same room is begun while the other's last pages are on their way, so
    /// that the grant's requests do not idle between the two. Dropped before it ends, it loses
    /// nothing: the next call, or `next`, takes the page in flight. It does nothing once the
    /// first page is read, nor in a room of one page, which the earlier scan may need again if
    /// it starts over.
    pub async fn begin(&mut self) {
        if self.begun.is_some() || self.total_pages.is_some() || self.done || self.room < 2 {
            return;
        }
        self.begun = Some(self.fetch().await);
    }

    /// The next page, or `None` when the scan is complete and its count verified.
    pub async fn next(&mut self) -> Option<Result<Page<T>, BrokerError>> {
        let page = match self.begun.take() {
            Some(page) => page,
            None if self.done => return None,
            None => self.fetch().await,
        };
        if page.is_err() {
            self.done = true;
            self.in_flight.clear();
        }
        Some(page)
    }

    /// Asks for the page at `self.requested`, which holds its place among the buffered pages.
    fn request(&mut self, held: tokio::sync::OwnedSemaphorePermit) {
        let (session, path, offset) = (self.session, self.path.clone(), self.requested);
        let mut query = self.query.0.clone();
        query.push(("per-page".into(), self.per_page.to_string()));
        query.push(("page-offset".into(), offset.to_string()));
        self.requested += 1;
        self.in_flight.push_back(Box::pin(async move {
            let started = std::time::Instant::now();
            let body = session.get(&path, &query).await;
            let page = body.map(|body| Fetched::parse(body, started.elapsed(), held));
            (offset, page)
        }));
    }

    /// Asks for as many of the following pages as the session has requests for and the
    /// consumer has room.
    fn read_ahead(&mut self) {
        let Some(total) = self.total_pages else {
            return;
        };
        while self.in_flight.len() < self.session.concurrent_requests()
            && u64::from(self.requested) < total
        {
            let Ok(held) = self.buffered.clone().try_acquire_owned() else {
                return;
            };
            self.request(held);
        }
    }

    async fn fetch(&mut self) -> Result<Page<T>, BrokerError> {
        loop {
            self.read_ahead();
            if self.in_flight.is_empty() {
                let held = (self.buffered.clone().acquire_owned().await)
                    .unwrap_or_else(|_| unreachable!("the scan's semaphore is never closed"));
                self.request(held);
            }
            let Some((offset, fetched)) = self.in_flight.next().await else {
                unreachable!("a page is in flight");
            };
            debug_assert_eq!(offset, self.offset, "pages arrive in order");
            let Fetched {
                parsed: Parsed { items, rejected },
                ids,
                rows,
                total_items,
                total_pages,
                fetched_in,
                parsed_in,
                held,
            } = fetched?;
            if !ids.is_disjoint(&self.previous_ids) {
                self.start_over("rows shifted between pages")?;
                continue;
            }
            self.received += rows;
            self.previous_ids = ids;
            self.total_pages = total_pages;
            let last =
                rows == 0 || total_pages.is_none_or(|pages| u64::from(self.offset) + 1 >= pages);
            if last {
                if let Some(expected) = total_items.filter(|&n| n != self.received) {
                    let received = self.received;
                    self.start_over(&format!(
                        "received {received} rows, the broker counts {expected}"
                    ))?;
                    continue;
                }
                self.done = true;
                // Pages past the last the broker counted, asked for before it said so.
                self.in_flight.clear();
            } else {
                let limit = self.session.limits().max_pages_per_scan;
                if self.offset + 1 >= limit {
                    self.done = true;
                    self.in_flight.clear();
                    return Err(BrokerError::Permanent {
                        status: None,
                        code: None,
                        message: format!("{}: more than {limit} pages in one scan", self.path),
                    });
                }
                self.offset += 1;
                self.read_ahead();
            }
            let page = Page {
                items,
                rejected,
                page_offset: self.offset,
                total_items,
                restarted: self.restarted,
                fetched_in,
                parsed_in,
                _held: Some(held),
            };
            self.restarted = false;
            return Ok(page);
        }
    }

    fn start_over(&mut self, why: &str) -> Result<(), BrokerError> {
        self.rescans += 1;
        if self.rescans > MAX_RESCANS {
            return Err(BrokerError::transient(format!(
                "{}: {why}, still after {MAX_RESCANS} rescans",
                self.path
            )));
        }
        tracing::info!(path = %self.path, reason = why, "pages shifted; scanning again");
        self.offset = 0;
        self.requested = 0;
        self.total_pages = None;
        self.in_flight.clear();
        self.received = 0;
        self.previous_ids.clear();
        self.restarted = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_liq_reads_reach_back_to_the_last_bar_stored_in_the_shortest_window() {
        let now: DateTime<Utc> = "2026-12-02T18:00:00Z".parse().unwrap();
        let ago = |days| Some(now - TimeDelta::days(days));

        assert_eq!(TimeBack::covering(None, now), TimeBack::All);
        assert_eq!(TimeBack::covering(ago(0), now), TimeBack::Month);
        assert_eq!(TimeBack::covering(ago(28), now), TimeBack::Month);
        assert_eq!(TimeBack::covering(ago(31), now), TimeBack::ThreeMonths);
        assert_eq!(TimeBack::covering(ago(200), now), TimeBack::Year);
        assert_eq!(TimeBack::covering(ago(400), now), TimeBack::All);
    }
}
