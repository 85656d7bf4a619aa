//! The HTTP side: one `reqwest` client per cold start, OAuth access tokens per grant, retries.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::dxlink::{FeedRead, QuoteFeed};
use super::error::BrokerError;
use crate::Retry;
use crate::config::{ConfigError, Env};
use crate::ports::Broker;

/// tastytrade answers 401 to a request without a product User-Agent (reference §2.0).
pub const USER_AGENT: &str = concat!("tastysync/", env!("CARGO_PKG_VERSION"));

/// Refresh this long before the token's stated expiry, so a token never dies mid-request.
const TOKEN_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// The broker's documented default when `expires_in` is absent.
const DEFAULT_TOKEN_SECONDS: i64 = 900;
/// The longest an access token is believed to live, whatever `expires_in` says (the broker's
/// are 15 minutes): a huge or negative value must neither overflow a time nor keep a token.
const MAX_TOKEN_SECONDS: i64 = 24 * 3600;

/// A token answer's bytes, zeroed when dropped.
struct Wiped(bytes::BytesMut);

impl Drop for Wiped {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0[..]);
    }
}

/// How much of the broker the client takes in, whatever the broker sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A response body longer than this is refused (`TASTYTRADE_MAX_BODY_BYTES`): the
    /// largest page (2,000 transactions) is a few MiB.
    pub max_body_bytes: usize,
    /// A scan of more pages than this fails (`TASTYTRADE_MAX_PAGES_PER_SCAN`): a broker
    /// that never stops paging must not hold a worker forever.
    pub max_pages_per_scan: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 << 20,
            max_pages_per_scan: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Production,
    Sandbox,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Production => "production",
            Environment::Sandbox => "sandbox",
        }
    }

    /// The environment `text` names, as stored and as configured (`production`, `sandbox`).
    pub fn parse(text: &str) -> Option<Self> {
        [Environment::Production, Environment::Sandbox]
            .into_iter()
            .find(|e| e.as_str() == text)
    }
}

/// Bounds on retrying one call: attempts, the delay between them, and total time.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// "Full jitter": a uniform delay up to the exponential bound, so that many clients
    /// throttled together do not come back together.
    /// How long to wait before attempt `attempts + 1` of a call started at `started` that just
    /// failed with `error`; `None` when the error is final or the policy's bounds are reached.
    /// The broker's own `Retry-After`, when it sends one, wins over our guess.
    fn retry_after(
        &self,
        error: &BrokerError,
        attempts: u32,
        started: Instant,
    ) -> Option<Duration> {
        let delay = match error {
            BrokerError::RateLimited {
                retry_after: Some(wait),
                ..
            } => (*wait).max(self.delay(attempts)),
            _ => self.delay(attempts),
        };
        let retryable = error.retry() == Retry::Retryable
            && attempts < self.max_attempts
            && started.elapsed() + delay <= self.max_elapsed;
        retryable.then_some(delay)
    }

    fn delay(&self, attempt: u32) -> Duration {
        let bound = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        bound.mul_f64(fastrand::f64())
    }
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub production_url: Url,
    pub sandbox_url: Url,
    /// The account streamer (`wss://`) per environment.
    pub production_streamer_url: Url,
    pub sandbox_streamer_url: Url,
    /// Pinned `Accept-Version` per environment; the sandbox does not accept the header.
    pub production_accept_version: Option<String>,
    pub sandbox_accept_version: Option<String>,
    pub retry: RetryPolicy,
    pub request_timeout: Duration,
    pub limits: Limits,
}

impl BrokerConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let url = |name: &'static str, default: &str| -> Result<Url, ConfigError> {
            Url::parse(env.optional(name).unwrap_or(default)).map_err(|e| ConfigError::Invalid {
                name,
                reason: e.to_string(),
            })
        };
        let defaults = RetryPolicy::default();
        Ok(Self {
            production_url: url("TASTYTRADE_PRODUCTION_URL", "https://api.tastyworks.com")?,
            sandbox_url: url("TASTYTRADE_SANDBOX_URL", "https://api.cert.tastyworks.com")?,
            production_streamer_url: url(
                "TASTYTRADE_STREAMER_URL",
                "wss://streamer.tastyworks.com",
            )?,
            sandbox_streamer_url: url(
                "TASTYTRADE_SANDBOX_STREAMER_URL",
                "wss://streamer.cert.tastyworks.com",
            )?,
            production_accept_version: Some(
                env.optional("TASTYTRADE_ACCEPT_VERSION")
                    .unwrap_or("20261012")
                    .to_owned(),
            ),
            sandbox_accept_version: env
                .optional("TASTYTRADE_SANDBOX_ACCEPT_VERSION")
                .map(str::to_owned),
            retry: RetryPolicy {
                max_attempts: env.parsed_or("TASTYTRADE_MAX_ATTEMPTS", defaults.max_attempts)?,
                max_elapsed: Duration::from_secs(
                    env.parsed_or("TASTYTRADE_MAX_RETRY_SECONDS", 60u64)?,
                ),
                ..defaults
            },
            request_timeout: Duration::from_secs(
                env.parsed_or("TASTYTRADE_TIMEOUT_SECONDS", 30u64)?,
            ),
            limits: Limits {
                max_body_bytes: env.parsed_or(
                    "TASTYTRADE_MAX_BODY_BYTES",
                    Limits::default().max_body_bytes,
                )?,
                max_pages_per_scan: env.parsed_or(
                    "TASTYTRADE_MAX_PAGES_PER_SCAN",
                    Limits::default().max_pages_per_scan,
                )?,
            },
        })
    }

    /// Every URL pointing at one simulator (its API and its account streamer): what tests and
    /// the benchmarks use.
    pub fn for_simulator(base: Url, streamer: Url) -> Self {
        Self {
            production_url: base.clone(),
            sandbox_url: base,
            production_streamer_url: streamer.clone(),
            sandbox_streamer_url: streamer,
            production_accept_version: Some("20261012".into()),
            sandbox_accept_version: None,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            limits: Limits::default(),
        }
    }

    fn base(&self, environment: Environment) -> &Url {
        match environment {
            Environment::Production => &self.production_url,
            Environment::Sandbox => &self.sandbox_url,
        }
    }

    fn accept_version(&self, environment: Environment) -> Option<&str> {
        match environment {
            Environment::Production => self.production_accept_version.as_deref(),
            Environment::Sandbox => self.sandbox_accept_version.as_deref(),
        }
    }
}

/// Counters for metrics and for tests that bound the retries.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
    pub token_refreshes: AtomicU64,
}

impl Stats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The OAuth grant a session acts for. Its secrets stay wrapped and are zeroised on drop.
#[derive(Debug)]
pub struct Grant {
    pub environment: Environment,
    pub client_id: Option<String>,
    pub client_secret: SecretString,
    pub refresh_token: SecretString,
}

#[derive(Debug, Clone)]
pub struct AccessToken {
    pub token: SecretString,
    pub expires_at: DateTime<Utc>,
}

impl AccessToken {
    fn is_fresh(&self) -> bool {
        Utc::now() + TOKEN_MARGIN < self.expires_at
    }
}

/// What the authorization-code exchange yields: the refresh token to keep, and a first access
/// token that proves the grant works.
#[derive(Debug)]
pub struct CodeExchange {
    pub refresh_token: SecretString,
    pub access: AccessToken,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: SecretString,
    #[serde(default)]
    expires_in: Option<i64>,
    #[serde(default)]
    refresh_token: Option<SecretString>,
}

impl TokenResponse {
    fn access(self) -> (AccessToken, Option<SecretString>) {
        let seconds =
            (self.expires_in.unwrap_or(DEFAULT_TOKEN_SECONDS)).clamp(0, MAX_TOKEN_SECONDS);
        let access = AccessToken {
            token: self.access_token,
            expires_at: Utc::now() + chrono::TimeDelta::seconds(seconds),
        };
        (access, self.refresh_token)
    }
}

/// One per cold start; every session borrows it.
#[derive(Debug)]
pub struct TastytradeClient {
    http: reqwest::Client,
    /// For the market-data websocket (DXLink).
    tls: std::sync::Arc<rustls::ClientConfig>,
    config: BrokerConfig,
    stats: Stats,
}

impl TastytradeClient {
    pub fn new(config: BrokerConfig) -> Result<Self, BrokerError> {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            "application/json".parse().expect("static header"),
        );
        // One configuration (and one parse of the root store) for the API and the sockets.
        let tls = crate::tls::client_config();
        let http = crate::tls::http_on(&tls)
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .timeout(config.request_timeout)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| BrokerError::Permanent {
                status: None,
                code: None,
                message: format!("HTTP client: {e}"),
            })?;
        Ok(Self {
            http,
            tls,
            config,
            stats: Stats::default(),
        })
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    async fn get_once(
        &self,
        environment: Environment,
        path: &str,
        query: &[(String, String)],
        token: &AccessToken,
    ) -> Result<bytes::Bytes, BrokerError> {
        let mut request = self
            .http
            .get(self.url(environment, path)?)
            .query(query)
            .bearer_auth(token.token.expose_secret());
        if let Some(version) = self.config.accept_version(environment) {
            request = request.header("Accept-Version", version);
        }
        let (status, retry_after, bytes) = self.send(request).await?;
        if status.is_success() {
            return Ok(bytes);
        }
        Err(api_error(status, &bytes).waiting(retry_after))
    }

    /// `POST /oauth/token` with `fields`, form-encoded or as JSON (see [`TokenEncoding`]).
    async fn token_request(
        &self,
        environment: Environment,
        fields: &[(&str, &str)],
        encoding: TokenEncoding,
    ) -> Result<TokenResponse, BrokerError> {
        let url = self.url(environment, "/oauth/token")?;
        // The body holds secrets (the client secret, a refresh token or a code): it is never
        // logged, and its bytes are wiped when the last of the client's references to them is
        // dropped, after the request; so are the answer's bytes (the tokens as text), once
        // read. Copies made on the way out (TLS records) are the TLS library's.
        let (content_type, body) = match encoding {
            TokenEncoding::Form => (
                "application/x-www-form-urlencoded",
                zeroize::Zeroizing::new(
                    url::form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(fields)
                        .finish()
                        .into_bytes(),
                ),
            ),
            TokenEncoding::Json => (
                "application/json",
                // A map of strings always serialises.
                zeroize::Zeroizing::new(
                    serde_json::to_vec(&fields.iter().copied().collect::<HashMap<_, _>>())
                        .unwrap_or_default(),
                ),
            ),
        };
        let request = (self.http.request(Method::POST, url))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes::Bytes::from_owner(body));
        let (status, retry_after, bytes) = self.send(request).await?;
        let bytes = Wiped(
            bytes
                .try_into_mut()
                .unwrap_or_else(|shared| shared[..].into()),
        );
        if status.is_success() {
            return serde_json::from_slice(&bytes.0).map_err(|e| decode_error(status, &e));
        }
        Err(token_error(status, &bytes.0).waiting(retry_after))
    }

    fn url(&self, environment: Environment, path: &str) -> Result<Url, BrokerError> {
        self.config
            .base(environment)
            .join(path)
            .map_err(|e| BrokerError::InvalidRequest {
                status: 0,
                code: None,
                message: format!("bad path {path:?}: {e}"),
            })
    }

    /// The answer's status, the wait its `Retry-After` asks for, and its body.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Option<Duration>, bytes::Bytes), BrokerError> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        crate::metrics::broker_call();
        let response = request
            .send()
            .await
            .map_err(|e| BrokerError::transient(network_detail(e)))?;
        let status = response.status();
        let retry_after = (response.headers().get(reqwest::header::RETRY_AFTER))
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after);
        let body = self.body(response).await?;
        Ok((status, retry_after, body))
    }

    /// The response's body, up to [`Limits::max_body_bytes`]: a longer one is refused as it
    /// arrives (or at once, when its length is announced), never held whole.
    async fn body(&self, mut response: reqwest::Response) -> Result<bytes::Bytes, BrokerError> {
        let limit = self.config.limits.max_body_bytes;
        let status = response.status().as_u16();
        let too_long = || BrokerError::Permanent {
            status: Some(status),
            code: None,
            message: format!("the response body is longer than {limit} bytes"),
        };
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_long());
        }
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| BrokerError::transient(network_detail(e)))?
        {
            if body.len() + chunk.len() > limit {
                return Err(too_long());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// Runs `attempt` until it succeeds, fails for good, or the policy's bounds are reached
    /// (the token requests; a grant's reads are retried by their [`Session`]).
    async fn with_retries<T, F, Fut>(&self, mut attempt: F) -> Result<T, BrokerError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, BrokerError>>,
    {
        let policy = &self.config.retry;
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let error = match attempt().await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            if matches!(error, BrokerError::RateLimited { .. }) {
                self.note_throttled();
            }
            let Some(delay) = policy.retry_after(&error, attempts, started) else {
                return Err(error);
            };
            self.note_retry();
            tracing::debug!(attempt = attempts, error = %error, "retrying tastytrade call");
            tokio::time::sleep(delay).await;
        }
    }
}

/// How a grant's fields travel to `/oauth/token`. The refresh grant is documented as JSON;
/// the authorization-code exchange is an OAuth 2.0 form post (RFC 6749 §4.1.3), as the
/// public clients send it (reference §2b).
#[derive(Debug, Clone, Copy)]
enum TokenEncoding {
    Form,
    Json,
}

impl crate::ports::AccountStreams for TastytradeClient {
    async fn account_stream(
        &self,
        environment: Environment,
        accounts: &[String],
        token: &AccessToken,
    ) -> Result<super::streamer::AccountStream, BrokerError> {
        let url = match environment {
            Environment::Production => &self.config.production_streamer_url,
            Environment::Sandbox => &self.config.sandbox_streamer_url,
        };
        super::streamer::AccountStream::connect(url.as_str(), accounts, token, self.tls.clone())
            .await
    }
}

impl Broker for TastytradeClient {
    async fn greeks(
        &self,
        feed: &QuoteFeed,
        symbols: &[String],
        wait: Duration,
    ) -> Result<FeedRead, BrokerError> {
        super::dxlink::read_greeks(feed, symbols, wait, self.tls.clone()).await
    }

    async fn exchange_code(
        &self,
        environment: Environment,
        client_id: &str,
        client_secret: &SecretString,
        code: &SecretString,
        redirect_uri: &str,
        code_verifier: Option<&SecretString>,
    ) -> Result<CodeExchange, BrokerError> {
        let mut fields = vec![
            ("grant_type", "authorization_code"),
            ("code", code.expose_secret()),
            ("client_id", client_id),
            ("client_secret", client_secret.expose_secret()),
            ("redirect_uri", redirect_uri),
        ];
        if let Some(verifier) = code_verifier {
            fields.push(("code_verifier", verifier.expose_secret()));
        }
        let response = self
            .token_request(environment, &fields, TokenEncoding::Form)
            .await?;
        let (access, refresh_token) = response.access();
        let refresh_token = refresh_token.ok_or_else(|| BrokerError::Permanent {
            status: None,
            code: None,
            message: "the code exchange returned no refresh token".into(),
        })?;
        Ok(CodeExchange {
            refresh_token,
            access,
        })
    }

    async fn refresh(&self, grant: &Grant) -> Result<AccessToken, BrokerError> {
        let mut fields = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", grant.refresh_token.expose_secret()),
            ("client_secret", grant.client_secret.expose_secret()),
        ];
        if let Some(id) = &grant.client_id {
            fields.push(("client_id", id));
        }
        self.stats.token_refreshes.fetch_add(1, Ordering::Relaxed);
        // One `invalid_grant` is not yet proof: the sandbox rejects healthy grants now and
        // then (reference §7.11). A second in a row is.
        let revoked_once = std::sync::atomic::AtomicBool::new(false);
        let result = self
            .with_retries(|| async {
                match self
                    .token_request(grant.environment, &fields, TokenEncoding::Json)
                    .await
                {
                    Err(BrokerError::GrantRevoked { code })
                        if !revoked_once.swap(true, Ordering::Relaxed) =>
                    {
                        Err(BrokerError::Transient {
                            status: None,
                            code,
                            detail: "invalid_grant once".into(),
                        })
                    }
                    other => other,
                }
            })
            .await;
        result.map(|r| r.access().0)
    }

    async fn get(
        &self,
        environment: Environment,
        path: &str,
        query: &[(String, String)],
        token: &AccessToken,
    ) -> Result<bytes::Bytes, BrokerError> {
        self.get_once(environment, path, query, token).await
    }

    fn retry_policy(&self) -> &RetryPolicy {
        &self.config.retry
    }

    fn limits(&self) -> Limits {
        self.config.limits
    }

    fn note_retry(&self) {
        self.stats.retries.fetch_add(1, Ordering::Relaxed);
        crate::metrics::broker_retry();
    }

    fn note_throttled(&self) {
        self.stats.throttled.fetch_add(1, Ordering::Relaxed);
        crate::metrics::broker_throttled();
    }
}

/// Requests of one grant in flight at once, unless the caller sets another bound.
pub const DEFAULT_GRANT_CONCURRENCY: usize = 4;

/// Requests on behalf of one grant, sharing one access token, at most a few at a time, all of
/// them held back together when the broker throttles the grant.
#[derive(Debug)]
pub struct Session<'c, B: Broker = TastytradeClient> {
    broker: &'c B,
    grant: Grant,
    /// tastytrade limits requests per user: one permit per request in flight.
    permits: tokio::sync::Semaphore,
    concurrency: usize,
    /// After a 429 no request of the grant starts before this instant, so the requests in
    /// flight beside the refused one do not keep the broker's limit tripped.
    held_until: std::sync::Mutex<Option<Instant>>,
    /// Held across a refresh, so concurrent callers wait for one refresh instead of each
    /// starting their own (single flight).
    token: tokio::sync::Mutex<Option<AccessToken>>,
    /// The token endpoint's final no (a dead grant, a refused client), set under `token`: the
    /// callers that waited for the refresh that learned it, and every later one, take it
    /// without asking again.
    refused: std::sync::OnceLock<BrokerError>,
    /// Every call, retries and a token refresh included, ends by then.
    until: Option<Instant>,
}

impl<'c, B: Broker> Session<'c, B> {
    pub(crate) fn new(broker: &'c B, grant: Grant, cached: Option<AccessToken>) -> Self {
        Self {
            broker,
            grant,
            permits: tokio::sync::Semaphore::new(DEFAULT_GRANT_CONCURRENCY),
            concurrency: DEFAULT_GRANT_CONCURRENCY,
            held_until: std::sync::Mutex::new(None),
            token: tokio::sync::Mutex::new(cached),
            refused: std::sync::OnceLock::new(),
            until: None,
        }
    }

    /// At most `requests` (at least one) of the grant in flight at once.
    #[must_use]
    pub fn concurrency(mut self, requests: usize) -> Self {
        self.concurrency = requests.max(1);
        self.permits = tokio::sync::Semaphore::new(self.concurrency);
        self
    }

    /// How many requests of the grant may be in flight at once: how far a scan reads ahead.
    pub fn concurrent_requests(&self) -> usize {
        self.concurrency
    }

    /// How much of the broker the session takes in.
    pub fn limits(&self) -> Limits {
        self.broker.limits()
    }

    /// A request's permit, once no back-off the broker imposed on the grant is running. The
    /// back-off is checked with the permit held, so a request that waited for its turn while
    /// another was refused waits out the refusal too.
    async fn permit(&self) -> tokio::sync::SemaphorePermit<'_> {
        loop {
            let permit = (self.permits.acquire().await)
                .unwrap_or_else(|_| unreachable!("the session's semaphore is never closed"));
            let held = *self.held_until.lock().unwrap_or_else(|e| e.into_inner());
            match held {
                Some(until) if until > Instant::now() => {
                    drop(permit);
                    tokio::time::sleep_until(until.into()).await;
                }
                _ => return permit,
            }
        }
    }

    /// Holds back every request of the grant for `wait`.
    fn hold_back(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut held = self.held_until.lock().unwrap_or_else(|e| e.into_inner());
        *held = Some(held.map_or(until, |h| h.max(until)));
    }

    /// Bounds every call of the session by `until`: one still waiting then (on the broker,
    /// or between retries) is abandoned as [`BrokerError::OutOfTime`].
    #[must_use]
    pub fn until(mut self, until: Option<Instant>) -> Self {
        self.until = until;
        self
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, BrokerError>>,
    ) -> Result<T, BrokerError> {
        match self.until {
            Some(until) => tokio::time::timeout_at(until.into(), call)
                .await
                .unwrap_or(Err(BrokerError::OutOfTime)),
            None => call.await,
        }
    }

    pub fn environment(&self) -> Environment {
        self.grant.environment
    }

    /// The grant this session acts for (to seal its secrets once it has proved to work).
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// The access token the session holds, while it is fresh; none is minted.
    pub async fn current_token(&self) -> Option<AccessToken> {
        self.token
            .lock()
            .await
            .clone()
            .filter(AccessToken::is_fresh)
    }

    /// A valid access token, minted if the cached one is missing or about to expire.
    pub async fn access_token(&self) -> Result<AccessToken, BrokerError> {
        let mut slot = self.token.lock().await;
        if let Some(token) = slot.as_ref().filter(|t| t.is_fresh()) {
            return Ok(token.clone());
        }
        if let Some(refused) = self.refused.get() {
            return Err(refused.clone());
        }
        let fresh = match self.bounded(self.broker.refresh(&self.grant)).await {
            Ok(fresh) => fresh,
            Err(e) => {
                if matches!(
                    e,
                    BrokerError::GrantRevoked { .. } | BrokerError::ClientRejected { .. }
                ) {
                    let _ = self.refused.set(e.clone());
                }
                return Err(e);
            }
        };
        *slot = Some(fresh.clone());
        Ok(fresh)
    }

    /// Forgets `used` (a token the broker refused) unless another caller already replaced it:
    /// the next [`Session::access_token`] mints a new one.
    pub async fn forget(&self, used: &AccessToken) {
        self.invalidate(used).await;
    }

    /// Forgets `used` unless another caller already replaced it.
    async fn invalidate(&self, used: &AccessToken) {
        let mut slot = self.token.lock().await;
        if slot
            .as_ref()
            .is_some_and(|t| t.token.expose_secret() == used.token.expose_secret())
        {
            *slot = None;
        }
    }

    /// GET `path` and read its body as a `T`, retried within the broker's [`RetryPolicy`]: a
    /// 401 refreshes the token once (and the call's attempts start again); a 429 holds back
    /// every request of the grant, for the broker's `Retry-After` when it sends one; a network
    /// failure, a 5xx or a body cut off waits alone.
    pub(crate) async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> Result<T, BrokerError> {
        let policy = self.broker.retry_policy();
        let (mut started, mut attempts, mut refreshed) = (Instant::now(), 0, false);
        loop {
            attempts += 1;
            let token = self.access_token().await?;
            let environment = self.grant.environment;
            // A 429's wait, decided while its request still holds its place.
            let mut throttled_for = None;
            let call = async {
                let body = {
                    let _permit = self.permit().await;
                    let fetched = self.broker.get(environment, path, query, &token).await;
                    // The grant is held back before this request gives up its place: one let
                    // through in between would be sent into the wait the broker asked for.
                    if let Err(e @ BrokerError::RateLimited { .. }) = &fetched {
                        throttled_for = policy.retry_after(e, attempts, started);
                        if let Some(wait) = throttled_for {
                            self.hold_back(wait);
                        }
                    }
                    fetched?
                };
                serde_json::from_slice(&body).map_err(|e| decode_error(StatusCode::OK, &e))
            };
            let error = match self.bounded(call).await {
                Ok(body) => return Ok(body),
                Err(BrokerError::AuthExpired { .. }) if !refreshed => {
                    self.invalidate(&token).await;
                    (started, attempts, refreshed) = (Instant::now(), 0, true);
                    continue;
                }
                Err(e) => e,
            };
            let throttled = matches!(error, BrokerError::RateLimited { .. });
            if throttled {
                self.broker.note_throttled();
            }
            let delay = if throttled {
                throttled_for
            } else {
                policy.retry_after(&error, attempts, started)
            };
            let Some(delay) = delay else {
                return Err(error);
            };
            self.broker.note_retry();
            tracing::debug!(attempt = attempts, error = %error, "retrying tastytrade call");
            // A throttled call waits in `permit`, with the grant's other requests, until the
            // hold set above ends; any other waits alone.
            if !throttled {
                self.bounded(async {
                    tokio::time::sleep(delay).await;
                    Ok(())
                })
                .await?;
            }
        }
    }
}

fn network_detail(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the body was cut off"
    } else {
        "request failed"
    };
    // The URL is kept (it names no secret: tokens travel in headers and bodies).
    format!("{kind}: {}", e.without_url())
}

/// A success status with a body we cannot read: cut off (retry) or of a shape we do not know.
fn decode_error(status: StatusCode, e: &serde_json::Error) -> BrokerError {
    if e.is_eof() {
        BrokerError::Transient {
            status: Some(status.as_u16()),
            code: None,
            detail: "the body was cut off".into(),
        }
    } else {
        BrokerError::Permanent {
            status: Some(status.as_u16()),
            code: None,
            message: format!("unreadable answer: {e}"),
        }
    }
}

/// `{"error": {"code": "...", "message": "..."}}`; `code` is an integer on 406.
fn envelope_error(bytes: &[u8]) -> (Option<String>, String) {
    let parsed: Option<Value> = serde_json::from_slice(bytes).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let code = error.and_then(|e| e.get("code")).map(|c| match c {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("no message")
        .to_owned();
    (code, message)
}

fn api_error(status: StatusCode, bytes: &[u8]) -> BrokerError {
    let (code, message) = envelope_error(bytes);
    let status_code = status.as_u16();
    match status {
        StatusCode::UNAUTHORIZED => BrokerError::AuthExpired { code },
        StatusCode::TOO_MANY_REQUESTS => BrokerError::RateLimited {
            code,
            retry_after: None,
        },
        StatusCode::NOT_FOUND => BrokerError::NotFound { code },
        StatusCode::REQUEST_TIMEOUT => BrokerError::Transient {
            status: Some(status_code),
            code,
            detail: message,
        },
        s if s.is_server_error() => BrokerError::Transient {
            status: Some(status_code),
            code,
            detail: message,
        },
        StatusCode::BAD_REQUEST | StatusCode::NOT_ACCEPTABLE | StatusCode::UNPROCESSABLE_ENTITY => {
            BrokerError::InvalidRequest {
                status: status_code,
                code,
                message,
            }
        }
        _ => BrokerError::Permanent {
            status: Some(status_code),
            code,
            message,
        },
    }
}

/// `Retry-After` as seconds or as an HTTP date (RFC 9110 §10.2.3); a date in the past is no
/// wait. The broker does not document it (reference §5), so it is honoured when present.
fn retry_after(value: &str) -> Option<Duration> {
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value.trim()).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or_default())
}

/// The token endpoint answers `{"error_code"|"error": ..., "error_description": ...}`.
fn token_error(status: StatusCode, bytes: &[u8]) -> BrokerError {
    let parsed: Option<Value> = serde_json::from_slice(bytes).ok();
    let code = parsed
        .as_ref()
        .and_then(|v| v.get("error_code").or_else(|| v.get("error")))
        .and_then(|c| {
            c.as_str()
                .map(str::to_owned)
                .or_else(|| c.get("code").and_then(Value::as_str).map(str::to_owned))
        });
    match code.as_deref() {
        Some("invalid_grant") => return BrokerError::GrantRevoked { code },
        Some("invalid_client" | "unauthorized_client") => {
            return BrokerError::ClientRejected { code };
        }
        _ => {}
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        return BrokerError::RateLimited {
            code,
            retry_after: None,
        };
    }
    // Any other refusal of a refresh may be the broker's passing trouble (the sandbox's
    // "User is not a TastyTrade customer"), so it is retried rather than believed.
    BrokerError::Transient {
        status: Some(status.as_u16()),
        code,
        detail: "the token endpoint refused".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_errors_of_both_shapes_name_a_revoked_grant() {
        let rfc = token_error(StatusCode::BAD_REQUEST, br#"{"error":"invalid_grant"}"#);
        let tasty = token_error(
            StatusCode::BAD_REQUEST,
            br#"{"error_code":"invalid_grant","error_description":"Invalid JWT"}"#,
        );
        assert!(matches!(rfc, BrokerError::GrantRevoked { .. }));
        assert!(matches!(tasty, BrokerError::GrantRevoked { .. }));
    }

    #[test]
    fn a_refused_client_is_not_a_revoked_grant() {
        let e = token_error(StatusCode::UNAUTHORIZED, br#"{"error":"invalid_client"}"#);
        assert!(matches!(e, BrokerError::ClientRejected { .. }), "{e:?}");
        assert_eq!(
            e.retry(),
            Retry::NonRetryable,
            "not in the client's fast loop"
        );
    }

    #[test]
    fn other_token_refusals_are_retried_not_believed() {
        let e = token_error(
            StatusCode::BAD_REQUEST,
            br#"{"error_code":"invalid_request","error_description":"User is not a TastyTrade customer"}"#,
        );
        assert_eq!(e.retry(), Retry::Retryable);
        assert_eq!(e.code(), Some("invalid_request"));
    }

    #[test]
    fn api_errors_map_to_what_the_sync_branches_on() {
        let body =
            br#"{"error":{"code":"validation_error","message":"Request validation failed"}}"#;
        assert!(matches!(
            api_error(StatusCode::BAD_REQUEST, body),
            BrokerError::InvalidRequest { status: 400, .. }
        ));
        assert_eq!(
            api_error(StatusCode::BAD_REQUEST, body).code(),
            Some("validation_error")
        );
        assert!(matches!(
            api_error(StatusCode::TOO_MANY_REQUESTS, b""),
            BrokerError::RateLimited { .. }
        ));
        assert!(matches!(
            api_error(StatusCode::BAD_GATEWAY, b"<html>"),
            BrokerError::Transient { .. }
        ));
        assert!(matches!(
            api_error(StatusCode::FORBIDDEN, b"{}"),
            BrokerError::Permanent { .. }
        ));
        assert!(matches!(
            api_error(StatusCode::NOT_FOUND, b"{}"),
            BrokerError::NotFound { .. }
        ));
        let version =
            br#"{"error":{"code":406,"message":"The requested version is not supported."}}"#;
        assert_eq!(
            api_error(StatusCode::NOT_ACCEPTABLE, version).code(),
            Some("406")
        );
    }

    #[test]
    fn backoff_stays_under_its_bound() {
        let policy = RetryPolicy::default();
        for attempt in 0..40 {
            assert!(policy.delay(attempt) <= policy.max_delay);
        }
    }
}
