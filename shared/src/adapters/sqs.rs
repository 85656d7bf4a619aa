//! The sync queue on SQS FIFO: what the functions send, and the worker's back-off.

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use uuid::Uuid;

use super::failed;
use crate::domain::tasks::TaskMessage;
use crate::ports::{Actions, Redelivery, SyncQueue, TaskError};

const SEND_MESSAGE: &str = "sqs:SendMessage";
const CHANGE_VISIBILITY: &str = "sqs:ChangeMessageVisibility";

/// What consuming the queue takes: Lambda's event source mapping polls with the worker's role,
/// and so does the local poller (`sync_worker::local`). Batch deletes are authorised as
/// `DeleteMessage`.
pub const CONSUMER_ACTIONS: Actions = &[
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
];

/// [`SyncQueue`] and [`Redelivery`] on SQS FIFO.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }
}

impl SyncQueue for SqsQueue {
    const ACTIONS: Actions = &[SEND_MESSAGE];

    async fn enqueue(&self, message: &TaskMessage) -> Result<(), TaskError> {
        let body =
            serde_json::to_string(message).map_err(|e| TaskError::Unavailable(Box::new(e)))?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_group_id(message.account_id.to_string())
            .message_deduplication_id(dedup_id(message))
            .message_body(body)
            .send()
            .await
            .map_err(failed::<_, TaskError>(SEND_MESSAGE))?;
        Ok(())
    }

    async fn enqueue_batch(&self, messages: &[TaskMessage]) -> Result<Vec<Uuid>, TaskError> {
        let mut refused = Vec::new();
        for chunk in messages.chunks(10) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, message) in chunk.iter().enumerate() {
                let entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_group_id(message.account_id.to_string())
                    .message_deduplication_id(dedup_id(message))
                    .message_body(
                        serde_json::to_string(message)
                            .map_err(|e| TaskError::Unavailable(Box::new(e)))?,
                    )
                    .build()
                    .map_err(|e| TaskError::Unavailable(Box::new(e)))?;
                entries.push(entry);
            }
            let output = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(failed::<_, TaskError>(SEND_MESSAGE))?;
            for failure in output.failed() {
                tracing::warn!(
                    code = failure.code(),
                    sender_fault = failure.sender_fault(),
                    "the queue refused a message"
                );
                if let Some(message) = failure.id().parse().ok().and_then(|i: usize| chunk.get(i)) {
                    refused.push(message.task_id);
                }
            }
        }
        Ok(refused)
    }
}

impl Redelivery for SqsQueue {
    const ACTIONS: Actions = &[CHANGE_VISIBILITY];

    async fn delay_redelivery(
        &self,
        receipt_handle: &str,
        delay: std::time::Duration,
    ) -> Result<(), TaskError> {
        self.change_visibility(receipt_handle, delay).await
    }
}

impl SqsQueue {
    async fn change_visibility(
        &self,
        receipt_handle: &str,
        delay: std::time::Duration,
    ) -> Result<(), TaskError> {
        let seconds = i32::try_from(delay.as_secs())
            .unwrap_or(i32::MAX)
            .min(MAX_VISIBILITY_SECONDS);
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(failed::<_, TaskError>(CHANGE_VISIBILITY))?;
        Ok(())
    }
}

/// The task id deduplicates; a continuation repeats its task id with a new cursor, so both go
/// into its id.
fn dedup_id(message: &TaskMessage) -> String {
    match &message.cursor {
        None => message.task_id.to_string(),
        Some(cursor) => format!("{}-{:x}", message.task_id, fxhash(&cursor.to_string())),
    }
}

/// SQS's limit on a visibility timeout: twelve hours.
const MAX_VISIBILITY_SECONDS: i32 = 12 * 3600;

/// A short stable hash for deduplication ids (at most 128 characters on SQS).
fn fxhash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
