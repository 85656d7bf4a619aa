//! `account-streamer`'s handler: one invocation serves one shard of grants until its time is
//! up or a successor takes over (see [`tastysync_shared::realtime`]).
//!
//! Nothing is retried by failing the invocation: the schedule invokes every shard each minute,
//! so the next invocation is the retry.

use std::time::{Duration, Instant};

use lambda_runtime::Error;
use tastysync_shared::config::Env;
use tastysync_shared::realtime::{Served, ShardEvent, ShardReport};
use tastysync_shared::wiring::AccountStreamer;

pub async fn handle(
    deps: &AccountStreamer,
    event: serde_json::Value,
    deadline: Instant,
) -> Result<serde_json::Value, Error> {
    let event: ShardEvent = match serde_json::from_value(event) {
        Ok(event) => event,
        Err(e) => {
            // A misconfigured schedule: the same event cannot do better next time.
            tracing::error!(error = %e, "not a streamer event; expected {{\"shard\": n}}");
            return Ok(serde_json::json!({"served": false}));
        }
    };
    let report = deps.run_shard(event.shard, deadline).await?;
    Ok(summary(&report))
}

fn summary(report: &ShardReport) -> serde_json::Value {
    serde_json::json!({
        "shard": report.shard,
        "served": format!("{:?}", report.served),
        "grants": report.grants,
        "connects": report.connects,
        "notifications": report.notifications,
        "rows_written": report.rows_written,
        "syncs_queued": report.syncs_queued,
    })
}

/// Outside Lambda (the local stack, the tests, the benchmarks), the process is its own
/// schedule: it serves `STREAMER_SHARD` in invocations of `STREAMER_INVOCATION_SECONDS`
/// (default 900, Lambda's limit) and, while another process holds the shard, looks again
/// every `STREAMER_TICK_SECONDS` (default 60, the schedule's rate).
pub async fn run_locally(deps: &AccountStreamer, env: &Env) -> Result<(), Error> {
    let shard: u32 = env.parsed_or("STREAMER_SHARD", 0)?;
    let invocation = Duration::from_secs(env.parsed_or("STREAMER_INVOCATION_SECONDS", 900u64)?);
    let tick = Duration::from_secs(env.parsed_or("STREAMER_TICK_SECONDS", 60u64)?);
    loop {
        let started = Instant::now();
        match deps.run_shard(shard, started + invocation).await {
            Ok(report) if report.served != Served::HeldElsewhere => {
                tracing::info!(report = %summary(&report), "invocation done");
            }
            Ok(_) => tokio::time::sleep(tick).await,
            Err(e) => {
                tracing::warn!(error = %e, "invocation failed");
                tokio::time::sleep(tick).await;
            }
        }
    }
}
