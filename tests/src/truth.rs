//! The simulator's truth against what a sync stored: the same ids, sums and counts, or a
//! panic that names the difference. Used by the integration tests and by `make bench`, which
//! must not print a figure for a sync that stored something else.

// Assertions: anything unexpected should fail loudly.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;
use uuid::Uuid;

/// Asserts the database holds exactly the simulator's truth for `account_number`.
pub async fn assert_database_equals_truth(
    client: &tokio_postgres::Client,
    truth: &Value,
    account_number: &str,
) {
    let id: Uuid = client
        .query_one(
            "SELECT id FROM tastytrade_accounts WHERE account_number = $1",
            &[&account_number],
        )
        .await
        .unwrap()
        .get(0);

    assert_history_equals_truth(client, truth, id).await;

    let positions: BTreeSet<(String, String)> = client
        .query(
            "SELECT symbol, quantity::text FROM positions WHERE account_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get(0),
                Decimal::from_str(r.get(1)).unwrap().normalize().to_string(),
            )
        })
        .collect();
    let truth_positions: BTreeSet<(String, String)> = truth["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["symbol"].as_str().unwrap().to_owned(),
                decimal(&p["quantity"]).normalize().to_string(),
            )
        })
        .collect();
    assert_eq!(positions, truth_positions, "positions");
    assert_eq!(
        count(client, id, "SELECT count(*) FROM account_balance_snapshots WHERE account_id = $1 AND time_of_day = 'EOD'").await,
        truth["snapshots"]["count"].as_i64().unwrap(),
        "EOD snapshots"
    );
    assert_eq!(
        count(
            client,
            id,
            "SELECT count(*) FROM account_balances WHERE account_id = $1 AND removed_at IS NULL"
        )
        .await,
        truth["balances"].as_array().unwrap().len() as i64
    );
    assert_eq!(
        count(
            client,
            id,
            "SELECT count(*) FROM account_balance_snapshots WHERE account_id = $1
               AND time_of_day = 'Intraday'
               AND snapshot_date <> (captured_at AT TIME ZONE 'America/New_York')::date"
        )
        .await,
        0,
        "captures are dated by the New York trading day"
    );
    let trading = client
        .query_one(
            "SELECT day_trade_count, is_pattern_day_trader, is_closing_only, options_level,
                    pdt_reset_on::text, trading_status
             FROM tastytrade_accounts WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let expected = &truth["trading-status"];
    assert_eq!(
        (
            trading.get::<_, Option<i64>>(0),
            trading.get::<_, Option<bool>>(1),
            trading.get::<_, Option<bool>>(2),
            trading.get::<_, Option<String>>(3),
            trading.get::<_, Option<String>>(4),
        ),
        (
            expected["day-trade-count"].as_i64(),
            expected["is-pattern-day-trader"].as_bool(),
            expected["is-closing-only"].as_bool(),
            expected["options-level"].as_str().map(str::to_owned),
            expected["pdt-reset-on"].as_str().map(str::to_owned),
        ),
        "trading status"
    );
    assert_eq!(
        &trading.get::<_, Value>(5),
        expected,
        "the trading status as sent"
    );
    assert_net_liq_history_equals(client, id, &truth["net-liq-history"]).await;
    assert_greeks_equal(client, id, &truth["greeks"]).await;
    assert_watchlists_equal(client, id, &truth["watchlists"]).await;
    assert_complex_orders_equal(client, id, &truth["complex-orders"]).await;
    let status: String = client
        .query_one(
            "SELECT last_sync_status FROM tastytrade_accounts WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "SUCCESS");
}

/// The one number `sql` (with the account id as `$1`) counts.
async fn count(client: &tokio_postgres::Client, id: Uuid, sql: &str) -> i64 {
    client.query_one(sql, &[&id]).await.unwrap().get(0)
}

/// A decimal the truth carries as text.
fn decimal(v: &Value) -> Decimal {
    Decimal::from_str(v.as_str().unwrap()).unwrap()
}

/// Asserts the account `id` holds exactly the truth's history: the same transactions (ids and
/// signed sums), orders (ids), order legs and fills (counts). What the bench's peer stores is
/// held to it as well, in tables of its own (`search_path`).
pub async fn assert_history_equals_truth(client: &tokio_postgres::Client, truth: &Value, id: Uuid) {
    let ids = stored_ids(
        client,
        "SELECT tastytrade_transaction_id FROM transactions WHERE account_id = $1 AND removed_at IS NULL",
        id,
    )
    .await;
    let truth_ids = id_set(&truth["transactions"]["ids"]);
    assert_eq!(ids.len(), truth_ids.len(), "transaction count");
    assert!(ids == truth_ids, "transaction ids differ");
    let sums = client
        .query_one("SELECT coalesce(sum(net_value), 0)::text, coalesce(sum(value), 0)::text FROM transactions WHERE account_id = $1 AND removed_at IS NULL", &[&id])
        .await
        .unwrap();
    assert_eq!(
        Decimal::from_str(sums.get(0)).unwrap(),
        decimal(&truth["transactions"]["net-value-sum"]),
        "sum of signed net values"
    );
    assert_eq!(
        Decimal::from_str(sums.get(1)).unwrap(),
        decimal(&truth["transactions"]["value-sum"]),
        "sum of signed values"
    );

    let order_ids = stored_ids(
        client,
        "SELECT tastytrade_order_id FROM orders WHERE account_id = $1 AND removed_at IS NULL",
        id,
    )
    .await;
    let truth_orders = id_set(&truth["orders"]["ids"]);
    assert!(
        order_ids == truth_orders,
        "order ids differ ({} vs {})",
        order_ids.len(),
        truth_orders.len()
    );
    assert_eq!(
        count(
            client,
            id,
            "SELECT count(*) FROM order_legs WHERE account_id = $1 AND removed_at IS NULL"
        )
        .await,
        truth["orders"]["legs"].as_i64().unwrap()
    );
    assert_eq!(
        count(
            client,
            id,
            "SELECT count(*) FROM order_fills WHERE account_id = $1 AND removed_at IS NULL"
        )
        .await,
        truth["orders"]["fills"].as_i64().unwrap()
    );
}

/// Each complex order with its type, trigger order and other orders, and each of those
/// stored as an order of the group.
async fn assert_complex_orders_equal(client: &tokio_postgres::Client, id: Uuid, truth: &Value) {
    let stored: Vec<Value> = client
        .query(
            "SELECT tastytrade_complex_order_id, type, trigger_order_id, order_ids,
                    (SELECT count(*) FROM orders o WHERE o.account_id = c.account_id
                       AND o.complex_order_id = c.tastytrade_complex_order_id
                       AND o.removed_at IS NULL)
             FROM complex_orders c WHERE account_id = $1 AND removed_at IS NULL
             ORDER BY tastytrade_complex_order_id",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let grouped = r.get::<_, i64>(4);
            serde_json::json!({"id": r.get::<_, i64>(0), "type": r.get::<_, Option<String>>(1),
                "trigger-order-id": r.get::<_, Option<i64>>(2), "order-ids": r.get::<_, Value>(3),
                "grouped": grouped})
        })
        .collect();
    let mut expected: Vec<Value> = truth.as_array().unwrap().clone();
    for group in &mut expected {
        let members = group["order-ids"].as_array().unwrap().len()
            + usize::from(group["trigger-order-id"].is_i64());
        group["grouped"] = serde_json::json!(members);
    }
    expected.sort_by_key(|g| g["id"].as_i64());
    assert_eq!(stored, expected, "complex orders");
}

/// A watchlist as compared: name, group, order and its entries' symbols and types in order.
type WatchlistRow = (
    String,
    Option<String>,
    Option<i64>,
    Vec<String>,
    Vec<Option<String>>,
);

/// The account's grant holds exactly the customer's watchlists, entries in order.
async fn assert_watchlists_equal(client: &tokio_postgres::Client, id: Uuid, truth: &Value) {
    let mut stored: Vec<WatchlistRow> = client
        .query(
            "SELECT w.name, w.group_name, w.order_index,
                    coalesce(array_agg(e.symbol ORDER BY e.position)
                             FILTER (WHERE e.symbol IS NOT NULL), '{}'),
                    coalesce(array_agg(e.instrument_type ORDER BY e.position)
                             FILTER (WHERE e.symbol IS NOT NULL), '{}')
             FROM tastytrade_accounts a
             JOIN watchlists w ON w.credential_id = a.credential_id
             LEFT JOIN watchlist_entries e
                    ON e.credential_id = w.credential_id AND e.watchlist_name = w.name
             WHERE a.id = $1
             GROUP BY w.name, w.group_name, w.order_index ORDER BY w.name",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let mut expected: Vec<WatchlistRow> = (truth.as_array().unwrap().iter())
        .map(|w| {
            let entries = w["watchlist-entries"].as_array().unwrap();
            (
                w["name"].as_str().unwrap().to_owned(),
                w["group-name"].as_str().map(str::to_owned),
                w["order-index"].as_i64(),
                entries
                    .iter()
                    .map(|e| e["symbol"].as_str().unwrap().to_owned())
                    .collect(),
                (entries.iter())
                    .map(|e| e["instrument-type"].as_str().map(str::to_owned))
                    .collect(),
            )
        })
        .collect();
    // Sorted here, not by the database's collation.
    stored.sort();
    expected.sort();
    assert_eq!(stored, expected, "watchlists");
}

/// Every option position carries the feed's greeks, to its six decimals, at the event's time.
pub async fn assert_greeks_equal(client: &tokio_postgres::Client, id: Uuid, truth: &Value) {
    let rows = client
        .query(
            "SELECT symbol, theoretical_price::text, implied_volatility::text, delta::text,
                    gamma::text, theta::text, rho::text, vega::text,
                    (extract(epoch FROM greeks_updated_at) * 1000)::bigint
             FROM positions WHERE account_id = $1 AND symbol = ANY($2)",
            &[&id, &truth.as_object().unwrap().keys().collect::<Vec<_>>()],
        )
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        truth.as_object().unwrap().len(),
        "option positions with greeks"
    );
    let amount = |text: Option<&str>| text.map(|t| Decimal::from_str(t).unwrap().normalize());
    for row in &rows {
        let symbol: &str = row.get(0);
        let expected = &truth[symbol];
        let names = [
            "price",
            "volatility",
            "delta",
            "gamma",
            "theta",
            "rho",
            "vega",
        ];
        for (i, name) in names.iter().enumerate() {
            assert_eq!(
                amount(row.get(i + 1)),
                amount(expected[*name].as_str()),
                "{symbol} {name}"
            );
        }
        assert_eq!(
            row.get::<_, Option<i64>>(8),
            expected["time"].as_i64(),
            "{symbol} greeks time"
        );
    }
}

/// The fields of a net-liq bar, in the broker's names and the table's columns.
const NET_LIQ_FIELDS: [(&str, &str); 12] = [
    ("open", "open"),
    ("high", "high"),
    ("low", "low"),
    ("close", "close"),
    ("pending-cash-open", "pending_cash_open"),
    ("pending-cash-high", "pending_cash_high"),
    ("pending-cash-low", "pending_cash_low"),
    ("pending-cash-close", "pending_cash_close"),
    ("total-open", "total_open"),
    ("total-high", "total_high"),
    ("total-low", "total_low"),
    ("total-close", "total_close"),
];

/// Every bar stored equals the simulator's, time and amounts, and no bar is missing or extra.
async fn assert_net_liq_history_equals(client: &tokio_postgres::Client, id: Uuid, truth: &Value) {
    let columns: Vec<String> = (NET_LIQ_FIELDS.iter())
        .map(|(_, column)| format!("{column}::text"))
        .collect();
    let sql = format!(
        "SELECT to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00', {}
         FROM net_liq_history WHERE account_id = $1 ORDER BY time",
        columns.join(", ")
    );
    let amount = |text: Option<&str>| text.map(|t| Decimal::from_str(t).unwrap().normalize());
    let stored: Vec<(String, Vec<Option<Decimal>>)> = (client.query(&sql, &[&id]).await.unwrap())
        .iter()
        .map(|row| {
            let values = (1..=NET_LIQ_FIELDS.len())
                .map(|i| amount(row.get::<_, Option<&str>>(i)))
                .collect();
            (row.get(0), values)
        })
        .collect();
    let expected: Vec<(String, Vec<Option<Decimal>>)> = (truth.as_array().unwrap().iter())
        .map(|bar| {
            let values = (NET_LIQ_FIELDS.iter())
                .map(|(field, _)| amount(bar[*field].as_str()))
                .collect();
            (bar["time"].as_str().unwrap().to_owned(), values)
        })
        .collect();
    assert_eq!(stored.len(), expected.len(), "net-liq bars");
    assert!(stored == expected, "net-liq bars differ");
}

pub async fn stored_ids(
    client: &tokio_postgres::Client,
    sql: &str,
    account_id: Uuid,
) -> BTreeSet<i64> {
    client
        .query(sql, &[&account_id])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

pub fn id_set(ids: &Value) -> BTreeSet<i64> {
    ids.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}
