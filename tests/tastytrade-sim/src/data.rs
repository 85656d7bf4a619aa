//! The simulated customer: accounts with years of deterministic activity.
//!
//! Rows are kept typed and rendered to the broker's JSON on request, so a 100,000-row history
//! costs tens of megabytes, not hundreds. Everything derives from the seed and the anchor date.

use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

/// Transaction ids start above 2^31, as real ones do (reference §4.8.5).
const FIRST_TRANSACTION_ID: i64 = 2_400_000_000;
const FIRST_ORDER_ID: i64 = 300_000_000;

#[derive(Debug, Clone)]
pub struct Sizes {
    pub accounts: usize,
    pub transactions: usize,
    pub orders: usize,
    /// Years of history before the anchor date.
    pub years: i64,
}

#[derive(Debug, Clone)]
pub struct Account {
    pub number: String,
    pub nickname: String,
    pub type_name: &'static str,
    pub margin_or_cash: &'static str,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub transactions: Vec<Tx>,
    pub orders: Vec<Order>,
    pub positions: Vec<Position>,
    pub balances: Vec<Balance>,
    pub snapshots: Vec<Snapshot>,
    pub complex_orders: Vec<ComplexOrder>,
    /// `GET /accounts/{n}/net-liq/history`, oldest first.
    pub net_liq: Vec<NetLiqBar>,
    pub trading_status: TradingStatus,
}

impl Account {
    /// Renders every row ahead of the first page, so that whoever reads the history first
    /// (our sync or the bench's peer) is not the one who pays for printing it.
    pub fn render_all(&self) {
        for t in &self.transactions {
            t.rendered.get_or(|| t.render(&self.number));
        }
        for o in &self.orders {
            o.rendered.get_or(|| o.render(&self.number));
        }
    }

    /// Drops every row's rendered JSON: the account is about to change, and a row's text must
    /// not outlive the values it was printed from.
    pub fn forget_rendered(&mut self) {
        for t in &mut self.transactions {
            t.rendered = Rendered::default();
        }
        for o in &mut self.orders {
            o.rendered = Rendered::default();
        }
    }
}

/// One of the customer's watchlists (`GET /watchlists`).
#[derive(Debug, Clone)]
pub struct Watchlist {
    pub name: String,
    pub order_index: i64,
    /// Symbol and instrument type, in the customer's order.
    pub entries: Vec<(String, &'static str)>,
}

impl Watchlist {
    /// The customer's watchlists before any activity.
    pub fn seeded() -> Vec<Watchlist> {
        let list = |name: &str, order_index, symbols: &[&str]| Watchlist {
            name: name.to_owned(),
            order_index,
            entries: (symbols.iter())
                .map(|s| ((*s).to_owned(), "Equity"))
                .collect(),
        };
        vec![
            list("Tech", 1, &["AAPL", "MSFT", "NVDA"]),
            list("Income", 2, &["SCHD", "SPY"]),
            list("Index", 3, &["SPY", "QQQ", "IWM", "DIA"]),
        ]
    }

    /// The SDK's `PrivateWatchlist` fields.
    pub fn render(&self) -> Value {
        let entries: Vec<Value> = (self.entries.iter())
            .map(|(symbol, kind)| json!({"symbol": symbol, "instrument-type": kind}))
            .collect();
        json!({
            "name": self.name, "watchlist-entries": entries,
            "group-name": "main", "order-index": self.order_index,
        })
    }
}

/// One bar of the net-liq chart: the value, the pending cash and their total, each as open,
/// high, low and close.
#[derive(Debug, Clone)]
pub struct NetLiqBar {
    pub time: DateTime<Utc>,
    pub value: [Decimal; 4],
    pub pending_cash: [Decimal; 4],
}

impl NetLiqBar {
    /// A day's bar that opens at `open` and closes at `close`, its range a quarter of the move
    /// beyond each end; pending cash follows the day of the year so that it is not all zero.
    pub fn moving(time: DateTime<Utc>, open: Decimal, close: Decimal) -> Self {
        let reach = ((close - open).abs() / Decimal::from(4)).round_dp(2);
        let pending = -money(i64::from(time.ordinal() % 7) * 1_250);
        Self {
            time,
            value: [
                open,
                open.max(close) + reach,
                open.min(close) - reach,
                close,
            ],
            pending_cash: [pending; 4],
        }
    }

    pub fn close(&self) -> Decimal {
        self.value[3]
    }

    /// Every field the SDK's `NetLiqOhlc` requires, as decimal strings, and the broker's
    /// `time` format (reference §4.8.4).
    pub fn render(&self) -> Value {
        let mut m = Map::new();
        let names = ["open", "high", "low", "close"];
        for (i, name) in names.iter().enumerate() {
            let total = self.value[i] + self.pending_cash[i];
            m.insert((*name).into(), json!(self.value[i].to_string()));
            m.insert(
                format!("pending-cash-{name}"),
                json!(self.pending_cash[i].to_string()),
            );
            m.insert(format!("total-{name}"), json!(total.to_string()));
        }
        let time = self.time.format("%Y-%m-%d %H:%M:%S+00").to_string();
        m.insert("time".into(), json!(time));
        Value::Object(m)
    }
}

/// `GET /accounts/{n}/trading-status`: what the account may do today.
#[derive(Debug, Clone)]
pub struct TradingStatus {
    pub id: i64,
    pub day_trade_count: i64,
    pub is_pattern_day_trader: bool,
    pub is_closing_only: bool,
    pub options_level: &'static str,
    pub pdt_reset_on: Option<NaiveDate>,
    pub updated_at: DateTime<Utc>,
}

impl TradingStatus {
    /// Every field the SDK's `TradingStatus` model requires, with the API's types.
    pub fn render(&self, account: &str) -> Value {
        json!({
            "account-number": account,
            "autotrade-account-type": "Default",
            "clearing-account-number": format!("C{account}"),
            "clearing-aggregation-identifier": "TW",
            "day-trade-count": self.day_trade_count,
            "equities-margin-calculation-type": "Reg T",
            "fee-schedule-name": "default",
            "futures-margin-rate-multiplier": "0.0",
            "has-intraday-equities-margin": false,
            "id": self.id,
            "is-aggregated-at-clearing": false,
            "is-closed": false,
            "is-closing-only": self.is_closing_only,
            "is-cryptocurrency-closing-only": false,
            "is-cryptocurrency-enabled": false,
            "is-equity-offering-closing-only": false,
            "is-equity-offering-enabled": false,
            "is-frozen": false,
            "is-full-equity-margin-required": false,
            "is-futures-closing-only": false,
            "is-futures-enabled": true,
            "is-futures-intra-day-enabled": false,
            "is-in-day-trade-equity-maintenance-call": false,
            "is-in-margin-call": false,
            "is-pattern-day-trader": self.is_pattern_day_trader,
            "is-portfolio-margin-enabled": false,
            "is-risk-reducing-only": false,
            "is-roll-the-day-forward-enabled": false,
            "is-small-notional-futures-intra-day-enabled": false,
            "are-far-otm-net-options-restricted": true,
            "options-level": self.options_level,
            "pdt-reset-on": self.pdt_reset_on.map(|d| d.to_string()),
            "short-calls-enabled": false,
            "small-notional-futures-margin-rate-multiplier": "0.0",
            "updated-at": self.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        })
    }
}

/// A row's JSON as the broker sends it, rendered once and kept: a page is cut from the text.
/// The simulator runs on the cores of the client it serves, where rendering every page anew
/// took about a third of the machine in a full sync; a broker's work is on its own machines.
/// The account's rows forget it whenever the account changes ([`Account::forget_rendered`]).
#[derive(Debug, Clone, Default)]
pub struct Rendered(std::sync::OnceLock<Box<serde_json::value::RawValue>>);

impl Rendered {
    pub fn get_or(&self, render: impl FnOnce() -> Value) -> &serde_json::value::RawValue {
        self.0.get_or_init(|| raw(&render()))
    }
}

/// A rendered row as the JSON text it prints as.
pub fn raw(row: &Value) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(row).expect("a JSON value prints")
}

#[derive(Debug, Clone)]
pub struct Tx {
    pub id: i64,
    pub executed_at: DateTime<Utc>,
    pub date: NaiveDate,
    pub kind: &'static str,
    pub sub_type: String,
    pub action: Option<&'static str>,
    pub symbol: Option<String>,
    pub underlying: Option<String>,
    pub instrument_type: Option<&'static str>,
    pub description: String,
    pub quantity: Option<Decimal>,
    pub price: Option<Decimal>,
    /// Signed gross value: negative is a Debit.
    pub value: Decimal,
    /// Fees as positive magnitudes (always debits).
    pub commission: Option<Decimal>,
    pub clearing_fees: Option<Decimal>,
    pub regulatory_fees: Option<Decimal>,
    pub index_option_fees: Option<Decimal>,
    pub is_estimated_fee: bool,
    pub order_id: Option<i64>,
    pub reverses_id: Option<i64>,
    pub currency: &'static str,
    pub rendered: Rendered,
}

impl Tx {
    pub fn net_value(&self) -> Decimal {
        let fees = [
            self.commission,
            self.clearing_fees,
            self.regulatory_fees,
            self.index_option_fees,
        ];
        self.value - fees.iter().flatten().sum::<Decimal>()
    }

    pub fn render(&self, account: &str) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("account-number".into(), json!(account));
        m.insert("transaction-type".into(), json!(self.kind));
        m.insert("transaction-sub-type".into(), json!(self.sub_type));
        m.insert("description".into(), json!(self.description));
        m.insert("executed-at".into(), json!(iso(self.executed_at)));
        m.insert("transaction-date".into(), json!(self.date.to_string()));
        put_signed(&mut m, "value", Some(self.value));
        put_signed(&mut m, "net-value", Some(self.net_value()));
        m.insert("is-estimated-fee".into(), json!(self.is_estimated_fee));
        m.insert("currency".into(), json!(self.currency));
        for (key, fee) in [
            ("commission", self.commission),
            ("clearing-fees", self.clearing_fees),
            ("regulatory-fees", self.regulatory_fees),
            ("proprietary-index-option-fees", self.index_option_fees),
        ] {
            put_signed(&mut m, key, fee.map(|f| -f));
        }
        put_str(&mut m, "action", self.action);
        put_str(&mut m, "symbol", self.symbol.as_deref());
        put_str(&mut m, "underlying-symbol", self.underlying.as_deref());
        put_str(&mut m, "instrument-type", self.instrument_type);
        put_dec(&mut m, "quantity", self.quantity);
        put_dec(&mut m, "price", self.price);
        if let Some(order) = self.order_id {
            m.insert("order-id".into(), json!(order));
            m.insert("leg-count".into(), json!(1));
            m.insert("exec-id".into(), json!(format!("7_{}", self.id)));
            m.insert("ext-global-order-number".into(), json!(order % 100_000));
            m.insert("exchange-affiliation-identifier".into(), json!(""));
            m.insert("destination-venue".into(), json!("CITADEL_OPTIONS_A"));
        }
        if let Some(reversed) = self.reverses_id {
            m.insert("reverses-id".into(), json!(reversed));
        }
        Value::Object(m)
    }
}

#[derive(Debug, Clone)]
pub struct Order {
    pub id: i64,
    pub status: &'static str,
    pub order_type: &'static str,
    pub time_in_force: &'static str,
    pub underlying: String,
    pub underlying_instrument_type: &'static str,
    /// Signed limit price: positive is a Credit.
    pub price: Option<Decimal>,
    pub received_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub terminal_at: Option<DateTime<Utc>>,
    pub legs: Vec<OrderLeg>,
    /// The complex order it belongs to, and its tag there (`OTOCO::trigger-order`).
    pub complex: Option<(i64, String)>,
    pub rendered: Rendered,
}

/// `GET /accounts/{n}/complex-orders`: a group of the account's orders.
#[derive(Debug, Clone)]
pub struct ComplexOrder {
    pub id: i64,
    pub kind: &'static str,
    pub trigger: Option<i64>,
    pub orders: Vec<i64>,
}

impl ComplexOrder {
    /// The SDK's `PlacedComplexOrder`: the group with its child orders rendered whole.
    pub fn render(&self, account: &str, orders: &[Order]) -> Value {
        let order = |id: i64| (orders.iter().find(|o| o.id == id)).map(|o| o.render(account));
        let children: Vec<Value> = self.orders.iter().filter_map(|id| order(*id)).collect();
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("account-number".into(), json!(account));
        m.insert("type".into(), json!(self.kind));
        m.insert("orders".into(), json!(children));
        if let Some(trigger) = self.trigger.and_then(order) {
            m.insert("trigger-order".into(), trigger);
        }
        let terminal = (self.orders.iter())
            .filter_map(|id| orders.iter().find(|o| o.id == *id)?.terminal_at)
            .max();
        if let Some(at) = terminal {
            m.insert("terminal-at".into(), json!(iso(at)));
        }
        m.insert("related-orders".into(), json!([]));
        Value::Object(m)
    }
}

#[derive(Debug, Clone)]
pub struct OrderLeg {
    pub symbol: String,
    pub instrument_type: &'static str,
    pub action: &'static str,
    pub quantity: Decimal,
    pub fills: Vec<OrderFill>,
}

#[derive(Debug, Clone)]
pub struct OrderFill {
    pub id: String,
    pub quantity: Decimal,
    pub price: Decimal,
    pub filled_at: DateTime<Utc>,
}

impl Order {
    pub fn is_live_on(&self, day: NaiveDate) -> bool {
        self.received_at.date_naive() == day
            || matches!(self.status, "Live" | "Received" | "Routed")
    }

    pub fn render(&self, account: &str) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("account-number".into(), json!(account));
        m.insert("time-in-force".into(), json!(self.time_in_force));
        m.insert("order-type".into(), json!(self.order_type));
        m.insert(
            "size".into(),
            self.legs
                .first()
                .map_or(json!(1), |l| decimal_int(l.quantity)),
        );
        m.insert("underlying-symbol".into(), json!(self.underlying));
        m.insert(
            "underlying-instrument-type".into(),
            json!(self.underlying_instrument_type),
        );
        m.insert("status".into(), json!(self.status));
        let working = matches!(self.status, "Live" | "Received" | "Routed");
        m.insert("cancellable".into(), json!(working));
        m.insert("editable".into(), json!(working));
        m.insert("edited".into(), json!(false));
        put_signed(&mut m, "price", self.price);
        m.insert("received-at".into(), json!(iso(self.received_at)));
        m.insert(
            "live-at".into(),
            json!(iso(self.received_at + Duration::milliseconds(110))),
        );
        // Epoch milliseconds, as the broker sends it.
        m.insert(
            "updated-at".into(),
            json!(self.updated_at.timestamp_millis()),
        );
        if let Some(t) = self.terminal_at {
            m.insert("terminal-at".into(), json!(iso(t)));
            if self.status == "Cancelled" {
                m.insert("cancelled-at".into(), json!(iso(t)));
            }
        }
        if let Some((id, tag)) = &self.complex {
            m.insert("complex-order-id".into(), json!(id));
            m.insert("complex-order-tag".into(), json!(tag));
        }
        if self.time_in_force == "GTC" {
            m.insert(
                "gtc-date".into(),
                json!(
                    (self.received_at + Duration::days(180))
                        .date_naive()
                        .to_string()
                ),
            );
        }
        // A string, as the SDK's model and the SPEC have it (the docs' example shows a number).
        m.insert("user-id".into(), json!("99"));
        m.insert("source".into(), json!("tastytrade-sim"));
        let legs: Vec<Value> = self
            .legs
            .iter()
            .map(|leg| {
                let filled: Decimal = leg.fills.iter().map(|f| f.quantity).sum();
                json!({
                    "instrument-type": leg.instrument_type,
                    "symbol": leg.symbol,
                    "quantity": decimal_int(leg.quantity),
                    "remaining-quantity": decimal_int(leg.quantity - filled),
                    "action": leg.action,
                    "fills": leg.fills.iter().map(|f| json!({
                        "fill-id": f.id,
                        "quantity": decimal_int(f.quantity),
                        "fill-price": f.price.to_string(),
                        "filled-at": iso(f.filled_at),
                        "destination-venue": "CITADEL_OPTIONS_A",
                        "ext-group-fill-id": format!("{}", f.filled_at.timestamp_millis()),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        m.insert("legs".into(), Value::Array(legs));
        Value::Object(m)
    }
}

#[derive(Debug, Clone)]
pub struct Position {
    pub symbol: String,
    pub underlying: String,
    pub instrument_type: &'static str,
    /// Signed: negative is Short.
    pub quantity: Decimal,
    pub multiplier: i64,
    pub average_open_price: Decimal,
    /// `None` renders as `"NaN"`.
    pub close_price: Option<Decimal>,
    pub mark: Decimal,
    pub fixing_price: Option<Option<Decimal>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub quantity_as_string: bool,
    pub created_at: DateTime<Utc>,
    /// The market-data feed's name for an option (`streamer-symbol`, which the SPEC lists on
    /// positions).
    pub streamer_symbol: Option<String>,
}

impl Position {
    pub fn render(&self, account: &str, include_marks: bool, today: NaiveDate) -> Value {
        let magnitude = self.quantity.abs();
        let quantity = if self.quantity_as_string {
            json!(magnitude.to_string())
        } else {
            json!(decimal_int(magnitude))
        };
        let mut m = Map::new();
        m.insert("account-number".into(), json!(account));
        m.insert("symbol".into(), json!(self.symbol));
        m.insert("instrument-type".into(), json!(self.instrument_type));
        m.insert("underlying-symbol".into(), json!(self.underlying));
        m.insert("quantity".into(), quantity);
        m.insert(
            "quantity-direction".into(),
            json!(if self.quantity < Decimal::ZERO {
                "Short"
            } else {
                "Long"
            }),
        );
        m.insert(
            "close-price".into(),
            json!(self.close_price.map_or("NaN".to_owned(), |p| p.to_string())),
        );
        m.insert(
            "average-open-price".into(),
            json!(self.average_open_price.to_string()),
        );
        m.insert(
            "average-daily-market-close-price".into(),
            json!(self.average_open_price.to_string()),
        );
        m.insert(
            "average-yearly-market-close-price".into(),
            json!(self.average_open_price.to_string()),
        );
        m.insert("multiplier".into(), json!(self.multiplier));
        m.insert(
            "cost-effect".into(),
            json!(if self.quantity < Decimal::ZERO {
                "Debit"
            } else {
                "Credit"
            }),
        );
        m.insert("is-suppressed".into(), json!(false));
        m.insert("is-frozen".into(), json!(false));
        m.insert("restricted-quantity".into(), json!(0));
        m.insert("realized-day-gain".into(), json!("0.0"));
        m.insert("realized-day-gain-effect".into(), json!("None"));
        m.insert("realized-day-gain-date".into(), json!(today.to_string()));
        m.insert("realized-today".into(), json!("0.0"));
        m.insert("realized-today-effect".into(), json!("None"));
        m.insert("realized-today-date".into(), json!(today.to_string()));
        if let Some(feed) = &self.streamer_symbol {
            m.insert("streamer-symbol".into(), json!(feed));
        }
        if include_marks {
            m.insert("mark".into(), json!(self.mark.to_string()));
            m.insert("mark-price".into(), json!(self.mark.to_string()));
        }
        if let Some(fixing) = self.fixing_price {
            m.insert(
                "fixing-price".into(),
                json!(fixing.map_or("NaN".to_owned(), |p| p.to_string())),
            );
        }
        if let Some(t) = self.expires_at {
            m.insert("expires-at".into(), json!(iso(t)));
        }
        m.insert("created-at".into(), json!(iso(self.created_at)));
        m.insert(
            "updated-at".into(),
            json!(iso(self.created_at + Duration::days(1))),
        );
        Value::Object(m)
    }
}

#[derive(Debug, Clone)]
pub struct Balance {
    pub currency: &'static str,
    pub cash_balance: Decimal,
    pub net_liquidating_value: Decimal,
    pub equity_buying_power: Decimal,
    /// Signed: negative is a Debit.
    pub pending_cash: Decimal,
}

impl Balance {
    pub fn render(
        &self,
        account: &str,
        snapshot_date: NaiveDate,
        updated_at: DateTime<Utc>,
    ) -> Value {
        let mut m = Map::new();
        m.insert("account-number".into(), json!(account));
        m.insert("currency".into(), json!(self.currency));
        m.insert("cash-balance".into(), json!(self.cash_balance.to_string()));
        m.insert(
            "net-liquidating-value".into(),
            json!(self.net_liquidating_value.to_string()),
        );
        m.insert(
            "equity-buying-power".into(),
            json!(self.equity_buying_power.to_string()),
        );
        m.insert(
            "derivative-buying-power".into(),
            json!(self.equity_buying_power.to_string()),
        );
        m.insert("day-trading-buying-power".into(), json!("0.0"));
        m.insert(
            "long-equity-value".into(),
            json!((self.net_liquidating_value - self.cash_balance).to_string()),
        );
        m.insert("short-equity-value".into(), json!("0.0"));
        m.insert("long-derivative-value".into(), json!("0.0"));
        m.insert("short-derivative-value".into(), json!("0.0"));
        m.insert(
            "margin-equity".into(),
            json!(self.net_liquidating_value.to_string()),
        );
        m.insert("maintenance-requirement".into(), json!("0.0"));
        m.insert(
            "available-trading-funds".into(),
            json!(self.cash_balance.to_string()),
        );
        m.insert(
            "cash-available-to-withdraw".into(),
            json!(self.cash_balance.to_string()),
        );
        m.insert(
            "maintenance-excess".into(),
            json!(self.net_liquidating_value.to_string()),
        );
        put_signed(&mut m, "pending-cash", Some(self.pending_cash));
        m.insert("snapshot-date".into(), json!(snapshot_date.to_string()));
        m.insert("updated-at".into(), json!(iso(updated_at)));
        // A SPEC-only extra, as real responses carry fields we do not model.
        m.insert(
            "cash-settle-balance".into(),
            json!(self.cash_balance.to_string()),
        );
        m.insert(
            "long-margineable-value".into(),
            json!((self.net_liquidating_value - self.cash_balance).to_string()),
        );
        put_signed(
            &mut m,
            "unsettled-cryptocurrency-fiat-amount",
            Some(Decimal::ZERO),
        );
        zero_amounts(&mut m, BALANCE_AMOUNTS);
        Value::Object(m)
    }
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub date: NaiveDate,
    pub currency: &'static str,
    pub net_liquidating_value: Decimal,
    pub cash_balance: Decimal,
    /// Renders with only the ten keys of the observed sparse EOD row (reference §4.4).
    pub sparse: bool,
}

impl Snapshot {
    pub fn render(&self, account: &str) -> Value {
        let mut m = Map::new();
        m.insert("account-number".into(), json!(account));
        m.insert("currency".into(), json!(self.currency));
        m.insert("snapshot-date".into(), json!(self.date.to_string()));
        m.insert("time-of-day".into(), json!("EOD"));
        m.insert("pending-cash".into(), json!("0.0"));
        m.insert("pending-cash-effect".into(), json!("None"));
        m.insert("day-trade-excess".into(), json!("0.0"));
        m.insert("futures-margin-requirement".into(), json!("0.0"));
        m.insert("long-futures-derivative-value".into(), json!("0.0"));
        m.insert("short-futures-derivative-value".into(), json!("0.0"));
        if !self.sparse {
            zero_amounts(&mut m, SNAPSHOT_AMOUNTS);
            m.insert("cash-balance".into(), json!(self.cash_balance.to_string()));
            m.insert(
                "net-liquidating-value".into(),
                json!(self.net_liquidating_value.to_string()),
            );
            m.insert(
                "equity-buying-power".into(),
                json!(self.cash_balance.to_string()),
            );
            m.insert(
                "long-equity-value".into(),
                json!((self.net_liquidating_value - self.cash_balance).to_string()),
            );
        }
        Value::Object(m)
    }
}

fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f+00:00").to_string()
}

fn decimal_int(d: Decimal) -> Value {
    // Quantities go out as bare JSON numbers, as the broker sends them on these endpoints.
    Value::Number(
        serde_json::Number::from_str(&d.normalize().to_string()).unwrap_or_else(|_| 0.into()),
    )
}

/// The amounts every balance carries (the SDK's `AccountBalance` requires each one, reference
/// §4.3) that the simulated account holds none of: futures, crypto, bonds, calls.
const BALANCE_AMOUNTS: &[&str] = &[
    "long-futures-value",
    "short-futures-value",
    "long-futures-derivative-value",
    "short-futures-derivative-value",
    "short-margineable-value",
    "futures-margin-requirement",
    "futures-overnight-margin-requirement",
    "futures-intraday-margin-requirement",
    "maintenance-call-value",
    "reg-t-call-value",
    "day-trading-call-value",
    "day-equity-call-value",
    "day-trade-excess",
    "reg-t-margin-requirement",
    "long-cryptocurrency-value",
    "short-cryptocurrency-value",
    "cryptocurrency-margin-requirement",
    "effective-cryptocurrency-buying-power",
    "closed-loop-available-balance",
    "equity-offering-margin-requirement",
    "long-bond-value",
    "bond-margin-requirement",
    "used-derivative-buying-power",
    "pending-margin-interest",
];

/// The amounts a full EOD snapshot carries besides its cash and value (the SDK's
/// `AccountBalanceSnapshot` requires them, reference §4.4); the sparse row has none of them.
const SNAPSHOT_AMOUNTS: &[&str] = &[
    "short-equity-value",
    "long-derivative-value",
    "short-derivative-value",
    "long-futures-value",
    "short-futures-value",
    "long-margineable-value",
    "short-margineable-value",
    "margin-equity",
    "derivative-buying-power",
    "day-trading-buying-power",
    "maintenance-requirement",
    "maintenance-call-value",
    "reg-t-call-value",
    "day-trading-call-value",
    "day-equity-call-value",
    "available-trading-funds",
    "cash-available-to-withdraw",
];

/// Sets each of `keys` the row does not carry yet to zero.
fn zero_amounts(m: &mut Map<String, Value>, keys: &[&str]) {
    for key in keys {
        m.entry(*key).or_insert_with(|| json!("0.0"));
    }
}

fn put_signed(m: &mut Map<String, Value>, key: &str, signed: Option<Decimal>) {
    let Some(v) = signed else { return };
    let effect = if v.is_zero() {
        "None"
    } else if v < Decimal::ZERO {
        "Debit"
    } else {
        "Credit"
    };
    m.insert(key.into(), json!(v.abs().to_string()));
    m.insert(format!("{key}-effect"), json!(effect));
}

fn put_str(m: &mut Map<String, Value>, key: &str, v: Option<&str>) {
    if let Some(v) = v {
        m.insert(key.into(), json!(v));
    }
}

fn put_dec(m: &mut Map<String, Value>, key: &str, v: Option<Decimal>) {
    if let Some(v) = v {
        m.insert(key.into(), json!(v.to_string()));
    }
}

pub fn money(cents: i64) -> Decimal {
    Decimal::new(cents, 2)
}

const UNDERLYINGS: &[&str] = &["SPY", "QQQ", "AAPL", "MSFT", "IWM", "TSLA", "SCHD", "NVDA"];
const RARE_SUB_TYPES: &[(&str, &str)] = &[
    ("Receive Deliver", "ACAT"),
    ("Receive Deliver", "Forward Split"),
    ("Receive Deliver", "Reverse Split"),
    ("Receive Deliver", "Symbol Change"),
    ("Receive Deliver", "Special Dividend"),
    ("Receive Deliver", "Stock Merger"),
    ("Receive Deliver", "Cash Merger"),
    ("Receive Deliver", "Exercise"),
    ("Receive Deliver", "Cash Settled Exercise"),
    ("Receive Deliver", "Futures Settlement"),
    ("Receive Deliver", "Maturity"),
    ("Receive Deliver", "Reverse Split Removal"),
    ("Receive Deliver", "Stock Merger Removal"),
    ("Money Movement", "Balance Adjustment"),
    ("Money Movement", "Mark to Market"),
    ("Money Movement", "Fully Paid Stock Lending Income"),
    ("Money Movement", "Transfer"),
    ("Administrative Transfer", "Transfer"),
];

/// A generator for one customer; `next_transaction_id` continues after generation so that
/// activity added later gets fresh ids.
#[derive(Debug)]
pub struct Generator {
    rng: fastrand::Rng,
    pub anchor: NaiveDate,
    pub next_transaction_id: i64,
    pub next_order_id: i64,
}

impl Generator {
    pub fn new(seed: u64, anchor: NaiveDate) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
            anchor,
            next_transaction_id: FIRST_TRANSACTION_ID,
            next_order_id: FIRST_ORDER_ID,
        }
    }

    pub fn accounts(&mut self, sizes: &Sizes) -> Vec<Account> {
        (0..sizes.accounts.max(1))
            .map(|i| {
                // The last of several accounts is closed, as customers' old IRAs are.
                let closed = sizes.accounts > 1 && i == sizes.accounts - 1;
                self.account(i, sizes, closed)
            })
            .collect()
    }

    fn account(&mut self, index: usize, sizes: &Sizes, closed: bool) -> Account {
        let number = format!(
            "5WT{:05}",
            1 + index + (self.rng.u32(0..1000) as usize) * 10
        );
        let opened_at =
            day_start(self.anchor - Duration::days(365 * sizes.years)) + Duration::hours(15);
        let closed_at = closed.then(|| day_start(self.anchor - Duration::days(90)));
        // History stops at the start of the anchor day, so nothing is dated in the future
        // whatever the hour the simulator starts.
        let end = closed_at.unwrap_or_else(|| day_start(self.anchor));
        let (transactions, orders) = if closed {
            (
                self.transactions(opened_at, end, sizes.transactions / 10 + 5),
                self.orders(opened_at, end, sizes.orders / 10 + 2),
            )
        } else {
            (
                self.transactions(opened_at, end, sizes.transactions),
                self.orders(opened_at, end, sizes.orders),
            )
        };
        let positions = if closed {
            Vec::new()
        } else {
            self.positions(opened_at)
        };
        let balances = vec![
            Balance {
                currency: "USD",
                cash_balance: money(self.rng.i64(1_000_000..50_000_000)),
                net_liquidating_value: money(self.rng.i64(50_000_000..90_000_000)),
                equity_buying_power: money(self.rng.i64(1_000_000..9_000_000)),
                pending_cash: money(-self.rng.i64(0..50_000)),
            },
            Balance {
                currency: "EUR",
                cash_balance: money(self.rng.i64(0..500_000)),
                net_liquidating_value: money(self.rng.i64(500_000..900_000)),
                equity_buying_power: money(0),
                pending_cash: money(self.rng.i64(0..5_000)),
            },
        ];
        let snapshots = self.snapshots(opened_at.date_naive(), end.date_naive());
        let net_liq = net_liq_bars(&snapshots, end.date_naive());
        // From the account's place, not the generator's stream: the rest of the data stays as
        // the seed always made it.
        let trading_status = TradingStatus {
            id: 900_000 + index as i64,
            day_trade_count: (index % 4) as i64,
            is_pattern_day_trader: index % 3 == 0,
            is_closing_only: closed,
            options_level: [
                "No Restrictions",
                "Defined Risk Spreads",
                "Covered And Cash Secured",
            ][index % 3],
            pdt_reset_on: (index % 3 == 0).then(|| self.anchor + Duration::days(30)),
            updated_at: day_start(self.anchor) - Duration::hours(10),
        };
        Account {
            nickname: format!("Account {}", index + 1),
            type_name: ["Individual", "Roth IRA", "Traditional IRA"][index % 3],
            margin_or_cash: if index % 3 == 0 { "Margin" } else { "Cash" },
            number,
            opened_at,
            closed_at,
            transactions,
            orders,
            positions,
            balances,
            snapshots,
            complex_orders: Vec::new(),
            net_liq,
            trading_status,
        }
    }

    /// `count` transactions spread over [start, end], ascending by time and id.
    pub fn transactions(
        &mut self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        count: usize,
    ) -> Vec<Tx> {
        let span = (end - start).num_seconds().max(1);
        let mut times: Vec<i64> = (0..count).map(|_| self.rng.i64(0..span)).collect();
        times.sort_unstable();
        let mut out: Vec<Tx> = Vec::with_capacity(count + 8);
        let mut rare = 0usize;
        // An event that posts two rows (an assignment, a dividend with its withholding) takes
        // the next time slot too, so the history still reaches `end` instead of stopping short
        // of it once `count` rows are reached.
        let mut skip = 0usize;
        for offset in times {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            if out.len() >= count {
                break;
            }
            let before = out.len();
            let at = start + Duration::seconds(offset);
            let roll = self.rng.u32(0..100);
            let remaining = count - out.len();
            match roll {
                0..=54 => out.push(self.trade(at)),
                55..=62 => out.push(self.expiration(at)),
                63..=65 if remaining >= 2 => out.extend(self.assignment(at)),
                66..=67 => out.push(self.cash_settled(at)),
                68..=71 if remaining >= 2 => out.extend(self.dividend(at, true)),
                72..=75 => out.extend(self.dividend(at, false)),
                76..=79 => out.push(self.money_movement(at, "Credit Interest", 1, 5_000)),
                80..=81 => out.push(self.money_movement(at, "Debit Interest", -1, 5_000)),
                82..=85 => out.push(self.money_movement(at, "Deposit", 1, 2_000_000)),
                86..=87 => out.push(self.money_movement(at, "Withdrawal", -1, 1_000_000)),
                88..=89 => out.push(self.money_movement(at, "Fee", -1, 5_000)),
                90..=92 if !out.is_empty() => {
                    let target = out[self.rng.usize(0..out.len())].clone();
                    out.push(self.reversal(at, &target));
                }
                _ => {
                    let (kind, sub) = RARE_SUB_TYPES[rare % RARE_SUB_TYPES.len()];
                    rare += 1;
                    out.push(self.other(at, kind, sub));
                }
            }
            skip = (out.len() - before).saturating_sub(1);
        }
        out.truncate(count);
        // A posting due after `end` (a cash settlement at 02:00 the next day) is made at `end`
        // instead: the broker never shows a row from the future.
        for tx in &mut out {
            tx.executed_at = tx.executed_at.min(end);
        }
        // Late postings (22:00 UTC expirations) can land after a later-generated row's time;
        // ids follow the order of execution, as the broker's do.
        out.sort_by_key(|t| t.executed_at);
        for tx in &mut out {
            tx.id = self.take_transaction_id();
        }
        fix_reversal_targets(&mut out);
        let recent = day_start(self.anchor - Duration::days(3));
        for tx in &mut out {
            tx.is_estimated_fee = tx.kind == "Trade" && tx.executed_at >= recent;
        }
        out
    }

    pub fn take_transaction_id(&mut self) -> i64 {
        self.next_transaction_id += 1 + i64::from(self.rng.u32(0..7));
        self.next_transaction_id
    }

    fn base(&self, at: DateTime<Utc>, kind: &'static str, sub: &str) -> Tx {
        Tx {
            id: 0,
            executed_at: at,
            date: trade_date(at),
            kind,
            sub_type: sub.to_owned(),
            action: None,
            symbol: None,
            underlying: None,
            instrument_type: None,
            description: String::new(),
            quantity: None,
            price: None,
            value: Decimal::ZERO,
            commission: None,
            clearing_fees: None,
            regulatory_fees: None,
            index_option_fees: None,
            is_estimated_fee: false,
            order_id: None,
            reverses_id: None,
            currency: "USD",
            rendered: Rendered::default(),
        }
    }

    fn option_symbol(&mut self, at: DateTime<Utc>) -> (String, String, NaiveDate) {
        let underlying = UNDERLYINGS[self.rng.usize(0..UNDERLYINGS.len())].to_owned();
        let expiry = friday_on_or_after(at.date_naive() + Duration::days(self.rng.i64(1..60)));
        let strike = self.rng.i64(20..700) * 1000 + if self.rng.bool() { 500 } else { 0 };
        let kind = if self.rng.bool() { 'C' } else { 'P' };
        (
            format!(
                "{underlying:<6}{}{kind}{strike:08}",
                expiry.format("%y%m%d")
            ),
            underlying,
            expiry,
        )
    }

    fn trade(&mut self, at: DateTime<Utc>) -> Tx {
        let (symbol, underlying, _) = self.option_symbol(at);
        let actions = [
            "Sell to Open",
            "Buy to Open",
            "Buy to Close",
            "Sell to Close",
        ];
        let action = actions[self.rng.usize(0..4)];
        let quantity = Decimal::from(self.rng.i64(1..20));
        let price = money(self.rng.i64(5..2_500));
        let gross = quantity * price * Decimal::from(100);
        let sign = if action.starts_with("Sell") {
            Decimal::ONE
        } else {
            Decimal::NEGATIVE_ONE
        };
        let mut tx = self.base(at, "Trade", action);
        tx.action = Some(action);
        tx.description = format!(
            "{} {quantity} {symbol} @ {price}",
            if sign > Decimal::ZERO {
                "Sold"
            } else {
                "Bought"
            }
        );
        tx.symbol = Some(symbol);
        tx.underlying = Some(underlying);
        tx.instrument_type = Some("Equity Option");
        tx.quantity = Some(quantity);
        tx.price = Some(price);
        tx.value = gross * sign;
        tx.commission = Some(if action.ends_with("Open") {
            quantity.min(Decimal::from(10))
        } else {
            Decimal::ZERO
        });
        tx.clearing_fees = Some(money(10) * quantity);
        tx.regulatory_fees = Some(Decimal::new(self.rng.i64(1..90), 3) * quantity);
        tx.index_option_fees = Some(Decimal::ZERO);
        tx.order_id = Some(FIRST_ORDER_ID + self.rng.i64(1..1_000_000));
        tx
    }

    fn expiration(&mut self, at: DateTime<Utc>) -> Tx {
        let (symbol, underlying, _) = self.option_symbol(at);
        // Expirations post late in the evening (about 22:00 UTC) on the trade date.
        let posted = day_start(at.date_naive()) + Duration::hours(22);
        let mut tx = self.base(posted, "Receive Deliver", "Expiration");
        tx.description = "Removal of option due to expiration".into();
        tx.quantity = Some(Decimal::from(self.rng.i64(1..10)));
        tx.symbol = Some(symbol);
        tx.underlying = Some(underlying);
        tx.instrument_type = Some("Equity Option");
        tx
    }

    fn assignment(&mut self, at: DateTime<Utc>) -> Vec<Tx> {
        let (symbol, underlying, _) = self.option_symbol(at);
        let contracts = self.rng.i64(1..5);
        let mut removal = self.base(at, "Receive Deliver", "Assignment");
        removal.description = "Removal of option due to assignment".into();
        removal.symbol = Some(symbol);
        removal.underlying = Some(underlying.clone());
        removal.instrument_type = Some("Equity Option");
        removal.quantity = Some(Decimal::from(contracts));
        let mut stock = self.base(at + Duration::seconds(1), "Receive Deliver", "Buy to Open");
        let price = money(self.rng.i64(2_000..60_000));
        stock.action = Some("Buy to Open");
        stock.description = format!("Bought {} {underlying} @ {price}", contracts * 100);
        stock.symbol = Some(underlying.clone());
        stock.underlying = Some(underlying);
        stock.instrument_type = Some("Equity");
        stock.quantity = Some(Decimal::from(contracts * 100));
        stock.price = Some(price);
        stock.value = -(price * Decimal::from(contracts * 100));
        vec![removal, stock]
    }

    fn cash_settled(&mut self, at: DateTime<Utc>) -> Tx {
        let strike = self.rng.i64(4000..6000);
        let symbol = format!("SPXW  {}P{:08}", at.format("%y%m%d"), strike * 1000);
        // Cash settlement of index options posts after midnight UTC (reference §7.7).
        let posted = day_start(at.date_naive() + Duration::days(1)) + Duration::hours(2);
        let mut tx = self.base(posted, "Receive Deliver", "Cash Settled Assignment");
        tx.date = trade_date(at);
        tx.description = "Cash settlement of SPXW assignment".into();
        tx.symbol = Some(symbol);
        tx.underlying = Some("SPX".into());
        tx.instrument_type = Some("Equity Option");
        tx.quantity = Some(Decimal::ONE);
        tx.value = -money(self.rng.i64(100..500_000));
        tx
    }

    fn dividend(&mut self, at: DateTime<Utc>, drip: bool) -> Vec<Tx> {
        let posted = day_start(at.date_naive()) + Duration::hours(21);
        let cash = money(self.rng.i64(100..50_000));
        let mut money_row = self.base(posted, "Money Movement", "Dividend");
        money_row.description = "SCHWAB US DIVIDEND EQUITY ETF".into();
        money_row.symbol = Some("SCHD".into());
        money_row.underlying = Some("SCHD".into());
        money_row.instrument_type = Some("Equity");
        money_row.value = cash;
        if !drip {
            return vec![money_row];
        }
        // The DRIP pair: the cash above, and the shares it bought (value 0, fractional).
        let mut shares = self.base(posted + Duration::seconds(1), "Receive Deliver", "Dividend");
        shares.description = "Dividend reinvestment".into();
        shares.symbol = Some("SCHD".into());
        shares.underlying = Some("SCHD".into());
        shares.instrument_type = Some("Equity");
        shares.quantity = Some(Decimal::new(self.rng.i64(1_000..999_999), 5));
        vec![money_row, shares]
    }

    /// A cash movement of up to `max_cents`, a credit when `sign` is positive.
    fn money_movement(&mut self, at: DateTime<Utc>, sub: &str, sign: i64, max_cents: i64) -> Tx {
        let value = money(sign * self.rng.i64(1..max_cents));
        let mut tx = self.base(at, "Money Movement", sub);
        tx.description = sub.to_owned();
        tx.value = value;
        tx
    }

    fn reversal(&mut self, at: DateTime<Utc>, target: &Tx) -> Tx {
        let mut tx = target.clone();
        tx.executed_at = at;
        tx.date = trade_date(at);
        tx.value = -target.value;
        tx.commission = None;
        tx.clearing_fees = None;
        tx.regulatory_fees = None;
        tx.index_option_fees = None;
        tx.description = format!("Reversal: {}", target.description);
        // Rewritten to the target's final id once ids are assigned.
        tx.reverses_id = Some(target.executed_at.timestamp_micros());
        tx.order_id = None;
        tx
    }

    fn other(&mut self, at: DateTime<Utc>, kind: &'static str, sub: &str) -> Tx {
        let mut tx = self.base(at, kind, sub);
        tx.description = sub.to_owned();
        tx.symbol = Some("AAPL".into());
        tx.underlying = Some("AAPL".into());
        tx.instrument_type = Some("Equity");
        tx.quantity = Some(Decimal::from(self.rng.i64(1..100)));
        tx
    }

    /// `count` orders over [start, end]: filled, partially filled, cancelled, rejected, and a few
    /// live GTC orders near the end.
    pub fn orders(&mut self, start: DateTime<Utc>, end: DateTime<Utc>, count: usize) -> Vec<Order> {
        let span = (end - start).num_seconds().max(1);
        let mut times: Vec<i64> = (0..count).map(|_| self.rng.i64(0..span)).collect();
        times.sort_unstable();
        times
            .into_iter()
            .enumerate()
            .map(|(i, offset)| {
                let at = start + Duration::seconds(offset);
                let live = count - i <= 3;
                self.order(at, live)
            })
            .collect()
    }

    pub fn order(&mut self, at: DateTime<Utc>, live: bool) -> Order {
        self.order_as(at, live, None)
    }

    /// An order received at `at` and filled whole, with the `Trade` transaction of each fill.
    pub fn filled_order(&mut self, at: DateTime<Utc>) -> (Order, Vec<Tx>) {
        let order = self.order_as(at, false, Some("Filled"));
        let fills = order
            .legs
            .iter()
            .flat_map(|leg| leg.fills.iter().map(move |fill| (leg, fill)));
        let mut trades = Vec::new();
        for (leg, fill) in fills {
            let mut tx = self.trade(fill.filled_at);
            let sign = if leg.action.starts_with("Sell") {
                Decimal::ONE
            } else {
                Decimal::NEGATIVE_ONE
            };
            tx.id = self.take_transaction_id();
            tx.sub_type = leg.action.to_owned();
            tx.action = Some(leg.action);
            tx.description = format!(
                "{} {} {} @ {}",
                if sign > Decimal::ZERO {
                    "Sold"
                } else {
                    "Bought"
                },
                fill.quantity,
                leg.symbol,
                fill.price
            );
            tx.symbol = Some(leg.symbol.clone());
            tx.underlying = Some(order.underlying.clone());
            tx.quantity = Some(fill.quantity);
            tx.price = Some(fill.price);
            tx.value = fill.quantity * fill.price * Decimal::from(100) * sign;
            tx.order_id = Some(order.id);
            trades.push(tx);
        }
        (order, trades)
    }

    fn order_as(&mut self, at: DateTime<Utc>, live: bool, status: Option<&'static str>) -> Order {
        self.next_order_id += 1 + i64::from(self.rng.u32(0..5));
        let legs_count = [1, 1, 2, 2, 4][self.rng.usize(0..5)];
        let status = if let Some(status) = status {
            status
        } else if live {
            "Live"
        } else {
            [
                "Filled",
                "Filled",
                "Filled",
                "Filled",
                "Cancelled",
                "Rejected",
                "Expired",
                "Partially Filled",
            ][self.rng.usize(0..8)]
        };
        let (_, underlying, _) = self.option_symbol(at);
        // The day the order's last option expires: no order on it works past that.
        let mut expires = at.date_naive();
        let legs: Vec<OrderLeg> = (0..legs_count)
            .map(|leg_index| {
                let (symbol, _, expiry) = self.option_symbol(at);
                expires = expires.max(expiry);
                let quantity = Decimal::from(self.rng.i64(1..10));
                let filled = match status {
                    "Filled" => quantity,
                    "Partially Filled" => (quantity / Decimal::from(2)).floor(),
                    _ => Decimal::ZERO,
                };
                // Fills come in up to three pieces.
                let mut fills = Vec::new();
                let mut left = filled;
                let mut n = 0;
                while left > Decimal::ZERO {
                    let piece = if n == 2 {
                        left
                    } else {
                        Decimal::from(self.rng.i64(1..=decimal_to_i64(left)))
                    };
                    fills.push(OrderFill {
                        id: format!("5_{}_{leg_index}_{n}", self.next_order_id),
                        quantity: piece,
                        price: money(self.rng.i64(5..2_000)),
                        filled_at: at + Duration::milliseconds(300 + 50 * n),
                    });
                    left -= piece;
                    n += 1;
                }
                OrderLeg {
                    symbol,
                    instrument_type: "Equity Option",
                    action: [
                        "Sell to Open",
                        "Buy to Open",
                        "Buy to Close",
                        "Sell to Close",
                    ][self.rng.usize(0..4)],
                    quantity,
                    fills,
                }
            })
            .collect();
        let time_in_force = if live || self.rng.u32(0..10) == 0 {
            "GTC"
        } else {
            "Day"
        };
        // A partly filled GTC order stays working, reported as Live with the quantity left,
        // until its options expire; a Day order ends at its day's close. Either ends Expired
        // with the fills it had.
        let status = match (status, time_in_force) {
            ("Partially Filled", "GTC") if expires >= self.anchor => "Live",
            ("Partially Filled", _) => "Expired",
            (status, _) => status,
        };
        let terminal = status != "Live";
        Order {
            id: self.next_order_id,
            status,
            order_type: "Limit",
            time_in_force,
            underlying,
            underlying_instrument_type: "Equity",
            price: Some(
                money(self.rng.i64(5..2_000))
                    * if self.rng.bool() {
                        Decimal::ONE
                    } else {
                        Decimal::NEGATIVE_ONE
                    },
            ),
            received_at: at,
            updated_at: at + Duration::seconds(5),
            terminal_at: terminal.then(|| at + Duration::seconds(4)),
            legs,
            complex: None,
            rendered: Rendered::default(),
        }
    }

    fn positions(&mut self, opened_at: DateTime<Utc>) -> Vec<Position> {
        let mut out = Vec::new();
        for (i, underlying) in UNDERLYINGS.iter().enumerate() {
            out.push(Position {
                symbol: (*underlying).to_owned(),
                underlying: (*underlying).to_owned(),
                instrument_type: "Equity",
                quantity: Decimal::from(self.rng.i64(1..500)),
                multiplier: 1,
                average_open_price: money(self.rng.i64(1_000..60_000)),
                close_price: if i == 3 {
                    None
                } else {
                    Some(money(self.rng.i64(1_000..60_000)))
                },
                mark: money(self.rng.i64(1_000..60_000)),
                fixing_price: None,
                expires_at: None,
                quantity_as_string: i % 2 == 0,
                created_at: opened_at + Duration::days(30 * i as i64),
                streamer_symbol: None,
            });
            let at = day_start(self.anchor);
            let (symbol, underlying, expiry) = self.option_symbol(at);
            out.push(Position {
                streamer_symbol: crate::dxlink::streamer_symbol(&symbol),
                symbol,
                underlying,
                instrument_type: "Equity Option",
                quantity: Decimal::from(self.rng.i64(1..10))
                    * if self.rng.bool() {
                        Decimal::ONE
                    } else {
                        Decimal::NEGATIVE_ONE
                    },
                multiplier: 100,
                average_open_price: money(self.rng.i64(5..2_000)),
                close_price: Some(money(self.rng.i64(5..2_000))),
                mark: money(self.rng.i64(5..2_000)),
                fixing_price: None,
                expires_at: Some(day_start(expiry) + Duration::hours(21)),
                quantity_as_string: i % 3 == 0,
                created_at: at - Duration::days(2),
            });
        }
        out.push(Position {
            symbol: "./ESZ6 E2AX6 261113P6100".into(),
            underlying: "/ESZ6".into(),
            instrument_type: "Future Option",
            quantity: Decimal::from(-1),
            multiplier: 50,
            average_open_price: money(2_525),
            close_price: Some(money(1_800)),
            mark: money(1_750),
            fixing_price: Some(None),
            expires_at: Some(day_start(self.anchor + Duration::days(20)) + Duration::hours(21)),
            quantity_as_string: false,
            created_at: day_start(self.anchor - Duration::days(5)),
            streamer_symbol: Some("./E2AX26P6100:XCME".into()),
        });
        out
    }

    fn snapshots(&mut self, from: NaiveDate, to: NaiveDate) -> Vec<Snapshot> {
        let mut out = Vec::new();
        let mut day = from;
        let mut nlv = money(5_000_000);
        while day <= to {
            if !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
                nlv += money(self.rng.i64(-150_000..160_000));
                for currency in ["USD", "EUR"] {
                    out.push(Snapshot {
                        date: day,
                        currency,
                        net_liquidating_value: nlv,
                        cash_balance: nlv / Decimal::from(3),
                        sparse: day.ordinal() % 17 == 0,
                    });
                }
            }
            day += Duration::days(1);
        }
        out
    }
}

impl Generator {
    /// An OCO pair and an OTOCO bracket for every account, their orders among the account's
    /// orders three days before the anchor. Drawn after every account's history, so the rest
    /// of the data stays as the seed always made it.
    pub fn complex_orders(&mut self, accounts: &mut [Account]) {
        let at = day_start(self.anchor - Duration::days(3)) + Duration::hours(15);
        for account in accounts.iter_mut() {
            self.complex_order(account, "OCO", at);
            self.complex_order(account, "OTOCO", at);
        }
    }

    /// A `kind` group placed at `at` (an OTOCO has a trigger order), its orders among the
    /// account's.
    pub fn complex_order(&mut self, account: &mut Account, kind: &'static str, at: DateTime<Utc>) {
        let id = self.next_order_id + 1_000_000_000;
        let count = if kind == "OTOCO" { 3 } else { 2 };
        let mut ids = Vec::new();
        for n in 0..count {
            let mut order = self.order(at + Duration::minutes(n), false);
            let role = if kind == "OTOCO" && n == 0 {
                "trigger-order"
            } else {
                "orders"
            };
            order.complex = Some((id, format!("{kind}::{role}")));
            ids.push(order.id);
            account.orders.push(order);
        }
        let trigger = (kind == "OTOCO").then(|| ids.remove(0));
        account.complex_orders.push(ComplexOrder {
            id,
            kind,
            trigger,
            orders: ids,
        });
        account.orders.sort_by_key(|o| (o.received_at, o.id));
    }
}

/// One bar per USD end-of-day snapshot before `until` (today's close is still to come), at
/// the close (16:00 New York, 20:00 or 21:00 UTC; 20:00 here), each opening where the one
/// before closed. Derived, so it draws nothing from the generator's stream.
fn net_liq_bars(snapshots: &[Snapshot], until: NaiveDate) -> Vec<NetLiqBar> {
    let mut bars: Vec<NetLiqBar> = Vec::new();
    let usd = snapshots.iter().filter(|s| s.currency == "USD");
    for s in usd.filter(|s| s.date < until) {
        let open = bars
            .last()
            .map_or(s.net_liquidating_value, NetLiqBar::close);
        let time = day_start(s.date) + Duration::hours(20);
        bars.push(NetLiqBar::moving(time, open, s.net_liquidating_value));
    }
    bars
}

/// Reversals were generated pointing at their target's execution time; point them at its id.
fn fix_reversal_targets(txs: &mut [Tx]) {
    let by_time: std::collections::HashMap<i64, i64> = txs
        .iter()
        .filter(|t| t.reverses_id.is_none())
        .map(|t| (t.executed_at.timestamp_micros(), t.id))
        .collect();
    for tx in txs.iter_mut() {
        if let Some(micros) = tx.reverses_id {
            tx.reverses_id = by_time.get(&micros).copied();
        }
    }
}

pub fn day_start(day: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default())
}

/// The US trading day of an instant: late-evening UTC postings belong to the same day, and
/// anything before 04:00 UTC to the previous one.
fn trade_date(at: DateTime<Utc>) -> NaiveDate {
    (at - Duration::hours(4)).date_naive()
}

fn friday_on_or_after(day: NaiveDate) -> NaiveDate {
    let ahead = (7 + Weekday::Fri.num_days_from_monday() as i64
        - day.weekday().num_days_from_monday() as i64)
        % 7;
    day + Duration::days(ahead)
}

fn decimal_to_i64(d: Decimal) -> i64 {
    rust_decimal::prelude::ToPrimitive::to_i64(&d.trunc()).unwrap_or(1)
}
