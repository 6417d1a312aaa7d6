//! The session kept whole in the browser: sealed ([`super::seal`]) into a cookie that is
//! split across several when large ([`super::chunks`]). Nothing is kept on the server.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::chunks::{self, CookieAttrs, SetCookie};
use super::opened::Opened;
use super::seal::{self, SealKeys};
use super::{Ending, Lease, Loaded, SessionData, SessionStore, StoreUnavailable};
use crate::clock::UnixTime;
use crate::config;

/// The first byte of every sealed session payload: bump it when the layout changes (see
/// [`super::layout`]), so old cookies are read as what they are. Version 1 (before `sub`
/// and `sid`) and 2 (before an identity's provider and issuer) are still read, so an
/// upgrade signs nobody out.
const PAYLOAD_VERSION: u8 = 3;

/// Sessions sealed into the session cookie (`session.cookie_name` and its chunks).
pub struct CookieStore {
    keys: SealKeys,
    name: String,
    attrs: CookieAttrs,
    /// `session.lifetime`: how long an ended login or user must stay remembered.
    lifetime: Duration,
    ended: Arc<EndedHere>,
    /// `[session.revocation]`: ended sessions recorded in Redis for every replica.
    revocations: Option<super::redis_store::Revocations>,
    /// Values these keys opened recently (never another store's: see [`super::opened`]).
    opened: Opened,
}

/// What the cookie store remembers in this process: the sessions ended here, and the logout
/// tokens already used. It outlives a configuration reload (the new store is handed the old
/// one's), so that a reload brings back no ended session and no used token.
pub struct EndedHere {
    revoked: Revoked,
    /// Logout tokens already used (by SHA-256 of their `jti`).
    seen: quick_cache::sync::Cache<[u8; 32], std::time::Instant>,
}

/// How many used logout tokens are remembered.
const LOGOUT_TOKENS_REMEMBERED: usize = 10_000;

impl EndedHere {
    /// Nothing ended yet.
    pub fn new() -> EndedHere {
        EndedHere {
            revoked: Revoked::default(),
            seen: quick_cache::sync::Cache::new(LOGOUT_TOKENS_REMEMBERED),
        }
    }
}

impl Default for EndedHere {
    fn default() -> EndedHere {
        EndedHere::new()
    }
}

/// Logins and users ended here (back-channel logout, revocation) while their cookies may
/// still be out there: this process refuses those sessions from then on. Other processes do
/// not know (that takes the Redis store); entries are dropped once every session they could
/// match has expired anyway.
#[derive(Default)]
struct Revoked {
    /// `sid:<sid>` or `sub:<sub>` (`sub@<provider>:<sub>` for a provider other than the
    /// default) → when it was ended (Unix seconds).
    entries: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// Whether there is any entry: the common case costs no lock.
    any: std::sync::atomic::AtomicBool,
}

/// The most entries kept; past it the oldest are dropped first (they match the fewest live
/// sessions).
const MAX_REVOKED: usize = 100_000;

impl Revoked {
    /// Records `key` as ended at `now`, forgetting what ended more than `lifetime` ago.
    fn add(&self, key: String, now: UnixTime, lifetime: Duration) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let oldest_live = now.secs().saturating_sub(lifetime.as_secs());
        entries.retain(|_, at| *at >= oldest_live);
        if entries.len() >= MAX_REVOKED {
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(key, now.secs());
        self.any.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether `s` was ended: its login, or its user after it signed in.
    fn ended(&self, s: &SessionData) -> bool {
        if !self.any.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        let Ok(entries) = self.entries.lock() else {
            return true;
        };
        s.login_keys().any(|(kind, value)| {
            let at = entries.get(&format!("{kind}:{value}"));
            match kind.starts_with("sub") {
                // A user's sessions end if they began before it was ended.
                true => at.is_some_and(|at| *at >= s.created_at),
                false => at.is_some(),
            }
        })
    }
}

impl CookieStore {
    /// Fails only if the secrets were not validated (config guarantees at least one of 32+ bytes).
    pub fn new(cfg: &config::Session) -> Result<CookieStore, seal::SealKeyError> {
        CookieStore::remembering(cfg, Arc::new(EndedHere::new()))
    }

    /// A store that knows what `ended` remembers (the store of the configuration before).
    pub fn remembering(
        cfg: &config::Session,
        ended: Arc<EndedHere>,
    ) -> Result<CookieStore, seal::SealKeyError> {
        Ok(CookieStore {
            keys: SealKeys::from_config(cfg)?,
            name: cfg.cookie_name.clone(),
            attrs: CookieAttrs::from_config(cfg),
            lifetime: cfg.lifetime,
            ended,
            revocations: cfg
                .revocation
                .as_ref()
                .map(|r| super::redis_store::Revocations::new(r, &cfg.secrets, cfg.lifetime)),
            opened: Opened::new(),
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
            .opened
            .get_or_open(&value, |sealed| {
                let plain = self.keys.open(&self.name, sealed)?;
                decode_payload(&plain)
            })
            .filter(|s| now.secs() < s.expires_at && !self.ended.revoked.ended(s));
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
    /// With `[session.revocation]`, a session is also checked against the ended ones in Redis;
    /// while Redis cannot say, the request is told so (a 503), never let through.
    async fn load(&self, cookie_headers: &[&[u8]], now: UnixTime) -> Loaded {
        let mut loaded = CookieStore::load(self, cookie_headers, now);
        if let (Some(list), Some(session)) = (&self.revocations, &loaded.session) {
            match list.ended(session).await {
                Ok(false) => {}
                Ok(true) => {
                    loaded.session = None;
                    loaded.unusable = true;
                }
                Err(e) => {
                    loaded.session = None;
                    loaded.unavailable = Some(e);
                }
            }
        }
        loaded
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

    /// With `[session.revocation]` the session is recorded as ended, so a copy of the cookie
    /// is refused on every replica too.
    async fn clear(&self, loaded: &Loaded, now: UnixTime) -> Vec<SetCookie> {
        let id = loaded.session.as_ref().and_then(|s| s.id.as_deref());
        if let (Some(list), Some(id)) = (&self.revocations, id) {
            if let Err(e) = list.end_session(id, now).await {
                tracing::warn!(error = %e, "could not record a sign-out in redis");
            }
        }
        CookieStore::clear(self, &loaded.present)
    }

    /// With `[session.revocation]`, once across every replica; otherwise in this process
    /// only, bounded (a replica that has not seen the token accepts it once).
    async fn first_use(&self, what: &str, ttl: Duration) -> Result<bool, StoreUnavailable> {
        if let Some(list) = &self.revocations {
            return list.first_use(what, ttl).await;
        }
        use sha2::Digest;
        let key: [u8; 32] = sha2::Sha256::digest(what.as_bytes()).into();
        let now = std::time::Instant::now();
        let seen = &self.ended.seen;
        if let Some(at) = seen.get(&key) {
            if now.duration_since(at) < ttl {
                return Ok(false);
            }
        }
        seen.insert(key, now);
        Ok(true)
    }

    async fn forget_use(&self, what: &str) {
        if let Some(list) = &self.revocations {
            return list.forget_use(what).await;
        }
        use sha2::Digest;
        let key: [u8; 32] = sha2::Sha256::digest(what.as_bytes()).into();
        self.ended.seen.remove(&key);
    }

    /// With `[session.revocation]`, one refresh per session across every replica (the
    /// revocation list's Redis holds the lease); otherwise this process's single flight.
    async fn lease(&self, loaded: &Loaded) -> Lease {
        match (&self.revocations, &loaded.session) {
            (Some(list), Some(old)) => list.lease(old).await,
            _ => Lease::Unshared,
        }
    }

    /// With `[session.revocation]`, the refresh is handed over to the other replicas and to
    /// requests still carrying the cookie from before; the browser gets it in its cookie.
    async fn persist(
        &self,
        data: &SessionData,
        loaded: &Loaded,
        now: UnixTime,
    ) -> Result<(), StoreUnavailable> {
        match (&self.revocations, &loaded.session) {
            (Some(list), Some(old)) => list.hand_off(old, data, now).await,
            _ => Ok(()),
        }
    }

    /// The refresh another replica handed over, when there is one.
    async fn reload(&self, loaded: &Loaded, now: UnixTime) -> Loaded {
        let (Some(list), Some(old)) = (&self.revocations, &loaded.session) else {
            return loaded.clone();
        };
        match list.handed_off(old, now).await {
            Ok(Some(new)) => Loaded {
                session: Some(Arc::new(new)),
                ..loaded.clone()
            },
            Ok(None) => loaded.clone(),
            Err(e) => Loaded {
                unavailable: Some(e),
                ..loaded.clone()
            },
        }
    }

    /// In this process only: the cookie is the session, so no other replica can be told.
    async fn end_sessions(
        &self,
        ending: Ending<'_>,
        now: UnixTime,
    ) -> Result<usize, StoreUnavailable> {
        if let Some(list) = &self.revocations {
            list.end(ending, now).await?;
            return Ok(0);
        }
        for (kind, value) in ending.keys() {
            self.ended
                .revoked
                .add(format!("{kind}:{value}"), now, self.lifetime);
        }
        Ok(0)
    }

    fn is_ours(&self, cookie_name: &str) -> bool {
        chunks::is_session_cookie_name(cookie_name, &self.name)
    }

    fn health(&self) -> Option<String> {
        self.revocations.as_ref().and_then(|l| l.health())
    }

    async fn probe(&self) {
        if let Some(list) = &self.revocations {
            list.probe().await;
        }
    }
}

fn decode_payload(plain: &[u8]) -> Option<SessionData> {
    match plain.split_first()? {
        (&PAYLOAD_VERSION, rest) => super::layout::current(rest),
        (2, rest) => super::layout::with_login_ids(rest),
        (1, rest) => super::layout::first(rest),
        _ => None,
    }
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
                provider: None,
                issuer: None,
            },
            created_at: now,
            expires_at: now + 3600,
            tokens_expire_at: Some(now + 300),
            refresh_token: Some("r".repeat(big)),
            id_token: None,
            access_token: None,
            sub: Some("alice-sub".into()),
            sid: Some("sid-1".into()),
            id: Some("0123".into()),
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
    fn a_cookie_from_before_sub_and_sid_still_opens() {
        let s = store(A);
        let now = now();
        let d = data(now, 10);
        let mut payload = vec![1];
        payload.extend(crate::session::layout::in_first_layout(&d));
        let sealed = s.keys.seal(&s.name, &payload).unwrap();
        let header = format!("{}={sealed}", s.name).into_bytes();
        let got = s
            .load(&[&header], now)
            .session
            .expect("a version 1 cookie opens");
        assert_eq!(got.identity.user.as_deref(), Some("alice"));
        assert_eq!((&got.sub, &got.sid), (&None, &None));
        let round = s.load(&[&cookie_header(&s.save(&d, &[], now))], now);
        assert_eq!(round.session.unwrap().sid.as_deref(), Some("sid-1"));
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
            assert_eq!(got.refresh_token.as_deref().map(str::len), Some(big));
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

    /// A session opened once is remembered (see `opened.rs`), but the checks that depend on
    /// the time and on what ended since are made on every request.
    #[tokio::test]
    async fn a_remembered_session_still_expires_and_ends() {
        let s = store(A);
        let now = now();
        let header = cookie_header(&s.save(&data(now, 10), &[], now));
        let first = CookieStore::load(&s, &[&header], now)
            .session
            .expect("opens");
        let again = CookieStore::load(&s, &[&header], now)
            .session
            .expect("remembered");
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second load is served from memory"
        );
        assert!(CookieStore::load(&s, &[&header], now.plus(Duration::from_secs(7200))).unusable);
        let mut tampered = header.clone();
        tampered[header.len() / 2] ^= 0x01;
        assert!(CookieStore::load(&s, &[&tampered], now).unusable);
        let ending = Ending {
            provider: "default",
            sub: None,
            sid: Some("sid-1"),
        };
        SessionStore::end_sessions(&s, ending, now).await.unwrap();
        let ended = CookieStore::load(&s, &[&header], now);
        assert!(
            ended.session.is_none() && ended.unusable,
            "an ended session stays ended"
        );
    }
}
