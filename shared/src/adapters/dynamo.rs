//! The task table on DynamoDB: [`DynamoTasks`] serves every task port.
//!
//! Item layout (one table, see DESIGN.md §3): `pk = TASK#<id>`, with `account_pk =
//! ACCOUNT#<id>` and `created_at` for the account's recent-tasks index, and `expires_at` (epoch
//! seconds) for TTL clean-up. Leases are `LEASE#ACCOUNT#<id>`, cooldowns
//! `COOLDOWN#ACCOUNT#<id>`, the OAuth state's spent nonces `STATE#<nonce>`.

use std::collections::HashMap;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use super::failed;
use crate::domain::requests::{Admission, Limit};
use crate::domain::tasks::{ManualClaim, NewTask, TaskKind, TaskRecord, TaskStatus, TaskUpdate};
use crate::ports::{
    Actions, CooldownStore, LeaseStore, RequestLimiter, ShardHolder, ShardLeases, StateNonces,
    TaskCreator, TaskError, TaskHistory, TaskPurge, TaskReader, TaskUpdater,
};

/// Task items outlive their task by this long, for the status API and for ops.
const TASK_RETENTION_DAYS: i64 = 30;

/// A sparse index over task items only (leases and cooldowns lack its key), for an account's
/// recent tasks, newest first.
pub const ACCOUNT_TASKS_INDEX: &str = "account-tasks";
pub const ACCOUNT_TASKS_PK: &str = "account_pk";
pub const ACCOUNT_TASKS_SK: &str = "created_at";

const GET_ITEM: &str = "dynamodb:GetItem";
const PUT_ITEM: &str = "dynamodb:PutItem";
const UPDATE_ITEM: &str = "dynamodb:UpdateItem";
const DELETE_ITEM: &str = "dynamodb:DeleteItem";
const QUERY: &str = "dynamodb:Query";

/// The task ports on DynamoDB.
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

/// A conditional put's outcome: true when it wrote, false when its condition held it back.
fn put_won<O>(
    result: Result<O, aws_sdk_dynamodb::error::SdkError<PutItemError, HttpResponse>>,
) -> Result<bool, TaskError> {
    match result {
        Ok(_) => Ok(true),
        Err(e) if is_condition_failure(&e) => Ok(false),
        Err(e) => Err(failed::<_, TaskError>(PUT_ITEM)(e)),
    }
}

impl DynamoTasks {
    /// A query of the account's task items, through the index.
    fn account_tasks(
        &self,
        account_id: Uuid,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .index_name(ACCOUNT_TASKS_INDEX)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", ACCOUNT_TASKS_PK)
            .expression_attribute_values(":pk", s(format!("ACCOUNT#{account_id}")))
    }

    fn lease_key(account_id: Uuid) -> HashMap<String, AttributeValue> {
        HashMap::from([("pk".to_owned(), s(format!("LEASE#ACCOUNT#{account_id}")))])
    }

    fn shard_key(shard: u32) -> HashMap<String, AttributeValue> {
        HashMap::from([("pk".to_owned(), s(format!("LEASE#STREAMER#{shard}")))])
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
            Err(e) => Err(failed::<_, TaskError>(DELETE_ITEM)(e)),
        }
    }
}

impl TaskReader for DynamoTasks {
    const ACTIONS: Actions = &[GET_ITEM];

    async fn get(&self, task_id: Uuid) -> Result<Option<TaskRecord>, TaskError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("TASK#{task_id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(failed::<_, TaskError>(GET_ITEM))?;
        Ok(output.item.as_ref().and_then(task_record))
    }
}

impl TaskHistory for DynamoTasks {
    const ACTIONS: Actions = &[QUERY];

    async fn recent(&self, account_id: Uuid, limit: i32) -> Result<Vec<TaskRecord>, TaskError> {
        let output = self
            .account_tasks(account_id)
            .scan_index_forward(false)
            .limit(limit)
            .send()
            .await
            .map_err(failed::<_, TaskError>(QUERY))?;
        Ok(output.items().iter().filter_map(task_record).collect())
    }
}

impl TaskCreator for DynamoTasks {
    const ACTIONS: Actions = &[PUT_ITEM];

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
                    failed::<_, TaskError>(PUT_ITEM)(e)
                }
            })?;
        Ok(())
    }
}

impl TaskUpdater for DynamoTasks {
    const ACTIONS: Actions = &[UPDATE_ITEM];

    async fn update(&self, task_id: Uuid, update: TaskUpdate<'_>) -> Result<(), TaskError> {
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let counts = serde_json::to_string(update.counts)
            .map_err(|e| TaskError::Unavailable(Box::new(e)))?;
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
            .map_err(failed::<_, TaskError>(UPDATE_ITEM))?;
        Ok(())
    }
}

impl LeaseStore for DynamoTasks {
    const ACTIONS: Actions = &[PUT_ITEM, DELETE_ITEM];

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
        put_won(result)
    }

    async fn release_lease(&self, account_id: Uuid, holder: Uuid) -> Result<(), TaskError> {
        self.delete_if_held(Self::lease_key(account_id), "holder", holder)
            .await
    }
}

// An account's tasks are found through its index, a page at a time, and deleted one by one
// (a purge is rare; `BatchWriteItem` would be one more action to grant), a few at once.
impl TaskPurge for DynamoTasks {
    const ACTIONS: Actions = &[QUERY, DELETE_ITEM];

    async fn forget_account(&self, account_id: Uuid) -> Result<(), TaskError> {
        use futures_util::{StreamExt, TryStreamExt};
        let mut keys = vec![Self::lease_key(account_id), Self::cooldown_key(account_id)];
        let mut start = None;
        loop {
            let page = self
                .account_tasks(account_id)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(failed::<_, TaskError>(QUERY))?;
            keys.extend(
                (page.items().iter())
                    .filter_map(|item| item.get("pk").cloned())
                    .map(|pk| HashMap::from([("pk".to_owned(), pk)])),
            );
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        futures_util::stream::iter(keys)
            .map(|key| {
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(key))
                    .send()
            })
            .buffer_unordered(8)
            .map_err(|e| failed::<_, TaskError>(DELETE_ITEM)(e))
            .try_for_each(|_| async { Ok(()) })
            .await
    }
}

// A fixed window per user and class: one item, counted up by a conditional update, that
// expires with its window. The user shows in the key only as a hash, so the counters hold no
// user id (a purge has nothing to find here).
impl RequestLimiter for DynamoTasks {
    const ACTIONS: Actions = &[UPDATE_ITEM];

    async fn admit(&self, user_id: &str, limit: &Limit) -> Result<Admission, TaskError> {
        use base64::Engine;
        use sha2::Digest;
        let now = Utc::now().timestamp();
        let (start, end) = limit.window_at(now);
        let digest = sha2::Sha256::digest(user_id.as_bytes());
        let who = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16]);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("LIMIT#{}#{who}#{start}", limit.class)))
            .update_expression("SET expires_at = :expires ADD hits :one")
            .condition_expression("attribute_not_exists(hits) OR hits < :max")
            .expression_attribute_values(":expires", n(end + 60))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(limit.max))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Admission::Admitted),
            Err(e) if is_condition_failure(&e) => Ok(Admission::Refused {
                retry_after: u64::try_from(end - now).unwrap_or(1).max(1),
            }),
            Err(e) => Err(failed::<_, TaskError>(UPDATE_ITEM)(e)),
        }
    }
}

impl StateNonces for DynamoTasks {
    const ACTIONS: Actions = &[PUT_ITEM];

    async fn spend(&self, nonce: &str, until: DateTime<Utc>) -> Result<bool, TaskError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("STATE#{nonce}")))
            // TTL deletes lazily, and only after the state has expired: its signature refuses
            // it from then on.
            .item("expires_at", n(until.timestamp() + 3600))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        put_won(result)
    }
}

// A streamer shard's lease: who serves the shard's grants and until when. A new holder takes
// it over only as it saw it (same holder, same end), so two that try at once cannot both win.
impl ShardLeases for DynamoTasks {
    const ACTIONS: Actions = &[GET_ITEM, PUT_ITEM, DELETE_ITEM];

    async fn holder(&self, shard: u32) -> Result<Option<ShardHolder>, TaskError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::shard_key(shard)))
            .consistent_read(true)
            .send()
            .await
            .map_err(failed::<_, TaskError>(GET_ITEM))?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let holder =
            (item.get("holder").and_then(|v| v.as_s().ok())).and_then(|h| Uuid::parse_str(h).ok());
        let time = |name: &str| {
            (item.get(name).and_then(|v| v.as_n().ok()))
                .and_then(|n| n.parse().ok())
                .and_then(chrono::DateTime::from_timestamp_millis)
        };
        let (until, alive_until) = (time("lease_until"), time("alive_until"));
        Ok(holder
            .zip(until)
            .zip(alive_until)
            .map(|((holder, until), alive_until)| ShardHolder {
                holder,
                until,
                alive_until,
            }))
    }

    async fn take(
        &self,
        shard: u32,
        me: ShardHolder,
        seen: Option<ShardHolder>,
    ) -> Result<bool, TaskError> {
        let now = Utc::now();
        let mut item = Self::shard_key(shard);
        item.insert("holder".into(), s(me.holder.to_string()));
        item.insert("lease_until".into(), n(me.until.timestamp_millis()));
        item.insert("alive_until".into(), n(me.alive_until.timestamp_millis()));
        item.insert("expires_at".into(), n(me.until.timestamp() + 3600));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        let put = match seen {
            None => put
                .condition_expression(
                    "attribute_not_exists(pk) OR lease_until < :now OR alive_until < :now",
                )
                .expression_attribute_values(":now", n(now.timestamp_millis())),
            Some(seen) => put
                .condition_expression("holder = :seen AND lease_until = :seen_until")
                .expression_attribute_values(":seen", s(seen.holder.to_string()))
                .expression_attribute_values(":seen_until", n(seen.until.timestamp_millis())),
        };
        put_won(put.send().await)
    }

    async fn release(&self, shard: u32, me: Uuid) -> Result<(), TaskError> {
        self.delete_if_held(Self::shard_key(shard), "holder", me)
            .await
    }
}

// The cooldown and the task are written in one `TransactWriteItems` of two puts (authorised
// as `PutItem` per item); a refused claim reads the cooldown back.
impl CooldownStore for DynamoTasks {
    const ACTIONS: Actions = &[PUT_ITEM, GET_ITEM, DELETE_ITEM];

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
                .map_err(|e| TaskError::Unavailable(Box::new(e)))?;
            let create = Put::builder()
                .table_name(&self.table)
                .set_item(Some(task_item(task)))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(|e| TaskError::Unavailable(Box::new(e)))?;
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
                Err(e) => return Err(failed::<_, TaskError>(PUT_ITEM)(e)),
            }
            let held = self
                .client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(Self::cooldown_key(task.account_id)))
                .consistent_read(true)
                .send()
                .await
                .map_err(failed::<_, TaskError>(GET_ITEM))?;
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
