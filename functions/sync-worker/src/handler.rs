//! `sync-worker`'s handler: one span and one sync per message, failures reported per item.
//!
//! A FIFO batch can hold several messages of one account (one message group), in order. When
//! one fails, it and every later message of its group are reported as failed, so the group is
//! redelivered in order (as Powertools' FIFO batch processor does).

pub mod local;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tracing::Instrument;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use tastysync_shared::domain::tasks::TaskMessage;
use tastysync_shared::metrics;
use tastysync_shared::ports::{Broker, EventBus, SyncStore, TokenCipher};
use tastysync_shared::sync::{self, Outcome, SyncDeps, WorkerQueue, WorkerTasks};

/// First back-off between task-level retries; it doubles with every delivery, up to the cap.
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(30);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(900);

/// The delay before the next delivery of a message received `receive_count` times.
pub fn retry_delay(receive_count: u32) -> Duration {
    FIRST_RETRY_DELAY
        .saturating_mul(1 << receive_count.saturating_sub(1).min(10))
        .min(MAX_RETRY_DELAY)
}

/// Handles one batch; `deadline` is the invocation's. Each message gets an even share of the
/// time still left when it starts, so the first of ten cannot spend the others' time: what a
/// quick message leaves goes to the ones after it.
pub async fn handle<
    S: SyncStore,
    C: TokenCipher,
    T: WorkerTasks,
    Q: WorkerQueue,
    B: Broker,
    P: EventBus,
>(
    deps: &SyncDeps<S, C, T, Q, B, P>,
    event: SqsEvent,
    deadline: Option<Instant>,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut failed_groups = HashSet::new();
    let count = event.records.len();
    for (index, record) in event.records.into_iter().enumerate() {
        let id = record.message_id.clone().unwrap_or_default();
        let group = record
            .attributes
            .get("MessageGroupId")
            .cloned()
            .unwrap_or_default();
        if failed_groups.contains(&group) {
            response.add_failure(id);
            continue;
        }
        let span = tracing::info_span!("message", message_id = %id);
        let budget = deadline.map(|d| message_deadline(d, count - index));
        if handle_record(deps, &record, budget).instrument(span).await {
            response.add_failure(id);
            failed_groups.insert(group);
        }
    }
    response
}

/// A message's deadline: its share of the time left, with `left` messages (itself included)
/// still to run.
fn message_deadline(deadline: Instant, left: usize) -> Instant {
    let now = Instant::now();
    let share = deadline.saturating_duration_since(now) / u32::try_from(left.max(1)).unwrap_or(1);
    now + share
}

/// Handles one message; true when it failed and must come back.
async fn handle_record<
    S: SyncStore,
    C: TokenCipher,
    T: WorkerTasks,
    Q: WorkerQueue,
    B: Broker,
    P: EventBus,
>(
    deps: &SyncDeps<S, C, T, Q, B, P>,
    record: &SqsMessage,
    deadline: Option<Instant>,
) -> bool {
    if let Some(lag) = queue_lag(record) {
        metrics::queue_lag(lag);
    }
    let body = record.body.as_deref().unwrap_or_default();
    let message = match serde_json::from_str::<TaskMessage>(body) {
        Ok(message) => message,
        // Unreadable: report it, so that after maxReceiveCount deliveries it lands in the DLQ
        // for a person to look at, instead of vanishing.
        Err(e) => {
            tracing::error!(error = %e, "unreadable sync message");
            metrics::sync_failed("unreadable_message");
            return true;
        }
    };
    let started = Instant::now();
    let result = sync::run(deps, &message, deadline).await;
    let (outcome, counts) = match &result {
        Ok(Outcome::Completed(counts)) => ("completed", Some(counts)),
        Ok(Outcome::Continued(_)) => ("continued", None),
        Ok(Outcome::NeedsReauth) => ("needs_reauth", None),
        Ok(Outcome::Failed { .. }) => ("failed", None),
        Ok(Outcome::Skipped) => ("skipped", None),
        Err(_) => ("retrying", None),
    };
    metrics::sync_finished(message.kind.as_str(), outcome, started.elapsed(), counts);
    match result {
        Ok(_) => false,
        Err(retry) => {
            let receives: u32 = record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let delay = retry_delay(receives);
            tracing::warn!(reason = %retry, delay_seconds = delay.as_secs(), "message returned to the queue");
            if let Some(receipt) = &record.receipt_handle
                && let Err(e) = deps.queue.delay_redelivery(receipt, delay).await
            {
                tracing::warn!(error = %e, "back-off not set; the queue's visibility timeout applies");
            }
            true
        }
    }
}

/// How long the message waited: from its send (`SentTimestamp`, epoch milliseconds) to now.
fn queue_lag(record: &SqsMessage) -> Option<Duration> {
    let sent: i64 = record.attributes.get("SentTimestamp")?.parse().ok()?;
    let waited = chrono::Utc::now().timestamp_millis().checked_sub(sent)?;
    Some(Duration::from_millis(u64::try_from(waited).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_message_gets_its_share_of_the_time_left() {
        let deadline = Instant::now() + Duration::from_secs(100);

        let first = message_deadline(deadline, 10);
        let last = message_deadline(deadline, 1);

        let share = first.saturating_duration_since(Instant::now());
        assert!(share <= Duration::from_secs(10), "{share:?}");
        assert!(share > Duration::from_secs(9), "{share:?}");
        assert_eq!(last, deadline, "the last one gets all that is left");
    }

    #[test]
    fn retries_back_off_exponentially_up_to_fifteen_minutes() {
        assert_eq!(retry_delay(1), Duration::from_secs(30));
        assert_eq!(retry_delay(2), Duration::from_secs(60));
        assert_eq!(retry_delay(4), Duration::from_secs(240));
        assert_eq!(retry_delay(9), Duration::from_secs(900));
        assert_eq!(retry_delay(0), Duration::from_secs(30));
    }
}
