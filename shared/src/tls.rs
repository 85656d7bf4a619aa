//! The TLS client configuration every outbound connection uses (the database, the
//! market-data websocket, the broker's HTTPS through reqwest): webpki roots and the ring
//! provider, built once per client.

use std::sync::Arc;

/// The provider is named rather than taken from the process default, which panics when two
/// providers are linked into one binary.
pub fn client_config() -> Arc<rustls::ClientConfig> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// An HTTP client builder on [`client_config`]: reqwest links no crypto provider of its own, and
/// the process installs none, so every reqwest client starts here.
pub fn http() -> reqwest::ClientBuilder {
    http_on(&client_config())
}

/// [`http`] on a configuration the caller keeps for its other connections too.
pub fn http_on(config: &Arc<rustls::ClientConfig>) -> reqwest::ClientBuilder {
    reqwest::Client::builder().use_preconfigured_tls(config.as_ref().clone())
}
