use tastysync_shared::db::migrations;
use tastysync_tests::TestDb;

/// Every table of DESIGN.md §3.
const TABLES: &[&str] = &[
    "tastytrade_credentials",
    "tastytrade_credential_secrets",
    "tastytrade_accounts",
    "transactions",
    "orders",
    "order_legs",
    "order_fills",
    "positions",
    "account_balances",
    "account_balance_snapshots",
];

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_create_every_table() {
    let db = TestDb::empty().await;

    let applied = migrations::apply(&db.pool).await.unwrap();

    assert_eq!(applied, migrations::embedded());
    let rows = db
        .client()
        .await
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .await
        .unwrap();
    let present: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    for table in TABLES {
        assert!(present.iter().any(|t| t == table), "{table} is missing");
    }
}

#[tokio::test]
async fn a_second_run_applies_nothing() {
    let db = TestDb::migrated().await;

    let applied = migrations::apply(&db.pool).await.unwrap();

    assert!(applied.is_empty(), "second run applied {applied:?}");
}

#[tokio::test]
async fn concurrent_runs_apply_each_migration_exactly_once() {
    let db = TestDb::empty().await;

    let (first, second) = tokio::join!(migrations::apply(&db.pool), migrations::apply(&db.pool));

    let mut applied = [first.unwrap(), second.unwrap()].concat();
    applied.sort();
    let mut expected = migrations::embedded();
    expected.sort();
    assert_eq!(applied, expected);
}
