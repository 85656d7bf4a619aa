//! `accounts`' handler: dispatches to `tastysync_shared::routes::accounts`.

use lambda_http::{Body, Request, Response};
use tastysync_shared::api::Endpoint;
use tastysync_shared::http::{self, ApiError};
use tastysync_shared::ports::TaskPurge;
use tastysync_shared::routes::accounts::{self, AccountsDeps, AccountsStore};
use tastysync_shared::wiring::Function;

pub async fn handle<A: AccountsStore, T: TaskPurge>(
    deps: &AccountsDeps<A, T>,
    request: Request,
) -> Response<Body> {
    let result = match http::endpoint(&request, Function::Accounts) {
        Ok((Endpoint::ListAccounts, _)) => accounts::list(deps, &request).await,
        Ok((Endpoint::Unlink, Some(id))) => accounts::unlink(deps, &request, id).await,
        Ok((Endpoint::AuditEvents, _)) => accounts::audit_events(deps, &request).await,
        Ok((Endpoint::PurgeMyData, _)) => accounts::purge(deps, &request).await,
        Ok(_) => Err(ApiError::NotFound),
        Err(e) => Err(e),
    };
    http::respond(result)
}
