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

/// Listens like CloudFormation's presigned response URL and keeps what each PUT delivered.
async fn response_url() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    let answers = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = answers.clone();
    let app = axum::Router::new().route(
        "/presigned",
        axum::routing::put(move |body: axum::body::Bytes| async move {
            kept.lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/presigned", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, answers)
}

fn custom_resource(kind: &str, response_url: &str) -> serde_json::Value {
    let mut event = tastysync_tests::event("schema-migration-create.json");
    event["RequestType"] = kind.into();
    event["ResponseURL"] = response_url.into();
    if kind != "Create" {
        event["PhysicalResourceId"] = migrate::PHYSICAL_ID.into();
        event["OldResourceProperties"] = event["ResourceProperties"].clone();
    }
    event
}

#[tokio::test]
async fn the_deploys_custom_resource_migrates_answers_cloudformation_and_delete_keeps_the_data() {
    let db = TestDb::empty().await;
    let (url, answers) = response_url().await;
    let http = tastysync_shared::tls::http()
        .build()
        .expect("an HTTP client");

    migrate::handle(&db.pool, &http, custom_resource("Create", &url))
        .await
        .unwrap();
    migrate::handle(&db.pool, &http, custom_resource("Update", &url))
        .await
        .unwrap();
    migrate::handle(&db.pool, &http, custom_resource("Delete", &url))
        .await
        .unwrap();

    let answers = answers.lock().unwrap().clone();
    assert_eq!(answers.len(), 3, "every request is answered: {answers:?}");
    for answer in &answers {
        assert_eq!(answer["Status"], "SUCCESS", "{answer}");
        assert_eq!(answer["PhysicalResourceId"], migrate::PHYSICAL_ID);
        assert_eq!(answer["LogicalResourceId"], "SchemaMigration");
        assert_eq!(answer["RequestId"], "6f1f4e1c-8d0e-4e5a-9c3b-2f0a1b2c3d4e");
    }
    let all = migrations::embedded().len().to_string();
    assert_eq!(
        answers[0]["Data"]["Applied"],
        all.as_str(),
        "create migrates"
    );
    assert_eq!(
        answers[1]["Data"]["Applied"], "0",
        "update finds it current"
    );
    let tables: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'transactions'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 1, "delete dropped nothing");
}

#[tokio::test]
async fn a_failed_migration_fails_the_deploy_without_revealing_the_connection() {
    let db = TestDb::empty().await;
    // The right server, but a database that does not exist.
    let broken = db.url.replace(&db.name, "no_such_database");
    let config = tastysync_shared::config::DatabaseConfig::from_env(
        &tastysync_shared::config::Env::from_pairs([("DATABASE_URL", broken.as_str())]),
    )
    .unwrap();
    let pool = tastysync_shared::db::pool(&config, &tastysync_shared::aws::sdk_config().await)
        .await
        .unwrap();
    let (url, answers) = response_url().await;

    migrate::handle(
        &pool,
        &tastysync_shared::tls::http()
            .build()
            .expect("an HTTP client"),
        custom_resource("Create", &url),
    )
    .await
    .unwrap();

    let answer = answers.lock().unwrap()[0].clone();
    assert_eq!(answer["Status"], "FAILED", "{answer}");
    let reason = answer["Reason"].as_str().unwrap();
    assert!(reason.contains("migrate function's logs"), "{reason}");
    assert!(!reason.contains("no_such_database"), "{reason}");
}

#[tokio::test]
async fn legs_stored_by_their_place_are_rekeyed_by_symbol_and_action_with_their_fills() {
    let db = TestDb::empty().await;
    let client = db.client().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let version = |p: &std::path::PathBuf| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        name[1..name.find("__").unwrap()].parse::<u32>().unwrap()
    };
    files.sort_by_key(version);
    let (before, after): (Vec<_>, Vec<_>) = files.iter().partition(|p| version(p) < 7);
    for file in before {
        client
            .batch_execute(&std::fs::read_to_string(file).unwrap())
            .await
            .unwrap();
    }
    // An order that repeats a leg (symbol and action) and one whose legs differ.
    client
        .batch_execute(
            "INSERT INTO tastytrade_credentials (id, user_id, environment, grant_kind)
             VALUES ('00000000-0000-0000-0000-000000000001', 'u', 'sandbox', 'personal');
             INSERT INTO tastytrade_accounts (id, user_id, environment, account_number, credential_id)
             VALUES ('00000000-0000-0000-0000-00000000000a', 'u', 'sandbox', '5WT1',
                     '00000000-0000-0000-0000-000000000001');
             INSERT INTO orders (account_id, tastytrade_order_id, account_number, status, raw)
             VALUES ('00000000-0000-0000-0000-00000000000a', 1, '5WT1', 'Filled', '{}'),
                    ('00000000-0000-0000-0000-00000000000a', 2, '5WT1', 'Filled', '{}');
             INSERT INTO order_legs (account_id, tastytrade_order_id, leg_index, symbol, action)
             VALUES ('00000000-0000-0000-0000-00000000000a', 1, 0, 'SPY', 'Buy to Open'),
                    ('00000000-0000-0000-0000-00000000000a', 1, 1, 'SPY', 'Buy to Open'),
                    ('00000000-0000-0000-0000-00000000000a', 2, 0, 'QQQ', NULL);
             INSERT INTO order_fills (account_id, tastytrade_order_id, leg_index, fill_id, quantity,
                                      filled_at)
             VALUES ('00000000-0000-0000-0000-00000000000a', 1, 1, 'f1', 1, now()),
                    ('00000000-0000-0000-0000-00000000000a', 2, 0, 'f2', 1, now());",
        )
        .await
        .unwrap();

    for file in after {
        client
            .batch_execute(&std::fs::read_to_string(file).unwrap())
            .await
            .unwrap();
    }

    let legs: Vec<(i64, i16, String)> = client
        .query(
            "SELECT tastytrade_order_id, leg_index, leg_key FROM order_legs ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        legs,
        [
            (1, 0, "SPY|Buy to Open".to_owned()),
            (1, 1, "SPY|Buy to Open#2".to_owned()),
            (2, 0, "QQQ|".to_owned()),
        ]
    );
    let fills: Vec<(String, String)> = client
        .query("SELECT fill_id, leg_key FROM order_fills ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        fills,
        [
            ("f1".to_owned(), "SPY|Buy to Open#2".to_owned()),
            ("f2".to_owned(), "QQQ|".to_owned()),
        ]
    );
}

/// The read routes act as `tastysync_reader` (V16): every table, later ones included, reads
/// through it and none takes a write, so a read path that tried one fails here as on Aurora.
#[tokio::test]
async fn the_read_routes_role_reads_every_table_and_writes_none() {
    use tastysync_shared::wiring::Function;
    let db = TestDb::migrated().await;
    let admin = db.client().await;
    let tables = tastysync_tests::texts(
        &admin,
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .await;
    let reader = db.pool_of(Function::AccountData).await.get().await.unwrap();

    let acting_as: String = reader
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(acting_as, "tastysync_reader");
    assert!(tables.len() > TABLES.len(), "{tables:?}");
    for table in &tables {
        reader
            .query(&format!("SELECT 1 FROM {table} LIMIT 1"), &[])
            .await
            .unwrap_or_else(|e| panic!("the reader cannot read {table}: {e}"));
        for write in [
            format!("DELETE FROM {table} WHERE false"),
            format!(
                "UPDATE {table} SET {} = {0} WHERE false",
                first_column(&db, table).await
            ),
        ] {
            let refused = reader.execute(&write, &[]).await.unwrap_err();
            assert_eq!(
                refused.code(),
                Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
                "{write}: {refused}"
            );
        }
    }
    // Only the migrations keep the login user's rights.
    let login_user: Vec<Function> = (Function::ALL.into_iter())
        .filter(|f| f.database_user().is_none())
        .collect();
    assert_eq!(login_user, [Function::Migrate]);
}

#[tokio::test]
async fn each_function_acts_as_its_own_role_and_is_refused_what_its_function_never_does() {
    use tastysync_shared::wiring::Function;
    let db = TestDb::migrated().await;
    // What each function never does, and one thing it does.
    let cases = [
        (
            Function::LinkAccount,
            "SELECT 1 FROM transactions LIMIT 1",
            "SELECT 1 FROM tastytrade_accounts LIMIT 1",
        ),
        (
            Function::Accounts,
            "SELECT 1 FROM tastytrade_credential_secrets LIMIT 1",
            "DELETE FROM audit_events WHERE false",
        ),
        (
            Function::SyncTrigger,
            "DELETE FROM tastytrade_accounts WHERE false",
            "UPDATE tastytrade_accounts SET sync_queued_at = now() WHERE false",
        ),
        (
            Function::SyncScheduler,
            "SELECT 1 FROM tastytrade_credentials LIMIT 1",
            "UPDATE tastytrade_accounts SET sync_queued_at = now() WHERE false",
        ),
        (
            Function::SyncWorker,
            "DELETE FROM tastytrade_accounts WHERE false",
            "DELETE FROM transactions WHERE false",
        ),
        (
            Function::AccountStreamer,
            "SELECT 1 FROM idempotency_keys LIMIT 1",
            "SELECT 1 FROM tastytrade_credential_secrets LIMIT 1",
        ),
    ];

    for (function, never, does) in cases {
        let client = db.pool_of(function).await.get().await.unwrap();
        let refused = client.execute(never, &[]).await.unwrap_err();
        assert_eq!(
            refused.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{function:?}: {never}: {refused}"
        );
        client
            .execute(does, &[])
            .await
            .unwrap_or_else(|e| panic!("{function:?}: {does}: {e}"));
    }
}

#[tokio::test]
async fn each_function_logs_in_as_its_own_user_and_can_become_no_other() {
    use tastysync_shared::wiring::Function;
    let db = TestDb::migrated().await;
    let master: String = db
        .client()
        .await
        .query_one("SELECT session_user::text", &[])
        .await
        .unwrap()
        .get(0);

    for function in Function::ALL {
        let Some(user) = function.database_user() else {
            continue;
        };
        let client = db.pool_of(function).await.get().await.unwrap();
        client.batch_execute("RESET ROLE").await.unwrap();
        let row = client
            .query_one("SELECT session_user::text, current_user::text", &[])
            .await
            .unwrap();
        assert_eq!(
            (row.get::<_, String>(0), row.get::<_, String>(1)),
            (user.to_owned(), user.to_owned()),
            "{function:?}"
        );
        for other in [master.as_str(), "tastysync_worker", "tastysync_link"]
            .into_iter()
            .filter(|o| *o != user)
        {
            let refused = client
                .batch_execute(&format!("SET ROLE \"{other}\""))
                .await
                .unwrap_err();
            assert_eq!(
                refused.code(),
                Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
                "{function:?} became {other}: {refused}"
            );
        }
    }
}

async fn first_column(db: &TestDb, table: &str) -> String {
    db.client()
        .await
        .query_one(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position LIMIT 1",
            &[&table],
        )
        .await
        .unwrap()
        .get(0)
}
