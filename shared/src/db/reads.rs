//! The read API's queries: every one joins the account to its owner, so another user's ids
//! read nothing, and leaves out the rows the broker no longer returns.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::DbError;
use crate::domain::reads::{
    BalancePoint, BalanceRead, FillRead, GreeksRead, Keyset, LegRead, NetLiqBar, OptionLeg,
    OrderFilter, OrderRead, Paged, PositionRead, SyncedSummary, TradingStatusRead,
    TransactionFilter, TransactionRead,
};

const OWNED: &str = "
    SELECT 1 FROM tastytrade_accounts WHERE id = $1 AND user_id = $2 AND unlinked_at IS NULL";

// Newest first by (executed_at, id), the keyset of `transactions_newest_first`; one row more
// than the page tells whether another page follows.
pub const TRANSACTIONS: &str = "
    SELECT t.tastytrade_transaction_id, t.executed_at, t.transaction_date, t.transaction_type,
           t.transaction_sub_type, t.description, t.symbol, t.underlying_symbol,
           t.instrument_type, t.action, t.quantity::text, t.price::text, t.value::text,
           t.net_value::text, t.commission::text, t.clearing_fees::text,
           t.regulatory_fees::text, t.is_estimated_fee, t.currency, t.order_id, t.reverses_id
    FROM transactions t
    JOIN tastytrade_accounts a ON a.id = t.account_id AND a.user_id = $11
    WHERE t.account_id = $1 AND t.removed_at IS NULL
      AND ($2::timestamptz IS NULL
           OR (t.executed_at, t.tastytrade_transaction_id) < ($2, $3::bigint))
      AND ($4::date IS NULL OR t.transaction_date >= $4)
      AND ($5::date IS NULL OR t.transaction_date <= $5)
      AND ($6::text IS NULL OR t.symbol = $6)
      AND ($7::text IS NULL OR t.underlying_symbol = $7)
      AND ($8::text IS NULL OR t.transaction_type = $8)
      AND ($9::text IS NULL OR t.transaction_sub_type = $9)
    ORDER BY t.executed_at DESC, t.tastytrade_transaction_id DESC
    LIMIT $10";

pub const POSITIONS: &str = "
    SELECT p.symbol, p.underlying_symbol, p.instrument_type, p.quantity::text,
           p.multiplier::text, p.average_open_price::text, p.close_price::text, p.mark::text,
           p.option_root, p.option_expiration, p.option_type, p.strike_price::text,
           p.expires_at, p.updated_at, p.delta::text, p.gamma::text, p.theta::text,
           p.vega::text, p.rho::text, p.implied_volatility::text, p.theoretical_price::text,
           p.greeks_updated_at
    FROM positions p JOIN tastytrade_accounts a ON a.id = p.account_id AND a.user_id = $2
    WHERE p.account_id = $1 ORDER BY p.symbol";

pub const BALANCES: &str = "
    SELECT b.currency, b.net_liquidating_value::text, b.cash_balance::text,
           b.equity_buying_power::text, b.derivative_buying_power::text,
           b.day_trading_buying_power::text, b.maintenance_requirement::text,
           b.pending_cash::text, b.updated_at, a.last_successful_sync_at
    FROM account_balances b JOIN tastytrade_accounts a ON a.id = b.account_id AND a.user_id = $2
    WHERE b.account_id = $1 AND b.removed_at IS NULL ORDER BY b.currency";

/// The account's current balances, by currency.
pub async fn balances(
    pool: &Pool,
    user_id: &str,
    account_id: Uuid,
) -> Result<Vec<BalanceRead>, DbError> {
    let rows = (pool.get().await?)
        .query(BALANCES, &[&account_id, &user_id])
        .await?;
    Ok(rows
        .iter()
        .map(|r| BalanceRead {
            currency: r.get(0),
            net_liquidating_value: r.get(1),
            cash_balance: r.get(2),
            equity_buying_power: r.get(3),
            derivative_buying_power: r.get(4),
            day_trading_buying_power: r.get(5),
            maintenance_requirement: r.get(6),
            pending_cash: r.get(7),
            updated_at: r.get(8),
            synced_at: r.get(9),
        })
        .collect())
}

const SYNCED: &str = "
    SELECT a.transactions_synced_to, a.orders_synced_to, a.balance_snapshots_synced_to,
      (SELECT count(*) FROM transactions t WHERE t.account_id = a.id AND t.removed_at IS NULL),
      (SELECT count(*) FROM orders o WHERE o.account_id = a.id AND o.removed_at IS NULL),
      (SELECT count(*) FROM order_legs l WHERE l.account_id = a.id AND l.removed_at IS NULL),
      (SELECT count(*) FROM order_fills f WHERE f.account_id = a.id AND f.removed_at IS NULL),
      (SELECT count(*) FROM positions p WHERE p.account_id = a.id),
      (SELECT count(*) FROM account_balances b WHERE b.account_id = a.id AND b.removed_at IS NULL),
      (SELECT count(*) FROM account_balance_snapshots s WHERE s.account_id = a.id),
      a.day_trade_count, a.is_pattern_day_trader, a.is_closing_only, a.is_frozen,
      a.is_in_margin_call, a.is_in_day_trade_equity_maintenance_call, a.options_level,
      a.pdt_reset_on, a.trading_status_updated_at, a.trading_status_read_at
    FROM tastytrade_accounts a WHERE a.id = $1 AND a.user_id = $2 AND a.unlinked_at IS NULL";

/// The account's watermarks and row counts; `None` when it is not one of the user's.
pub async fn synced(
    pool: &Pool,
    user_id: &str,
    account_id: Uuid,
) -> Result<Option<SyncedSummary>, DbError> {
    let client = pool.get().await?;
    let Some(r) = client.query_opt(SYNCED, &[&account_id, &user_id]).await? else {
        return Ok(None);
    };
    let tables = [
        "transactions",
        "orders",
        "order_legs",
        "order_fills",
        "positions",
        "balances",
        "balance_snapshots",
    ];
    let rows = (tables.iter().enumerate())
        .map(|(i, table)| ((*table).to_owned(), r.get::<_, i64>(3 + i)))
        .collect();
    let trading_status = (r.get::<_, Option<DateTime<Utc>>>(19)).map(|read_at| TradingStatusRead {
        day_trade_count: r.get(10),
        is_pattern_day_trader: r.get(11),
        is_closing_only: r.get(12),
        is_frozen: r.get(13),
        is_in_margin_call: r.get(14),
        is_in_day_trade_equity_maintenance_call: r.get(15),
        options_level: r.get(16),
        pdt_reset_on: r.get(17),
        updated_at: r.get(18),
        read_at,
    });
    Ok(Some(SyncedSummary {
        transactions_synced_to: r.get(0),
        orders_synced_to: r.get(1),
        balance_snapshots_synced_to: r.get(2),
        rows,
        trading_status,
    }))
}

pub const ORDERS: &str = "
    SELECT o.tastytrade_order_id, o.status, o.order_type, o.time_in_force, o.underlying_symbol,
           o.underlying_instrument_type, o.size::text, o.price::text, o.value::text,
           coalesce(o.received_at, o.created_at), o.terminal_at
    FROM orders o
    JOIN tastytrade_accounts a ON a.id = o.account_id AND a.user_id = $8
    WHERE o.account_id = $1 AND o.removed_at IS NULL
      AND ($2::timestamptz IS NULL
           OR (coalesce(o.received_at, o.created_at), o.tastytrade_order_id) < ($2, $3::bigint))
      AND ($4::text IS NULL OR o.status = $4)
      AND ($5::date IS NULL OR coalesce(o.received_at, o.created_at) >= $5::date)
      AND ($6::date IS NULL OR coalesce(o.received_at, o.created_at) < $6::date + 1)
      AND ($7::text IS NULL OR o.underlying_symbol = $7)
    ORDER BY coalesce(o.received_at, o.created_at) DESC, o.tastytrade_order_id DESC
    LIMIT $9";

const LEGS: &str = "
    SELECT tastytrade_order_id, leg_key, symbol, instrument_type, action, quantity::text,
           remaining_quantity::text
    FROM order_legs WHERE account_id = $1 AND tastytrade_order_id = ANY($2)
      AND removed_at IS NULL
    ORDER BY tastytrade_order_id, leg_index";

const FILLS: &str = "
    SELECT tastytrade_order_id, leg_key, fill_id, quantity::text, fill_price::text, filled_at
    FROM order_fills WHERE account_id = $1 AND tastytrade_order_id = ANY($2)
      AND removed_at IS NULL
    ORDER BY filled_at, fill_id";

/// One page of the account's orders, newest first, after `after`, each with its legs and
/// fills (two more queries for the whole page, in the same read-only snapshot: a sync
/// committing between them cannot pair an order with legs or fills of another version).
pub async fn orders(
    pool: &Pool,
    user_id: &str,
    account_id: Uuid,
    filter: &OrderFilter,
    after: Option<Keyset>,
    limit: i64,
) -> Result<Paged<OrderRead>, DbError> {
    let (at, id) = (after.map(|k| k.at), after.map(|k| k.id));
    let params: [&(dyn ToSql + Sync); 9] = [
        &account_id,
        &at,
        &id,
        &filter.status,
        &filter.from,
        &filter.to,
        &filter.underlying_symbol,
        &user_id,
        &(limit + 1),
    ];
    let mut client = pool.get().await?;
    let client = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let rows = client.query(ORDERS, &params).await?;
    let mut items: Vec<OrderRead> = rows.iter().map(order).collect();
    let next = if items.len() as i64 > limit {
        items.truncate(usize::try_from(limit).unwrap_or_default());
        items.last().map(|o| Keyset {
            at: o.received_at,
            id: o.id,
        })
    } else {
        None
    };
    let ids: Vec<i64> = items.iter().map(|o| o.id).collect();
    let mut fills: HashMap<(i64, String), Vec<FillRead>> = HashMap::new();
    for r in client.query(FILLS, &[&account_id, &ids]).await? {
        let fill = FillRead {
            fill_id: r.get(2),
            quantity: r.get(3),
            fill_price: r.get(4),
            filled_at: r.get(5),
        };
        fills.entry((r.get(0), r.get(1))).or_default().push(fill);
    }
    let mut legs: HashMap<i64, Vec<LegRead>> = HashMap::new();
    for r in client.query(LEGS, &[&account_id, &ids]).await? {
        let order: i64 = r.get(0);
        let leg = LegRead {
            symbol: r.get(2),
            instrument_type: r.get(3),
            action: r.get(4),
            quantity: r.get(5),
            remaining_quantity: r.get(6),
            fills: fills.remove(&(order, r.get(1))).unwrap_or_default(),
        };
        legs.entry(order).or_default().push(leg);
    }
    client.commit().await?;
    for order in &mut items {
        order.legs = legs.remove(&order.id).unwrap_or_default();
    }
    Ok(Paged { items, next })
}

fn order(r: &Row) -> OrderRead {
    OrderRead {
        id: r.get(0),
        status: r.get(1),
        order_type: r.get(2),
        time_in_force: r.get(3),
        underlying_symbol: r.get(4),
        underlying_instrument_type: r.get(5),
        size: r.get(6),
        price: r.get(7),
        value: r.get(8),
        received_at: r.get(9),
        terminal_at: r.get(10),
        legs: Vec::new(),
    }
}

pub const BALANCE_HISTORY: &str = "
    SELECT s.snapshot_date, s.net_liquidating_value::text, s.cash_balance::text
    FROM account_balance_snapshots s
    JOIN tastytrade_accounts a ON a.id = s.account_id AND a.user_id = $2
    WHERE s.account_id = $1 AND s.currency = $3 AND s.time_of_day = 'EOD'
      AND ($4::date IS NULL OR s.snapshot_date >= $4)
      AND ($5::date IS NULL OR s.snapshot_date <= $5)
    ORDER BY s.snapshot_date";

/// The account's end-of-day values in `currency` over `[from, to]`, oldest first.
pub async fn balance_history(
    pool: &Pool,
    user_id: &str,
    account_id: Uuid,
    currency: &str,
    (from, to): (Option<NaiveDate>, Option<NaiveDate>),
) -> Result<Vec<BalancePoint>, DbError> {
    let params: [&(dyn ToSql + Sync); 5] = [&account_id, &user_id, &currency, &from, &to];
    let rows = pool.get().await?.query(BALANCE_HISTORY, &params).await?;
    Ok(rows
        .iter()
        .map(|r| BalancePoint {
            date: r.get(0),
            net_liquidating_value: r.get(1),
            cash_balance: r.get(2),
        })
        .collect())
}

pub const NET_LIQ_HISTORY: &str = "
    SELECT h.time, h.open::text, h.high::text, h.low::text, h.close::text,
           h.pending_cash_open::text, h.pending_cash_high::text, h.pending_cash_low::text,
           h.pending_cash_close::text, h.total_open::text, h.total_high::text,
           h.total_low::text, h.total_close::text
    FROM net_liq_history h
    JOIN tastytrade_accounts a ON a.id = h.account_id AND a.user_id = $2
    WHERE h.account_id = $1
      AND ($3::date IS NULL OR h.time >= $3::date::timestamp AT TIME ZONE 'UTC')
      AND ($4::date IS NULL OR h.time < ($4::date + 1)::timestamp AT TIME ZONE 'UTC')
    ORDER BY h.time";

/// The account's net-liq bars on the UTC days `[from, to]`, oldest first.
pub async fn net_liq_history(
    pool: &Pool,
    user_id: &str,
    account_id: Uuid,
    (from, to): (Option<NaiveDate>, Option<NaiveDate>),
) -> Result<Vec<NetLiqBar>, DbError> {
    let params: [&(dyn ToSql + Sync); 4] = [&account_id, &user_id, &from, &to];
    let rows = pool.get().await?.query(NET_LIQ_HISTORY, &params).await?;
    Ok(rows
        .iter()
        .map(|r| NetLiqBar {
            time: r.get(0),
            open: r.get(1),
            high: r.get(2),
            low: r.get(3),
            close: r.get(4),
            pending_cash_open: r.get(5),
            pending_cash_high: r.get(6),
            pending_cash_low: r.get(7),
            pending_cash_close: r.get(8),
            total_open: r.get(9),
            total_high: r.get(10),
            total_low: r.get(11),
            total_close: r.get(12),
        })
        .collect())
}

/// Whether `account_id` is a linked account of `user_id`.
pub async fn owned(pool: &Pool, user_id: &str, account_id: Uuid) -> Result<bool, DbError> {
    let client = pool.get().await?;
    Ok(client
        .query_opt(OWNED, &[&account_id, &user_id])
        .await?
        .is_some())
}

/// One page of the account's transactions, newest first, after `after`.
pub async fn transactions(
    pool: &Pool,
    user_id: &str,
    account_id: Uuid,
    filter: &TransactionFilter,
    after: Option<Keyset>,
    limit: i64,
) -> Result<Paged<TransactionRead>, DbError> {
    let (at, id) = (after.map(|k| k.at), after.map(|k| k.id));
    let params: [&(dyn ToSql + Sync); 11] = [
        &account_id,
        &at,
        &id,
        &filter.from,
        &filter.to,
        &filter.symbol,
        &filter.underlying_symbol,
        &filter.transaction_type,
        &filter.sub_type,
        &(limit + 1),
        &user_id,
    ];
    let rows = pool.get().await?.query(TRANSACTIONS, &params).await?;
    let mut items: Vec<TransactionRead> = rows.iter().map(transaction).collect();
    let next = if items.len() as i64 > limit {
        items.truncate(usize::try_from(limit).unwrap_or_default());
        items.last().map(|t| Keyset {
            at: t.executed_at,
            id: t.id,
        })
    } else {
        None
    };
    Ok(Paged { items, next })
}

fn transaction(r: &Row) -> TransactionRead {
    TransactionRead {
        id: r.get(0),
        executed_at: r.get(1),
        transaction_date: r.get(2),
        transaction_type: r.get(3),
        transaction_sub_type: r.get(4),
        description: r.get(5),
        symbol: r.get(6),
        underlying_symbol: r.get(7),
        instrument_type: r.get(8),
        action: r.get(9),
        quantity: r.get(10),
        price: r.get(11),
        value: r.get(12),
        net_value: r.get(13),
        commission: r.get(14),
        clearing_fees: r.get(15),
        regulatory_fees: r.get(16),
        is_estimated_fee: r.get(17),
        currency: r.get(18),
        order_id: r.get(19),
        reverses_id: r.get(20),
    }
}

/// The account's current positions, by symbol.
pub async fn positions(
    pool: &Pool,
    user_id: &str,
    account_id: Uuid,
) -> Result<Vec<PositionRead>, DbError> {
    let rows = (pool.get().await?)
        .query(POSITIONS, &[&account_id, &user_id])
        .await?;
    Ok(rows.iter().map(position).collect())
}

fn position(r: &Row) -> PositionRead {
    let option = match (r.get(8), r.get(9), r.get(10), r.get(11)) {
        (Some(root), Some(expiration), Some(option_type), Some(strike)) => Some(OptionLeg {
            root,
            expiration,
            option_type,
            strike,
        }),
        _ => None,
    };
    PositionRead {
        symbol: r.get(0),
        underlying_symbol: r.get(1),
        instrument_type: r.get(2),
        quantity: r.get(3),
        multiplier: r.get(4),
        average_open_price: r.get(5),
        close_price: r.get(6),
        mark: r.get(7),
        option,
        greeks: r
            .get::<_, Option<DateTime<Utc>>>(21)
            .map(|as_of| GreeksRead {
                delta: r.get(14),
                gamma: r.get(15),
                theta: r.get(16),
                vega: r.get(17),
                rho: r.get(18),
                implied_volatility: r.get(19),
                theoretical_price: r.get(20),
                as_of,
            }),
        expires_at: r.get::<_, Option<DateTime<Utc>>>(12),
        updated_at: r.get(13),
    }
}
