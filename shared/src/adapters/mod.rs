//! The adapters: each port on the service that serves it in production. They return domain
//! types and the port's error, never an SDK type.
//!
//! - [`dynamo`]: the task ports (tasks, leases, cooldowns) on the DynamoDB task table.
//! - [`sqs`]: the sync queue and the worker's redelivery back-off on SQS FIFO.
//! - [`secrets_manager`]: the deployment's secrets.
//! - [`eventbridge`]: the events the app's backend subscribes to, on the stack's bus.
//! - [`postgres`]: the account ports over the pool (the SQL is in [`crate::db`]).
//! - The KMS envelope is [`crate::secrets::KmsEnvelope`]; the sync's writes are still
//!   [`crate::db::sync`] over the pool; the broker is [`crate::tastytrade`].

pub mod dynamo;
pub mod eventbridge;
pub mod postgres;
pub mod secrets_manager;
pub mod sqs;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

/// Whether IAM refused the call. The SDK reports the refusal as `AccessDenied` (or
/// `AccessDeniedException`); an emulator that answers it in another protocol's body still
/// answers 403. (Every AWS SDK crate shares smithy's `SdkError`, so this serves them all.)
pub(crate) fn is_denied<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    matches!(error.code(), Some("AccessDenied" | "AccessDeniedException"))
        || error
            .raw_response()
            .is_some_and(|response| response.status().as_u16() == 403)
}

/// An adapter error that can say "IAM refused `action`" and "the service is unavailable".
pub(crate) trait AwsFailure {
    fn denied(action: &'static str) -> Self;
    fn unavailable(source: Box<dyn std::error::Error + Send + Sync>) -> Self;
}

/// Maps an AWS call's failure: IAM's refusal names `action`, anything else is the service
/// being unavailable.
pub(crate) fn failed<E, T>(action: &'static str) -> impl FnOnce(SdkError<E, HttpResponse>) -> T
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    T: AwsFailure,
{
    move |e| {
        if is_denied(&e) {
            T::denied(action)
        } else {
            T::unavailable(Box::new(e))
        }
    }
}

impl AwsFailure for crate::ports::TaskError {
    fn denied(action: &'static str) -> Self {
        Self::Denied { action }
    }

    fn unavailable(source: Box<dyn std::error::Error + Send + Sync>) -> Self {
        Self::Unavailable(source)
    }
}

impl AwsFailure for crate::secrets::CipherError {
    fn denied(action: &'static str) -> Self {
        Self::Denied { action }
    }

    fn unavailable(source: Box<dyn std::error::Error + Send + Sync>) -> Self {
        Self::Kms(source)
    }
}
