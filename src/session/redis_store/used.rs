//! Tokens used once across every replica (a back-channel logout token's `jti`): a key per
//! token, set only if absent, for as long as the token could be replayed. The key holds the
//! token's SHA-256, so Redis holds no token material.

use std::time::Duration;

use super::conn::{Redis, Unavailable};

/// The key marking `what` used, under `prefix`.
pub(crate) fn key(prefix: &str, what: &str) -> String {
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(what.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{prefix}seen:{digest}")
}

/// Marks `key` used for `ttl`; whether it was unused before.
pub(crate) async fn first_use(
    redis: &Redis,
    key: String,
    ttl: Duration,
) -> Result<bool, Unavailable> {
    let mut set = redis::cmd("SET");
    set.arg(key)
        .arg(1)
        .arg("NX")
        .arg("EX")
        .arg(ttl.as_secs().max(1));
    let first: Option<String> = redis.run(&set).await?;
    Ok(first.is_some())
}

/// Unmarks `key` (the work it guarded was not done), best effort.
pub(crate) async fn forget(redis: &Redis, key: String) {
    let mut del = redis::cmd("DEL");
    del.arg(key);
    if let Err(e) = redis.run::<()>(&del).await {
        tracing::warn!(error = %e, "a used token could not be forgotten; its retry will be refused");
    }
}
