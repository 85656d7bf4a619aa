//! Per-user limits and idempotency keys, through the handlers, against Postgres and moto.

use lambda_http::{Body, Response};
use serde_json::{Value, json};
use tastysync_tests::{event, request};

use crate::link::{World, as_user, read, world_with};

async fn world() -> World {
    world_with(tastytrade_sim::data::Sizes {
        accounts: 2,
        transactions: 10,
        orders: 2,
        years: 1,
    })
    .await
}

fn with_key(mut event: Value, key: &str) -> Value {
    event["headers"]["idempotency-key"] = key.into();
    event
}

fn personal_grant(w: &World) -> Value {
    let body = json!({
        "environment": "sandbox",
        "refresh_token": w.sim.credentials.refresh_token,
        "client_secret": w.sim.credentials.client_secret,
    });
    let mut link = event("link-personal-grant.json");
    link["body"] = body.to_string().into();
    link
}

async fn send_link(w: &World, event: &Value) -> Response<Body> {
    link_account::handle(&w.link, request(event)).await
}

async fn grants(w: &World) -> i64 {
    let client = w.db.client().await;
    let row = client
        .query_one("SELECT count(*) FROM tastytrade_credentials", &[])
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test]
async fn a_user_over_the_limit_gets_429_with_retry_after_while_another_user_is_served() {
    let mut w = world().await;
    // A day's window: four requests cannot straddle its boundary the way they could a
    // minute's (which once reset the count mid-test).
    w.accounts.limit.max = 3;
    w.accounts.limit.window = chrono::TimeDelta::days(1);
    let list = |user: &str| request(&as_user(event("accounts-list.json"), user));

    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(accounts::handle(&w.accounts, list("user-a")).await);
    }
    let other = accounts::handle(&w.accounts, list("user-b")).await;

    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [200, 200, 200, 429]);
    let retry_after: u64 = answers[3].headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry_after), "{retry_after}");
    let (_, body) = read(answers.pop().unwrap());
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(other.status(), 200, "another user is served");
    let items = crate::link::table_items(&w).await.join("\n");
    assert!(
        !items.contains("user-a"),
        "a counter names its user only by a hash: {items}"
    );
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_answer_and_links_once() {
    let w = world().await;
    let link = with_key(personal_grant(&w), "link-7d1c");

    let first = send_link(&w, &link).await;
    let grants_after_first = grants(&w).await;
    let again = send_link(&w, &link).await;
    let mut other_body = link.clone();
    other_body["body"] =
        json!({"environment": "sandbox", "refresh_token": "another", "client_secret": "x"})
            .to_string()
            .into();
    let reused = send_link(&w, &other_body).await;
    let bad_key = send_link(&w, &with_key(personal_grant(&w), "has spaces")).await;

    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotency-replayed").is_none());
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    assert_eq!(read(again).1, read(first).1, "the same answer");
    assert_eq!(grants(&w).await, grants_after_first, "linked once");
    let (status, body) = read(reused);
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("Idempotency-Key"))
    );
    assert_eq!(read(bad_key).0, 400);
}

#[tokio::test]
async fn an_answer_worth_retrying_is_not_kept_under_its_key() {
    let w = world().await;
    let link = with_key(personal_grant(&w), "link-retry-1");
    w.sim.simulator.set_faults(tastytrade_sim::Faults {
        rate_5xx: 1.0,
        ..tastytrade_sim::Faults::default()
    });

    let failed = send_link(&w, &link).await;
    w.sim
        .simulator
        .set_faults(tastytrade_sim::Faults::default());
    let retried = send_link(&w, &link).await;

    assert!(failed.status().as_u16() >= 500, "{}", failed.status());
    assert_eq!(retried.status(), 201);
    assert!(retried.headers().get("idempotency-replayed").is_none());
}
