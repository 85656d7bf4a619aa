//! `accounts`' handler: dispatches to `tastysync_shared::routes::accounts`.

use lambda_http::{Body, Request, Response};
use tastysync_shared::http::{self, ApiError};
use tastysync_shared::routes::accounts::{self, AccountsDeps};

const COLLECTION: &str = "/api/v1/tastytrade-accounts";

pub async fn handle(deps: &AccountsDeps, request: Request) -> Response<Body> {
    let (method, path) = http::route(&request);
    let item = path
        .strip_prefix(COLLECTION)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|id| !id.contains('/'));
    let result = match (method, path, item) {
        ("GET", COLLECTION, _) => accounts::list(deps, &request).await,
        ("DELETE", _, Some(id)) => accounts::unlink(deps, &request, id).await,
        (_, COLLECTION, _) | (_, _, Some(_)) => Err(ApiError::MethodNotAllowed),
        _ => Err(ApiError::NotFound),
    };
    http::respond(result)
}
