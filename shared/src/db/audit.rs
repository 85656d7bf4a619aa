//! The audit trail, and the purge of everything a user has. Every statement takes the user id.

use deadpool_postgres::Pool;
use uuid::Uuid;

use super::DbError;
use crate::domain::audit::{AuditAction, AuditEvent, AuditEventRead, AuditOutcome};
use crate::domain::reads::{Keyset, Paged};

const RECORD: &str = "
    INSERT INTO audit_events (user_id, account_id, action, outcome, actor, source_ip, user_agent)
    VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// Newest first, a keyset page after `($2, $3)`.
const PAGE: &str = "
    SELECT account_id, action, outcome, actor, source_ip, user_agent, occurred_at, id
    FROM audit_events
    WHERE user_id = $1
      AND ($2::timestamptz IS NULL OR (occurred_at, id) < ($2, $3::bigint))
    ORDER BY occurred_at DESC, id DESC
    LIMIT $4";

/// Every account of the user, unlinked ones (whose history was kept) included.
const USER_ACCOUNTS: &str = "SELECT id FROM tastytrade_accounts WHERE user_id = $1";

// The purge, in one transaction. The accounts take their synced and quarantined rows with
// them (ON DELETE CASCADE, and for the history's four tables the delete triggers of
// migration V22), the grants their sealed secrets.
const PURGE_ACCOUNTS: &str = "DELETE FROM tastytrade_accounts WHERE user_id = $1";
const PURGE_CREDENTIALS: &str = "DELETE FROM tastytrade_credentials WHERE user_id = $1";
const PURGE_EVENTS: &str = "DELETE FROM audit_events WHERE user_id = $1";
const PURGE_KEYS: &str = "DELETE FROM idempotency_keys WHERE user_id = $1";
/// What is left of the user: that a purge happened, and when, under a hash of the id.
const RECORD_PURGE: &str = "
    INSERT INTO audit_events (user_id, action, outcome, actor)
    VALUES (encode(sha256(convert_to($1, 'UTF8')), 'hex'), 'purge', 'succeeded', 'user')";

pub async fn record(pool: &Pool, event: &AuditEvent) -> Result<(), DbError> {
    let source = event.source.as_ref();
    let actor = if source.is_some() { "user" } else { "system" };
    pool.get()
        .await?
        .execute(
            RECORD,
            &[
                &event.user_id,
                &event.account_id,
                &event.action.as_str(),
                &event.outcome.as_str(),
                &actor,
                &source.and_then(|s| s.ip.as_deref()),
                &source.and_then(|s| s.user_agent.as_deref()),
            ],
        )
        .await?;
    Ok(())
}

pub async fn page(
    pool: &Pool,
    user_id: &str,
    after: Option<Keyset>,
    limit: i64,
) -> Result<Paged<AuditEventRead>, DbError> {
    let client = pool.get().await?;
    let (at, id) = (after.map(|k| k.at), after.map(|k| k.id));
    // One more than asked tells whether a next page exists.
    let mut rows = (client
        .query(PAGE, &[&user_id, &at, &id, &(limit + 1)])
        .await)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or_default());
    let next = rows.last().filter(|_| more).map(|r| Keyset {
        at: r.get(6),
        id: r.get(7),
    });
    let items = rows
        .iter()
        .map(|r| {
            Ok(AuditEventRead {
                account_id: r.get(0),
                action: AuditAction::parse(r.get(1))
                    .ok_or(DbError::Unknown { column: "action" })?,
                outcome: match r.get::<_, &str>(2) {
                    "succeeded" => AuditOutcome::Succeeded,
                    "refused" => AuditOutcome::Refused,
                    _ => return Err(DbError::Unknown { column: "outcome" }),
                },
                actor: r.get(3),
                source_ip: r.get(4),
                user_agent: r.get(5),
                occurred_at: r.get(6),
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    Ok(Paged { items, next })
}

pub async fn user_accounts(pool: &Pool, user_id: &str) -> Result<Vec<Uuid>, DbError> {
    let rows = pool.get().await?.query(USER_ACCOUNTS, &[&user_id]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Deletes everything of the user's in the database, and records that it did.
pub async fn purge(pool: &Pool, user_id: &str) -> Result<(), DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    for statement in [
        PURGE_ACCOUNTS,
        PURGE_CREDENTIALS,
        PURGE_EVENTS,
        PURGE_KEYS,
        RECORD_PURGE,
    ] {
        tx.execute(statement, &[&user_id]).await?;
    }
    tx.commit().await?;
    Ok(())
}
