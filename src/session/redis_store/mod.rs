//! Sessions kept in Redis (`session.store = "redis"`): the cookie holds only a sealed
//! [`Ticket`]; Redis holds the session body, encrypted with the ticket's key, under
//! `<key_prefix>session:<id>` with a TTL of the session's remaining lifetime.
//!
//! Signing out deletes the body, so every copy of the cookie, on every replica, stops
//! working at once. A body Redis no longer has (expired, deleted, lost in a restart) is a
//! signed-out user whose cookie is cleared. Redis unreachable is neither: the request is told
//! so ([`Loaded::unavailable`]) and the cookie is kept for when Redis is back.

mod conn;
mod lease;
mod macs;
mod revocation;
mod ticket;
mod used;

use std::time::Duration;

use async_trait::async_trait;

pub(crate) use conn::{Redis, Unavailable};
pub use lease::Held;
pub(crate) use macs::Macs;
pub(crate) use revocation::Revocations;
pub use ticket::Ticket;

use super::chunks::{self, CookieAttrs, SetCookie};
use super::seal::{self, SealKeys};
use super::{Ending, Lease, Loaded, SessionData, SessionStore, StoreUnavailable};
use crate::clock::UnixTime;
use crate::config::{self, RedisSettings};
use std::sync::Arc;

/// The first byte of a stored body: bump it when the layout changes.
const BODY_VERSION: u8 = 2;

/// Sessions in Redis, behind a ticket cookie named `session.cookie_name`.
pub struct RedisStore {
    redis: Arc<Redis>,
    /// The `sub` and `sid` indexes are keyed by MACs: Redis never shows who is signed in.
    macs: Macs,
    keys: SealKeys,
    name: String,
    attrs: CookieAttrs,
}

impl RedisStore {
    /// Not connected yet: Redis is reached on the first request (and by the probe).
    pub fn new(
        cfg: &config::Session,
        settings: &RedisSettings,
    ) -> Result<RedisStore, seal::SealKeyError> {
        Ok(RedisStore {
            redis: Arc::new(Redis::new(settings.clone())),
            macs: Macs::from_secrets(&cfg.secrets),
            keys: SealKeys::from_config(cfg)?,
            name: cfg.cookie_name.clone(),
            attrs: CookieAttrs::from_config(cfg),
        })
    }

    /// The Redis key of a session's body.
    fn key(&self, ticket: &Ticket) -> String {
        format!("{}session:{}", self.redis.prefix(), ticket.id())
    }

    /// Stores `data` under `ticket` for the rest of its lifetime and returns the cookie that
    /// names it.
    async fn store(
        &self,
        data: &SessionData,
        ticket: &Ticket,
        present: &[String],
        now: UnixTime,
    ) -> Result<Vec<SetCookie>, StoreUnavailable> {
        let ttl = data.expires_at.saturating_sub(now.secs());
        if ttl == 0 {
            return Ok(self.clear_cookies(present));
        }
        let body = postcard::to_extend(data, vec![BODY_VERSION])
            .ok()
            .and_then(|plain| ticket.seal(&plain));
        let sealed = self.keys.seal(&self.name, &ticket.encode()).ok();
        let (Some(body), Some(sealed)) = (body, sealed) else {
            tracing::error!("cannot seal the session; clearing it");
            return Ok(self.clear_cookies(present));
        };
        let mut set = redis::cmd("SET");
        set.arg(self.key(ticket)).arg(body).arg("EX").arg(ttl);
        self.redis.run::<()>(&set).await.map_err(unavailable)?;
        let max_age = Duration::from_secs(ttl);
        Ok(
            chunks::set_cookies(&self.name, &sealed, &self.attrs, max_age, present)
                .unwrap_or_else(|_| self.clear_cookies(present)),
        )
    }

    fn clear_cookies(&self, present: &[String]) -> Vec<SetCookie> {
        chunks::clear_cookies(&self.name, &self.attrs, present).unwrap_or_default()
    }

    /// The ticket the cookies carry, if any opens.
    fn ticket(&self, cookie_headers: &[&[u8]]) -> (Option<Ticket>, Vec<String>, bool) {
        let read = match chunks::read_cookie(cookie_headers, &self.name) {
            Ok(read) => read,
            Err(ambiguous) => return (None, ambiguous.present, true),
        };
        let Some(value) = read.value else {
            let junk = !read.present.is_empty();
            return (None, read.present, junk);
        };
        let ticket = self
            .keys
            .open(&self.name, &value)
            .and_then(|plain| Ticket::decode(&plain));
        let junk = ticket.is_none();
        (ticket, read.present, junk)
    }

    /// The index keys of the sessions of a provider's `sub` or `sid`, one per session secret
    /// (the first is where new sessions are filed).
    fn index_keys(&self, kind: &str, value: &str) -> Vec<String> {
        self.macs
            .tags(kind, value)
            .into_iter()
            .map(|tag| format!("{}by-{kind}:{tag}", self.redis.prefix()))
            .collect()
    }

    /// Files a new session under its `sub` and `sid`, for back-channel logout and revocation;
    /// each index lives as long as its longest session.
    async fn index(
        &self,
        data: &SessionData,
        ticket: &Ticket,
        now: UnixTime,
    ) -> Result<(), StoreUnavailable> {
        let ttl = data.expires_at.saturating_sub(now.secs()).max(1);
        for (kind, value) in data.login_keys() {
            let Some(key) = self.index_keys(&kind, value).into_iter().next() else {
                continue;
            };
            self.redis
                .run::<()>(redis::cmd("SADD").arg(&key).arg(ticket.id()))
                .await
                .map_err(unavailable)?;
            // NX gives a new set its TTL, GT lengthens an older one's; never shortens it.
            for when in ["NX", "GT"] {
                self.redis
                    .run::<()>(redis::cmd("EXPIRE").arg(&key).arg(ttl).arg(when))
                    .await
                    .map_err(unavailable)?;
            }
        }
        Ok(())
    }

    /// The session `ticket` names, as Redis has it now.
    async fn read(&self, ticket: Ticket, present: Vec<String>, now: UnixTime) -> Loaded {
        let body: Option<Vec<u8>> = match self
            .redis
            .run(redis::cmd("GET").arg(self.key(&ticket)))
            .await
        {
            Ok(b) => b,
            Err(e) => {
                return Loaded {
                    present,
                    unavailable: Some(unavailable(e)),
                    ..Loaded::default()
                }
            }
        };
        let session = body
            .and_then(|b| ticket.open(&b))
            .and_then(|plain| match plain.split_first() {
                Some((&BODY_VERSION, rest)) => crate::session::layout::current(rest),
                Some((1, rest)) => crate::session::layout::with_login_ids(rest),
                _ => None,
            })
            .filter(|s| now.secs() < s.expires_at)
            .map(Arc::new);
        Loaded {
            unusable: session.is_none(),
            session,
            present,
            ticket: Some(ticket),
            unavailable: None,
        }
    }
}

/// `portcullis sessions revoke`: ends the sessions of `sub` or `sid` of the provider
/// `provider` (needed when there are several) in the Redis `config` names, for every
/// replica at once: how many, when the store can count them.
pub async fn revoke(
    config: &config::Config,
    provider: Option<&str>,
    sub: Option<&str>,
    sid: Option<&str>,
) -> Result<Option<usize>, String> {
    let (Some(oidc), Some(session)) = (&config.oidc, &config.session) else {
        return Err("there are no browser sessions without [oidc]".into());
    };
    let provider = match provider {
        Some(id) if oidc.get(id).is_some() => id,
        Some(id) => {
            let known: Vec<&str> = oidc.iter().map(|o| o.id.as_str()).collect();
            return Err(format!("`{id}` is not a provider (they are {known:?})"));
        }
        None if oidc.len() == 1 => oidc.first().id.as_str(),
        None => return Err("there are several providers: name one with --provider".into()),
    };
    let ending = Ending { provider, sub, sid };
    let now = crate::clock::Clock::now(&crate::clock::SystemClock);
    match (&session.storage, &session.revocation) {
        (config::SessionStorage::Redis(settings), _) => {
            let store = RedisStore::new(session, settings).map_err(|e| e.to_string())?;
            store
                .end_sessions(ending, now)
                .await
                .map(Some)
                .map_err(|e| e.to_string())
        }
        // The cookie store with a revocation list: recorded for every replica; how many
        // cookies that ends cannot be known.
        (config::SessionStorage::Cookie, Some(settings)) => {
            Revocations::new(settings, &session.secrets, session.lifetime)
                .end(ending, now)
                .await
                .map(|()| None)
                .map_err(|e| e.to_string())
        }
        (config::SessionStorage::Cookie, None) => Err(
            "sessions live in the cookie and there is no [session.revocation]: nothing to \
             revoke on a server; back-channel logout ends them in each process"
                .into(),
        ),
    }
}

fn unavailable(e: Unavailable) -> StoreUnavailable {
    StoreUnavailable(e.0)
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, cookie_headers: &[&[u8]], now: UnixTime) -> Loaded {
        let (ticket, present, junk) = self.ticket(cookie_headers);
        match ticket {
            Some(ticket) => self.read(ticket, present, now).await,
            None => Loaded {
                present,
                unusable: junk,
                ..Loaded::default()
            },
        }
    }

    /// A new session gets a new ticket; the one it replaces (a session before this login) is
    /// deleted, so a cookie captured before sign-in is worth nothing after it.
    async fn create(
        &self,
        data: &SessionData,
        replacing: &Loaded,
        now: UnixTime,
    ) -> Result<Vec<SetCookie>, StoreUnavailable> {
        let ticket = Ticket::fresh();
        let cookies = self.store(data, &ticket, &replacing.present, now).await?;
        self.index(data, &ticket, now).await?;
        if let Some(old) = &replacing.ticket {
            let _ = self
                .redis
                .run::<()>(redis::cmd("DEL").arg(self.key(old)))
                .await;
        }
        Ok(cookies)
    }

    /// The refreshed body replaces the old one under the same ticket: every request still
    /// carrying the cookie, on any replica, reads the new tokens.
    async fn persist(
        &self,
        data: &SessionData,
        loaded: &Loaded,
        now: UnixTime,
    ) -> Result<(), StoreUnavailable> {
        match &loaded.ticket {
            Some(ticket) => self
                .store(data, ticket, &loaded.present, now)
                .await
                .map(|_| ()),
            None => Ok(()),
        }
    }

    fn refreshed_cookies(&self, _: &SessionData, _: &Loaded, _: UnixTime) -> Vec<SetCookie> {
        Vec::new()
    }

    async fn lease(&self, loaded: &Loaded) -> Lease {
        let Some(ticket) = &loaded.ticket else {
            return Lease::Unshared;
        };
        let key = format!("{}refresh:{}", self.redis.prefix(), ticket.id());
        match lease::take(&self.redis, key).await {
            Ok(Some(held)) => Lease::Held(held),
            Ok(None) => Lease::Busy,
            Err(e) => Lease::Unavailable(unavailable(e)),
        }
    }

    /// Deletes every session the `sid` or `sub` index names, on every replica at once.
    async fn end_sessions(
        &self,
        ending: Ending<'_>,
        _now: UnixTime,
    ) -> Result<usize, StoreUnavailable> {
        let mut ended = 0;
        for (kind, value) in ending.keys() {
            for key in self.index_keys(&kind, value) {
                let ids: Vec<String> = self
                    .redis
                    .run(redis::cmd("SMEMBERS").arg(&key))
                    .await
                    .map_err(unavailable)?;
                for id in ids {
                    let session = format!("{}session:{id}", self.redis.prefix());
                    let deleted: usize = self
                        .redis
                        .run(redis::cmd("DEL").arg(&session))
                        .await
                        .map_err(unavailable)?;
                    ended += deleted;
                }
                self.redis
                    .run::<()>(redis::cmd("DEL").arg(&key))
                    .await
                    .map_err(unavailable)?;
            }
        }
        Ok(ended)
    }

    async fn first_use(&self, what: &str, ttl: Duration) -> Result<bool, StoreUnavailable> {
        let key = used::key(self.redis.prefix(), what);
        used::first_use(&self.redis, key, ttl)
            .await
            .map_err(unavailable)
    }

    async fn forget_use(&self, what: &str) {
        used::forget(&self.redis, used::key(self.redis.prefix(), what)).await;
    }

    async fn reload(&self, loaded: &Loaded, now: UnixTime) -> Loaded {
        let Some(ticket) = &loaded.ticket else {
            return loaded.clone();
        };
        self.read(ticket.clone(), loaded.present.clone(), now).await
    }

    /// Deletes the body (every copy of the cookie stops working, on every replica) and
    /// clears the cookie. When Redis cannot be reached the cookie is cleared all the same.
    async fn clear(&self, loaded: &Loaded, _now: UnixTime) -> Vec<SetCookie> {
        if let Some(ticket) = &loaded.ticket {
            if let Err(e) = self
                .redis
                .run::<()>(redis::cmd("DEL").arg(self.key(ticket)))
                .await
            {
                tracing::warn!(error = %e, "could not delete a session in redis");
            }
        }
        self.clear_cookies(&loaded.present)
    }

    fn is_ours(&self, cookie_name: &str) -> bool {
        chunks::is_session_cookie_name(cookie_name, &self.name)
    }

    fn health(&self) -> Option<String> {
        self.redis.last_error()
    }

    async fn probe(&self) {
        if let Err(e) = self.redis.ping().await {
            tracing::debug!(error = %e, redis = %self.redis.describe(), "redis probe failed");
        }
    }
}
