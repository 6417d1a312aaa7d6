//! The login identity provider: its metadata and keys, kept fresh in the background, and the
//! operations of the authorization-code flow built on them.
//!
//! Start-up never blocks on the provider: the proxy listens at once, `/ready` answers 503 with
//! the reason until discovery and the JWKS are loaded, and loading retries with backoff. Once
//! loaded, keys are refreshed periodically; when the provider is unreachable the cached keys
//! keep working.

pub mod client;
pub mod discovery;
pub mod flow;
pub mod id_token;
pub mod identity;
pub mod login;

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use pingora::server::ShutdownWatch;
use serde_json::{Map, Value};

use crate::config::Config;
use crate::jwt::keys::KeySet;
use discovery::{FetchError, Metadata};
use id_token::{Expectations, IdTokenError};

/// How often loaded keys are refetched even when nothing asks for a new one.
const JWKS_REFRESH_EVERY: Duration = Duration::from_secs(15 * 60);
/// At most one refetch for an unknown `kid` per this interval: a flood of made-up kids must not
/// become a flood of requests to the provider.
const UNKNOWN_KID_REFETCH_EVERY: Duration = Duration::from_secs(10);
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Whether the provider is usable, with the reason when it is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    NotReady(String),
}

struct Loaded {
    metadata: Arc<Metadata>,
    keys: Arc<KeySet>,
}

pub struct Provider {
    config: Arc<Config>,
    http: reqwest::Client,
    loaded: RwLock<Option<Loaded>>,
    last_error: Mutex<String>,
    last_kid_refetch: Mutex<Option<Instant>>,
}

impl Provider {
    pub fn new(config: Arc<Config>) -> reqwest::Result<Provider> {
        let http = discovery::http_client(config.oidc.http_timeout)?;
        Ok(Provider {
            config,
            http,
            loaded: RwLock::new(None),
            last_error: Mutex::new("identity provider metadata not loaded yet".into()),
            last_kid_refetch: Mutex::new(None),
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn readiness(&self) -> Readiness {
        if self.metadata().is_some() {
            return Readiness::Ready;
        }
        let reason = self
            .last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_else(|_| "unknown".into());
        Readiness::NotReady(reason)
    }

    /// The provider's metadata once loaded (keys loaded too).
    pub fn metadata(&self) -> Option<Arc<Metadata>> {
        let guard = self.loaded.read().ok()?;
        guard.as_ref().map(|l| l.metadata.clone())
    }

    fn keys(&self) -> Option<Arc<KeySet>> {
        let guard = self.loaded.read().ok()?;
        guard.as_ref().map(|l| l.keys.clone())
    }

    fn set_error(&self, e: &FetchError) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = e.to_string();
        }
    }

    /// Discovery then JWKS; on success both are replaced together.
    pub async fn load(&self) -> Result<(), FetchError> {
        let metadata = discovery::fetch_metadata(&self.http, &self.config.oidc.issuer).await?;
        let keys = self.fetch_keys(&metadata.jwks_uri).await?;
        if let Ok(mut slot) = self.loaded.write() {
            *slot = Some(Loaded {
                metadata: Arc::new(metadata),
                keys,
            });
        }
        Ok(())
    }

    async fn fetch_keys(&self, jwks_uri: &str) -> Result<Arc<KeySet>, FetchError> {
        let set = discovery::fetch_jwks(&self.http, jwks_uri).await?;
        let (keys, skipped) = KeySet::from_jwks(&set);
        if skipped > 0 {
            tracing::debug!(skipped, "ignored unusable keys in the provider's JWKS");
        }
        if keys.is_empty() {
            return Err(FetchError::Invalid {
                url: jwks_uri.to_string(),
                reason: "no usable signing key".into(),
            });
        }
        Ok(Arc::new(keys))
    }

    /// Refetches the JWKS, keeping the old keys when the provider cannot be reached.
    async fn refresh_keys(&self) -> Result<(), FetchError> {
        let Some(meta) = self.metadata() else {
            return self.load().await;
        };
        let keys = self.fetch_keys(&meta.jwks_uri).await?;
        if let Ok(mut slot) = self.loaded.write() {
            if let Some(loaded) = slot.as_mut() {
                loaded.keys = keys;
            }
        }
        Ok(())
    }

    /// Whether a refetch for an unknown `kid` is allowed now; records it when it is.
    fn may_refetch_for_unknown_kid(&self) -> bool {
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

    /// Verifies an ID token from this provider. A `kid` we do not know triggers one
    /// rate-limited JWKS refetch (the provider may have rotated keys).
    pub async fn verify_id_token(
        &self,
        token: &str,
        nonce: Option<&str>,
    ) -> Result<Map<String, Value>, IdTokenError> {
        let expect = Expectations {
            issuer: &self.config.oidc.issuer,
            client_id: &self.config.oidc.client_id,
            nonce,
            leeway: self.config.oidc.leeway,
        };
        let keys = self.keys().ok_or(IdTokenError::UnknownKey)?;
        match id_token::verify(token, &keys, &expect) {
            Err(IdTokenError::UnknownKey) => {
                let unknown = id_token::kid_of(token).is_some_and(|kid| !keys.has_kid(&kid));
                if unknown && self.may_refetch_for_unknown_kid() {
                    if let Err(e) = self.refresh_keys().await {
                        tracing::warn!(error = %e, "JWKS refetch for an unknown kid failed");
                    }
                    let keys = self.keys().ok_or(IdTokenError::UnknownKey)?;
                    return id_token::verify(token, &keys, &expect);
                }
                Err(IdTokenError::UnknownKey)
            }
            other => other,
        }
    }

    /// Loads with backoff until it succeeds, then refreshes the keys periodically, until
    /// shutdown.
    pub async fn maintain(&self, mut shutdown: ShutdownWatch) {
        let mut backoff = BACKOFF_START;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let loaded = self.metadata().is_some();
            let result = if loaded {
                self.refresh_keys().await
            } else {
                self.load().await
            };
            let wait = match result {
                Ok(()) => {
                    if !loaded {
                        tracing::info!(issuer = %self.config.oidc.issuer, "identity provider loaded");
                    }
                    backoff = BACKOFF_START;
                    JWKS_REFRESH_EVERY
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "identity provider not reachable");
                    self.set_error(&e);
                    let wait = if loaded {
                        JWKS_REFRESH_EVERY.min(backoff * 8)
                    } else {
                        backoff
                    };
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
