//! Rows the broker sent that could not be stored: why, and what becomes of them.
//!
//! A row the code cannot parse or the schema refuses is never allowed to fail its page: it is
//! set aside in quarantine with its raw JSON, the rest of the page is stored, and the task
//! completes with the count. A later sync that stores the row releases it.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The outcome of storing a page: rows inserted or changed, and the rows refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    pub changed: u64,
    pub rejected: Vec<Rejection>,
}

impl Stored {
    pub fn changed(changed: u64) -> Self {
        Self {
            changed,
            rejected: Vec::new(),
        }
    }

    /// Whether the row at `index` of the page was stored.
    pub fn kept(&self, index: usize) -> bool {
        !self.rejected.iter().any(|r| r.index == index)
    }
}

/// A row of the page that was not stored: its index in the page, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub index: usize,
    pub reason: String,
}

/// A row to set aside: the broker's id when it has one, why, and the JSON as it came.
#[derive(Debug, Clone, PartialEq)]
pub struct Quarantined {
    pub broker_id: Option<i64>,
    pub reason: String,
    pub raw: Value,
}

impl Quarantined {
    pub fn new(raw: Value, reason: impl Into<String>) -> Self {
        Self {
            broker_id: raw.get("id").and_then(Value::as_i64),
            reason: printable(&reason.into()),
            raw,
        }
    }

    /// The row's string field `key`, if it has one.
    pub fn text(&self, key: &str) -> Option<String> {
        self.raw.get(key)?.as_str().map(str::to_owned)
    }

    /// The JSON as text: a string escapes NUL characters, which Postgres text and jsonb refuse.
    pub fn raw_text(&self) -> String {
        self.raw.to_string()
    }
}

/// Rows the broker no longer returns where a sync read them all: they are marked removed (kept,
/// left out of every count and read), and restored if the broker returns them again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone<'a> {
    /// The account's transactions executed in `[from, to]` other than `seen`.
    Transactions {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        seen: &'a [i64],
    },
    /// The account's orders received in `[from, to]` other than `seen`, with their legs and
    /// fills.
    Orders {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        seen: &'a [i64],
    },
    /// Orders the broker no longer knows by id, with their legs and fills.
    OrdersById(&'a [i64]),
    /// The current balances in currencies other than `seen`.
    Balances { seen: &'a [String] },
    /// The account's complex orders other than `seen` (the whole list was read).
    ComplexOrders { seen: &'a [i64] },
}

/// `reason` quotes the broker's values, which may hold NUL characters.
fn printable(reason: &str) -> String {
    reason.replace('\0', "\\u0000")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_quarantined_row_keeps_its_id_and_a_reason_postgres_can_hold() {
        let row = Quarantined::new(json!({"id": 7, "description": "a\u{0}b"}), "bad \u{0}");
        assert_eq!(row.broker_id, Some(7));
        assert_eq!(row.reason, "bad \\u0000");
        assert!(!row.raw_text().contains('\0'));
    }
}
