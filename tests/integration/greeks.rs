//! Greeks from the simulator's market-data feed (DXLink, a real websocket): equal to its
//! truth after a full sync, and each fault of the feed a warning on a sync that completes and
//! keeps what it stored before.

use std::collections::BTreeMap;

use serde_json::Value;
use tastysync_shared::domain::tasks::TaskKind;
use tastytrade_sim::Faults;
use tastytrade_sim::dxlink::DxLinkFaults;
use uuid::Uuid;

use crate::link::World;
use crate::sync::{assert_database_equals_truth, one_synced_account, run_task};
use tastysync_tests::truth::assert_greeks_equal;

/// Each option position's delta and greeks time (epoch ms), by position symbol.
async fn stored_greeks(
    w: &World,
    account_id: Uuid,
) -> BTreeMap<String, (Option<String>, Option<i64>)> {
    let client = w.db.client().await;
    let rows = client
        .query(
            "SELECT symbol, delta::text, (extract(epoch FROM greeks_updated_at) * 1000)::bigint
             FROM positions WHERE account_id = $1 AND instrument_type LIKE '% Option'",
            &[&account_id],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
}

fn feed_fault(w: &World, dxlink: DxLinkFaults) {
    w.sim.simulator.set_faults(Faults {
        dxlink,
        ..Faults::default()
    });
}

/// The truth's greeks, by position symbol, in the feed's order (its symbols sorted).
fn by_feed_order(truth: &Value) -> Vec<String> {
    let greeks = truth["greeks"].as_object().unwrap();
    let mut symbols: Vec<(&str, &String)> = (greeks.iter())
        .map(|(symbol, g)| (g["streamer-symbol"].as_str().unwrap(), symbol))
        .collect();
    symbols.sort();
    symbols.into_iter().map(|(_, s)| s.clone()).collect()
}

#[tokio::test]
async fn option_positions_get_the_feeds_greeks_and_a_failing_feed_only_warns_and_keeps_them() {
    let (w, deps, account_id) = one_synced_account(200, 40).await;
    let number = w.sim.credentials.account_numbers[0].clone();
    let truth = w.sim.simulator.truth(&number).unwrap();
    let options = by_feed_order(&truth);
    assert!(options.len() >= 2, "the account holds options: {truth}");
    // The full sync's greeks, with the rest of the truth.
    assert_database_equals_truth(&w, &number).await;
    let first = stored_greeks(&w, account_id).await;

    feed_fault(
        &w,
        DxLinkFaults {
            refuse_auth: true,
            ..DxLinkFaults::default()
        },
    );
    let refused = run_task(&deps, account_id, TaskKind::Incremental).await;
    assert!(refused.warnings.contains_key("greeks"), "{refused:?}");
    assert_eq!(
        stored_greeks(&w, account_id).await,
        first,
        "a refused token keeps the greeks"
    );

    // A feed that drops after one event: that option moves to the new time, the others keep
    // their numbers with their old time.
    let later = w.sim.simulator.advance_greeks_time();
    feed_fault(
        &w,
        DxLinkFaults {
            drop_after: Some(1),
            ..DxLinkFaults::default()
        },
    );
    let dropped = run_task(&deps, account_id, TaskKind::Incremental).await;
    assert!(dropped.warnings.contains_key("greeks"), "{dropped:?}");
    let after_drop = stored_greeks(&w, account_id).await;
    assert_eq!(after_drop[&options[0]].1, Some(later));
    for symbol in &options[1..] {
        assert_eq!(
            after_drop[symbol], first[symbol],
            "{symbol} keeps its old greeks and time"
        );
    }

    // "NaN" greeks are stored as absent, at the event's time, never as the old numbers.
    let latest = w.sim.simulator.advance_greeks_time();
    feed_fault(
        &w,
        DxLinkFaults {
            nan: true,
            ..DxLinkFaults::default()
        },
    );
    let nan = run_task(&deps, account_id, TaskKind::Incremental).await;
    assert!(nan.warnings.is_empty(), "{nan:?}");
    let after_nan = stored_greeks(&w, account_id).await;
    assert_eq!(after_nan[&options[0]], (None, Some(latest)));
    assert_eq!(after_nan[&options[1]].1, Some(latest));

    // A slow feed that drops a silent client after a second: the client's keepalives, sent
    // as the server's SETUP asks, keep the connection until the data comes.
    feed_fault(
        &w,
        DxLinkFaults {
            slow_ms: 2_500,
            keepalive_seconds: 1,
            ..DxLinkFaults::default()
        },
    );
    let slow = run_task(&deps, account_id, TaskKind::Incremental).await;
    assert!(slow.warnings.is_empty(), "{slow:?}");
    let truth = w.sim.simulator.truth(&number).unwrap();
    let client = w.db.client().await;
    assert_greeks_equal(&client, account_id, &truth["greeks"]).await;
}
