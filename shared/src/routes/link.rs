//! `link-account`: start the authorization-code flow, and link a grant (either flow).

use chrono::Utc;
use lambda_http::{Body, Request, Response};
use secrecy::{ExposeSecret, SecretString};
use url::Url;
use uuid::Uuid;

use crate::api::{LinkRequest, LinkStartRequest, LinkStartResponse, TastyTradeAccountRead};
use crate::config::{ConfigError, Env};
use crate::domain::accounts::{BrokerAccount, GrantKind, LinkedAccount, NewCredential};
use crate::domain::audit::{AuditAction, AuditOutcome};
use crate::domain::requests::Limit;
use crate::domain::tasks::{NewTask, TaskKind};
use crate::http::{self, ApiError};
use crate::iam::Permissions;
use crate::oauth_state::{StateError, StateSigner};
use crate::ports::{
    AccountRepo, Actions, AuditLog, Broker, IdempotencyKeys, RequestLimiter, StateNonces,
    SyncQueue, TaskCreator, TokenSealer,
};
use crate::secrets::{OAuthClient, Purpose, Sealed, SecretContext};
use crate::tastytrade::model::{AccountAuthority, Record};
use crate::tastytrade::{AccessToken, BrokerError, Environment, Grant, Session};

/// Secrets longer than this are not tastytrade's: refuse them before any call.
const MAX_SECRET_LEN: usize = 4096;

/// The deployment's side of the authorization-code flow.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    pub production_authorize_url: Url,
    pub sandbox_authorize_url: Url,
    /// Exact redirect URIs registered with tastytrade; anything else would make `/link/start`
    /// an open redirect.
    pub allowed_redirect_uris: Vec<String>,
    pub scope: String,
    /// Whether the flow sends a PKCE (S256) challenge and verifier (`OAUTH_PKCE`). Off unless
    /// set: tastytrade documents no PKCE support (README, "Linking"), and a provider that
    /// does not know the parameters may refuse them.
    pub pkce: bool,
}

impl OAuthSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let url = |name: &'static str, default: &str| {
            Url::parse(env.optional(name).unwrap_or(default)).map_err(|e| ConfigError::Invalid {
                name,
                reason: e.to_string(),
            })
        };
        let allowed_redirect_uris: Vec<String> = env
            .required("OAUTH_REDIRECT_URIS")?
            .split(',')
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        Ok(Self {
            production_authorize_url: url(
                "TASTYTRADE_AUTHORIZE_URL",
                "https://my.tastytrade.com/auth.html",
            )?,
            sandbox_authorize_url: url(
                "TASTYTRADE_SANDBOX_AUTHORIZE_URL",
                "https://cert-my.staging-tasty.works/auth.html",
            )?,
            allowed_redirect_uris,
            scope: env.optional("OAUTH_SCOPE").unwrap_or("read").to_owned(),
            pkce: env.parsed_or("OAUTH_PKCE", false)?,
        })
    }

    fn authorize_url(&self, environment: Environment) -> &Url {
        match environment {
            Environment::Production => &self.production_authorize_url,
            Environment::Sandbox => &self.sandbox_authorize_url,
        }
    }

    fn check_redirect(&self, redirect_uri: &str) -> Result<(), ApiError> {
        if self.allowed_redirect_uris.iter().any(|u| u == redirect_uri) {
            Ok(())
        } else {
            Err(ApiError::bad_request(
                "redirect_uri",
                "is not a redirect URI this deployment registered",
            ))
        }
    }
}

/// The database ports the link routes use: the accounts, and the audit trail.
pub trait LinkStore: AccountRepo + AuditLog + IdempotencyKeys {}
impl<A: AccountRepo + AuditLog + IdempotencyKeys> LinkStore for A {}

/// The task ports the link routes use: they queue first syncs, spend state nonces, and count
/// the caller's links.
pub trait LinkTasks: TaskCreator + StateNonces + RequestLimiter {}
impl<T: TaskCreator + StateNonces + RequestLimiter> LinkTasks for T {}

/// Everything the link routes use, built once per cold start.
#[derive(Debug)]
pub struct LinkDeps<A: LinkStore, C: TokenSealer, T: LinkTasks, Q: SyncQueue, B: Broker> {
    pub accounts: A,
    pub broker: B,
    pub cipher: C,
    pub tasks: T,
    pub queue: Q,
    pub oauth_client: OAuthClient,
    pub state: StateSigner,
    pub settings: OAuthSettings,
    /// How many links a user may start and finish (`UserLimits::link`).
    pub limit: Limit,
}

impl<A: LinkStore, C: TokenSealer, T: LinkTasks, Q: SyncQueue, B: Broker> Permissions
    for LinkDeps<A, C, T, Q, B>
{
    fn held() -> Vec<Actions> {
        vec![
            <A as AccountRepo>::ACTIONS,
            <A as AuditLog>::ACTIONS,
            <A as IdempotencyKeys>::ACTIONS,
            // The OAuth client and the state-signing key.
            crate::secrets::SECRET_ACTIONS,
            C::ACTIONS,
            <T as TaskCreator>::ACTIONS,
            <T as StateNonces>::ACTIONS,
            <T as RequestLimiter>::ACTIONS,
            Q::ACTIONS,
        ]
    }
}

/// Returns the tastytrade authorize URL, with a `state` bound to the caller.
#[utoipa::path(
    post,
    path = "/tastytrade-accounts/link/start",
    request_body = LinkStartRequest,
    responses(
        (status = 200, body = LinkStartResponse),
        (status = 400, body = crate::api::ErrorBody),
        (status = 401, body = crate::api::Unauthorized),
        (status = 413, body = crate::api::ErrorBody),
    ),
)]
pub async fn start<A: LinkStore, C: TokenSealer, T: LinkTasks, Q: SyncQueue, B: Broker>(
    deps: &LinkDeps<A, C, T, Q, B>,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let user = http::user_id(request)?;
    let body: LinkStartRequest = http::json_body(request)?;
    deps.settings.check_redirect(&body.redirect_uri)?;
    let issued = deps
        .state
        .sign(&user, body.environment, &body.redirect_uri, Utc::now());
    let mut url = deps.settings.authorize_url(body.environment).clone();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &deps.oauth_client.client_id)
        .append_pair("redirect_uri", &body.redirect_uri)
        .append_pair("scope", &deps.settings.scope)
        .append_pair("state", &issued.state);
    if deps.settings.pkce {
        url.query_pairs_mut()
            .append_pair("code_challenge", &deps.state.pkce(&issued.nonce).challenge)
            .append_pair("code_challenge_method", "S256");
    }
    Ok(http::json(
        200,
        &LinkStartResponse {
            authorize_url: url.into(),
            state: issued.state,
            expires_at: issued.expires_at,
        },
    ))
}

/// Links the grant's accounts and starts a full sync of each.
#[utoipa::path(
    post,
    path = "/tastytrade-accounts/link",
    request_body = LinkRequest,
    responses(
        (status = 201, body = [TastyTradeAccountRead]),
        (status = 400, body = crate::api::ErrorBody),
        (status = 401, body = crate::api::Unauthorized),
        (status = 413, body = crate::api::ErrorBody),
        (status = 503, body = crate::api::ErrorBody),
    ),
)]
pub async fn link<A: LinkStore, C: TokenSealer, T: LinkTasks, Q: SyncQueue, B: Broker>(
    deps: &LinkDeps<A, C, T, Q, B>,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let user = http::user_id(request)?;
    let body: LinkRequest = http::json_body(request)?;
    let environment = body.environment;
    let (grant, cached, kind) = grant_from(deps, &user, body).await?;

    // Listing the accounts proves the grant works (it mints an access token first).
    let session = deps.broker.session(grant, cached);
    let listed = match session.accounts().await.map_err(broker_error) {
        Ok(listed) => listed,
        Err(e) => {
            if matches!(e, ApiError::GrantRejected) {
                let refused = (None, AuditAction::Link, AuditOutcome::Refused);
                super::audit(&deps.accounts, request, &user, refused).await;
            }
            return Err(e);
        }
    };
    if listed.is_empty() {
        return Err(ApiError::BadRequest {
            field: None,
            message: "the grant reaches no tastytrade account".into(),
        });
    }
    let credential_id = Uuid::new_v4();
    let credential = NewCredential {
        id: credential_id,
        user_id: user.clone(),
        environment,
        kind,
        secrets: seal_grant(&deps.cipher, &user, credential_id, session.grant(), kind).await?,
        access_token: seal_access_token(&deps.cipher, &user, credential_id, &session).await?,
    };
    let broker_accounts: Vec<BrokerAccount> = listed.into_iter().map(broker_account).collect();
    let linked = deps.accounts.link(&credential, &broker_accounts).await?;
    for account in &linked {
        let action = if account.is_new {
            AuditAction::Link
        } else {
            AuditAction::Relink
        };
        let linked = (Some(account.id), action, AuditOutcome::Succeeded);
        super::audit(&deps.accounts, request, &user, linked).await;
    }
    queue_first_syncs(deps, &user, &linked).await;
    tracing::info!(user_id = %user, accounts = linked.len(), new = linked.iter().filter(|a| a.is_new).count(), "grant linked");

    let ids: Vec<Uuid> = linked.iter().map(|a| a.id).collect();
    let rows = deps.accounts.list(&user).await?;
    let body: Vec<TastyTradeAccountRead> = rows
        .into_iter()
        .filter(|r| ids.contains(&r.id))
        .map(Into::into)
        .collect();
    Ok(http::json(201, &body))
}

/// The grant's secrets sealed for `credential_id`: the refresh token, and a personal grant's
/// client secret (the deployment's own client secret is never stored with a grant).
async fn seal_grant(
    cipher: &impl TokenSealer,
    user: &str,
    credential_id: Uuid,
    grant: &Grant,
    kind: GrantKind,
) -> Result<Vec<(Purpose, Sealed)>, ApiError> {
    let mut secrets = vec![(Purpose::RefreshToken, &grant.refresh_token)];
    if kind == GrantKind::Personal {
        secrets.push((Purpose::ClientSecret, &grant.client_secret));
    }
    let mut sealed = Vec::with_capacity(secrets.len());
    for (purpose, secret) in secrets {
        let context = SecretContext {
            purpose,
            user_id: user,
            credential_id,
        };
        sealed.push((purpose, cipher.seal(context, secret).await?));
    }
    Ok(sealed)
}

/// The access token the listing minted, sealed for `credential_id` with its expiry; none if
/// the session no longer holds one (the first sync then mints its own).
async fn seal_access_token<B: Broker>(
    cipher: &impl TokenSealer,
    user: &str,
    credential_id: Uuid,
    session: &Session<'_, B>,
) -> Result<Option<(Sealed, chrono::DateTime<Utc>)>, ApiError> {
    let Some(token) = session.current_token().await else {
        return Ok(None);
    };
    let context = SecretContext {
        purpose: Purpose::AccessToken,
        user_id: user,
        credential_id,
    };
    let sealed = cipher.seal(context, &token.token).await?;
    Ok(Some((sealed, token.expires_at)))
}

fn broker_account(record: Record<AccountAuthority>) -> BrokerAccount {
    let account = record.item.account;
    BrokerAccount {
        account_number: account.account_number,
        nickname: account.nickname,
        account_type_name: account.account_type_name,
        margin_or_cash: account.margin_or_cash,
        is_closed: account.is_closed.unwrap_or(false),
        opened_at: account.opened_at,
        closed_at: account.closed_at,
        raw: crate::tastytrade::model::tree(&record.raw),
    }
}

/// Queues each linked account's full sync and marks the ones queued.
async fn queue_first_syncs<A: LinkStore, C: TokenSealer, T: LinkTasks, Q: SyncQueue, B: Broker>(
    deps: &LinkDeps<A, C, T, Q, B>,
    user: &str,
    linked: &[LinkedAccount],
) {
    let mut queued = Vec::with_capacity(linked.len());
    for account in linked {
        let task = NewTask::new(user, account.id, TaskKind::Full);
        // The link itself has succeeded; a task that cannot be queued now is picked up by the
        // scheduler's next tick of the account's slot (the account stays PENDING and unmarked),
        // so it is logged, not returned.
        match enqueue(deps, &task).await {
            Ok(()) => queued.push(account.id),
            Err(e) => {
                tracing::error!(user_id = %user, account_id = %account.id, error = %e, "could not queue the first sync");
            }
        }
    }
    if let Err(e) = deps.accounts.mark_queued(&queued).await {
        tracing::warn!(user_id = %user, error = %e, "queued markers not set");
    }
}

async fn enqueue<A: LinkStore, C: TokenSealer, T: LinkTasks, Q: SyncQueue, B: Broker>(
    deps: &LinkDeps<A, C, T, Q, B>,
    task: &NewTask,
) -> Result<(), crate::ports::TaskError> {
    deps.tasks.create(task).await?;
    deps.queue.enqueue(&task.message()).await
}

/// Checks the request's shape for its flow and turns it into a grant. The authorization code
/// is exchanged here, which also yields the first access token.
async fn grant_from<A: LinkStore, C: TokenSealer, T: LinkTasks, Q: SyncQueue, B: Broker>(
    deps: &LinkDeps<A, C, T, Q, B>,
    user: &str,
    mut body: LinkRequest,
) -> Result<(Grant, Option<AccessToken>, GrantKind), ApiError> {
    let environment = body.environment;
    match (body.code.take(), body.refresh_token.take()) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "code",
            "give either code (with state) or refresh_token, not both",
        )),
        (None, None) => Err(ApiError::bad_request(
            "refresh_token",
            "give code (with state) or refresh_token",
        )),
        (Some(code), None) => code_grant(deps, user, environment, code, body).await,
        (None, Some(refresh_token)) => personal_grant(environment, refresh_token, body),
    }
}

/// The authorization-code flow: the `state` checked against the caller and the request, then
/// the code exchanged with the deployment's client.
async fn code_grant<A: LinkStore, C: TokenSealer, T: LinkTasks, Q: SyncQueue, B: Broker>(
    deps: &LinkDeps<A, C, T, Q, B>,
    user: &str,
    environment: Environment,
    code: SecretString,
    body: LinkRequest,
) -> Result<(Grant, Option<AccessToken>, GrantKind), ApiError> {
    let state = body
        .state
        .ok_or_else(|| ApiError::bad_request("state", "is required with code"))?;
    let redirect_uri = body
        .redirect_uri
        .ok_or_else(|| ApiError::bad_request("redirect_uri", "is required with code"))?;
    if body.client_secret.is_some() {
        return Err(ApiError::bad_request(
            "client_secret",
            "is not taken with code: the deployment's client exchanges it",
        ));
    }
    bounded("code", &code)?;
    deps.settings.check_redirect(&redirect_uri)?;
    let verified = deps
        .state
        .verify(&state, user, environment, &redirect_uri, Utc::now())
        .map_err(|e| {
            let message = match e {
                StateError::Expired => "has expired; start the link again",
                StateError::Forged | StateError::Mismatch => {
                    "is not valid for this user and request"
                }
            };
            ApiError::bad_request("state", message)
        })?;
    // Spent before the exchange, so two requests racing with one state cannot both link; a
    // failed exchange spends it too, and the user starts again.
    if !deps
        .tasks
        .spend(&verified.nonce, verified.expires_at)
        .await?
    {
        tracing::warn!(user_id = %user, event = "oauth_state_replayed", "a spent state was presented again");
        return Err(ApiError::bad_request(
            "state",
            "has been used already; start the link again",
        ));
    }
    let pkce = deps.settings.pkce.then(|| deps.state.pkce(&verified.nonce));
    let client = &deps.oauth_client;
    let exchanged = deps
        .broker
        .exchange_code(
            environment,
            &client.client_id,
            &client.client_secret,
            &code,
            &redirect_uri,
            pkce.as_ref().map(|p| &p.verifier),
        )
        .await
        .map_err(|e| match e {
            // The deployment's own client refused, not the user's approval: a wrong or rotated
            // client secret, fixed by us (a log metric filter alarms on the event name).
            BrokerError::ClientRejected { .. } => {
                tracing::error!(
                    event = "deployment_oauth_client_rejected",
                    "tastytrade refused the deployment's OAuth client at the code exchange"
                );
                ApiError::Unavailable
            }
            e => broker_error(e),
        })?;
    let grant = Grant {
        environment,
        client_id: Some(client.client_id.clone()),
        client_secret: SecretString::from(client.client_secret.expose_secret().to_owned()),
        refresh_token: exchanged.refresh_token,
    };
    Ok((grant, Some(exchanged.access), GrantKind::AuthorizationCode))
}

/// A personal grant: the user's own refresh token and client secret.
fn personal_grant(
    environment: Environment,
    refresh_token: SecretString,
    body: LinkRequest,
) -> Result<(Grant, Option<AccessToken>, GrantKind), ApiError> {
    let client_secret = body
        .client_secret
        .ok_or_else(|| ApiError::bad_request("client_secret", "is required with refresh_token"))?;
    if body.state.is_some() || body.redirect_uri.is_some() {
        return Err(ApiError::bad_request(
            "state",
            "belongs to the code flow, not to a personal grant",
        ));
    }
    bounded("refresh_token", &refresh_token)?;
    bounded("client_secret", &client_secret)?;
    Ok((
        Grant {
            environment,
            client_id: None,
            client_secret,
            refresh_token,
        },
        None,
        GrantKind::Personal,
    ))
}

fn bounded(field: &str, secret: &SecretString) -> Result<(), ApiError> {
    let len = secret.expose_secret().trim().len();
    if len == 0 || len > MAX_SECRET_LEN {
        return Err(ApiError::bad_request(
            field,
            format!("must be between 1 and {MAX_SECRET_LEN} characters"),
        ));
    }
    Ok(())
}

fn broker_error(e: BrokerError) -> ApiError {
    tracing::warn!(error = %e, code = e.code(), "tastytrade refused or failed the link");
    match e {
        BrokerError::GrantRevoked { .. }
        | BrokerError::ClientRejected { .. }
        | BrokerError::AuthExpired { .. }
        | BrokerError::InvalidRequest { .. } => ApiError::GrantRejected,
        _ => ApiError::BrokerUnavailable,
    }
}
