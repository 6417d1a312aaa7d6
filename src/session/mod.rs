//! The browser session: who the user is and the tokens needed to keep them signed in, sealed
//! into a cookie ([`seal`]) that is split across several cookies when large ([`chunks`]).
//!
//! Where sessions are kept is a [`SessionStore`]. The one there is today, [`CookieStore`],
//! keeps no server-side state: any replica with the same secrets can serve any request, and a
//! cookie from a browser works the same from curl or a script (no binding to the user agent).

pub mod chunks;
mod cookie_store;
pub(crate) mod refresh;
pub mod seal;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use chunks::SetCookie;
pub use cookie_store::CookieStore;

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
}

impl Identity {
    /// The user, for log lines.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
}

/// A session's user as the cookie format has always carried it: a plain string. No user is
/// the empty string, which is never a user (an empty user claim is refused).
mod user_field {
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

impl SessionData {
    /// Whether the provider's tokens have run out at `now`.
    pub fn needs_refresh(&self, now: UnixTime) -> bool {
        self.tokens_expire_at.is_some_and(|t| now.secs() >= t)
    }
}

/// Outcome of reading the session cookie.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The session, when the cookies held a usable one.
    pub session: Option<SessionData>,
    /// Names of our session cookies (plain or chunks) the request carried.
    pub present: Vec<String>,
    /// The request carried something that is not a usable session (tampered, truncated,
    /// expired, from an old secret, ambiguous): it should be cleared.
    pub unusable: bool,
}

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

    /// `Set-Cookie` values that keep `data` (replacing what `present` names). A store that
    /// cannot keep it ends the session instead: failing closed means signing the user out.
    async fn save(&self, data: &SessionData, present: &[String], now: UnixTime) -> Vec<SetCookie>;

    /// `Set-Cookie` values that end the session whose cookies `present` names.
    async fn clear(&self, present: &[String]) -> Vec<SetCookie>;

    /// Whether a cookie of this name belongs to the store (never forwarded upstream).
    fn is_ours(&self, cookie_name: &str) -> bool;
}
