//! The `state` of the authorization-code flow: signed, expiring, bound to the user, the
//! environment and the redirect URI, so a code cannot be redeemed into another user's account;
//! its nonce is spent at the first redemption ([`crate::ports::StateNonces`]), so a state
//! works once. The nonce also keys the flow's PKCE verifier, derived rather than stored.

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

/// A state just signed, for the authorize URL.
#[derive(Debug)]
pub struct IssuedState {
    pub state: String,
    pub expires_at: DateTime<Utc>,
    pub nonce: String,
}

/// What a verified state vouches for: its nonce, to be spent once, and until when.
#[derive(Debug, PartialEq, Eq)]
pub struct VerifiedState {
    pub nonce: String,
    pub expires_at: DateTime<Utc>,
}

/// RFC 7636 proof key for one flow: the challenge goes to the authorize URL, the verifier to
/// the code exchange.
#[derive(Debug)]
pub struct Pkce {
    pub verifier: SecretString,
    pub challenge: String,
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
    ) -> IssuedState {
        let expires_at = now + STATE_TTL;
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let claims = Claims {
            u: user_id.to_owned(),
            e: environment,
            r: redirect_uri.to_owned(),
            x: expires_at.timestamp(),
            n: nonce.clone(),
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        IssuedState {
            state: format!("{payload}.{signature}"),
            expires_at,
            nonce,
        }
    }

    /// The PKCE pair of the flow whose state carries `nonce`: the verifier is a MAC of the
    /// nonce under the signing key, so `/link` can recompute it and nothing is stored. 43
    /// base64url characters, the shortest verifier RFC 7636 allows, from 256 bits.
    pub fn pkce(&self, nonce: &str) -> Pkce {
        let mut mac = self.mac();
        mac.update(b"pkce-verifier:");
        mac.update(nonce.as_bytes());
        let verifier = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        let challenge = s256(&verifier);
        Pkce {
            verifier: SecretString::from(verifier),
            challenge,
        }
    }

    pub fn verify(
        &self,
        state: &str,
        user_id: &str,
        environment: Environment,
        redirect_uri: &str,
        now: DateTime<Utc>,
    ) -> Result<VerifiedState, StateError> {
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
        Ok(VerifiedState {
            nonce: claims.n,
            expires_at: DateTime::from_timestamp(claims.x, 0).ok_or(StateError::Forged)?,
        })
    }
}

/// RFC 7636's `S256` code challenge of `verifier`.
fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(<Sha256 as sha2::Digest>::digest(verifier))
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
        let issued = signer(KEY).sign("user-a", Environment::Sandbox, CALLBACK, now);
        let verified =
            signer(KEY).verify(&issued.state, "user-a", Environment::Sandbox, CALLBACK, now);
        assert_eq!(verified.map(|v| v.nonce), Ok(issued.nonce));
    }

    #[test]
    fn each_state_has_its_own_nonce_and_pkce_pair() {
        let now = Utc::now();
        let a = signer(KEY).sign("user-a", Environment::Sandbox, CALLBACK, now);
        let b = signer(KEY).sign("user-a", Environment::Sandbox, CALLBACK, now);
        assert_ne!(a.nonce, b.nonce);
        let (pa, pb) = (signer(KEY).pkce(&a.nonce), signer(KEY).pkce(&b.nonce));
        assert_ne!(pa.challenge, pb.challenge);
        // Recomputed at `/link` from the nonce alone.
        assert_eq!(signer(KEY).pkce(&a.nonce).challenge, pa.challenge);
        assert_eq!(pa.verifier.expose_secret().len(), 43);
    }

    #[test]
    fn the_pkce_challenge_is_the_rfc_7636_s256_of_the_verifier() {
        // RFC 7636 Appendix B's example pair.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            s256(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn a_state_for_another_user_environment_or_redirect_is_refused() {
        let now = Utc::now();
        let state = signer(KEY)
            .sign("user-a", Environment::Sandbox, CALLBACK, now)
            .state;
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
        let state = signer(KEY)
            .sign("user-a", Environment::Sandbox, CALLBACK, now)
            .state;
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
