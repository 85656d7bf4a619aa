//! The TLS client configuration every outbound connection that is not reqwest's uses (the
//! database, the market-data websocket): webpki roots and the aws-lc-rs provider, built once
//! per client.

use std::sync::Arc;

/// The provider is named rather than taken from the process default, which panics when two
/// providers are linked into one binary.
pub fn client_config() -> Arc<rustls::ClientConfig> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the aws-lc-rs provider supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}
