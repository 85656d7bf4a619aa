//! `link-account`'s handler: dispatches to the link routes of `tastysync_shared::routes::link`.

use lambda_http::{Body, Request, Response};
use tastysync_shared::http::{self, ApiError};
use tastysync_shared::ports::{SyncQueue, TaskCreator, TokenSealer};
use tastysync_shared::routes::link::{self, LinkDeps};

pub async fn handle<C: TokenSealer, T: TaskCreator, Q: SyncQueue>(
    deps: &LinkDeps<C, T, Q>,
    request: Request,
) -> Response<Body> {
    let result = match http::route(&request) {
        ("POST", "/api/v1/tastytrade-accounts/link/start") => link::start(deps, &request).await,
        ("POST", "/api/v1/tastytrade-accounts/link") => link::link(deps, &request).await,
        (_, "/api/v1/tastytrade-accounts/link/start" | "/api/v1/tastytrade-accounts/link") => {
            Err(ApiError::MethodNotAllowed)
        }
        _ => Err(ApiError::NotFound),
    };
    http::respond(result)
}
