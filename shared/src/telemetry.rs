//! Logging set-up and the field convention.
//!
//! Spans and events name the subject with these fields, and only these: `task_id`,
//! `account_id` (our database id, never the brokerage account number), `user_id` (the JWT
//! subject). Secrets never go into a field: they travel as `secrecy` types whose `Debug` prints
//! `[REDACTED]`, so even a careless `?value` cannot leak one.

use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// Installs the global subscriber: JSON lines in Lambda (CloudWatch Logs Insights parses them),
/// compact human-readable lines elsewhere. `RUST_LOG` (levels and `target=level` directives)
/// overrides the default `info` level.
///
/// The filter is `Targets`, not `EnvFilter`: we filter by target and level only, and
/// `EnvFilter`'s span and field matching links a regex engine into every function.
///
/// Calling it twice is harmless, so tests and binaries can both call it.
pub fn init() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(Level::INFO));
    let lines = tracing_subscriber::fmt::layer();
    let _already_set = if in_lambda() {
        // CloudWatch stamps every line itself and shows no colours.
        let lines = lines
            .json()
            .with_current_span(true)
            .with_ansi(false)
            .without_time();
        tracing_subscriber::registry()
            .with(lines.with_filter(filter))
            .try_init()
    } else {
        tracing_subscriber::registry()
            .with(lines.compact().with_filter(filter))
            .try_init()
    };
}

/// True inside the Lambda runtime (the variable is set by the service on every function).
pub fn in_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}
