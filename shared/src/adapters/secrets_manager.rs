//! The deployment's secrets on Secrets Manager.

use secrecy::SecretString;

use crate::ports::{Actions, SecretSource};

/// [`SecretSource`] on Secrets Manager.
#[derive(Debug, Clone)]
pub struct SecretsManager {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManager {
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        Self { client }
    }
}

impl SecretSource for SecretsManager {
    const ACTIONS: Actions = &["secretsmanager:GetSecretValue"];

    async fn read(
        &self,
        arn: &str,
    ) -> Result<Option<SecretString>, Box<dyn std::error::Error + Send + Sync>> {
        let value = self.client.get_secret_value().secret_id(arn).send().await?;
        Ok(value.secret_string.map(SecretString::from))
    }
}
