//! TLS for every client doorbuster opens (https checkout endpoints, rediss://, amqps://,
//! tls:// NATS): rustls with the ring provider, the one crypto backend in the tree.
//!
//! reqwest and redis-rs take the process-wide default provider and fail (reqwest panics)
//! when none is installed, so every client is built after [`install_provider`].

/// Installs ring as the process's rustls provider; a second call is refused harmlessly and
/// the first provider stays.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
