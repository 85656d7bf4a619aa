//! The schema's promises: every unique key rejects a duplicate and accepts an upsert, the
//! database keeps `updated_at`, and deletes cascade (or unlink) as the design says.

use tastysync_tests::TestDb;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

struct Fixture {
    db: TestDb,
    credential: Uuid,
    account: Uuid,
}

async fn linked_account() -> Fixture {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    let credential: Uuid = client
        .query_one(
            "INSERT INTO tastytrade_credentials (user_id, environment, grant_kind)
             VALUES ('user-a', 'sandbox', 'personal') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let account: Uuid = client
        .query_one(
            "INSERT INTO tastytrade_accounts (user_id, credential_id, environment, account_number)
             VALUES ('user-a', $1, 'sandbox', '5WT00001') RETURNING id",
            &[&credential],
        )
        .await
        .unwrap()
        .get(0);
    drop(client);
    Fixture {
        db,
        credential,
        account,
    }
}

/// Runs `insert` twice: the second must hit the unique key. Then runs `upsert` (the same key
/// with `ON CONFLICT ... DO UPDATE`) and checks it changed the one row, and `updated_at` with it.
async fn assert_unique_key_and_upsert(fixture: &Fixture, table: &str, insert: &str, upsert: &str) {
    let client = fixture.db.client().await;
    client.execute(insert, &[&fixture.account]).await.unwrap();

    let duplicate = client
        .execute(insert, &[&fixture.account])
        .await
        .unwrap_err();
    assert_eq!(
        duplicate.code(),
        Some(&SqlState::UNIQUE_VIOLATION),
        "{table}: {duplicate:?}"
    );

    let before = timestamps(&client, table).await;
    client.execute(upsert, &[&fixture.account]).await.unwrap();
    let after = timestamps(&client, table).await;
    let count: i64 = client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1, "{table}: the upsert added a row");
    assert_eq!(after.0, before.0, "{table}: created_at changed");
    assert!(
        after.1 > before.1,
        "{table}: updated_at was not advanced by the upsert"
    );
}

/// (created_at, updated_at) of the table's one row, in microseconds since the epoch.
async fn timestamps(client: &tokio_postgres::Client, table: &str) -> (i64, i64) {
    // now() is the start of the statement's transaction; the pause guarantees the next
    // statement's now() is later, so "updated_at advanced" cannot pass or fail by chance.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let row = client
        .query_one(
            &format!(
                "SELECT (extract(epoch FROM created_at) * 1e6)::bigint,
                        (extract(epoch FROM updated_at) * 1e6)::bigint FROM {table}"
            ),
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn transactions_are_unique_per_account_and_broker_id() {
    let f = linked_account().await;
    let insert = "INSERT INTO transactions (account_id, tastytrade_transaction_id, account_number,
                      transaction_type, executed_at, transaction_date, net_value, raw)
                  VALUES ($1, 2455333333, '5WT00001', 'Trade', now(), current_date, -10.5, '{}')";
    let upsert = "INSERT INTO transactions (account_id, tastytrade_transaction_id, account_number,
                      transaction_type, executed_at, transaction_date, net_value, raw)
                  VALUES ($1, 2455333333, '5WT00001', 'Trade', now(), current_date, -10.25, '{}')
                  ON CONFLICT (account_id, tastytrade_transaction_id)
                  DO UPDATE SET net_value = EXCLUDED.net_value";
    assert_unique_key_and_upsert(&f, "transactions", insert, upsert).await;
}

#[tokio::test]
async fn orders_legs_and_fills_are_unique_on_their_natural_keys() {
    let f = linked_account().await;
    let order = "INSERT INTO orders (account_id, tastytrade_order_id, account_number, status, raw)
                 VALUES ($1, 9000000001, '5WT00001', 'Live', '{}')";
    let order_upsert = format!(
        "{order} ON CONFLICT (account_id, tastytrade_order_id) DO UPDATE SET status = 'Filled'"
    );
    assert_unique_key_and_upsert(&f, "orders", order, &order_upsert).await;

    let leg = "INSERT INTO order_legs (account_id, tastytrade_order_id, leg_key, leg_index, symbol,
                                 quantity)
               VALUES ($1, 9000000001, 'AAPL|Buy to Open', 0, 'AAPL', 100)";
    let leg_upsert = format!(
        "{leg} ON CONFLICT (account_id, tastytrade_order_id, leg_key)
               DO UPDATE SET remaining_quantity = 0"
    );
    assert_unique_key_and_upsert(&f, "order_legs", leg, &leg_upsert).await;

    let fill = "INSERT INTO order_fills (account_id, tastytrade_order_id, leg_key, fill_id,
                    quantity, fill_price, filled_at)
                VALUES ($1, 9000000001, 'AAPL|Buy to Open', 'fill-1', 100, 187.5, now())";
    let fill_upsert = format!(
        "{fill} ON CONFLICT (account_id, tastytrade_order_id, leg_key, fill_id)
                DO UPDATE SET destination_venue = 'XNAS'"
    );
    assert_unique_key_and_upsert(&f, "order_fills", fill, &fill_upsert).await;
}

#[tokio::test]
async fn positions_are_unique_per_account_and_symbol() {
    let f = linked_account().await;
    let insert = "INSERT INTO positions (account_id, symbol, account_number, quantity, raw)
                  VALUES ($1, 'SPY   250117C00500000', '5WT00001', -2, '{}')";
    let upsert = format!(
        "{insert} ON CONFLICT (account_id, symbol) DO UPDATE SET quantity = EXCLUDED.quantity - 1"
    );
    assert_unique_key_and_upsert(&f, "positions", insert, &upsert).await;
}

#[tokio::test]
async fn balances_are_unique_per_account_and_currency() {
    let f = linked_account().await;
    let insert =
        "INSERT INTO account_balances (account_id, currency, account_number, cash_balance, raw)
                  VALUES ($1, 'USD', '5WT00001', 1000.25, '{}')";
    let upsert =
        format!("{insert} ON CONFLICT (account_id, currency) DO UPDATE SET cash_balance = 999.75");
    assert_unique_key_and_upsert(&f, "account_balances", insert, &upsert).await;
}

#[tokio::test]
async fn balance_snapshots_are_unique_per_account_date_time_of_day_and_currency() {
    let f = linked_account().await;
    let insert = "INSERT INTO account_balance_snapshots (account_id, snapshot_date, time_of_day,
                      currency, account_number, source, raw)
                  VALUES ($1, '2026-11-24', 'EOD', 'USD', '5WT00001', 'broker', '{}')";
    let upsert = format!(
        "{insert} ON CONFLICT (account_id, snapshot_date, time_of_day, currency)
                  DO UPDATE SET net_liquidating_value = 12345.6789"
    );
    assert_unique_key_and_upsert(&f, "account_balance_snapshots", insert, &upsert).await;
}

#[tokio::test]
async fn credential_secrets_are_unique_per_credential_and_purpose() {
    let f = linked_account().await;
    let client = f.db.client().await;
    let insert = "INSERT INTO tastytrade_credential_secrets (credential_id, purpose, scheme_version,
                      kms_key_id, wrapped_key, nonce, ciphertext)
                  VALUES ($1, 'refresh_token', 1, 'key', '\\x01', '\\x000000000000000000000000', '\\x02')";
    client.execute(insert, &[&f.credential]).await.unwrap();
    let duplicate = client.execute(insert, &[&f.credential]).await.unwrap_err();
    assert_eq!(duplicate.code(), Some(&SqlState::UNIQUE_VIOLATION));
}

#[tokio::test]
async fn an_account_is_unique_per_user_environment_and_number_but_not_across_users() {
    let f = linked_account().await;
    let client = f.db.client().await;
    let link = "INSERT INTO tastytrade_accounts (user_id, environment, account_number)
                VALUES ($1, 'sandbox', '5WT00001')";

    let duplicate = client.execute(link, &[&"user-a"]).await.unwrap_err();
    assert_eq!(duplicate.code(), Some(&SqlState::UNIQUE_VIOLATION));

    client.execute(link, &[&"user-b"]).await.unwrap();
    let relink = "INSERT INTO tastytrade_accounts (user_id, environment, account_number)
                  VALUES ('user-a', 'sandbox', '5WT00001')
                  ON CONFLICT (user_id, environment, account_number)
                  DO UPDATE SET nickname = 'relinked' RETURNING id";
    let id: Uuid = client.query_one(relink, &[]).await.unwrap().get(0);
    assert_eq!(id, f.account, "a re-link keeps the account's id");
}

#[tokio::test]
async fn deleting_an_account_deletes_its_synced_rows() {
    let f = linked_account().await;
    let client = f.db.client().await;
    client
        .batch_execute(&format!(
            "INSERT INTO transactions (account_id, tastytrade_transaction_id, account_number,
                 transaction_type, executed_at, transaction_date, raw)
             VALUES ('{a}', 1, '5WT00001', 'Trade', now(), current_date, '{{}}');
             INSERT INTO orders (account_id, tastytrade_order_id, account_number, status, raw)
             VALUES ('{a}', 2, '5WT00001', 'Filled', '{{}}');
             INSERT INTO order_legs (account_id, tastytrade_order_id, leg_key, leg_index, symbol)
             VALUES ('{a}', 2, 'AAPL|', 0, 'AAPL');
             INSERT INTO order_fills (account_id, tastytrade_order_id, leg_key, fill_id, quantity, filled_at)
             VALUES ('{a}', 2, 'AAPL|', 'f1', 1, now());
             INSERT INTO positions (account_id, symbol, account_number, quantity, raw)
             VALUES ('{a}', 'AAPL', '5WT00001', 1, '{{}}');",
            a = f.account
        ))
        .await
        .unwrap();

    client
        .execute(
            "DELETE FROM tastytrade_accounts WHERE id = $1",
            &[&f.account],
        )
        .await
        .unwrap();

    for table in [
        "transactions",
        "orders",
        "order_legs",
        "order_fills",
        "positions",
    ] {
        let left: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, 0, "{table} kept rows of a deleted account");
    }
}

/// An account, an order of it with one leg, and a fill of that leg.
const ONE_FILLED_ORDER: &str = "
    INSERT INTO orders (account_id, tastytrade_order_id, account_number, status, raw)
    VALUES ($1, 2, '5WT00001', 'Filled', '{}');
    INSERT INTO order_legs (account_id, tastytrade_order_id, leg_key, leg_index, symbol)
    VALUES ($1, 2, 'AAPL|', 0, 'AAPL');
    INSERT INTO order_fills (account_id, tastytrade_order_id, leg_key, fill_id, quantity, filled_at)
    VALUES ($1, 2, 'AAPL|', 'f1', 1, now());";

async fn count(client: &tokio_postgres::Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_row_whose_parent_is_missing_is_refused_as_a_foreign_key_violation() {
    let f = linked_account().await;
    let client = f.db.client().await;
    let stranger = Uuid::new_v4();
    let refused = [
        (
            "a transaction of no account",
            "INSERT INTO transactions (account_id, tastytrade_transaction_id, account_number,
                 transaction_type, executed_at, transaction_date, raw)
             VALUES ($1, 1, '5WT00001', 'Trade', now(), current_date, '{}')",
            stranger,
        ),
        (
            "an order of no account",
            "INSERT INTO orders (account_id, tastytrade_order_id, account_number, status, raw)
             VALUES ($1, 2, '5WT00001', 'Filled', '{}')",
            stranger,
        ),
        (
            "a leg of no order",
            "INSERT INTO order_legs (account_id, tastytrade_order_id, leg_key, leg_index, symbol)
             VALUES ($1, 3, 'AAPL|', 0, 'AAPL')",
            f.account,
        ),
        (
            "a fill of no leg",
            "INSERT INTO order_fills (account_id, tastytrade_order_id, leg_key, fill_id, quantity,
                 filled_at)
             VALUES ($1, 3, 'AAPL|', 'f1', 1, now())",
            f.account,
        ),
    ];
    for (what, insert, account) in refused {
        let error = client.execute(insert, &[&account]).await.unwrap_err();
        assert_eq!(
            error.code(),
            Some(&SqlState::FOREIGN_KEY_VIOLATION),
            "{what}: {error:?}"
        );
    }
    for table in ["transactions", "orders", "order_legs", "order_fills"] {
        assert_eq!(count(&client, table).await, 0, "{table} kept a refused row");
    }
}

#[tokio::test]
async fn no_row_changes_the_key_its_children_or_its_parent_hold() {
    let f = linked_account().await;
    let client = f.db.client().await;
    let other: Uuid = client
        .query_one(
            "INSERT INTO tastytrade_accounts (user_id, credential_id, environment, account_number)
             VALUES ('user-a', $1, 'sandbox', '5WT00002') RETURNING id",
            &[&f.credential],
        )
        .await
        .unwrap()
        .get(0);
    client
        .batch_execute(&ONE_FILLED_ORDER.replace("$1", &format!("'{}'", f.account)))
        .await
        .unwrap();
    for update in [
        format!(
            "UPDATE tastytrade_accounts SET id = gen_random_uuid() WHERE id = '{}'",
            f.account
        ),
        format!("UPDATE orders SET account_id = '{other}'"),
        "UPDATE orders SET tastytrade_order_id = 4".to_owned(),
        "UPDATE order_legs SET leg_key = 'MSFT|'".to_owned(),
        "UPDATE order_fills SET tastytrade_order_id = 4".to_owned(),
    ] {
        let error = client.batch_execute(&update).await.unwrap_err();
        assert_eq!(
            error.code(),
            Some(&SqlState::FOREIGN_KEY_VIOLATION),
            "{update}: {error:?}"
        );
    }
    // Columns that are not keys still change.
    client
        .batch_execute(
            "UPDATE orders SET status = 'Cancelled'; UPDATE order_legs SET symbol = 'AAPL'",
        )
        .await
        .unwrap();
}

/// The race the parents' check guards against: a sync storing rows of an account while the
/// user deletes the account. Whichever comes first, no row outlives its account.
#[tokio::test]
async fn an_account_deleted_while_a_sync_stores_its_rows_leaves_none_behind() {
    let f = linked_account().await;
    let mut sync = f.db.client().await;
    let purge = f.db.client().await;
    let insert = "INSERT INTO transactions (account_id, tastytrade_transaction_id, account_number,
                      transaction_type, executed_at, transaction_date, raw)
                  VALUES ($1, 1, '5WT00001', 'Trade', now(), current_date, '{}')";

    // The sync's insert comes first: the delete waits for its transaction, then takes its row.
    let storing = sync.transaction().await.unwrap();
    storing.execute(insert, &[&f.account]).await.unwrap();
    let account = f.account;
    let deleting = tokio::spawn(async move {
        purge
            .execute("DELETE FROM tastytrade_accounts WHERE id = $1", &[&account])
            .await
            .unwrap();
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !deleting.is_finished(),
        "the delete did not wait for the sync's transaction"
    );
    storing.commit().await.unwrap();
    deleting.await.unwrap();
    assert_eq!(
        count(&sync, "transactions").await,
        0,
        "a stored row outlived its account"
    );

    // The delete comes first and is not yet committed: the sync's insert waits for it, then
    // fails as a missing parent.
    let g = linked_account().await;
    let sync = g.db.client().await;
    let mut purge = g.db.client().await;
    let deleting = purge.transaction().await.unwrap();
    deleting
        .execute(
            "DELETE FROM tastytrade_accounts WHERE id = $1",
            &[&g.account],
        )
        .await
        .unwrap();
    let account = g.account;
    let storing = tokio::spawn(async move { sync.execute(insert, &[&account]).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !storing.is_finished(),
        "the insert did not wait for the delete"
    );
    deleting.commit().await.unwrap();
    let error = storing.await.unwrap().expect_err("the insert is refused");
    assert_eq!(
        error.code(),
        Some(&SqlState::FOREIGN_KEY_VIOLATION),
        "{error:?}"
    );
    drop(purge);
    let client = g.db.client().await;
    assert_eq!(count(&client, "transactions").await, 0);
}

#[tokio::test]
async fn deleting_a_grant_deletes_its_secrets_and_unlinks_its_accounts_but_keeps_them() {
    let f = linked_account().await;
    let client = f.db.client().await;
    client
        .execute(
            "INSERT INTO tastytrade_credential_secrets (credential_id, purpose, scheme_version,
                 kms_key_id, wrapped_key, nonce, ciphertext)
             VALUES ($1, 'refresh_token', 1, 'key', '\\x01', '\\x000000000000000000000000', '\\x02')",
            &[&f.credential],
        )
        .await
        .unwrap();

    client
        .execute(
            "DELETE FROM tastytrade_credentials WHERE id = $1",
            &[&f.credential],
        )
        .await
        .unwrap();

    let secrets: i64 = client
        .query_one("SELECT count(*) FROM tastytrade_credential_secrets", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(secrets, 0);
    let credential: Option<Uuid> = client
        .query_one(
            "SELECT credential_id FROM tastytrade_accounts WHERE id = $1",
            &[&f.account],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(credential, None);
}

#[tokio::test]
async fn money_keeps_its_precision_and_ids_beyond_32_bits_fit() {
    let f = linked_account().await;
    let client = f.db.client().await;
    client
        .execute(
            "INSERT INTO transactions (account_id, tastytrade_transaction_id, account_number,
                 transaction_type, executed_at, transaction_date, net_value, quantity, raw)
             VALUES ($1, 9007199254740993, '5WT00001', 'Trade', now(), current_date,
                     -432279.2338, 1.68074, '{\"unknown-field\": true}')",
            &[&f.account],
        )
        .await
        .unwrap();
    let row = client
        .query_one(
            "SELECT tastytrade_transaction_id, net_value::text, quantity::text, raw->>'unknown-field'
             FROM transactions",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 9_007_199_254_740_993);
    assert_eq!(row.get::<_, String>(1), "-432279.2338");
    assert_eq!(row.get::<_, String>(2), "1.68074");
    assert_eq!(row.get::<_, String>(3), "true");
}
