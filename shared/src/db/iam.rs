//! IAM database authentication: each function logs in to RDS Proxy as its own database user
//! with a token its execution role signs, so no function holds a database password.
//!
//! A token is a SigV4-presigned `connect` URL (the `rds-db` service) without its scheme, valid
//! for 15 minutes, and only opens a connection: one that is open stays open. So each new
//! connection of the pool signs a fresh token, which costs a few HMACs on cached credentials.
//! The proxy checks the signature and that the role may `rds-db:connect` as the user; the
//! database user must be a member of `rds_iam` (V20).

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use deadpool_postgres::Connect;
use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::{Client, Config};

use crate::aws::SdkConfig;

/// RDS accepts no longer lifetime.
const TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// Signs login tokens for one database user at one endpoint.
#[derive(Debug, Clone)]
pub struct LoginSigner {
    host: String,
    port: u16,
    user: String,
    region: String,
    credentials: SharedCredentialsProvider,
}

impl LoginSigner {
    /// With the function's own credentials and region, from its SDK configuration.
    pub fn new(sdk: &SdkConfig, host: &str, port: u16, user: &str) -> Result<Self, SignError> {
        Ok(Self {
            host: host.to_owned(),
            port,
            user: user.to_owned(),
            region: sdk.region().ok_or(SignError::NoRegion)?.to_string(),
            credentials: sdk.credentials_provider().ok_or(SignError::NoCredentials)?,
        })
    }

    /// A token signed now with the current credentials.
    pub async fn token(&self) -> Result<SecretString, SignError> {
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| SignError::Credentials(e.into()))?;
        self.token_at(credentials, SystemTime::now())
    }

    /// The token `credentials` sign at `time`: the URL
    /// `https://<host>:<port>/?Action=connect&DBUser=<user>` presigned for `rds-db`, less its
    /// scheme.
    fn token_at(
        &self,
        credentials: Credentials,
        time: SystemTime,
    ) -> Result<SecretString, SignError> {
        let mut settings = SigningSettings::default();
        settings.expires_in = Some(TOKEN_LIFETIME);
        settings.signature_location = SignatureLocation::QueryParams;
        let identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("rds-db")
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| SignError::Sign(e.into()))?;
        let mut url = url::Url::parse(&format!("https://{}:{}/", self.host, self.port))
            .map_err(|e| SignError::Sign(e.into()))?;
        url.query_pairs_mut()
            .append_pair("Action", "connect")
            .append_pair("DBUser", &self.user);
        let request = SignableRequest::new(
            "GET",
            url.as_str(),
            std::iter::empty(),
            SignableBody::Bytes(&[]),
        )
        .map_err(|e| SignError::Sign(e.into()))?;
        let (instructions, _) = sign(request, &params.into())
            .map_err(|e| SignError::Sign(e.into()))?
            .into_parts();
        for (name, value) in instructions.params() {
            url.query_pairs_mut().append_pair(name, value);
        }
        let token = zeroize::Zeroizing::new(String::from(url));
        Ok(SecretString::from(&token["https://".len()..]))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("the function has no AWS region to sign its database login for")]
    NoRegion,
    #[error("the function has no AWS credentials to sign its database login with")]
    NoCredentials,
    #[error("could not resolve the function's AWS credentials")]
    Credentials(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("could not sign the database login")]
    Sign(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The pool's way of connecting with IAM authentication: a fresh token as the password of each
/// new connection, over TLS (the proxy requires it, and the token must not travel in clear).
pub struct IamConnect<T> {
    pub signer: LoginSigner,
    pub tls: T,
}

impl<T> std::fmt::Debug for IamConnect<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IamConnect")
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

impl<T> Connect for IamConnect<T>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> + Clone + Sync + Send + 'static,
    T::Stream: Sync + Send,
    T::TlsConnect: Sync + Send,
    <T::TlsConnect as tokio_postgres::tls::TlsConnect<tokio_postgres::Socket>>::Future: Send,
{
    fn connect(
        &self,
        pg_config: &Config,
    ) -> BoxFuture<'_, Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>> {
        let mut pg_config = pg_config.clone();
        let tls = self.tls.clone();
        Box::pin(async move {
            match self.signer.token().await {
                Ok(token) => {
                    pg_config.password(token.expose_secret());
                }
                // tokio-postgres errors cannot be made here, so the attempt goes ahead without a
                // password and the proxy refuses it; this says why.
                Err(e) => tracing::error!(error = %e, "database_login_not_signed"),
            }
            let (client, connection) = pg_config.connect(tls).await?;
            let task = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "database connection closed with an error");
                }
            });
            Ok((client, task))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(host: &str, port: u16, user: &str) -> LoginSigner {
        let sdk = SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "akid", "secret", None, None, "test",
            )))
            .build();
        LoginSigner::new(&sdk, host, port, user).unwrap()
    }

    /// The AWS SDK for Rust's own test vector for its RDS token generator
    /// (`aws-sdk-rds`, `auth_token::test::signing_works`): the same inputs give the same token.
    #[test]
    fn a_token_is_the_one_the_aws_sdk_signs_for_the_same_inputs() {
        let signer = signer("prod-instance.us-east-1.rds.amazonaws.com", 3306, "peccy");
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_724_709_600);

        let token = signer
            .token_at(Credentials::new("akid", "secret", None, None, "test"), time)
            .unwrap();

        assert_eq!(
            token.expose_secret(),
            "prod-instance.us-east-1.rds.amazonaws.com:3306/?Action=connect&DBUser=peccy\
             &X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=akid%2F20240826%2Fus-east-1%2Frds-db%2Faws4_request\
             &X-Amz-Date=20240826T220000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=dd0cba843009474347af724090233265628ace491ea17ce3eb3da098b983ad89"
        );
    }

    #[test]
    fn a_session_token_rides_in_the_token_and_another_user_gets_another_signature() {
        let signer_a = signer("proxy.example", 5432, "tastysync_worker");
        let signer_b = signer("proxy.example", 5432, "tastysync_link");
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_724_709_600);
        let credentials = Credentials::new("akid", "secret", Some("session".into()), None, "test");

        let a = signer_a.token_at(credentials.clone(), time).unwrap();
        let b = signer_b.token_at(credentials, time).unwrap();

        assert!(a.expose_secret().contains("X-Amz-Security-Token=session"));
        assert!(a.expose_secret().contains("DBUser=tastysync_worker"));
        let signature = |t: &SecretString| {
            let (_, rest) = t.expose_secret().split_once("X-Amz-Signature=").unwrap();
            rest.split('&').next().unwrap().to_owned()
        };
        assert_ne!(signature(&a), signature(&b));
    }

    #[test]
    fn a_function_without_credentials_cannot_sign() {
        let sdk = SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        assert!(matches!(
            LoginSigner::new(&sdk, "proxy.example", 5432, "tastysync_worker"),
            Err(SignError::NoCredentials)
        ));
    }
}
