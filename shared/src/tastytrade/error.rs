//! What went wrong talking to tastytrade, in the categories the sync branches on.

use crate::Retry;

#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    /// Network failure, timeout, 5xx, a cut-off body, or pages that shifted under a scan.
    #[error("tastytrade is unavailable: {detail}")]
    Transient {
        status: Option<u16>,
        code: Option<String>,
        detail: String,
    },
    /// 429 after every retry, with the wait the broker asked for (`Retry-After`), if any.
    #[error("tastytrade is throttling us")]
    RateLimited {
        code: Option<String>,
        retry_after: Option<std::time::Duration>,
    },
    /// The caller's time ran out before tastytrade answered: the call was abandoned so that
    /// the sync can hand over before its invocation ends.
    #[error("out of time waiting for tastytrade")]
    OutOfTime,
    /// 401 again after a fresh access token: the token is not the problem we can fix.
    #[error("tastytrade rejected a fresh access token")]
    AuthExpired { code: Option<String> },
    /// The refresh token is dead (`invalid_grant`): the user must link again.
    #[error("the tastytrade grant was revoked")]
    GrantRevoked { code: Option<String> },
    /// The token endpoint refused the OAuth client itself (`invalid_client`,
    /// `unauthorized_client`): a wrong or rotated client secret. Whose fault it is depends on
    /// whose client it is: the user's personal grant, or the deployment's.
    #[error("tastytrade refused the OAuth client's credentials")]
    ClientRejected { code: Option<String> },
    #[error("not found at tastytrade")]
    NotFound { code: Option<String> },
    /// 400/406/422: the request itself is wrong and will stay wrong.
    #[error("tastytrade rejected the request ({status}): {message}")]
    InvalidRequest {
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// Anything else that will not improve by retrying: 403, an unreadable answer.
    #[error("tastytrade request failed: {message}")]
    Permanent {
        status: Option<u16>,
        code: Option<String>,
        message: String,
    },
}

impl BrokerError {
    pub fn retry(&self) -> Retry {
        match self {
            BrokerError::Transient { .. }
            | BrokerError::RateLimited { .. }
            | BrokerError::OutOfTime => Retry::Retryable,
            _ => Retry::NonRetryable,
        }
    }

    /// The broker answered and said no (as opposed to failing, throttling or refusing our
    /// credentials): another endpoint may still answer.
    pub fn refused(&self) -> bool {
        matches!(
            self,
            BrokerError::NotFound { .. }
                | BrokerError::InvalidRequest { .. }
                | BrokerError::Permanent { .. }
        )
    }

    /// The broker's `error.code` (or the token endpoint's `error_code`/`error`), if it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            BrokerError::Transient { code, .. }
            | BrokerError::RateLimited { code, .. }
            | BrokerError::AuthExpired { code }
            | BrokerError::GrantRevoked { code }
            | BrokerError::ClientRejected { code }
            | BrokerError::NotFound { code }
            | BrokerError::InvalidRequest { code, .. }
            | BrokerError::Permanent { code, .. } => code.as_deref(),
            BrokerError::OutOfTime => None,
        }
    }

    /// A throttled answer with the wait the broker asked for.
    pub(crate) fn waiting(self, wait: Option<std::time::Duration>) -> Self {
        match self {
            BrokerError::RateLimited { code, .. } => BrokerError::RateLimited {
                code,
                retry_after: wait,
            },
            other => other,
        }
    }

    pub(crate) fn transient(detail: impl Into<String>) -> Self {
        BrokerError::Transient {
            status: None,
            code: None,
            detail: detail.into(),
        }
    }
}
