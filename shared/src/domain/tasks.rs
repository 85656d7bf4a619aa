//! Sync tasks as the domain sees them: kinds, statuses, the task as created and as stored, its
//! message on the queue, and the counts it reports. No storage here: the ports say what can be
//! done with them, the adapters how.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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

    pub fn parse(text: &str) -> Option<Self> {
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

    pub fn parse(text: &str) -> Option<Self> {
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

    /// The task as [`crate::ports::TaskCreator::create`] stores it, without reading it back.
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

/// Counts of rows read from the broker and rows written (inserted or changed), per entity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Counts {
    pub read: std::collections::BTreeMap<String, u64>,
    pub written: std::collections::BTreeMap<String, u64>,
    /// Rows read but set aside in quarantine (they did not parse or could not be stored).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub rejected: std::collections::BTreeMap<String, u64>,
    /// Stored rows marked removed because the broker no longer returns them.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub removed: std::collections::BTreeMap<String, u64>,
    /// Best-effort stages the sync completed without, by stage, with what the user should
    /// know (what they stored before is kept).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub warnings: std::collections::BTreeMap<String, String>,
}

impl Counts {
    pub fn add(&mut self, entity: &str, read: usize, written: u64) {
        *self.read.entry(entity.to_owned()).or_default() += read as u64;
        *self.written.entry(entity.to_owned()).or_default() += written;
    }

    pub fn reject(&mut self, entity: &str, rejected: usize) {
        if rejected > 0 {
            *self.rejected.entry(entity.to_owned()).or_default() += rejected as u64;
        }
    }

    pub fn remove(&mut self, entity: &str, removed: u64) {
        *self.removed.entry(entity.to_owned()).or_default() += removed;
    }

    pub fn warn(&mut self, stage: &str, message: &str) {
        self.warnings.insert(stage.to_owned(), message.to_owned());
    }

    /// Adds what `other` counted (a stage that ran beside the others).
    pub fn absorb(&mut self, other: Counts) {
        for (mine, theirs) in [
            (&mut self.read, other.read),
            (&mut self.written, other.written),
            (&mut self.rejected, other.rejected),
            (&mut self.removed, other.removed),
        ] {
            for (entity, n) in theirs {
                *mine.entry(entity).or_default() += n;
            }
        }
        self.warnings.extend(other.warnings);
    }

    pub fn total_rejected(&self) -> u64 {
        self.rejected.values().sum()
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
