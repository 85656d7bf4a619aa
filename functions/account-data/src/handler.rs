//! `account-data`'s handler: dispatches to `tastysync_shared::routes::account_data`.

use lambda_http::{Body, Request, Response};
use tastysync_shared::api::Endpoint;
use tastysync_shared::http::{self, ApiError};
use tastysync_shared::ports::{AccountRepo, SyncedReads};
use tastysync_shared::routes::account_data::{self as reads, AccountDataDeps};
use tastysync_shared::wiring::Function;

pub async fn handle<A: AccountRepo + SyncedReads>(
    deps: &AccountDataDeps<A>,
    request: Request,
) -> Response<Body> {
    let result = match http::endpoint(&request, Function::AccountData) {
        Ok((Endpoint::Account, Some(id))) => reads::account(deps, &request, id).await,
        Ok((Endpoint::Transactions, Some(id))) => reads::transactions(deps, &request, id).await,
        Ok((Endpoint::Orders, Some(id))) => reads::orders(deps, &request, id).await,
        Ok((Endpoint::BalanceHistory, Some(id))) => {
            reads::balance_history(deps, &request, id).await
        }
        Ok((Endpoint::Positions, Some(id))) => reads::positions(deps, &request, id).await,
        Ok((Endpoint::Balances, Some(id))) => reads::balances(deps, &request, id).await,
        Ok(_) => Err(ApiError::NotFound),
        Err(e) => Err(e),
    };
    http::respond(result)
}
