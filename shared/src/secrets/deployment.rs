use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::adapters::secrets_manager::SecretsManager;
use crate::config::{ConfigError, Env};
use crate::ports::SecretSource;

/// What holding a deployment secret costs in IAM: it was read from Secrets Manager at cold
/// start.
pub const SECRET_ACTIONS: crate::ports::Actions = <SecretsManager as SecretSource>::ACTIONS;

/// The deployment's registered tastytrade OAuth client.
#[derive(Debug, Deserialize)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: SecretString,
}

impl OAuthClient {
    /// Reads the client from its secret (JSON `{client_id, client_secret}`) at `arn`, named by
    /// the variable `name` in errors.
    pub async fn load(
        source: &impl SecretSource,
        arn: &str,
    ) -> Result<Self, DeploymentSecretsError> {
        const NAME: &str = "OAUTH_CLIENT_SECRET_ARN";
        let raw = read(source, NAME, arn).await?;
        serde_json::from_str(raw.expose_secret())
            .map_err(|_| DeploymentSecretsError::Shape { name: NAME })
    }
}

/// Secrets the HTTP functions need, read from Secrets Manager once per cold start.
#[derive(Debug)]
pub struct DeploymentSecrets {
    pub oauth_client: OAuthClient,
    /// Signs the `state` of the authorization-code flow.
    pub state_signing_key: SecretString,
}

#[derive(Debug, thiserror::Error)]
pub enum DeploymentSecretsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("could not read secret {name}")]
    Read {
        name: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("secret {name} is not of the expected shape")]
    Shape { name: &'static str },
}

impl DeploymentSecrets {
    pub async fn load(
        source: &impl SecretSource,
        env: &Env,
    ) -> Result<Self, DeploymentSecretsError> {
        let name = "STATE_SIGNING_SECRET_ARN";
        // Both at once: the link function is ready one Secrets Manager round trip sooner.
        let (oauth_client, state_signing_key) = futures_util::try_join!(
            OAuthClient::load(source, env.required("OAUTH_CLIENT_SECRET_ARN")?),
            read(source, name, env.required(name)?),
        )?;
        // 32 characters at least: an HMAC key shorter than that is guessable.
        if state_signing_key.expose_secret().len() < 32 {
            return Err(DeploymentSecretsError::Shape { name });
        }
        Ok(Self {
            oauth_client,
            state_signing_key,
        })
    }
}

async fn read(
    source: &impl SecretSource,
    name: &'static str,
    arn: &str,
) -> Result<SecretString, DeploymentSecretsError> {
    source
        .read(arn)
        .await
        .map_err(|source| DeploymentSecretsError::Read { name, source })?
        .ok_or(DeploymentSecretsError::Shape { name })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::InMemorySecrets;

    fn env() -> Env {
        Env::from_pairs([
            ("OAUTH_CLIENT_SECRET_ARN", "arn:oauth"),
            ("STATE_SIGNING_SECRET_ARN", "arn:state"),
        ])
    }

    #[tokio::test]
    async fn the_deployments_secrets_load_when_each_has_its_shape() {
        let source = InMemorySecrets::with([
            (
                "arn:oauth",
                r#"{"client_id": "id", "client_secret": "secret"}"#,
            ),
            ("arn:state", "0123456789abcdef0123456789abcdef"),
        ]);

        let loaded = DeploymentSecrets::load(&source, &env()).await.unwrap();

        assert_eq!(loaded.oauth_client.client_id, "id");
    }

    #[tokio::test]
    async fn a_secret_of_the_wrong_shape_is_named_and_never_quoted() {
        let malformed = InMemorySecrets::with([
            ("arn:oauth", r#"{"client_id": "id", "secret": "hunter2"}"#),
            ("arn:state", "0123456789abcdef0123456789abcdef"),
        ]);
        let short_key = InMemorySecrets::with([
            (
                "arn:oauth",
                r#"{"client_id": "id", "client_secret": "secret"}"#,
            ),
            ("arn:state", "short"),
        ]);

        let malformed = DeploymentSecrets::load(&malformed, &env())
            .await
            .unwrap_err();
        let short_key = DeploymentSecrets::load(&short_key, &env())
            .await
            .unwrap_err();

        assert_eq!(
            malformed.to_string(),
            "secret OAUTH_CLIENT_SECRET_ARN is not of the expected shape"
        );
        assert_eq!(
            short_key.to_string(),
            "secret STATE_SIGNING_SECRET_ARN is not of the expected shape"
        );
    }

    #[tokio::test]
    async fn a_missing_variable_or_secret_says_which() {
        let none = InMemorySecrets::with([]);

        let unset = DeploymentSecrets::load(&none, &Env::from_pairs([]))
            .await
            .unwrap_err();
        let absent = DeploymentSecrets::load(&none, &env()).await.unwrap_err();

        assert!(
            unset.to_string().contains("OAUTH_CLIENT_SECRET_ARN"),
            "{unset}"
        );
        assert!(
            absent.to_string().contains("OAUTH_CLIENT_SECRET_ARN"),
            "{absent}"
        );
    }
}
