//! Typed configuration, read once per cold start.
//!
//! Each function declares one `Config` struct made of the pieces below and builds it in `main`
//! from [`Env::process`]. A missing or malformed variable stops the cold start with a message
//! that names the variable (and never echoes its value, which may be a secret).

use std::collections::HashMap;
use std::str::FromStr;

use secrecy::SecretString;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {name} is required but not set")]
    Missing { name: &'static str },
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Where configuration values come from: the process environment in functions, a map in tests.
#[derive(Clone)]
pub struct Env {
    values: HashMap<String, String>,
}

impl std::fmt::Debug for Env {
    // The values may hold secrets: show only which variables are present.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Env {
    pub fn process() -> Self {
        Self {
            values: std::env::vars().collect(),
        }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    /// The same environment with `name` set to `value` (local tools point functions at what
    /// they started).
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.values.insert(name.to_owned(), value.into());
        self
    }

    /// A set but empty variable counts as unset: deployment tools often write `NAME=` for "none".
    /// Every variable, to hand on to a child process.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn optional(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    pub fn required(&self, name: &'static str) -> Result<&str, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing { name })
    }

    pub fn secret(&self, name: &'static str) -> Result<SecretString, ConfigError> {
        self.required(name).map(SecretString::from)
    }

    pub fn parsed_or<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::Invalid {
                    name,
                    reason: e.to_string(),
                }),
        }
    }
}

/// How to reach Postgres. The URL carries the password, so it stays a secret.
#[derive(Debug)]
pub struct DatabaseConfig {
    pub source: DatabaseSource,
    /// Connections per process. A Lambda instance serves one event at a time, so a handful is
    /// plenty, and thousands of instances times a large pool would exhaust RDS Proxy. Three by
    /// default: each connection keeps the buffers of the largest statement it sent (a page's
    /// columns, several MiB), and a fourth raised the sync worker's peak without making it
    /// faster against the broker (README, issue #21's figures).
    pub max_connections: usize,
    /// The database user the function logs in as; `None`: the source's own (the master user
    /// of the secret, the URL's user), for the migrations only. The wiring sets it from the
    /// function ([`crate::wiring::Function::database_user`]).
    pub user: Option<&'static str>,
}

/// Where the connection settings come from.
#[derive(Debug, Clone)]
pub enum DatabaseSource {
    /// `DATABASE_URL`, a libpq-style URL (local stack, tests); `sslmode=require` turns TLS on.
    Url(SecretString),
    /// The deployment's functions: `DATABASE_HOST` (the RDS Proxy endpoint), `DATABASE_PORT`
    /// (5432) and `DATABASE_NAME` (`tastysync`), logged in to with an IAM token the function's
    /// role signs ([`crate::db::iam`]): no password anywhere. TLS is always required.
    Iam {
        host: String,
        port: u16,
        name: String,
    },
    /// The migrate function: the cluster's endpoint, and `DATABASE_SECRET_ARN`, the
    /// RDS-managed master secret (`{username, password}`) read at cold start, so no password
    /// sits in the function's configuration. TLS is always required.
    Secret {
        arn: String,
        host: String,
        port: u16,
        name: String,
    },
}

impl DatabaseConfig {
    /// See [`DatabaseConfig::max_connections`]; the template's `DatabaseMaxConnectionsPerFunction`
    /// defaults to the same.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 3;

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let max_connections =
            env.parsed_or("DATABASE_MAX_CONNECTIONS", Self::DEFAULT_MAX_CONNECTIONS)?;
        if max_connections == 0 {
            return Err(ConfigError::Invalid {
                name: "DATABASE_MAX_CONNECTIONS",
                reason: "must be at least 1".into(),
            });
        }
        let endpoint = || -> Result<(String, u16, String), ConfigError> {
            Ok((
                env.required("DATABASE_HOST")?.to_owned(),
                env.parsed_or("DATABASE_PORT", 5432u16)?,
                env.optional("DATABASE_NAME")
                    .unwrap_or("tastysync")
                    .to_owned(),
            ))
        };
        let source = match (
            env.optional("DATABASE_SECRET_ARN"),
            env.optional("DATABASE_HOST"),
        ) {
            (Some(arn), _) => {
                let (host, port, name) = endpoint()?;
                DatabaseSource::Secret {
                    arn: arn.to_owned(),
                    host,
                    port,
                    name,
                }
            }
            (None, Some(_)) => {
                let (host, port, name) = endpoint()?;
                DatabaseSource::Iam { host, port, name }
            }
            (None, None) => DatabaseSource::Url(env.secret("DATABASE_URL")?),
        };
        Ok(Self {
            source,
            max_connections,
            user: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn missing_variable_is_named_in_the_error() {
        let err = DatabaseConfig::from_env(&Env::from_pairs([])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable DATABASE_URL is required but not set"
        );
    }

    #[test]
    fn empty_variable_counts_as_missing() {
        let env = Env::from_pairs([("DATABASE_URL", "  ")]);
        assert_eq!(
            DatabaseConfig::from_env(&env).unwrap_err(),
            ConfigError::Missing {
                name: "DATABASE_URL"
            }
        );
    }

    #[test]
    fn malformed_number_is_rejected_with_its_name() {
        let env = Env::from_pairs([
            ("DATABASE_URL", "postgres://x"),
            ("DATABASE_MAX_CONNECTIONS", "lots"),
        ]);
        let err = DatabaseConfig::from_env(&env).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                name: "DATABASE_MAX_CONNECTIONS",
                ..
            }
        ));
    }

    #[test]
    fn a_secret_arn_needs_the_proxy_host_and_takes_no_url() {
        let env = Env::from_pairs([("DATABASE_SECRET_ARN", "arn:aws:secretsmanager:x")]);
        assert_eq!(
            DatabaseConfig::from_env(&env).unwrap_err(),
            ConfigError::Missing {
                name: "DATABASE_HOST"
            }
        );
        let config = DatabaseConfig::from_env(&env.with("DATABASE_HOST", "proxy.example")).unwrap();
        assert!(matches!(
            config.source,
            DatabaseSource::Secret { port: 5432, ref name, .. } if name == "tastysync"
        ));
    }

    #[test]
    fn a_host_without_a_secret_logs_in_with_iam() {
        let env = Env::from_pairs([
            ("DATABASE_HOST", "proxy.example"),
            ("DATABASE_URL", "postgres://ignored"),
        ]);
        let config = DatabaseConfig::from_env(&env).unwrap();
        assert!(matches!(
            config.source,
            DatabaseSource::Iam { ref host, port: 5432, ref name }
                if host == "proxy.example" && name == "tastysync"
        ));
    }

    #[test]
    fn database_url_is_never_printed() {
        let env = Env::from_pairs([("DATABASE_URL", "postgres://u:hunter2@db/x")]);
        let config = DatabaseConfig::from_env(&env).unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(!format!("{env:?}").contains("hunter2"));
        let DatabaseSource::Url(url) = &config.source else {
            panic!("a URL source")
        };
        assert_eq!(url.expose_secret(), "postgres://u:hunter2@db/x");
        assert_eq!(
            config.max_connections,
            DatabaseConfig::DEFAULT_MAX_CONNECTIONS
        );
    }
}
