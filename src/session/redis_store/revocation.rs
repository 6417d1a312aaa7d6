//! `[session.revocation]`: with the cookie store, the sessions ended anywhere (sign-out,
//! back-channel logout, `portcullis sessions revoke`) are recorded in Redis, and every replica
//! checks a session against them on every request. Entries live as long as a session can
//! (`session.lifetime`); their keys share one hash tag, so one `MGET` asks all of a session's
//! in a Cluster too.

use std::sync::Arc;
use std::time::Duration;

use super::conn::Redis;
use super::macs::Macs;
use crate::clock::UnixTime;
use crate::config::{RedisSettings, SessionSecret};
use crate::session::{SessionData, StoreUnavailable};

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
        for (kind, value, after_start) in [("sid", &s.sid, false), ("sub", &s.sub, true)] {
            if let Some(v) = value {
                for tag in self.macs.tags(kind, v) {
                    keys.push((self.key(&format!("{kind}:{tag}")), after_start));
                }
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
        sub: Option<&str>,
        sid: Option<&str>,
        now: UnixTime,
    ) -> Result<(), StoreUnavailable> {
        for (kind, value) in [("sub", sub), ("sid", sid)] {
            let Some(v) = value else { continue };
            // Under the first secret's MAC: the one every current session is checked with.
            if let Some(tag) = self.macs.tags(kind, v).into_iter().next() {
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

    /// Why the list cannot be asked, if it cannot.
    pub(crate) fn health(&self) -> Option<String> {
        self.redis.last_error()
    }

    pub(crate) async fn probe(&self) {
        let _ = self.redis.ping().await;
    }
}
