//! Linking, listing and unlinking through the handlers, from `events/` fixtures, against
//! Postgres, moto and the simulator.

use std::io::Write;
use std::sync::{Arc, Mutex};

use lambda_http::{Body, Response};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tastysync_shared::adapters::postgres::PgAccounts;
use tastysync_shared::config::Env;
use tastysync_shared::domain::accounts::SyncedData;
use tastysync_shared::domain::requests::UserLimits;
use tastysync_shared::ports::{Broker, TokenOpener};
use tastysync_shared::routes::account_data::AccountDataDeps;
use tastysync_shared::routes::accounts::AccountsDeps;
use tastysync_shared::secrets::{KmsEnvelope, Purpose, Sealed, SecretContext};
use tastysync_shared::tastytrade::{BrokerError, Environment};
use tastysync_shared::wiring::{AccountData, Accounts, Function, LinkAccount};
use tastysync_tests::{TestAws, TestDb, event, request};
use tastytrade_sim::Simulator;
use tastytrade_sim::data::Sizes;
use tastytrade_sim::server::{Config, Running};
use uuid::Uuid;

const CALLBACK: &str = "http://localhost:5173/callback";

pub(crate) struct World {
    pub(crate) sim: Running,
    pub(crate) db: TestDb,
    pub(crate) aws: TestAws,
    pub(crate) link: LinkAccount,
    pub(crate) accounts: Accounts,
    pub(crate) account_data: AccountData,
    /// The functions' environment, as the deployment would set it for this stack.
    pub(crate) env: Env,
    /// A pool per function that acts as that function's database role.
    pools: std::collections::BTreeMap<Function, deadpool_postgres::Pool>,
}

impl World {
    /// A pool that acts on the test database as `function` does.
    pub(crate) fn pool_of(&self, function: Function) -> deadpool_postgres::Pool {
        self.pools[&function].clone()
    }
}

async fn world() -> World {
    world_with(Sizes {
        accounts: 2,
        transactions: 20,
        orders: 5,
        years: 1,
    })
    .await
}

/// A simulated customer of `sizes`, an empty migrated database and a fresh AWS stack, with the
/// link and accounts functions wired to them as the deployment wires them.
pub(crate) async fn world_with(sizes: Sizes) -> World {
    world_on(sizes, TestDb::migrated().await).await
}

/// [`world_with`] on a database the caller made (in a cluster of its own, say).
pub(crate) async fn world_on(sizes: Sizes, db: TestDb) -> World {
    let config = Config {
        seed: 11,
        sizes,
        ..Config::default()
    };
    let sim = Simulator::spawn(config).await.unwrap();
    let oauth_client = json!({"client_id": sim.credentials.client_id, "client_secret": sim.credentials.client_secret});
    let aws = TestAws::provisioned_with(&oauth_client).await;
    let base = sim.credentials.base_url.clone();
    let authorize = format!("{base}/auth.html");
    let vars = [
        ("DATABASE_URL", db.url.as_str()),
        ("TOKEN_KMS_KEY_ID", aws.stack.kms_key_arn.as_str()),
        ("TASKS_TABLE", aws.stack.table.as_str()),
        ("SYNC_QUEUE_URL", aws.stack.queue_url.as_str()),
        ("EVENT_BUS_NAME", aws.stack.event_bus.as_str()),
        ("SYNC_QUEUE_ARN", aws.stack.queue_arn.as_str()),
        (
            "OAUTH_CLIENT_SECRET_ARN",
            aws.stack.oauth_client_secret_arn.as_str(),
        ),
        (
            "STATE_SIGNING_SECRET_ARN",
            aws.stack.state_signing_secret_arn.as_str(),
        ),
        ("OAUTH_REDIRECT_URIS", CALLBACK),
        ("TASTYTRADE_PRODUCTION_URL", base.as_str()),
        ("TASTYTRADE_SANDBOX_URL", base.as_str()),
        ("TASTYTRADE_AUTHORIZE_URL", authorize.as_str()),
        ("TASTYTRADE_SANDBOX_AUTHORIZE_URL", authorize.as_str()),
        ("TASTYTRADE_MAX_RETRY_SECONDS", "5"),
    ];
    let env = tastysync_tests::with_identities(Env::from_pairs(vars));
    let link = LinkAccount::from_env(&env, &aws.sdk_of(Function::LinkAccount))
        .await
        .unwrap();
    let mut pools = std::collections::BTreeMap::new();
    for function in Function::ALL {
        pools.insert(function, db.pool_of(function).await);
    }
    let accounts = AccountsDeps {
        accounts: PgAccounts::new(pools[&Function::Accounts].clone()),
        tasks: aws.tasks_of(Function::Accounts),
        limit: UserLimits::default().reads,
        unlink_data: SyncedData::Keep,
    };
    let account_data = AccountDataDeps {
        accounts: PgAccounts::new(db.pool_of(Function::AccountData).await),
        limits: aws.tasks_of(Function::AccountData),
        limit: UserLimits::default().reads,
    };
    World {
        sim,
        db,
        aws,
        link,
        accounts,
        account_data,
        env,
        pools,
    }
}

pub(crate) fn as_user(mut event: Value, user: &str) -> Value {
    event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = user.into();
    event
}

fn with_body(mut event: Value, body: &Value) -> Value {
    event["body"] = body.to_string().into();
    event
}

pub(crate) fn with_path(mut event: Value, path: &str) -> Value {
    event["rawPath"] = path.into();
    event["requestContext"]["http"]["path"] = path.into();
    event
}

fn personal_grant(w: &World) -> Value {
    json!({
        "environment": "sandbox",
        "refresh_token": w.sim.credentials.refresh_token,
        "client_secret": w.sim.credentials.client_secret,
    })
}

async fn send_link(w: &World, event: Value) -> (u16, Value) {
    read(link_account::handle(&w.link, request(&event)).await)
}

pub(crate) async fn send_accounts(w: &World, event: Value) -> (u16, Value) {
    read(accounts::handle(&w.accounts, request(&event)).await)
}

async fn send_account_data(w: &World, event: Value) -> (u16, Value) {
    read(account_data::handle(&w.account_data, request(&event)).await)
}

pub(crate) fn read(response: Response<Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = match response.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        Body::Empty => Value::Null,
        Body::Binary(b) => serde_json::from_slice(b).unwrap(),
        _ => Value::Null,
    };
    (status, body)
}

/// A small account `user-a` has linked, served by the local gateway (JWT authorizer included,
/// scheduler off), for the tests that call the API over HTTP.
pub(crate) struct Served {
    pub w: World,
    /// The account's database id.
    pub account: String,
    /// The gateway's environment, for minting its dev JWTs.
    pub env: tastysync_shared::config::Env,
    pub gateway: tastysync_local::gateway::Running,
}

pub(crate) async fn served_account() -> Served {
    served_with(Sizes {
        accounts: 1,
        transactions: 20,
        orders: 5,
        years: 1,
    })
    .await
}

/// [`served_account`] with an account of `sizes`.
pub(crate) async fn served_with(sizes: Sizes) -> Served {
    let w = world_with(sizes).await;
    let linked = link_personal(&w, "user-a").await;
    let account = linked[0]["id"].as_str().unwrap().to_owned();
    let env = w.env.clone().with("LOCAL_SCHEDULE_SECONDS", "0");
    let gateway = tastysync_local::gateway::start(&env, &w.aws.sdk, ([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    Served {
        w,
        account,
        env,
        gateway,
    }
}

pub(crate) async fn link_personal(w: &World, user: &str) -> Vec<Value> {
    let (status, body) = send_link(
        w,
        as_user(
            with_body(event("link-personal-grant.json"), &personal_grant(w)),
            user,
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body.as_array().unwrap().clone()
}

/// Links the grant of `refresh_token` (from the simulator's `grant_for`) as `user`.
pub(crate) async fn link_grant(w: &World, user: &str, refresh_token: &str) -> Vec<Value> {
    let grant = json!({
        "environment": "sandbox",
        "refresh_token": refresh_token,
        "client_secret": w.sim.credentials.client_secret,
    });
    let event = as_user(with_body(event("link-personal-grant.json"), &grant), user);
    let (status, body) = send_link(w, event).await;
    assert_eq!(status, 201, "{body}");
    body.as_array().unwrap().clone()
}

pub(crate) async fn list(w: &World, user: &str) -> Vec<Value> {
    let (status, body) = send_accounts(w, as_user(event("accounts-list.json"), user)).await;
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap().clone()
}

pub(crate) async fn delete(w: &World, user: &str, id: &str) -> u16 {
    let path = format!("/api/v1/tastytrade-accounts/{id}");
    send_accounts(
        w,
        as_user(with_path(event("accounts-delete.json"), &path), user),
    )
    .await
    .0
}

/// `/link/start`, then the user's browser at the authorize page: returns the `code` and `state`
/// tastytrade sends back to the callback.
async fn approve_at_tastytrade(w: &World) -> (String, String) {
    let (status, started) = send_link(w, event("link-start.json")).await;
    assert_eq!(status, 200, "{started}");
    approve(
        started["authorize_url"].as_str().unwrap(),
        &started["state"],
    )
    .await
}

/// The user's browser at the authorize URL, approving: the callback's `code` and `state`.
async fn approve(authorize_url: &str, state: &Value) -> (String, String) {
    let browser = tastysync_shared::tls::http()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let approval = browser
        .get(authorize_url)
        .header("User-Agent", "browser/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(approval.status(), 302);
    let back: reqwest::Url = approval.headers()["location"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(back.as_str().starts_with(CALLBACK));
    let mut params: std::collections::HashMap<_, _> = back.query_pairs().into_owned().collect();
    assert_eq!(params["state"], state.as_str().unwrap());
    (
        params.remove("code").unwrap(),
        params.remove("state").unwrap(),
    )
}

/// Links the grant the user approves at tastytrade (the authorization-code flow); the
/// accounts it linked.
pub(crate) async fn link_through_tastytrade(w: &World) -> Value {
    let (code, state) = approve_at_tastytrade(w).await;
    let body =
        json!({"environment": "sandbox", "code": code, "state": state, "redirect_uri": CALLBACK});
    let (status, linked) = send_link(w, with_body(event("link-code.json"), &body)).await;
    assert_eq!(status, 201, "{linked}");
    linked
}

/// Everything the database holds, as text.
async fn database_text(w: &World) -> String {
    let client = w.db.client().await;
    let mut text = String::new();
    for table in [
        "tastytrade_credentials",
        "tastytrade_credential_secrets",
        "tastytrade_accounts",
    ] {
        let row = client
            .query_one(
                &format!("SELECT coalesce(string_agg(t::text, '|'), '') FROM {table} t"),
                &[],
            )
            .await
            .unwrap();
        text.push_str(&row.get::<_, String>(0));
    }
    text
}

pub(crate) async fn table_items(w: &World) -> Vec<String> {
    tastysync_tests::leaks::dynamo_items(&w.aws.dynamodb(), &w.aws.stack.table).await
}

/// The task items of the table (not the leases, counters and nonces beside them).
pub(crate) async fn task_items(w: &World) -> Vec<String> {
    let mut items = table_items(w).await;
    items.retain(|item| item.contains("S(\"TASK#"));
    items
}

pub(crate) async fn queued_messages(w: &World) -> Vec<(String, String)> {
    let mut out = Vec::new();
    loop {
        let received = w
            .aws
            .sqs()
            .receive_message()
            .queue_url(&w.aws.stack.queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId,
            )
            .visibility_timeout(60)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if received.is_empty() {
            return out;
        }
        for m in received {
            let group = m
                .attributes
                .as_ref()
                .and_then(|a| {
                    a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
                })
                .cloned()
                .unwrap_or_default();
            out.push((group, m.body.unwrap_or_default()));
        }
    }
}

/// A `tracing` writer that keeps every line, to search the logs for secrets.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn a_personal_grant_links_lists_queues_a_sync_and_leaves_no_plaintext_secret() {
    let w = world().await;
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let linked = link_personal(&w, "user-a").await;

    assert_eq!(linked.len(), 2);
    let listed = list(&w, "user-a").await;
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|a| a["last_sync_status"] == "PENDING" && a["environment"] == "sandbox")
    );
    let refresh = &w.sim.credentials.refresh_token;
    let secret = &w.sim.credentials.client_secret;
    let everything = [
        serde_json::to_string(&listed).unwrap(),
        database_text(&w).await,
        table_items(&w).await.join("|"),
        queued_messages(&w)
            .await
            .into_iter()
            .map(|(g, b)| format!("{g}{b}"))
            .collect::<String>(),
        logs.text(),
    ];
    assert!(!logs.text().is_empty(), "logs were captured");
    for (place, text) in ["response", "database", "task table", "queue", "logs"]
        .iter()
        .zip(&everything)
    {
        assert!(
            !text.contains(refresh.as_str()),
            "refresh token in plaintext in the {place}"
        );
        assert!(
            !text.contains(secret.as_str()),
            "client secret in plaintext in the {place}"
        );
    }
}

#[tokio::test]
async fn each_linked_account_gets_a_pending_full_task_and_a_message_in_its_group() {
    let w = world().await;

    let linked = link_personal(&w, "user-a").await;

    let tasks = task_items(&w).await;
    assert_eq!(tasks.len(), 2);
    assert!(
        tasks
            .iter()
            .all(|t| t.contains("pending") && t.contains("full"))
    );
    let messages = queued_messages(&w).await;
    let mut groups: Vec<String> = messages.iter().map(|(g, _)| g.clone()).collect();
    groups.sort();
    let mut ids: Vec<String> = linked
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(groups, ids, "one message per account, grouped by account");
}

#[tokio::test]
async fn sealed_secrets_open_only_with_their_own_user_and_credential() {
    let w = world().await;
    link_personal(&w, "user-a").await;
    let client = w.db.client().await;
    let row = client
        .query_one(
            "SELECT s.credential_id, s.scheme_version, s.kms_key_id, s.wrapped_key, s.nonce, s.ciphertext
             FROM tastytrade_credential_secrets s WHERE s.purpose = 'refresh_token'",
            &[],
        )
        .await
        .unwrap();
    let credential_id: Uuid = row.get(0);
    let sealed = Sealed {
        scheme_version: row.get(1),
        kms_key_id: row.get(2),
        wrapped_key: row.get(3),
        nonce: row.get(4),
        ciphertext: row.get(5),
    };
    let cipher = KmsEnvelope::new(
        aws_sdk_kms::Client::new(&w.aws.sdk),
        &w.aws.stack.kms_key_arn,
    );
    let own = SecretContext {
        purpose: Purpose::RefreshToken,
        user_id: "user-a",
        credential_id,
    };

    let opened: SecretString = cipher.open(own, &sealed).await.unwrap();
    assert_eq!(opened.expose_secret(), w.sim.credentials.refresh_token);

    for other in [
        SecretContext {
            user_id: "user-b",
            ..own
        },
        SecretContext {
            credential_id: Uuid::new_v4(),
            ..own
        },
        SecretContext {
            purpose: Purpose::ClientSecret,
            ..own
        },
    ] {
        assert!(
            cipher.open(other, &sealed).await.is_err(),
            "{other:?} opened a secret sealed for {own:?}"
        );
    }
    let another_key = Sealed {
        kms_key_id: w.aws.stack.kms_key_arn.replace(":key/", ":key/0"),
        ..sealed
    };
    assert!(
        cipher.open(own, &another_key).await.is_err(),
        "a secret naming another key was opened"
    );
}

#[tokio::test]
async fn the_authorization_code_flow_links_through_start_and_the_authorize_page() {
    let w = world().await;

    let linked = link_through_tastytrade(&w).await;

    assert_eq!(linked.as_array().unwrap().len(), 2);
    let kinds: String = database_text(&w).await;
    assert!(kinds.contains("authorization_code"));
}

#[tokio::test]
async fn a_state_links_once_and_its_replay_with_a_fresh_code_is_refused_before_any_exchange() {
    let w = world().await;
    let (code, state) = approve_at_tastytrade(&w).await;
    let body = |code: &str| json!({"environment": "sandbox", "code": code, "state": state, "redirect_uri": CALLBACK});
    let (status, linked) = send_link(&w, with_body(event("link-code.json"), &body(&code))).await;
    assert_eq!(status, 201, "{linked}");
    let (fresh_code, _) = approve_at_tastytrade(&w).await;
    w.sim.simulator.clear_requests();

    let (status, refused) =
        send_link(&w, with_body(event("link-code.json"), &body(&fresh_code))).await;

    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["field"], "state");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("used")
    );
    assert!(
        w.sim.simulator.requests().is_empty(),
        "the fresh code was sent to tastytrade"
    );
}

#[tokio::test]
async fn with_pkce_on_the_authorize_url_carries_an_s256_challenge_that_only_our_verifier_redeems() {
    let mut w = world().await;
    w.link.settings.pkce = true;
    let (status, started) = send_link(&w, event("link-start.json")).await;
    assert_eq!(status, 200, "{started}");
    let url: reqwest::Url = started["authorize_url"].as_str().unwrap().parse().unwrap();
    let params: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["code_challenge"].len(), 43);

    // The broker refuses the code without the verifier...
    let (code, _) = approve(url.as_str(), &started["state"]).await;
    let client = &w.link.oauth_client;
    let without = w
        .link
        .broker
        .exchange_code(
            Environment::Sandbox,
            &client.client_id,
            &client.client_secret,
            &SecretString::from(code),
            CALLBACK,
            None,
        )
        .await;
    assert!(
        matches!(without, Err(BrokerError::GrantRevoked { .. })),
        "{without:?}"
    );
    // ...and the link, which derives it from the state, goes through.
    let (code, state) = approve(url.as_str(), &started["state"]).await;
    let body =
        json!({"environment": "sandbox", "code": code, "state": state, "redirect_uri": CALLBACK});
    let (status, linked) = send_link(&w, with_body(event("link-code.json"), &body)).await;
    assert_eq!(status, 201, "{linked}");
}

#[tokio::test]
async fn a_code_exchange_refused_for_the_deployments_client_is_our_fault_not_the_users() {
    let w = world().await;
    let (code, state) = approve_at_tastytrade(&w).await;
    w.sim
        .simulator
        .rotate_client_secret("rotated-at-tastytrade");

    let body =
        json!({"environment": "sandbox", "code": code, "state": state, "redirect_uri": CALLBACK});
    let (status, refused) = send_link(&w, with_body(event("link-code.json"), &body)).await;

    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["error"]["code"], "unavailable");
    assert!(list(&w, "user-a").await.is_empty());
}

#[tokio::test]
async fn the_read_events_reach_the_account_data_handler() {
    let w = world().await;
    let linked = link_personal(&w, "user-a").await;
    let id = linked[0]["id"].as_str().unwrap();
    let base = format!("/api/v1/tastytrade-accounts/{id}");

    for (file, path, shape) in [
        ("account.json", base.clone(), "object"),
        (
            "account-transactions.json",
            format!("{base}/transactions"),
            "page",
        ),
        ("account-orders.json", format!("{base}/orders"), "page"),
        (
            "account-positions.json",
            format!("{base}/positions"),
            "array",
        ),
        ("account-balances.json", format!("{base}/balances"), "array"),
        (
            "account-balance-history.json",
            format!("{base}/balance-history"),
            "object",
        ),
    ] {
        let (status, body) = send_account_data(&w, with_path(event(file), &path)).await;

        assert_eq!(status, 200, "{file}: {body}");
        let fits = match shape {
            "page" => body["items"].is_array(),
            "array" => body.is_array(),
            _ => body.is_object(),
        };
        assert!(fits, "{file}: {body}");
    }
}

#[tokio::test]
async fn another_users_account_is_404_everywhere_and_no_claims_is_401() {
    let w = world().await;
    let linked = link_personal(&w, "user-a").await;
    let id = linked[0]["id"].as_str().unwrap().to_owned();

    assert!(list(&w, "user-b").await.is_empty());
    assert_eq!(delete(&w, "user-b", &id).await, 404);
    assert_eq!(delete(&w, "user-b", &Uuid::new_v4().to_string()).await, 404);
    assert_eq!(
        send_accounts(&w, event("accounts-delete-invalid-id.json"))
            .await
            .0,
        404
    );
    assert_eq!(
        list(&w, "user-a").await.len(),
        2,
        "user B's attempts changed nothing"
    );

    for (status, body) in [
        send_accounts(&w, event("accounts-list-no-auth.json")).await,
        send_accounts(&w, event("accounts-delete-no-auth.json")).await,
        send_link(&w, event("link-no-auth.json")).await,
        send_link(&w, event("link-start-no-auth.json")).await,
    ] {
        assert_eq!(status, 401);
        assert_eq!(body["error"]["code"], "unauthorized");
    }

    assert_eq!(delete(&w, "user-a", &id).await, 204);
    assert_eq!(
        delete(&w, "user-a", &id).await,
        404,
        "a second delete finds nothing"
    );
    assert_eq!(list(&w, "user-a").await.len(), 1);
}

#[tokio::test]
async fn unlinking_the_last_account_of_a_grant_deletes_its_secrets_and_keeps_the_history() {
    let w = world().await;
    let linked = link_personal(&w, "user-a").await;
    let client = w.db.client().await;
    let first: Uuid = linked[0]["id"].as_str().unwrap().parse().unwrap();
    client
        .execute(
            "INSERT INTO transactions (account_id, tastytrade_transaction_id, account_number,
                 transaction_type, executed_at, transaction_date, raw)
             SELECT id, 1, account_number, 'Trade', now(), current_date, '{}' FROM tastytrade_accounts WHERE id = $1",
            &[&first],
        )
        .await
        .unwrap();

    for account in &linked {
        assert_eq!(
            delete(&w, "user-a", account["id"].as_str().unwrap()).await,
            204
        );
    }

    let count = |sql: &'static str| {
        let client = &client;
        async move { client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(
        count("SELECT count(*) FROM tastytrade_credential_secrets").await,
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM tastytrade_credentials").await,
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM transactions").await,
        1,
        "history kept (UNLINK_SYNCED_DATA=keep)"
    );
}

#[tokio::test]
async fn relinking_after_revocation_keeps_the_account_id_and_data_and_clears_needs_reauth() {
    let w = world().await;
    let first = link_personal(&w, "user-a").await;
    let client = w.db.client().await;
    client
        .batch_execute(
            "UPDATE tastytrade_accounts SET last_sync_status = 'NEEDS_REAUTH', last_error = 'grant revoked';
             INSERT INTO transactions (account_id, tastytrade_transaction_id, account_number,
                 transaction_type, executed_at, transaction_date, raw)
             SELECT id, 7, account_number, 'Trade', now(), current_date, '{}' FROM tastytrade_accounts;",
        )
        .await
        .unwrap();
    w.sim.simulator.revoke(&w.sim.credentials.refresh_token);

    let (status, refused) = send_link(
        &w,
        with_body(event("link-personal-grant.json"), &personal_grant(&w)),
    )
    .await;
    assert_eq!(status, 400, "a revoked grant cannot link: {refused}");
    assert_eq!(refused["error"]["code"], "invalid_grant");

    // The user approves again: a new grant through the authorization-code flow.
    let (code, state) = approve_at_tastytrade(&w).await;
    let body =
        json!({"environment": "sandbox", "code": code, "state": state, "redirect_uri": CALLBACK});
    let (status, relinked) = send_link(&w, with_body(event("link-code.json"), &body)).await;

    assert_eq!(status, 201, "{relinked}");
    let ids = |accounts: &[Value]| {
        let mut ids: Vec<String> = accounts
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(
        ids(relinked.as_array().unwrap()),
        ids(&first),
        "same account ids"
    );
    assert!(
        relinked
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["last_sync_status"] == "PENDING" && a["last_error"].is_null())
    );
    let kept: i64 = client
        .query_one("SELECT count(*) FROM transactions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 2, "the synced data survived the re-link");
    let grants: i64 = client
        .query_one("SELECT count(*) FROM tastytrade_credentials", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(grants, 1, "the dead grant and its secrets are gone");
}

#[tokio::test]
async fn bad_input_is_refused_with_a_named_field_and_nothing_is_stored() {
    let w = world().await;
    let signing_key = w.aws.sdk.clone();
    let key = aws_sdk_secretsmanager::Client::new(&signing_key)
        .get_secret_value()
        .secret_id(&w.aws.stack.state_signing_secret_arn)
        .send()
        .await
        .unwrap()
        .secret_string
        .unwrap();
    let signer = tastysync_shared::oauth_state::StateSigner::new(SecretString::from(key));
    let an_hour_ago = chrono::Utc::now() - chrono::TimeDelta::hours(1);
    let expired = signer
        .sign("user-a", Environment::Sandbox, CALLBACK, an_hour_ago)
        .state;
    let for_user_b = signer
        .sign("user-b", Environment::Sandbox, CALLBACK, chrono::Utc::now())
        .state;
    let code = |state: &str| json!({"environment": "sandbox", "code": "abc", "state": state, "redirect_uri": CALLBACK});
    let huge = json!({"environment": "sandbox", "refresh_token": "x".repeat(20_000), "client_secret": "y"});
    let mut with_password = personal_grant(&w);
    with_password["password"] = "hunter2".into();
    let mut wrong_env = personal_grant(&w);
    wrong_env["environment"] = "paper".into();
    let mut evil_redirect = code(&for_user_b);
    evil_redirect["redirect_uri"] = "https://evil.example/steal".into();

    let cases: Vec<(Value, u16, Option<&str>)> = vec![
        (event("link-invalid-body.json"), 400, None),
        (
            with_body(event("link-personal-grant.json"), &huge),
            413,
            None,
        ),
        (
            with_body(event("link-personal-grant.json"), &wrong_env),
            400,
            Some("environment"),
        ),
        (
            with_body(event("link-personal-grant.json"), &with_password),
            400,
            None,
        ),
        (
            with_body(event("link-code.json"), &code("forged.state")),
            400,
            Some("state"),
        ),
        (
            with_body(event("link-code.json"), &code(&expired)),
            400,
            Some("state"),
        ),
        (
            with_body(event("link-code.json"), &code(&for_user_b)),
            400,
            Some("state"),
        ),
        (
            with_body(event("link-code.json"), &evil_redirect),
            400,
            Some("redirect_uri"),
        ),
        (
            with_body(
                event("link-personal-grant.json"),
                &json!({"environment": "sandbox"}),
            ),
            400,
            Some("refresh_token"),
        ),
        (
            event("link-start-invalid-body.json"),
            400,
            Some("environment"),
        ),
    ];
    for (request_event, expected, field) in cases {
        let body = request_event["body"].clone();
        let (status, answer) = send_link(&w, request_event).await;
        assert_eq!(status, expected, "{body} → {answer}");
        assert!(
            answer["error"]["code"].is_string() && answer["error"]["message"].is_string(),
            "{answer}"
        );
        if let Some(field) = field {
            assert_eq!(answer["error"]["field"], field, "{body} → {answer}");
        }
        assert!(!answer.to_string().contains("hunter2"));
    }

    assert_eq!(database_text(&w).await, "", "nothing stored");
    assert!(task_items(&w).await.is_empty(), "no task created");
    assert!(queued_messages(&w).await.is_empty(), "nothing queued");
}
