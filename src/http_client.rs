//! The one way to build an HTTP client (clippy.toml forbids `reqwest::Client::builder`
//! elsewhere).
//!
//! reqwest's TLS is rustls with the ring provider already in the tree (lapin and async-nats
//! use it); reqwest's own default would add aws-lc. A client built before a provider is
//! installed panics, even for plain http, so the install happens here, once per process
//! (a second install is refused harmlessly and the first provider stays).

/// A client builder with the TLS provider in place.
pub fn builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    #[allow(clippy::disallowed_methods)]
    reqwest::Client::builder()
}
