//! The account ports on Postgres: [`PgAccounts`] calls the statements of
//! [`crate::db::accounts`], where the SQL lives.

use uuid::Uuid;

use crate::db::accounts;
use crate::db::{DbError, POOL_ACTIONS, PgPool};
use crate::domain::accounts::{
    AccountRow, BrokerAccount, DueAccount, DueQuery, LinkedAccount, NewCredential, SyncedData,
};
use crate::ports::{AccountRepo, Actions, DueAccounts};

/// [`AccountRepo`] and [`DueAccounts`] over the pool.
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
