//! The payment-provider mock: a Stripe-shaped card API with idempotency keys and outages.
//!
//! The payment service charges orders through a `ProviderClient`, either in process or over
//! HTTP to the mock `serve` runs on loopback (which is also what a user's own payment service
//! points at in observe mode). `ProviderCore` decides every call and counts every capture per
//! order, so the checks can prove a double charge from its books alone; `set_outage` is the
//! seam the chaos timeline drives. Nothing here consumes or publishes events.

pub mod charges;
pub mod client;
pub mod config;
pub mod core;
pub mod http;
pub mod model;
pub mod stripe;
pub mod wire;

pub use self::charges::ChargesPerOrder;
pub use self::client::{ProviderClient, ProviderError};
pub use self::core::{Capture, ChargeRequest, ChargeResponse, Outage, ProviderCore, ProviderStats};
pub use self::http::{router, serve, serve_on};
pub use self::wire::IDEMPOTENCY_KEY;
