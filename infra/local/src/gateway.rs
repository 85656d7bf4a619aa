//! The local gateway: plays API Gateway, the SQS event source mapping and EventBridge for the
//! functions, which have no `sam local` here (no container runtime).
//!
//! - HTTP: every route of [`ROUTES`], checked by a JWT authorizer (HS256 with a dev key) and
//!   turned into the API Gateway v2 event the function would receive, with the claims in the
//!   authorizer context; unmatched routes answer `{"message":"Not Found"}` and missing or bad
//!   tokens `{"message":"Unauthorized"}`, as API Gateway does.
//! - CORS as the template's `CorsConfiguration` says, for the origins in `CORS_ALLOW_ORIGINS`
//!   (the template's `CorsAllowOrigins`): preflights answered by the gateway, the allowed
//!   origin and exposed headers added to every answer, 401s included.
//! - `GET /__local/dev-token?sub=USER`: a dev JWT, so that the web app signs in locally as its
//!   token provider would with the deployment's identity provider. Nothing like it is deployed.
//! - The worker: [`Poller`] feeds `sync-worker` from the FIFO queue with the mapping's
//!   semantics (batches of ten, visibility timeout, partial batch failures).
//! - The schedule: an incremental tick every `LOCAL_SCHEDULE_SECONDS` (default 300; 0 turns it
//!   off), named by its wall-clock time as EventBridge Scheduler would.
//!
//! The functions are called in process, through the same handlers and the same `from_env`
//! wiring as their Lambda `main`s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use sync_worker::local::Poller;
use tastysync_shared::api::{BASE_PATH, ROUTES};
use tastysync_shared::aws::SdkConfig;
use tastysync_shared::aws::as_identity;
use tastysync_shared::config::Env;
use tastysync_shared::wiring::{
    AccountData, Accounts, Function, LinkAccount, SyncScheduler, SyncStatus, SyncTrigger,
    SyncWorker,
};

/// API Gateway's payload limit.
const MAX_PAYLOAD_BYTES: usize = 10 * 1024 * 1024;

/// The dev authorizer's issuer and audience; the deployment takes its own as parameters.
pub const DEV_ISSUER: &str = "tastysync-local";
pub const DEV_AUDIENCE: &str = "tastysync";
/// The dev signing key unless `LOCAL_JWT_KEY` says otherwise. It signs nothing but local
/// tokens: the deployment verifies its identity provider's tokens instead.
const DEV_KEY: &str = "tastysync-local-dev-key-not-a-secret";

fn jwt_key(env: &Env) -> Vec<u8> {
    env.optional("LOCAL_JWT_KEY")
        .unwrap_or(DEV_KEY)
        .as_bytes()
        .to_vec()
}

/// A dev JWT for `sub`, valid for `ttl`.
pub fn dev_token(env: &Env, sub: &str, ttl: Duration) -> String {
    sign(
        &jwt_key(env),
        sub,
        i64::try_from(ttl.as_secs()).unwrap_or(3600),
    )
}

fn sign(key: &[u8], sub: &str, ttl_seconds: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "sub": sub,
        "iss": DEV_ISSUER,
        "aud": DEV_AUDIENCE,
        "iat": now,
        "exp": now + ttl_seconds,
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(key),
    )
    .unwrap_or_default()
}

/// Every function of the deployment, wired once.
struct Functions {
    link: LinkAccount,
    accounts: Accounts,
    account_data: AccountData,
    trigger: SyncTrigger,
    status: SyncStatus,
    decoding: DecodingKey,
    validation: Validation,
    cors: Cors,
    jwt_key: Vec<u8>,
}

/// The template's CORS rules with the stack's origins.
struct Cors {
    rules: crate::template::Cors,
    origins: Vec<String>,
}

impl Cors {
    fn from_env(env: &Env) -> Result<Self, GatewayError> {
        let template = crate::template::parse(crate::template::TEMPLATE)?;
        let origins = env
            .optional("CORS_ALLOW_ORIGINS")
            .unwrap_or_default()
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        Ok(Self {
            rules: crate::template::cors(&template)?,
            origins,
        })
    }

    /// The request's origin when it is one of the allowed.
    fn allowed<'h>(&self, headers: &'h HeaderMap) -> Option<&'h HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        let text = origin.to_str().ok()?;
        self.origins
            .iter()
            .any(|o| o == "*" || o == text)
            .then_some(origin)
    }

    /// API Gateway answers a preflight itself, whatever the routes; an origin it does not
    /// allow gets no CORS headers, which the browser takes as a refusal.
    fn preflight(&self, headers: &HeaderMap) -> Response {
        let mut response = StatusCode::NO_CONTENT.into_response();
        if let Some(origin) = self.allowed(headers) {
            let h = response.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            let join = |v: &[String]| HeaderValue::from_str(&v.join(",")).ok();
            if let Some(v) = join(&self.rules.allow_methods) {
                h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
            }
            if let Some(v) = join(&self.rules.allow_headers) {
                h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
            }
            h.insert(header::ACCESS_CONTROL_MAX_AGE, self.rules.max_age.into());
            h.insert(header::VARY, HeaderValue::from_static("origin"));
        }
        response
    }

    fn decorate(&self, headers: &HeaderMap, response: &mut Response) {
        let Some(origin) = self.allowed(headers) else {
            return;
        };
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(header::VARY, HeaderValue::from_static("origin"));
        if let Ok(v) = HeaderValue::from_str(&self.rules.expose_headers.join(",")) {
            if !self.rules.expose_headers.is_empty() {
                h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Startup(#[from] tastysync_shared::StartupError),
    #[error(transparent)]
    Config(#[from] tastysync_shared::config::ConfigError),
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),
}

/// A gateway serving in the background.
#[derive(Debug)]
pub struct Running {
    pub url: String,
}

/// Starts the gateway on `addr` (port 0: any free port), with the worker and the schedule
/// clock, in the background of the current runtime. Each function signs its AWS calls with its
/// own identity where the environment names one (the local stack's do).
pub async fn start(env: &Env, sdk: &SdkConfig, addr: SocketAddr) -> Result<Running, GatewayError> {
    let sdk_of = |function| as_identity(sdk, env, function);
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[DEV_ISSUER]);
    validation.set_audience(&[DEV_AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
    let functions = Arc::new(Functions {
        link: LinkAccount::from_env(env, &sdk_of(Function::LinkAccount)).await?,
        accounts: Accounts::from_env(env, &sdk_of(Function::Accounts)).await?,
        account_data: AccountData::from_env(env, &sdk_of(Function::AccountData)).await?,
        trigger: SyncTrigger::from_env(env, &sdk_of(Function::SyncTrigger)).await?,
        status: SyncStatus::from_env(env, &sdk_of(Function::SyncStatus)).await?,
        decoding: DecodingKey::from_secret(&jwt_key(env)),
        validation,
        cors: Cors::from_env(env)?,
        jwt_key: jwt_key(env),
    });
    let worker_sdk = sdk_of(Function::SyncWorker);
    let worker = SyncWorker::from_env(env, &worker_sdk).await?;
    let (poller, _) = Poller::from_env(env, &worker_sdk)?;
    tokio::spawn(async move {
        if let Err(e) = poller.run(&worker, None, None).await {
            tracing::error!(error = %e, "the local worker stopped");
        }
    });
    let every = env.parsed_or("LOCAL_SCHEDULE_SECONDS", 300u64)?;
    // The deployed deep schedule's hour (17:00 New York is 22:00 UTC in winter).
    let deep_hour = env.parsed_or("LOCAL_DEEP_HOUR_UTC", 22u32)?;
    if every > 0 {
        let scheduler = SyncScheduler::from_env(env, &sdk_of(Function::SyncScheduler)).await?;
        tokio::spawn(async move {
            let mut clock = tokio::time::interval(Duration::from_secs(every));
            clock.tick().await;
            loop {
                clock.tick().await;
                let now = chrono::Utc::now();
                // As on AWS, the two schedules are independent: in the deep hour both fire.
                let mut kinds = vec!["incremental"];
                if chrono::Timelike::hour(&now) == deep_hour {
                    kinds.push("deep");
                }
                for kind in kinds {
                    let event = json!({"kind": kind, "scheduled_time": now});
                    if let Err(e) = sync_scheduler::handle(&scheduler, event).await {
                        tracing::warn!(error = %e, kind, "scheduled tick failed");
                    }
                }
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new().fallback(move |method, uri, headers, body| {
        let functions = Arc::clone(&functions);
        async move { serve(&functions, method, uri, headers, body).await }
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the local gateway stopped");
        }
    });
    Ok(Running { url })
}

fn gateway_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "message": message }))).into_response()
}

async fn serve(
    functions: &Functions,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        return functions.cors.preflight(&headers);
    }
    let mut response = if method == Method::GET && uri.path() == "/__local/dev-token" {
        dev_token_response(functions, &uri)
    } else {
        route(functions, &method, &uri, &headers, body).await
    };
    functions.cors.decorate(&headers, &mut response);
    response
}

/// A dev JWT for the `sub` asked for (`dev-user` by default), valid for an hour.
fn dev_token_response(functions: &Functions, uri: &Uri) -> Response {
    const TTL_SECONDS: i64 = 3600;
    let sub = url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "sub")
        .map_or_else(|| "dev-user".to_owned(), |(_, v)| v.into_owned());
    let token = sign(&functions.jwt_key, &sub, TTL_SECONDS);
    axum::Json(json!({ "token": token, "expires_in": TTL_SECONDS })).into_response()
}

async fn route(
    functions: &Functions,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let Some((route, params)) = path.strip_prefix(BASE_PATH).and_then(|under| {
        ROUTES
            .iter()
            .find_map(|r| r.matches(method.as_str(), under).map(|p| (r, p)))
    }) else {
        return gateway_error(StatusCode::NOT_FOUND, "Not Found");
    };
    if body.len() > MAX_PAYLOAD_BYTES {
        return gateway_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    }
    let Some(claims) = authorize(functions, headers) else {
        return gateway_error(StatusCode::UNAUTHORIZED, "Unauthorized");
    };
    let route_key = format!("{} {BASE_PATH}{}", route.method, route.path);
    let event = event(&route_key, method, uri, headers, &body, &params, claims);
    let request = match lambda_http::request::from_str(&event.to_string()) {
        Ok(request) => request,
        Err(e) => {
            tracing::error!(error = %e, "could not build the function's event");
            return gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
        }
    };
    let response = match route.function {
        Function::LinkAccount => link_account::handle(&functions.link, request).await,
        Function::Accounts => accounts::handle(&functions.accounts, request).await,
        Function::AccountData => account_data::handle(&functions.account_data, request).await,
        Function::SyncTrigger => sync_trigger::handle(&functions.trigger, request).await,
        Function::SyncStatus => sync_status::handle(&functions.status, request).await,
        other => {
            tracing::error!(
                function = other.name(),
                "a route names a function the gateway lacks"
            );
            return gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
        }
    };
    let (parts, body) = response.into_parts();
    let bytes: Vec<u8> = match body {
        lambda_http::Body::Empty => Vec::new(),
        lambda_http::Body::Text(text) => text.into_bytes(),
        lambda_http::Body::Binary(bytes) => bytes,
        _ => Vec::new(),
    };
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// The JWT authorizer: the bearer token's claims, or `None` (401).
fn authorize(functions: &Functions, headers: &HeaderMap) -> Option<serde_json::Map<String, Value>> {
    let token = headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    jsonwebtoken::decode::<serde_json::Map<String, Value>>(
        token.trim(),
        &functions.decoding,
        &functions.validation,
    )
    .ok()
    .map(|data| data.claims)
}

/// The API Gateway HTTP API (payload 2.0) event for a request.
fn event(
    route_key: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    params: &[(&str, &str)],
    claims: serde_json::Map<String, Value>,
) -> Value {
    let mut header_map = serde_json::Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        header_map
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                if let Value::String(s) = v {
                    s.push(',');
                    s.push_str(&value);
                }
            })
            .or_insert(Value::String(value));
    }
    let query: serde_json::Map<String, Value> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
    // API Gateway hands claims over as strings.
    let claims: serde_json::Map<String, Value> = claims
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, Value::String(text))
        })
        .collect();
    let (body, encoded) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let now = chrono::Utc::now();
    json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": uri.path(),
        "rawQueryString": uri.query().unwrap_or_default(),
        "headers": header_map,
        "queryStringParameters": if query.is_empty() { Value::Null } else { Value::Object(query) },
        "pathParameters": if params.is_empty() { Value::Null } else {
            Value::Object(params.iter().map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned()))).collect())
        },
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "authorizer": { "jwt": { "claims": claims, "scopes": null } },
            "domainName": "127.0.0.1",
            "domainPrefix": "local",
            "http": {
                "method": method.as_str(),
                "path": uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or_default(),
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "body": if body.is_empty() { Value::Null } else { Value::String(body) },
        "isBase64Encoded": encoded,
    })
}
