//! `sync-status`'s handler: dispatches to `tastysync_shared::routes::sync_tasks`.

use lambda_http::{Body, Request, Response};
use tastysync_shared::api::Endpoint;
use tastysync_shared::http::{self, ApiError};
use tastysync_shared::ports::AccountRepo;
use tastysync_shared::routes;
use tastysync_shared::routes::sync_tasks::{self, StatusDeps, StatusTasks};
use tastysync_shared::wiring::Function;

pub async fn handle<A: AccountRepo, T: StatusTasks>(
    deps: &StatusDeps<A, T>,
    request: Request,
) -> Response<Body> {
    let result = async {
        let route = http::endpoint(&request, Function::SyncStatus)?;
        routes::admitted(&deps.tasks, &deps.limit, &request).await?;
        match route {
            (Endpoint::TaskStatus, Some(id)) => sync_tasks::status(deps, &request, id).await,
            (Endpoint::AccountTasks, Some(id)) => {
                sync_tasks::account_tasks(deps, &request, id).await
            }
            _ => Err(ApiError::NotFound),
        }
    };
    let result = result.await;
    http::respond(result)
}
