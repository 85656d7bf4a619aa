//! What the read API serves: filters, keyset pages and their opaque cursors.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// The most rows one page may hold.
pub const MAX_PAGE: i64 = 500;
/// A page's size when the caller names none.
pub const DEFAULT_PAGE: i64 = 100;

/// Which transactions a page reads: each filter optional, dates inclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransactionFilter {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub symbol: Option<String>,
    pub underlying_symbol: Option<String>,
    pub transaction_type: Option<String>,
    pub sub_type: Option<String>,
}

/// Where a newest-first page resumes: after the row executed at `at` with broker id `id`.
/// Rows that arrive later sort before it, so the pages already read never shift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyset {
    pub at: DateTime<Utc>,
    pub id: i64,
}

impl Keyset {
    /// The opaque cursor the API hands out.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.at.timestamp_micros(), self.id))
    }

    /// `None` when `cursor` is not one [`Keyset::encode`] made.
    pub fn decode(cursor: &str) -> Option<Self> {
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
        let (micros, id) = text.split_once(':')?;
        Some(Self {
            at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: id.parse().ok()?,
        })
    }
}

/// A transaction as the API serves it: money and quantities as exact decimal strings, every
/// amount signed by its `*-effect` (a debit is negative), times in UTC.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TransactionRead {
    /// The broker's transaction id.
    pub id: i64,
    pub executed_at: DateTime<Utc>,
    pub transaction_date: NaiveDate,
    pub transaction_type: String,
    pub transaction_sub_type: Option<String>,
    pub description: Option<String>,
    pub symbol: Option<String>,
    pub underlying_symbol: Option<String>,
    pub instrument_type: Option<String>,
    pub action: Option<String>,
    pub quantity: Option<String>,
    pub price: Option<String>,
    /// Gross, signed.
    pub value: Option<String>,
    /// After fees, signed.
    pub net_value: Option<String>,
    pub commission: Option<String>,
    pub clearing_fees: Option<String>,
    pub regulatory_fees: Option<String>,
    pub is_estimated_fee: bool,
    pub currency: Option<String>,
    pub order_id: Option<i64>,
    /// The transaction this one reverses, for a correction.
    pub reverses_id: Option<i64>,
}

/// A page of transactions, newest first, and the cursor of the next page (absent on the last).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TransactionPage {
    pub items: Vec<TransactionRead>,
    pub next_cursor: Option<String>,
}

/// The option a position's OCC symbol names.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct OptionLeg {
    pub root: String,
    pub expiration: NaiveDate,
    /// `C` or `P`.
    pub option_type: String,
    pub strike: String,
}

/// An option's greeks from the market-data feed, as of the feed's event time. A value the
/// feed sent as `NaN` is absent.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GreeksRead {
    pub delta: Option<String>,
    pub gamma: Option<String>,
    pub theta: Option<String>,
    pub vega: Option<String>,
    pub rho: Option<String>,
    pub implied_volatility: Option<String>,
    pub theoretical_price: Option<String>,
    pub as_of: DateTime<Utc>,
}

/// A held position: quantity signed (short is negative), the option parsed when it is one.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PositionRead {
    pub symbol: String,
    pub underlying_symbol: Option<String>,
    pub instrument_type: Option<String>,
    pub quantity: String,
    pub multiplier: Option<String>,
    pub average_open_price: Option<String>,
    pub close_price: Option<String>,
    pub mark: Option<String>,
    pub option: Option<OptionLeg>,
    /// Absent until the feed first answered for the option.
    pub greeks: Option<GreeksRead>,
    pub expires_at: Option<DateTime<Utc>>,
    /// When this row was last written by a sync.
    pub updated_at: DateTime<Utc>,
}

/// The current balance in one currency, amounts as decimal strings (pending cash signed).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BalanceRead {
    pub currency: String,
    pub net_liquidating_value: Option<String>,
    pub cash_balance: Option<String>,
    pub equity_buying_power: Option<String>,
    pub derivative_buying_power: Option<String>,
    pub day_trading_buying_power: Option<String>,
    pub maintenance_requirement: Option<String>,
    pub pending_cash: Option<String>,
    /// When the values last changed.
    pub updated_at: DateTime<Utc>,
    /// When a sync last read the account's balances and completed.
    pub synced_at: Option<DateTime<Utc>>,
}

/// How far the account is synced and what it holds: each entity's rows (those the broker
/// still returns) and the watermarks the next incremental sync reads from.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SyncedSummary {
    pub transactions_synced_to: Option<DateTime<Utc>>,
    pub orders_synced_to: Option<DateTime<Utc>>,
    pub balance_snapshots_synced_to: Option<NaiveDate>,
    /// Rows per table: transactions, orders, order_legs, order_fills, positions, balances,
    /// balance_snapshots.
    pub rows: std::collections::BTreeMap<String, i64>,
    /// What the account may do today, as the last sync read it; absent before the first.
    pub trading_status: Option<TradingStatusRead>,
}

/// The broker's trading status of the account: day trades counted toward the pattern-day-trader
/// rule, the restrictions in force, the options level.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TradingStatusRead {
    pub day_trade_count: Option<i64>,
    pub is_pattern_day_trader: Option<bool>,
    pub is_closing_only: Option<bool>,
    pub is_frozen: Option<bool>,
    pub is_in_margin_call: Option<bool>,
    pub is_in_day_trade_equity_maintenance_call: Option<bool>,
    pub options_level: Option<String>,
    /// When the pattern-day-trader flag may be reset.
    pub pdt_reset_on: Option<NaiveDate>,
    /// When the broker last changed it.
    pub updated_at: Option<DateTime<Utc>>,
    /// When a sync read it.
    pub read_at: DateTime<Utc>,
}

/// Which orders a page reads: each filter optional, dates (of receipt) inclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    pub status: Option<String>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub underlying_symbol: Option<String>,
}

/// A fill of an order's leg.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FillRead {
    pub fill_id: String,
    pub quantity: String,
    pub fill_price: Option<String>,
    pub filled_at: DateTime<Utc>,
}

/// A leg of an order, with its fills.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LegRead {
    pub symbol: String,
    pub instrument_type: Option<String>,
    pub action: Option<String>,
    pub quantity: Option<String>,
    pub remaining_quantity: Option<String>,
    pub fills: Vec<FillRead>,
}

/// An order with its legs and fills; price and value signed by their effects.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct OrderRead {
    /// The broker's order id.
    pub id: i64,
    pub status: String,
    pub order_type: Option<String>,
    pub time_in_force: Option<String>,
    pub underlying_symbol: Option<String>,
    pub underlying_instrument_type: Option<String>,
    pub size: Option<String>,
    pub price: Option<String>,
    pub value: Option<String>,
    /// When the broker received it (when we first stored it, if the broker did not say).
    pub received_at: DateTime<Utc>,
    pub terminal_at: Option<DateTime<Utc>>,
    pub legs: Vec<LegRead>,
}

/// A page of orders, newest first, and the cursor of the next page (absent on the last).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct OrderPage {
    pub items: Vec<OrderRead>,
    pub next_cursor: Option<String>,
}

/// The most points a balance history holds; a longer range is downsampled to it.
pub const MAX_POINTS: usize = 1_000;
/// A balance history's points when the caller names no bound.
pub const DEFAULT_POINTS: usize = 500;

/// One day of an account's value in one currency, from the broker's end-of-day snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BalancePoint {
    pub date: NaiveDate,
    pub net_liquidating_value: Option<String>,
    pub cash_balance: Option<String>,
}

/// One bar of the broker's net-liq chart: the account's net liquidating value, its pending
/// cash, and their total, each as open, high, low and close.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct NetLiqBar {
    pub time: DateTime<Utc>,
    pub open: Option<String>,
    pub high: Option<String>,
    pub low: Option<String>,
    pub close: Option<String>,
    pub pending_cash_open: Option<String>,
    pub pending_cash_high: Option<String>,
    pub pending_cash_low: Option<String>,
    pub pending_cash_close: Option<String>,
    pub total_open: Option<String>,
    pub total_high: Option<String>,
    pub total_low: Option<String>,
    pub total_close: Option<String>,
}

/// A chart's series: one currency's end-of-day values, oldest first, and (in USD, the
/// currency the broker charts it in) the net-liq history over the same days.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BalanceHistory {
    pub currency: String,
    /// Whether the range held more days than `points` and every n-th was kept.
    pub downsampled: bool,
    pub points: Vec<BalancePoint>,
    /// Whether the range held more bars than `points` and every n-th was kept.
    pub net_liq_downsampled: bool,
    /// The broker's net-liq bars, oldest first; empty for any currency but USD.
    pub net_liq: Vec<NetLiqBar>,
}

/// At most `max` of `rows`, evenly spaced, the first and the last always kept.
pub fn downsample<T: Clone>(rows: &[T], max: usize) -> Vec<T> {
    if rows.len() <= max {
        return rows.to_vec();
    }
    if max < 2 {
        return rows[..max].to_vec();
    }
    let last = rows.len() - 1;
    (0..max)
        .map(|i| rows[i * last / (max - 1)].clone())
        .collect()
}

/// One page of rows and the cursor of the next, if there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub next: Option<Keyset>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_keeps_the_ends_and_spaces_the_rest_evenly() {
        let days: Vec<u32> = (0..1_000).collect();

        let kept = downsample(&days, 5);

        assert_eq!(kept, [0, 249, 499, 749, 999]);
        assert_eq!(downsample(&days[..3], 5), [0, 1, 2]);
        assert_eq!(downsample(&days, 1_000).len(), 1_000);
    }

    #[test]
    fn a_cursor_round_trips_and_garbage_is_no_cursor() {
        let keyset = Keyset {
            at: DateTime::from_timestamp_micros(1_796_000_000_123_456).unwrap(),
            id: 4_294_967_301,
        };

        assert_eq!(Keyset::decode(&keyset.encode()), Some(keyset));
        assert_eq!(Keyset::decode("not-a-cursor"), None);
        assert_eq!(Keyset::decode(""), None);
    }
}
