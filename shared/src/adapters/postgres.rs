//! The Postgres ports: [`PgAccounts`] calls the statements of [`crate::db::accounts`],
//! [`PgSyncStore`] those of [`crate::db::sync`], where the SQL lives.

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use crate::db::sync::Then;
use crate::db::{DbError, POOL_ACTIONS, PgPool};
use crate::db::{accounts, audit, idempotency, reads, sync};
use crate::domain::accounts::{
    AccountRow, AccountStatus, BalanceTarget, BrokerAccount, DueAccount, DueQuery, LinkedAccount,
    NewCredential, SyncAccount, SyncedData,
};
use crate::domain::audit::{AuditEvent, AuditEventRead};
use crate::domain::reads::{
    BalancePoint, BalanceRead, Keyset, NetLiqBar, OrderFilter, OrderRead, Paged, PositionRead,
    SyncedSummary, TransactionFilter, TransactionRead,
};
use crate::domain::requests::Claim;
use crate::domain::rows::{Gone, Quarantined, Stored};
use crate::ports::{
    AccountRepo, Actions, AuditLog, DueAccounts, IdempotencyKeys, StreamerShards, SyncStore,
    SyncedReads, UserData,
};
use crate::secrets::{Purpose, Sealed};
use crate::tastytrade::dxlink::PositionGreeks;
use crate::tastytrade::model::{
    Balance, ComplexOrder, NetLiqPoint, Order, Position, Record, TradingStatus, Transaction,
    Watchlist,
};

/// [`AccountRepo`], [`AuditLog`], [`UserData`] and [`DueAccounts`] over the pool.
#[derive(Debug, Clone)]
pub struct PgAccounts {
    pool: PgPool,
}

impl PgAccounts {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl SyncedReads for PgAccounts {
    async fn owned(&self, user_id: &str, account_id: Uuid) -> Result<bool, DbError> {
        reads::owned(&self.pool, user_id, account_id).await
    }

    async fn transactions(
        &self,
        user_id: &str,
        account_id: Uuid,
        filter: &TransactionFilter,
        after: Option<Keyset>,
        limit: i64,
    ) -> Result<Paged<TransactionRead>, DbError> {
        reads::transactions(&self.pool, user_id, account_id, filter, after, limit).await
    }

    async fn positions(
        &self,
        user_id: &str,
        account_id: Uuid,
    ) -> Result<Vec<PositionRead>, DbError> {
        reads::positions(&self.pool, user_id, account_id).await
    }

    async fn orders(
        &self,
        user_id: &str,
        account_id: Uuid,
        filter: &OrderFilter,
        after: Option<Keyset>,
        limit: i64,
    ) -> Result<Paged<OrderRead>, DbError> {
        reads::orders(&self.pool, user_id, account_id, filter, after, limit).await
    }

    async fn balance_history(
        &self,
        user_id: &str,
        account_id: Uuid,
        currency: &str,
        range: (Option<NaiveDate>, Option<NaiveDate>),
    ) -> Result<Vec<BalancePoint>, DbError> {
        reads::balance_history(&self.pool, user_id, account_id, currency, range).await
    }

    async fn net_liq_history(
        &self,
        user_id: &str,
        account_id: Uuid,
        range: (Option<NaiveDate>, Option<NaiveDate>),
    ) -> Result<Vec<NetLiqBar>, DbError> {
        reads::net_liq_history(&self.pool, user_id, account_id, range).await
    }

    async fn synced(
        &self,
        user_id: &str,
        account_id: Uuid,
    ) -> Result<Option<SyncedSummary>, DbError> {
        reads::synced(&self.pool, user_id, account_id).await
    }

    async fn balances(&self, user_id: &str, account_id: Uuid) -> Result<Vec<BalanceRead>, DbError> {
        reads::balances(&self.pool, user_id, account_id).await
    }
}

impl AccountRepo for PgAccounts {
    const ACTIONS: Actions = POOL_ACTIONS;

    async fn list(&self, user_id: &str) -> Result<Vec<AccountRow>, DbError> {
        accounts::list(&self.pool, user_id).await
    }

    async fn find(&self, user_id: &str, account_id: Uuid) -> Result<Option<AccountRow>, DbError> {
        accounts::find(&self.pool, user_id, account_id).await
    }

    async fn link(
        &self,
        credential: &NewCredential,
        broker_accounts: &[BrokerAccount],
    ) -> Result<Vec<LinkedAccount>, DbError> {
        accounts::link(&self.pool, credential, broker_accounts).await
    }

    async fn unlink(
        &self,
        user_id: &str,
        account_id: Uuid,
        data: SyncedData,
    ) -> Result<bool, DbError> {
        accounts::unlink(&self.pool, user_id, account_id, data).await
    }

    async fn mark_queued(&self, account_ids: &[Uuid]) -> Result<(), DbError> {
        accounts::mark_queued(&self.pool, account_ids).await
    }
}

impl AuditLog for PgAccounts {
    const ACTIONS: Actions = POOL_ACTIONS;

    async fn record(&self, event: &AuditEvent) -> Result<(), DbError> {
        audit::record(&self.pool, event).await
    }

    async fn events(
        &self,
        user_id: &str,
        after: Option<Keyset>,
        limit: i64,
    ) -> Result<Paged<AuditEventRead>, DbError> {
        audit::page(&self.pool, user_id, after, limit).await
    }
}

impl UserData for PgAccounts {
    const ACTIONS: Actions = POOL_ACTIONS;

    async fn accounts_of(&self, user_id: &str) -> Result<Vec<Uuid>, DbError> {
        audit::user_accounts(&self.pool, user_id).await
    }

    async fn purge(&self, user_id: &str) -> Result<(), DbError> {
        audit::purge(&self.pool, user_id).await
    }
}

impl IdempotencyKeys for PgAccounts {
    const ACTIONS: Actions = POOL_ACTIONS;

    async fn claim(&self, user_id: &str, key: &str, fingerprint: &str) -> Result<Claim, DbError> {
        idempotency::claim(&self.pool, user_id, key, fingerprint).await
    }

    async fn complete(
        &self,
        user_id: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), DbError> {
        idempotency::complete(&self.pool, user_id, key, status, body).await
    }

    async fn release(&self, user_id: &str, key: &str) -> Result<(), DbError> {
        idempotency::release(&self.pool, user_id, key).await
    }
}

impl DueAccounts for PgAccounts {
    const ACTIONS: Actions = POOL_ACTIONS;

    async fn due_page(
        &self,
        query: &DueQuery,
        after: Uuid,
        limit: i64,
    ) -> Result<Vec<DueAccount>, DbError> {
        accounts::due_page(&self.pool, query, after, limit).await
    }
}

/// [`SyncStore`] over the pool: a connection per write, so a page holds one only while its
/// upsert runs.
#[derive(Debug, Clone)]
pub struct PgSyncStore {
    pool: PgPool,
}

impl PgSyncStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

impl StreamerShards for PgSyncStore {
    const ACTIONS: Actions = POOL_ACTIONS;

    async fn still_linked(&self, account_id: Uuid, credential_id: Uuid) -> Result<bool, DbError> {
        sync::still_linked(&self.pool, account_id, credential_id).await
    }

    async fn grant_count(&self) -> Result<u64, DbError> {
        sync::grant_count(&self.pool).await
    }

    async fn shard_accounts(&self, shard: u32, shards: u32) -> Result<Vec<SyncAccount>, DbError> {
        sync::shard_accounts(&self.pool, shard, shards).await
    }
}

impl SyncStore for PgSyncStore {
    const ACTIONS: Actions = POOL_ACTIONS;

    async fn load_account(&self, account_id: Uuid) -> Result<Option<SyncAccount>, DbError> {
        sync::load_account(&self.pool, account_id).await
    }

    async fn mark_running(&self, account_id: Uuid, credential_id: Uuid) -> Result<(), DbError> {
        sync::mark_running(&self.pool, account_id, credential_id).await
    }

    async fn mark_success(
        &self,
        account_id: Uuid,
        credential_id: Uuid,
        transactions_to: DateTime<Utc>,
        orders_to: DateTime<Utc>,
        snapshots_to: NaiveDate,
    ) -> Result<(), DbError> {
        sync::mark_success(
            &self.pool,
            account_id,
            credential_id,
            transactions_to,
            orders_to,
            snapshots_to,
        )
        .await
    }

    async fn store_trading_status(
        &self,
        account_id: Uuid,
        status: &Record<TradingStatus>,
        read_at: DateTime<Utc>,
    ) -> Result<(), DbError> {
        sync::store_trading_status(&self.pool, account_id, status, read_at).await
    }

    async fn mark_failed(
        &self,
        account_id: Uuid,
        credential_id: Option<Uuid>,
        status: AccountStatus,
        error: &str,
    ) -> Result<(), DbError> {
        sync::mark_failed(&self.pool, account_id, credential_id, status, error).await
    }

    async fn cache_token(
        &self,
        credential_id: Uuid,
        purpose: Purpose,
        sealed: &Sealed,
        expires_at: DateTime<Utc>,
    ) -> Result<(), DbError> {
        sync::cache_token(&self.pool, credential_id, purpose, sealed, expires_at).await
    }

    async fn upsert_balances(
        &self,
        account: &SyncAccount,
        rows: &[Record<Balance>],
        target: BalanceTarget,
    ) -> Result<Stored, DbError> {
        let owner = owner(account);
        sync::store_page(&self.pool, owner, rows, target, Then::Commit).await
    }

    async fn replace_positions(
        &self,
        account: &SyncAccount,
        rows: &[Record<Position>],
        also_held: &[String],
    ) -> Result<Stored, DbError> {
        let held: Vec<String> = (rows.iter().map(|r| r.item.symbol.clone()))
            .chain(also_held.iter().cloned())
            .collect();
        let then = Then::DeletePositionsExcept(&held);
        sync::store_page(&self.pool, owner(account), rows, (), then).await
    }

    async fn update_positions(
        &self,
        account: &SyncAccount,
        held: &[Record<Position>],
        closed: &[String],
    ) -> Result<Stored, DbError> {
        let then = Then::DeletePositions(closed);
        sync::store_page(&self.pool, owner(account), held, (), then).await
    }

    async fn claim_watchlists(
        &self,
        credential_id: Uuid,
        since: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        sync::claim_watchlists(&self.pool, credential_id, since).await
    }

    async fn replace_watchlists(
        &self,
        credential_id: Uuid,
        rows: &[Record<Watchlist>],
        keep_unlisted: bool,
    ) -> Result<u64, DbError> {
        sync::replace_watchlists(&self.pool, credential_id, rows, keep_unlisted).await
    }

    async fn store_greeks(
        &self,
        account_id: Uuid,
        rows: &[PositionGreeks],
    ) -> Result<u64, DbError> {
        sync::store_greeks(&self.pool, account_id, rows).await
    }

    async fn upsert_complex_orders(
        &self,
        account: &SyncAccount,
        rows: &[Record<ComplexOrder>],
    ) -> Result<Stored, DbError> {
        let owner = owner(account);
        sync::store_page(&self.pool, owner, rows, (), Then::Commit).await
    }

    async fn upsert_net_liq_history(
        &self,
        account: &SyncAccount,
        rows: &[Record<NetLiqPoint>],
    ) -> Result<Stored, DbError> {
        let owner = owner(account);
        sync::store_page(&self.pool, owner, rows, (), Then::Commit).await
    }

    async fn upsert_transactions(
        &self,
        account: &SyncAccount,
        rows: &[Record<Transaction>],
    ) -> Result<Stored, DbError> {
        sync::store_page(&self.pool, owner(account), rows, (), Then::Commit).await
    }

    async fn upsert_orders(
        &self,
        account: &SyncAccount,
        task_id: Uuid,
        rows: &[Record<Order>],
    ) -> Result<Stored, DbError> {
        let owner = sync::Owner {
            task_id: Some(task_id),
            ..owner(account)
        };
        sync::store_page(&self.pool, owner, rows, (), Then::Commit).await
    }

    async fn mark_removed(
        &self,
        account_id: Uuid,
        task_id: Uuid,
        gone: Gone<'_>,
    ) -> Result<u64, DbError> {
        sync::mark_removed(&self.pool, account_id, task_id, gone).await
    }

    async fn working_orders(
        &self,
        account_id: Uuid,
        before: DateTime<Utc>,
    ) -> Result<Vec<i64>, DbError> {
        sync::working_orders(&self.pool, account_id, before).await
    }

    async fn quarantine(
        &self,
        account_id: Uuid,
        entity: &'static str,
        rows: &[Quarantined],
    ) -> Result<(), DbError> {
        sync::quarantine(&self.pool, account_id, entity, rows).await
    }

    async fn release(
        &self,
        account_id: Uuid,
        entity: &'static str,
        broker_ids: &[i64],
    ) -> Result<(), DbError> {
        sync::release(&self.pool, account_id, entity, broker_ids).await?;
        Ok(())
    }

    async fn forget_unseen(
        &self,
        account_id: Uuid,
        seen_since: DateTime<Utc>,
        full: bool,
    ) -> Result<(), DbError> {
        sync::forget_unseen(&self.pool, account_id, seen_since, full).await?;
        Ok(())
    }
}

fn owner(account: &SyncAccount) -> sync::Owner<'_> {
    sync::Owner {
        account_id: account.id,
        account_number: &account.account_number,
        task_id: None,
    }
}
