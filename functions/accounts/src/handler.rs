//! `accounts`' handler: dispatches to `tastysync_shared::routes::accounts`.

use lambda_http::{Body, Request, Response};
use tastysync_shared::api::Endpoint;
use tastysync_shared::http::{self, ApiError};
use tastysync_shared::ports::AccountRepo;
use tastysync_shared::routes::accounts::{self, AccountsDeps};
use tastysync_shared::wiring::Function;

pub async fn handle<A: AccountRepo>(deps: &AccountsDeps<A>, request: Request) -> Response<Body> {
    let result = match http::endpoint(&request, Function::Accounts) {
        Ok((Endpoint::ListAccounts, _)) => accounts::list(deps, &request).await,
        Ok((Endpoint::Unlink, Some(id))) => accounts::unlink(deps, &request, id).await,
        Ok(_) => Err(ApiError::NotFound),
        Err(e) => Err(e),
    };
    http::respond(result)
}
