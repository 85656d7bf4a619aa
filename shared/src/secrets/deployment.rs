use secrecy::SecretString;
use serde::Deserialize;

use crate::config::{ConfigError, Env};

/// What holding a deployment secret costs in IAM: it is read from Secrets Manager at cold start.
pub const SECRET_ACTIONS: crate::ports::Actions = &["secretsmanager:GetSecretValue"];

/// The deployment's registered tastytrade OAuth client.
#[derive(Debug, Deserialize)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: SecretString,
}

impl OAuthClient {
    /// Reads the client from its Secrets Manager secret (JSON `{client_id, client_secret}`).
    pub async fn load(
        client: &aws_sdk_secretsmanager::Client,
        arn: &str,
    ) -> Result<Self, DeploymentSecretsError> {
        let raw = read(client, "OAUTH_CLIENT_SECRET_ARN", arn).await?;
        serde_json::from_str(secrecy::ExposeSecret::expose_secret(&raw)).map_err(|_| {
            DeploymentSecretsError::Shape {
                name: "OAUTH_CLIENT_SECRET_ARN",
            }
        })
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
        client: &aws_sdk_secretsmanager::Client,
        env: &Env,
    ) -> Result<Self, DeploymentSecretsError> {
        let oauth = read(
            client,
            "OAUTH_CLIENT_SECRET_ARN",
            env.required("OAUTH_CLIENT_SECRET_ARN")?,
        )
        .await?;
        let oauth_client: OAuthClient =
            serde_json::from_str(secrecy::ExposeSecret::expose_secret(&oauth)).map_err(|_| {
                DeploymentSecretsError::Shape {
                    name: "OAUTH_CLIENT_SECRET_ARN",
                }
            })?;
        let state_signing_key = read(
            client,
            "STATE_SIGNING_SECRET_ARN",
            env.required("STATE_SIGNING_SECRET_ARN")?,
        )
        .await?;
        if secrecy::ExposeSecret::expose_secret(&state_signing_key).len() < 32 {
            return Err(DeploymentSecretsError::Shape {
                name: "STATE_SIGNING_SECRET_ARN",
            });
        }
        Ok(Self {
            oauth_client,
            state_signing_key,
        })
    }
}

async fn read(
    client: &aws_sdk_secretsmanager::Client,
    name: &'static str,
    arn: &str,
) -> Result<SecretString, DeploymentSecretsError> {
    let value = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| DeploymentSecretsError::Read {
            name,
            source: Box::new(e),
        })?;
    value
        .secret_string
        .map(SecretString::from)
        .ok_or(DeploymentSecretsError::Shape { name })
}
