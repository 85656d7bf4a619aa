//! Linked accounts: a grant about to be stored, the accounts the broker lists, an account as
//! the API shows it and its sync status, and what the scheduler asks of them.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::secrets::{Purpose, Sealed};
use crate::tastytrade::Environment;

/// Where an account's syncing stands. Stored as the upper-case name (`NEEDS_REAUTH`); the
/// schema's check constraint holds the same set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccountStatus {
    /// Linked, its first sync not yet run.
    Pending,
    Running,
    Success,
    /// The last sync failed; the schedule tries again.
    Failed,
    /// The grant no longer works: nothing syncs until the user links the account again.
    NeedsReauth,
}

impl AccountStatus {
    const ALL: [AccountStatus; 5] = [
        AccountStatus::Pending,
        AccountStatus::Running,
        AccountStatus::Success,
        AccountStatus::Failed,
        AccountStatus::NeedsReauth,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Pending => "PENDING",
            AccountStatus::Running => "RUNNING",
            AccountStatus::Success => "SUCCESS",
            AccountStatus::Failed => "FAILED",
            AccountStatus::NeedsReauth => "NEEDS_REAUTH",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKind {
    AuthorizationCode,
    Personal,
}

impl GrantKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::AuthorizationCode => "authorization_code",
            GrantKind::Personal => "personal",
        }
    }
}

/// A grant about to be stored, its secrets already sealed for `id`.
#[derive(Debug)]
pub struct NewCredential {
    pub id: Uuid,
    pub user_id: String,
    pub environment: Environment,
    pub kind: GrantKind,
    pub secrets: Vec<(Purpose, Sealed)>,
    /// The access token the link minted, sealed, and when it expires: cached for the first
    /// sync, which then starts with the account's own calls instead of minting another.
    pub access_token: Option<(Sealed, DateTime<Utc>)>,
}

/// An account as the broker lists it.
#[derive(Debug, Clone)]
pub struct BrokerAccount {
    pub account_number: String,
    pub nickname: Option<String>,
    pub account_type_name: Option<String>,
    pub margin_or_cash: Option<String>,
    pub is_closed: bool,
    pub opened_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub raw: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct LinkedAccount {
    pub id: Uuid,
    pub account_number: String,
    pub is_closed: bool,
    /// False when the account was linked before: it kept its id and its data.
    pub is_new: bool,
}

/// An account as the API shows it.
#[derive(Debug, Clone)]
pub struct AccountRow {
    pub id: Uuid,
    pub account_number: String,
    pub nickname: Option<String>,
    pub account_type_name: Option<String>,
    pub environment: Environment,
    pub last_sync_status: AccountStatus,
    pub last_successful_sync_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// Rows of the account waiting in quarantine.
    pub quarantined_rows: u64,
    pub created_at: DateTime<Utc>,
}

/// Which accounts a scheduler tick looks at.
#[derive(Debug, Clone, Copy)]
pub struct DueQuery {
    /// Slots per hour, and this tick's slot.
    pub slots: i32,
    pub slot: i32,
    /// A queued marker older than this is a lost message and no longer blocks the account.
    pub queued_before: DateTime<Utc>,
    /// Skip accounts whose last sync started after this (`None`: take them all).
    pub synced_before: Option<DateTime<Utc>>,
}

/// An account a tick should sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueAccount {
    pub id: Uuid,
    pub user_id: String,
}

/// What unlinking does with the synced rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncedData {
    /// Keep the history; a later re-link finds it under the same account id.
    Keep,
    /// Delete the account and, by cascade, everything synced for it.
    Purge,
}

/// An account with what the worker needs to act for its owner.
#[derive(Debug, Clone)]
pub struct SyncAccount {
    pub id: Uuid,
    pub user_id: String,
    pub account_number: String,
    pub environment: Environment,
    pub credential_id: Uuid,
    pub personal_grant: bool,
    pub opened_at: Option<DateTime<Utc>>,
    pub transactions_synced_to: Option<DateTime<Utc>>,
    pub orders_synced_to: Option<DateTime<Utc>>,
    pub snapshots_synced_to: Option<NaiveDate>,
    /// Rows of the account in quarantine when the sync started.
    pub quarantined: u64,
    /// The time of the latest net-liq bar stored.
    pub net_liq_synced_to: Option<DateTime<Utc>>,
    pub refresh_token: Sealed,
    pub client_secret: Option<Sealed>,
    /// The access token cached by an earlier sync, sealed, with its expiry.
    pub access_token: Option<(Sealed, DateTime<Utc>)>,
    /// The market-data feed's token and URL cached by an earlier sync, sealed, with expiry.
    pub quote_token: Option<(Sealed, DateTime<Utc>)>,
}

/// The trading day an instant belongs to: the broker dates its snapshots by the New York
/// day, so a capture at 01:00 UTC belongs to the evening before.
pub fn trading_day(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&chrono_tz::America::New_York).date_naive()
}

/// The latest market close (16:00 New York) at or before `at`: a day's end-of-day snapshots
/// exist from then on.
pub fn latest_close(at: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::TimeZone;
    let new_york = chrono_tz::America::New_York;
    let close_of = |day: NaiveDate| {
        let close = day.and_hms_opt(16, 0, 0).unwrap_or_default();
        (new_york.from_local_datetime(&close).earliest())
            .map_or(at, |close| close.with_timezone(&Utc))
    };
    let today = trading_day(at);
    let close = close_of(today);
    if close <= at {
        close
    } else {
        close_of(today.pred_opt().unwrap_or(today))
    }
}

/// Where a balance row goes: the current balance, a broker snapshot, or our own capture.
#[derive(Debug, Clone, Copy)]
pub enum BalanceTarget {
    Current,
    BrokerSnapshot,
    /// The current balance recorded as today's `Intraday` snapshot.
    Capture(DateTime<Utc>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_close_is_four_in_the_afternoon_in_new_york_today_or_the_day_before() {
        let at = |text: &str| text.parse::<DateTime<Utc>>().unwrap();
        // 16:00 EST is 21:00 UTC in December, 16:00 EDT 20:00 UTC in July.
        assert_eq!(
            latest_close(at("2026-12-03T21:30:00Z")),
            at("2026-12-03T21:00:00Z")
        );
        assert_eq!(
            latest_close(at("2026-12-03T20:59:00Z")),
            at("2026-12-02T21:00:00Z")
        );
        assert_eq!(
            latest_close(at("2026-07-01T03:00:00Z")),
            at("2026-06-30T20:00:00Z")
        );
    }

    #[test]
    fn a_capture_is_dated_by_the_new_york_trading_day() {
        let at = |t: &str| t.parse::<DateTime<Utc>>().unwrap();
        let day = |d: &str| d.parse::<NaiveDate>().unwrap();
        // 01:30 UTC is 20:30 in New York (EST, UTC-5) the evening before.
        assert_eq!(trading_day(at("2026-01-15T01:30:00Z")), day("2026-01-14"));
        // 03:30 UTC in July is 23:30 EDT (UTC-4), still the evening before.
        assert_eq!(trading_day(at("2026-07-15T03:30:00Z")), day("2026-07-14"));
        assert_eq!(trading_day(at("2026-07-15T04:30:00Z")), day("2026-07-15"));
    }

    #[test]
    fn each_status_reads_back_as_itself_and_serialises_as_stored() {
        for status in AccountStatus::ALL {
            assert_eq!(AccountStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_value(status).ok(),
                Some(serde_json::Value::from(status.as_str()))
            );
        }
        assert_eq!(AccountStatus::parse("needs_reauth"), None);
    }
}
