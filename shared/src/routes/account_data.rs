//! `account-data`: what was synced into one of the caller's accounts, read-only: the account
//! with its sync summary, transactions, orders, positions, balances and balance history.

use lambda_http::{Body, Request, Response};

use crate::api::AccountDetail;
use crate::domain::reads::{
    BalanceHistory, BalanceRead, DEFAULT_POINTS, MAX_POINTS, OrderFilter, OrderPage, PositionRead,
    TransactionFilter, TransactionPage, downsample,
};
use crate::domain::requests::Limit;
use crate::http::{self, ApiError};
use crate::iam::Permissions;
use crate::ports::{AccountRepo, Actions, RequestLimiter, SyncedReads};
use crate::routes::PageQuery;

/// The reads are a function of their own, apart from linking and unlinking: a burst of portfolio
/// screens scales (and is throttled) without holding up an unlink, and the function needs
/// nothing but the database.
#[derive(Debug)]
pub struct AccountDataDeps<A: AccountRepo + SyncedReads, L: RequestLimiter> {
    pub accounts: A,
    /// Counts the caller's reads against `limit` (`UserLimits::reads`).
    pub limits: L,
    pub limit: Limit,
}

impl<A: AccountRepo + SyncedReads, L: RequestLimiter> Permissions for AccountDataDeps<A, L> {
    fn held() -> Vec<Actions> {
        vec![A::ACTIONS, L::ACTIONS]
    }
}

/// One of the caller's accounts with its sync summary: status, last successful sync, last
/// error, rows waiting in quarantine, the watermarks and each entity's row count.
#[utoipa::path(
    get,
    path = "/tastytrade-accounts/{account_db_id}",
    params(("account_db_id" = Uuid, Path)),
    responses(
        (status = 200, body = AccountDetail),
        (status = 400, body = crate::api::ErrorBody),
        (status = 401, body = crate::api::Unauthorized),
        (status = 404, body = crate::api::ErrorBody),
    ),
)]
pub async fn account<A: AccountRepo + SyncedReads, L: RequestLimiter>(
    deps: &AccountDataDeps<A, L>,
    request: &Request,
    account_db_id: &str,
) -> Result<Response<Body>, ApiError> {
    let user = http::user_id(request)?;
    let id = http::path_id(account_db_id)?;
    http::query(request, &[])?;
    let (Some(account), Some(synced)) = (
        deps.accounts.find(&user, id).await?,
        deps.accounts.synced(&user, id).await?,
    ) else {
        return Err(ApiError::NotFound);
    };
    let body = AccountDetail {
        account: account.into(),
        synced,
    };
    Ok(http::json(200, &body))
}

const TRANSACTION_PARAMETERS: &[&str] = &[
    "from",
    "to",
    "symbol",
    "underlying_symbol",
    "type",
    "sub_type",
    "limit",
    "cursor",
];

/// The account's transactions, newest first, a page at a time. The cursor is a keyset (the
/// last row's time and id), so the pages already read never shift while new rows arrive.
#[utoipa::path(
    get,
    path = "/tastytrade-accounts/{account_db_id}/transactions",
    params(
        ("account_db_id" = Uuid, Path),
        ("from" = Option<chrono::NaiveDate>, Query, description = "First trade date, inclusive"),
        ("to" = Option<chrono::NaiveDate>, Query, description = "Last trade date, inclusive"),
        ("symbol" = Option<String>, Query),
        ("underlying_symbol" = Option<String>, Query),
        ("type" = Option<String>, Query, description = "transaction-type, for example Trade"),
        ("sub_type" = Option<String>, Query, description = "transaction-sub-type"),
        ("limit" = Option<i64>, Query, description = "Rows per page, 1 to 500 (default 100)"),
        ("cursor" = Option<String>, Query, description = "The previous page's next_cursor"),
    ),
    responses(
        (status = 200, body = TransactionPage),
        (status = 400, body = crate::api::ErrorBody),
        (status = 401, body = crate::api::Unauthorized),
        (status = 404, body = crate::api::ErrorBody),
    ),
)]
pub async fn transactions<A: AccountRepo + SyncedReads, L: RequestLimiter>(
    deps: &AccountDataDeps<A, L>,
    request: &Request,
    account_db_id: &str,
) -> Result<Response<Body>, ApiError> {
    let query = PageQuery::of(request, TRANSACTION_PARAMETERS)?;
    let filter = TransactionFilter {
        from: query.date("from")?,
        to: query.date("to")?,
        symbol: query.text("symbol"),
        underlying_symbol: query.text("underlying_symbol"),
        transaction_type: query.text("type"),
        sub_type: query.text("sub_type"),
    };
    let (limit, after) = (query.limit()?, query.cursor()?);
    let (user, id) = owned_account(deps, request, account_db_id).await?;
    let page = deps
        .accounts
        .transactions(&user, id, &filter, after, limit)
        .await?;
    let body = TransactionPage {
        items: page.items,
        next_cursor: page.next.map(|k| k.encode()),
    };
    Ok(http::json(200, &body))
}

const ORDER_PARAMETERS: &[&str] = &[
    "status",
    "from",
    "to",
    "underlying_symbol",
    "limit",
    "cursor",
];

/// The account's orders, newest first by receipt, each with its legs and their fills, a page at
/// a time (the cursor is a keyset, as for transactions).
#[utoipa::path(
    get,
    path = "/tastytrade-accounts/{account_db_id}/orders",
    params(
        ("account_db_id" = Uuid, Path),
        ("status" = Option<String>, Query, description = "For example Filled, Live, Cancelled"),
        ("from" = Option<chrono::NaiveDate>, Query, description = "First day received, inclusive"),
        ("to" = Option<chrono::NaiveDate>, Query, description = "Last day received, inclusive"),
        ("underlying_symbol" = Option<String>, Query),
        ("limit" = Option<i64>, Query, description = "Orders per page, 1 to 500 (default 100)"),
        ("cursor" = Option<String>, Query, description = "The previous page's next_cursor"),
    ),
    responses(
        (status = 200, body = OrderPage),
        (status = 400, body = crate::api::ErrorBody),
        (status = 401, body = crate::api::Unauthorized),
        (status = 404, body = crate::api::ErrorBody),
    ),
)]
pub async fn orders<A: AccountRepo + SyncedReads, L: RequestLimiter>(
    deps: &AccountDataDeps<A, L>,
    request: &Request,
    account_db_id: &str,
) -> Result<Response<Body>, ApiError> {
    let query = PageQuery::of(request, ORDER_PARAMETERS)?;
    let filter = OrderFilter {
        status: query.text("status"),
        from: query.date("from")?,
        to: query.date("to")?,
        underlying_symbol: query.text("underlying_symbol"),
    };
    let (limit, after) = (query.limit()?, query.cursor()?);
    let (user, id) = owned_account(deps, request, account_db_id).await?;
    let page = (deps.accounts)
        .orders(&user, id, &filter, after, limit)
        .await?;
    let body = OrderPage {
        items: page.items,
        next_cursor: page.next.map(|k| k.encode()),
    };
    Ok(http::json(200, &body))
}

/// A chart's series: the account's end-of-day values in one currency (USD unless named), at
/// most `points` of them (500 unless named, up to 1,000), evenly spaced over a longer range.
#[utoipa::path(
    get,
    path = "/tastytrade-accounts/{account_db_id}/balance-history",
    params(
        ("account_db_id" = Uuid, Path),
        ("from" = Option<chrono::NaiveDate>, Query, description = "First day, inclusive"),
        ("to" = Option<chrono::NaiveDate>, Query, description = "Last day, inclusive"),
        ("currency" = Option<String>, Query, description = "USD unless named"),
        ("points" = Option<i64>, Query, description = "At most this many points, 2 to 1000"),
    ),
    responses(
        (status = 200, body = BalanceHistory),
        (status = 400, body = crate::api::ErrorBody),
        (status = 401, body = crate::api::Unauthorized),
        (status = 404, body = crate::api::ErrorBody),
    ),
)]
pub async fn balance_history<A: AccountRepo + SyncedReads, L: RequestLimiter>(
    deps: &AccountDataDeps<A, L>,
    request: &Request,
    account_db_id: &str,
) -> Result<Response<Body>, ApiError> {
    let query = PageQuery::of(request, &["from", "to", "currency", "points"])?;
    let range = (query.date("from")?, query.date("to")?);
    let currency = query.text("currency").unwrap_or_else(|| "USD".to_owned());
    let points = query.bounded("points", DEFAULT_POINTS, 2..=MAX_POINTS)?;
    let (user, id) = owned_account(deps, request, account_db_id).await?;
    let days = (deps.accounts)
        .balance_history(&user, id, &currency, range)
        .await?;
    let bars = if currency == "USD" {
        deps.accounts.net_liq_history(&user, id, range).await?
    } else {
        Vec::new()
    };
    let body = BalanceHistory {
        downsampled: days.len() > points,
        points: downsample(&days, points),
        net_liq_downsampled: bars.len() > points,
        net_liq: downsample(&bars, points),
        currency,
    };
    Ok(http::json(200, &body))
}

/// The account's current positions, with the option each option symbol names.
#[utoipa::path(
    get,
    path = "/tastytrade-accounts/{account_db_id}/positions",
    params(("account_db_id" = Uuid, Path)),
    responses(
        (status = 200, body = [PositionRead]),
        (status = 400, body = crate::api::ErrorBody),
        (status = 401, body = crate::api::Unauthorized),
        (status = 404, body = crate::api::ErrorBody),
    ),
)]
pub async fn positions<A: AccountRepo + SyncedReads, L: RequestLimiter>(
    deps: &AccountDataDeps<A, L>,
    request: &Request,
    account_db_id: &str,
) -> Result<Response<Body>, ApiError> {
    http::query(request, &[])?;
    let (user, id) = owned_account(deps, request, account_db_id).await?;
    let positions = deps.accounts.positions(&user, id).await?;
    Ok(http::json(200, &positions))
}

/// The account's current balances, one per currency, with when they last changed and when a
/// sync last read them.
#[utoipa::path(
    get,
    path = "/tastytrade-accounts/{account_db_id}/balances",
    params(("account_db_id" = Uuid, Path)),
    responses(
        (status = 200, body = [BalanceRead]),
        (status = 400, body = crate::api::ErrorBody),
        (status = 401, body = crate::api::Unauthorized),
        (status = 404, body = crate::api::ErrorBody),
    ),
)]
pub async fn balances<A: AccountRepo + SyncedReads, L: RequestLimiter>(
    deps: &AccountDataDeps<A, L>,
    request: &Request,
    account_db_id: &str,
) -> Result<Response<Body>, ApiError> {
    http::query(request, &[])?;
    let (user, id) = owned_account(deps, request, account_db_id).await?;
    let balances = deps.accounts.balances(&user, id).await?;
    Ok(http::json(200, &balances))
}

/// The caller and the account the path names, when it is one of the caller's; 404 otherwise,
/// as for a missing one.
async fn owned_account<A: AccountRepo + SyncedReads, L: RequestLimiter>(
    deps: &AccountDataDeps<A, L>,
    request: &Request,
    account_db_id: &str,
) -> Result<(String, uuid::Uuid), ApiError> {
    let user = http::user_id(request)?;
    let id = http::path_id(account_db_id)?;
    if deps.accounts.owned(&user, id).await? {
        Ok((user, id))
    } else {
        Err(ApiError::NotFound)
    }
}
