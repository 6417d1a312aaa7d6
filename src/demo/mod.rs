//! In-process stand-ins for the two parties around the proxy: an OpenID provider and an upstream.
//!
//! Why these exist: `portcullis demo` must show a complete login in one process with no external
//! services, and the integration tests need an identity provider they can steer (short token
//! lifetimes, key rotation, counters) and an upstream that reports exactly what the proxy sent.
//! Neither is meant for production, and both say so loudly.

pub mod echo;
pub mod http;
pub mod idp;
pub mod launch;

pub use echo::EchoServer;
pub use idp::{DevIdp, DevIdpConfig, DevIdpStats, DevUser, ServiceClient};
