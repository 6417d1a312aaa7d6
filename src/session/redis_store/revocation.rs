//! `[session.revocation]`: with the cookie store, the sessions ended anywhere (sign-out,
//! back-channel logout, `portcullis sessions revoke`) are recorded in Redis, and every replica
//! checks a session against them on every request. Entries live as long as a session can
//! (`session.lifetime`); their keys share one hash tag, so one `MGET` asks all of a session's
//! in a Cluster too.
//!
//! The same Redis lets the replicas share what the cookie alone cannot: one refresh per
//! session (a lease named after the refresh token about to be spent, as the Redis store's),
//! its result handed over to the replicas that waited and to requests still carrying the
//! cookie from before (sealed under a key derived from the refresh token it replaced, kept
//! [`HANDOFF_TTL`]), and the logout tokens already used.

use std::sync::Arc;
use std::time::Duration;

use super::conn::Redis;
use super::macs::Macs;
use super::ticket::Ticket;
use crate::clock::UnixTime;
use crate::config::{RedisSettings, SessionSecret};
use crate::session::{Ending, Lease, SessionData, StoreUnavailable};

/// How long a refreshed session stays available to requests carrying the cookie from before
/// the refresh (the other requests of a burst, a tab that has not seen the new cookie yet).
pub(crate) const HANDOFF_TTL: Duration = Duration::from_secs(120);
/// The first byte of a handed-over session.
const HANDOFF_VERSION: u8 = 2;
/// The HKDF info of the ticket a handed-over session is sealed under.
const HANDOFF_PURPOSE: &[u8] = b"portcullis refresh handoff";

/// The revocation list in Redis.
pub(crate) struct Revocations {
    redis: Arc<Redis>,
    macs: Macs,
    lifetime: Duration,
}

impl Revocations {
    pub(crate) fn new(
        settings: &RedisSettings,
        secrets: &[SessionSecret],
        lifetime: Duration,
    ) -> Revocations {
        Revocations {
            redis: Arc::new(Redis::new(settings.clone())),
            macs: Macs::from_secrets(secrets),
            lifetime,
        }
    }

    fn key(&self, what: &str) -> String {
        format!("{}{{revoked}}:{what}", self.redis.prefix())
    }

    /// The keys that would revoke `s`, with whether each counts from the session's start
    /// (a user's revocation does not end sessions that began after it).
    fn keys_for(&self, s: &SessionData) -> Vec<(String, bool)> {
        let mut keys = Vec::new();
        if let Some(id) = &s.id {
            keys.push((self.key(&format!("session:{id}")), false));
        }
        for (kind, value) in s.login_keys() {
            // A user's revocation ends the sessions that began before it.
            let after_start = kind.starts_with("sub");
            for tag in self.macs.tags(&kind, value) {
                keys.push((self.key(&format!("{kind}:{tag}")), after_start));
            }
        }
        keys
    }

    /// Whether `s` was ended anywhere.
    pub(crate) async fn ended(&self, s: &SessionData) -> Result<bool, StoreUnavailable> {
        let keys = self.keys_for(s);
        if keys.is_empty() {
            return Ok(false);
        }
        let mut mget = redis::cmd("MGET");
        for (k, _) in &keys {
            mget.arg(k);
        }
        let values: Vec<Option<u64>> = self
            .redis
            .run(&mget)
            .await
            .map_err(|e| StoreUnavailable(e.0))?;
        Ok(keys
            .iter()
            .zip(values)
            .any(|((_, after_start), at)| match at {
                None => false,
                Some(at) if *after_start => at >= s.created_at,
                Some(_) => true,
            }))
    }

    /// Records that the session `id` ended (sign-out).
    pub(crate) async fn end_session(
        &self,
        id: &str,
        now: UnixTime,
    ) -> Result<(), StoreUnavailable> {
        self.record(self.key(&format!("session:{id}")), now).await
    }

    /// Records that the login `sid` and/or every session of `sub` so far ended.
    pub(crate) async fn end(
        &self,
        ending: Ending<'_>,
        now: UnixTime,
    ) -> Result<(), StoreUnavailable> {
        for (kind, v) in ending.keys() {
            // Under the first secret's MAC: the one every current session is checked with.
            if let Some(tag) = self.macs.tags(&kind, v).into_iter().next() {
                self.record(self.key(&format!("{kind}:{tag}")), now).await?;
            }
        }
        Ok(())
    }

    async fn record(&self, key: String, now: UnixTime) -> Result<(), StoreUnavailable> {
        let mut set = redis::cmd("SET");
        set.arg(key)
            .arg(now.secs())
            .arg("EX")
            .arg(self.lifetime.as_secs().max(1));
        self.redis
            .run::<()>(&set)
            .await
            .map_err(|e| StoreUnavailable(e.0))
    }

    /// The ticket a refresh of `old` is handed over under: derived from its refresh token.
    fn handoff_ticket(old: &SessionData) -> Option<Ticket> {
        let token = old.refresh_token.as_deref()?;
        Some(Ticket::derived(token.as_bytes(), HANDOFF_PURPOSE))
    }

    /// The lease on refreshing `old`, across every replica.
    pub(crate) async fn lease(&self, old: &SessionData) -> Lease {
        let Some(ticket) = Self::handoff_ticket(old) else {
            return Lease::Unshared;
        };
        match super::lease::take(&self.redis, self.key(&format!("refresh:{}", ticket.id()))).await {
            Ok(Some(held)) => Lease::Held(held),
            Ok(None) => Lease::Busy,
            Err(e) => Lease::Unavailable(StoreUnavailable(e.0)),
        }
    }

    /// Keeps `new`, the refresh of `old`, for the replicas and requests still holding `old`.
    pub(crate) async fn hand_off(
        &self,
        old: &SessionData,
        new: &SessionData,
        now: UnixTime,
    ) -> Result<(), StoreUnavailable> {
        let Some(ticket) = Self::handoff_ticket(old) else {
            return Ok(());
        };
        let ttl = HANDOFF_TTL
            .as_secs()
            .min(new.expires_at.saturating_sub(now.secs()));
        let body = postcard::to_extend(new, vec![HANDOFF_VERSION])
            .ok()
            .and_then(|plain| ticket.seal(&plain));
        let (Some(body), true) = (body, ttl > 0) else {
            return Ok(());
        };
        let mut set = redis::cmd("SET");
        set.arg(self.key(&format!("handoff:{}", ticket.id())))
            .arg(body)
            .arg("EX")
            .arg(ttl);
        self.redis
            .run::<()>(&set)
            .await
            .map_err(|e| StoreUnavailable(e.0))
    }

    /// The refresh of `old` another replica handed over, if there is one.
    pub(crate) async fn handed_off(
        &self,
        old: &SessionData,
        now: UnixTime,
    ) -> Result<Option<SessionData>, StoreUnavailable> {
        let Some(ticket) = Self::handoff_ticket(old) else {
            return Ok(None);
        };
        let mut get = redis::cmd("GET");
        get.arg(self.key(&format!("handoff:{}", ticket.id())));
        let body: Option<Vec<u8>> = self
            .redis
            .run(&get)
            .await
            .map_err(|e| StoreUnavailable(e.0))?;
        Ok(body
            .and_then(|b| ticket.open(&b))
            .and_then(|plain| match plain.split_first() {
                Some((&HANDOFF_VERSION, rest)) => crate::session::layout::current(rest),
                Some((1, rest)) => crate::session::layout::with_login_ids(rest),
                _ => None,
            })
            .filter(|s| now.secs() < s.expires_at))
    }

    /// Whether `what` (a logout token's `jti`) is seen for the first time within `ttl`, on
    /// any replica.
    pub(crate) async fn first_use(
        &self,
        what: &str,
        ttl: Duration,
    ) -> Result<bool, StoreUnavailable> {
        super::used::first_use(&self.redis, self.used_key(what), ttl)
            .await
            .map_err(|e| StoreUnavailable(e.0))
    }

    /// Undoes [`Revocations::first_use`] of `what`.
    pub(crate) async fn forget_use(&self, what: &str) {
        super::used::forget(&self.redis, self.used_key(what)).await;
    }

    fn used_key(&self, what: &str) -> String {
        super::used::key(&self.key(""), what)
    }

    /// Why the list cannot be asked, if it cannot.
    pub(crate) fn health(&self) -> Option<String> {
        self.redis.last_error()
    }

    pub(crate) async fn probe(&self) {
        let _ = self.redis.ping().await;
    }
}
