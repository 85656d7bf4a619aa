//! The event bus on EventBridge: `PutEvents` in batches of ten, the entries it refuses retried.

use std::time::Duration;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use crate::domain::events::{Event, SOURCE};
use crate::ports::{Actions, EventBus};

const PUT_EVENTS: &str = "events:PutEvents";
/// Tries per entry: a throttled or failed entry is sent again after a short wait.
const ATTEMPTS: u32 = 4;

/// [`EventBus`] on an EventBridge bus.
#[derive(Debug, Clone)]
pub struct EventBridgeBus {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBridgeBus {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
        }
    }

    fn entry(&self, event: &Event) -> Option<PutEventsRequestEntry> {
        let detail = serde_json::to_string(event).ok()?;
        Some(
            PutEventsRequestEntry::builder()
                .event_bus_name(&self.bus)
                .source(SOURCE)
                .detail_type(event.name())
                .detail(detail)
                .build(),
        )
    }

    /// Sends `entries`; returns those still refused after every attempt.
    async fn put(&self, mut entries: Vec<PutEventsRequestEntry>) -> Vec<PutEventsRequestEntry> {
        for attempt in 1..=ATTEMPTS {
            if entries.is_empty() {
                break;
            }
            let sent = self
                .client
                .put_events()
                .set_entries(Some(entries.clone()))
                .send()
                .await;
            entries = match sent {
                // The answer lists one result per entry, in order: those with an error code
                // were not accepted.
                Ok(output) => entries
                    .into_iter()
                    .zip(output.entries.unwrap_or_default())
                    .filter(|(_, result)| result.error_code.is_some())
                    .map(|(entry, _)| entry)
                    .collect(),
                Err(e) => {
                    tracing::warn!(attempt, error = %aws_sdk_eventbridge::error::DisplayErrorContext(&e), "events not published");
                    entries
                }
            };
            if !entries.is_empty() && attempt < ATTEMPTS {
                tokio::time::sleep(Duration::from_millis(100 * 2u64.pow(attempt))).await;
            }
        }
        entries
    }
}

impl EventBus for EventBridgeBus {
    const ACTIONS: Actions = &[PUT_EVENTS];

    async fn publish(&self, events: &[Event]) {
        for chunk in events.chunks(10) {
            let entries = chunk.iter().filter_map(|e| self.entry(e)).collect();
            let lost = self.put(entries).await;
            if !lost.is_empty() {
                tracing::error!(events = lost.len(), "events not published after retries");
                crate::metrics::events_undelivered(lost.len());
            }
        }
    }
}
