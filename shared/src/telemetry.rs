//! Logging set-up and the field convention.
//!
//! Spans and events name the subject with these fields, and only these: `task_id`,
//! `account_id` (our database id, never the brokerage account number), `user_id` (the JWT
//! subject). Secrets never go into a field: they travel as `secrecy` types whose `Debug` prints
//! `[REDACTED]`, so even a careless `?value` cannot leak one.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: JSON lines in Lambda (CloudWatch Logs Insights parses them),
/// compact human-readable lines elsewhere. `RUST_LOG` overrides the default `info` level.
///
/// Calling it twice is harmless, so tests and binaries can both call it.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _already_set = if in_lambda() {
        // CloudWatch stamps every line itself and shows no colours.
        builder
            .json()
            .with_current_span(true)
            .with_ansi(false)
            .without_time()
            .try_init()
    } else {
        builder.compact().try_init()
    };
}

/// True inside the Lambda runtime (the variable is set by the service on every function).
pub fn in_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}
