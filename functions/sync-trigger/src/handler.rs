//! `sync-trigger`'s handler: dispatches to `tastysync_shared::routes::sync_tasks::trigger`.

use lambda_http::{Body, Request, Response};
use tastysync_shared::http::{self, ApiError};
use tastysync_shared::ports::SyncQueue;
use tastysync_shared::routes::sync_tasks::{self, TriggerDeps, TriggerTasks};

const PREFIX: &str = "/api/v1/sync/tastytrade/";

pub async fn handle<T: TriggerTasks, Q: SyncQueue>(
    deps: &TriggerDeps<T, Q>,
    request: Request,
) -> Response<Body> {
    let (method, path) = http::route(&request);
    let account = path
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix("/trigger"))
        .filter(|id| !id.contains('/'));
    let result = match (method, account) {
        ("POST", Some(id)) => sync_tasks::trigger(deps, &request, id).await,
        (_, Some(_)) => Err(ApiError::MethodNotAllowed),
        _ => Err(ApiError::NotFound),
    };
    http::respond(result)
}
