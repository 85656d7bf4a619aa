//! Rows the broker sends that cannot be stored: set aside with their reason and JSON, the rest
//! of their page stored, the sync completed, the metric emitted, and the rows stored (and let
//! out of quarantine) once the broker sends them whole.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;
use tastysync_shared::adapters::postgres::PgAccounts;
use tastysync_shared::domain::tasks::TaskKind;
use tastysync_shared::metrics::ROWS_REJECTED;
use tastysync_shared::ports::AccountRepo;
use tastytrade_sim::data::Sizes;
use tastytrade_sim::{Poison, Quirks};
use uuid::Uuid;

use crate::link::{World, link_personal, world_with};
use crate::metrics::{emf_documents, metric_sum};
use tastysync_tests::truth::{id_set, stored_ids};

use crate::sync::{assert_database_equals_truth, run_task, run_until_idle, worker, worker_command};

/// What the quarantine holds for the account: rows per entity, and their broker ids.
async fn quarantine(w: &World, account_id: Uuid) -> (BTreeMap<String, usize>, BTreeSet<i64>) {
    let client = w.db.client().await;
    let rows = client
        .query(
            "SELECT entity, broker_id, reason, raw FROM quarantined_rows WHERE account_id = $1",
            &[&account_id],
        )
        .await
        .unwrap();
    let mut entities = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for row in &rows {
        *entities.entry(row.get::<_, String>(0)).or_default() += 1;
        ids.extend(row.get::<_, Option<i64>>(1));
        assert!(!row.get::<_, &str>(2).is_empty(), "every entry says why");
        let raw: serde_json::Value = serde_json::from_str(row.get(3)).unwrap();
        assert!(raw.is_object(), "the raw JSON is kept whole: {raw}");
    }
    (entities, ids)
}

#[tokio::test]
async fn rows_that_cannot_be_stored_wait_in_quarantine_while_the_rest_is_stored_until_the_broker_mends_them()
 {
    let w = world_with(Sizes {
        accounts: 1,
        transactions: 1_500,
        orders: 200,
        years: 1,
    })
    .await;
    w.sim.simulator.set_quirks(Quirks {
        poison: vec![
            Poison::GarbageDecimal,
            Poison::NulCharacter,
            Poison::FillWithoutId,
            Poison::UnknownTimeOfDay,
            Poison::SnapshotWithoutDate,
            Poison::DuplicatePosition,
            Poison::NetLiqWithoutTime,
        ],
        ..Quirks::default()
    });
    let linked = link_personal(&w, "user-a").await;
    let account_id: Uuid = linked[0]["id"].as_str().unwrap().parse().unwrap();
    let number = w.sim.credentials.account_numbers[0].clone();
    let mut command = worker_command(&w);
    // One invocation for the whole sync: a continuation re-reads its first page.
    command.env("SYNC_INVOCATION_SECONDS", "120");

    let output = run_until_idle(command, "3", Duration::from_secs(180)).await;

    let documents = emf_documents(&String::from_utf8(output.stdout).unwrap());
    let rejected = |entity| metric_sum(&documents, ROWS_REJECTED, "entity", entity);
    assert_eq!(
        (
            rejected("transactions"),
            rejected("orders"),
            rejected("balance_snapshots"),
            rejected("positions"),
            rejected("net_liq_history"),
        ),
        (2, 1, 2, 0, 1),
        "RowsRejected by entity; the two lots of a position are one position, not a reject"
    );
    let (entities, quarantined_ids) = quarantine(&w, account_id).await;
    let expected = BTreeMap::from([
        ("balance_snapshots".to_owned(), 2),
        ("net_liq_history".to_owned(), 1),
        ("orders".to_owned(), 1),
        ("transactions".to_owned(), 2),
    ]);
    assert_eq!(entities, expected);
    let truth = w.sim.simulator.truth(&number).unwrap();
    let client = w.db.client().await;
    let transactions = stored_ids(
        &client,
        "SELECT tastytrade_transaction_id FROM transactions WHERE account_id = $1",
        account_id,
    )
    .await;
    let orders = stored_ids(
        &client,
        "SELECT tastytrade_order_id FROM orders WHERE account_id = $1",
        account_id,
    )
    .await;
    let truth_transactions = id_set(&truth["transactions"]["ids"]);
    let truth_orders = id_set(&truth["orders"]["ids"]);
    assert_eq!(transactions.len(), truth_transactions.len() - 2);
    assert_eq!(orders.len(), truth_orders.len() - 1);
    let all: BTreeSet<i64> = (transactions.iter().chain(&orders).chain(&quarantined_ids))
        .copied()
        .collect();
    let all_truth: BTreeSet<i64> = truth_transactions.union(&truth_orders).copied().collect();
    assert!(
        all == all_truth,
        "every row is stored or in quarantine, none twice"
    );
    let account = client
        .query_one(
            "SELECT last_sync_status, transactions_synced_to IS NOT NULL,
                    (SELECT count(*) FROM account_balance_snapshots s
                     WHERE s.account_id = a.id AND s.time_of_day = 'EOD')
             FROM tastytrade_accounts a WHERE id = $1",
            &[&account_id],
        )
        .await
        .unwrap();
    assert_eq!(account.get::<_, &str>(0), "SUCCESS");
    assert!(account.get::<_, bool>(1), "the watermarks moved on");
    assert_eq!(
        account.get::<_, i64>(2),
        truth["snapshots"]["count"].as_i64().unwrap() - 2
    );
    let first = &truth["positions"][0];
    let held: String = client
        .query_one(
            "SELECT quantity::text FROM positions WHERE account_id = $1 AND symbol = $2",
            &[&account_id, &first["symbol"].as_str().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    let quantity = |text: &str| Decimal::from_str(text).unwrap().normalize();
    assert_eq!(
        quantity(&held),
        quantity(first["quantity"].as_str().unwrap()),
        "the two lots of {first} are stored as their net position"
    );
    let listed = PgAccounts::new(w.db.pool.clone())
        .list("user-a")
        .await
        .unwrap();
    assert_eq!(
        listed[0].quarantined_rows, 6,
        "the account shows its warning"
    );

    let deps = worker(&w);
    let incremental = run_task(&deps, account_id, TaskKind::Incremental).await;
    assert!(
        incremental.rejected.is_empty(),
        "{:?}",
        incremental.rejected
    );
    assert_eq!(
        quarantine(&w, account_id).await.0,
        expected,
        "an incremental sync does not re-read the old rows, so it cannot tell they are gone"
    );
    let again = run_task(&deps, account_id, TaskKind::Full).await;
    assert_eq!(
        again.rejected,
        (expected.iter())
            .map(|(entity, n)| (entity.clone(), *n as u64))
            .collect(),
        "the task's counts say what was set aside"
    );
    assert_eq!(quarantine(&w, account_id).await.0, expected);

    w.sim.simulator.set_quirks(Quirks::default());
    let mended = run_task(&deps, account_id, TaskKind::Full).await;

    assert!(mended.rejected.is_empty(), "{:?}", mended.rejected);
    assert!(quarantine(&w, account_id).await.0.is_empty());
    assert_database_equals_truth(&w, &number).await;
}
