//! The HTTP API's request and response types, and its OpenAPI document (generated from these
//! types and the route annotations in [`crate::routes`]; committed as `openapi.json`).

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use uuid::Uuid;

use crate::db::accounts::AccountRow;
use crate::tastytrade::Environment;

/// A linked account as the frontend sees it. Never carries a secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TastyTradeAccountRead {
    pub id: Uuid,
    pub account_number: String,
    pub nickname: Option<String>,
    pub account_type: Option<String>,
    pub environment: Environment,
    /// PENDING, RUNNING, SUCCESS, FAILED or NEEDS_REAUTH.
    pub last_sync_status: String,
    pub last_successful_sync_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<AccountRow> for TastyTradeAccountRead {
    fn from(row: AccountRow) -> Self {
        Self {
            id: row.id,
            account_number: row.account_number,
            nickname: row.nickname,
            account_type: row.account_type_name,
            environment: if row.environment == "production" {
                Environment::Production
            } else {
                Environment::Sandbox
            },
            last_sync_status: row.last_sync_status,
            last_successful_sync_at: row.last_successful_sync_at,
            last_error: row.last_error,
            created_at: row.created_at,
        }
    }
}

/// Starts the authorization-code flow.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkStartRequest {
    pub environment: Environment,
    /// Where tastytrade sends the user back; must be one of the deployment's allowed URIs.
    pub redirect_uri: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkStartResponse {
    /// Send the user here; tastytrade redirects back with `code` and `state`.
    pub authorize_url: String,
    pub state: String,
    pub expires_at: DateTime<Utc>,
}

/// Links a grant: either `code` + `state` + `redirect_uri` (authorization-code flow) or
/// `refresh_token` + `client_secret` (a personal grant). Passwords are not accepted: tastytrade
/// only takes OAuth2.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    pub environment: Environment,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    pub code: Option<SecretString>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub redirect_uri: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    pub refresh_token: Option<SecretString>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    pub client_secret: Option<SecretString>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut jwt = Http::new(HttpAuthScheme::Bearer);
        jwt.bearer_format = Some("JWT".into());
        components.add_security_scheme("jwt", SecurityScheme::Http(jwt));
    }
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "tastysync API", description = "Link tastytrade accounts and keep them in sync."),
    servers((url = "/api/v1")),
    paths(
        crate::routes::link::start,
        crate::routes::link::link,
        crate::routes::accounts::list,
        crate::routes::accounts::unlink,
    ),
    components(schemas(TastyTradeAccountRead, LinkStartRequest, LinkStartResponse, LinkRequest, ErrorBody, ErrorDetail, Environment)),
    modifiers(&BearerAuth),
    security(("jwt" = [])),
)]
pub struct ApiDoc;

/// The document as committed in `openapi.json`.
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default() + "\n"
}
