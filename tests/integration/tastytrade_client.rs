//! The client against the simulator over HTTP: pagination, retries, tokens, errors.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tastysync_shared::ports::Broker;
use tastysync_shared::tastytrade::client::Stats;
use tastysync_shared::tastytrade::{
    BrokerConfig, BrokerError, Environment, Grant, OrderQuery, RetryPolicy, SnapshotQuery,
    TastytradeClient, TimeOfDay, TransactionQuery,
};
use tastytrade_sim::data::Sizes;
use tastytrade_sim::server::Recorded;
use tastytrade_sim::server::{Config, Running};
use tastytrade_sim::{BalancesShape, Faults, Quirks, Simulator};

async fn simulator(transactions: usize, orders: usize) -> Running {
    tastysync_tests::capture_logs();
    let config = Config {
        seed: 42,
        sizes: Sizes {
            accounts: 2,
            transactions,
            orders,
            years: 4,
        },
        ..Config::default()
    };
    Simulator::spawn(config).await.unwrap()
}

/// Retries fast, so fault tests measure attempts, not sleeps.
fn client(sim: &Running) -> TastytradeClient {
    client_retrying_for(sim, Duration::from_secs(30))
}

fn client_retrying_for(sim: &Running, max_elapsed: Duration) -> TastytradeClient {
    let mut config = BrokerConfig::for_simulator(
        sim.credentials.base_url.parse().unwrap(),
        sim.credentials.streamer_url.parse().unwrap(),
    );
    config.retry = RetryPolicy {
        max_attempts: 8,
        base_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(40),
        max_elapsed,
    };
    TastytradeClient::new(config).unwrap()
}

fn grant(sim: &Running) -> Grant {
    Grant {
        environment: Environment::Sandbox,
        client_id: Some(sim.credentials.client_id.clone()),
        client_secret: SecretString::from(sim.credentials.client_secret.clone()),
        refresh_token: SecretString::from(sim.credentials.refresh_token.clone()),
    }
}

fn count(counter: &AtomicU64) -> u64 {
    Stats::get(counter)
}

struct Scan {
    ids: BTreeSet<i64>,
    net_value: Decimal,
    pages: usize,
}

/// Scans every transaction of `account`, oldest first; pages seen twice (after a rescan) are
/// de-duplicated by id, as the upsert will be.
async fn scan_transactions(
    client: &TastytradeClient,
    sim: &Running,
    account: &str,
    during: impl Fn(usize),
) -> Scan {
    let session = client.session(grant(sim), None);
    let mut pages = session.transactions(account, &TransactionQuery::default());
    let mut seen = std::collections::BTreeMap::new();
    let mut page_count = 0;
    while let Some(page) = pages.next().await {
        let page = page.unwrap();
        page_count += 1;
        for record in page.items {
            seen.insert(
                record.item.id,
                record.item.signed_net_value().unwrap_or_default(),
            );
        }
        during(page_count);
    }
    Scan {
        ids: seen.keys().copied().collect(),
        net_value: seen.values().copied().sum(),
        pages: page_count,
    }
}

fn truth(sim: &Running, account: &str) -> Value {
    sim.simulator.truth(account).unwrap()
}

fn truth_ids(truth: &Value) -> BTreeSet<i64> {
    truth["transactions"]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

fn truth_net(truth: &Value) -> Decimal {
    Decimal::from_str(truth["transactions"]["net-value-sum"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn the_client_pages_through_100k_transactions_and_matches_the_truth() {
    let sim = simulator(100_000, 50).await;
    let account = sim.credentials.account_numbers[0].clone();
    let client = client(&sim);

    let scan = scan_transactions(&client, &sim, &account, |_| {}).await;

    let truth = truth(&sim, &account);
    assert_eq!(truth["transactions"]["count"], 100_000);
    assert_eq!(scan.ids.len(), 100_000);
    assert_eq!(scan.ids, truth_ids(&truth));
    assert_eq!(scan.net_value, truth_net(&truth));
    assert_eq!(scan.pages, 50, "2000 rows a page");
}

#[tokio::test]
async fn the_scan_stays_exact_while_transactions_post_mid_scan() {
    let sim = simulator(30_000, 10).await;
    let account = sim.credentials.account_numbers[0].clone();
    let client = client(&sim);
    let simulator = sim.simulator.clone();

    let scan = scan_transactions(&client, &sim, &account, |page| {
        if page == 3 {
            // Late postings dated back into pages already read, and fresh rows at the end.
            simulator.add_transactions(&account, 25, 700);
            simulator.add_transactions(&account, 40, 0);
        }
    })
    .await;

    let truth = truth(&sim, &account);
    assert_eq!(truth["transactions"]["count"], 30_065);
    assert_eq!(scan.ids, truth_ids(&truth));
    assert_eq!(scan.net_value, truth_net(&truth));
}

#[tokio::test]
async fn injected_429s_5xx_drops_and_truncations_are_retried_within_the_cap() {
    let sim = simulator(100_000, 10).await;
    let account = sim.credentials.account_numbers[0].clone();
    sim.simulator.set_faults(Faults {
        rate_429: 0.30,
        rate_5xx: 0.10,
        rate_drop: 0.03,
        rate_truncate: 0.03,
        ..Faults::default()
    });
    let client = client(&sim);

    let scan = scan_transactions(&client, &sim, &account, |_| {}).await;

    let truth = truth(&sim, &account);
    assert_eq!(scan.ids, truth_ids(&truth));
    assert_eq!(scan.net_value, truth_net(&truth));
    let stats = client.stats();
    assert!(
        count(&stats.retries) > 0,
        "faults were injected, so some calls were retried"
    );
    assert!(count(&stats.throttled) > 0);
    let attempts = attempts_per_call(&sim.simulator.requests());
    let (call, most) = attempts.iter().max_by_key(|(_, n)| **n).unwrap();
    assert!(
        *most <= client.config().retry.max_attempts as usize,
        "{call} reached the broker {most} times"
    );
}

/// How many times each call reached the broker: its requests grouped by method, path and
/// query, which a retry repeats. Token requests are left out: every refresh is a call of its
/// own on the same path.
pub(crate) fn attempts_per_call(requests: &[Recorded]) -> BTreeMap<String, usize> {
    let mut calls = BTreeMap::new();
    for r in requests.iter().filter(|r| r.path != "/oauth/token") {
        let mut query = r.query.clone();
        query.sort();
        *calls
            .entry(format!("{} {} {query:?}", r.method, r.path))
            .or_default() += 1;
    }
    calls
}

#[tokio::test]
async fn access_tokens_expiring_every_few_requests_are_refreshed_transparently() {
    let sim = simulator(48_000, 10).await;
    let account = sim.credentials.account_numbers[0].clone();
    // Every 8th request: the scan keeps four in flight, so a token lives about two rounds.
    sim.simulator.set_faults(Faults {
        expire_tokens_every: 8,
        ..Faults::default()
    });
    let client = client(&sim);

    let scan = scan_transactions(&client, &sim, &account, |_| {}).await;

    assert_eq!(scan.ids, truth_ids(&truth(&sim, &account)));
    assert!(count(&client.stats().token_refreshes) >= 3);
}

#[tokio::test]
async fn an_expires_in_past_any_clock_or_below_zero_neither_panics_nor_keeps_a_token() {
    let sim = simulator(10, 10).await;
    let client = client(&sim);
    let mut expiries = Vec::new();

    for announced in [i64::MAX, i64::MIN, -60] {
        sim.simulator.set_faults(Faults {
            expires_in: Some(announced),
            ..Faults::default()
        });
        let token = client.refresh(&grant(&sim)).await.unwrap();
        expiries.push(token.expires_at - chrono::Utc::now());
    }

    let (huge, below_zero) = (expiries[0], &expiries[1..]);
    assert!(huge <= chrono::TimeDelta::days(1), "{huge}");
    assert!(
        below_zero
            .iter()
            .all(|left| *left <= chrono::TimeDelta::zero()),
        "{below_zero:?}"
    );
}

#[tokio::test]
async fn a_body_past_the_cap_is_refused_for_good_without_retries() {
    let sim = simulator(10, 10).await;
    let account = sim.credentials.account_numbers[0].clone();
    let mut config = BrokerConfig::for_simulator(
        sim.credentials.base_url.parse().unwrap(),
        sim.credentials.streamer_url.parse().unwrap(),
    );
    config.limits.max_body_bytes = 64 << 10;
    let client = TastytradeClient::new(config).unwrap();
    sim.simulator.set_faults(Faults {
        padded_path: Some("/balances".into()),
        padded_bytes: 1 << 20,
        ..Faults::default()
    });
    let session = client.session(grant(&sim), None);

    let balances = session.current_balances(&account).await;
    let positions = session.positions(&account, false).await;

    assert!(
        matches!(&balances, Err(BrokerError::Permanent { message, .. }) if message.contains("longer than")),
        "{balances:?}"
    );
    assert!(positions.is_ok(), "{positions:?}");
    assert_eq!(count(&client.stats().retries), 0);
}

#[tokio::test]
async fn a_revoked_grant_surfaces_as_grant_revoked_after_bounded_retries() {
    let sim = simulator(10, 10).await;
    sim.simulator.revoke(&sim.credentials.refresh_token);
    let client = client(&sim);
    let session = client.session(grant(&sim), None);

    let error = session.accounts().await.unwrap_err();

    assert!(
        matches!(error, BrokerError::GrantRevoked { .. }),
        "{error:?}"
    );
    assert_eq!(error.code(), Some("invalid_grant"));
    assert_eq!(
        count(&client.stats().requests),
        2,
        "one confirmation, then no retry storm"
    );
}

#[tokio::test]
async fn a_client_secret_the_broker_refuses_is_a_rejected_client_not_a_revoked_grant() {
    let sim = simulator(10, 10).await;
    let client = client(&sim);
    let rotated = Grant {
        client_secret: SecretString::from("not-the-secret".to_owned()),
        ..grant(&sim)
    };

    let error = client.session(rotated, None).accounts().await.unwrap_err();

    assert!(
        matches!(error, BrokerError::ClientRejected { .. }),
        "{error:?}"
    );
    assert_eq!(count(&client.stats().requests), 1, "no retry in the client");
}

#[tokio::test]
async fn a_request_without_user_agent_gets_401_from_the_simulator() {
    let sim = simulator(10, 10).await;
    let client = client(&sim);
    let token = client
        .session(grant(&sim), None)
        .access_token()
        .await
        .unwrap();
    let bare = tastysync_shared::tls::http()
        .build()
        .expect("an HTTP client");

    let response = bare
        .get(format!(
            "{}/customers/me/accounts",
            sim.credentials.base_url
        ))
        .bearer_auth(secrecy::ExposeSecret::expose_secret(&token.token))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "token_invalid");
}

#[tokio::test]
async fn order_search_needs_a_start_under_the_pinned_version_and_pages_by_200() {
    let sim = simulator(10, 1_000).await;
    let account = sim.credentials.account_numbers[0].clone();
    let client = client(&sim);
    // Production is where the version is pinned (the sandbox does not accept the header).
    let session = client.session(
        Grant {
            environment: Environment::Production,
            ..grant(&sim)
        },
        None,
    );

    let error = session
        .orders(&account, &OrderQuery::default())
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(error, BrokerError::InvalidRequest { status: 400, .. }),
        "{error:?}"
    );
    assert_eq!(error.code(), Some("validation_error"));

    let query = OrderQuery {
        start_date: chrono::NaiveDate::from_ymd_opt(2000, 1, 1),
        ..OrderQuery::default()
    };
    let mut pages = session.orders(&account, &query);
    let (mut orders, mut legs, mut fills) = (0, 0, 0);
    while let Some(page) = pages.next().await {
        let page = page.unwrap();
        assert!(page.items.len() <= 200);
        for order in page.items {
            orders += 1;
            legs += order.item.legs.len();
            fills += order.item.legs.iter().map(|l| l.fills.len()).sum::<usize>();
        }
    }
    let truth = truth(&sim, &account);
    assert_eq!(orders, truth["orders"]["count"].as_u64().unwrap());
    assert_eq!(legs as u64, truth["orders"]["legs"].as_u64().unwrap());
    assert_eq!(fills as u64, truth["orders"]["fills"].as_u64().unwrap());
}

#[tokio::test]
async fn per_page_above_the_maximum_or_an_unknown_sort_is_a_validation_error() {
    let sim = simulator(10, 10).await;
    let account = sim.credentials.account_numbers[0].clone();
    let client = client(&sim);
    let session = client.session(grant(&sim), None);

    let query = TransactionQuery {
        per_page: Some(5000),
        ..TransactionQuery::default()
    };
    let error = session
        .transactions(&account, &query)
        .next()
        .await
        .unwrap()
        .unwrap_err();

    assert!(
        matches!(error, BrokerError::InvalidRequest { .. }),
        "{error:?}"
    );
    assert_eq!(error.code(), Some("validation_error"));
    let token = session.access_token().await.unwrap();
    for path in ["transactions", "orders"] {
        let answer = tastysync_shared::tls::http()
            .build()
            .expect("an HTTP client")
            .get(format!(
                "{}/accounts/{account}/{path}?sort=Ascending&start-date=2020-01-01",
                sim.credentials.base_url
            ))
            .header("User-Agent", "tastysync-test/1.0")
            .bearer_auth(token.token.expose_secret())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400, "{path}");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "validation_error", "{path}");
    }
}

#[tokio::test]
async fn accounts_positions_balances_snapshots_and_quote_tokens_read_back() {
    let sim = simulator(10, 10).await;
    let client = client(&sim);
    let session = client.session(grant(&sim), None);

    let accounts = session.accounts().await.unwrap();
    assert_eq!(accounts.len(), 2);
    assert_eq!(
        accounts
            .iter()
            .filter(|a| a.item.account.is_closed == Some(true))
            .count(),
        1
    );
    let account = &accounts[0].item.account.account_number;

    let positions = session.positions(account, true).await.unwrap();
    assert!(positions.rejected.is_empty(), "{:?}", positions.rejected);
    let positions = positions.items;
    assert!(
        positions
            .iter()
            .any(|p| p.item.signed_quantity().is_some_and(|q| q < Decimal::ZERO))
    );
    assert!(positions.iter().all(|p| p.item.mark.is_some()));
    let future_option = positions
        .iter()
        .find(|p| p.item.symbol.starts_with("./"))
        .unwrap();
    assert_eq!(future_option.item.fixing_price, None);
    assert_eq!(
        tastysync_shared::tastytrade::model::tree(&future_option.raw)["fixing-price"],
        "NaN",
        "the raw JSON is kept as sent"
    );

    let balances = session.current_balances(account).await.unwrap().rows.items;
    let currencies: BTreeSet<_> = balances
        .iter()
        .filter_map(|b| b.item.currency.clone())
        .collect();
    assert_eq!(
        currencies,
        BTreeSet::from(["EUR".to_owned(), "USD".to_owned()])
    );
    let usd = session.balance(account, "USD").await.unwrap();
    assert_eq!(usd.item.currency.as_deref(), Some("USD"));

    let query = SnapshotQuery {
        time_of_day: TimeOfDay::Eod,
        snapshot_date: None,
        start_date: chrono::NaiveDate::from_ymd_opt(2000, 1, 1),
        end_date: None,
        currency: Some("USD".into()),
        per_page: Some(250),
    };
    let mut pages = session.balance_snapshots(account, &query);
    let (mut rows, mut sparse) = (0, 0);
    while let Some(page) = pages.next().await {
        for snapshot in page.unwrap().items {
            rows += 1;
            sparse += usize::from(snapshot.item.net_liquidating_value.is_none());
        }
    }
    let truth = truth(&sim, account);
    assert_eq!(
        rows * 2,
        truth["snapshots"]["count"].as_u64().unwrap() as usize,
        "USD half of two currencies"
    );
    assert!(sparse > 0, "some EOD rows are sparse");

    let quote = session.quote_token().await.unwrap();
    assert!(quote.dxlink_url.is_some());
}

/// The user approves at the simulator's authorize page, which redirects to `redirect_uri`
/// with a code (and the state); returns the code.
async fn approve(sim: &Running, redirect_uri: &str) -> String {
    let no_redirects = tastysync_shared::tls::http()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = no_redirects
        .get(format!("{}/auth.html", sim.credentials.base_url))
        .header("User-Agent", "browser/1.0")
        .query(&[
            ("response_type", "code"),
            ("client_id", sim.credentials.client_id.as_str()),
            ("redirect_uri", redirect_uri),
            ("scope", "read"),
            ("state", "s-123"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let location: reqwest::Url = response.headers()["location"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut params: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(params["state"], "s-123");
    params.remove("code").unwrap()
}

async fn exchange(
    client: &TastytradeClient,
    sim: &Running,
    code: String,
    redirect_uri: &str,
) -> Result<tastysync_shared::tastytrade::CodeExchange, BrokerError> {
    client
        .exchange_code(
            Environment::Sandbox,
            &sim.credentials.client_id,
            &SecretString::from(sim.credentials.client_secret.clone()),
            &SecretString::from(code),
            redirect_uri,
            None,
        )
        .await
}

#[tokio::test]
async fn the_authorization_code_flow_yields_a_working_refresh_token() {
    let sim = simulator(10, 10).await;
    let code = approve(&sim, "http://localhost:9/callback").await;
    let client = client(&sim);

    let exchanged = exchange(&client, &sim, code, "http://localhost:9/callback")
        .await
        .unwrap();

    let grant = Grant {
        refresh_token: exchanged.refresh_token,
        ..grant(&sim)
    };
    let session = client.session(grant, None);
    assert_eq!(session.accounts().await.unwrap().len(), 2);
}

#[tokio::test]
async fn activity_posted_to_the_control_api_changes_what_the_broker_serves() {
    let sim = simulator(500, 20).await;
    let account = sim.credentials.account_numbers[0].clone();
    let client = client(&sim);
    let session = client.session(grant(&sim), None);
    let positions_before = session.positions(&account, false).await.unwrap().len();
    let http = tastysync_shared::tls::http()
        .build()
        .expect("an HTTP client");

    let outcome: Value = http
        .post(format!("{}/__sim/accounts/{account}/activity", sim.credentials.base_url))
        .json(&serde_json::json!({"transactions": 5, "reversals": 1, "finalize_fees": true, "close_positions": 1, "fills": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    assert_eq!(outcome["transactions"], 5);
    assert_eq!(outcome["reversals"], 1);
    let scan = scan_transactions(&client, &sim, &account, |_| {}).await;
    assert_eq!(scan.ids.len(), 506);
    assert_eq!(
        session.positions(&account, false).await.unwrap().len(),
        positions_before - 1
    );
    let mut pages = session.transactions(&account, &TransactionQuery::default());
    let mut reversals = 0;
    while let Some(page) = pages.next().await {
        for tx in page.unwrap().items {
            assert_ne!(
                tx.item.is_estimated_fee,
                Some(true),
                "every fee was finalised"
            );
            reversals += usize::from(tx.item.reverses_id.is_some());
        }
    }
    assert!(reversals >= 1);
}

#[tokio::test]
async fn concurrent_callers_share_one_token_refresh() {
    let sim = simulator(10, 10).await;
    let client = client(&sim);
    let session = client.session(grant(&sim), None);

    let tokens = futures_join_all(&session).await;

    assert_eq!(count(&client.stats().token_refreshes), 1, "single flight");
    assert!(tokens.windows(2).all(|w| w[0] == w[1]));
}

/// Eight concurrent token requests on one session, without a futures crate.
async fn futures_join_all(session: &tastysync_shared::tastytrade::Session<'_>) -> Vec<String> {
    let t = || async {
        secrecy::ExposeSecret::expose_secret(&session.access_token().await.unwrap().token)
            .to_owned()
    };
    let (a, b, c, d, e, f, g, h) = tokio::join!(t(), t(), t(), t(), t(), t(), t(), t());
    vec![a, b, c, d, e, f, g, h]
}

#[tokio::test]
async fn a_server_clock_ahead_of_ours_costs_one_refresh_not_a_failure() {
    let sim = simulator(10, 10).await;
    // Tokens die 899 of their 900 seconds early: the client still believes them fresh.
    sim.simulator.set_faults(Faults {
        clock_skew_seconds: 899,
        ..Faults::default()
    });
    let client = client(&sim);
    let session = client.session(grant(&sim), None);
    session.access_token().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;

    let accounts = session.accounts().await.unwrap();

    assert_eq!(accounts.len(), 2);
    assert_eq!(
        count(&client.stats().token_refreshes),
        2,
        "the 401 cost exactly one refresh"
    );
}

#[tokio::test]
async fn the_balances_are_read_in_every_shape_the_broker_has_answered_with() {
    let sim = simulator(10, 10).await;
    let client = client(&sim);
    let session = client.session(grant(&sim), None);
    let account = &sim.credentials.account_numbers[0];

    for shape in [
        BalancesShape::Items,
        BalancesShape::Object,
        BalancesShape::Empty,
        BalancesShape::Refused,
    ] {
        sim.simulator.set_quirks(Quirks {
            balances: shape,
            ..Quirks::default()
        });

        let answer = session.current_balances(account).await.unwrap();

        assert_eq!(
            answer.every_currency,
            matches!(shape, BalancesShape::Items),
            "only a list of every currency shows a currency gone: {shape:?}"
        );
        let balances = answer.rows.items;
        let currencies: Vec<_> = balances
            .iter()
            .filter_map(|b| b.item.currency.as_deref())
            .collect();
        assert!(currencies.contains(&"USD"), "{shape:?}: {currencies:?}");
        assert!(
            balances.iter().all(|b| b.item.cash_balance.is_some()),
            "{shape:?}"
        );
    }
}

#[tokio::test]
async fn the_code_exchange_is_a_form_post_and_the_broker_refuses_it_as_json() {
    let sim = simulator(10, 10).await;
    let token_url = format!("{}/oauth/token", sim.credentials.base_url);
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", "any"),
        ("client_id", sim.credentials.client_id.as_str()),
        ("client_secret", sim.credentials.client_secret.as_str()),
        ("redirect_uri", "http://localhost:9/callback"),
    ];
    let as_json: std::collections::HashMap<_, _> = fields.into_iter().collect();

    let refused = tastysync_shared::tls::http()
        .build()
        .expect("an HTTP client")
        .post(&token_url)
        .header("User-Agent", "test/1.0")
        .json(&as_json)
        .send()
        .await
        .unwrap();

    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error_code"], "invalid_request", "{body}");
    // The client's own exchange (a form) gets past the encoding check to the code itself.
    let exchanged = client(&sim)
        .exchange_code(
            Environment::Sandbox,
            &sim.credentials.client_id,
            &SecretString::from(sim.credentials.client_secret.clone()),
            &SecretString::from("not-a-code".to_owned()),
            "http://localhost:9/callback",
            None,
        )
        .await;
    assert!(
        matches!(exchanged, Err(BrokerError::GrantRevoked { .. })),
        "{exchanged:?}"
    );
}

#[tokio::test]
async fn a_429_that_names_its_wait_is_retried_after_that_wait_and_not_sooner() {
    let sim = simulator(10, 10).await;
    let client = client_retrying_for(&sim, Duration::from_millis(2_500));
    let session = client.session(grant(&sim), None);
    session.access_token().await.unwrap();
    sim.simulator.set_faults(Faults {
        rate_429: 1.0,
        retry_after_seconds: Some(1),
        ..Faults::default()
    });
    let before = count(&client.stats().requests);
    let started = std::time::Instant::now();

    let refused = session.accounts().await.unwrap_err();

    assert!(
        matches!(
            refused,
            BrokerError::RateLimited {
                retry_after: Some(wait),
                ..
            } if wait == Duration::from_secs(1)
        ),
        "{refused:?}"
    );
    assert_eq!(
        count(&client.stats().requests) - before,
        3,
        "asked at 0 s, 1 s and 2 s; a fourth would end past the 2.5 s budget"
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[tokio::test]
async fn a_call_still_waiting_on_the_broker_at_the_sessions_end_is_abandoned() {
    let sim = simulator(10, 10).await;
    let client = client(&sim);
    let until = std::time::Instant::now() + Duration::from_millis(800);
    let session = client.session(grant(&sim), None).until(Some(until));
    session.access_token().await.unwrap();
    sim.simulator.set_faults(Faults {
        slow_path: Some("/customers/me/accounts".into()),
        slow_ms: 5_000,
        ..Faults::default()
    });

    let cut = session.accounts().await.unwrap_err();

    assert!(matches!(cut, BrokerError::OutOfTime), "{cut:?}");
}

#[tokio::test]
async fn a_code_is_exchanged_only_with_the_redirect_uri_it_was_issued_for() {
    let sim = simulator(10, 10).await;
    let client = client(&sim);
    let code = approve(&sim, "http://localhost:9/callback").await;

    let elsewhere = exchange(&client, &sim, code.clone(), "http://localhost:9/other").await;
    let spent = exchange(&client, &sim, code, "http://localhost:9/callback").await;

    assert!(
        matches!(elsewhere, Err(BrokerError::GrantRevoked { .. })),
        "{elsewhere:?}"
    );
    assert!(
        matches!(spent, Err(BrokerError::GrantRevoked { .. })),
        "a refused code is spent: {spent:?}"
    );
}

#[tokio::test]
async fn a_grant_reads_only_its_own_accounts_and_another_answers_403() {
    let sim = simulator(10, 10).await;
    let numbers = &sim.credentials.account_numbers;
    let (mine, theirs) = (numbers[1].as_str(), numbers[0].as_str());
    let grant = Grant {
        refresh_token: SecretString::from(sim.simulator.grant_for(&[mine])),
        ..grant(&sim)
    };
    let client = client(&sim);
    let session = client.session(grant, None);

    let listed = session.accounts().await.unwrap();
    let refused = session.positions(theirs, true).await.unwrap_err();

    let listed: Vec<_> = (listed.iter())
        .map(|a| a.item.account.account_number.clone())
        .collect();
    assert_eq!(listed, [mine]);
    assert!(
        matches!(
            refused,
            BrokerError::Permanent {
                status: Some(403),
                ..
            }
        ),
        "{refused:?}"
    );
    assert!(session.positions(mine, true).await.is_ok());
}
