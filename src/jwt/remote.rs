//! An issuer's JWKS fetched over HTTP: cached, refreshed in the background, refetched at most
//! once per [`UNKNOWN_KID_REFETCH_EVERY`] when a token names a key we do not know (the issuer may
//! have rotated), and kept when the issuer cannot be reached.
//!
//! Shared by the login provider and by every bearer-token issuer that publishes its keys.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use pingora::server::ShutdownWatch;

use super::keys::KeySet;
use crate::oidc::discovery::{self, FetchError};

/// At most one refetch for an unknown `kid` per issuer in this interval: a flood of made-up
/// kids must not become a flood of requests to the issuer.
pub const UNKNOWN_KID_REFETCH_EVERY: Duration = Duration::from_secs(10);
/// Refresh interval when the issuer says nothing about caching (and bounds on what it says).
const DEFAULT_REFRESH: Duration = Duration::from_secs(15 * 60);
const MIN_REFRESH: Duration = Duration::from_secs(60);
const MAX_REFRESH: Duration = Duration::from_secs(24 * 3600);
const BACKOFF_START: Duration = Duration::from_millis(250);
/// The longest wait between two attempts to load keys that failed.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Where the key set's address comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A fixed `jwks_uri`.
    Url(String),
    /// The issuer's discovery document names it (its `issuer` must match exactly).
    Discovery {
        /// The issuer, exactly as configured.
        issuer: String,
    },
}

/// A key set published over HTTP: fetched, kept fresh, refetched (rate-limited) for an
/// unknown `kid`.
pub struct RemoteKeys {
    source: JwksSource,
    http: reqwest::Client,
    uri: RwLock<Option<String>>,
    keys: RwLock<Option<Loaded>>,
    last_kid_refetch: Mutex<Option<Instant>>,
    /// The last attempt's outcome: when it succeeded, or why it failed.
    last_fetch: Mutex<Option<Result<Instant, FetchError>>>,
}

#[derive(Clone)]
struct Loaded {
    keys: Arc<KeySet>,
    /// The document the keys came from: an unchanged refetch keeps the same `Arc`, so caches
    /// keyed on it (verified tokens) survive routine refreshes.
    raw: Vec<u8>,
}

impl RemoteKeys {
    /// Keys from `source`, fetched with `http`; none until the first fetch.
    pub fn new(source: JwksSource, http: reqwest::Client) -> RemoteKeys {
        let uri = match &source {
            JwksSource::Url(u) => Some(u.clone()),
            JwksSource::Discovery { .. } => None,
        };
        RemoteKeys {
            source,
            http,
            uri: RwLock::new(uri),
            keys: RwLock::new(None),
            last_kid_refetch: Mutex::new(None),
            last_fetch: Mutex::new(None),
        }
    }

    /// Takes over what `previous` (the same issuer's keys under the configuration before a
    /// reload) has fetched, so that a reload neither refetches nor forgets keys. Nothing is
    /// taken from a set with another source: its keys are not this one's. Whether `previous`
    /// was this set's predecessor (the same source).
    pub fn adopt(&self, previous: &RemoteKeys) -> bool {
        if self.source != previous.source {
            return false;
        }
        if let (Ok(from), Ok(mut to)) = (previous.uri.read(), self.uri.write()) {
            to.clone_from(&from);
        }
        if let (Ok(from), Ok(mut to)) = (previous.keys.read(), self.keys.write()) {
            to.clone_from(&from);
        }
        if let (Ok(from), Ok(mut to)) = (previous.last_fetch.lock(), self.last_fetch.lock()) {
            to.clone_from(&from);
        }
        if let (Ok(from), Ok(mut to)) = (
            previous.last_kid_refetch.lock(),
            self.last_kid_refetch.lock(),
        ) {
            *to = *from;
        }
        true
    }

    /// The keys as last fetched, if ever.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        let guard = self.keys.read().ok()?;
        guard.as_ref().map(|l| l.keys.clone())
    }

    /// Sets the address (the login provider learns it from its own discovery).
    pub fn set_uri(&self, uri: &str) {
        if let Ok(mut u) = self.uri.write() {
            *u = Some(uri.to_string());
        }
    }

    async fn resolve_uri(&self) -> Result<String, FetchError> {
        if let Some(u) = self.uri.read().ok().and_then(|u| u.clone()) {
            return Ok(u);
        }
        match &self.source {
            JwksSource::Url(u) => Ok(u.clone()),
            JwksSource::Discovery { issuer } => {
                let meta = discovery::fetch_metadata(&self.http, issuer).await?;
                self.set_uri(&meta.jwks_uri);
                Ok(meta.jwks_uri)
            }
        }
    }

    /// Why the last fetch failed, when it did.
    pub fn last_error(&self) -> Option<FetchError> {
        match self.last_fetch.lock().ok()?.as_ref()? {
            Ok(_) => None,
            Err(e) => Some(e.clone()),
        }
    }

    /// How long ago the key set was last fetched successfully (changed or not), for the
    /// reason an unknown `kid` is refused with.
    pub fn fetched_ago(&self) -> Option<Duration> {
        match self.last_fetch.lock().ok()?.as_ref()? {
            Ok(at) => Some(at.elapsed()),
            Err(_) => None,
        }
    }

    /// Fetches the key set now. Returns how long the issuer allows it to be cached.
    pub async fn refresh(&self) -> Result<Duration, FetchError> {
        let result = self.fetch().await;
        if let Ok(mut last) = self.last_fetch.lock() {
            *last = Some(match &result {
                Ok(_) => Ok(Instant::now()),
                Err(e) => Err(e.clone()),
            });
        }
        result
    }

    async fn fetch(&self) -> Result<Duration, FetchError> {
        let uri = self.resolve_uri().await?;
        let started = std::time::Instant::now();
        let fetched = discovery::fetch_raw(&self.http, &uri).await;
        discovery::record("jwks", started, &fetched);
        let (raw, max_age) = fetched?;
        let unchanged = self
            .keys
            .read()
            .ok()
            .is_some_and(|k| k.as_ref().is_some_and(|l| l.raw == raw));
        if unchanged {
            return Ok(refresh_interval(max_age));
        }
        let set = serde_json::from_slice(&raw).map_err(|e| FetchError::Invalid {
            url: uri.clone(),
            reason: e.to_string(),
        })?;
        let (keys, skipped) = KeySet::from_jwks(&set);
        if skipped > 0 {
            tracing::debug!(url = %uri, skipped, "ignored unusable keys in a JWKS");
        }
        if keys.is_empty() {
            // Taken as it is: an issuer that withdraws every key means it, and keeping the old
            // ones would defeat an emergency withdrawal.
            tracing::warn!(url = %uri, "the JWKS holds no usable signing key");
        }
        if let Ok(mut slot) = self.keys.write() {
            *slot = Some(Loaded {
                keys: Arc::new(keys),
                raw,
            });
        }
        Ok(refresh_interval(max_age))
    }

    /// The keys to verify a token naming `kid`: when the kid is unknown, one refetch (rate
    /// limited per issuer) in case the issuer rotated its keys. Cached keys are returned when the
    /// issuer cannot be reached.
    pub async fn keys_for(&self, kid: Option<&str>) -> Option<Arc<KeySet>> {
        let current = self.current();
        let unknown = match (&current, kid) {
            (None, _) => true,
            (Some(keys), Some(kid)) => !keys.has_kid(kid),
            (Some(_), None) => false,
        };
        if unknown && self.may_refetch() {
            crate::metrics::get().jwks_refetch();
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "JWKS refetch for an unknown key failed");
            }
            return self.current();
        }
        current
    }

    fn may_refetch(&self) -> bool {
        let Ok(mut last) = self.last_kid_refetch.lock() else {
            return false;
        };
        match *last {
            Some(at) if at.elapsed() < UNKNOWN_KID_REFETCH_EVERY => false,
            _ => {
                *last = Some(Instant::now());
                true
            }
        }
    }

    /// Loads with backoff until it succeeds, then refreshes before the cache lifetime the issuer
    /// announced runs out, until shutdown. Failures keep the keys already loaded.
    pub async fn maintain(&self, shutdown: ShutdownWatch, name: &str) {
        keep_fresh(shutdown, BACKOFF_MAX, || async {
            let result = self.refresh().await;
            if let Err(e) = &result {
                tracing::warn!(issuer = name, error = %e, "cannot load keys");
            }
            result
        })
        .await
    }
}

/// Runs `step` until shutdown: again after the interval it returns, or — when it fails — after
/// an exponential backoff (250 ms doubling to `max_backoff`).
pub async fn keep_fresh<F, Fut>(mut shutdown: ShutdownWatch, max_backoff: Duration, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Duration, FetchError>>,
{
    let mut backoff = BACKOFF_START;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let wait = match step().await {
            Ok(every) => {
                backoff = BACKOFF_START;
                every
            }
            Err(_) => {
                let wait = backoff;
                backoff = (backoff * 2).min(max_backoff);
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Refresh at 80 % of what the issuer allows, within sane bounds.
fn refresh_interval(max_age: Option<Duration>) -> Duration {
    max_age
        .map(|a| a.mul_f32(0.8))
        .unwrap_or(DEFAULT_REFRESH)
        .clamp(MIN_REFRESH, MAX_REFRESH)
}
