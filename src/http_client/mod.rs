//! The one way to build an HTTP client (clippy.toml forbids `reqwest::Client::builder`
//! elsewhere), and `plain`, the client for plain `http://` on the hot paths (the checkout
//! endpoint, the provider mock).
//!
//! reqwest's TLS is rustls with the ring provider (see `tls.rs`); reqwest's own default would
//! add aws-lc. A client built before a provider is installed panics, even for plain http, so
//! the install happens here.

pub mod plain;

/// A client builder with the TLS provider in place.
pub fn builder() -> reqwest::ClientBuilder {
    crate::tls::install_provider();
    #[allow(clippy::disallowed_methods)]
    reqwest::Client::builder()
}
