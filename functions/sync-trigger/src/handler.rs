//! `sync-trigger`'s handler: dispatches to `tastysync_shared::routes::sync_tasks::trigger`.

use lambda_http::{Body, Request, Response};
use tastysync_shared::api::Endpoint;
use tastysync_shared::http::{self, ApiError};
use tastysync_shared::ports::{AccountRepo, AuditLog, SyncQueue};
use tastysync_shared::routes::sync_tasks::{self, TriggerDeps, TriggerTasks};
use tastysync_shared::wiring::Function;

pub async fn handle<A: AccountRepo + AuditLog, T: TriggerTasks, Q: SyncQueue>(
    deps: &TriggerDeps<A, T, Q>,
    request: Request,
) -> Response<Body> {
    let result = match http::endpoint(&request, Function::SyncTrigger) {
        Ok((Endpoint::TriggerSync, Some(id))) => sync_tasks::trigger(deps, &request, id).await,
        Ok(_) => Err(ApiError::NotFound),
        Err(e) => Err(e),
    };
    http::respond(result)
}
