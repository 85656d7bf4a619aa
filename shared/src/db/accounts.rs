//! Linked accounts and their credentials. Every statement takes the user id: a row of another
//! user is indistinguishable from a missing one.

use deadpool_postgres::Pool;
use uuid::Uuid;

use super::DbError;
use crate::domain::accounts::{
    AccountRow, BrokerAccount, DueAccount, DueQuery, LinkedAccount, NewCredential, SyncedData,
};
use crate::secrets::Purpose;

const INSERT_CREDENTIAL: &str = "
    INSERT INTO tastytrade_credentials (id, user_id, environment, grant_kind)
    VALUES ($1, $2, $3, $4)";

const INSERT_SECRET: &str = "
    INSERT INTO tastytrade_credential_secrets
        (credential_id, purpose, scheme_version, kms_key_id, wrapped_key, nonce, ciphertext,
         expires_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// A re-link keeps the account's id and data, points it at the new grant, and lifts
/// NEEDS_REAUTH (the new grant works: it just listed this account).
const UPSERT_ACCOUNT: &str = "
    INSERT INTO tastytrade_accounts
        (user_id, credential_id, environment, account_number, nickname, account_type_name,
         margin_or_cash, is_closed, opened_at, closed_at, raw)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
    ON CONFLICT (user_id, environment, account_number) DO UPDATE SET
        credential_id = EXCLUDED.credential_id,
        nickname = EXCLUDED.nickname,
        account_type_name = EXCLUDED.account_type_name,
        margin_or_cash = EXCLUDED.margin_or_cash,
        is_closed = EXCLUDED.is_closed,
        opened_at = EXCLUDED.opened_at,
        closed_at = EXCLUDED.closed_at,
        raw = EXCLUDED.raw,
        unlinked_at = NULL,
        last_sync_status = CASE WHEN tastytrade_accounts.last_sync_status = 'NEEDS_REAUTH'
                                THEN 'PENDING' ELSE tastytrade_accounts.last_sync_status END,
        last_error = CASE WHEN tastytrade_accounts.last_sync_status = 'NEEDS_REAUTH'
                          THEN NULL ELSE tastytrade_accounts.last_error END
    RETURNING id, (xmax = 0) AS inserted";

/// Grants of the user that no account uses any more (replaced by a re-link) go, secrets and all.
const DELETE_ORPHAN_CREDENTIALS: &str = "
    DELETE FROM tastytrade_credentials c
    WHERE c.user_id = $1
      AND NOT EXISTS (SELECT 1 FROM tastytrade_accounts a WHERE a.credential_id = c.id)";

const LIST_ACCOUNTS: &str = "
    SELECT id, account_number, nickname, account_type_name, environment, last_sync_status,
           last_successful_sync_at, last_error, created_at,
           (SELECT count(*) FROM quarantined_rows q WHERE q.account_id = a.id)
    FROM tastytrade_accounts a
    WHERE user_id = $1 AND unlinked_at IS NULL
    ORDER BY created_at, account_number";

const FIND_ACCOUNT: &str = "
    SELECT id, account_number, nickname, account_type_name, environment, last_sync_status,
           last_successful_sync_at, last_error, created_at,
           (SELECT count(*) FROM quarantined_rows q WHERE q.account_id = a.id)
    FROM tastytrade_accounts a
    WHERE id = $1 AND user_id = $2 AND unlinked_at IS NULL";

/// One keyset page of the accounts a scheduler tick should sync: linked, open, not waiting for
/// a re-link, in the tick's slot (a hash of the id: two bytes of the random UUID, modulo the
/// ticks per hour), not already queued (a marker older than `$4` is a lost message and does
/// not count), and not synced since `$5` (NULL: no recency check).
const DUE_PAGE: &str = "
    SELECT id, user_id FROM tastytrade_accounts
    WHERE credential_id IS NOT NULL AND NOT is_closed AND unlinked_at IS NULL
      AND last_sync_status <> 'NEEDS_REAUTH'
      AND id > $1
      AND (get_byte(uuid_send(id), 14) * 256 + get_byte(uuid_send(id), 15)) % $2 = $3
      AND (sync_queued_at IS NULL OR sync_queued_at < $4)
      AND ($5::timestamptz IS NULL OR last_sync_at IS NULL OR last_sync_at < $5)
    ORDER BY id
    LIMIT $6";

const MARK_QUEUED: &str =
    "UPDATE tastytrade_accounts SET sync_queued_at = now() WHERE id = ANY($1)";

const LOCK_ACCOUNT: &str = "
    SELECT credential_id FROM tastytrade_accounts
    WHERE id = $1 AND user_id = $2 AND unlinked_at IS NULL
    FOR UPDATE";

const PURGE_ACCOUNT: &str = "DELETE FROM tastytrade_accounts WHERE id = $1 AND user_id = $2";

const DETACH_ACCOUNT: &str = "
    UPDATE tastytrade_accounts SET credential_id = NULL, unlinked_at = now()
    WHERE id = $1 AND user_id = $2";

/// Stores the grant, its sealed secrets and its accounts in one transaction.
pub async fn link(
    pool: &Pool,
    credential: &NewCredential,
    accounts: &[BrokerAccount],
) -> Result<Vec<LinkedAccount>, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let environment = credential.environment.as_str();
    tx.execute(
        INSERT_CREDENTIAL,
        &[
            &credential.id,
            &credential.user_id,
            &environment,
            &credential.kind.as_str(),
        ],
    )
    .await?;
    let insert_secret = tx.prepare_cached(INSERT_SECRET).await?;
    let kept = (credential.secrets.iter()).map(|(purpose, sealed)| (*purpose, sealed, None));
    let cached = (credential.access_token.iter())
        .map(|(sealed, expires_at)| (Purpose::AccessToken, sealed, Some(*expires_at)));
    for (purpose, sealed, expires_at) in kept.chain(cached) {
        tx.execute(
            &insert_secret,
            &[
                &credential.id,
                &purpose.as_str(),
                &sealed.scheme_version,
                &sealed.kms_key_id,
                &sealed.wrapped_key,
                &sealed.nonce,
                &sealed.ciphertext,
                &expires_at,
            ],
        )
        .await?;
    }
    let upsert = tx.prepare_cached(UPSERT_ACCOUNT).await?;
    let mut linked = Vec::with_capacity(accounts.len());
    for account in accounts {
        let row = tx
            .query_one(
                &upsert,
                &[
                    &credential.user_id,
                    &credential.id,
                    &environment,
                    &account.account_number,
                    &account.nickname,
                    &account.account_type_name,
                    &account.margin_or_cash,
                    &account.is_closed,
                    &account.opened_at,
                    &account.closed_at,
                    &account.raw,
                ],
            )
            .await?;
        linked.push(LinkedAccount {
            id: row.get(0),
            account_number: account.account_number.clone(),
            is_closed: account.is_closed,
            is_new: row.get(1),
        });
    }
    tx.execute(DELETE_ORPHAN_CREDENTIALS, &[&credential.user_id])
        .await?;
    tx.commit().await?;
    Ok(linked)
}

fn account_row(r: &tokio_postgres::Row) -> Result<AccountRow, DbError> {
    Ok(AccountRow {
        id: r.get(0),
        account_number: r.get(1),
        nickname: r.get(2),
        account_type_name: r.get(3),
        environment: super::environment(r.try_get(4)?)?,
        last_sync_status: super::account_status(r.try_get(5)?)?,
        last_successful_sync_at: r.get(6),
        last_error: r.get(7),
        created_at: r.get(8),
        quarantined_rows: u64::try_from(r.get::<_, i64>(9)).unwrap_or_default(),
    })
}

pub async fn list(pool: &Pool, user_id: &str) -> Result<Vec<AccountRow>, DbError> {
    let client = pool.get().await?;
    let rows = client.query(LIST_ACCOUNTS, &[&user_id]).await?;
    rows.iter().map(account_row).collect()
}

/// The user's linked account `account_id`; `None` for a missing, unlinked or foreign one.
pub async fn find(
    pool: &Pool,
    user_id: &str,
    account_id: Uuid,
) -> Result<Option<AccountRow>, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(FIND_ACCOUNT, &[&account_id, &user_id])
        .await?;
    row.as_ref().map(account_row).transpose()
}

/// The next page of due accounts after `after` (keyset pagination: constant cost per page
/// however many accounts there are).
pub async fn due_page(
    pool: &Pool,
    query: &DueQuery,
    after: Uuid,
    limit: i64,
) -> Result<Vec<DueAccount>, DbError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            DUE_PAGE,
            &[
                &after,
                &query.slots,
                &query.slot,
                &query.queued_before,
                &query.synced_before,
                &limit,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| DueAccount {
            id: r.get(0),
            user_id: r.get(1),
        })
        .collect())
}

/// Records that a sync of each account is on the queue, so ticks skip them until it finishes.
pub async fn mark_queued(pool: &Pool, account_ids: &[Uuid]) -> Result<(), DbError> {
    if account_ids.is_empty() {
        return Ok(());
    }
    pool.get()
        .await?
        .execute(MARK_QUEUED, &[&account_ids])
        .await?;
    Ok(())
}

/// Unlinks the user's account: its grant's secrets go when no other account uses the grant.
/// Returns false when the user has no such (linked) account.
pub async fn unlink(
    pool: &Pool,
    user_id: &str,
    account_id: Uuid,
    data: SyncedData,
) -> Result<bool, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    if tx
        .query_opt(LOCK_ACCOUNT, &[&account_id, &user_id])
        .await?
        .is_none()
    {
        return Ok(false);
    }
    let statement = match data {
        SyncedData::Keep => DETACH_ACCOUNT,
        SyncedData::Purge => PURGE_ACCOUNT,
    };
    tx.execute(statement, &[&account_id, &user_id]).await?;
    tx.execute(DELETE_ORPHAN_CREDENTIALS, &[&user_id]).await?;
    tx.commit().await?;
    Ok(true)
}
