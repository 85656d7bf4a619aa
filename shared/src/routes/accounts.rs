//! `accounts`: list and unlink the caller's accounts (what was synced into them is read
//! through `account-data`).

use lambda_http::{Body, Request, Response};

use crate::api::TastyTradeAccountRead;
use crate::config::{ConfigError, Env};
use crate::domain::accounts::SyncedData;
use crate::http::{self, ApiError};
use crate::iam::Permissions;
use crate::ports::{AccountRepo, Actions};

#[derive(Debug)]
pub struct AccountsDeps<A: AccountRepo> {
    pub accounts: A,
    /// What unlinking does with synced rows (`UNLINK_SYNCED_DATA=keep|purge`, default keep).
    pub unlink_data: SyncedData,
}

impl<A: AccountRepo> Permissions for AccountsDeps<A> {
    fn held() -> Vec<Actions> {
        vec![A::ACTIONS]
    }
}

pub fn unlink_policy(env: &Env) -> Result<SyncedData, ConfigError> {
    match env.optional("UNLINK_SYNCED_DATA").unwrap_or("keep") {
        "keep" => Ok(SyncedData::Keep),
        "purge" => Ok(SyncedData::Purge),
        _ => Err(ConfigError::Invalid {
            name: "UNLINK_SYNCED_DATA",
            reason: "must be keep or purge".into(),
        }),
    }
}

/// The caller's linked accounts with their last sync status.
#[utoipa::path(
    get,
    path = "/tastytrade-accounts",
    responses(
        (status = 200, body = [TastyTradeAccountRead]),
        (status = 401, body = crate::api::Unauthorized),
    ),
)]
pub async fn list<A: AccountRepo>(
    deps: &AccountsDeps<A>,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let user = http::user_id(request)?;
    let rows = deps.accounts.list(&user).await?;
    let body: Vec<TastyTradeAccountRead> = rows.into_iter().map(Into::into).collect();
    Ok(http::json(200, &body))
}

/// Unlinks one of the caller's accounts: its tokens are deleted (and the grant, when no other
/// account uses it); its synced data is kept or purged as the deployment says.
#[utoipa::path(
    delete,
    path = "/tastytrade-accounts/{account_db_id}",
    params(("account_db_id" = Uuid, Path)),
    responses(
        (status = 204),
        (status = 401, body = crate::api::Unauthorized),
        (status = 404, body = crate::api::ErrorBody),
    ),
)]
pub async fn unlink<A: AccountRepo>(
    deps: &AccountsDeps<A>,
    request: &Request,
    account_db_id: &str,
) -> Result<Response<Body>, ApiError> {
    let user = http::user_id(request)?;
    let id = http::path_id(account_db_id)?;
    if deps.accounts.unlink(&user, id, deps.unlink_data).await? {
        tracing::info!(user_id = %user, account_id = %id, "account unlinked");
        Ok(http::no_content())
    } else {
        Err(ApiError::NotFound)
    }
}
