//! `sync-worker`'s handler: one span and one sync per message, failures reported per item.
//!
//! A FIFO batch can hold several messages of one account (one message group), in order. When
//! one fails, it and every later message of its group are reported as failed, so the group is
//! redelivered in order (as Powertools' FIFO batch processor does).

use std::collections::HashSet;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use tastysync_shared::secrets::TokenCipher;
use tastysync_shared::sync::{self, Outcome, SyncDeps};
use tastysync_shared::tasks::{TaskMessage, TaskStore};

pub async fn handle<C: TokenCipher, T: TaskStore>(
    deps: &SyncDeps<C, T>,
    event: SqsEvent,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut failed_groups = HashSet::new();
    for record in event.records {
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
        let _entered = span.enter();
        let failed =
            match serde_json::from_str::<TaskMessage>(record.body.as_deref().unwrap_or_default()) {
                // Unreadable: report it, so that after maxReceiveCount deliveries it lands in the
                // DLQ for a person to look at, instead of vanishing.
                Err(e) => {
                    tracing::error!(error = %e, "unreadable sync message");
                    true
                }
                Ok(message) => match sync::run(deps, &message).await {
                    Ok(
                        Outcome::Completed(_)
                        | Outcome::NeedsReauth
                        | Outcome::Failed(_)
                        | Outcome::Skipped,
                    ) => false,
                    Err(retry) => {
                        tracing::warn!(reason = %retry, "message returned to the queue");
                        true
                    }
                },
            };
        if failed {
            response.add_failure(id);
            failed_groups.insert(group);
        }
    }
    response
}
