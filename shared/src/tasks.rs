//! Sync tasks: their state in DynamoDB ([`TaskStore`]) and their messages on the SQS FIFO
//! queue ([`SyncQueue`]).
//!
//! Item layout (one table, see DESIGN.md §3): `pk = TASK#<id>`, with `account_pk =
//! ACCOUNT#<id>` and `created_at` for the account's recent-tasks index, and `expires_at` (epoch
//! seconds) for TTL clean-up.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Retry;
use crate::aws::SdkConfig;
use crate::config::{ConfigError, Env};

/// Task items outlive their task by this long, for the status API and for ops.
const TASK_RETENTION_DAYS: i64 = 30;

/// A sparse index over task items only (leases and cooldowns lack its key), for an account's
/// recent tasks, newest first.
pub const ACCOUNT_TASKS_INDEX: &str = "account-tasks";
pub const ACCOUNT_TASKS_PK: &str = "account_pk";
pub const ACCOUNT_TASKS_SK: &str = "created_at";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Full,
    Incremental,
    Deep,
    Manual,
    Realtime,
}

impl TaskKind {
    const ALL: [TaskKind; 5] = [
        TaskKind::Full,
        TaskKind::Incremental,
        TaskKind::Deep,
        TaskKind::Manual,
        TaskKind::Realtime,
    ];

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Full => "full",
            TaskKind::Incremental => "incremental",
            TaskKind::Deep => "deep",
            TaskKind::Manual => "manual",
            TaskKind::Realtime => "realtime",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    InProgress,
    Completed,
    Failed,
    Retrying,
    NeedsReauth,
}

impl TaskStatus {
    const ALL: [TaskStatus; 6] = [
        TaskStatus::Pending,
        TaskStatus::InProgress,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Retrying,
        TaskStatus::NeedsReauth,
    ];

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Still on its way: queued, running, or waiting for its next delivery.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            TaskStatus::Pending | TaskStatus::InProgress | TaskStatus::Retrying
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::InProgress => "in_progress",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Retrying => "retrying",
            TaskStatus::NeedsReauth => "needs_reauth",
        }
    }
}

/// A task as created: who asked, for which account, what kind.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub task_id: Uuid,
    pub user_id: String,
    pub account_id: Uuid,
    pub kind: TaskKind,
    pub created_at: DateTime<Utc>,
}

impl NewTask {
    pub fn new(user_id: &str, account_id: Uuid, kind: TaskKind) -> Self {
        Self {
            task_id: Uuid::new_v4(),
            user_id: user_id.to_owned(),
            account_id,
            kind,
            created_at: Utc::now(),
        }
    }

    /// The task as [`TaskStore::create`] stores it, without reading it back.
    pub fn pending_record(&self) -> TaskRecord {
        TaskRecord {
            task_id: self.task_id,
            user_id: self.user_id.clone(),
            account_id: self.account_id,
            kind: self.kind,
            status: TaskStatus::Pending,
            stage: None,
            progress_percentage: 0,
            counts: Counts::default(),
            error_message: None,
            attempts: 0,
            created_at: self.created_at,
            last_updated: self.created_at,
            resume_cursor: None,
        }
    }

    pub fn message(&self) -> TaskMessage {
        TaskMessage {
            task_id: self.task_id,
            account_id: self.account_id,
            kind: self.kind,
            cursor: None,
        }
    }
}

/// A task as stored, for the status API.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub task_id: Uuid,
    pub user_id: String,
    pub account_id: Uuid,
    pub kind: TaskKind,
    pub status: TaskStatus,
    pub stage: Option<String>,
    pub progress_percentage: u8,
    pub counts: Counts,
    pub error_message: Option<String>,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
    /// Where the task's latest continuation resumes (`None` before the first): a message
    /// carrying any other cursor is a stale copy, redelivered after its worker died.
    pub resume_cursor: Option<serde_json::Value>,
}

/// What asking for a manual sync found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManualClaim {
    /// The task was created and the account's cooldown started.
    Created,
    /// The account's cooldown runs until `until`; `task_id` is the task that started it.
    CoolingDown {
        task_id: Option<Uuid>,
        until: DateTime<Utc>,
    },
}

/// The body of a sync message. No user data beyond ids, and never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskMessage {
    pub task_id: Uuid,
    pub account_id: Uuid,
    pub kind: TaskKind,
    /// Where a continuation resumes; `None` for a fresh task.
    pub cursor: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("task store or queue unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("task {0} already exists")]
    Exists(Uuid),
    #[error("the cooldown of account {0} is too contended to claim")]
    Contended(Uuid),
}

impl TaskError {
    pub fn retry(&self) -> Retry {
        match self {
            TaskError::Unavailable(_) | TaskError::Contended(_) => Retry::Retryable,
            TaskError::Exists(_) => Retry::NonRetryable,
        }
    }
}

fn unavailable<E: std::error::Error + Send + Sync + 'static>(e: E) -> TaskError {
    TaskError::Unavailable(Box::new(e))
}

/// Counts of rows read from the broker and rows written (inserted or changed), per entity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Counts {
    pub read: std::collections::BTreeMap<String, u64>,
    pub written: std::collections::BTreeMap<String, u64>,
}

impl Counts {
    pub fn add(&mut self, entity: &str, read: usize, written: u64) {
        *self.read.entry(entity.to_owned()).or_default() += read as u64;
        *self.written.entry(entity.to_owned()).or_default() += written;
    }

    pub fn total_written(&self) -> u64 {
        self.written.values().sum()
    }
}

/// A change to a task's state.
#[derive(Debug, Clone)]
pub struct TaskUpdate<'a> {
    pub status: TaskStatus,
    pub stage: &'a str,
    pub progress_percentage: u8,
    pub counts: &'a Counts,
    pub error_message: Option<&'a str>,
    /// Where a continuation resumes; recorded so ops can see how far a long sync got.
    pub cursor: Option<&'a serde_json::Value>,
}

impl<'a> TaskUpdate<'a> {
    /// The task's last update: it ended with `status`.
    pub fn finished(
        status: TaskStatus,
        counts: &'a Counts,
        error_message: Option<&'a str>,
    ) -> Self {
        Self {
            status,
            stage: "done",
            progress_percentage: 100,
            counts,
            error_message,
            cursor: None,
        }
    }
}

/// Live task state.
pub trait TaskStore: Send + Sync {
    /// Writes a pending task; fails with [`TaskError::Exists`] if the id is taken.
    fn create(&self, task: &NewTask) -> impl Future<Output = Result<(), TaskError>> + Send;

    /// Records progress or an outcome; counts a delivery attempt when the status is in progress
    /// and the stage is the first.
    fn update(
        &self,
        task_id: Uuid,
        update: TaskUpdate<'_>,
    ) -> impl Future<Output = Result<(), TaskError>> + Send;

    /// Takes the account's lease for `holder` until `ttl` from now. False when another holder's
    /// lease is still live: a duplicated delivery must not run beside the first.
    fn acquire_lease(
        &self,
        account_id: Uuid,
        holder: Uuid,
        ttl: chrono::TimeDelta,
    ) -> impl Future<Output = Result<bool, TaskError>> + Send;

    /// Gives the lease back, if `holder` still has it.
    fn release_lease(
        &self,
        account_id: Uuid,
        holder: Uuid,
    ) -> impl Future<Output = Result<(), TaskError>> + Send;

    /// The task, read consistently; `None` when there is no such task.
    fn get(
        &self,
        task_id: Uuid,
    ) -> impl Future<Output = Result<Option<TaskRecord>, TaskError>> + Send;

    /// The account's most recent tasks, newest first.
    fn recent(
        &self,
        account_id: Uuid,
        limit: i32,
    ) -> impl Future<Output = Result<Vec<TaskRecord>, TaskError>> + Send;

    /// Creates a manual task and starts the account's cooldown in one atomic write: of many
    /// concurrent callers exactly one gets [`ManualClaim::Created`]; the others learn whose
    /// cooldown holds them back, and until when.
    fn create_manual(
        &self,
        task: &NewTask,
        cooldown: chrono::TimeDelta,
    ) -> impl Future<Output = Result<ManualClaim, TaskError>> + Send;

    /// Ends the cooldown `task_id` started (when its message could not be queued after all).
    fn release_cooldown(
        &self,
        account_id: Uuid,
        task_id: Uuid,
    ) -> impl Future<Output = Result<(), TaskError>> + Send;
}

/// The queue the sync worker reads.
pub trait SyncQueue: Send + Sync {
    /// One message per task, grouped by account so an account's syncs run one at a time, in
    /// order; the task id (plus cursor) deduplicates.
    fn enqueue(&self, message: &TaskMessage) -> impl Future<Output = Result<(), TaskError>> + Send;

    /// Sends many messages, ten per call; returns the task ids of those the queue refused.
    fn enqueue_batch(
        &self,
        messages: &[TaskMessage],
    ) -> impl Future<Output = Result<Vec<Uuid>, TaskError>> + Send;

    /// Hides a received message for `delay` before its next delivery: the back-off between
    /// task-level retries (FIFO queues take no per-message delay at send time).
    fn delay_redelivery(
        &self,
        receipt_handle: &str,
        delay: std::time::Duration,
    ) -> impl Future<Output = Result<(), TaskError>> + Send;
}

/// [`TaskStore`] on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoTasks {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoTasks {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The table named by `TASKS_TABLE`.
    pub fn from_env(env: &Env, sdk: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self::new(
            aws_sdk_dynamodb::Client::new(sdk),
            env.required("TASKS_TABLE")?,
        ))
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The pending task item, with its index keys and TTL.
fn task_item(task: &NewTask) -> HashMap<String, AttributeValue> {
    let created = task.created_at.to_rfc3339_opts(SecondsFormat::Millis, true);
    let expires = (task.created_at + chrono::TimeDelta::days(TASK_RETENTION_DAYS)).timestamp();
    HashMap::from([
        ("pk".to_owned(), s(format!("TASK#{}", task.task_id))),
        ("task_id".to_owned(), s(task.task_id.to_string())),
        ("user_id".to_owned(), s(&task.user_id)),
        ("account_id".to_owned(), s(task.account_id.to_string())),
        (
            ACCOUNT_TASKS_PK.to_owned(),
            s(format!("ACCOUNT#{}", task.account_id)),
        ),
        ("kind".to_owned(), s(task.kind.as_str())),
        ("status".to_owned(), s(TaskStatus::Pending.as_str())),
        ("progress_percentage".to_owned(), n(0)),
        ("attempts".to_owned(), n(0)),
        (ACCOUNT_TASKS_SK.to_owned(), s(&created)),
        ("last_updated".to_owned(), s(&created)),
        ("expires_at".to_owned(), n(expires)),
    ])
}

/// Reads a task item back; `None` for an item that is not a well-formed task.
fn task_record(item: &HashMap<String, AttributeValue>) -> Option<TaskRecord> {
    let text = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
    };
    let number = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u32>().ok())
    };
    let time = |name: &str| {
        text(name)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    Some(TaskRecord {
        task_id: text("task_id")?.parse().ok()?,
        user_id: text("user_id")?.to_owned(),
        account_id: text("account_id")?.parse().ok()?,
        kind: TaskKind::parse(text("kind")?)?,
        status: TaskStatus::parse(text("status")?)?,
        stage: text("stage").map(str::to_owned),
        progress_percentage: number("progress_percentage")
            .unwrap_or(0)
            .min(100)
            .try_into()
            .unwrap_or(100),
        counts: text("counts")
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or_default(),
        error_message: text("error_message").map(str::to_owned),
        attempts: number("attempts").unwrap_or(0),
        created_at: time(ACCOUNT_TASKS_SK)?,
        last_updated: time("last_updated")?,
        resume_cursor: text("resume_cursor").and_then(|c| serde_json::from_str(c).ok()),
    })
}

fn is_condition_failure<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.code() == Some("ConditionalCheckFailedException")
}

impl DynamoTasks {
    fn lease_key(account_id: Uuid) -> HashMap<String, AttributeValue> {
        HashMap::from([("pk".to_owned(), s(format!("LEASE#ACCOUNT#{account_id}")))])
    }

    fn cooldown_key(account_id: Uuid) -> HashMap<String, AttributeValue> {
        HashMap::from([("pk".to_owned(), s(format!("COOLDOWN#ACCOUNT#{account_id}")))])
    }

    /// Deletes a lease or cooldown item if its `attribute` still names `holder`; one that has
    /// passed to someone else (or is gone) is left alone.
    async fn delete_if_held(
        &self,
        key: HashMap<String, AttributeValue>,
        attribute: &str,
        holder: Uuid,
    ) -> Result<(), TaskError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .condition_expression("#holder = :me")
            .expression_attribute_names("#holder", attribute)
            .expression_attribute_values(":me", s(holder.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}

impl TaskStore for DynamoTasks {
    async fn create(&self, task: &NewTask) -> Result<(), TaskError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(task_item(task)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| {
                if is_condition_failure(&e) {
                    TaskError::Exists(task.task_id)
                } else {
                    unavailable(e)
                }
            })?;
        Ok(())
    }

    async fn update(&self, task_id: Uuid, update: TaskUpdate<'_>) -> Result<(), TaskError> {
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let counts = serde_json::to_string(update.counts).map_err(unavailable)?;
        let first_stage =
            update.status == TaskStatus::InProgress && update.progress_percentage == 0;
        let mut expression =
            "SET #status = :status, stage = :stage, progress_percentage = :progress, \
                              counts = :counts, last_updated = :now"
                .to_owned();
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("TASK#{task_id}")))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", s(update.status.as_str()))
            .expression_attribute_values(":stage", s(update.stage))
            .expression_attribute_values(":progress", n(update.progress_percentage))
            .expression_attribute_values(":counts", s(counts))
            .expression_attribute_values(":now", s(now));
        if let Some(cursor) = update.cursor {
            expression.push_str(", resume_cursor = :cursor");
            request = request.expression_attribute_values(":cursor", s(cursor.to_string()));
        }
        match update.error_message {
            Some(message) => {
                expression.push_str(", error_message = :error");
                request = request.expression_attribute_values(":error", s(message));
            }
            None => expression.push_str(" REMOVE error_message"),
        }
        if first_stage {
            expression = expression.replacen(
                "SET ",
                "SET attempts = if_not_exists(attempts, :zero) + :one, ",
                1,
            );
            request = request
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":one", n(1));
        }
        request
            .update_expression(expression)
            .condition_expression("attribute_exists(pk)")
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn acquire_lease(
        &self,
        account_id: Uuid,
        holder: Uuid,
        ttl: chrono::TimeDelta,
    ) -> Result<bool, TaskError> {
        let now = Utc::now();
        let mut item = Self::lease_key(account_id);
        item.insert("holder".into(), s(holder.to_string()));
        item.insert("lease_until".into(), n((now + ttl).timestamp_millis()));
        // For whoever looks at a busy account: since when this holder has it.
        item.insert("acquired_at".into(), n(now.timestamp_millis()));
        // TTL only cleans up (and lazily): the condition compares the lease's own expiry.
        item.insert("expires_at".into(), n((now + ttl).timestamp() + 3600));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR lease_until < :now OR holder = :me")
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .expression_attribute_values(":me", s(holder.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn release_lease(&self, account_id: Uuid, holder: Uuid) -> Result<(), TaskError> {
        self.delete_if_held(Self::lease_key(account_id), "holder", holder)
            .await
    }

    async fn get(&self, task_id: Uuid) -> Result<Option<TaskRecord>, TaskError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("TASK#{task_id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.item.as_ref().and_then(task_record))
    }

    async fn recent(&self, account_id: Uuid, limit: i32) -> Result<Vec<TaskRecord>, TaskError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(ACCOUNT_TASKS_INDEX)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", ACCOUNT_TASKS_PK)
            .expression_attribute_values(":pk", s(format!("ACCOUNT#{account_id}")))
            .scan_index_forward(false)
            .limit(limit)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.items().iter().filter_map(task_record).collect())
    }

    async fn create_manual(
        &self,
        task: &NewTask,
        cooldown: chrono::TimeDelta,
    ) -> Result<ManualClaim, TaskError> {
        // A cooldown that expires between the failed write and the read is retried, a bounded
        // number of times: under contention someone else will have claimed it by then.
        for _ in 0..3 {
            let now = Utc::now();
            let until = now + cooldown;
            let mut cooldown_item = Self::cooldown_key(task.account_id);
            cooldown_item.insert("task_id".into(), s(task.task_id.to_string()));
            cooldown_item.insert("cooldown_until".into(), n(until.timestamp_millis()));
            cooldown_item.insert("expires_at".into(), n(until.timestamp() + 3600));
            let claim = Put::builder()
                .table_name(&self.table)
                .set_item(Some(cooldown_item))
                .condition_expression("attribute_not_exists(pk) OR cooldown_until < :now")
                .expression_attribute_values(":now", n(now.timestamp_millis()))
                .build()
                .map_err(unavailable)?;
            let create = Put::builder()
                .table_name(&self.table)
                .set_item(Some(task_item(task)))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(unavailable)?;
            let result = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(claim).build())
                .transact_items(TransactWriteItem::builder().put(create).build())
                .send()
                .await;
            match result {
                Ok(_) => return Ok(ManualClaim::Created),
                Err(e) if e.code() == Some("TransactionCanceledException") => {}
                Err(e) => return Err(unavailable(e)),
            }
            let held = self
                .client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(Self::cooldown_key(task.account_id)))
                .consistent_read(true)
                .send()
                .await
                .map_err(unavailable)?;
            let item = held.item.unwrap_or_default();
            let until = item
                .get("cooldown_until")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .and_then(DateTime::<Utc>::from_timestamp_millis);
            if let Some(until) = until.filter(|until| *until > Utc::now()) {
                let task_id = item
                    .get("task_id")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|v| v.parse().ok());
                return Ok(ManualClaim::CoolingDown { task_id, until });
            }
        }
        Err(TaskError::Contended(task.account_id))
    }

    async fn release_cooldown(&self, account_id: Uuid, task_id: Uuid) -> Result<(), TaskError> {
        self.delete_if_held(Self::cooldown_key(account_id), "task_id", task_id)
            .await
    }
}

/// [`SyncQueue`] on SQS FIFO.
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

    /// The queue at `SYNC_QUEUE_URL`.
    pub fn from_env(env: &Env, sdk: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self::new(
            aws_sdk_sqs::Client::new(sdk),
            env.required("SYNC_QUEUE_URL")?,
        ))
    }
}

impl SyncQueue for SqsQueue {
    async fn enqueue(&self, message: &TaskMessage) -> Result<(), TaskError> {
        let body = serde_json::to_string(message).map_err(unavailable)?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_group_id(message.account_id.to_string())
            .message_deduplication_id(dedup_id(message))
            .message_body(body)
            .send()
            .await
            .map_err(unavailable)?;
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
                    .message_body(serde_json::to_string(message).map_err(unavailable)?)
                    .build()
                    .map_err(unavailable)?;
                entries.push(entry);
            }
            let output = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(unavailable)?;
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
            .map_err(unavailable)?;
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
