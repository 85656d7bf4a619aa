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
    let decimal = |v: &Value| Decimal::from_str(v.as_str().unwrap()).unwrap();
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
    let count = |sql: &'static str| async move {
        client
            .query_one(sql, &[&id])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(
        count("SELECT count(*) FROM order_legs WHERE account_id = $1 AND removed_at IS NULL").await,
        truth["orders"]["legs"].as_i64().unwrap()
    );
    assert_eq!(
        count("SELECT count(*) FROM order_fills WHERE account_id = $1 AND removed_at IS NULL")
            .await,
        truth["orders"]["fills"].as_i64().unwrap()
    );

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
        count("SELECT count(*) FROM account_balance_snapshots WHERE account_id = $1 AND time_of_day = 'EOD'").await,
        truth["snapshots"]["count"].as_i64().unwrap(),
        "EOD snapshots"
    );
    assert_eq!(
        count("SELECT count(*) FROM account_balances WHERE account_id = $1 AND removed_at IS NULL")
            .await,
        truth["balances"].as_array().unwrap().len() as i64
    );
    assert_eq!(
        count(
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
