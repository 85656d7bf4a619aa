//! The broker's objects as the sync reads them (reference §4).
//!
//! Every field is optional except ids, because the broker omits what does not apply (a dividend
//! has no commission) and drops fields between versions. Unknown fields are ignored here and
//! kept whole in [`Record::raw`]. Amounts are the broker's unsigned magnitudes; the `signed_*`
//! methods apply the sibling `*-effect`.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;

use super::wire;

/// One item as parsed, with the JSON it came from (for the `raw json` columns).
#[derive(Debug, Clone)]
pub struct Record<T> {
    pub item: T,
    pub raw: Raw,
}

/// A row's JSON as the broker sent it, kept as its text. A page of 2,000 transactions held as
/// JSON trees took several times the memory of its text, and each tree was printed again for
/// Postgres; the text goes to the `raw json` column as it came.
pub type Raw = Box<serde_json::value::RawValue>;

impl<T: serde::de::DeserializeOwned> Record<T> {
    /// `raw` read as a `T`, or `raw` back with the reason it cannot be.
    pub fn parse(raw: Raw) -> Result<Self, (Raw, serde_json::Error)> {
        match serde_json::from_str(raw.get()) {
            Ok(item) => Ok(Self { item, raw }),
            Err(e) => Err((raw, e)),
        }
    }
}

/// `value` as row text, for a row that arrived inside a larger JSON tree.
pub fn raw(value: &serde_json::Value) -> Raw {
    serde_json::value::to_raw_value(value).expect("a JSON tree prints as JSON")
}

/// `raw` as a JSON tree, where a row is looked into rather than stored (a set-aside row, the
/// few fields the sync reads by name, the fakes).
pub fn tree(raw: &serde_json::value::RawValue) -> serde_json::Value {
    // The text was JSON when it was read, so it reads again.
    serde_json::from_str(raw.get()).unwrap_or_default()
}

/// `Credit`, `Debit` or `None` beside an unsigned amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Effect {
    Credit,
    Debit,
    None,
    #[serde(other)]
    Unknown,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Credit => "Credit",
            Effect::Debit => "Debit",
            Effect::None => "None",
            Effect::Unknown => "Unknown",
        }
    }
}

/// A magnitude signed by its effect: `Debit` is negative. `None` comes with zero, and an
/// absent or unknown effect leaves the magnitude as sent.
pub fn signed(amount: Option<Decimal>, effect: Option<Effect>) -> Option<Decimal> {
    amount.map(|a| if effect == Some(Effect::Debit) { -a } else { a })
}

macro_rules! signed_accessors {
    ($($name:ident => ($amount:ident, $effect:ident)),* $(,)?) => {
        $(pub fn $name(&self) -> Option<Decimal> { signed(self.$amount, self.$effect) })*
    };
}

/// `items[]` of `GET /customers/me/accounts`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AccountAuthority {
    pub account: Account,
    pub authority_level: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Account {
    pub account_number: String,
    pub nickname: Option<String>,
    pub account_type_name: Option<String>,
    pub margin_or_cash: Option<String>,
    #[serde(default, deserialize_with = "wire::lenient_bool")]
    pub is_closed: Option<bool>,
    #[serde(default, deserialize_with = "wire::timestamp")]
    pub opened_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "wire::timestamp")]
    pub closed_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "wire::timestamp")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "wire::lenient_date")]
    pub funding_date: Option<NaiveDate>,
}

/// `GET /accounts/{n}/trading-status`: what the account may do today. The flags a portfolio
/// screen shows are read here; the rest of the object is kept whole in [`Record::raw`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TradingStatus {
    #[serde(default)]
    pub day_trade_count: Option<i64>,
    #[serde(default, deserialize_with = "wire::lenient_bool")]
    pub is_pattern_day_trader: Option<bool>,
    #[serde(default, deserialize_with = "wire::lenient_bool")]
    pub is_closing_only: Option<bool>,
    #[serde(default, deserialize_with = "wire::lenient_bool")]
    pub is_frozen: Option<bool>,
    #[serde(default, deserialize_with = "wire::lenient_bool")]
    pub is_in_margin_call: Option<bool>,
    #[serde(default, deserialize_with = "wire::lenient_bool")]
    pub is_in_day_trade_equity_maintenance_call: Option<bool>,
    pub options_level: Option<String>,
    #[serde(default, deserialize_with = "wire::lenient_date")]
    pub pdt_reset_on: Option<NaiveDate>,
    #[serde(default, deserialize_with = "wire::timestamp")]
    pub updated_at: Option<DateTime<Utc>>,
}

/// `items[]` of `GET /accounts/{n}/complex-orders`: an OCO, OTO, OTOCO, PAIRS or BLAST group
/// (TW `PlacedComplexOrder`). Its child orders are orders like any other, kept as sent here and
/// read with the model of `/orders` by the sync.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ComplexOrder {
    #[serde(deserialize_with = "wire::id")]
    pub id: i64,
    pub account_number: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "wire::timestamp")]
    pub terminal_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub ratio_price_threshold: Option<Decimal>,
    pub ratio_price_comparator: Option<String>,
    #[serde(default, deserialize_with = "wire::lenient_bool")]
    pub ratio_price_is_threshold_based_on_notional: Option<bool>,
    #[serde(default)]
    pub trigger_order: Option<serde_json::Value>,
    #[serde(default)]
    pub orders: Vec<serde_json::Value>,
}

impl ComplexOrder {
    /// The child orders, the trigger order first.
    pub fn children(&self) -> Vec<serde_json::Value> {
        (self.trigger_order.iter().chain(&self.orders))
            .filter(|o| o.is_object())
            .cloned()
            .collect()
    }

    /// The ids of the orders besides the trigger order, in the group's order.
    pub fn order_ids(&self) -> Vec<i64> {
        (self.orders.iter())
            .filter_map(|o| o.get("id").and_then(serde_json::Value::as_i64))
            .collect()
    }

    pub fn trigger_order_id(&self) -> Option<i64> {
        (self.trigger_order.as_ref()).and_then(|o| o.get("id")?.as_i64())
    }
}

/// `items[]` of `GET /watchlists`: one of the customer's watchlists (TW `PrivateWatchlist`).
/// The name is its key at the broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Watchlist {
    pub name: String,
    pub group_name: Option<String>,
    #[serde(default, deserialize_with = "wire::optional_id")]
    pub order_index: Option<i64>,
    #[serde(default)]
    pub watchlist_entries: Option<Vec<WatchlistEntry>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct WatchlistEntry {
    pub symbol: String,
    pub instrument_type: Option<String>,
}

/// `items[]` of `GET /accounts/{n}/net-liq/history`: one bar of the account's net liquidating
/// value, with its pending cash and the total of both. `time` is the bar's key, so a bar
/// without a readable one cannot be stored.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct NetLiqPoint {
    #[serde(deserialize_with = "wire::net_liq_time")]
    pub time: DateTime<Utc>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub open: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub high: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub low: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub close: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub pending_cash_open: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub pending_cash_high: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub pending_cash_low: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub pending_cash_close: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub total_open: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub total_high: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub total_low: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub total_close: Option<Decimal>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Transaction {
    #[serde(deserialize_with = "wire::id")]
    pub id: i64,
    pub account_number: Option<String>,
    pub transaction_type: Option<String>,
    pub transaction_sub_type: Option<String>,
    pub description: Option<String>,
    #[serde(default, deserialize_with = "wire::timestamp")]
    pub executed_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "wire::lenient_date")]
    pub transaction_date: Option<NaiveDate>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub value: Option<Decimal>,
    pub value_effect: Option<Effect>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub net_value: Option<Decimal>,
    pub net_value_effect: Option<Effect>,
    #[serde(default, deserialize_with = "wire::lenient_bool")]
    pub is_estimated_fee: Option<bool>,
    pub symbol: Option<String>,
    pub underlying_symbol: Option<String>,
    pub instrument_type: Option<String>,
    pub action: Option<String>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub quantity: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub price: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub commission: Option<Decimal>,
    pub commission_effect: Option<Effect>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub clearing_fees: Option<Decimal>,
    pub clearing_fees_effect: Option<Effect>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub regulatory_fees: Option<Decimal>,
    pub regulatory_fees_effect: Option<Effect>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub proprietary_index_option_fees: Option<Decimal>,
    pub proprietary_index_option_fees_effect: Option<Effect>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub currency_conversion_fees: Option<Decimal>,
    pub currency_conversion_fees_effect: Option<Effect>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub other_charge: Option<Decimal>,
    pub other_charge_effect: Option<Effect>,
    pub other_charge_description: Option<String>,
    pub currency: Option<String>,
    #[serde(default, deserialize_with = "wire::optional_id")]
    pub order_id: Option<i64>,
    #[serde(default, deserialize_with = "wire::optional_id")]
    pub leg_count: Option<i64>,
    #[serde(default, deserialize_with = "wire::optional_id")]
    pub reverses_id: Option<i64>,
    pub exec_id: Option<String>,
    pub ext_exec_id: Option<String>,
    pub ext_group_id: Option<String>,
    pub ext_group_fill_id: Option<String>,
    pub ext_exchange_order_number: Option<String>,
    #[serde(default, deserialize_with = "wire::optional_id")]
    pub ext_global_order_number: Option<i64>,
    pub exchange: Option<String>,
    pub destination_venue: Option<String>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub agency_price: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub principal_price: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::lenient_date")]
    pub cost_basis_reconciliation_date: Option<NaiveDate>,
    #[serde(default, deserialize_with = "wire::timestamp")]
    pub created_at: Option<DateTime<Utc>>,
}

impl Transaction {
    signed_accessors! {
        signed_value => (value, value_effect),
        signed_net_value => (net_value, net_value_effect),
        signed_commission => (commission, commission_effect),
        signed_clearing_fees => (clearing_fees, clearing_fees_effect),
        signed_regulatory_fees => (regulatory_fees, regulatory_fees_effect),
        signed_proprietary_index_option_fees => (proprietary_index_option_fees, proprietary_index_option_fees_effect),
        signed_currency_conversion_fees => (currency_conversion_fees, currency_conversion_fees_effect),
        signed_other_charge => (other_charge, other_charge_effect),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Position {
    pub symbol: String,
    /// The market-data feed's name for it (the SPEC lists it; not every answer has it).
    pub streamer_symbol: Option<String>,
    pub account_number: Option<String>,
    pub underlying_symbol: Option<String>,
    pub instrument_type: Option<String>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub quantity: Option<Decimal>,
    pub quantity_direction: Option<String>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub multiplier: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub average_open_price: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub average_daily_market_close_price: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub average_yearly_market_close_price: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub close_price: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub mark: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub mark_price: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub fixing_price: Option<Decimal>,
    pub cost_effect: Option<Effect>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub realized_day_gain: Option<Decimal>,
    pub realized_day_gain_effect: Option<Effect>,
    #[serde(default, deserialize_with = "wire::lenient_date")]
    pub realized_day_gain_date: Option<NaiveDate>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub realized_today: Option<Decimal>,
    pub realized_today_effect: Option<Effect>,
    #[serde(default, deserialize_with = "wire::lenient_date")]
    pub realized_today_date: Option<NaiveDate>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub restricted_quantity: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::lenient_bool")]
    pub is_suppressed: Option<bool>,
    #[serde(default, deserialize_with = "wire::lenient_bool")]
    pub is_frozen: Option<bool>,
    #[serde(default, deserialize_with = "wire::timestamp")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "wire::timestamp")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "wire::timestamp")]
    pub updated_at: Option<DateTime<Utc>>,
}

impl Position {
    signed_accessors! {
        signed_realized_day_gain => (realized_day_gain, realized_day_gain_effect),
        signed_realized_today => (realized_today, realized_today_effect),
    }

    /// The quantity with the direction applied: a short position is negative.
    pub fn signed_quantity(&self) -> Option<Decimal> {
        self.quantity.map(|q| {
            if self.quantity_direction.as_deref() == Some("Short") {
                -q.abs()
            } else {
                q
            }
        })
    }
}

/// One row per symbol. The broker has net and non-net views of positions, and the non-net one
/// lists each lot of a symbol apart; the lots of a symbol become one net position: quantities
/// and realized gains summed with their signs, the open price weighted by quantity, the other
/// fields from the most recently updated lot, and the lots' JSON kept as an array. The result
/// does not depend on the order the lots came in.
pub fn net_positions(rows: Vec<Record<Position>>) -> Vec<Record<Position>> {
    let mut by_symbol: Vec<(String, Vec<Record<Position>>)> = Vec::new();
    for row in rows {
        match by_symbol.iter_mut().find(|(s, _)| *s == row.item.symbol) {
            Some((_, lots)) => lots.push(row),
            None => by_symbol.push((row.item.symbol.clone(), vec![row])),
        }
    }
    by_symbol
        .into_iter()
        .map(|(_, mut lots)| {
            if lots.len() == 1 {
                return lots.remove(0);
            }
            // The most recently updated lot first; equal ones by their JSON, so any order of
            // arrival gives the same row.
            lots.sort_by_cached_key(|l| {
                (
                    std::cmp::Reverse(l.item.updated_at),
                    tree(&l.raw).to_string(),
                )
            });
            let sum = |f: fn(&Position) -> Option<Decimal>| {
                lots.iter().map(|l| f(&l.item)).sum::<Option<Decimal>>()
            };
            let quantity = sum(Position::signed_quantity);
            let day_gain = sum(Position::signed_realized_day_gain);
            let today = sum(Position::signed_realized_today);
            let weight: Option<Decimal> =
                lots.iter().map(|l| l.item.quantity.map(|q| q.abs())).sum();
            let cost: Option<Decimal> = lots
                .iter()
                .map(|l| Some(l.item.quantity?.abs() * l.item.average_open_price?))
                .sum();
            let mut net = lots[0].item.clone();
            net.quantity = quantity.map(|q| q.abs());
            net.quantity_direction = quantity.map(|q| {
                match q.cmp(&Decimal::ZERO) {
                    std::cmp::Ordering::Greater => "Long",
                    std::cmp::Ordering::Less => "Short",
                    std::cmp::Ordering::Equal => "Zero",
                }
                .to_owned()
            });
            net.average_open_price = match (cost, weight) {
                (Some(cost), Some(weight)) if !weight.is_zero() => Some(cost / weight),
                _ => None,
            };
            (net.realized_day_gain, net.realized_day_gain_effect) = unsigned(day_gain);
            (net.realized_today, net.realized_today_effect) = unsigned(today);
            let lots: Vec<&serde_json::value::RawValue> = lots.iter().map(|l| &*l.raw).collect();
            let raw = serde_json::value::to_raw_value(&lots).expect("JSON rows print as JSON");
            Record { item: net, raw }
        })
        .collect()
}

/// A signed amount as the broker writes it: a magnitude and its effect.
fn unsigned(amount: Option<Decimal>) -> (Option<Decimal>, Option<Effect>) {
    match amount {
        Some(a) if a.is_sign_negative() && !a.is_zero() => (Some(-a), Some(Effect::Debit)),
        Some(a) if a.is_zero() => (Some(a), Some(Effect::None)),
        Some(a) => (Some(a), Some(Effect::Credit)),
        None => (None, None),
    }
}

/// `GET /balances/{currency}`, an item of `GET /balances`, or an item of `balance-snapshots`.
/// Snapshot rows can be sparse, so every amount is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Balance {
    pub account_number: Option<String>,
    pub currency: Option<String>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub cash_balance: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub net_liquidating_value: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub long_equity_value: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub short_equity_value: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub long_derivative_value: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub short_derivative_value: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub margin_equity: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub equity_buying_power: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub derivative_buying_power: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub day_trading_buying_power: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub available_trading_funds: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub cash_available_to_withdraw: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub maintenance_requirement: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub maintenance_excess: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub pending_cash: Option<Decimal>,
    pub pending_cash_effect: Option<Effect>,
    #[serde(default, deserialize_with = "wire::lenient_date")]
    pub snapshot_date: Option<NaiveDate>,
    pub time_of_day: Option<String>,
    #[serde(default, deserialize_with = "wire::timestamp")]
    pub updated_at: Option<DateTime<Utc>>,
}

impl Balance {
    signed_accessors! { signed_pending_cash => (pending_cash, pending_cash_effect) }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Order {
    #[serde(deserialize_with = "wire::id")]
    pub id: i64,
    pub account_number: Option<String>,
    pub status: Option<String>,
    pub order_type: Option<String>,
    pub time_in_force: Option<String>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub size: Option<Decimal>,
    pub underlying_symbol: Option<String>,
    pub underlying_instrument_type: Option<String>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub price: Option<Decimal>,
    pub price_effect: Option<Effect>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub value: Option<Decimal>,
    pub value_effect: Option<Effect>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub stop_trigger: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::lenient_date")]
    pub gtc_date: Option<NaiveDate>,
    #[serde(default, deserialize_with = "wire::lenient_bool")]
    pub cancellable: Option<bool>,
    #[serde(default, deserialize_with = "wire::lenient_bool")]
    pub editable: Option<bool>,
    #[serde(default, deserialize_with = "wire::lenient_bool")]
    pub edited: Option<bool>,
    pub contingent_status: Option<String>,
    pub confirmation_status: Option<String>,
    pub reject_reason: Option<String>,
    #[serde(default, deserialize_with = "wire::timestamp")]
    pub received_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "wire::timestamp")]
    pub in_flight_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "wire::timestamp")]
    pub live_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "wire::timestamp")]
    pub cancelled_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "wire::timestamp")]
    pub terminal_at: Option<DateTime<Utc>>,
    /// Epoch milliseconds on the wire.
    #[serde(default, deserialize_with = "wire::timestamp")]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "wire::optional_id")]
    pub replaces_order_id: Option<i64>,
    #[serde(default, deserialize_with = "wire::optional_id")]
    pub replacing_order_id: Option<i64>,
    #[serde(default, deserialize_with = "wire::optional_id")]
    pub complex_order_id: Option<i64>,
    pub complex_order_tag: Option<String>,
    pub source: Option<String>,
    pub external_identifier: Option<String>,
    #[serde(default)]
    pub legs: Vec<Leg>,
}

impl Order {
    signed_accessors! {
        signed_price => (price, price_effect),
        signed_value => (value, value_effect),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Leg {
    pub symbol: Option<String>,
    pub instrument_type: Option<String>,
    pub action: Option<String>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub quantity: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub remaining_quantity: Option<Decimal>,
    #[serde(default)]
    pub fills: Vec<Fill>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Fill {
    pub fill_id: String,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub quantity: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::decimal")]
    pub fill_price: Option<Decimal>,
    #[serde(default, deserialize_with = "wire::timestamp")]
    pub filled_at: Option<DateTime<Utc>>,
    pub destination_venue: Option<String>,
    pub ext_group_fill_id: Option<String>,
    pub ext_exec_id: Option<String>,
}

/// `GET /api-quote-tokens`: the DXLink credentials for greeks.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct QuoteToken {
    pub token: secrecy::SecretString,
    pub dxlink_url: Option<String>,
    pub level: Option<String>,
    #[serde(default, deserialize_with = "wire::timestamp")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Items that carry the broker's id, which pagination uses to notice rows shifting under it.
pub trait BrokerId {
    fn broker_id(&self) -> Option<i64> {
        None
    }
}

impl BrokerId for Transaction {
    fn broker_id(&self) -> Option<i64> {
        Some(self.id)
    }
}

impl BrokerId for Order {
    fn broker_id(&self) -> Option<i64> {
        Some(self.id)
    }
}

impl BrokerId for Balance {}

impl BrokerId for Position {}

impl BrokerId for NetLiqPoint {}

impl BrokerId for Watchlist {}

impl BrokerId for ComplexOrder {
    fn broker_id(&self) -> Option<i64> {
        Some(self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lot(quantity: &str, direction: &str, open: &str, updated: &str) -> Record<Position> {
        let raw = json!({"symbol": "SPY", "quantity": quantity, "quantity-direction": direction,
            "average-open-price": open, "updated-at": updated});
        Record {
            item: serde_json::from_value(raw.clone()).unwrap(),
            raw: super::raw(&raw),
        }
    }

    #[test]
    fn the_lots_of_a_symbol_become_one_net_position_whatever_their_order() {
        let lots = || {
            vec![
                lot("30", "Long", "10", "2026-01-02T00:00:00Z"),
                lot("10", "Short", "14", "2026-01-03T00:00:00Z"),
            ]
        };
        let reversed: Vec<_> = lots().into_iter().rev().collect();

        let (net, again) = (net_positions(lots()), net_positions(reversed));

        assert_eq!(net.len(), 1);
        let position = &net[0].item;
        assert_eq!(position.signed_quantity(), Some(Decimal::from(20)));
        assert_eq!(position.quantity_direction.as_deref(), Some("Long"));
        assert_eq!(position.average_open_price, Some(Decimal::from(11)));
        assert_eq!(
            net[0].raw.get(),
            again[0].raw.get(),
            "the same JSON from either order"
        );
        assert_eq!(tree(&net[0].raw).as_array().map(Vec::len), Some(2));
    }
}
