//! The browser session: who the user is and the tokens needed to keep them signed in, sealed
//! into a cookie ([`seal`]) that is split across several cookies when large ([`chunks`]).
//!
//! There is no server-side session state: any replica with the same secrets can serve any
//! request, and a cookie from a browser works the same from curl or a script (no binding to
//! the user agent).

pub mod chunks;
pub mod refresh;
pub mod seal;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config;
use chunks::CookieAttrs;
use seal::SealKeys;

/// The identity portcullis vouches for to the upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub user: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub preferred_username: Option<String>,
}

/// Everything a session cookie carries. Times are Unix seconds.
#[derive(Clone, Serialize, Deserialize)]
pub struct SessionData {
    pub identity: Identity,
    pub created_at: u64,
    /// The session ends here whatever the tokens say (`session.lifetime`).
    pub expires_at: u64,
    /// When the provider's tokens run out and a refresh is due; `None` when they do not expire.
    pub tokens_expire_at: Option<u64>,
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
    pub fn needs_refresh(&self, now: u64) -> bool {
        self.tokens_expire_at.is_some_and(|t| now >= t)
    }
}

/// The first byte of every sealed session payload: bump it when the layout changes, so old
/// cookies are refused cleanly instead of being misread.
const PAYLOAD_VERSION: u8 = 1;

/// Outcome of reading the session cookie.
#[derive(Debug, Default)]
pub struct Loaded {
    pub session: Option<SessionData>,
    /// Names of our session cookies (plain or chunks) the request carried.
    pub present: Vec<String>,
    /// The request carried something that is not a usable session (tampered, truncated,
    /// expired, from an old secret, ambiguous): it should be cleared.
    pub unusable: bool,
}

pub struct SessionStore {
    keys: SealKeys,
    name: String,
    flow_prefix: String,
    attrs: CookieAttrs,
}

impl SessionStore {
    /// Fails only if the secrets were not validated (config guarantees at least one of 32+ bytes).
    pub fn new(cfg: &config::Session) -> Result<SessionStore, seal::SealKeyError> {
        let secrets: Vec<Vec<u8>> = cfg.secrets.iter().map(|s| s.0.clone()).collect();
        Ok(SessionStore {
            keys: SealKeys::new(&secrets)?,
            name: cfg.cookie_name.clone(),
            flow_prefix: format!("{}_flow_", cfg.cookie_name),
            attrs: CookieAttrs {
                secure: cfg.secure,
                same_site: cfg.same_site,
                domain: cfg.domain.clone(),
                path: "/".into(),
                http_only: true,
            },
        })
    }

    pub fn keys(&self) -> &SealKeys {
        &self.keys
    }

    pub fn attrs(&self) -> &CookieAttrs {
        &self.attrs
    }

    /// Prefix of the per-login flow cookies.
    pub fn flow_prefix(&self) -> &str {
        &self.flow_prefix
    }

    /// Whether a cookie of this name belongs to portcullis (never forwarded upstream).
    pub fn is_ours(&self, cookie_name: &str) -> bool {
        chunks::is_session_cookie_name(cookie_name, &self.name)
            || cookie_name.starts_with(&self.flow_prefix)
    }

    pub fn load(&self, cookie_headers: &[&[u8]], now: u64) -> Loaded {
        let read = match chunks::read_cookie(cookie_headers, &self.name) {
            Ok(read) => read,
            Err(ambiguous) => {
                return Loaded {
                    session: None,
                    present: ambiguous.present,
                    unusable: true,
                }
            }
        };
        let Some(value) = read.value else {
            // Our name with an empty or malformed value is junk to clear, not "no cookie".
            return Loaded {
                session: None,
                unusable: !read.present.is_empty(),
                present: read.present,
            };
        };
        let session = self
            .keys
            .open(&self.name, &value)
            .and_then(|plain| decode_payload(&plain))
            .filter(|s| now < s.expires_at);
        Loaded {
            unusable: session.is_none(),
            session,
            present: read.present,
        }
    }

    /// `Set-Cookie` values storing `data`, clearing chunks it no longer uses. Should sealing
    /// fail (no randomness from the OS, a session too large for the chunk limit) the session
    /// is cleared instead: failing closed means signing the user out, never a broken cookie.
    pub fn save(&self, data: &SessionData, present: &[String], now: u64) -> Vec<String> {
        let max_age = Duration::from_secs(data.expires_at.saturating_sub(now));
        let sealed = postcard::to_extend(data, vec![PAYLOAD_VERSION])
            .ok()
            .and_then(|payload| self.keys.seal(&self.name, &payload).ok());
        let cookies = sealed.and_then(|sealed| {
            crate::metrics::get().session_cookie(sealed.len());
            chunks::set_cookies(&self.name, &sealed, &self.attrs, max_age, present).ok()
        });
        match cookies {
            Some(c) => c,
            None => {
                tracing::error!("cannot seal the session cookie; clearing it");
                self.clear(present)
            }
        }
    }

    /// `Set-Cookie` values removing the session cookie and its chunks.
    pub fn clear(&self, present: &[String]) -> Vec<String> {
        // The name and attributes were validated at start-up, so this cannot fail in practice.
        chunks::clear_cookies(&self.name, &self.attrs, present).unwrap_or_default()
    }
}

fn decode_payload(plain: &[u8]) -> Option<SessionData> {
    let (&version, rest) = plain.split_first()?;
    if version != PAYLOAD_VERSION {
        return None;
    }
    postcard::from_bytes(rest).ok()
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(secrets: &str) -> SessionStore {
        SessionStore::new(&config::for_tests(secrets).session).unwrap()
    }

    const A: &str = "\"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY\"";
    const B: &str = "\"YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY\"";

    fn data(now: u64, big: usize) -> SessionData {
        SessionData {
            identity: Identity {
                user: "alice".into(),
                email: Some("alice@example.com".into()),
                groups: vec!["sre".into()],
                preferred_username: None,
            },
            created_at: now,
            expires_at: now + 3600,
            tokens_expire_at: Some(now + 300),
            refresh_token: Some("r".repeat(big)),
            id_token: None,
            access_token: None,
        }
    }

    /// Turns Set-Cookie values into the Cookie header a browser would send.
    fn cookie_header(set: &[String]) -> Vec<u8> {
        set.iter()
            .filter(|c| !c.contains("Max-Age=0"))
            .map(|c| c.split(';').next().unwrap().to_string())
            .collect::<Vec<_>>()
            .join("; ")
            .into_bytes()
    }

    #[test]
    fn round_trip_small_and_chunked() {
        let s = store(A);
        let now = now();
        for big in [10, 9000] {
            let set = s.save(&data(now, big), &[], now);
            if big > 4000 {
                assert!(set.len() > 1, "expected chunks");
            }
            let header = cookie_header(&set);
            let loaded = s.load(&[&header], now);
            let got = loaded.session.expect("session");
            assert_eq!(got.identity.user, "alice");
            assert_eq!(got.refresh_token.unwrap().len(), big);
            assert!(!loaded.unusable);
        }
    }

    #[test]
    fn expired_tampered_and_foreign_cookies_are_unusable() {
        let s = store(A);
        let now = now();
        let header = cookie_header(&s.save(&data(now, 10), &[], now));
        assert!(s.load(&[&header], now + 7200).unusable);
        let mut tampered = header.clone();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let l = s.load(&[&tampered], now);
        assert!(l.session.is_none() && l.unusable);
        let other = store(B);
        assert!(other.load(&[&header], now).unusable);
        let rotated = store(&format!("{B}, {A}"));
        assert!(rotated.load(&[&header], now).session.is_some());
        assert!(!s.load(&[b"other=1"], now).unusable);
        assert!(s.load(&[b"_portcullis="], now).unusable);
        assert!(s.load(&[b"_portcullis=\"quoted\""], now).unusable);
    }

    #[test]
    fn ours_and_theirs() {
        let s = store(A);
        assert!(s.is_ours("_portcullis"));
        assert!(s.is_ours("_portcullis_0"));
        assert!(s.is_ours("_portcullis_flow_abc"));
        assert!(!s.is_ours("_portcullis_pref"));
        assert!(!s.is_ours("session"));
    }
}
