use std::collections::HashMap;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::{CipherError, Sealed, SecretContext};
use crate::adapters::failed;
use crate::ports::{Actions, TokenOpener, TokenSealer};

const GENERATE_DATA_KEY: &str = "kms:GenerateDataKey";
const DECRYPT: &str = "kms:Decrypt";

/// Version 1: KMS-wrapped AES-256 key, AES-256-GCM, 96-bit nonce, AAD = context JSON.
pub const SCHEME_VERSION: i16 = 1;

/// [`TokenSealer`] and [`TokenOpener`] on KMS.
#[derive(Debug, Clone)]
pub struct KmsEnvelope {
    kms: aws_sdk_kms::Client,
    key_id: String,
}

impl KmsEnvelope {
    pub fn new(kms: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        Self {
            kms,
            key_id: key_id.into(),
        }
    }
}

impl KmsEnvelope {
    /// Whether a stored key id (the key ARN KMS answered at sealing) is the configured key:
    /// the same ARN, or, when the key is configured by its id, the ARN of that id.
    fn is_own_key(&self, stored: &str) -> bool {
        if self.key_id.contains(":key/") {
            return stored == self.key_id;
        }
        stored.rsplit_once(":key/").map_or(stored, |(_, id)| id) == self.key_id
    }
}

fn kms_context(context: &SecretContext<'_>) -> HashMap<String, String> {
    context
        .pairs()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

fn associated_data(context: &SecretContext<'_>) -> Vec<u8> {
    // Key order is fixed by `pairs`, so the bytes are the same at seal and open.
    let object: serde_json::Map<String, serde_json::Value> = context
        .pairs()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into()))
        .collect();
    serde_json::Value::Object(object).to_string().into_bytes()
}

impl TokenSealer for KmsEnvelope {
    const ACTIONS: Actions = &[GENERATE_DATA_KEY];

    async fn seal(
        &self,
        context: SecretContext<'_>,
        secret: &SecretString,
    ) -> Result<Sealed, CipherError> {
        let key = self
            .kms
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(kms_context(&context)))
            .send()
            .await
            .map_err(failed::<_, CipherError>(GENERATE_DATA_KEY))?;
        let plaintext_key = Zeroizing::new(key.plaintext.ok_or(CipherError::Refused)?.into_inner());
        let wrapped_key = key
            .ciphertext_blob
            .ok_or(CipherError::Refused)?
            .into_inner();
        let kms_key_id = key.key_id.unwrap_or_else(|| self.key_id.clone());

        let cipher = Aes256Gcm::new_from_slice(&plaintext_key).map_err(|_| CipherError::Refused)?;
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = associated_data(&context);
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.expose_secret().as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| CipherError::Refused)?;
        Ok(Sealed {
            scheme_version: SCHEME_VERSION,
            kms_key_id,
            wrapped_key,
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }
}

impl TokenOpener for KmsEnvelope {
    const ACTIONS: Actions = &[DECRYPT];

    async fn open(
        &self,
        context: SecretContext<'_>,
        sealed: &Sealed,
    ) -> Result<SecretString, CipherError> {
        if sealed.scheme_version != SCHEME_VERSION || sealed.nonce.len() != 12 {
            return Err(CipherError::Refused);
        }
        // The row names the key to ask; a row that names another key (written by someone
        // else, or left from a key this deployment no longer uses) is not opened with it.
        if !self.is_own_key(&sealed.kms_key_id) {
            tracing::warn!(
                event = "secret_sealed_with_another_key",
                "a stored secret names a KMS key other than the configured one"
            );
            return Err(CipherError::Refused);
        }
        let key = self
            .kms
            .decrypt()
            .key_id(&sealed.kms_key_id)
            .ciphertext_blob(Blob::new(sealed.wrapped_key.clone()))
            .set_encryption_context(Some(kms_context(&context)))
            .send()
            .await
            .map_err(|e| {
                // A wrong context is KMS's InvalidCiphertextException: a refusal, not an outage.
                if e.as_service_error()
                    .is_some_and(|s| s.is_invalid_ciphertext_exception())
                {
                    CipherError::Refused
                } else {
                    failed::<_, CipherError>(DECRYPT)(e)
                }
            })?;
        let plaintext_key = Zeroizing::new(key.plaintext.ok_or(CipherError::Refused)?.into_inner());
        let cipher = Aes256Gcm::new_from_slice(&plaintext_key).map_err(|_| CipherError::Refused)?;
        let aad = associated_data(&context);
        let plaintext = Zeroizing::new(
            cipher
                .decrypt(
                    Nonce::from_slice(&sealed.nonce),
                    Payload {
                        msg: &sealed.ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| CipherError::Refused)?,
        );
        let text = std::str::from_utf8(&plaintext).map_err(|_| CipherError::Refused)?;
        Ok(SecretString::from(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    fn envelope(key_id: &str) -> KmsEnvelope {
        let config = aws_sdk_kms::Config::builder()
            .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
            .build();
        KmsEnvelope::new(aws_sdk_kms::Client::from_conf(config), key_id)
    }

    #[test]
    fn a_stored_key_id_must_be_the_configured_key_by_arn_or_by_id() {
        let by_arn = envelope(ARN);
        let by_id = envelope("1234abcd-12ab-34cd-56ef-1234567890ab");
        let elsewhere = ARN.replace("111122223333", "999999999999");

        assert!(by_arn.is_own_key(ARN));
        assert!(by_id.is_own_key(ARN));
        assert!(
            !by_arn.is_own_key(&elsewhere),
            "the same key id in another account"
        );
        assert!(!by_arn.is_own_key(&ARN.replace("1234abcd", "5678abcd")));
        assert!(!by_id.is_own_key(&ARN.replace("1234abcd", "5678abcd")));
        assert!(!by_arn.is_own_key(""));
    }
}
