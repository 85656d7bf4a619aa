//! `sync-status`'s handler: dispatches to `tastysync_shared::routes::sync_tasks`.

use lambda_http::{Body, Request, Response};
use tastysync_shared::api::Endpoint;
use tastysync_shared::http::{self, ApiError};
use tastysync_shared::ports::{AccountRepo, TaskHistory, TaskReader};
use tastysync_shared::routes::sync_tasks::{self, StatusDeps};
use tastysync_shared::wiring::Function;

pub async fn handle<A: AccountRepo, T: TaskReader + TaskHistory>(
    deps: &StatusDeps<A, T>,
    request: Request,
) -> Response<Body> {
    let result = match http::endpoint(&request, Function::SyncStatus) {
        Ok((Endpoint::TaskStatus, Some(id))) => sync_tasks::status(deps, &request, id).await,
        Ok((Endpoint::AccountTasks, Some(id))) => {
            sync_tasks::account_tasks(deps, &request, id).await
        }
        Ok(_) => Err(ApiError::NotFound),
        Err(e) => Err(e),
    };
    http::respond(result)
}
