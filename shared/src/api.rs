//! The HTTP API's request and response types, and its OpenAPI document (generated from these
//! types and the route annotations in [`crate::routes`]; committed as `openapi.json`).

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use uuid::Uuid;

use crate::domain::accounts::AccountRow;
use crate::domain::accounts::AccountStatus;
use crate::domain::tasks::{Counts, TaskKind, TaskRecord, TaskStatus};
use crate::tastytrade::Environment;
use crate::wiring::Function;

/// The API's base path: the stage serves every route under it.
pub const BASE_PATH: &str = "/api/v1";

/// What a route does; handlers dispatch on it, so no path is written twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    LinkStart,
    Link,
    ListAccounts,
    Unlink,
    AccountTasks,
    TriggerSync,
    TaskStatus,
    Transactions,
    Positions,
    Balances,
    Account,
    Orders,
    BalanceHistory,
    AuditEvents,
    PurgeMyData,
}

/// One route of the HTTP API and the function that serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub endpoint: Endpoint,
    pub method: &'static str,
    /// Under [`BASE_PATH`], with `{name}` for a path parameter, as API Gateway writes it.
    pub path: &'static str,
    pub function: Function,
}

/// Every route, written once: the functions' handlers dispatch through it
/// ([`crate::http::endpoint`]), the local gateway serves exactly these, and tests hold the
/// OpenAPI document and `template.yaml` to it.
pub const ROUTES: &[Route] = &[
    Route {
        endpoint: Endpoint::LinkStart,
        method: "POST",
        path: "/tastytrade-accounts/link/start",
        function: Function::LinkAccount,
    },
    Route {
        endpoint: Endpoint::Link,
        method: "POST",
        path: "/tastytrade-accounts/link",
        function: Function::LinkAccount,
    },
    Route {
        endpoint: Endpoint::ListAccounts,
        method: "GET",
        path: "/tastytrade-accounts",
        function: Function::Accounts,
    },
    Route {
        endpoint: Endpoint::Unlink,
        method: "DELETE",
        path: "/tastytrade-accounts/{account_db_id}",
        function: Function::Accounts,
    },
    Route {
        endpoint: Endpoint::AuditEvents,
        method: "GET",
        path: "/audit-events",
        function: Function::Accounts,
    },
    Route {
        endpoint: Endpoint::PurgeMyData,
        method: "DELETE",
        path: "/me/data",
        function: Function::Accounts,
    },
    Route {
        endpoint: Endpoint::Account,
        method: "GET",
        path: "/tastytrade-accounts/{account_db_id}",
        function: Function::AccountData,
    },
    Route {
        endpoint: Endpoint::Transactions,
        method: "GET",
        path: "/tastytrade-accounts/{account_db_id}/transactions",
        function: Function::AccountData,
    },
    Route {
        endpoint: Endpoint::Orders,
        method: "GET",
        path: "/tastytrade-accounts/{account_db_id}/orders",
        function: Function::AccountData,
    },
    Route {
        endpoint: Endpoint::BalanceHistory,
        method: "GET",
        path: "/tastytrade-accounts/{account_db_id}/balance-history",
        function: Function::AccountData,
    },
    Route {
        endpoint: Endpoint::Positions,
        method: "GET",
        path: "/tastytrade-accounts/{account_db_id}/positions",
        function: Function::AccountData,
    },
    Route {
        endpoint: Endpoint::Balances,
        method: "GET",
        path: "/tastytrade-accounts/{account_db_id}/balances",
        function: Function::AccountData,
    },
    Route {
        endpoint: Endpoint::AccountTasks,
        method: "GET",
        path: "/tastytrade-accounts/{account_db_id}/sync-tasks",
        function: Function::SyncStatus,
    },
    Route {
        endpoint: Endpoint::TriggerSync,
        method: "POST",
        path: "/sync/tastytrade/{account_db_id}/trigger",
        function: Function::SyncTrigger,
    },
    Route {
        endpoint: Endpoint::TaskStatus,
        method: "GET",
        path: "/sync/status/{task_id}",
        function: Function::SyncStatus,
    },
];

impl Route {
    /// The path parameters when `path` (under [`BASE_PATH`]) is this route's; `None` otherwise.
    pub fn matches<'a>(&self, method: &str, path: &'a str) -> Option<Vec<(&'static str, &'a str)>> {
        if self.method != method {
            return None;
        }
        let mut wanted = self.path.split('/');
        let mut given = path.split('/');
        let mut params = Vec::new();
        loop {
            match (wanted.next(), given.next()) {
                (None, None) => return Some(params),
                (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') && !g.is_empty() => {
                    params.push((&w[1..w.len() - 1], g));
                }
                (Some(w), Some(g)) if w == g => {}
                _ => return None,
            }
        }
    }
}

/// A linked account as the frontend sees it. Never carries a secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TastyTradeAccountRead {
    pub id: Uuid,
    pub account_number: String,
    pub nickname: Option<String>,
    pub account_type: Option<String>,
    pub environment: Environment,
    pub last_sync_status: AccountStatus,
    pub last_successful_sync_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// Rows the broker sent for this account that could not be stored and wait in quarantine:
    /// a warning that the synced data is incomplete until a later sync stores them.
    pub quarantined_rows: u64,
    pub created_at: DateTime<Utc>,
}

/// One account: what the list shows, and how far it is synced.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AccountDetail {
    pub account: TastyTradeAccountRead,
    pub synced: crate::domain::reads::SyncedSummary,
}

impl From<AccountRow> for TastyTradeAccountRead {
    fn from(row: AccountRow) -> Self {
        Self {
            id: row.id,
            account_number: row.account_number,
            nickname: row.nickname,
            account_type: row.account_type_name,
            environment: row.environment,
            last_sync_status: row.last_sync_status,
            last_successful_sync_at: row.last_successful_sync_at,
            last_error: row.last_error,
            quarantined_rows: row.quarantined_rows,
            created_at: row.created_at,
        }
    }
}

/// A sync task as the frontend follows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SyncTaskStatus {
    pub task_id: Uuid,
    pub account_id: Uuid,
    pub kind: TaskKind,
    pub status: TaskStatus,
    pub progress_percentage: u8,
    /// The stage running now (accounts, balances, positions, transactions, orders,
    /// balance_snapshots), or `done`.
    pub stage: Option<String>,
    /// One sentence for a person: what the task is doing or how it ended.
    pub details: String,
    /// Rows read from tastytrade and rows written (inserted or changed), per entity.
    pub counts: Counts,
    pub error_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
}

impl From<TaskRecord> for SyncTaskStatus {
    fn from(task: TaskRecord) -> Self {
        let read: u64 = task.counts.read.values().sum();
        let details = match task.status {
            TaskStatus::Pending => "queued; waiting for a worker".to_owned(),
            TaskStatus::InProgress => format!(
                "syncing {}; {read} rows read so far",
                task.stage.as_deref().unwrap_or("the account")
            ),
            TaskStatus::Retrying => format!(
                "interrupted after attempt {}; it will be retried shortly",
                task.attempts.max(1)
            ),
            TaskStatus::Completed => format!(
                "completed: {read} rows read, {} inserted or changed",
                task.counts.total_written()
            ),
            TaskStatus::Failed | TaskStatus::NeedsReauth => task
                .error_message
                .clone()
                .unwrap_or_else(|| "the sync did not complete".to_owned()),
        };
        Self {
            task_id: task.task_id,
            account_id: task.account_id,
            kind: task.kind,
            status: task.status,
            progress_percentage: task.progress_percentage,
            stage: task.stage,
            details,
            counts: task.counts,
            error_message: task.error_message,
            created_at: task.created_at,
            last_updated: task.last_updated,
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

/// A 401 answer. API Gateway's JWT authorizer refuses a missing, expired or forged token
/// itself, with `{"message": "Unauthorized"}`, before any function runs; a function reached
/// without claims (a misconfigured route) answers with an [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Unauthorized {
    Authorizer(AuthorizerMessage),
    Function(ErrorBody),
}

/// API Gateway's own error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorizerMessage {
    pub message: String,
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

/// Every route counts the caller's requests ([`crate::routes::admitted`]): each operation
/// documents the 429 that answers a caller over the limit, unless it documents its own.
struct PerUserLimits;

impl Modify for PerUserLimits {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, ResponseBuilder};
        let over = ResponseBuilder::new()
            .description("the caller is over a per-user limit; see Retry-After")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::Integer))
                    .description(Some("seconds until the limit's window ends"))
                    .build(),
            )
            .build();
        for path in openapi.paths.paths.values_mut() {
            let operations = [&mut path.get, &mut path.post, &mut path.delete];
            for operation in operations.into_iter().flatten() {
                (operation.responses.responses)
                    .entry("429".into())
                    .or_insert_with(|| RefOr::T(over.clone()));
            }
        }
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
        crate::routes::accounts::audit_events,
        crate::routes::accounts::purge,
        crate::routes::account_data::account,
        crate::routes::account_data::transactions,
        crate::routes::account_data::orders,
        crate::routes::account_data::positions,
        crate::routes::account_data::balances,
        crate::routes::account_data::balance_history,
        crate::routes::sync_tasks::trigger,
        crate::routes::sync_tasks::status,
        crate::routes::sync_tasks::account_tasks,
    ),
    components(schemas(TastyTradeAccountRead, LinkStartRequest, LinkStartResponse, LinkRequest, SyncTaskStatus, TaskKind, TaskStatus, Counts, ErrorBody, ErrorDetail, Unauthorized, AuthorizerMessage, Environment, AccountStatus, crate::domain::reads::TransactionPage, crate::domain::reads::TransactionRead, crate::domain::reads::PositionRead, crate::domain::reads::OptionLeg, crate::domain::reads::BalanceRead, crate::domain::reads::SyncedSummary, crate::domain::reads::TradingStatusRead, AccountDetail, crate::domain::reads::OrderPage, crate::domain::reads::OrderRead, crate::domain::reads::LegRead, crate::domain::reads::FillRead, crate::domain::reads::BalanceHistory, crate::domain::reads::BalancePoint, crate::domain::reads::NetLiqBar, crate::domain::reads::GreeksRead, crate::domain::audit::AuditEventPage, crate::domain::audit::AuditEventRead, crate::domain::audit::AuditAction, crate::domain::audit::AuditOutcome)),
    modifiers(&BearerAuth, &PerUserLimits),
    security(("jwt" = [])),
)]
pub struct ApiDoc;

/// The document as committed in `openapi.json`.
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default() + "\n"
}
