//! The AWS SDK configuration, built once per cold start and shared by every client.

pub use aws_config::SdkConfig;
use aws_sdk_sqs::config::{Credentials, SharedCredentialsProvider};

use crate::config::Env;
use crate::wiring::Function;

/// Loads region, credentials and endpoint from the standard sources.
///
/// The standard chain already honours `AWS_ENDPOINT_URL` (and the per-service
/// `AWS_ENDPOINT_URL_<SERVICE>`), which is how the local stack and the tests point every client
/// at the emulator without a code path of their own.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}

/// The SDK clients' HTTPS client: rustls on ring, the provider every TLS client here uses
/// ([`crate::tls`]), so no binary links a second one.
fn https_client() -> aws_sdk_sqs::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// [`sdk_config`] signed as `function`'s own identity where the environment names one.
///
/// On Lambda nothing names one and the default chain yields the function's role. The local
/// stack creates an IAM user per function on the emulator, with that function's policy from
/// `template.yaml`, and names its keys in `TASTYSYNC_IDENTITY_<FUNCTION>` (`key_id:secret`):
/// every function process, and every function the local gateway or a test hosts in process,
/// then calls AWS with exactly the permissions it would have when deployed.
pub async fn sdk_config_for(env: &Env, function: Function) -> SdkConfig {
    as_identity(&sdk_config().await, env, function)
}

/// `base` signed as `function`'s identity, if the environment names one; `base` otherwise.
pub fn as_identity(base: &SdkConfig, env: &Env, function: Function) -> SdkConfig {
    match env
        .optional(&function.identity_variable())
        .and_then(|keys| keys.split_once(':'))
    {
        Some((key_id, secret)) => with_credentials(base, key_id, secret),
        None => base.clone(),
    }
}

/// `base` with static credentials.
pub fn with_credentials(base: &SdkConfig, key_id: &str, secret: &str) -> SdkConfig {
    let credentials = Credentials::new(key_id, secret, None, None, "tastysync-local-identity");
    base.to_builder()
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build()
}
