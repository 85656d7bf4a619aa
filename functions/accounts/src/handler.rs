//! `accounts`' handler: dispatches to `tastysync_shared::routes::accounts`.

use lambda_http::{Body, Request, Response};
use tastysync_shared::api::Endpoint;
use tastysync_shared::http::{self, ApiError};
use tastysync_shared::ports::{AccountRepo, SyncedReads};
use tastysync_shared::routes::accounts::{self, AccountsDeps};
use tastysync_shared::wiring::Function;

pub async fn handle<A: AccountRepo + SyncedReads>(
    deps: &AccountsDeps<A>,
    request: Request,
) -> Response<Body> {
    let result = match http::endpoint(&request, Function::Accounts) {
        Ok((Endpoint::ListAccounts, _)) => accounts::list(deps, &request).await,
        Ok((Endpoint::Unlink, Some(id))) => accounts::unlink(deps, &request, id).await,
        Ok((Endpoint::Account, Some(id))) => accounts::account(deps, &request, id).await,
        Ok((Endpoint::Transactions, Some(id))) => accounts::transactions(deps, &request, id).await,
        Ok((Endpoint::Orders, Some(id))) => accounts::orders(deps, &request, id).await,
        Ok((Endpoint::BalanceHistory, Some(id))) => {
            accounts::balance_history(deps, &request, id).await
        }
        Ok((Endpoint::Positions, Some(id))) => accounts::positions(deps, &request, id).await,
        Ok((Endpoint::Balances, Some(id))) => accounts::balances(deps, &request, id).await,
        Ok(_) => Err(ApiError::NotFound),
        Err(e) => Err(e),
    };
    http::respond(result)
}
