//! What tastysync tells the app's backend as it happens, on the stack's EventBridge bus: source
//! `tastysync`, detail-type the event's name, detail its fields. Each is published after the
//! data it announces is committed, never before. The JSON Schema of every detail is in
//! `events/schemas/<name>.json` (a test delivers each kind through a rule and checks it).

use serde::Serialize;
use uuid::Uuid;

use super::tasks::{Counts, TaskKind};

/// The `source` of every event.
pub const SOURCE: &str = "tastysync";

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Event {
    SyncCompleted {
        account_id: Uuid,
        user_id: String,
        task_id: Uuid,
        kind: TaskKind,
        counts: Counts,
        duration_ms: u64,
    },
    SyncFailed {
        account_id: Uuid,
        user_id: String,
        task_id: Uuid,
        kind: TaskKind,
        /// Why, in the words the task records.
        error: String,
    },
    AccountNeedsReauth {
        account_id: Uuid,
        user_id: String,
    },
    /// The streamer stored an order (with its legs and fills).
    OrderUpdated {
        account_id: Uuid,
        user_id: String,
        order_id: i64,
        status: Option<String>,
    },
    /// The streamer stored a position, or deleted a closed one.
    PositionsChanged {
        account_id: Uuid,
        user_id: String,
        symbol: String,
        closed: bool,
    },
    /// The streamer stored a balance.
    BalanceUpdated {
        account_id: Uuid,
        user_id: String,
        currency: Option<String>,
    },
}

impl Event {
    /// The event's name: EventBridge's `detail-type`, and its schema's file name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::SyncCompleted { .. } => "SyncCompleted",
            Event::SyncFailed { .. } => "SyncFailed",
            Event::AccountNeedsReauth { .. } => "AccountNeedsReauth",
            Event::OrderUpdated { .. } => "OrderUpdated",
            Event::PositionsChanged { .. } => "PositionsChanged",
            Event::BalanceUpdated { .. } => "BalanceUpdated",
        }
    }

    /// Every event's name, for the tests and the schemas.
    pub const NAMES: [&'static str; 6] = [
        "SyncCompleted",
        "SyncFailed",
        "AccountNeedsReauth",
        "OrderUpdated",
        "PositionsChanged",
        "BalanceUpdated",
    ];
}
