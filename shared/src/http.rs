//! The HTTP boundary shared by the API functions: who is calling, reading a JSON body safely,
//! and the one place errors become statuses.
//!
//! Every error answers `{"error": {"code", "message"[, "field"]}}`. Messages are written for
//! the caller; causes are logged where they happen and never returned.

use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{BASE_PATH, Endpoint, ROUTES};
use crate::wiring::Function;

/// Larger than any request this API takes; API Gateway's own limit is 10 MB.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("authentication required")]
    Unauthorized,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{message}")]
    BadRequest {
        field: Option<String>,
        message: String,
    },
    #[error("the request body is larger than {MAX_BODY_BYTES} bytes")]
    PayloadTooLarge,
    #[error("{0}")]
    Conflict(String),
    #[error("too many requests; retry after {retry_after} seconds")]
    TooManyRequests { retry_after: u64 },
    /// tastytrade refused the grant or code: the user must link again.
    #[error("tastytrade refused the authorization; link the account again")]
    GrantRejected,
    #[error("tastytrade is unavailable; try again shortly")]
    BrokerUnavailable,
    #[error("a dependency is unavailable; try again shortly")]
    Unavailable,
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn bad_request(field: &str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            ApiError::Unauthorized => 401,
            ApiError::NotFound => 404,
            ApiError::MethodNotAllowed => 405,
            ApiError::BadRequest { .. } | ApiError::GrantRejected => 400,
            ApiError::PayloadTooLarge => 413,
            ApiError::Conflict(_) => 409,
            ApiError::TooManyRequests { .. } => 429,
            ApiError::BrokerUnavailable | ApiError::Unavailable => 503,
            ApiError::Internal => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::BadRequest { .. } => "invalid_request",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooManyRequests { .. } => "rate_limited",
            ApiError::GrantRejected => "invalid_grant",
            ApiError::BrokerUnavailable => "broker_unavailable",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal => "internal",
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let mut error = serde_json::json!({"code": self.code(), "message": self.to_string()});
        if let ApiError::BadRequest {
            field: Some(field), ..
        } = &self
        {
            error["field"] = field.as_str().into();
        }
        let mut response = json(self.status(), &serde_json::json!({ "error": error }));
        if let ApiError::TooManyRequests { retry_after } = self {
            response
                .headers_mut()
                .insert("retry-after", retry_after.into());
        }
        response
    }
}

/// Logs the cause once, at the boundary, and answers 503 or 500 without it.
fn internal(e: &dyn std::error::Error, retry: crate::Retry) -> ApiError {
    tracing::error!(error = %e, source = ?e.source().map(ToString::to_string), "request failed");
    match retry {
        crate::Retry::Retryable => ApiError::Unavailable,
        crate::Retry::NonRetryable => ApiError::Internal,
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        internal(&e, e.retry())
    }
}

impl From<crate::secrets::CipherError> for ApiError {
    fn from(e: crate::secrets::CipherError) -> Self {
        internal(&e, e.retry())
    }
}

impl From<crate::ports::TaskError> for ApiError {
    fn from(e: crate::ports::TaskError) -> Self {
        internal(&e, e.retry())
    }
}

/// A path id of the caller's: a malformed one names nothing of anyone's, so it is the same
/// 404 as a missing one.
pub fn path_id(text: &str) -> Result<uuid::Uuid, ApiError> {
    text.parse().map_err(|_| ApiError::NotFound)
}

/// The caller: the `sub` claim API Gateway's JWT authorizer verified and put in the context.
pub fn user_id(request: &Request) -> Result<String, ApiError> {
    let claims = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context
            .authorizer
            .as_ref()
            .and_then(|a| a.jwt.as_ref())
            .map(|jwt| &jwt.claims),
        _ => None,
    };
    claims
        .and_then(|claims| claims.get("sub"))
        .map(|sub| sub.trim())
        .filter(|sub| !sub.is_empty() && sub.len() <= 256)
        .map(str::to_owned)
        .ok_or(ApiError::Unauthorized)
}

/// Where the request came from, as API Gateway saw it (for the audit trail). The user agent
/// is the client's to write: kept to 512 characters.
pub fn source(request: &Request) -> crate::domain::audit::RequestSource {
    let Some(RequestContext::ApiGatewayV2(context)) = request.request_context_ref() else {
        return crate::domain::audit::RequestSource::default();
    };
    crate::domain::audit::RequestSource {
        ip: context.http.source_ip.clone(),
        user_agent: (context.http.user_agent.as_deref())
            .map(|agent| agent.chars().take(512).collect()),
    }
}

/// Parses a JSON body of at most [`MAX_BODY_BYTES`]; an error names the offending field.
/// The request's query parameters, refused with 400 when one is not among `allowed` (a typo
/// must not silently read everything), is given twice or holds a NUL character.
pub fn query(
    request: &Request,
    allowed: &[&str],
) -> Result<std::collections::HashMap<String, String>, ApiError> {
    let params = request.query_string_parameters();
    let mut query = std::collections::HashMap::new();
    for (key, _) in params.iter() {
        if !allowed.contains(&key) {
            return Err(ApiError::bad_request(
                key,
                "is not a parameter of this route",
            ));
        }
        let mut values = params.all(key).unwrap_or_default().into_iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(ApiError::bad_request(key, "is given more than once"));
        };
        // Postgres text cannot hold NUL: refused here, not failed as a query.
        if value.contains('\0') {
            return Err(ApiError::bad_request(
                key,
                "must not contain a NUL character",
            ));
        }
        query.insert(key.to_owned(), value.to_owned());
    }
    Ok(query)
}

pub fn json_body<T: DeserializeOwned>(request: &Request) -> Result<T, ApiError> {
    let bytes: &[u8] = request.body().as_ref();
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest {
            field: None,
            message: "a JSON body is required".into(),
        });
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let field = (path != ".").then_some(path);
        // serde's message names unknown or missing fields and bad variants; it never echoes
        // a value of ours, only the caller's own input.
        ApiError::BadRequest {
            field,
            message: e.into_inner().to_string(),
        }
    })
}

pub fn json<T: Serialize>(status: u16, value: &T) -> Response<Body> {
    let body = serde_json::to_string(value)
        .unwrap_or_else(|_| r#"{"error":{"code":"internal","message":"internal error"}}"#.into());
    let mut response = Response::new(Body::Text(body));
    *response.status_mut() = lambda_http::http::StatusCode::from_u16(status)
        .unwrap_or(lambda_http::http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        "content-type",
        lambda_http::http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The request's `Idempotency-Key`, if it sent one: 1 to 255 visible ASCII characters.
pub fn idempotency_key(request: &Request) -> Result<Option<String>, ApiError> {
    let Some(value) = request.headers().get("idempotency-key") else {
        return Ok(None);
    };
    (value.to_str().ok())
        .filter(|key| (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()))
        .map(|key| Some(key.to_owned()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            )
        })
}

/// A hash of what the request asks: its method, path and body.
pub fn fingerprint(request: &Request) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(request.method().as_str());
    hash.update(b" ");
    hash.update(request.uri().path());
    hash.update(b"\n");
    hash.update(request.body().as_ref());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// An answer kept under an idempotency key, given again.
pub fn replayed(status: u16, body: String) -> Response<Body> {
    let mut response = if body.is_empty() {
        no_content()
    } else {
        let mut response = Response::new(Body::Text(body));
        response.headers_mut().insert(
            "content-type",
            lambda_http::http::HeaderValue::from_static("application/json"),
        );
        response
    };
    *response.status_mut() = lambda_http::http::StatusCode::from_u16(status)
        .unwrap_or(lambda_http::http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        "idempotency-replayed",
        lambda_http::http::HeaderValue::from_static("true"),
    );
    response
}

/// The response's body as text (the API answers JSON or nothing).
pub fn body_text(response: &Response<Body>) -> String {
    match response.body() {
        Body::Text(text) => text.clone(),
        Body::Binary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        _ => String::new(),
    }
}

pub fn no_content() -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = lambda_http::http::StatusCode::NO_CONTENT;
    response
}

/// The route of a request: its method and its path without a trailing slash.
pub fn route(request: &Request) -> (&str, &str) {
    let path = request.uri().path();
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    (request.method().as_str(), path)
}

/// Which of `function`'s routes the request names, with its path parameter: 405 when the path
/// is one of the function's with another method, 404 when it is none of them.
pub fn endpoint(
    request: &Request,
    function: Function,
) -> Result<(Endpoint, Option<&str>), ApiError> {
    let (method, path) = route(request);
    let under = path.strip_prefix(BASE_PATH).ok_or(ApiError::NotFound)?;
    let mut path_known = false;
    for candidate in ROUTES.iter().filter(|r| r.function == function) {
        if let Some(params) = candidate.matches(candidate.method, under) {
            if candidate.method == method {
                return Ok((candidate.endpoint, params.first().map(|(_, value)| *value)));
            }
            path_known = true;
        }
    }
    Err(if path_known {
        ApiError::MethodNotAllowed
    } else {
        ApiError::NotFound
    })
}

/// Turns a handler's result into the response, errors included.
pub fn respond(result: Result<Response<Body>, ApiError>) -> Response<Body> {
    result.unwrap_or_else(ApiError::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The endpoint `method path` names in `function`, and whether it carried a parameter.
    fn resolve(method: &str, path: &str, function: Function) -> Result<(Endpoint, bool), ApiError> {
        let request = lambda_http::http::Request::builder()
            .method(method)
            .uri(format!("https://api.example{path}"))
            .body(Body::Empty)
            .expect("a valid request");
        endpoint(&request, function).map(|(endpoint, param)| (endpoint, param.is_some()))
    }

    #[test]
    fn each_route_resolves_to_its_endpoint_and_parameter_in_its_own_function() {
        for route in ROUTES {
            let path = route
                .path
                .replace("{account_db_id}", "abc")
                .replace("{task_id}", "abc");
            let (endpoint, has_param) =
                resolve(route.method, &format!("{BASE_PATH}{path}"), route.function)
                    .unwrap_or_else(|e| panic!("{} {path}: {e:?}", route.method));
            assert_eq!(endpoint, route.endpoint);
            assert_eq!(has_param, route.path.contains('{'), "{path}");
        }
    }

    #[test]
    fn a_known_path_with_another_method_is_405_and_an_unknown_path_404() {
        let status = "/api/v1/sync/status/abc";
        assert!(matches!(
            resolve("PUT", status, Function::SyncStatus),
            Err(ApiError::MethodNotAllowed)
        ));
        assert!(matches!(
            resolve("GET", status, Function::Accounts),
            Err(ApiError::NotFound)
        ));
        assert!(matches!(
            resolve("GET", "/api/v1/sync/status/abc/more", Function::SyncStatus),
            Err(ApiError::NotFound)
        ));
        assert!(matches!(
            resolve("GET", "/sync/status/abc", Function::SyncStatus),
            Err(ApiError::NotFound)
        ));
    }

    #[test]
    fn a_trailing_slash_names_the_same_route() {
        let (endpoint, _) = resolve("GET", "/api/v1/tastytrade-accounts/", Function::Accounts)
            .expect("the collection");
        assert_eq!(endpoint, Endpoint::ListAccounts);
    }
}
