//! The audit trail: what was done to a user's links, by whom, from where, and how it ended.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Link,
    Relink,
    Unlink,
    Trigger,
    NeedsReauth,
    Purge,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Link => "link",
            AuditAction::Relink => "relink",
            AuditAction::Unlink => "unlink",
            AuditAction::Trigger => "trigger",
            AuditAction::NeedsReauth => "needs_reauth",
            AuditAction::Purge => "purge",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            AuditAction::Link,
            AuditAction::Relink,
            AuditAction::Unlink,
            AuditAction::Trigger,
            AuditAction::NeedsReauth,
            AuditAction::Purge,
        ]
        .into_iter()
        .find(|a| a.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Succeeded,
    /// Refused: by tastytrade (a grant it rejected) or by us (a cooldown, a limit).
    Refused,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Succeeded => "succeeded",
            AuditOutcome::Refused => "refused",
        }
    }
}

/// Where an API request came from, as API Gateway saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestSource {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// One event to record. `source` is `None` for what the system did (a sync that found the
/// grant dead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub user_id: String,
    pub account_id: Option<Uuid>,
    pub action: AuditAction,
    pub outcome: AuditOutcome,
    pub source: Option<RequestSource>,
}

/// One recorded event, as the user reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditEventRead {
    pub account_id: Option<Uuid>,
    pub action: AuditAction,
    pub outcome: AuditOutcome,
    /// `user` through the API, `system` when a sync found it.
    pub actor: String,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

/// A page of the user's events, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEventPage {
    pub items: Vec<AuditEventRead>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}
