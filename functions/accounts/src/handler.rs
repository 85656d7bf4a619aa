//! `accounts`' handler: dispatches to `tastysync_shared::routes::accounts`.

use lambda_http::{Body, Request, Response};
use tastysync_shared::api::Endpoint;
use tastysync_shared::http::{self, ApiError};
use tastysync_shared::routes;
use tastysync_shared::routes::accounts::{self, AccountsDeps, AccountsStore, AccountsTasks};
use tastysync_shared::wiring::Function;

pub async fn handle<A: AccountsStore, T: AccountsTasks>(
    deps: &AccountsDeps<A, T>,
    request: Request,
) -> Response<Body> {
    let result = async {
        let route = http::endpoint(&request, Function::Accounts)?;
        routes::admitted(&deps.tasks, &deps.limit, &request).await?;
        match route {
            (Endpoint::ListAccounts, _) => accounts::list(deps, &request).await,
            (Endpoint::Unlink, Some(id)) => accounts::unlink(deps, &request, id).await,
            (Endpoint::AuditEvents, _) => accounts::audit_events(deps, &request).await,
            (Endpoint::PurgeMyData, _) => accounts::purge(deps, &request).await,
            _ => Err(ApiError::NotFound),
        }
    };
    let result = result.await;
    http::respond(result)
}
