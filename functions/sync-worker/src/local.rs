//! The worker outside Lambda: it polls the queue itself with the semantics of Lambda's SQS
//! event source mapping (batches of up to 10, a visibility timeout per receive, partial batch
//! failures left on the queue, successes deleted). The local stack and the crash tests run
//! the worker this way, as a process that can be killed.

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use serde_json::{Value, json};
use tastysync_shared::aws::SdkConfig;
use tastysync_shared::config::{ConfigError, Env};
use tastysync_shared::metrics::Collector;
use tastysync_shared::ports::{Broker, EventBus, SyncStore, TokenCipher};
use tastysync_shared::sync::{SyncDeps, WorkerQueue, WorkerTasks};

/// Where to poll and how.
#[derive(Debug, Clone)]
pub struct Poller {
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub queue_arn: String,
    /// What Lambda's mapping would use: the queue's own visibility timeout unless overridden.
    pub visibility: Option<Duration>,
    /// The function timeout each batch gets, as its deadline.
    pub invocation_timeout: Duration,
    /// Messages per receive, 1 to 10 (the template's batch size is 10).
    pub batch_size: i32,
}

/// What one poll did.
#[derive(Debug, Default)]
pub struct Polled {
    pub messages: usize,
    /// The messages left on the queue: reported failed, or all of them when the invocation
    /// timed out.
    pub failed: Vec<String>,
}

/// Why polling stopped: SQS refused a call, or answered with what is not an SQS event.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("SQS refused {call}")]
    Sqs {
        call: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the received messages do not make an SQS event")]
    Event(#[from] serde_json::Error),
}

fn sqs(call: &'static str) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> PollError {
    move |source| PollError::Sqs { call, source }
}

impl Poller {
    /// The poller of a worker outside Lambda: `SYNC_QUEUE_URL`, `SYNC_QUEUE_ARN`;
    /// `SYNC_VISIBILITY_SECONDS` overrides the queue's visibility timeout;
    /// `SYNC_INVOCATION_SECONDS` (default 120) is each batch's deadline, as the function
    /// timeout would be; `SYNC_BATCH_SIZE` (default 10) the messages per receive; and, second,
    /// `SYNC_EXIT_WHEN_IDLE=N`, to stop after N idle seconds.
    pub fn from_env(env: &Env, sdk: &SdkConfig) -> Result<(Self, Option<Duration>), ConfigError> {
        let poller = Poller {
            sqs: aws_sdk_sqs::Client::new(sdk),
            queue_url: env.required("SYNC_QUEUE_URL")?.to_owned(),
            queue_arn: env
                .optional("SYNC_QUEUE_ARN")
                .unwrap_or_default()
                .to_owned(),
            visibility: env
                .optional("SYNC_VISIBILITY_SECONDS")
                .map(|_| env.parsed_or("SYNC_VISIBILITY_SECONDS", 0u64))
                .transpose()?
                .map(Duration::from_secs),
            invocation_timeout: Duration::from_secs(
                env.parsed_or("SYNC_INVOCATION_SECONDS", 120u64)?,
            ),
            batch_size: env.parsed_or("SYNC_BATCH_SIZE", 10i32)?.clamp(1, 10),
        };
        let idle = env
            .optional("SYNC_EXIT_WHEN_IDLE")
            .map(|_| env.parsed_or("SYNC_EXIT_WHEN_IDLE", 0u64))
            .transpose()?
            .map(Duration::from_secs);
        Ok((poller, idle))
    }

    /// Receives one batch and hands it to the handler; `None` when the queue had nothing.
    pub async fn poll_once<
        S: SyncStore,
        C: TokenCipher,
        T: WorkerTasks,
        Q: WorkerQueue,
        B: Broker,
        P: EventBus,
    >(
        &self,
        deps: &SyncDeps<S, C, T, Q, B, P>,
    ) -> Result<Option<Polled>, PollError> {
        let mut receive = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.batch_size)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All);
        if let Some(visibility) = self.visibility {
            receive =
                receive.visibility_timeout(i32::try_from(visibility.as_secs()).unwrap_or(i32::MAX));
        }
        let messages = receive
            .send()
            .await
            .map_err(|e| sqs("ReceiveMessage")(e.into()))?
            .messages
            .unwrap_or_default();
        if messages.is_empty() {
            return Ok(None);
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                let attributes: serde_json::Map<String, Value> = m
                    .attributes
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k.as_str().to_owned(), Value::String(v)))
                    .collect();
                json!({
                    "messageId": m.message_id,
                    "receiptHandle": m.receipt_handle,
                    "body": m.body,
                    "attributes": attributes,
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue_arn,
                })
            })
            .collect();
        let event: SqsEvent = serde_json::from_value(json!({ "Records": records }))?;
        // As Lambda does, the invocation is stopped at its timeout, whatever it is doing; its
        // messages are not deleted and come back when their visibility timeout ends.
        let deadline = Instant::now() + self.invocation_timeout;
        let handled =
            tokio::time::timeout_at(deadline.into(), crate::handle(deps, event, Some(deadline)))
                .await;
        let failed: Vec<String> = match handled {
            Ok(response) => (response.batch_item_failures.iter())
                .map(|f| f.item_identifier.clone())
                .collect(),
            Err(_) => {
                tracing::error!(
                    timeout_seconds = self.invocation_timeout.as_secs(),
                    "the invocation timed out; its messages come back after their visibility timeout"
                );
                (messages.iter())
                    .map(|m| m.message_id.clone().unwrap_or_default())
                    .collect()
            }
        };
        for message in &messages {
            let id = message.message_id.clone().unwrap_or_default();
            if let (false, Some(receipt)) = (failed.contains(&id), &message.receipt_handle) {
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .map_err(|e| sqs("DeleteMessage")(e.into()))?;
            }
        }
        Ok(Some(Polled {
            messages: messages.len(),
            failed,
        }))
    }

    /// Polls until the queue has been empty for `exit_when_idle` (`None`: forever).
    pub async fn run<
        S: SyncStore,
        C: TokenCipher,
        T: WorkerTasks,
        Q: WorkerQueue,
        B: Broker,
        P: EventBus,
    >(
        &self,
        deps: &SyncDeps<S, C, T, Q, B, P>,
        exit_when_idle: Option<Duration>,
        metrics: Option<&Collector>,
    ) -> Result<(), PollError> {
        let mut last_message = Instant::now();
        loop {
            match self.poll_once(deps).await? {
                Some(polled) => {
                    // After each batch, as the Lambda runtime layer flushes after each
                    // invocation.
                    if let Some(metrics) = metrics
                        && let Err(e) = metrics.flush(std::io::stdout().lock())
                    {
                        tracing::warn!(error = %e, "metrics not written");
                    }
                    last_message = Instant::now();
                    tracing::info!(
                        messages = polled.messages,
                        failed = polled.failed.len(),
                        "batch handled"
                    );
                }
                None => {
                    if exit_when_idle.is_some_and(|idle| last_message.elapsed() >= idle) {
                        return Ok(());
                    }
                    // The emulator may answer an empty long poll at once; do not spin.
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }
}
