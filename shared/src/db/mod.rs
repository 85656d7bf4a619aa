//! Postgres: the pool, its error type, and the schema migrations.
//!
//! One pool per cold start ([`pool`]), handed by reference to whatever needs a connection.
//! SQL statements live next to the repository that owns them, one constant each.

pub mod accounts;
pub mod audit;
mod batch;
pub mod iam;
pub mod idempotency;
pub mod migrations;
pub mod reads;
pub mod sync;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use secrecy::ExposeSecret;
use tokio_postgres::error::SqlState;

use crate::Retry;
use crate::adapters::secrets_manager::SecretsManager;
use crate::aws::SdkConfig;
use crate::config::{DatabaseConfig, DatabaseSource};
use crate::ports::SecretSource;

pub use deadpool_postgres::Pool as PgPool;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    // The parser's message can quote the URL, password included, so it is dropped.
    #[error("DATABASE_URL is not a valid Postgres connection string")]
    InvalidUrl,
    #[error("could not build the connection pool")]
    Build(#[from] deadpool_postgres::BuildError),
    #[error("could not get a database connection")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database query failed")]
    Query(#[from] tokio_postgres::Error),
    #[error("schema migration failed")]
    Migration(#[from] refinery::Error),
    #[error("could not read the database credentials secret")]
    Credentials(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("could not prepare the database login")]
    Login(#[from] iam::SignError),
    /// A configuration that would log a function in as the wrong user.
    #[error("{0}")]
    Misconfigured(&'static str),
    /// A stored value the code has no meaning for: the schema and the code disagree.
    #[error("{column} holds a value this code does not know")]
    Unknown { column: &'static str },
}

impl DbError {
    /// Connection loss, restarts, overload and serialisation conflicts pass; constraint
    /// violations, syntax and type errors do not.
    pub fn retry(&self) -> Retry {
        match self {
            DbError::InvalidUrl
            | DbError::Build(_)
            | DbError::Migration(_)
            | DbError::Credentials(_)
            | DbError::Login(_)
            | DbError::Misconfigured(_)
            | DbError::Unknown { .. } => Retry::NonRetryable,
            DbError::Pool(_) => Retry::Retryable,
            DbError::Query(e) => match e.code() {
                // No SQLSTATE: the socket failed or the server went away mid-query.
                None => Retry::Retryable,
                Some(code) if is_transient_state(code) => Retry::Retryable,
                Some(_) => Retry::NonRetryable,
            },
        }
    }

    /// A value of a row broke the statement: data exceptions (class 22: a NUL character, a
    /// number out of range), integrity violations (class 23) other than a missing parent (the
    /// account went away), and two rows of one page on the same key.
    pub fn is_bad_row(&self) -> bool {
        self.sql_state().is_some_and(|code| {
            let class = &code.code()[..2];
            (class == "22" || class == "23" || *code == SqlState::CARDINALITY_VIOLATION)
                && *code != SqlState::FOREIGN_KEY_VIOLATION
        })
    }

    /// What Postgres said of a bad row, for its quarantine entry.
    pub fn row_reason(&self) -> String {
        match self {
            DbError::Query(e) => e.as_db_error().map_or_else(
                || e.to_string(),
                |db| format!("{} ({})", db.message(), db.code().code()),
            ),
            other => other.to_string(),
        }
    }

    /// The SQLSTATE of a server-side error, for callers that map constraint names to answers.
    pub fn sql_state(&self) -> Option<&SqlState> {
        match self {
            DbError::Query(e) => e.code(),
            _ => None,
        }
    }
}

fn is_transient_state(code: &SqlState) -> bool {
    // Class 08 is "connection exception"; the others are restarts, overload and conflicts that
    // succeed on a second attempt.
    code.code().starts_with("08")
        || [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::QUERY_CANCELED,
        ]
        .contains(code)
}

/// Builds the pool. No connection is opened until the first query, so a cold start never waits
/// on the database it may not need; only a secret source reads its secret here, once.
///
/// Each function logs in as its own database user ([`DatabaseConfig::user`]): on AWS with an
/// IAM token its role signs, locally with the URL's (trusted) login. TLS follows the URL's
/// `sslmode`: `disable` never, `prefer` (the default) when the server offers it, `require`
/// always; the deployment's sources always require it. Certificates are checked against the
/// Mozilla roots, which include the Amazon roots that sign RDS's certificates.
pub async fn pool(config: &DatabaseConfig, sdk: &SdkConfig) -> Result<Pool, DbError> {
    let settings = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match &config.source {
        DatabaseSource::Url(url) => {
            let mut pg: tokio_postgres::Config = url
                .expose_secret()
                .parse()
                .map_err(|_| DbError::InvalidUrl)?;
            // The local stack and the tests log in as the function's user too, so a grant the
            // function lacks fails there as it would on Aurora.
            if let Some(user) = config.user {
                pg.user(user);
            }
            Manager::from_config(pg, tls_connector(), settings)
        }
        DatabaseSource::Iam { host, port, name } => {
            let user = config.user.ok_or(DbError::Misconfigured(
                "an IAM login needs the function's database user",
            ))?;
            let mut pg = tokio_postgres::Config::new();
            pg.host(host)
                .port(*port)
                .dbname(name)
                .user(user)
                .ssl_mode(tokio_postgres::config::SslMode::Require);
            let connect = iam::IamConnect {
                signer: iam::LoginSigner::new(sdk, host, *port, user)?,
                tls: tls_connector(),
            };
            Manager::from_connect(pg, connect, settings)
        }
        DatabaseSource::Secret {
            arn,
            host,
            port,
            name,
        } => {
            if config.user.is_some() {
                return Err(DbError::Misconfigured(
                    "the master secret is the migrations'; a function logs in as its own user",
                ));
            }
            let credentials = Credentials::read(
                &SecretsManager::new(aws_sdk_secretsmanager::Client::new(sdk)),
                arn,
            )
            .await?;
            let mut pg = tokio_postgres::Config::new();
            pg.host(host)
                .port(*port)
                .dbname(name)
                .user(&credentials.username)
                .password(credentials.password.expose_secret())
                .ssl_mode(tokio_postgres::config::SslMode::Require);
            Manager::from_config(pg, tls_connector(), settings)
        }
    };
    Ok(Pool::builder(manager)
        .max_size(config.max_connections)
        .build()?)
}

/// A stored environment name.
pub(crate) fn environment(text: &str) -> Result<crate::tastytrade::Environment, DbError> {
    crate::tastytrade::Environment::parse(text).ok_or(DbError::Unknown {
        column: "environment",
    })
}

/// A stored account sync status.
pub(crate) fn account_status(
    text: &str,
) -> Result<crate::domain::accounts::AccountStatus, DbError> {
    crate::domain::accounts::AccountStatus::parse(text).ok_or(DbError::Unknown {
        column: "last_sync_status",
    })
}

/// What holding a function's pool costs in IAM: logging in to RDS Proxy as its database user
/// (a `DATABASE_URL` never calls AWS, but the deployment always logs in with IAM).
pub const POOL_ACTIONS: crate::ports::Actions = &["rds-db:connect"];

/// What the migrations' pool costs: reading the cluster's master secret at cold start.
pub const MIGRATION_POOL_ACTIONS: crate::ports::Actions = <SecretsManager as SecretSource>::ACTIONS;

/// [`pool`] with the [`DatabaseConfig`] of the environment: what every function's wiring calls.
pub async fn pool_from_env(
    env: &crate::config::Env,
    sdk: &SdkConfig,
) -> Result<Pool, crate::StartupError> {
    Ok(pool(&DatabaseConfig::from_env(env)?, sdk).await?)
}

/// The read routes' role (V16): it may read every table and write none.
pub const READER_ROLE: &str = "tastysync_reader";

/// The RDS-managed secret of the cluster's master user, the migrations' login.
#[derive(serde::Deserialize)]
struct Credentials {
    username: String,
    password: secrecy::SecretString,
}

impl Credentials {
    async fn read(source: &impl SecretSource, arn: &str) -> Result<Self, DbError> {
        let text = source
            .read(arn)
            .await
            .map_err(DbError::Credentials)?
            .ok_or_else(|| DbError::Credentials("the secret has no string value".into()))?;
        // serde's message could quote the password, so it is replaced.
        serde_json::from_str(text.expose_secret())
            .map_err(|_| DbError::Credentials("the secret is not {username, password}".into()))
    }
}

fn tls_connector() -> tokio_postgres_rustls::MakeRustlsConnect {
    tokio_postgres_rustls::MakeRustlsConnect::new(crate::tls::client_config().as_ref().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;

    /// A URL source never calls AWS, so any SDK configuration does.
    fn offline_sdk() -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build()
    }

    #[tokio::test]
    async fn invalid_url_error_does_not_echo_the_url() {
        let env = Env::from_pairs([("DATABASE_URL", "postgres://u:hunter2@db:notaport/x")]);
        let config = DatabaseConfig::from_env(&env).unwrap();
        let err = pool(&config, &offline_sdk()).await.unwrap_err();
        assert!(matches!(err, DbError::InvalidUrl));
        assert!(!err.to_string().contains("hunter2"));
    }

    fn iam_config(user: Option<&'static str>) -> DatabaseConfig {
        let env = Env::from_pairs([("DATABASE_HOST", "proxy.example")]);
        DatabaseConfig {
            user,
            ..DatabaseConfig::from_env(&env).unwrap()
        }
    }

    #[tokio::test]
    async fn an_iam_login_is_for_a_functions_own_user_and_needs_its_credentials() {
        let signing = SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(
                    aws_credential_types::Credentials::new("akid", "secret", None, None, "test"),
                ),
            )
            .build();

        let without_user = pool(&iam_config(None), &signing).await.unwrap_err();
        let without_credentials = pool(&iam_config(Some("tastysync_worker")), &offline_sdk())
            .await
            .unwrap_err();
        let built = pool(&iam_config(Some("tastysync_worker")), &signing).await;

        assert!(matches!(without_user, DbError::Misconfigured(_)));
        assert!(matches!(without_credentials, DbError::Login(_)));
        assert!(built.is_ok());
    }

    #[tokio::test]
    async fn a_tls_url_builds_a_pool_without_connecting() {
        let env = Env::from_pairs([(
            "DATABASE_URL",
            "postgres://u@proxy.example:5432/x?sslmode=require",
        )]);
        let config = DatabaseConfig::from_env(&env).unwrap();
        assert!(pool(&config, &offline_sdk()).await.is_ok());
    }
}
