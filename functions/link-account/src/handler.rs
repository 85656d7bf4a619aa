//! `link-account`'s handler: dispatches to the link routes of `tastysync_shared::routes::link`.

use lambda_http::{Body, Request, Response};
use tastysync_shared::api::Endpoint;
use tastysync_shared::http::{self, ApiError};
use tastysync_shared::ports::{Broker, SyncQueue, TokenSealer};
use tastysync_shared::routes;
use tastysync_shared::routes::link::{self, LinkDeps, LinkStore, LinkTasks};
use tastysync_shared::wiring::Function;

pub async fn handle<A: LinkStore, C: TokenSealer, T: LinkTasks, Q: SyncQueue, B: Broker>(
    deps: &LinkDeps<A, C, T, Q, B>,
    request: Request,
) -> Response<Body> {
    let result = async {
        let route = http::endpoint(&request, Function::LinkAccount)?;
        routes::admitted(&deps.tasks, &deps.limit, &request).await?;
        match route {
            (Endpoint::LinkStart, _) => link::start(deps, &request).await,
            (Endpoint::Link, _) => {
                routes::idempotent(&deps.accounts, &request, link::link(deps, &request)).await
            }
            _ => Err(ApiError::NotFound),
        }
    };
    let result = result.await;
    http::respond(result)
}
