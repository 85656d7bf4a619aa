//! The HTTP routes, one module per function: each route takes its dependencies and the
//! request, and returns the response or an [`ApiError`](crate::http::ApiError). The function
//! crates only wire dependencies and dispatch on method and path.

use std::ops::RangeInclusive;

use lambda_http::{Body, Request, Response};

use crate::domain::audit::{AuditAction, AuditEvent, AuditOutcome};
use crate::domain::reads::{DEFAULT_PAGE, Keyset, MAX_PAGE};
use crate::domain::requests::{Admission, Claim, Limit};
use crate::http::{self, ApiError};
use crate::ports::{AuditLog, IdempotencyKeys, RequestLimiter};

pub mod account_data;
pub mod accounts;
pub mod link;
pub mod sync_tasks;

/// Appends what the caller did, and how it ended, to the audit trail. The action has
/// happened: a trail that cannot be written is logged (`audit_event_not_recorded`), not
/// turned into the action's failure.
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

/// Counts the caller's request against `limit`: 429 with `Retry-After` once the caller is
/// over it. A request without a caller passes (its route answers 401), and so does every
/// request while the counter cannot be reached: a limiter outage must not take the API down.
pub async fn admitted(
    limiter: &impl RequestLimiter,
    limit: &Limit,
    request: &Request,
) -> Result<(), ApiError> {
    let Ok(user) = http::user_id(request) else {
        return Ok(());
    };
    match limiter.admit(&user, limit).await {
        Ok(Admission::Admitted) => Ok(()),
        Ok(Admission::Refused { retry_after }) => {
            tracing::info!(user_id = %user, class = limit.class, "over the per-user limit");
            Err(ApiError::TooManyRequests { retry_after })
        }
        Err(e) => {
            tracing::warn!(error = %e, class = limit.class, "limit not checked; request let through");
            Ok(())
        }
    }
}

/// Runs `route` once per `Idempotency-Key` of the caller's: a request that repeats a key gets
/// the first answer again (marked `Idempotency-Replayed: true`), one that is still running
/// gets 409, and a key reused for a different request 400. Answers worth retrying (429, 5xx)
/// are not kept. Without the header the route simply runs.
pub async fn idempotent(
    keys: &impl IdempotencyKeys,
    request: &Request,
    route: impl Future<Output = Result<Response<Body>, ApiError>>,
) -> Result<Response<Body>, ApiError> {
    let Some(key) = http::idempotency_key(request)? else {
        return route.await;
    };
    let user = http::user_id(request)?;
    match keys.claim(&user, &key, &http::fingerprint(request)).await? {
        Claim::New => {}
        Claim::Replay { status, body } => return Ok(http::replayed(status, body)),
        Claim::InProgress => {
            return Err(ApiError::Conflict(
                "a request with this Idempotency-Key is still running; retry shortly".into(),
            ));
        }
        Claim::Mismatch => {
            return Err(ApiError::bad_request(
                "Idempotency-Key",
                "was used for a different request",
            ));
        }
    }
    let response = http::respond(route.await);
    let status = response.status().as_u16();
    let kept = if status == 429 || status >= 500 {
        keys.release(&user, &key).await
    } else {
        (keys.complete(&user, &key, status, &http::body_text(&response))).await
    };
    if let Err(e) = kept {
        tracing::warn!(error = %e, status, "the idempotency key's answer was not kept");
    }
    Ok(response)
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
