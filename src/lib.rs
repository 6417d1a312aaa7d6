//! portcullis: an authenticating reverse proxy on pingora.
//!
//! A request's path through the program, one module per stage (ARCHITECTURE.md draws the
//! map and names the seams):
//!
//! 1. [`config`]: the file, checked once into a validated model; nothing else reads TOML.
//! 2. `server` and [`listener`]: pingora's services and the listeners of
//!    `server.listen` ([`config::ListenerKind`]); the listener admits connections and reads
//!    each request head within bounds before pingora parses it.
//! 3. `proxy`: pingora's `ProxyHttp`, wiring the stages below for each request.
//! 4. `classify`: a built-in endpoint (`endpoints`) or a request for the application; `host`
//!    reads the one host a request is for.
//! 5. Authenticate, in [`app`] and `access`: a bearer token ([`bearer`], verified with
//!    [`jwt`]) or the session cookie ([`session`], behind the [`session::SessionStore`]
//!    trait), refreshed with the identity provider ([`oidc`], reached through
//!    [`oidc::providers::Providers`]).
//! 6. Authorize: the route policy ([`policy`]) decides a `Verdict`; `answer` turns it into an
//!    outcome and a reply, for the proxy and forward auth alike.
//! 7. Forward: `forward` strips what a client may not send and sets the identity headers;
//!    `access_log` writes the request's line.
//!
//! Beside the path: [`clock`] (the one wall clock, injected), [`redirect`] (where a browser
//! may be sent back to), `metrics`, `logging`, `respond` (the replies portcullis writes),
//! [`cli`] (the commands), [`explain`] (`explain-token`: a token's checks and the decision it
//! would get) and, with the `demo` feature, [`demo`] (a development identity
//! provider and an echo upstream).
//!
//! The public modules are what the binary, the integration tests, the benchmarks and the fuzz
//! targets use; everything else is the crate's own.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![warn(missing_docs)]
#![warn(unreachable_pub)]

pub(crate) mod access;
pub(crate) mod access_log;
pub(crate) mod answer;
pub mod app;
pub mod bearer;
pub(crate) mod classify;
pub mod cli;
pub mod client_cert;
pub mod clock;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod dpop;
pub(crate) mod endpoints;
pub mod explain;
pub(crate) mod ext_authz;
pub(crate) mod forward;
pub(crate) mod host;
pub mod import;
pub mod jwt;
pub mod listener;
pub(crate) mod logging;
pub(crate) mod metrics;
pub mod oidc;
pub(crate) mod outcome;
pub mod policy;
pub(crate) mod proxy;
pub mod redirect;
pub(crate) mod reload;
pub mod remote;
pub(crate) mod resource_metadata;
pub(crate) mod respond;
pub(crate) mod server;
pub mod session;
pub(crate) mod signed_identity;
