//! Per-route access policy: which requests need what, decided in three steps.
//!
//! 1. [`normalise`] turns the raw request path into a [`NormalPath`], the single reading that
//!    every rule is matched against, or refuses it with a [`PathError`] (400) when servers
//!    could read it in different ways (`/public/..%2fadmin`, `/public/..;/admin`, `//x`).
//! 2. [`RouteTable::lookup`] picks the most specific configured [`Route`] for the method, host
//!    and normalised path. No route means the default, which is closed: authentication
//!    required, nothing more.
//! 3. For an [`Access::Authenticated`] route, [`Requirements::evaluate`] decides whether the
//!    authenticated [`Subject`] may pass: [`Decision::Allow`], [`Decision::Deny`] (403), or
//!    [`Decision::InsufficientScope`] (403 for a bearer token lacking scopes).
//!
//! Each step refuses rather than repairs. The normalised path is used only for this decision;
//! the upstream receives the request target as the client sent it, which is safe because the
//! target was proven to have only one reading.

pub mod path;
mod routes;
mod rules;

pub use path::{normalise, NormalPath, PathError};
pub use routes::{Access, BadHost, Route, RouteSpec, RouteTable, TokenKind};
pub use rules::{parse_email, Decision, DomainRule, Requirements, Subject};
