//! `sync-trigger`'s handler: dispatches to `tastysync_shared::routes::sync_tasks::trigger`.

use lambda_http::{Body, Request, Response};
use tastysync_shared::api::Endpoint;
use tastysync_shared::http::{self, ApiError};
use tastysync_shared::ports::SyncQueue;
use tastysync_shared::routes;
use tastysync_shared::routes::sync_tasks::{self, TriggerDeps, TriggerStore, TriggerTasks};
use tastysync_shared::wiring::Function;

pub async fn handle<A: TriggerStore, T: TriggerTasks, Q: SyncQueue>(
    deps: &TriggerDeps<A, T, Q>,
    request: Request,
) -> Response<Body> {
    let result = async {
        let route = http::endpoint(&request, Function::SyncTrigger)?;
        routes::admitted(&deps.tasks, &deps.limit, &request).await?;
        match route {
            (Endpoint::TriggerSync, Some(id)) => {
                let trigger = sync_tasks::trigger(deps, &request, id);
                routes::idempotent(&deps.accounts, &request, trigger).await
            }
            _ => Err(ApiError::NotFound),
        }
    };
    let result = result.await;
    http::respond(result)
}
