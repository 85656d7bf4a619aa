//! `link-account`'s handler: dispatches to the link routes of `tastysync_shared::routes::link`.

use lambda_http::{Body, Request, Response};
use tastysync_shared::api::Endpoint;
use tastysync_shared::http::{self, ApiError};
use tastysync_shared::ports::{Broker, SyncQueue, TokenSealer};
use tastysync_shared::routes::link::{self, LinkDeps, LinkStore, LinkTasks};
use tastysync_shared::wiring::Function;

pub async fn handle<A: LinkStore, C: TokenSealer, T: LinkTasks, Q: SyncQueue, B: Broker>(
    deps: &LinkDeps<A, C, T, Q, B>,
    request: Request,
) -> Response<Body> {
    let result = match http::endpoint(&request, Function::LinkAccount) {
        Ok((Endpoint::LinkStart, _)) => link::start(deps, &request).await,
        Ok((Endpoint::Link, _)) => link::link(deps, &request).await,
        Ok(_) => Err(ApiError::NotFound),
        Err(e) => Err(e),
    };
    http::respond(result)
}
