//! The library every tastysync function uses: the domain and the adapters behind it.
//!
//! # Layout
//!
//! - [`config`]: typed configuration, read once per cold start from the environment; secrets
//!   arrive wrapped so they cannot be printed.
//! - [`telemetry`]: `tracing` set-up (JSON in Lambda, readable locally) and the span fields every
//!   function uses (`task_id`, `account_id`, `user_id`).
//! - [`aws`]: the one AWS `SdkConfig` of a cold start; it honours `AWS_ENDPOINT_URL`, so the same
//!   code talks to the local emulator.
//! - [`db`]: the Postgres pool (TLS when the URL asks for it), its error type, and the embedded
//!   migrations.
//! - [`tastytrade`]: the broker client (OAuth, endpoints, pagination, retries) and its models.
//!
//! Functions wire these in `main.rs` once and hand them to their handler by reference.

pub mod aws;
pub mod config;
pub mod db;
pub mod tastytrade;
pub mod telemetry;

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
