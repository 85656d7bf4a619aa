//! Answers remembered under a user's `Idempotency-Key` for a day (see V18).

use deadpool_postgres::Pool;

use super::DbError;
use crate::domain::requests::Claim;

/// Keys this old are forgotten: their requests may run again.
const DROP_EXPIRED_OF_USER: &str = "
    DELETE FROM idempotency_keys
    WHERE user_id = $1 AND key = $2 AND created_at < now() - interval '24 hours'";

/// Claims the key for this request; no row when another request holds it already.
const CLAIM: &str = "
    INSERT INTO idempotency_keys (user_id, key, fingerprint) VALUES ($1, $2, $3)
    ON CONFLICT (user_id, key) DO NOTHING
    RETURNING true";

const HELD: &str = "
    SELECT fingerprint, status, body FROM idempotency_keys WHERE user_id = $1 AND key = $2";

const COMPLETE: &str = "
    UPDATE idempotency_keys SET status = $3, body = $4 WHERE user_id = $1 AND key = $2";

const RELEASE: &str = "DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2";

/// Every claim sweeps a few expired keys of anyone's, so the table stays a day deep without a
/// job of its own.
const SWEEP: &str = "
    DELETE FROM idempotency_keys WHERE ctid IN (
        SELECT ctid FROM idempotency_keys
        WHERE created_at < now() - interval '24 hours'
        LIMIT 100)";

pub async fn claim(
    pool: &Pool,
    user_id: &str,
    key: &str,
    fingerprint: &str,
) -> Result<Claim, DbError> {
    let client = pool.get().await?;
    client.execute(SWEEP, &[]).await?;
    client
        .execute(DROP_EXPIRED_OF_USER, &[&user_id, &key])
        .await?;
    if (client
        .query_opt(CLAIM, &[&user_id, &key, &fingerprint])
        .await?)
        .is_some()
    {
        return Ok(Claim::New);
    }
    let Some(held) = client.query_opt(HELD, &[&user_id, &key]).await? else {
        // Released between the two statements: the caller may simply try again.
        return Ok(Claim::InProgress);
    };
    if held.get::<_, &str>(0) != fingerprint {
        return Ok(Claim::Mismatch);
    }
    Ok(match (held.get::<_, Option<i16>>(1), held.get(2)) {
        (Some(status), Some(body)) => Claim::Replay {
            status: u16::try_from(status).unwrap_or(500),
            body,
        },
        _ => Claim::InProgress,
    })
}

pub async fn complete(
    pool: &Pool,
    user_id: &str,
    key: &str,
    status: u16,
    body: &str,
) -> Result<(), DbError> {
    let status = i16::try_from(status).unwrap_or(i16::MAX);
    pool.get()
        .await?
        .execute(COMPLETE, &[&user_id, &key, &status, &body])
        .await?;
    Ok(())
}

pub async fn release(pool: &Pool, user_id: &str, key: &str) -> Result<(), DbError> {
    pool.get()
        .await?
        .execute(RELEASE, &[&user_id, &key])
        .await?;
    Ok(())
}
