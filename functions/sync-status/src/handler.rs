//! `sync-status`'s handler: dispatches to `tastysync_shared::routes::sync_tasks`.

use lambda_http::{Body, Request, Response};
use tastysync_shared::http::{self, ApiError};
use tastysync_shared::ports::{TaskHistory, TaskReader};
use tastysync_shared::routes::sync_tasks::{self, StatusDeps};

const STATUS: &str = "/api/v1/sync/status/";
const ACCOUNTS: &str = "/api/v1/tastytrade-accounts/";

pub async fn handle<T: TaskReader + TaskHistory>(
    deps: &StatusDeps<T>,
    request: Request,
) -> Response<Body> {
    let (method, path) = http::route(&request);
    let task = path.strip_prefix(STATUS).filter(|id| !id.contains('/'));
    let account = path
        .strip_prefix(ACCOUNTS)
        .and_then(|rest| rest.strip_suffix("/sync-tasks"))
        .filter(|id| !id.contains('/'));
    let result = match (method, task, account) {
        ("GET", Some(id), _) => sync_tasks::status(deps, &request, id).await,
        ("GET", _, Some(id)) => sync_tasks::account_tasks(deps, &request, id).await,
        (_, Some(_), _) | (_, _, Some(_)) => Err(ApiError::MethodNotAllowed),
        _ => Err(ApiError::NotFound),
    };
    http::respond(result)
}
