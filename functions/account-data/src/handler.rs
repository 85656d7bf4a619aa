//! `account-data`'s handler: dispatches to `tastysync_shared::routes::account_data`.

use lambda_http::{Body, Request, Response};
use tastysync_shared::api::Endpoint;
use tastysync_shared::http::{self, ApiError};
use tastysync_shared::ports::{AccountRepo, RequestLimiter, SyncedReads};
use tastysync_shared::routes;
use tastysync_shared::routes::account_data::{self as reads, AccountDataDeps};
use tastysync_shared::wiring::Function;

pub async fn handle<A: AccountRepo + SyncedReads, L: RequestLimiter>(
    deps: &AccountDataDeps<A, L>,
    request: Request,
) -> Response<Body> {
    let result = async {
        let route = http::endpoint(&request, Function::AccountData)?;
        routes::admitted(&deps.limits, &deps.limit, &request).await?;
        match route {
            (Endpoint::Account, Some(id)) => reads::account(deps, &request, id).await,
            (Endpoint::Transactions, Some(id)) => reads::transactions(deps, &request, id).await,
            (Endpoint::Orders, Some(id)) => reads::orders(deps, &request, id).await,
            (Endpoint::BalanceHistory, Some(id)) => {
                reads::balance_history(deps, &request, id).await
            }
            (Endpoint::Positions, Some(id)) => reads::positions(deps, &request, id).await,
            (Endpoint::Balances, Some(id)) => reads::balances(deps, &request, id).await,
            _ => Err(ApiError::NotFound),
        }
    };
    let result = result.await;
    http::respond(result)
}
