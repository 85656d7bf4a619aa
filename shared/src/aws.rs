//! The AWS SDK configuration, built once per cold start and shared by every client.

pub use aws_config::SdkConfig;

/// Loads region, credentials and endpoint from the standard sources.
///
/// The standard chain already honours `AWS_ENDPOINT_URL` (and the per-service
/// `AWS_ENDPOINT_URL_<SERVICE>`), which is how the local stack and the tests point every client
/// at the emulator without a code path of their own.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}
