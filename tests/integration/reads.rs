//! The read API through the local gateway, against a synced simulator account.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tastysync_local::gateway;
use tastysync_shared::api::BASE_PATH;
use tastysync_shared::domain::tasks::TaskKind;
use tastysync_tests::TestDb;
use tastytrade_sim::Activity;
use tastytrade_sim::data::Sizes;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::link::{Served, served_with};
use crate::sync::{run_task, until_every_task_ended, worker};

async fn get(served: &Served, token: &str, path: &str) -> (u16, Value) {
    let response = tastysync_shared::tls::http()
        .build()
        .expect("an HTTP client")
        .get(format!("{}{BASE_PATH}{path}", served.gateway.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits for the link's full sync, which the gateway's own worker runs.
async fn full_sync_done(served: &Served) {
    let account: Uuid = served.account.parse().unwrap();
    let limit = Duration::from_secs(300);
    until_every_task_ended(&served.w.aws.tasks(), account, limit).await;
}

/// Once the link's full sync is done: the account's truth and a token of its owner.
async fn synced_owner(served: &Served) -> (Value, String) {
    full_sync_done(served).await;
    let w = &served.w;
    let truth = w.sim.simulator.truth(&w.sim.credentials.account_numbers[0]);
    let token = gateway::dev_token(&served.env, "user-a", Duration::from_secs(600));
    (truth.unwrap(), token)
}

/// Every item of `path` (which has a query), page after page by `next_cursor`; `between` runs
/// after each page.
async fn all_pages(
    served: &Served,
    token: &str,
    path: &str,
    mut between: impl AsyncFnMut(),
) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_path = match &cursor {
            Some(c) => format!("{path}&cursor={c}"),
            None => path.to_owned(),
        };
        let (status, page) = get(served, token, &page_path).await;
        assert_eq!(status, 200, "{page}");
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        between().await;
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            return items;
        }
    }
}

#[tokio::test]
async fn paging_all_100k_transactions_reads_each_row_once_newest_first_while_new_rows_arrive() {
    let served = served_with(Sizes {
        accounts: 1,
        transactions: 100_000,
        orders: 100,
        years: 5,
    })
    .await;
    let w = &served.w;
    let deps = worker(w);
    let (truth, token) = synced_owner(&served).await;
    let number = w.sim.credentials.account_numbers[0].clone();
    let account: Uuid = served.account.parse().unwrap();
    let path = format!("/tastytrade-accounts/{account}/transactions?limit=500");

    // Between pages (after the first, then every twentieth of the 200) the account trades and
    // an incremental sync stores it: newer rows, which sort before every page still to come.
    let mut pages = 0;
    let rows = all_pages(&served, &token, &path, async || {
        pages += 1;
        if pages % 20 != 1 {
            return;
        }
        let activity = Activity {
            transactions: 3,
            ..Activity::default()
        };
        w.sim.simulator.add_activity(&number, &activity).unwrap();
        run_task(&deps, account, TaskKind::Incremental).await;
    })
    .await;

    let mut read = Vec::new();
    let mut net = Decimal::ZERO;
    for row in &rows {
        let at =
            chrono::DateTime::parse_from_rfc3339(row["executed_at"].as_str().unwrap()).unwrap();
        read.push((at, row["id"].as_i64().unwrap()));
        if let Some(v) = row["net_value"].as_str() {
            net += Decimal::from_str(v).unwrap();
        }
    }
    let ids: BTreeSet<i64> = read.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids.len(), read.len(), "a row was read twice");
    assert!(
        read.windows(2).all(|p| p[0] > p[1]),
        "pages are newest first, without overlap"
    );
    let truth_ids: BTreeSet<i64> = (truth["transactions"]["ids"].as_array().unwrap().iter())
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(
        ids, truth_ids,
        "every row synced before the first page, once"
    );
    assert_eq!(
        net,
        Decimal::from_str(truth["transactions"]["net-value-sum"].as_str().unwrap()).unwrap(),
        "signed net values add up to the broker's"
    );
}

#[tokio::test]
async fn paging_orders_reads_each_with_its_legs_and_fills_once() {
    let served = served_with(Sizes {
        accounts: 1,
        transactions: 50,
        orders: 300,
        years: 1,
    })
    .await;
    let (truth, token) = synced_owner(&served).await;
    let path = format!("/tastytrade-accounts/{}/orders?limit=50", served.account);

    let orders = all_pages(&served, &token, &path, async || {}).await;

    let (mut ids, mut legs, mut fills) = (Vec::new(), 0, 0);
    for order in &orders {
        ids.push(order["id"].as_i64().unwrap());
        for leg in order["legs"].as_array().unwrap() {
            legs += 1;
            fills += leg["fills"].as_array().unwrap().len() as i64;
        }
    }

    let read: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(read.len(), ids.len(), "an order was read twice");
    let truth_ids: BTreeSet<i64> = (truth["orders"]["ids"].as_array().unwrap().iter())
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(read, truth_ids);
    assert_eq!(Some(legs), truth["orders"]["legs"].as_i64());
    assert_eq!(Some(fills), truth["orders"]["fills"].as_i64());
    let (status, filled) = get(&served, &token, &format!("{path}&status=Filled")).await;
    assert_eq!(status, 200, "{filled}");
    let statuses: BTreeSet<&str> = (filled["items"].as_array().unwrap().iter())
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, BTreeSet::from(["Filled"]));
}

/// Each position's symbol and signed quantity, normalised.
fn symbol_quantities(positions: &Value) -> BTreeSet<(String, String)> {
    (positions.as_array().unwrap().iter())
        .map(|p| {
            let quantity = Decimal::from_str(p["quantity"].as_str().unwrap()).unwrap();
            let symbol = p["symbol"].as_str().unwrap().to_owned();
            (symbol, quantity.normalize().to_string())
        })
        .collect()
}

#[tokio::test]
async fn the_account_its_positions_and_balances_read_back_as_the_broker_holds_them() {
    let served = served_with(Sizes {
        accounts: 1,
        transactions: 50,
        orders: 10,
        years: 1,
    })
    .await;
    let w = &served.w;
    let (truth, token) = synced_owner(&served).await;
    let base = format!("/tastytrade-accounts/{}", served.account);

    let (status, positions) = get(&served, &token, &format!("{base}/positions")).await;

    assert_eq!(status, 200, "{positions}");
    assert_eq!(
        symbol_quantities(&positions),
        symbol_quantities(&truth["positions"])
    );
    assert!(
        (positions.as_array().unwrap().iter())
            .any(|p| p["option"]["option_type"].is_string() && p["option"]["strike"].is_string()),
        "option positions carry their parsed option: {positions}"
    );
    let greeks = truth["greeks"].as_object().unwrap();
    assert!(!greeks.is_empty());
    for (symbol, expected) in greeks {
        let position = (positions.as_array().unwrap().iter())
            .find(|p| p["symbol"] == symbol.as_str())
            .unwrap();
        let served = &position["greeks"];
        for (field, truth_field) in [
            ("delta", "delta"),
            ("implied_volatility", "volatility"),
            ("theoretical_price", "price"),
        ] {
            let amount = |v: &Value| Decimal::from_str(v.as_str().unwrap()).unwrap().normalize();
            assert_eq!(
                amount(&served[field]),
                amount(&expected[truth_field]),
                "{symbol} {field}"
            );
        }
        let as_of = DateTime::parse_from_rfc3339(served["as_of"].as_str().unwrap()).unwrap();
        assert_eq!(
            Some(as_of.timestamp_millis()),
            expected["time"].as_i64(),
            "{symbol}"
        );
    }
    let (status, detail) = get(&served, &token, &base).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["account"]["last_sync_status"], "SUCCESS");
    assert!(
        detail["synced"]["transactions_synced_to"].is_string(),
        "{detail}"
    );
    for (table, truth_count) in [
        ("transactions", &truth["transactions"]["count"]),
        ("orders", &truth["orders"]["count"]),
        ("order_legs", &truth["orders"]["legs"]),
        ("order_fills", &truth["orders"]["fills"]),
    ] {
        assert_eq!(
            &detail["synced"]["rows"][table], truth_count,
            "{table}: {detail}"
        );
    }

    let (status, balances) = get(&served, &token, &format!("{base}/balances")).await;
    assert_eq!(status, 200, "{balances}");
    let cash = |rows: &Value, key: &str| -> BTreeSet<(String, String)> {
        (rows.as_array().unwrap().iter())
            .map(|b| {
                let amount = Decimal::from_str(b[key].as_str().unwrap()).unwrap();
                (
                    b["currency"].as_str().unwrap().to_owned(),
                    amount.normalize().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        cash(&balances, "cash_balance"),
        cash(&truth["balances"], "cash-balance"),
        "a cash balance per currency, as the broker holds it"
    );
    let eod: i64 =
        w.db.client()
            .await
            .query_one(
                "SELECT count(*) FROM account_balance_snapshots WHERE currency = 'USD'
               AND time_of_day = 'EOD'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    let (status, all) = get(
        &served,
        &token,
        &format!("{base}/balance-history?points=1000"),
    )
    .await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(
        all["points"].as_array().unwrap().len() as i64,
        eod,
        "every USD day"
    );
    // Each bar's time, close and total close, in the API's names or the broker's.
    let bars = |bars: &Value, total: &str| -> Vec<(DateTime<Utc>, Decimal, Decimal)> {
        (bars.as_array().unwrap().iter())
            .map(|b| {
                let text = |key: &str| b[key].as_str().unwrap();
                let time = DateTime::parse_from_rfc3339(text("time"))
                    .or_else(|_| DateTime::parse_from_str(text("time"), "%Y-%m-%d %H:%M:%S%#z"));
                let amount = |key: &str| Decimal::from_str(text(key)).unwrap().normalize();
                (time.unwrap().to_utc(), amount("close"), amount(total))
            })
            .collect()
    };
    assert_eq!(
        bars(&all["net_liq"], "total_close"),
        bars(&truth["net-liq-history"], "total-close"),
        "the net-liq chart as the broker draws it"
    );
    let (_, euro) = get(
        &served,
        &token,
        &format!("{base}/balance-history?currency=EUR"),
    )
    .await;
    assert_eq!(
        euro["net_liq"],
        json!([]),
        "the broker charts net liq in USD only"
    );
    let (status, chart) = get(
        &served,
        &token,
        &format!("{base}/balance-history?points=10"),
    )
    .await;
    assert_eq!(status, 200, "{chart}");
    let points = chart["points"].as_array().unwrap();
    assert_eq!(
        (points.len(), chart["downsampled"].as_bool()),
        (10, Some(true))
    );
    assert_eq!(points.first(), all["points"].as_array().unwrap().first());
    assert_eq!(points.last(), all["points"].as_array().unwrap().last());
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("cursor=garbage", "cursor"),
        ("from=2026-13-40", "from"),
        ("sort=asc", "sort"),
        ("symbol=a%00b", "symbol"),
    ] {
        let (status, body) = get(&served, &token, &format!("{base}/transactions?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }
}

#[tokio::test]
async fn the_read_queries_use_indexes_on_a_100k_transaction_account() {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    // Two users' accounts, 100,000 transactions and (for a large table) 20,000 positions each.
    client
        .batch_execute(
            "INSERT INTO tastytrade_credentials (id, user_id, environment, grant_kind)
             VALUES ('00000000-0000-0000-0000-000000000001', 'user-a', 'sandbox', 'personal');
             INSERT INTO tastytrade_accounts (id, user_id, environment, account_number, credential_id)
             VALUES ('00000000-0000-0000-0000-00000000000a', 'user-a', 'sandbox', '5WT1',
                     '00000000-0000-0000-0000-000000000001'),
                    ('00000000-0000-0000-0000-00000000000b', 'user-b', 'sandbox', '5WT2',
                     '00000000-0000-0000-0000-000000000001');
             INSERT INTO transactions (account_id, tastytrade_transaction_id, account_number,
                 transaction_type, transaction_sub_type, executed_at, transaction_date, symbol,
                 underlying_symbol, net_value, raw)
             SELECT a.id, n + (CASE a.account_number WHEN '5WT1' THEN 0 ELSE 1000000 END),
                    a.account_number, 'Trade', 'Buy to Open',
                    timestamptz '2021-01-01' + n * interval '17 minutes',
                    (timestamptz '2021-01-01' + n * interval '17 minutes')::date,
                    'SYM' || (n % 400), 'UND' || (n % 40), n % 1000, '{}'
             FROM tastytrade_accounts a, generate_series(1, 100000) AS n;
             INSERT INTO positions (account_id, symbol, account_number, quantity, raw)
             SELECT a.id, 'SYM' || n, a.account_number, n, '{}'
             FROM tastytrade_accounts a, generate_series(1, 20000) AS n;
             ANALYZE;",
        )
        .await
        .unwrap();
    let account: Uuid = "00000000-0000-0000-0000-00000000000a".parse().unwrap();
    let cursor_at = chrono::DateTime::parse_from_rfc3339("2022-06-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let from = chrono::NaiveDate::from_ymd_opt(2022, 1, 1);
    let none_date: Option<chrono::NaiveDate> = None;
    let none_text: Option<String> = None;
    let symbol = Some("SYM7".to_owned());
    let underlying = Some("UND7".to_owned());
    let statement = client
        .prepare(&format!(
            "EXPLAIN {}",
            tastysync_shared::db::reads::TRANSACTIONS
        ))
        .await
        .unwrap();
    let cases: [(&str, [&(dyn ToSql + Sync); 11]); 3] = [
        (
            "the first page",
            [
                &account,
                &None::<chrono::DateTime<chrono::Utc>>,
                &None::<i64>,
                &none_date,
                &none_date,
                &none_text,
                &none_text,
                &none_text,
                &none_text,
                &501i64,
                &"user-a",
            ],
        ),
        (
            "a later page from a date",
            [
                &account,
                &Some(cursor_at),
                &Some(50_000i64),
                &from,
                &none_date,
                &none_text,
                &none_text,
                &none_text,
                &none_text,
                &501i64,
                &"user-a",
            ],
        ),
        (
            "a symbol and an underlying",
            [
                &account,
                &None::<chrono::DateTime<chrono::Utc>>,
                &None::<i64>,
                &none_date,
                &none_date,
                &symbol,
                &underlying,
                &none_text,
                &none_text,
                &101i64,
                &"user-a",
            ],
        ),
    ];
    for (case, params) in cases {
        let plan: Vec<String> = (client.query(&statement, &params).await.unwrap().iter())
            .map(|r| r.get(0))
            .collect();
        let plan = plan.join("\n");
        assert!(
            !plan.contains("Seq Scan on transactions"),
            "{case} scans the table:\n{plan}"
        );
    }
    client
        .batch_execute(
            "INSERT INTO orders (account_id, tastytrade_order_id, account_number, status,
                 received_at, underlying_symbol, raw)
             SELECT a.id, n + (CASE a.account_number WHEN '5WT1' THEN 0 ELSE 1000000 END),
                    a.account_number, 'Filled', timestamptz '2021-01-01' + n * interval '1 hour',
                    'UND' || (n % 40), '{}'
             FROM tastytrade_accounts a, generate_series(1, 50000) AS n;
             ANALYZE orders;",
        )
        .await
        .unwrap();
    let orders = client
        .prepare(&format!("EXPLAIN {}", tastysync_shared::db::reads::ORDERS))
        .await
        .unwrap();
    let status = Some("Filled".to_owned());
    let plan: Vec<String> = (client
        .query(
            &orders,
            &[
                &account,
                &Some(cursor_at),
                &Some(25_000i64),
                &status,
                &from,
                &none_date,
                &none_text,
                &"user-a",
                &101i64,
            ],
        )
        .await
        .unwrap()
        .iter())
    .map(|r| r.get(0))
    .collect();
    assert!(!plan.join("\n").contains("Seq Scan on orders"), "{plan:?}");
    let plan: Vec<String> = (client
        .query(
            &format!("EXPLAIN {}", tastysync_shared::db::reads::POSITIONS),
            &[&account, &"user-a"],
        )
        .await
        .unwrap()
        .iter())
    .map(|r| r.get(0))
    .collect();
    assert!(
        !plan.join("\n").contains("Seq Scan on positions"),
        "{plan:?}"
    );
    // Hourly bars for six years, for each account.
    client
        .batch_execute(
            "INSERT INTO net_liq_history (account_id, time, close, raw)
             SELECT a.id, timestamptz '2021-01-01' + n * interval '1 hour', n, '{}'
             FROM tastytrade_accounts a, generate_series(1, 50000) AS n;
             ANALYZE net_liq_history;",
        )
        .await
        .unwrap();
    let to = chrono::NaiveDate::from_ymd_opt(2022, 3, 1);
    let plan: Vec<String> = (client
        .query(
            &format!("EXPLAIN {}", tastysync_shared::db::reads::NET_LIQ_HISTORY),
            &[&account, &"user-a", &from, &to],
        )
        .await
        .unwrap()
        .iter())
    .map(|r| r.get(0))
    .collect();
    assert!(
        !plan.join("\n").contains("Seq Scan on net_liq_history"),
        "{plan:?}"
    );
}
