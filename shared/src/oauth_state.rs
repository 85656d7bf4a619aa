//! The `state` of the authorization-code flow: signed, expiring, bound to the user, the
//! environment and the redirect URI, so a code cannot be redeemed into another user's account.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::tastytrade::Environment;

type HmacSha256 = Hmac<Sha256>;

/// Long enough to log in at tastytrade and approve; short enough that a leaked URL dies soon.
pub const STATE_TTL: TimeDelta = TimeDelta::minutes(15);

#[derive(Debug)]
pub struct StateSigner {
    key: SecretString,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    u: String,
    e: Environment,
    r: String,
    x: i64,
    n: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    #[error("state is malformed or its signature is wrong")]
    Forged,
    #[error("state has expired")]
    Expired,
    #[error("state was issued for another user, environment or redirect URI")]
    Mismatch,
}

impl StateSigner {
    pub fn new(key: SecretString) -> Self {
        Self { key }
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(self.key.expose_secret().as_bytes())
            .expect("HMAC takes keys of any length")
    }

    pub fn sign(
        &self,
        user_id: &str,
        environment: Environment,
        redirect_uri: &str,
        now: DateTime<Utc>,
    ) -> (String, DateTime<Utc>) {
        let expires_at = now + STATE_TTL;
        let claims = Claims {
            u: user_id.to_owned(),
            e: environment,
            r: redirect_uri.to_owned(),
            x: expires_at.timestamp(),
            n: uuid::Uuid::new_v4().simple().to_string(),
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        (format!("{payload}.{signature}"), expires_at)
    }

    pub fn verify(
        &self,
        state: &str,
        user_id: &str,
        environment: Environment,
        redirect_uri: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StateError> {
        let (payload, signature) = state.split_once('.').ok_or(StateError::Forged)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| StateError::Forged)?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        // Constant-time comparison.
        mac.verify_slice(&signature)
            .map_err(|_| StateError::Forged)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| StateError::Forged)?;
        let claims: Claims = serde_json::from_slice(&bytes).map_err(|_| StateError::Forged)?;
        if claims.x < now.timestamp() {
            return Err(StateError::Expired);
        }
        if claims.u != user_id || claims.e != environment || claims.r != redirect_uri {
            return Err(StateError::Mismatch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(key: &str) -> StateSigner {
        StateSigner::new(SecretString::from(key.to_owned()))
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef";
    const CALLBACK: &str = "https://app.example/callback";

    #[test]
    fn a_state_verifies_for_its_user_environment_and_redirect() {
        let now = Utc::now();
        let (state, _) = signer(KEY).sign("user-a", Environment::Sandbox, CALLBACK, now);
        assert_eq!(
            signer(KEY).verify(&state, "user-a", Environment::Sandbox, CALLBACK, now),
            Ok(())
        );
    }

    #[test]
    fn a_state_for_another_user_environment_or_redirect_is_refused() {
        let now = Utc::now();
        let (state, _) = signer(KEY).sign("user-a", Environment::Sandbox, CALLBACK, now);
        let s = signer(KEY);
        assert_eq!(
            s.verify(&state, "user-b", Environment::Sandbox, CALLBACK, now),
            Err(StateError::Mismatch)
        );
        assert_eq!(
            s.verify(&state, "user-a", Environment::Production, CALLBACK, now),
            Err(StateError::Mismatch)
        );
        assert_eq!(
            s.verify(
                &state,
                "user-a",
                Environment::Sandbox,
                "https://evil.example/",
                now
            ),
            Err(StateError::Mismatch)
        );
    }

    #[test]
    fn expired_forged_and_foreign_key_states_are_refused() {
        let now = Utc::now();
        let (state, _) = signer(KEY).sign("user-a", Environment::Sandbox, CALLBACK, now);
        let later = now + STATE_TTL + TimeDelta::seconds(1);
        assert_eq!(
            signer(KEY).verify(&state, "user-a", Environment::Sandbox, CALLBACK, later),
            Err(StateError::Expired)
        );
        let other = signer("another-key-another-key-another-k");
        assert_eq!(
            other.verify(&state, "user-a", Environment::Sandbox, CALLBACK, now),
            Err(StateError::Forged)
        );
        let tampered = state.replacen('e', "f", 1);
        assert!(
            signer(KEY)
                .verify(&tampered, "user-a", Environment::Sandbox, CALLBACK, now)
                .is_err()
        );
        assert_eq!(
            signer(KEY).verify("garbage", "user-a", Environment::Sandbox, CALLBACK, now),
            Err(StateError::Forged)
        );
    }
}
