//! `sync-scheduler`'s handler: one tick of the schedule.
//!
//! A retryable failure (the database or the queue unavailable) fails the invocation, so that
//! EventBridge delivers the tick again; the redelivery queues nothing twice. Anything else is
//! logged and the tick is given up: the next one comes within minutes.

use lambda_runtime::Error;
use tastysync_shared::Retry;
use tastysync_shared::ports::SyncQueue;
use tastysync_shared::schedule::{
    self, SchedulerAccounts, SchedulerDeps, SchedulerTasks, Tick, TickReport,
};

pub async fn handle<A: SchedulerAccounts, T: SchedulerTasks, Q: SyncQueue>(
    deps: &SchedulerDeps<A, T, Q>,
    event: serde_json::Value,
) -> Result<Option<TickReport>, Error> {
    let tick: Tick = match serde_json::from_value(event) {
        Ok(tick) => tick,
        Err(e) => {
            // A misconfigured schedule: retrying the same event cannot help.
            tracing::error!(error = %e, "not a scheduler event; expected {{\"kind\": \"incremental\"|\"deep\", \"scheduled_time\"}}");
            return Ok(None);
        }
    };
    match schedule::run_tick(deps, &tick, chrono::Utc::now()).await {
        Ok(report) => Ok(Some(report)),
        Err(e) if e.retry() == Retry::Retryable => Err(e.into()),
        Err(e) => {
            tracing::error!(error = %e, "tick abandoned");
            Ok(None)
        }
    }
}
