//! The library every tastysync function uses: the domain and the adapters behind it.
//!
//! # Layout
//!
//! From the inside out: `domain` ← `ports` ← `adapters`, use cases over the ports, and one
//! composition root.
//!
//! - [`domain`]: what the product is about, free of storage: sync tasks (kinds, statuses,
//!   messages, counts) and linked accounts (their sync status, what a sync needs of them).
//! - [`ports`]: one small trait per capability the use cases need (task reads and writes,
//!   leases, cooldowns, the queue, the token cipher, the accounts, the sync's store), each
//!   declaring the IAM actions of its adapter; [`adapters`]: those ports on DynamoDB, SQS and
//!   Postgres (KMS in [`secrets`], the SQL in [`db`]).
//! - Use cases: [`routes`] (link, unlink, list, trigger, status), [`sync`] (the sync of one
//!   account, run by the worker), [`schedule`] (the scheduler's ticks), [`realtime`] (the
//!   account streamer: notifications stored as they come, gaps healed by realtime syncs).
//! - [`iam`]: a function's AWS actions, derived from the ports its dependencies hold;
//!   [`wiring`]: the composition root, every `from_env` and each function's actions.
//! - `fakes` (tests and the `test-util` feature): every port in memory, for the fast tier of
//!   unit tests (`cargo test --lib`).
//! - [`api`]: the HTTP API's types, its route table and its OpenAPI document; [`http`]:
//!   identity, bodies, dispatch and error responses.
//! - [`config`]: typed configuration, read once per cold start from the environment; secrets
//!   arrive wrapped so they cannot be printed. [`telemetry`]: `tracing` set-up (JSON in
//!   Lambda). [`metrics`]: CloudWatch EMF metrics, every name and label in one place.
//! - [`aws`]: the one AWS `SdkConfig` of a cold start; it honours `AWS_ENDPOINT_URL`, and
//!   locally signs as the function's own identity.
//! - [`db`]: the Postgres pool (TLS when the URL asks for it), its error type, the SQL and the
//!   embedded migrations.
//! - [`secrets`]: envelope encryption of tokens (KMS + AES-GCM) and the deployment's secrets;
//!   [`oauth_state`]: the signed `state` of the authorization-code flow.
//! - [`tastytrade`]: the broker client (OAuth, endpoints, pagination, retries) and its models.
//!
//! Functions wire these in `main.rs` once and hand them to their handler by reference.

pub mod adapters;
pub mod api;
pub mod aws;
pub mod config;
pub mod db;
pub mod domain;
#[cfg(any(test, feature = "test-util"))]
pub mod fakes;
pub mod http;
pub mod iam;
pub mod metrics;
pub mod oauth_state;
pub mod ports;
pub mod realtime;
pub mod routes;
pub mod schedule;
pub mod secrets;
pub mod sync;
pub mod tastytrade;
pub mod telemetry;
pub mod tls;
pub mod wiring;

/// Why a function could not start: it names the variable, secret or client at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error(transparent)]
    Broker(#[from] tastytrade::BrokerError),
    #[error(transparent)]
    Secrets(#[from] secrets::DeploymentSecretsError),
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
}

/// How a caller should treat a failure: try again later, or give up and report it.
///
/// Every boundary error of this crate answers [`Retry`] so that the SQS worker, the HTTP
/// handlers and the scheduler branch on one question instead of on each adapter's variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The same call may succeed later: the network, a restart, a throttle.
    Retryable,
    /// The same call will fail the same way: bad input, a constraint, a missing object.
    NonRetryable,
}
