//! The HTTP routes, one module per function: each route takes its dependencies and the
//! request, and returns the response or an [`ApiError`](crate::http::ApiError). The function
//! crates only wire dependencies and dispatch on method and path.

use std::ops::RangeInclusive;

use lambda_http::Request;

use crate::domain::audit::{AuditAction, AuditEvent, AuditOutcome};
use crate::domain::reads::{DEFAULT_PAGE, Keyset, MAX_PAGE};
use crate::http::{self, ApiError};
use crate::ports::AuditLog;

pub mod account_data;
pub mod accounts;
pub mod link;
pub mod sync_tasks;

/// Appends what the caller did, and how it ended, to the audit trail. The action has
/// happened: a trail that cannot be written is logged (a metric filter can alarm on the
/// event), not turned into the action's failure.
pub(crate) async fn audit(
    log: &impl AuditLog,
    request: &Request,
    user: &str,
    (account_id, action, outcome): (Option<uuid::Uuid>, AuditAction, AuditOutcome),
) {
    let event = AuditEvent {
        user_id: user.to_owned(),
        account_id,
        action,
        outcome,
        source: Some(http::source(request)),
    };
    if let Err(e) = log.record(&event).await {
        tracing::error!(event = "audit_event_not_recorded", error = %e, action = action.as_str(), "the audit trail was not written");
    }
}

/// A paged route's query: its filters, `limit` and `cursor`.
pub(crate) struct PageQuery(std::collections::HashMap<String, String>);

impl PageQuery {
    /// The request's query, refused when it names a parameter not in `allowed`.
    pub(crate) fn of(request: &Request, allowed: &[&str]) -> Result<Self, ApiError> {
        http::query(request, allowed).map(Self)
    }

    pub(crate) fn text(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }

    pub(crate) fn date(&self, key: &str) -> Result<Option<chrono::NaiveDate>, ApiError> {
        (self.0.get(key))
            .map(|d| {
                d.parse()
                    .map_err(|_| ApiError::bad_request(key, "must be a date, YYYY-MM-DD"))
            })
            .transpose()
    }

    pub(crate) fn limit(&self) -> Result<i64, ApiError> {
        self.bounded("limit", DEFAULT_PAGE, 1..=MAX_PAGE)
    }

    /// The whole number `key` names within `range`, or `default` when it is absent.
    pub(crate) fn bounded<N>(
        &self,
        key: &str,
        default: N,
        range: RangeInclusive<N>,
    ) -> Result<N, ApiError>
    where
        N: std::str::FromStr + PartialOrd + std::fmt::Display,
    {
        match self.0.get(key) {
            None => Ok(default),
            Some(raw) => (raw.parse().ok())
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    let (low, high) = (range.start(), range.end());
                    ApiError::bad_request(key, format!("must be {low} to {high}"))
                }),
        }
    }

    pub(crate) fn cursor(&self) -> Result<Option<Keyset>, ApiError> {
        (self.0.get("cursor"))
            .map(|c| {
                Keyset::decode(c)
                    .ok_or_else(|| ApiError::bad_request("cursor", "is not a cursor this API gave"))
            })
            .transpose()
    }
}
