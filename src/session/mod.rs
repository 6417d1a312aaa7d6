//! The browser session: who the user is and the tokens needed to keep them signed in, sealed
//! into a cookie ([`seal`]) that is split across several cookies when large ([`chunks`]).
//!
//! Where sessions are kept is a [`SessionStore`]. [`CookieStore`] (the default) keeps no
//! server-side state: any replica with the same secrets can serve any request, and a cookie
//! from a browser works the same from curl or a script (no binding to the user agent).
//! [`RedisStore`] keeps the session in Redis, encrypted with a key only the cookie carries,
//! so that signing out ends every copy of the cookie and replicas share one refresh.

pub mod chunks;
mod cookie_store;
mod layout;
mod opened;
pub mod redis_store;
pub(crate) mod refresh;
pub mod seal;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use chunks::SetCookie;
pub use cookie_store::{CookieStore, EndedHere};
pub use redis_store::{RedisStore, Ticket};

/// The identity portcullis vouches for to the upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The user: the first of the configured user claims the token has. `None` for a token
    /// that names no one (a token dealer's, with only `iss`, `aud` and times): then no user
    /// header is sent. A session always has one (sign-in refuses an ID token without it).
    #[serde(with = "user_field")]
    pub user: Option<String>,
    /// The email address, if the provider gave one.
    pub email: Option<String>,
    /// The groups, as the provider gave them.
    pub groups: Vec<String>,
    /// The `preferred_username` claim.
    pub preferred_username: Option<String>,
    /// Which provider vouches for it (a `[[oidc.providers]]` id): a session's, or a bearer
    /// token's when a sign-in provider issued it. The same `sub` at two providers is two
    /// users; this (or [`Identity::issuer`]) tells them apart. Absent from sessions signed in
    /// before there could be several providers.
    pub provider: Option<String>,
    /// The issuer (`iss`) that vouches for it, for sessions and bearer tokens.
    pub issuer: Option<String>,
}

impl Identity {
    /// The user, for log lines.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
}

/// A session's user as the cookie format has always carried it: a plain string. No user is
/// the empty string, which is never a user (an empty user claim is refused).
pub(crate) mod user_field {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(user: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(user.as_deref().unwrap_or(""))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let user = String::deserialize(d)?;
        Ok((!user.is_empty()).then_some(user))
    }
}

/// Everything a session cookie carries. Times are Unix seconds.
#[derive(Clone, Serialize, Deserialize)]
pub struct SessionData {
    /// Who signed in.
    pub identity: Identity,
    /// When they signed in.
    pub created_at: u64,
    /// The session ends here whatever the tokens say (`session.lifetime`).
    pub expires_at: u64,
    /// When the provider's tokens run out and a refresh is due; `None` when they do not expire.
    pub tokens_expire_at: Option<u64>,
    /// What renews the tokens, if the provider gave one.
    pub refresh_token: Option<String>,
    /// Kept only when needed: RP-initiated logout (`id_token_hint`) or `pass_id_token_as_bearer`.
    pub id_token: Option<String>,
    /// Kept only with `headers.pass_access_token`.
    pub access_token: Option<String>,
    /// The provider's `sub` for this login: what back-channel logout and `portcullis sessions
    /// revoke --sub` name (the user header may come from another claim).
    pub sub: Option<String>,
    /// The provider's session id (`sid`), when its ID token has one: what back-channel logout
    /// names to end one login rather than all of a user's.
    pub sid: Option<String>,
    /// Ours: random at sign-in, kept by refreshes. What sign-out revokes with the cookie store
    /// and `[session.revocation]` (`None` for a cookie from before it existed).
    pub id: Option<String>,
}

impl std::fmt::Debug for SessionData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionData")
            .field("identity", &self.identity)
            .field("expires_at", &self.expires_at)
            .field("tokens_expire_at", &self.tokens_expire_at)
            .finish_non_exhaustive()
    }
}

/// Under which name a provider's `sub` or `sid` is filed, for ending sessions by them: the
/// plain `sub`/`sid` for the default provider (as before there could be several, so its
/// sessions and logouts keep matching), `sub@<id>`/`sid@<id>` for any other. The same `sub`
/// at two providers is two users, and a logout from one never ends the other's sessions.
fn login_kind(kind: &'static str, provider: Option<&str>) -> Cow<'static, str> {
    match provider {
        None | Some(crate::config::DEFAULT_PROVIDER) => Cow::Borrowed(kind),
        Some(id) => Cow::Owned(format!("{kind}@{id}")),
    }
}

/// What back-channel logout and `portcullis sessions revoke` end: one login of a provider
/// (`sid`), every session of one of its users (`sub`), or both.
#[derive(Debug, Clone, Copy)]
pub struct Ending<'a> {
    /// The provider's id.
    pub provider: &'a str,
    /// Every session of this user so far.
    pub sub: Option<&'a str>,
    /// The sessions of this login.
    pub sid: Option<&'a str>,
}

impl Ending<'_> {
    /// `(kind, value)` for each of `sub` and `sid` given, in the names sessions are filed
    /// under (see [`SessionData::login_keys`]).
    pub(crate) fn keys(&self) -> impl Iterator<Item = (Cow<'static, str>, &str)> {
        [("sub", self.sub), ("sid", self.sid)]
            .into_iter()
            .filter_map(|(kind, value)| Some((login_kind(kind, Some(self.provider)), value?)))
    }
}

impl SessionData {
    /// `(kind, value)` for the session's `sub` and `sid` (those it has), under the names an
    /// [`Ending`] of its provider looks for.
    pub(crate) fn login_keys(&self) -> impl Iterator<Item = (Cow<'static, str>, &str)> {
        let provider = self.identity.provider.as_deref();
        [("sub", &self.sub), ("sid", &self.sid)]
            .into_iter()
            .filter_map(move |(kind, value)| Some((login_kind(kind, provider), value.as_deref()?)))
    }

    /// Whether the provider's tokens have run out at `now`.
    pub fn needs_refresh(&self, now: UnixTime) -> bool {
        self.tokens_expire_at.is_some_and(|t| now.secs() >= t)
    }
}

#[cfg(test)]
impl SessionData {
    /// A session of `user` with nothing else in it (created at 1, ending at 2), for tests to
    /// fill in what they need.
    pub(crate) fn of_user(user: &str) -> SessionData {
        SessionData {
            identity: Identity {
                user: Some(user.into()),
                email: None,
                groups: Vec::new(),
                preferred_username: None,
                provider: None,
                issuer: None,
            },
            created_at: 1,
            expires_at: 2,
            tokens_expire_at: None,
            refresh_token: None,
            id_token: None,
            access_token: None,
            sub: None,
            sid: None,
            id: None,
        }
    }
}

/// Outcome of reading the session cookie.
#[derive(Debug, Default, Clone)]
pub struct Loaded {
    /// The session, when the cookies held a usable one. Shared: a store may hand the same
    /// opened session to every request that carries its cookie.
    pub session: Option<Arc<SessionData>>,
    /// Names of our session cookies (plain or chunks) the request carried.
    pub present: Vec<String>,
    /// The request carried something that is not a usable session (tampered, truncated,
    /// expired, from an old secret, ambiguous, gone from the server): it should be cleared.
    pub unusable: bool,
    /// The server-side session's ticket, when the store keeps sessions on a server.
    pub ticket: Option<Ticket>,
    /// The store could not be asked: whether the cookie names a session is unknown, so
    /// neither a login redirect nor clearing it would be right.
    pub unavailable: Option<StoreUnavailable>,
}

/// Who may refresh a session, across the replicas sharing a store.
pub enum Lease {
    /// The store is not shared: this process's single flight is all there is.
    Unshared,
    /// This process holds the lease until it releases it.
    Held(redis_store::Held),
    /// Another replica holds it: wait for its result in the store.
    Busy,
    /// The store cannot be asked.
    Unavailable(StoreUnavailable),
}

/// The session store cannot be reached (Redis down): the reason, without secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the session store is unavailable: {0}")]
pub struct StoreUnavailable(pub String);

/// Where sessions live between requests.
///
/// A store finds the session a request's cookies name, and says which `Set-Cookie` values
/// keep or end it. Whatever it keeps elsewhere (nothing, for [`CookieStore`]), the browser's
/// side is always cookies, so a request's cookies are its input and `Set-Cookie` values its
/// output. Asynchronous because a store that keeps sessions on a server must ask it.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// The session the request's `Cookie` headers name, if it is usable at `now`.
    async fn load(&self, cookie_headers: &[&[u8]], now: UnixTime) -> Loaded;

    /// Keeps a brand-new session (a login): never under the identity of the session it
    /// replaces (`replacing`, what the request carried). `Set-Cookie` values that name it.
    /// A session that cannot be sealed is cleared instead (failing closed signs the user
    /// out); a store that cannot be reached says so.
    async fn create(
        &self,
        data: &SessionData,
        replacing: &Loaded,
        now: UnixTime,
    ) -> Result<Vec<SetCookie>, StoreUnavailable>;

    /// Keeps `data`, a refresh of the session `loaded` read, where sessions are kept: once
    /// per refresh (nothing to do for a cookie, which each response carries).
    async fn persist(
        &self,
        _data: &SessionData,
        _loaded: &Loaded,
        _now: UnixTime,
    ) -> Result<(), StoreUnavailable> {
        Ok(())
    }

    /// `Set-Cookie` values for a request that carried `loaded` once its session was
    /// refreshed into `data` (none when the cookie names the session, not its content).
    fn refreshed_cookies(
        &self,
        data: &SessionData,
        loaded: &Loaded,
        now: UnixTime,
    ) -> Vec<SetCookie>;

    /// The session's refresh lease, when replicas share the store: only its holder asks the
    /// provider, so a rotating refresh token is never spent twice.
    async fn lease(&self, _loaded: &Loaded) -> Lease {
        Lease::Unshared
    }

    /// Ends every session of a provider's login `sid`, or of its user `sub` (back-channel
    /// logout, `portcullis sessions revoke`); how many it ended, when it can tell.
    async fn end_sessions(
        &self,
        ending: Ending<'_>,
        now: UnixTime,
    ) -> Result<usize, StoreUnavailable>;

    /// Whether `what` (a logout token's `jti`) is seen for the first time within `ttl`,
    /// across every replica the store reaches: a replayed token is refused.
    async fn first_use(&self, what: &str, ttl: Duration) -> Result<bool, StoreUnavailable>;

    /// Undoes [`SessionStore::first_use`] of `what`: the work it guarded could not be done,
    /// so the same token must be accepted when the provider sends it again. Best effort.
    async fn forget_use(&self, what: &str);

    /// The session `loaded` read, read again (another replica may have refreshed it).
    async fn reload(&self, loaded: &Loaded, _now: UnixTime) -> Loaded {
        loaded.clone()
    }

    /// Ends the session `loaded` read, everywhere the store can: `Set-Cookie` values that
    /// clear its cookies.
    async fn clear(&self, loaded: &Loaded, now: UnixTime) -> Vec<SetCookie>;

    /// Whether a cookie of this name belongs to the store (never forwarded upstream).
    fn is_ours(&self, cookie_name: &str) -> bool;

    /// Why the store is not usable right now, if it is not (for `/ready`).
    fn health(&self) -> Option<String> {
        None
    }

    /// Checks on the store in the background (a server-side store pings its server, so
    /// `/ready` and the fail-fast pause follow it without traffic).
    async fn probe(&self) {}
}
