//! portcullis: an authenticating reverse proxy on pingora.
//!
//! A request's path through the program, one module per stage:
//! [`config`] → [`server`] (listeners) → [`classify`] (built-in endpoint or protected) →
//! [`app`] (authenticate: session cookie, refresh) → [`forward`] (identity headers) → upstream.
//! Built-in endpoints live in [`endpoints`], the login protocol in [`oidc`], the cookie in
//! [`session`], redirect-target checks in [`redirect`].

pub mod access;
pub mod access_log;
pub mod answer;
pub mod app;
pub mod bearer;
pub mod classify;
pub mod cli;
pub mod clock;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod endpoints;
pub mod forward;
pub mod host;
pub mod jwt;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod oidc;
pub mod outcome;
pub mod policy;
pub mod proxy;
pub mod redirect;
pub mod respond;
pub mod server;
pub mod session;
