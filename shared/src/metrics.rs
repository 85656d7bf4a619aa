//! Metrics as CloudWatch Embedded Metric Format lines on stdout, which CloudWatch Logs turns
//! into metrics without an API call: the `metrics` facade, recorded by
//! `metrics_cloudwatch_embedded`.
//!
//! Every metric's name and labels are written here once, so the dashboard and alarms in
//! `template.yaml` can rely on them. Each document carries the dimension `function`; labels add
//! dimensions (`entity`, `category`, `kind`, `outcome`). Without an installed recorder (unit
//! tests, the local gateway) recording does nothing.

use std::time::Duration;

use metrics::Unit;

use crate::config::Env;
use crate::domain::tasks::Counts;

pub use metrics_cloudwatch_embedded::Collector;
/// `lambda_runtime::run` with the recorder flushed after every invocation.
pub use metrics_cloudwatch_embedded::lambda::handler::run as run_lambda;

/// One sync message's wall time, by `kind` and `outcome`.
pub const SYNC_DURATION: &str = "SyncDuration";
/// Rows a sync inserted or changed, by `entity` (the table).
pub const ROWS_WRITTEN: &str = "RowsWritten";
/// Rows a sync read but set aside in quarantine, by `entity`: the broker sent something the
/// code or the schema cannot hold, and someone should look.
pub const ROWS_REJECTED: &str = "RowsRejected";
/// Requests sent to tastytrade, retries included.
pub const BROKER_CALLS: &str = "BrokerCalls";
/// Requests the client repeated after a transient failure.
pub const BROKER_RETRIES: &str = "BrokerRetries";
/// 429 answers from tastytrade.
pub const BROKER_THROTTLED: &str = "BrokerThrottled";
/// Syncs that did not complete, by `category` (what failed; see [`sync_failed`]).
pub const SYNC_FAILURES: &str = "SyncFailures";
/// Best-effort stages a completed sync went without, by `stage`.
pub const SYNC_WARNINGS: &str = "SyncWarnings";
/// Accounts whose grant stopped working and now wait for the user to link again.
pub const REAUTH_REQUIRED: &str = "ReauthRequired";
/// Time from a message's send to its handling.
pub const QUEUE_LAG: &str = "QueueLag";
/// Messages the scheduler queued, by `kind`.
pub const SYNCS_QUEUED: &str = "SyncsQueued";
/// Time from the broker's stamp on a streamer notification to its row committed, by `kind`.
pub const NOTIFICATION_LAG: &str = "NotificationLag";
/// Grants of a streamer invocation that never connected (`shard`): the disconnected alarm.
pub const GRANTS_UNCONNECTED: &str = "StreamerGrantsUnconnected";
/// Events the bus still refused after every retry.
pub const EVENTS_UNDELIVERED: &str = "EventsUndelivered";

#[derive(Debug, thiserror::Error)]
#[error("could not install the metrics recorder: {0}")]
pub struct MetricsError(String);

/// Installs the process's recorder: namespace `METRICS_NAMESPACE` (default `tastysync`),
/// dimension `function`. The Lambda runtime layer (or the local poller) flushes it after
/// every invocation.
pub fn init(function: &'static str, env: &Env) -> Result<&'static Collector, MetricsError> {
    let namespace = env.optional("METRICS_NAMESPACE").unwrap_or("tastysync");
    let collector = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(namespace.to_owned())
        .with_dimension("function", function)
        .with_lambda_request_id("RequestId")
        .init()
        .map_err(|e| MetricsError(e.to_string()))?;
    metrics::describe_histogram!(SYNC_DURATION, Unit::Milliseconds, "sync wall time");
    metrics::describe_counter!(ROWS_WRITTEN, Unit::Count, "rows written");
    metrics::describe_counter!(ROWS_REJECTED, Unit::Count, "rows quarantined");
    metrics::describe_counter!(BROKER_CALLS, Unit::Count, "tastytrade requests");
    metrics::describe_counter!(BROKER_RETRIES, Unit::Count, "tastytrade retries");
    metrics::describe_counter!(BROKER_THROTTLED, Unit::Count, "tastytrade 429s");
    metrics::describe_counter!(SYNC_FAILURES, Unit::Count, "syncs not completed");
    metrics::describe_counter!(REAUTH_REQUIRED, Unit::Count, "grants lost");
    metrics::describe_counter!(SYNC_WARNINGS, Unit::Count, "best-effort stages skipped");
    metrics::describe_histogram!(QUEUE_LAG, Unit::Milliseconds, "queue wait");
    metrics::describe_counter!(SYNCS_QUEUED, Unit::Count, "syncs queued by the schedule");
    metrics::describe_histogram!(NOTIFICATION_LAG, Unit::Milliseconds, "notification to row");
    metrics::describe_gauge!(GRANTS_UNCONNECTED, Unit::Count, "grants never connected");
    metrics::describe_counter!(EVENTS_UNDELIVERED, Unit::Count, "events not published");
    Ok(collector)
}

/// A sync message was handled: its duration, and the rows it wrote and set aside when it
/// completed.
pub fn sync_finished(
    kind: &'static str,
    outcome: &'static str,
    elapsed: Duration,
    counts: Option<&Counts>,
) {
    metrics::histogram!(SYNC_DURATION, "kind" => kind, "outcome" => outcome)
        .record(elapsed.as_secs_f64() * 1000.0);
    for (entity, written) in counts.map(|c| &c.written).into_iter().flatten() {
        metrics::counter!(ROWS_WRITTEN, "entity" => entity.clone()).increment(*written);
    }
    for (entity, rejected) in counts.map(|c| &c.rejected).into_iter().flatten() {
        metrics::counter!(ROWS_REJECTED, "entity" => entity.clone()).increment(*rejected);
    }
}

/// A sync did not complete. `category` says what failed: `broker`, `database`, `encryption`,
/// `task_store`, `gone` (the account went away), `grant_revoked`, `oauth_client` (tastytrade
/// refused the deployment's OAuth client: a configuration fault, alarmed) or
/// `unreadable_message`.
pub fn sync_failed(category: &'static str) {
    metrics::counter!(SYNC_FAILURES, "category" => category).increment(1);
}

pub fn sync_warning(stage: &'static str) {
    metrics::counter!(SYNC_WARNINGS, "stage" => stage).increment(1);
}

pub fn reauth_required() {
    metrics::counter!(REAUTH_REQUIRED).increment(1);
}

pub fn queue_lag(lag: Duration) {
    metrics::histogram!(QUEUE_LAG).record(lag.as_secs_f64() * 1000.0);
}

pub fn broker_call() {
    metrics::counter!(BROKER_CALLS).increment(1);
}

pub fn broker_retry() {
    metrics::counter!(BROKER_RETRIES).increment(1);
}

pub fn broker_throttled() {
    metrics::counter!(BROKER_THROTTLED).increment(1);
}

pub fn syncs_queued(kind: &'static str, queued: usize) {
    metrics::counter!(SYNCS_QUEUED, "kind" => kind).increment(queued as u64);
}

pub fn notification_stored(kind: &'static str, lag: Duration) {
    metrics::histogram!(NOTIFICATION_LAG, "kind" => kind).record(lag.as_secs_f64() * 1000.0);
}

pub fn grants_unconnected(shard: u32, grants: u64) {
    metrics::gauge!(GRANTS_UNCONNECTED, "shard" => shard.to_string()).set(grants as f64);
}

pub fn events_undelivered(events: usize) {
    metrics::counter!(EVENTS_UNDELIVERED).increment(events as u64);
}
