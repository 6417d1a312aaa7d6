//! One refresh per session across every replica: a lease in Redis
//! (`<key_prefix>refresh:<id>`), taken with `SET NX PX`, renewed while the refresh runs, given
//! back only by its holder (compare-and-delete). A holder that dies lets the lease run out
//! after [`LEASE`], and the next request takes it.

use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;

use super::conn::{Redis, Unavailable};

/// How long a lease lasts without renewal.
pub(crate) const LEASE: Duration = Duration::from_secs(5);
/// How often a held lease is renewed (well within [`LEASE`]).
const RENEW_EVERY: Duration = Duration::from_millis(1500);

/// Renews the lease only for its holder.
const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
/// Gives the lease back only for its holder.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('DEL', KEYS[1]) else return 0 end";

/// A held lease: renewed in the background until it is released or dropped.
pub struct Held {
    redis: Arc<Redis>,
    key: String,
    holder: String,
    renewing: tokio::task::JoinHandle<()>,
}

/// Tries to take the lease `key` for this process.
pub(crate) async fn take(redis: &Arc<Redis>, key: String) -> Result<Option<Held>, Unavailable> {
    let mut token = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut token);
    let holder: String = token.iter().map(|b| format!("{b:02x}")).collect();
    let mut set = redis::cmd("SET");
    set.arg(&key)
        .arg(&holder)
        .arg("NX")
        .arg("PX")
        .arg(LEASE.as_millis() as u64);
    let taken: Option<String> = redis.run(&set).await?;
    if taken.is_none() {
        return Ok(None);
    }
    let renewing = {
        let redis = redis.clone();
        let (key, holder) = (key.clone(), holder.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                let mut renew = redis::cmd("EVAL");
                renew
                    .arg(RENEW)
                    .arg(1)
                    .arg(&key)
                    .arg(&holder)
                    .arg(LEASE.as_millis() as u64);
                match redis.run::<i64>(&renew).await {
                    Ok(1) => {}
                    // Lost (expired while Redis was away) or unreachable: nothing to renew.
                    _ => return,
                }
            }
        })
    };
    Ok(Some(Held {
        redis: redis.clone(),
        key,
        holder,
        renewing,
    }))
}

impl Held {
    /// Gives the lease back (only if it is still ours).
    pub async fn release(self) {
        self.renewing.abort();
        let mut release = redis::cmd("EVAL");
        release.arg(RELEASE).arg(1).arg(&self.key).arg(&self.holder);
        let _ = self.redis.run::<i64>(&release).await;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renewing.abort();
    }
}
