//! What the sync reads from and writes to Postgres: the account to sync and its sealed grant,
//! one batched upsert per page for each entity, and the account's status and watermarks.

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::{GenericClient, Pool};
use rust_decimal::Decimal;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::DbError;
use super::batch::{Columns, json};
use crate::domain::accounts::AccountStatus;
use crate::domain::accounts::{BalanceTarget, SyncAccount, trading_day};
use crate::domain::rows::{Gone, Quarantined, Rejection, Stored};
use crate::secrets::{Purpose, Sealed};
use crate::tastytrade::dxlink::PositionGreeks;
use crate::tastytrade::model::{
    Balance, ComplexOrder, Fill, Leg, NetLiqPoint, Order, Position, Record, TradingStatus,
    Transaction, Watchlist,
};
use crate::tastytrade::occ::{self, OptionSymbol};

const LOAD_ACCOUNT: &str = "
    SELECT a.id, a.user_id, a.account_number, a.environment, a.credential_id,
           c.grant_kind = 'personal', a.opened_at, a.transactions_synced_to, a.orders_synced_to,
           a.balance_snapshots_synced_to,
           (SELECT count(*) FROM quarantined_rows q WHERE q.account_id = a.id),
           (SELECT max(h.time) FROM net_liq_history h WHERE h.account_id = a.id)
    FROM tastytrade_accounts a JOIN tastytrade_credentials c ON c.id = a.credential_id
    WHERE a.id = $1 AND a.unlinked_at IS NULL";

// Grants are spread over shards by their id's last two bytes, as accounts are over slots.
const SHARD_ACCOUNTS: &str = "
    SELECT id FROM tastytrade_accounts
    WHERE credential_id IS NOT NULL AND NOT is_closed AND unlinked_at IS NULL
      AND last_sync_status <> 'NEEDS_REAUTH'
      AND (get_byte(uuid_send(credential_id), 14) * 256
           + get_byte(uuid_send(credential_id), 15)) % $1 = $2
    ORDER BY credential_id, id";

const STILL_LINKED: &str = "
    SELECT EXISTS (SELECT 1 FROM tastytrade_accounts
                   WHERE id = $1 AND credential_id = $2 AND unlinked_at IS NULL)";

const GRANT_COUNT: &str = "
    SELECT count(DISTINCT credential_id) FROM tastytrade_accounts
    WHERE credential_id IS NOT NULL AND NOT is_closed AND unlinked_at IS NULL
      AND last_sync_status <> 'NEEDS_REAUTH'";

const LOAD_SECRETS: &str = "
    SELECT purpose, scheme_version, kms_key_id, wrapped_key, nonce, ciphertext, expires_at
    FROM tastytrade_credential_secrets WHERE credential_id = $1";

const CACHE_TOKEN: &str = "
    INSERT INTO tastytrade_credential_secrets
        (credential_id, purpose, scheme_version, kms_key_id, wrapped_key, nonce, ciphertext, expires_at)
    VALUES ($1, $8, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (credential_id, purpose) DO UPDATE SET
        scheme_version = EXCLUDED.scheme_version, kms_key_id = EXCLUDED.kms_key_id,
        wrapped_key = EXCLUDED.wrapped_key, nonce = EXCLUDED.nonce,
        ciphertext = EXCLUDED.ciphertext, expires_at = EXCLUDED.expires_at";

/// Caches one of the grant's short-lived tokens, sealed, so the next sync within its lifetime
/// does not mint another one.
pub async fn cache_token(
    pool: &Pool,
    credential_id: Uuid,
    purpose: Purpose,
    sealed: &Sealed,
    expires_at: DateTime<Utc>,
) -> Result<(), DbError> {
    let client = pool.get().await?;
    client
        .execute(
            CACHE_TOKEN,
            &[
                &credential_id,
                &sealed.scheme_version,
                &sealed.kms_key_id,
                &sealed.wrapped_key,
                &sealed.nonce,
                &sealed.ciphertext,
                &expires_at,
                &purpose.as_str(),
            ],
        )
        .await?;
    Ok(())
}

/// The account and its sealed grant; `None` when it was unlinked or deleted since queued.
/// Whether the account is still linked through the grant `credential_id` (one indexed row).
pub async fn still_linked(
    pool: &Pool,
    account_id: Uuid,
    credential_id: Uuid,
) -> Result<bool, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_one(STILL_LINKED, &[&account_id, &credential_id])
        .await?;
    Ok(row.get(0))
}

/// How many grants have accounts to stream, as [`shard_accounts`] selects them.
pub async fn grant_count(pool: &Pool) -> Result<u64, DbError> {
    let client = pool.get().await?;
    let count: i64 = client.query_one(GRANT_COUNT, &[]).await?.get(0);
    Ok(u64::try_from(count).unwrap_or_default())
}

/// The linked accounts of the grants in `shard` of `shards`, loaded as a sync loads them,
/// grouped by grant.
pub async fn shard_accounts(
    pool: &Pool,
    shard: u32,
    shards: u32,
) -> Result<Vec<SyncAccount>, DbError> {
    let (shard, shards) = (
        i32::try_from(shard).unwrap_or(0),
        i32::try_from(shards).unwrap_or(1),
    );
    let ids: Vec<Uuid> = {
        let client = pool.get().await?;
        let rows = client
            .query(SHARD_ACCOUNTS, &[&shards.max(1), &shard])
            .await?;
        rows.iter().map(|r| r.get(0)).collect()
    };
    let mut accounts = Vec::with_capacity(ids.len());
    for id in ids {
        // One unlinked meanwhile is simply not served.
        if let Some(account) = load_account(pool, id).await? {
            accounts.push(account);
        }
    }
    Ok(accounts)
}

pub async fn load_account(pool: &Pool, account_id: Uuid) -> Result<Option<SyncAccount>, DbError> {
    let client = pool.get().await?;
    let Some(row) = client.query_opt(LOAD_ACCOUNT, &[&account_id]).await? else {
        return Ok(None);
    };
    let credential_id: Uuid = row.get(4);
    let mut refresh_token = None;
    let mut client_secret = None;
    let mut access_token = None;
    let mut quote_token = None;
    for s in client.query(LOAD_SECRETS, &[&credential_id]).await? {
        let sealed = Sealed {
            scheme_version: s.get(1),
            kms_key_id: s.get(2),
            wrapped_key: s.get(3),
            nonce: s.get(4),
            ciphertext: s.get(5),
        };
        match s.get::<_, &str>(0) {
            p if p == Purpose::RefreshToken.as_str() => refresh_token = Some(sealed),
            p if p == Purpose::ClientSecret.as_str() => client_secret = Some(sealed),
            p if p == Purpose::AccessToken.as_str() => {
                access_token = s
                    .get::<_, Option<DateTime<Utc>>>(6)
                    .map(|expires| (sealed, expires));
            }
            p if p == Purpose::QuoteToken.as_str() => {
                quote_token = s
                    .get::<_, Option<DateTime<Utc>>>(6)
                    .map(|expires| (sealed, expires));
            }
            _ => {}
        }
    }
    let Some(refresh_token) = refresh_token else {
        return Ok(None);
    };
    let environment = super::environment(row.try_get(3)?)?;
    Ok(Some(SyncAccount {
        id: row.get(0),
        user_id: row.get(1),
        account_number: row.get(2),
        environment,
        credential_id,
        personal_grant: row.get(5),
        opened_at: row.get(6),
        transactions_synced_to: row.get(7),
        orders_synced_to: row.get(8),
        snapshots_synced_to: row.get(9),
        quarantined: u64::try_from(row.get::<_, i64>(10)).unwrap_or_default(),
        net_liq_synced_to: row.get(11),
        refresh_token,
        client_secret,
        access_token,
        quote_token,
    }))
}

// Each write is conditional on the grant the sync used (see `SyncStore::mark_running`).
const MARK_RUNNING: &str = "
    UPDATE tastytrade_accounts SET last_sync_status = 'RUNNING', last_sync_at = now()
    WHERE id = $1 AND credential_id = $2";

const MARK_SUCCESS: &str = "
    UPDATE tastytrade_accounts SET last_sync_status = 'SUCCESS', last_successful_sync_at = now(),
        last_error = NULL, transactions_synced_to = $2, orders_synced_to = $3,
        balance_snapshots_synced_to = $4, sync_queued_at = NULL
    WHERE id = $1 AND credential_id = $5";

const STORE_TRADING_STATUS: &str = "
    UPDATE tastytrade_accounts SET day_trade_count = $2, is_pattern_day_trader = $3,
        is_closing_only = $4, is_frozen = $5, is_in_margin_call = $6,
        is_in_day_trade_equity_maintenance_call = $7, options_level = $8, pdt_reset_on = $9,
        trading_status_updated_at = $10, trading_status_read_at = $11, trading_status = $12
    WHERE id = $1";

/// A finished sync, good or bad, clears the queued marker: the account is due again.
/// A grant found dead (`NEEDS_REAUTH`) goes to the user's audit trail in the same statement.
const MARK_FAILED: &str = "
    WITH marked AS (
        UPDATE tastytrade_accounts SET last_sync_status = $2, last_error = $3, sync_queued_at = NULL
        WHERE id = $1 AND ($4::uuid IS NULL OR credential_id = $4)
        RETURNING id, user_id
    )
    INSERT INTO audit_events (user_id, account_id, action, outcome, actor)
    SELECT user_id, id, 'needs_reauth', 'succeeded', 'system' FROM marked
    WHERE $2 = 'NEEDS_REAUTH'";

pub async fn mark_running(
    pool: &Pool,
    account_id: Uuid,
    credential_id: Uuid,
) -> Result<(), DbError> {
    pool.get()
        .await?
        .execute(MARK_RUNNING, &[&account_id, &credential_id])
        .await?;
    Ok(())
}

pub async fn mark_success(
    pool: &Pool,
    account_id: Uuid,
    credential_id: Uuid,
    transactions_to: DateTime<Utc>,
    orders_to: DateTime<Utc>,
    snapshots_to: NaiveDate,
) -> Result<(), DbError> {
    pool.get()
        .await?
        .execute(
            MARK_SUCCESS,
            &[
                &account_id,
                &transactions_to,
                &orders_to,
                &snapshots_to,
                &credential_id,
            ],
        )
        .await?;
    Ok(())
}

pub async fn store_trading_status(
    pool: &Pool,
    account_id: Uuid,
    status: &Record<TradingStatus>,
    read_at: DateTime<Utc>,
) -> Result<(), DbError> {
    let s = &status.item;
    pool.get()
        .await?
        .execute(
            STORE_TRADING_STATUS,
            &[
                &account_id,
                &s.day_trade_count,
                &s.is_pattern_day_trader,
                &s.is_closing_only,
                &s.is_frozen,
                &s.is_in_margin_call,
                &s.is_in_day_trade_equity_maintenance_call,
                &s.options_level,
                &s.pdt_reset_on,
                &s.updated_at,
                &read_at,
                &json(&status.raw),
            ],
        )
        .await?;
    Ok(())
}

/// `status` is FAILED or NEEDS_REAUTH; `error` is shown to the user, so it names no internals.
pub async fn mark_failed(
    pool: &Pool,
    account_id: Uuid,
    credential_id: Option<Uuid>,
    status: AccountStatus,
    error: &str,
) -> Result<(), DbError> {
    let params: [&(dyn ToSql + Sync); 4] = [&account_id, &status.as_str(), &error, &credential_id];
    pool.get().await?.execute(MARK_FAILED, &params).await?;
    Ok(())
}

/// What a page of rows needs to be stored: the account it belongs to and the task writing it.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub account_id: Uuid,
    pub account_number: &'a str,
    /// The sync task writing, which marks the order legs and fills the broker dropped.
    pub task_id: Option<Uuid>,
}

impl Owner<'_> {
    /// The row's own account number, or the account's when the broker left it out.
    fn number(&self, own: &Option<String>) -> String {
        own.clone()
            .unwrap_or_else(|| self.account_number.to_owned())
    }
}

/// One page's batched upsert, which [`store_page`] runs in a transaction.
pub trait PageUpsert: Sized + Sync {
    /// What else the statement needs to know (for balances, their table).
    type Target: Copy + Send + Sync;

    fn upsert(
        client: &impl GenericClient,
        owner: Owner<'_>,
        rows: &[Record<Self>],
        target: Self::Target,
    ) -> impl Future<Output = Result<Stored, DbError>> + Send;
}

/// What runs after the page, in its transaction.
#[derive(Debug, Clone, Copy)]
pub enum Then<'a> {
    Commit,
    /// The page was the account's whole set of positions: the others are closed.
    DeletePositionsExcept(&'a [String]),
    /// The streamer said these positions closed.
    DeletePositions(&'a [String]),
}

/// Stores a page in one transaction. When a row breaks the batched statement (a value Postgres
/// refuses, a constraint), the page is stored again row by row, each under a savepoint, and
/// the rows that still fail are reported instead of failing the page.
pub async fn store_page<R: PageUpsert>(
    pool: &Pool,
    owner: Owner<'_>,
    rows: &[Record<R>],
    target: R::Target,
    then: Then<'_>,
) -> Result<Stored, DbError> {
    let mut client = pool.get().await?;
    {
        let tx = client.transaction().await?;
        match R::upsert(&tx, owner, rows, target).await {
            Ok(stored) => {
                then.run(&tx, owner).await?;
                tx.commit().await?;
                return Ok(stored);
            }
            Err(e) if e.is_bad_row() => {
                tracing::info!(error = %e, "a row broke its page; storing the page row by row");
                tx.rollback().await?;
            }
            Err(e) => return Err(e),
        }
    }
    let mut tx = client.transaction().await?;
    let mut stored = Stored::default();
    for (index, row) in rows.iter().enumerate() {
        let one = tx.savepoint("row").await?;
        match R::upsert(&one, owner, std::slice::from_ref(row), target).await {
            Ok(alone) => {
                one.commit().await?;
                stored.changed += alone.changed;
                stored
                    .rejected
                    .extend(alone.rejected.into_iter().map(|r| Rejection { index, ..r }));
            }
            Err(e) if e.is_bad_row() => {
                one.rollback().await?;
                stored.rejected.push(Rejection {
                    index,
                    reason: e.row_reason(),
                });
            }
            Err(e) => return Err(e),
        }
    }
    then.run(&tx, owner).await?;
    tx.commit().await?;
    Ok(stored)
}

impl Then<'_> {
    async fn run(self, tx: &impl GenericClient, owner: Owner<'_>) -> Result<(), DbError> {
        match self {
            Then::Commit => {}
            Then::DeletePositionsExcept(held) => {
                tx.execute(DELETE_CLOSED_POSITIONS, &[&owner.account_id, &held])
                    .await?;
            }
            Then::DeletePositions(closed) if !closed.is_empty() => {
                tx.execute(DELETE_POSITIONS, &[&owner.account_id, &closed])
                    .await?;
            }
            Then::DeletePositions(_) => {}
        }
        Ok(())
    }
}

/// The entities stored without a target, each by its function below.
macro_rules! page_upsert {
    ($($entity:ty => $upsert:ident),* $(,)?) => {$(
        impl PageUpsert for $entity {
            type Target = ();

            async fn upsert(
                client: &impl GenericClient,
                owner: Owner<'_>,
                rows: &[Record<Self>],
                (): (),
            ) -> Result<Stored, DbError> {
                $upsert(client, owner, rows).await
            }
        }
    )*};
}

page_upsert!(
    Transaction => upsert_transactions,
    Order => upsert_orders,
    Position => upsert_positions,
    NetLiqPoint => upsert_net_liq_history,
    ComplexOrder => upsert_complex_orders,
);

impl PageUpsert for Balance {
    type Target = BalanceTarget;

    async fn upsert(
        client: &impl GenericClient,
        owner: Owner<'_>,
        rows: &[Record<Self>],
        target: BalanceTarget,
    ) -> Result<Stored, DbError> {
        upsert_balances(client, owner, rows, target).await
    }
}

const WORKING_ORDERS: &str = "
    SELECT tastytrade_order_id FROM orders WHERE account_id = $1 AND removed_at IS NULL
      AND status NOT IN ('Filled', 'Cancelled', 'Rejected', 'Expired', 'Removed',
                         'Partially Removed')
      AND (received_at IS NULL OR received_at < $2)";

/// The account's stored orders in a status that can still change, received before `before`
/// (or at no known time).
pub async fn working_orders(
    pool: &Pool,
    account_id: Uuid,
    before: DateTime<Utc>,
) -> Result<Vec<i64>, DbError> {
    let rows = pool
        .get()
        .await?
        .query(WORKING_ORDERS, &[&account_id, &before])
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

// One entry per row key: a page can carry the same bad row twice.
const QUARANTINE: &str = "
    INSERT INTO quarantined_rows (account_id, entity, row_key, broker_id, reason, raw)
    SELECT DISTINCT ON (row_key) $1, $2, row_key, broker_id, reason, raw
    FROM (SELECT COALESCE(b::text, md5(r)) AS row_key, b AS broker_id, why AS reason, r AS raw
          FROM UNNEST($3::bigint[], $4::text[], $5::text[]) AS q(b, why, r)) AS rows
    ON CONFLICT (account_id, entity, row_key) DO UPDATE SET
        broker_id = EXCLUDED.broker_id, reason = EXCLUDED.reason, raw = EXCLUDED.raw,
        last_seen_at = now()";

const RELEASE: &str =
    "DELETE FROM quarantined_rows WHERE account_id = $1 AND entity = $2 AND broker_id = ANY($3)";

// Positions and balances are read whole on every sync; the other entities only by a full one.
const FORGET_UNSEEN: &str = "
    DELETE FROM quarantined_rows WHERE account_id = $1 AND last_seen_at < $2
      AND ($3 OR entity IN ('positions', 'balances'))";

/// Sets `rows` of `entity` aside, or notes that they were seen again.
pub async fn quarantine(
    pool: &Pool,
    account_id: Uuid,
    entity: &str,
    rows: &[Quarantined],
) -> Result<(), DbError> {
    let ids: Vec<Option<i64>> = rows.iter().map(|r| r.broker_id).collect();
    let reasons: Vec<&str> = rows.iter().map(|r| r.reason.as_str()).collect();
    let raws: Vec<String> = rows.iter().map(Quarantined::raw_text).collect();
    pool.get()
        .await?
        .execute(QUARANTINE, &[&account_id, &entity, &ids, &reasons, &raws])
        .await?;
    Ok(())
}

/// Rows of `entity` stored at last: their quarantine entries go.
pub async fn release(
    pool: &Pool,
    account_id: Uuid,
    entity: &str,
    broker_ids: &[i64],
) -> Result<u64, DbError> {
    Ok(pool
        .get()
        .await?
        .execute(RELEASE, &[&account_id, &entity, &broker_ids])
        .await?)
}

/// A completed sync forgets the entries it did not see again since `seen_since`: of every
/// entity after a full sync, else of the entities it reads whole.
pub async fn forget_unseen(
    pool: &Pool,
    account_id: Uuid,
    seen_since: DateTime<Utc>,
    full: bool,
) -> Result<u64, DbError> {
    Ok(pool
        .get()
        .await?
        .execute(FORGET_UNSEEN, &[&account_id, &seen_since, &full])
        .await?)
}

// A window holds up to tens of thousands of ids: `NOT IN (SELECT ...)` runs as one hashed
// subplan, where `<> ALL(array)` or an anti-join on an unnest the planner guesses at ten rows
// compare every row with every id.
const REMOVE_TRANSACTIONS: &str = "
    UPDATE transactions SET removed_at = now(), removed_by_task = $2
    WHERE account_id = $1 AND removed_at IS NULL AND executed_at BETWEEN $3 AND $4
      AND tastytrade_transaction_id NOT IN (SELECT UNNEST($5::bigint[]))";

/// Marks removed the orders `$picked` names, with their legs and fills; counts the orders.
macro_rules! remove_orders {
    ($picked:literal) => {
        concat!(
            "WITH gone AS (
                UPDATE orders SET removed_at = now(), removed_by_task = $2
                WHERE account_id = $1 AND removed_at IS NULL AND ",
            $picked,
            " RETURNING tastytrade_order_id),
            legs AS (
                UPDATE order_legs l SET removed_at = now(), removed_by_task = $2 FROM gone
                WHERE l.account_id = $1 AND l.tastytrade_order_id = gone.tastytrade_order_id
                  AND l.removed_at IS NULL),
            fills AS (
                UPDATE order_fills f SET removed_at = now(), removed_by_task = $2 FROM gone
                WHERE f.account_id = $1 AND f.tastytrade_order_id = gone.tastytrade_order_id
                  AND f.removed_at IS NULL)
            SELECT count(*) FROM gone"
        )
    };
}

const REMOVE_ORDERS_IN_RANGE: &str = remove_orders!(
    "received_at BETWEEN $3 AND $4 AND tastytrade_order_id NOT IN (SELECT UNNEST($5::bigint[]))"
);

const REMOVE_ORDERS_BY_ID: &str = remove_orders!("tastytrade_order_id = ANY($3)");

const REMOVE_BALANCES: &str = "
    UPDATE account_balances SET removed_at = now(), removed_by_task = $2
    WHERE account_id = $1 AND removed_at IS NULL AND NOT (currency = ANY($3))";

const REMOVE_COMPLEX_ORDERS: &str = "
    UPDATE complex_orders SET removed_at = now(), removed_by_task = $2
    WHERE account_id = $1 AND removed_at IS NULL
      AND NOT (tastytrade_complex_order_id = ANY($3))";

/// Marks removed, by `task_id`, the rows the broker no longer returns; how many (orders count
/// without their legs and fills).
pub async fn mark_removed(
    pool: &Pool,
    account_id: Uuid,
    task_id: Uuid,
    gone: Gone<'_>,
) -> Result<u64, DbError> {
    let client = pool.get().await?;
    let removed = match gone {
        Gone::Transactions { from, to, seen } => {
            let params: [&(dyn ToSql + Sync); 5] = [&account_id, &task_id, &from, &to, &seen];
            client.execute(REMOVE_TRANSACTIONS, &params).await?
        }
        Gone::Orders { from, to, seen } => {
            let params: [&(dyn ToSql + Sync); 5] = [&account_id, &task_id, &from, &to, &seen];
            count(client.query_one(REMOVE_ORDERS_IN_RANGE, &params).await?)
        }
        Gone::OrdersById(ids) => {
            let params: [&(dyn ToSql + Sync); 3] = [&account_id, &task_id, &ids];
            count(client.query_one(REMOVE_ORDERS_BY_ID, &params).await?)
        }
        Gone::Balances { seen } => {
            let params: [&(dyn ToSql + Sync); 3] = [&account_id, &task_id, &seen];
            client.execute(REMOVE_BALANCES, &params).await?
        }
        Gone::ComplexOrders { seen } => {
            let params: [&(dyn ToSql + Sync); 3] = [&account_id, &task_id, &seen];
            client.execute(REMOVE_COMPLEX_ORDERS, &params).await?
        }
    };
    Ok(removed)
}

fn count(row: tokio_postgres::Row) -> u64 {
    u64::try_from(row.get::<_, i64>(0)).unwrap_or_default()
}

/// Upserts one page of transactions.
async fn upsert_transactions(
    client: &impl GenericClient,
    owner: Owner<'_>,
    rows: &[Record<Transaction>],
) -> Result<Stored, DbError> {
    let mut c = Columns::new("transactions", rows.iter().map(|r| &r.item));
    c.constant("account_id", "uuid", owner.account_id)
        .col("tastytrade_transaction_id", "bigint", |x| x.id)
        .col("account_number", "text", |x| {
            owner.number(&x.account_number)
        })
        .required("transaction_type", "text", |x| x.transaction_type.clone())
        .text("transaction_sub_type", |x| {
            x.transaction_sub_type.as_deref()
        })
        .text("description", |x| x.description.as_deref())
        .required("executed_at", "timestamptz", executed_at)
        .required("transaction_date", "date", |x| {
            x.transaction_date
                .or_else(|| executed_at(x).map(|t| t.date_naive()))
        })
        .numeric("value", Transaction::signed_value)
        .effect("value_effect", |x| x.value_effect)
        .numeric("net_value", Transaction::signed_net_value)
        .effect("net_value_effect", |x| x.net_value_effect)
        .col("is_estimated_fee", "boolean", |x| {
            x.is_estimated_fee.unwrap_or(false)
        })
        .text("symbol", |x| x.symbol.as_deref())
        .text("underlying_symbol", |x| x.underlying_symbol.as_deref())
        .text("instrument_type", |x| x.instrument_type.as_deref())
        .text("action", |x| x.action.as_deref())
        .numeric("quantity", |x| x.quantity)
        .numeric("price", |x| x.price)
        .text("currency", |x| x.currency.as_deref())
        .col("order_id", "bigint", |x| x.order_id)
        .col("leg_count", "integer", |x| {
            x.leg_count.and_then(|n| i32::try_from(n).ok())
        })
        .col("reverses_id", "bigint", |x| x.reverses_id)
        .col("cost_basis_reconciliation_date", "date", |x| {
            x.cost_basis_reconciliation_date
        })
        .col("broker_created_at", "timestamptz", |x| x.created_at)
        .raw(rows)
        .present();
    transaction_fees(&mut c);
    transaction_execution(&mut c);
    let rejected = c.drop_rejected();
    let changed = execute(client, &c, &["account_id", "tastytrade_transaction_id"]).await?;
    Ok(Stored { changed, rejected })
}

/// The fees and charges, each signed by its own `*-effect`.
fn transaction_fees(c: &mut Columns<'_, Transaction>) {
    c.numeric("commission", Transaction::signed_commission)
        .effect("commission_effect", |x| x.commission_effect)
        .numeric("clearing_fees", Transaction::signed_clearing_fees)
        .effect("clearing_fees_effect", |x| x.clearing_fees_effect)
        .numeric("regulatory_fees", Transaction::signed_regulatory_fees)
        .effect("regulatory_fees_effect", |x| x.regulatory_fees_effect)
        .numeric(
            "proprietary_index_option_fees",
            Transaction::signed_proprietary_index_option_fees,
        )
        .effect("proprietary_index_option_fees_effect", |x| {
            x.proprietary_index_option_fees_effect
        })
        .numeric(
            "currency_conversion_fees",
            Transaction::signed_currency_conversion_fees,
        )
        .effect("currency_conversion_fees_effect", |x| {
            x.currency_conversion_fees_effect
        })
        .numeric("other_charge", Transaction::signed_other_charge)
        .effect("other_charge_effect", |x| x.other_charge_effect)
        .text("other_charge_description", |x| {
            x.other_charge_description.as_deref()
        });
}

/// Where and how the trade was executed, as the exchange reported it.
fn transaction_execution(c: &mut Columns<'_, Transaction>) {
    c.text("exec_id", |x| x.exec_id.as_deref())
        .text("ext_exec_id", |x| x.ext_exec_id.as_deref())
        .text("ext_group_id", |x| x.ext_group_id.as_deref())
        .text("ext_group_fill_id", |x| x.ext_group_fill_id.as_deref())
        .text("ext_exchange_order_number", |x| {
            x.ext_exchange_order_number.as_deref()
        })
        .col("ext_global_order_number", "bigint", |x| {
            x.ext_global_order_number
        })
        .text("exchange", |x| x.exchange.as_deref())
        .text("destination_venue", |x| x.destination_venue.as_deref())
        .numeric("agency_price", |x| x.agency_price)
        .numeric("principal_price", |x| x.principal_price);
}

const CLAIM_WATCHLISTS: &str = "
    UPDATE tastytrade_credentials SET watchlists_read_at = now()
    WHERE id = $1 AND (watchlists_read_at IS NULL OR watchlists_read_at < $2) RETURNING id";

/// Whether this sync reads the grant's watchlists: none did since `since` (the claim is now).
pub async fn claim_watchlists(
    pool: &Pool,
    credential_id: Uuid,
    since: DateTime<Utc>,
) -> Result<bool, DbError> {
    let client = pool.get().await?;
    let claimed = client
        .query_opt(CLAIM_WATCHLISTS, &[&credential_id, &since])
        .await?;
    Ok(claimed.is_some())
}

// The watchlists whose row changed come back, and only their entries are rewritten.
const UPSERT_WATCHLISTS: &str = "
    INSERT INTO watchlists (credential_id, name, group_name, order_index, raw)
    SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::bigint[], $5::json[])
    ON CONFLICT (credential_id, name) DO UPDATE SET group_name = EXCLUDED.group_name,
        order_index = EXCLUDED.order_index, raw = EXCLUDED.raw
    WHERE (watchlists.group_name, watchlists.order_index, watchlists.raw::text)
          IS DISTINCT FROM (EXCLUDED.group_name, EXCLUDED.order_index, EXCLUDED.raw::text)
    RETURNING name";

const DELETE_WATCHLIST_ENTRIES: &str = "
    DELETE FROM watchlist_entries WHERE credential_id = $1 AND watchlist_name = ANY($2)";

const INSERT_WATCHLIST_ENTRIES: &str = "
    INSERT INTO watchlist_entries (credential_id, watchlist_name, position, symbol, instrument_type)
    SELECT $1, * FROM UNNEST($2::text[], $3::int[], $4::text[], $5::text[])";

const DELETE_UNLISTED_WATCHLISTS: &str = "
    DELETE FROM watchlists WHERE credential_id = $1 AND NOT (name = ANY($2))";

/// The customer's watchlists replace the grant's in one transaction: changed ones rewritten
/// with their entries, those the broker no longer lists deleted unless `keep_unlisted` (some
/// could not be read, so their names are unknown). How many were written or deleted.
pub async fn replace_watchlists(
    pool: &Pool,
    credential_id: Uuid,
    rows: &[Record<Watchlist>],
    keep_unlisted: bool,
) -> Result<u64, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let names: Vec<&str> = rows.iter().map(|r| r.item.name.as_str()).collect();
    let groups: Vec<Option<&str>> = (rows.iter())
        .map(|r| r.item.group_name.as_deref())
        .collect();
    let orders: Vec<Option<i64>> = rows.iter().map(|r| r.item.order_index).collect();
    let raws: Vec<_> = rows.iter().map(|r| json(&r.raw)).collect();
    let changed: Vec<String> = (tx
        .query(
            UPSERT_WATCHLISTS,
            &[&credential_id, &names, &groups, &orders, &raws],
        )
        .await?)
        .iter()
        .map(|r| r.get(0))
        .collect();
    tx.execute(DELETE_WATCHLIST_ENTRIES, &[&credential_id, &changed])
        .await?;
    let (mut lists, mut positions, mut symbols, mut kinds) = (vec![], vec![], vec![], vec![]);
    for row in rows.iter().filter(|r| changed.contains(&r.item.name)) {
        let entries = row.item.watchlist_entries.iter().flatten();
        for (position, entry) in (0_i32..).zip(entries) {
            lists.push(row.item.name.as_str());
            positions.push(position);
            symbols.push(entry.symbol.as_str());
            kinds.push(entry.instrument_type.as_deref());
        }
    }
    let params: [&(dyn ToSql + Sync); 5] = [&credential_id, &lists, &positions, &symbols, &kinds];
    tx.execute(INSERT_WATCHLIST_ENTRIES, &params).await?;
    let deleted = if keep_unlisted {
        0
    } else {
        tx.execute(DELETE_UNLISTED_WATCHLISTS, &[&credential_id, &names])
            .await?
    };
    tx.commit().await?;
    Ok(changed.len() as u64 + deleted)
}

// Only the positions the feed answered for are touched; the others keep their greeks and the
// time those were read.
const STORE_GREEKS: &str = "
    UPDATE positions p SET theoretical_price = g.price, implied_volatility = g.volatility,
        delta = g.delta, gamma = g.gamma, theta = g.theta, rho = g.rho, vega = g.vega,
        greeks_updated_at = g.time
    FROM UNNEST($2::text[], $3::timestamptz[], $4::numeric[], $5::numeric[], $6::numeric[],
                $7::numeric[], $8::numeric[], $9::numeric[], $10::numeric[])
        AS g(symbol, time, price, volatility, delta, gamma, theta, rho, vega)
    WHERE p.account_id = $1 AND p.symbol = g.symbol
      AND (p.theoretical_price, p.implied_volatility, p.delta, p.gamma, p.theta, p.rho, p.vega,
           p.greeks_updated_at)
          IS DISTINCT FROM (g.price, g.volatility, g.delta, g.gamma, g.theta, g.rho, g.vega, g.time)";

pub async fn store_greeks(
    pool: &Pool,
    account_id: Uuid,
    rows: &[PositionGreeks],
) -> Result<u64, DbError> {
    let column = |f: fn(&PositionGreeks) -> Option<Decimal>| rows.iter().map(f).collect::<Vec<_>>();
    let symbols: Vec<&str> = rows.iter().map(|r| r.symbol.as_str()).collect();
    let times: Vec<DateTime<Utc>> = rows.iter().map(|r| r.time).collect();
    let (price, volatility) = (column(|r| r.greeks.price), column(|r| r.greeks.volatility));
    let (delta, gamma) = (column(|r| r.greeks.delta), column(|r| r.greeks.gamma));
    let (theta, rho, vega) = (
        column(|r| r.greeks.theta),
        column(|r| r.greeks.rho),
        column(|r| r.greeks.vega),
    );
    let params: [&(dyn ToSql + Sync); 10] = [
        &account_id,
        &symbols,
        &times,
        &price,
        &volatility,
        &delta,
        &gamma,
        &theta,
        &rho,
        &vega,
    ];
    Ok(pool.get().await?.execute(STORE_GREEKS, &params).await?)
}

/// Upserts complex orders by id (their child orders are stored as orders).
async fn upsert_complex_orders(
    client: &impl GenericClient,
    owner: Owner<'_>,
    rows: &[Record<ComplexOrder>],
) -> Result<Stored, DbError> {
    let mut c = Columns::new("complex_orders", rows.iter().map(|r| &r.item));
    c.constant("account_id", "uuid", owner.account_id)
        .col("tastytrade_complex_order_id", "bigint", |x| x.id)
        .col("account_number", "text", |x| {
            owner.number(&x.account_number)
        })
        .text("type", |x| x.kind.as_deref())
        .timestamptz("terminal_at", |x| x.terminal_at)
        .numeric("ratio_price_threshold", |x| x.ratio_price_threshold)
        .text("ratio_price_comparator", |x| {
            x.ratio_price_comparator.as_deref()
        })
        .col(
            "ratio_price_is_threshold_based_on_notional",
            "boolean",
            |x| x.ratio_price_is_threshold_based_on_notional,
        )
        .col("trigger_order_id", "bigint", ComplexOrder::trigger_order_id)
        .col("order_ids", "jsonb", |x| serde_json::json!(x.order_ids()))
        .raw(rows)
        .present();
    let changed = execute(client, &c, &["account_id", "tastytrade_complex_order_id"]).await?;
    Ok(Stored::changed(changed))
}

/// Upserts net-liq bars by their time.
async fn upsert_net_liq_history(
    client: &impl GenericClient,
    owner: Owner<'_>,
    rows: &[Record<NetLiqPoint>],
) -> Result<Stored, DbError> {
    let mut c = Columns::new("net_liq_history", rows.iter().map(|r| &r.item));
    c.constant("account_id", "uuid", owner.account_id)
        .col("time", "timestamptz", |x| x.time)
        .numeric("open", |x| x.open)
        .numeric("high", |x| x.high)
        .numeric("low", |x| x.low)
        .numeric("close", |x| x.close)
        .numeric("pending_cash_open", |x| x.pending_cash_open)
        .numeric("pending_cash_high", |x| x.pending_cash_high)
        .numeric("pending_cash_low", |x| x.pending_cash_low)
        .numeric("pending_cash_close", |x| x.pending_cash_close)
        .numeric("total_open", |x| x.total_open)
        .numeric("total_high", |x| x.total_high)
        .numeric("total_low", |x| x.total_low)
        .numeric("total_close", |x| x.total_close)
        .raw(rows);
    let changed = execute(client, &c, &["account_id", "time"]).await?;
    Ok(Stored::changed(changed))
}

/// A transaction without an execution time is dated by its trade date, then by its creation;
/// with none of the three it has no time at all.
fn executed_at(t: &Transaction) -> Option<DateTime<Utc>> {
    t.executed_at.or(t.created_at).or_else(|| {
        t.transaction_date
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc())
    })
}

/// Runs the upsert of `columns`; the rows inserted or changed.
async fn execute<R>(
    client: &impl GenericClient,
    columns: &Columns<'_, R>,
    key: &[&str],
) -> Result<u64, DbError> {
    if columns.len() == 0 {
        return Ok(0);
    }
    let batch = columns.batch();
    let statement = client
        .prepare_cached(&batch.upsert_sql(columns.table(), key))
        .await?;
    Ok(client.execute(&statement, &batch.params()).await?)
}

/// Upserts one page of orders with their legs and fills. An order whose leg or fill lacks a
/// required value is rejected whole, so no order is stored with part of its legs.
async fn upsert_orders(
    client: &impl GenericClient,
    owner: Owner<'_>,
    rows: &[Record<Order>],
) -> Result<Stored, DbError> {
    let mut orders = Columns::new("orders", rows.iter().map(|r| &r.item));
    orders
        .constant("account_id", "uuid", owner.account_id)
        .col("tastytrade_order_id", "bigint", |x| x.id)
        .col("account_number", "text", |x| {
            owner.number(&x.account_number)
        })
        .required("status", "text", |x| x.status.clone())
        .text("order_type", |o| o.order_type.as_deref())
        .text("time_in_force", |o| o.time_in_force.as_deref())
        .numeric("size", |o| o.size)
        .text("underlying_symbol", |o| o.underlying_symbol.as_deref())
        .text("underlying_instrument_type", |o| {
            o.underlying_instrument_type.as_deref()
        })
        .numeric("price", Order::signed_price)
        .effect("price_effect", |o| o.price_effect)
        .numeric("value", Order::signed_value)
        .effect("value_effect", |o| o.value_effect)
        .numeric("stop_trigger", |o| o.stop_trigger)
        .col("gtc_date", "date", |x| x.gtc_date)
        .col("cancellable", "boolean", |x| x.cancellable)
        .col("editable", "boolean", |x| x.editable)
        .col("edited", "boolean", |x| x.edited)
        .text("contingent_status", |o| o.contingent_status.as_deref())
        .text("confirmation_status", |o| o.confirmation_status.as_deref())
        .text("reject_reason", |o| o.reject_reason.as_deref())
        .timestamptz("received_at", |o| o.received_at)
        .timestamptz("in_flight_at", |o| o.in_flight_at)
        .timestamptz("live_at", |o| o.live_at)
        .timestamptz("cancelled_at", |o| o.cancelled_at)
        .timestamptz("terminal_at", |o| o.terminal_at)
        .timestamptz("broker_updated_at", |o| o.updated_at)
        .col("replaces_order_id", "bigint", |x| x.replaces_order_id)
        .col("replacing_order_id", "bigint", |x| x.replacing_order_id)
        .col("complex_order_id", "bigint", |x| x.complex_order_id)
        .text("complex_order_tag", |o| o.complex_order_tag.as_deref())
        .text("source", |o| o.source.as_deref())
        .text("external_identifier", |o| o.external_identifier.as_deref())
        .raw(rows)
        .present();
    let legs: Vec<OrderLeg<'_>> = rows
        .iter()
        .enumerate()
        .flat_map(|(row, r)| {
            let keys = leg_keys(&r.item.legs);
            (r.item.legs.iter().zip(keys).enumerate()).map(move |(i, (leg, key))| OrderLeg {
                row,
                order_id: r.item.id,
                index: i16::try_from(i).unwrap_or(i16::MAX),
                key,
                leg,
            })
        })
        .collect();
    let fills: Vec<(&OrderLeg<'_>, &Fill)> = legs
        .iter()
        .flat_map(|leg| leg.leg.fills.iter().map(move |f| (leg, f)))
        .collect();
    let mut leg_columns = leg_columns(owner, &legs);
    let mut fill_columns = fill_columns(owner, &fills);

    // The orders rejected for themselves, their legs or their fills, first reason kept.
    let mut rejected = orders.rejected();
    let nested = (leg_columns.rejected().into_iter()).map(|r| (legs[r.index].row, r.reason));
    let nested = nested
        .chain((fill_columns.rejected().into_iter()).map(|r| (fills[r.index].0.row, r.reason)));
    for (row, reason) in nested {
        if !rejected.iter().any(|r| r.index == row) {
            rejected.push(Rejection { index: row, reason });
        }
    }
    rejected.sort_by_key(|r| r.index);
    let kept = |row: usize| !rejected.iter().any(|r| r.index == row);
    orders.keep(&(0..rows.len()).map(kept).collect::<Vec<_>>());
    leg_columns.keep(&legs.iter().map(|l| kept(l.row)).collect::<Vec<_>>());
    fill_columns.keep(&fills.iter().map(|(l, _)| kept(l.row)).collect::<Vec<_>>());

    // Only an order stored before this page can have legs and fills its payload no longer
    // carries. In a full sync none was, and looking for them was a third of the orders' time
    // in Postgres (each page's legs and fills read back and hashed against the page's keys).
    let order_ids: Vec<i64> = (rows.iter().enumerate())
        .filter(|(i, _)| kept(*i))
        .map(|(_, r)| r.item.id)
        .collect();
    let stored_before: Vec<i64> = (client.query(STORED_ORDERS, &[&owner.account_id, &order_ids]))
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();

    let mut changed = execute(client, &orders, &["account_id", "tastytrade_order_id"]).await?;
    let key = ["account_id", "tastytrade_order_id", "leg_key"];
    changed += execute(client, &leg_columns, &key).await?;
    let key = ["account_id", "tastytrade_order_id", "leg_key", "fill_id"];
    changed += execute(client, &fill_columns, &key).await?;
    if stored_before.is_empty() {
        return Ok(Stored { changed, rejected });
    }

    // The stored orders' legs and fills that their payloads no longer carry.
    let kept_legs: Vec<&OrderLeg<'_>> = legs.iter().filter(|l| kept(l.row)).collect();
    let leg_orders: Vec<i64> = kept_legs.iter().map(|l| l.order_id).collect();
    let leg_keys: Vec<&str> = kept_legs.iter().map(|l| l.key.as_str()).collect();
    let kept_fills: Vec<&LegFill<'_>> = fills.iter().filter(|(l, _)| kept(l.row)).collect();
    let fill_orders: Vec<i64> = kept_fills.iter().map(|(l, _)| l.order_id).collect();
    let fill_legs: Vec<&str> = kept_fills.iter().map(|(l, _)| l.key.as_str()).collect();
    let fill_ids: Vec<&str> = kept_fills.iter().map(|(_, f)| f.fill_id.as_str()).collect();
    let (account, task) = (&owner.account_id, &owner.task_id);
    client
        .execute(
            REMOVE_DROPPED_LEGS,
            &[account, task, &stored_before, &leg_orders, &leg_keys],
        )
        .await?;
    client
        .execute(
            REMOVE_DROPPED_FILLS,
            &[
                account,
                task,
                &stored_before,
                &fill_orders,
                &fill_legs,
                &fill_ids,
            ],
        )
        .await?;
    Ok(Stored { changed, rejected })
}

const STORED_ORDERS: &str = "
    SELECT tastytrade_order_id FROM orders
    WHERE account_id = $1 AND tastytrade_order_id = ANY($2)";

// As in `REMOVE_TRANSACTIONS`, the page's keys are a hashed `NOT IN` subplan. An anti-join
// against the unnest, planned while the tables were still empty (a full sync's first pages, and
// the cached statement keeps that plan), ran as a nested loop: every leg of the page compared
// with every key, each through a whole-row copy, which was most of Postgres's time in an
// orders-heavy full sync.
const REMOVE_DROPPED_LEGS: &str = "
    UPDATE order_legs l SET removed_at = now(), removed_by_task = $2
    WHERE l.account_id = $1 AND l.tastytrade_order_id = ANY($3) AND l.removed_at IS NULL
      AND (l.tastytrade_order_id, l.leg_key) NOT IN
          (SELECT * FROM UNNEST($4::bigint[], $5::text[]))";

const REMOVE_DROPPED_FILLS: &str = "
    UPDATE order_fills f SET removed_at = now(), removed_by_task = $2
    WHERE f.account_id = $1 AND f.tastytrade_order_id = ANY($3) AND f.removed_at IS NULL
      AND (f.tastytrade_order_id, f.leg_key, f.fill_id) NOT IN
          (SELECT * FROM UNNEST($4::bigint[], $5::text[], $6::text[]))";

/// An order's leg: the order's row in its page, its id, the leg's index and key in it, the
/// leg.
struct OrderLeg<'a> {
    row: usize,
    order_id: i64,
    index: i16,
    key: String,
    leg: &'a Leg,
}

/// Each leg's identity within its order: its symbol and action, and for a leg that repeats
/// both, its turn among the repeats. Not its place in the array, which shifts when the broker
/// drops a leg.
fn leg_keys(legs: &[Leg]) -> Vec<String> {
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    (legs.iter())
        .map(|leg| {
            let base = format!(
                "{}|{}",
                leg.symbol.as_deref().unwrap_or_default(),
                leg.action.as_deref().unwrap_or_default()
            );
            let turn = seen.entry(base.clone()).or_default();
            *turn += 1;
            if *turn == 1 {
                base
            } else {
                format!("{base}#{turn}")
            }
        })
        .collect()
}

fn leg_columns<'r>(owner: Owner<'_>, legs: &'r [OrderLeg<'r>]) -> Columns<'r, OrderLeg<'r>> {
    let mut c = Columns::new("order_legs", legs);
    c.constant("account_id", "uuid", owner.account_id)
        .col("tastytrade_order_id", "bigint", |l| l.order_id)
        .col("leg_key", "text", |l| l.key.clone())
        .col("leg_index", "smallint", |l| l.index)
        .required("symbol", "text", |l| l.leg.symbol.clone())
        .text("instrument_type", |l| l.leg.instrument_type.as_deref())
        .text("action", |l| l.leg.action.as_deref())
        .numeric("quantity", |l| l.leg.quantity)
        .numeric("remaining_quantity", |l| l.leg.remaining_quantity)
        .present();
    c
}

type LegFill<'r> = (&'r OrderLeg<'r>, &'r Fill);

fn fill_columns<'r>(owner: Owner<'_>, fills: &'r [LegFill<'r>]) -> Columns<'r, LegFill<'r>> {
    let mut c = Columns::new("order_fills", fills);
    c.constant("account_id", "uuid", owner.account_id)
        .col("tastytrade_order_id", "bigint", |f| f.0.order_id)
        .col("leg_key", "text", |f| f.0.key.clone())
        .col("fill_id", "text", |f| f.1.fill_id.clone())
        .required("quantity", "numeric", |f| f.1.quantity)
        .numeric("fill_price", |f| f.1.fill_price)
        .required("filled_at", "timestamptz", |f| f.1.filled_at)
        .text("destination_venue", |f| f.1.destination_venue.as_deref())
        .text("ext_group_fill_id", |f| f.1.ext_group_fill_id.as_deref())
        .text("ext_exec_id", |f| f.1.ext_exec_id.as_deref())
        .present();
    c
}

/// The option a position's symbol names, when it is an OCC option symbol.
fn occ_option(position: &Position) -> Option<occ::OccOption> {
    match occ::parse(&position.symbol) {
        Some(OptionSymbol::Occ(option)) => Some(option),
        _ => None,
    }
}

const DELETE_CLOSED_POSITIONS: &str =
    "DELETE FROM positions WHERE account_id = $1 AND NOT (symbol = ANY($2))";
const DELETE_POSITIONS: &str = "DELETE FROM positions WHERE account_id = $1 AND symbol = ANY($2)";

/// Upserts the account's positions (their replace is [`store_page`] with
/// [`Then::DeletePositionsExcept`]).
async fn upsert_positions(
    client: &impl GenericClient,
    owner: Owner<'_>,
    rows: &[Record<Position>],
) -> Result<Stored, DbError> {
    let mut c = Columns::new("positions", rows.iter().map(|r| &r.item));
    c.constant("account_id", "uuid", owner.account_id)
        .col("symbol", "text", |x| x.symbol.clone())
        .col("account_number", "text", |x| {
            owner.number(&x.account_number)
        })
        .text("underlying_symbol", |p| p.underlying_symbol.as_deref())
        .text("instrument_type", |p| p.instrument_type.as_deref())
        .required("quantity", "numeric", Position::signed_quantity)
        .text("quantity_direction", |p| p.quantity_direction.as_deref())
        .numeric("multiplier", |p| p.multiplier)
        .numeric("average_open_price", |p| p.average_open_price)
        .numeric("average_daily_market_close_price", |p| {
            p.average_daily_market_close_price
        })
        .numeric("average_yearly_market_close_price", |p| {
            p.average_yearly_market_close_price
        })
        .numeric("close_price", |p| p.close_price)
        .numeric("mark", |p| p.mark)
        .numeric("mark_price", |p| p.mark_price)
        .effect("cost_effect", |p| p.cost_effect)
        .numeric("realized_day_gain", Position::signed_realized_day_gain)
        .effect("realized_day_gain_effect", |p| p.realized_day_gain_effect)
        .col("realized_day_gain_date", "date", |x| {
            x.realized_day_gain_date
        })
        .numeric("realized_today", Position::signed_realized_today)
        .effect("realized_today_effect", |p| p.realized_today_effect)
        .col("realized_today_date", "date", |x| x.realized_today_date)
        .numeric("restricted_quantity", |p| p.restricted_quantity)
        .col("is_suppressed", "boolean", |x| x.is_suppressed)
        .col("is_frozen", "boolean", |x| x.is_frozen)
        .col("expires_at", "timestamptz", |x| x.expires_at)
        .col("option_root", "text", |p| occ_option(p).map(|o| o.root))
        .date("option_expiration", |p| occ_option(p).map(|o| o.expiration))
        .col("option_type", "text", |p| {
            occ_option(p).map(|o| o.kind.as_char().to_owned())
        })
        .numeric("strike_price", |p| occ_option(p).map(|o| o.strike))
        .col("broker_created_at", "timestamptz", |x| x.created_at)
        .col("broker_updated_at", "timestamptz", |x| x.updated_at)
        .raw(rows);
    let rejected = c.drop_rejected();
    let changed = execute(client, &c, &["account_id", "symbol"]).await?;
    Ok(Stored { changed, rejected })
}

/// Upserts balances (current, or one page of snapshots).
async fn upsert_balances(
    client: &impl GenericClient,
    owner: Owner<'_>,
    rows: &[Record<Balance>],
    target: BalanceTarget,
) -> Result<Stored, DbError> {
    let table = match target {
        BalanceTarget::Current => "account_balances",
        BalanceTarget::BrokerSnapshot | BalanceTarget::Capture(_) => "account_balance_snapshots",
    };
    let mut c = Columns::new(table, rows.iter().map(|r| &r.item));
    c.constant("account_id", "uuid", owner.account_id)
        .required("currency", "text", |x| x.currency.clone())
        .col("account_number", "text", |x| {
            owner.number(&x.account_number)
        })
        .numeric("cash_balance", |x| x.cash_balance)
        .numeric("net_liquidating_value", |x| x.net_liquidating_value)
        .numeric("long_equity_value", |x| x.long_equity_value)
        .numeric("short_equity_value", |x| x.short_equity_value)
        .numeric("long_derivative_value", |x| x.long_derivative_value)
        .numeric("short_derivative_value", |x| x.short_derivative_value)
        .numeric("margin_equity", |x| x.margin_equity)
        .numeric("equity_buying_power", |x| x.equity_buying_power)
        .numeric("derivative_buying_power", |x| x.derivative_buying_power)
        .numeric("day_trading_buying_power", |x| x.day_trading_buying_power)
        .numeric("maintenance_requirement", |x| x.maintenance_requirement)
        .numeric("pending_cash", Balance::signed_pending_cash)
        .effect("pending_cash_effect", |x| x.pending_cash_effect)
        .raw(rows);
    match target {
        BalanceTarget::Current => {
            c.numeric("available_trading_funds", |x| x.available_trading_funds)
                .numeric("cash_available_to_withdraw", |x| {
                    x.cash_available_to_withdraw
                })
                .numeric("maintenance_excess", |x| x.maintenance_excess)
                .col("snapshot_date", "date", |x| x.snapshot_date)
                .col("broker_updated_at", "timestamptz", |x| x.updated_at)
                .present();
            let rejected = c.drop_rejected();
            let changed = execute(client, &c, &["account_id", "currency"]).await?;
            Ok(Stored { changed, rejected })
        }
        BalanceTarget::BrokerSnapshot | BalanceTarget::Capture(_) => {
            match target {
                BalanceTarget::Capture(at) => c
                    .constant("snapshot_date", "date", trading_day(at))
                    .constant("time_of_day", "text", "Intraday".to_owned())
                    .constant("source", "text", "capture".to_owned())
                    .constant("captured_at", "timestamptz", Some(at)),
                _ => c
                    .required("snapshot_date", "date", |x| x.snapshot_date)
                    .required("time_of_day", "text", |x| x.time_of_day.clone())
                    .constant("source", "text", "broker".to_owned())
                    .constant("captured_at", "timestamptz", None::<DateTime<Utc>>),
            }
            // The first capture of the day keeps its time; `updated_at` tells the last change,
            // and an unchanged balance is not rewritten.
            .insert_only("captured_at");
            let rejected = c.drop_rejected();
            let key = ["account_id", "snapshot_date", "time_of_day", "currency"];
            let changed = execute(client, &c, &key).await?;
            Ok(Stored { changed, rejected })
        }
    }
}
