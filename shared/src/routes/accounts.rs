//! `accounts`: list and unlink the caller's accounts, read the caller's audit trail, and purge
//! everything of the caller's (what was synced into the accounts is read through
//! `account-data`).

use lambda_http::{Body, Request, Response};

use crate::api::TastyTradeAccountRead;
use crate::config::{ConfigError, Env};
use crate::domain::accounts::SyncedData;
use crate::domain::audit::{AuditAction, AuditEventPage, AuditOutcome};
use crate::domain::requests::Limit;
use crate::http::{self, ApiError};
use crate::iam::Permissions;
use crate::ports::{AccountRepo, Actions, AuditLog, RequestLimiter, TaskPurge, UserData};
use crate::routes::PageQuery;

/// The database ports the accounts routes use.
pub trait AccountsStore: AccountRepo + AuditLog + UserData {}
impl<A: AccountRepo + AuditLog + UserData> AccountsStore for A {}

#[derive(Debug)]
pub struct AccountsDeps<A: AccountsStore, T: AccountsTasks> {
    pub accounts: A,
    /// A purge forgets the accounts' task items too.
    pub tasks: T,
    /// What unlinking does with synced rows (`UNLINK_SYNCED_DATA=keep|purge`, default keep);
    /// `?purge=true` purges one unlink whatever this says.
    pub unlink_data: SyncedData,
    /// How many requests a user may make (`UserLimits::reads`).
    pub limit: Limit,
}

/// The task ports the accounts routes use: a purge forgets task items; every request counts.
pub trait AccountsTasks: TaskPurge + RequestLimiter {}
impl<T: TaskPurge + RequestLimiter> AccountsTasks for T {}

impl<A: AccountsStore, T: AccountsTasks> Permissions for AccountsDeps<A, T> {
    fn held() -> Vec<Actions> {
        vec![
            <A as AccountRepo>::ACTIONS,
            <A as AuditLog>::ACTIONS,
            <A as UserData>::ACTIONS,
            <T as TaskPurge>::ACTIONS,
            <T as RequestLimiter>::ACTIONS,
        ]
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
pub async fn list<A: AccountsStore, T: AccountsTasks>(
    deps: &AccountsDeps<A, T>,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let user = http::user_id(request)?;
    let rows = deps.accounts.list(&user).await?;
    let body: Vec<TastyTradeAccountRead> = rows.into_iter().map(Into::into).collect();
    Ok(http::json(200, &body))
}

/// Unlinks one of the caller's accounts: its tokens are deleted (and the grant, when no other
/// account uses it); its synced data is kept or purged as the deployment says, or purged with
/// its task history when the request says `purge=true`.
#[utoipa::path(
    delete,
    path = "/tastytrade-accounts/{account_db_id}",
    params(
        ("account_db_id" = Uuid, Path),
        ("purge" = Option<bool>, Query, description = "Delete the synced data and task history too"),
    ),
    responses(
        (status = 204),
        (status = 400, body = crate::api::ErrorBody),
        (status = 401, body = crate::api::Unauthorized),
        (status = 404, body = crate::api::ErrorBody),
    ),
)]
pub async fn unlink<A: AccountsStore, T: AccountsTasks>(
    deps: &AccountsDeps<A, T>,
    request: &Request,
    account_db_id: &str,
) -> Result<Response<Body>, ApiError> {
    let user = http::user_id(request)?;
    let id = http::path_id(account_db_id)?;
    let purge = match http::query(request, &["purge"])?
        .get("purge")
        .map(String::as_str)
    {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::bad_request("purge", "must be true or false")),
    };
    let data = if purge {
        SyncedData::Purge
    } else {
        deps.unlink_data
    };
    if !deps.accounts.unlink(&user, id, data).await? {
        return Err(ApiError::NotFound);
    }
    if purge {
        deps.tasks.forget_account(id).await?;
    }
    let unlinked = (Some(id), AuditAction::Unlink, AuditOutcome::Succeeded);
    super::audit(&deps.accounts, request, &user, unlinked).await;
    tracing::info!(user_id = %user, account_id = %id, purge, "account unlinked");
    Ok(http::no_content())
}

/// Deletes everything tastysync holds of the caller: every account (unlinked ones too) with
/// what was synced into it and its set-aside rows, every grant with its sealed secrets, the
/// accounts' tasks, leases and cooldowns, and the caller's audit trail. What remains is one
/// audit row saying that a purge happened, under a one-way hash of the caller's id.
#[utoipa::path(
    delete,
    path = "/me/data",
    responses(
        (status = 204),
        (status = 401, body = crate::api::Unauthorized),
        (status = 503, body = crate::api::ErrorBody),
    ),
)]
pub async fn purge<A: AccountsStore, T: AccountsTasks>(
    deps: &AccountsDeps<A, T>,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let user = http::user_id(request)?;
    // The task items first: once the accounts are gone nothing names their ids. A failure
    // here leaves the database whole, and the purge can be asked again.
    let accounts = deps.accounts.accounts_of(&user).await?;
    for account in &accounts {
        deps.tasks.forget_account(*account).await?;
    }
    deps.accounts.purge(&user).await?;
    tracing::info!(accounts = accounts.len(), "a user's data was purged");
    Ok(http::no_content())
}

/// The caller's audit trail, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/audit-events",
    params(
        ("limit" = Option<i64>, Query, description = "Events per page, 1 to 500 (default 100)"),
        ("cursor" = Option<String>, Query, description = "The previous page's next_cursor"),
    ),
    responses(
        (status = 200, body = AuditEventPage),
        (status = 400, body = crate::api::ErrorBody),
        (status = 401, body = crate::api::Unauthorized),
    ),
)]
pub async fn audit_events<A: AccountsStore, T: AccountsTasks>(
    deps: &AccountsDeps<A, T>,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let user = http::user_id(request)?;
    let query = PageQuery::of(request, &["limit", "cursor"])?;
    let (limit, after) = (query.limit()?, query.cursor()?);
    let page = deps.accounts.events(&user, after, limit).await?;
    let body = AuditEventPage {
        items: page.items,
        next_cursor: page.next.map(|k| k.encode()),
    };
    Ok(http::json(200, &body))
}
