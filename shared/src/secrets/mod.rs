//! Secrets at rest: envelope encryption of tastytrade tokens, and the deployment's own secrets.
//!
//! - [`crate::ports::TokenSealer`] and [`crate::ports::TokenOpener`] are the ports;
//!   [`KmsEnvelope`] the adapter: a fresh AES-256 data key from
//!   KMS `GenerateDataKey` for every secret, AES-256-GCM with a random 96-bit nonce, and an
//!   encryption context naming purpose, user and credential. KMS refuses to unwrap the key
//!   under any other context, and the same context is the GCM associated data, so a sealed
//!   secret moved to another row, user or purpose cannot be opened.
//! - [`DeploymentSecrets`] reads the OAuth client and the state-signing key from Secrets
//!   Manager once per cold start.
//!
//! Data keys are not cached: a link seals two secrets and a sync opens one or two, so a cache
//! would save a few KMS calls per task at the price of plaintext keys living in memory across
//! users. Plaintext keys and secrets are zeroised when dropped.

mod deployment;
mod envelope;

pub use deployment::{DeploymentSecrets, DeploymentSecretsError, OAuthClient, SECRET_ACTIONS};
pub use envelope::{KmsEnvelope, SCHEME_VERSION};

use uuid::Uuid;

/// What a sealed secret is for; part of its encryption context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    RefreshToken,
    ClientSecret,
    AccessToken,
    /// The market-data feed's (DXLink) token and URL, as JSON.
    QuoteToken,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::RefreshToken => "refresh_token",
            Purpose::ClientSecret => "client_secret",
            Purpose::AccessToken => "access_token",
            Purpose::QuoteToken => "quote_token",
        }
    }
}

/// Binds a sealed secret to its owner and use.
#[derive(Debug, Clone, Copy)]
pub struct SecretContext<'a> {
    pub purpose: Purpose,
    pub user_id: &'a str,
    pub credential_id: Uuid,
}

impl SecretContext<'_> {
    /// The KMS encryption context; its canonical JSON is also the GCM associated data.
    pub fn pairs(&self) -> [(&'static str, String); 4] {
        [
            ("app", "tastysync".to_owned()),
            ("purpose", self.purpose.as_str().to_owned()),
            ("user_id", self.user_id.to_owned()),
            ("credential_id", self.credential_id.to_string()),
        ]
    }
}

/// A secret as stored: only ciphertext and what is needed to open it with the right context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub scheme_version: i16,
    pub kms_key_id: String,
    pub wrapped_key: Vec<u8>,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum CipherError {
    #[error("KMS is unavailable")]
    Kms(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// IAM refused the call: the function's policy lacks `action`.
    #[error("access denied: this function's IAM policy does not grant {action}")]
    Denied { action: &'static str },
    /// Wrong context, tampered ciphertext or an unknown scheme: never retried.
    #[error("the secret cannot be opened with this context")]
    Refused,
}

impl CipherError {
    pub fn retry(&self) -> crate::Retry {
        match self {
            CipherError::Kms(_) | CipherError::Denied { .. } => crate::Retry::Retryable,
            CipherError::Refused => crate::Retry::NonRetryable,
        }
    }
}
