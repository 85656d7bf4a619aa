//! The account streamer against the simulator's streamer, Postgres and moto: pushed objects
//! stored at once, transactions read by the realtime syncs it queues, gaps healed after every
//! (re)connect, tokens renewed in heartbeats, and the shard lease handed from one holder to the
//! next.

use std::time::{Duration, Instant};

use tastysync_shared::adapters::postgres::{PgAccounts, PgSyncStore};
use tastysync_shared::domain::tasks::{TaskKind, TaskStatus};
use tastysync_shared::ports::TaskHistory;
use tastysync_shared::realtime::{Served, StreamerSettings};
use tastysync_shared::tastytrade::{BrokerConfig, TastytradeClient};
use tastysync_shared::wiring::{AccountStreamer, Function};
use tastytrade_sim::Activity;
use uuid::Uuid;

use crate::link::World;
use crate::sync::{assert_database_equals_truth, drain, one_synced_account};

/// The streamer's dependencies in this process, with the cadences shortened for a test.
pub(crate) fn streamer(w: &World, settings: StreamerSettings) -> AccountStreamer {
    let config = BrokerConfig::for_simulator(
        w.sim.credentials.base_url.parse().unwrap(),
        w.sim.credentials.streamer_url.parse().unwrap(),
    );
    AccountStreamer {
        store: PgSyncStore::new(w.pool_of(Function::AccountStreamer)),
        accounts: PgAccounts::new(w.pool_of(Function::AccountStreamer)),
        broker: TastytradeClient::new(config).unwrap(),
        cipher: w.aws.cipher_of(Function::AccountStreamer),
        tasks: w.aws.tasks_of(Function::AccountStreamer),
        queue: w.aws.queue_of(Function::AccountStreamer),
        oauth_client: None,
        events: w.aws.events_of(Function::AccountStreamer),
        settings,
    }
}

fn quick() -> StreamerSettings {
    StreamerSettings {
        debounce: Duration::from_millis(300),
        lease_check_every: Duration::from_millis(300),
        reserve: Duration::from_millis(200),
        backoff: Duration::from_millis(200),
        ..StreamerSettings::default()
    }
}

/// Waits until `check` holds, for at most `limit`; how long it took.
async fn eventually<F: std::future::Future<Output = bool>>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

async fn stored_order_status(w: &World, order_id: i64) -> Option<String> {
    let client = w.db.client().await;
    let row = client
        .query_opt(
            "SELECT status FROM orders WHERE tastytrade_order_id = $1",
            &[&order_id],
        )
        .await
        .unwrap();
    row.map(|r| r.get(0))
}

async fn stored_transactions(w: &World, ids: &[i64]) -> i64 {
    let client = w.db.client().await;
    client
        .query_one(
            "SELECT count(*) FROM transactions WHERE tastytrade_transaction_id = ANY($1)",
            &[&ids],
        )
        .await
        .unwrap()
        .get(0)
}

/// Runs `test` while the shard is served; the shard stopping first fails the test.
async fn while_serving<R: std::fmt::Debug>(
    serving: impl std::future::Future<Output = R>,
    test: impl std::future::Future<Output = ()>,
) {
    tokio::select! {
        report = serving => panic!("the shard stopped early: {report:?}"),
        () = test => {}
    }
}

/// The account's realtime syncs still waiting for a worker.
async fn pending_realtime(w: &World, account_id: Uuid) -> usize {
    let tasks = w.aws.tasks().recent(account_id, 100).await.unwrap();
    tasks
        .iter()
        .filter(|t| t.kind == TaskKind::Realtime && t.status == TaskStatus::Pending)
        .count()
}

#[tokio::test]
async fn a_fill_is_an_order_row_at_once_and_its_transactions_come_with_the_sync_it_queues() {
    let (w, worker, account_id) = one_synced_account(200, 40).await;
    let number = w.sim.credentials.account_numbers[0].clone();
    let deps = streamer(&w, quick());
    let deadline = Instant::now() + Duration::from_secs(60);
    let serving = deps.run_shard(0, deadline);
    let test = async {
        eventually(Duration::from_secs(10), "connected", || async {
            w.sim.simulator.streamer_connections() == 1
        })
        .await;
        // The connect itself queued a sync: nothing pushed before it is replayed.
        eventually(Duration::from_secs(5), "a gap sync queued", || async {
            pending_realtime(&w, account_id).await == 1
        })
        .await;
        assert!(drain(&w, &worker).await.is_empty());

        let activity = Activity {
            trades: 3,
            cash_change_cents: 12_345,
            close_positions: 1,
            ..Activity::default()
        };
        let outcome = w.sim.simulator.add_activity(&number, &activity).unwrap();
        for id in &outcome.traded_orders {
            eventually(
                Duration::from_secs(5),
                "the filled order stored",
                || async { stored_order_status(&w, *id).await.as_deref() == Some("Filled") },
            )
            .await;
        }
        // A burst of fills queues one sync of the account, once it settles.
        eventually(Duration::from_secs(5), "a realtime sync queued", || async {
            pending_realtime(&w, account_id).await == 1
        })
        .await;
        assert_eq!(
            stored_transactions(&w, &outcome.trade_transactions).await,
            0
        );
        assert!(drain(&w, &worker).await.is_empty());
        let trades = i64::try_from(outcome.trade_transactions.len()).unwrap();
        assert_eq!(
            stored_transactions(&w, &outcome.trade_transactions).await,
            trades
        );
        assert_database_equals_truth(&w, &number).await;
    };
    while_serving(serving, test).await;
}

#[tokio::test]
async fn a_dropped_socket_or_a_dead_token_reconnects_and_the_gap_is_synced() {
    let (w, worker, account_id) = one_synced_account(100, 20).await;
    let number = w.sim.credentials.account_numbers[0].clone();
    let settings = StreamerSettings {
        heartbeat_every: Duration::from_millis(300),
        ..quick()
    };
    let deps = streamer(&w, settings);
    let serving = deps.run_shard(0, Instant::now() + Duration::from_secs(60));
    let test = async {
        let sim = &w.sim.simulator;
        eventually(Duration::from_secs(10), "connected", || async {
            sim.streamer_connections() == 1
        })
        .await;
        assert!(drain(&w, &worker).await.is_empty());

        // The broker restarts: what happens while we are away is never pushed.
        sim.drop_streamer_sessions();
        let missed = sim
            .add_activity(
                &number,
                &Activity {
                    trades: 2,
                    ..Activity::default()
                },
            )
            .unwrap();
        eventually(Duration::from_secs(10), "reconnected", || async {
            sim.streamer_connections() == 1 && pending_realtime(&w, account_id).await == 1
        })
        .await;
        assert!(drain(&w, &worker).await.is_empty());
        for id in &missed.traded_orders {
            assert_eq!(
                stored_order_status(&w, *id).await.as_deref(),
                Some("Filled")
            );
        }

        // Every access token dies: the next heartbeat is refused, and the streamer comes back
        // with a fresh token (and heals the gap again).
        sim.expire_access_tokens();
        eventually(
            Duration::from_secs(10),
            "reconnected with a new token",
            || async { pending_realtime(&w, account_id).await >= 1 },
        )
        .await;
        let outcome = sim
            .add_activity(
                &number,
                &Activity {
                    trades: 1,
                    ..Activity::default()
                },
            )
            .unwrap();
        eventually(Duration::from_secs(5), "the fill stored", || async {
            stored_order_status(&w, outcome.traded_orders[0])
                .await
                .as_deref()
                == Some("Filled")
        })
        .await;
        assert!(drain(&w, &worker).await.is_empty());
        assert_database_equals_truth(&w, &number).await;
    };
    while_serving(serving, test).await;
}

#[tokio::test]
async fn an_account_unlinked_while_its_socket_is_open_takes_nothing_more_from_it() {
    let (w, _worker, account_id) = one_synced_account(20, 5).await;
    let number = w.sim.credentials.account_numbers[0].clone();
    let deps = streamer(&w, quick());
    let serving = deps.run_shard(0, Instant::now() + Duration::from_secs(60));
    let test = async {
        let sim = &w.sim.simulator;
        eventually(Duration::from_secs(10), "connected", || async {
            sim.streamer_connections() == 1 && pending_realtime(&w, account_id).await == 1
        })
        .await;
        let client = w.db.client().await;
        let orders = || async {
            let sql = "SELECT count(*) FROM orders WHERE account_id = $1";
            client
                .query_one(sql, &[&account_id])
                .await
                .unwrap()
                .get::<_, i64>(0)
        };
        let kept = orders().await;
        assert_eq!(
            crate::link::delete(&w, "user-a", &account_id.to_string()).await,
            204
        );

        let outcome = sim
            .add_activity(
                &number,
                &Activity {
                    trades: 1,
                    ..Activity::default()
                },
            )
            .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            stored_order_status(&w, outcome.traded_orders[0]).await,
            None
        );
        assert_eq!(
            orders().await,
            kept,
            "nothing more is written for the unlinked account"
        );
        assert_eq!(
            pending_realtime(&w, account_id).await,
            1,
            "no sync is queued for it but the connect's"
        );
    };
    while_serving(serving, test).await;
}

#[tokio::test]
async fn the_grants_are_spread_over_as_many_shards_as_their_number_needs() {
    let w = crate::link::world_with(tastytrade_sim::data::Sizes {
        accounts: 3,
        transactions: 5,
        orders: 1,
        years: 1,
    })
    .await;
    for number in &w.sim.credentials.account_numbers {
        let grant = w.sim.simulator.grant_for(&[number.as_str()]);
        crate::link::link_grant(&w, "user-a", &grant).await;
    }
    let client = w.db.client().await;
    let sql = "SELECT count(*) FROM tastytrade_accounts WHERE NOT is_closed";
    let open = usize::try_from(client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0)).unwrap();
    assert!(open >= 2, "enough open accounts for two shards");
    let settings = StreamerSettings {
        grants_per_shard: 2,
        max_shards: 4,
        ..quick()
    };
    let deps = streamer(&w, settings);
    let until = Instant::now() + Duration::from_secs(30);

    let beyond = deps.run_shard(2, until).await.unwrap();
    assert_eq!(
        beyond.served,
        Served::NotNeeded,
        "two shards hold three grants"
    );
    assert!(
        deps.run_shard(4, until).await.is_err(),
        "no schedule invokes a fifth"
    );

    let serving = async {
        let (first, second) = tokio::join!(deps.run_shard(0, until), deps.run_shard(1, until));
        panic!("the shards stopped early: {first:?} {second:?}");
    };
    let test = eventually(Duration::from_secs(10), "every grant connected", || async {
        w.sim.simulator.streamer_connections() == open
    });
    tokio::select! {
        () = serving => {}
        _ = test => {}
    }
}

#[tokio::test]
async fn a_shard_held_with_time_to_spare_is_left_alone_and_one_near_its_end_is_taken_over() {
    let (w, _worker, _) = one_synced_account(20, 5).await;
    let settings = StreamerSettings {
        takeover_within: Duration::from_secs(6),
        ..quick()
    };
    let first = streamer(&w, settings.clone());
    let second = streamer(&w, settings.clone());
    let third = streamer(&w, settings);
    let started = Instant::now();
    let holder = first.run_shard(0, started + Duration::from_secs(10));
    let successors = async {
        eventually(
            Duration::from_secs(5),
            "the first holder connected",
            || async { w.sim.simulator.streamer_connections() == 1 },
        )
        .await;
        // Nine seconds left, more than the six of a takeover: this one leaves at once.
        let early = second.run_shard(0, Instant::now() + Duration::from_secs(30));
        let early = early.await.unwrap();
        assert_eq!(early.served, Served::HeldElsewhere);
        assert_eq!(early.connects, 0);
        tokio::time::sleep_until((started + Duration::from_secs(5)).into()).await;
        third
            .run_shard(0, Instant::now() + Duration::from_secs(8))
            .await
            .unwrap()
    };
    let (held, took_over) = tokio::join!(holder, successors);
    let held = held.unwrap();
    assert_eq!(held.served, Served::HandedOver, "the first holder let go");
    assert!(
        held.connects >= 1 && took_over.connects >= 1,
        "{held:?} {took_over:?}"
    );
    assert_eq!(took_over.served, Served::UntilDeadline);
}

/// The streamer binary outside Lambda against the world's stack: it serves shard 0 in a loop
/// of invocations, renewing its lease every 5 s with a promise of 5 s more, and looks for the
/// shard every second while another process holds it.
fn streamer_command(w: &World) -> tokio::process::Command {
    let mut command = crate::sync::function_command(w, "account-streamer");
    command
        .env("STREAMER_ALIVE_SECONDS", "5")
        .env("STREAMER_TICK_SECONDS", "1");
    command
}

#[tokio::test]
async fn a_killed_holder_is_replaced_by_the_next_process_and_the_gap_sync_restores_the_truth() {
    let (w, worker, account_id) = one_synced_account(100, 20).await;
    let number = w.sim.credentials.account_numbers[0].clone();
    let sim = &w.sim.simulator;
    let mut first = streamer_command(&w).spawn().unwrap();
    eventually(
        Duration::from_secs(30),
        "the first process connected",
        || async { sim.streamer_connections() == 1 && pending_realtime(&w, account_id).await == 1 },
    )
    .await;
    assert!(drain(&w, &worker).await.is_empty());

    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let killed = Instant::now();
    // Nobody listens: these are never pushed, and only the gap sync can bring them.
    let missed = sim
        .add_activity(
            &number,
            &Activity {
                trades: 2,
                cash_change_cents: -5_000,
                close_positions: 1,
                ..Activity::default()
            },
        )
        .unwrap();
    let mut next = streamer_command(&w).spawn().unwrap();
    eventually(
        Duration::from_secs(120),
        "the next process took over",
        || async { sim.streamer_connections() == 1 && pending_realtime(&w, account_id).await == 1 },
    )
    .await;
    let gap = killed.elapsed();
    assert!(
        gap < Duration::from_secs(120),
        "took over {gap:?} after the kill"
    );
    assert!(drain(&w, &worker).await.is_empty());
    for id in &missed.traded_orders {
        assert_eq!(
            stored_order_status(&w, *id).await.as_deref(),
            Some("Filled")
        );
    }
    assert_database_equals_truth(&w, &number).await;
    next.start_kill().unwrap();
    next.wait().await.unwrap();
}
