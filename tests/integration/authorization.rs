//! Every operation of the OpenAPI document, through the local gateway (JWT authorizer
//! included): without a valid token it answers 401, and with another user's ids 404, leaving
//! the owner's data as it was. The routes come from the document, so a new route cannot
//! escape this test.

use std::time::Duration;

use serde_json::Value;
use tastysync_local::gateway;
use tastysync_shared::api::{BASE_PATH, openapi_json};

use crate::link::{Served, World, served_account};

/// Each documented operation: method and path under [`BASE_PATH`], `{name}` for parameters.
fn operations() -> Vec<(String, String)> {
    let doc: Value = serde_json::from_str(&openapi_json()).unwrap();
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect()
}

/// The path with the owner's ids in its parameters; `None` when a parameter is unknown here
/// (a new kind of id must be added, or the test fails).
fn with_ids(path: &str, account: &str, task: &str) -> String {
    let filled = path
        .replace("{account_db_id}", account)
        .replace("{task_id}", task);
    assert!(
        !filled.contains('{'),
        "no owner's id for a parameter of {path}: add it here"
    );
    format!("{BASE_PATH}{filled}")
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let mut request = http
        .request(method.parse().unwrap(), format!("{base}{path}"))
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if method == "POST" {
        request = request.body("{}");
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn owner_state(w: &World) -> (i64, Vec<String>) {
    let client = w.db.client().await;
    let accounts: i64 = client
        .query_one("SELECT count(*) FROM tastytrade_accounts", &[])
        .await
        .unwrap()
        .get(0);
    let credentials = tastysync_tests::texts(
        &client,
        "SELECT id::text FROM tastytrade_credentials ORDER BY id",
    )
    .await;
    (accounts, credentials)
}

#[tokio::test]
async fn every_documented_route_refuses_strangers_with_401_and_other_users_ids_with_404() {
    let Served {
        w,
        account,
        env,
        gateway: running,
    } = served_account().await;
    let base = running.url.as_str();
    let http = tastysync_shared::tls::http()
        .build()
        .expect("an HTTP client");
    let owner = gateway::dev_token(&env, "user-a", Duration::from_secs(600));
    let stranger = gateway::dev_token(&env, "user-b", Duration::from_secs(600));
    let forged = gateway::dev_token(
        &env.clone()
            .with("LOCAL_JWT_KEY", "someone-elses-signing-key-entirely"),
        "user-a",
        Duration::from_secs(600),
    );
    let tasks_path = format!("{BASE_PATH}/tastytrade-accounts/{account}/sync-tasks");
    let (status, tasks) = call(&http, base, "GET", &tasks_path, Some(&owner)).await;
    assert_eq!(status, 200, "{tasks}");
    let task = tasks[0]["task_id"].as_str().unwrap().to_owned();
    let before = owner_state(&w).await;

    let operations = operations();
    let mut checked_with_ids = 0;
    for (method, path) in &operations {
        let path = with_ids(path, &account, &task);
        for (who, token) in [
            ("no token", None),
            ("a forged token", Some(forged.as_str())),
        ] {
            let (status, body) = call(&http, base, method, &path, token).await;
            assert_eq!(status, 401, "{method} {path} with {who}: {body}");
        }
        if path.contains(&account) || path.contains(&task) {
            let (status, body) = call(&http, base, method, &path, Some(&stranger)).await;
            assert_eq!(status, 404, "{method} {path} as another user: {body}");
            assert!(body["error"]["code"].is_string(), "{body}");
            checked_with_ids += 1;
        }
    }
    let (status, listed) = call(
        &http,
        base,
        "GET",
        &format!("{BASE_PATH}/tastytrade-accounts"),
        Some(&stranger),
    )
    .await;

    println!(
        "{} operations: each refused without a token and with a forged one; {checked_with_ids} refused another user's ids",
        operations.len()
    );
    assert!(operations.len() >= 7, "{operations:?}");
    assert!(checked_with_ids >= 4);
    assert_eq!(status, 200);
    assert_eq!(
        listed,
        serde_json::json!([]),
        "a stranger lists nothing of the owner's"
    );
    assert_eq!(
        owner_state(&w).await,
        before,
        "the owner's accounts and grant are intact"
    );
    let (status, _) = call(&http, base, "GET", &tasks_path, Some(&owner)).await;
    assert_eq!(status, 200, "the owner still reaches them");

    // Each documented operation has a handler: the owner, with her own ids, never meets the
    // gateway's "no such route" (404) or "no such method" (405). Deletes go last, and the
    // purge of everything last of all.
    let mut owned = operations.clone();
    owned.sort_by_key(|(method, path)| (method == "DELETE", path.ends_with("/me/data")));
    for (method, path) in &owned {
        let path = with_ids(path, &account, &task);
        let (status, body) = call(&http, base, method, &path, Some(&owner)).await;
        assert!(
            status != 404 && status != 405,
            "{method} {path} as its owner answered {status}: no handler serves it? {body}"
        );
    }
}

/// The local gateway answers CORS as the template's `CorsConfiguration` says, for the origins
/// the stack allows: what the web app needs to call the API from its own origin, and to read a
/// 429's `Retry-After`.
#[tokio::test]
async fn the_gateway_answers_cors_as_the_template_configures_it() {
    let Served {
        w, account, env, ..
    } = served_account().await;
    let env = env.with("CORS_ALLOW_ORIGINS", "http://app.test, http://other.test");
    let running = gateway::start(&env, &w.aws.sdk, ([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let http = tastysync_shared::tls::http()
        .build()
        .expect("an HTTP client");
    let rules = tastysync_local::template::cors(
        &tastysync_local::template::parse(tastysync_local::template::TEMPLATE).unwrap(),
    )
    .unwrap();
    let trigger = format!(
        "{}{BASE_PATH}/sync/tastytrade/{account}/trigger",
        running.url
    );
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, &trigger)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization")
            .send()
    };

    let allowed = preflight("http://app.test").await.unwrap();
    let refused = preflight("http://evil.test").await.unwrap();

    assert_eq!(allowed.status(), 204);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(
        header(&allowed, "access-control-allow-origin").as_deref(),
        Some("http://app.test")
    );
    assert_eq!(
        header(&allowed, "access-control-allow-methods"),
        Some(rules.allow_methods.join(","))
    );
    assert!(rules.allow_methods.contains(&"POST".to_owned()));
    assert_eq!(
        header(&allowed, "access-control-allow-headers"),
        Some(rules.allow_headers.join(","))
    );
    assert_eq!(
        header(&allowed, "access-control-max-age"),
        Some(rules.max_age.to_string())
    );
    assert_eq!(header(&refused, "access-control-allow-origin"), None);

    // The dev token the web app signs in with is one the authorizer accepts.
    let token: Value = http
        .get(format!("{}/__local/dev-token?sub=user-a", running.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap();
    let post = || {
        http.post(&trigger)
            .header("origin", "http://other.test")
            .bearer_auth(token)
            .send()
    };
    let first = post().await.unwrap();
    assert_eq!(first.status(), 202);
    // Wait until the first manual sync is no longer on its way: then the cooldown answers.
    let mut second = post().await.unwrap();
    for _ in 0..300 {
        if second.status() == 429 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        second = post().await.unwrap();
    }
    assert_eq!(second.status(), 429);
    assert_eq!(
        header(&second, "access-control-allow-origin").as_deref(),
        Some("http://other.test")
    );
    assert!(
        header(&second, "access-control-expose-headers")
            .is_some_and(|h| h.split(',').any(|n| n.eq_ignore_ascii_case("retry-after"))),
        "the browser may read Retry-After"
    );
    assert!(header(&second, "retry-after").is_some());
    let stranger = http
        .get(format!("{}{BASE_PATH}/tastytrade-accounts", running.url))
        .header("origin", "http://app.test")
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), 401);
    assert_eq!(
        header(&stranger, "access-control-allow-origin").as_deref(),
        Some("http://app.test"),
        "a 401 is readable too, so the app can tell a lapsed session"
    );
}
