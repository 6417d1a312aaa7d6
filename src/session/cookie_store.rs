//! The session kept whole in the browser: sealed ([`super::seal`]) into a cookie that is
//! split across several when large ([`super::chunks`]). Nothing is kept on the server.

use std::time::Duration;

use async_trait::async_trait;

use super::chunks::{self, CookieAttrs, SetCookie};
use super::seal::{self, SealKeys};
use super::{Loaded, SessionData, SessionStore, StoreUnavailable};
use crate::clock::UnixTime;
use crate::config;

/// The first byte of every sealed session payload: bump it when the layout changes, so old
/// cookies are refused cleanly instead of being misread.
const PAYLOAD_VERSION: u8 = 1;

/// Sessions sealed into the session cookie (`session.cookie_name` and its chunks).
pub struct CookieStore {
    keys: SealKeys,
    name: String,
    attrs: CookieAttrs,
}

impl CookieStore {
    /// Fails only if the secrets were not validated (config guarantees at least one of 32+ bytes).
    pub fn new(cfg: &config::Session) -> Result<CookieStore, seal::SealKeyError> {
        Ok(CookieStore {
            keys: SealKeys::from_config(cfg)?,
            name: cfg.cookie_name.clone(),
            attrs: CookieAttrs::from_config(cfg),
        })
    }

    /// The session the request's cookies carry, if usable at `now`.
    pub fn load(&self, cookie_headers: &[&[u8]], now: UnixTime) -> Loaded {
        let read = match chunks::read_cookie(cookie_headers, &self.name) {
            Ok(read) => read,
            Err(ambiguous) => {
                return Loaded {
                    present: ambiguous.present,
                    unusable: true,
                    ..Loaded::default()
                }
            }
        };
        let Some(value) = read.value else {
            // Our name with an empty or malformed value is junk to clear, not "no cookie".
            return Loaded {
                unusable: !read.present.is_empty(),
                present: read.present,
                ..Loaded::default()
            };
        };
        let session = self
            .keys
            .open(&self.name, &value)
            .and_then(|plain| decode_payload(&plain))
            .filter(|s| now.secs() < s.expires_at);
        Loaded {
            unusable: session.is_none(),
            session,
            present: read.present,
            ..Loaded::default()
        }
    }

    /// `Set-Cookie` values storing `data`, clearing chunks it no longer uses.
    pub fn save(&self, data: &SessionData, present: &[String], now: UnixTime) -> Vec<SetCookie> {
        let max_age = Duration::from_secs(data.expires_at.saturating_sub(now.secs()));
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
    pub fn clear(&self, present: &[String]) -> Vec<SetCookie> {
        // The name and attributes were validated at start-up, so this cannot fail in practice.
        chunks::clear_cookies(&self.name, &self.attrs, present).unwrap_or_default()
    }
}

/// Nothing here waits: each method is the synchronous one of the same name above, which
/// callers holding a `CookieStore` itself (tools, tests) may use directly. A new session and a
/// refreshed one are sealed alike (the cookie is the whole session); nothing is ever
/// unavailable.
#[async_trait]
impl SessionStore for CookieStore {
    async fn load(&self, cookie_headers: &[&[u8]], now: UnixTime) -> Loaded {
        CookieStore::load(self, cookie_headers, now)
    }

    /// Should sealing fail (no randomness from the OS, a session too large for the chunk
    /// limit) the session is cleared instead.
    async fn create(
        &self,
        data: &SessionData,
        replacing: &Loaded,
        now: UnixTime,
    ) -> Result<Vec<SetCookie>, StoreUnavailable> {
        Ok(CookieStore::save(self, data, &replacing.present, now))
    }

    fn refreshed_cookies(
        &self,
        data: &SessionData,
        loaded: &Loaded,
        now: UnixTime,
    ) -> Vec<SetCookie> {
        CookieStore::save(self, data, &loaded.present, now)
    }

    async fn clear(&self, loaded: &Loaded) -> Vec<SetCookie> {
        CookieStore::clear(self, &loaded.present)
    }

    fn is_ours(&self, cookie_name: &str) -> bool {
        chunks::is_session_cookie_name(cookie_name, &self.name)
    }
}

fn decode_payload(plain: &[u8]) -> Option<SessionData> {
    let (&version, rest) = plain.split_first()?;
    if version != PAYLOAD_VERSION {
        return None;
    }
    postcard::from_bytes(rest).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::session::Identity;

    fn now() -> UnixTime {
        SystemClock.now()
    }

    fn store(secrets: &str) -> CookieStore {
        CookieStore::new(config::for_tests(secrets).session.as_ref().unwrap()).unwrap()
    }

    const A: &str = "\"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY\"";
    const B: &str = "\"YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY\"";

    fn data(now: UnixTime, big: usize) -> SessionData {
        let now = now.secs();
        SessionData {
            identity: Identity {
                user: Some("alice".into()),
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
    fn cookie_header(set: &[SetCookie]) -> Vec<u8> {
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
            assert_eq!(got.identity.user.as_deref(), Some("alice"));
            assert_eq!(got.refresh_token.unwrap().len(), big);
            assert!(!loaded.unusable);
        }
    }

    #[test]
    fn expired_tampered_and_foreign_cookies_are_unusable() {
        let s = store(A);
        let now = now();
        let header = cookie_header(&s.save(&data(now, 10), &[], now));
        assert!(
            s.load(&[&header], now.plus(Duration::from_secs(7200)))
                .unusable
        );
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
}
