//! An identity provider: its metadata and keys, kept fresh in the background, and the
//! operations of the authorization-code flow built on them. Providers are reached through
//! their set ([`providers::Providers`]); the browser's side of a login in progress is a sealed
//! cookie of its own ([`flow::LoginFlows`]).
//!
//! Start-up never blocks on the provider: the proxy listens at once, `/ready` answers 503 with
//! the reason until discovery and the JWKS are loaded, and loading retries with backoff. Once
//! loaded, keys are refreshed periodically; when the provider is unreachable the cached keys
//! keep working.

pub(crate) mod client;
pub(crate) mod device;
pub(crate) mod discovery;
pub mod flow;
pub(crate) mod health;
pub(crate) mod id_token;
pub(crate) mod identity;
pub(crate) mod login;
pub(crate) mod logout_token;
pub mod providers;

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use pingora::server::ShutdownWatch;
use serde_json::{Map, Value};

use crate::clock::UnixTime;
use crate::config::{Headers, Oidc, Session};
use crate::jwt::remote::{keep_fresh, JwksSource, RemoteKeys, BACKOFF_MAX};
use discovery::{FetchError, Metadata};
use id_token::{Expectations, IdTokenError};

/// Whether the provider is usable, with the reason when it is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Loaded and answering.
    Ready,
    /// Loaded once, but not answering now: what was cached keeps working, new logins wait.
    /// The failure it was last seen down with, when known.
    Degraded(Option<FetchError>),
    /// Never loaded: nothing that needs the provider works. The last attempt's failure, or
    /// `None` before the first attempt ended.
    NotReady(Option<FetchError>),
}

impl std::fmt::Display for Readiness {
    /// The reason, in the words `/ready` and sign-in errors use.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Readiness::Ready => f.write_str("ready"),
            Readiness::Degraded(Some(e)) | Readiness::NotReady(Some(e)) => write!(f, "{e}"),
            Readiness::Degraded(None) => f.write_str("unknown"),
            Readiness::NotReady(None) => f.write_str("not loaded yet"),
        }
    }
}

/// What a provider needs from the configuration: its own `[oidc]` (or `[[oidc.providers]]`)
/// table, and what the rest of the file says a session made from its tokens keeps.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// The provider's `[oidc]` table.
    pub oidc: Oidc,
    /// `session.lifetime`: a session ends then, whatever its tokens say.
    pub session_lifetime: Duration,
    /// `headers.pass_access_token`: the session keeps the access token.
    pub keep_access_token: bool,
    /// `headers.pass_id_token_as_bearer`: the session keeps the ID token even when the
    /// provider has no sign-out endpoint to send it to.
    pub keep_id_token: bool,
}

impl ProviderSettings {
    /// The settings of the provider `oidc`.
    pub fn new(oidc: &Oidc, session: &Session, headers: &Headers) -> ProviderSettings {
        ProviderSettings {
            oidc: oidc.clone(),
            session_lifetime: session.lifetime,
            // ALB's headers carry the access token, as ALB sends it.
            keep_access_token: headers.pass_access_token || headers.style.alb(),
            keep_id_token: headers.pass_id_token_as_bearer,
        }
    }
}

/// The probe's first retry after a failure; it doubles up to `oidc.health_check_interval`.
const PROBE_BACKOFF_START: Duration = Duration::from_millis(250);
/// The shortest time between two probes woken by requests that could not reach the provider.
const PROBE_MIN_GAP: Duration = Duration::from_secs(1);

/// One identity provider: its metadata and keys, kept loaded, and the login operations.
pub struct Provider {
    settings: ProviderSettings,
    http: reqwest::Client,
    metadata: RwLock<Option<Arc<Metadata>>>,
    keys: RemoteKeys,
    last_error: Mutex<Option<FetchError>>,
    health: health::Health,
}

impl Provider {
    /// A provider not loaded yet (see [`Provider::maintain`]).
    pub fn new(settings: ProviderSettings) -> reqwest::Result<Provider> {
        let http = discovery::provider_client(&settings.oidc)?;
        let keys = RemoteKeys::new(
            JwksSource::Discovery {
                issuer: settings.oidc.issuer.clone(),
            },
            http.clone(),
        );
        Ok(Provider {
            settings,
            http,
            metadata: RwLock::new(None),
            keys,
            last_error: Mutex::new(None),
            health: health::Health::default(),
        })
    }

    /// This provider's `[oidc]` table.
    pub fn oidc(&self) -> &Oidc {
        &self.settings.oidc
    }

    /// Its id: what sessions, routes and `/oauth2/start?provider=` name it by.
    pub fn id(&self) -> &str {
        &self.settings.oidc.id
    }

    /// The client every call to this provider goes through.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Whether the provider can be used now.
    pub fn readiness(&self) -> Readiness {
        if self.metadata().is_some() {
            if self.health.is_up() {
                return Readiness::Ready;
            }
            return Readiness::Degraded(self.health.reason());
        }
        Readiness::NotReady(self.last_error.lock().ok().and_then(|e| e.clone()))
    }

    /// Where outbound calls report whether the provider answered.
    pub fn health(&self) -> &health::Health {
        &self.health
    }

    /// The provider's metadata once loaded (keys loaded too).
    pub fn metadata(&self) -> Option<Arc<Metadata>> {
        self.keys.current()?;
        self.metadata.read().ok()?.clone()
    }

    /// The provider's key set, shared with bearer-token checks for this issuer.
    pub fn keys(&self) -> &RemoteKeys {
        &self.keys
    }

    fn set_error(&self, e: &FetchError) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(e.clone());
        }
    }

    /// Takes over what `previous` (the same issuer under the configuration before a reload)
    /// has loaded: its metadata and keys, so that the new configuration is ready at once.
    /// Fails when the provider's metadata does not offer the client authentication the new
    /// configuration asks for, as a first load would. Whether `previous` was this provider's
    /// predecessor (the same issuer), loaded or not.
    pub fn adopt(&self, previous: &Provider) -> Result<bool, String> {
        if previous.settings.oidc.issuer != self.settings.oidc.issuer {
            return Ok(false);
        }
        let Some(metadata) = previous.metadata() else {
            return Ok(true);
        };
        metadata.check_client_auth(&self.settings.oidc.client_auth)?;
        self.keys.adopt(&previous.keys);
        if let Ok(mut slot) = self.metadata.write() {
            *slot = Some(metadata);
        }
        Ok(true)
    }

    /// Discovery then JWKS. Returns how long the keys may be cached.
    pub async fn load(&self) -> Result<Duration, FetchError> {
        let metadata = discovery::fetch_metadata(&self.http, &self.settings.oidc.issuer).await?;
        metadata
            .check_client_auth(&self.settings.oidc.client_auth)
            .map_err(|reason| FetchError::Invalid {
                url: discovery::discovery_url(&self.settings.oidc.issuer),
                reason,
            })?;
        self.keys.set_uri(&metadata.jwks_uri);
        let every = self.keys.refresh().await?;
        if let Ok(mut slot) = self.metadata.write() {
            *slot = Some(Arc::new(metadata));
        }
        Ok(every)
    }

    /// Verifies an ID token from this provider. A `kid` we do not know triggers one
    /// rate-limited JWKS refetch (the provider may have rotated keys).
    pub async fn verify_id_token(
        &self,
        token: &str,
        nonce: Option<&str>,
        now: UnixTime,
    ) -> Result<Map<String, Value>, IdTokenError> {
        let expect = Expectations {
            issuer: &self.settings.oidc.issuer,
            client_id: &self.settings.oidc.client_id,
            nonce,
            leeway: self.settings.oidc.leeway,
            now,
        };
        let kid = crate::jwt::verify::header(token)
            .map_err(IdTokenError::Jwt)?
            .kid;
        let keys = self.keys.keys_for(kid.as_deref()).await.ok_or_else(|| {
            IdTokenError::Jwt(crate::jwt::verify::VerifyError::UnknownKey(
                kid.clone().unwrap_or_default(),
            ))
        })?;
        id_token::verify(token, &keys, &expect)
    }

    /// Loads with backoff until it succeeds, then refreshes the keys when their cache lifetime
    /// runs out, until shutdown. A failed refresh keeps the keys already loaded. Beside it,
    /// a probe fetches the discovery document every `oidc.health_check_interval`, so an outage
    /// shows in `/ready` and on the login page before a user meets it.
    pub async fn maintain(&self, shutdown: ShutdownWatch) {
        let keys = keep_fresh(shutdown.clone(), BACKOFF_MAX, || async {
            let loaded = self.metadata().is_some();
            let result = if loaded {
                self.keys.refresh().await
            } else {
                self.load().await
            };
            match &result {
                Ok(_) if !loaded => {
                    crate::metrics::get().provider_ready(self.id(), true);
                    tracing::info!(
                        provider = self.id(),
                        issuer = %self.settings.oidc.issuer,
                        "identity provider loaded"
                    )
                }
                Ok(_) => self.health.up(),
                Err(e) => {
                    tracing::warn!(provider = self.id(), error = %e, "identity provider not reachable");
                    self.set_error(e);
                    if loaded {
                        self.health.down(e);
                    }
                }
            }
            result
        });
        let every = self.settings.oidc.health_check_interval;
        let probe = async move {
            let mut shutdown = shutdown;
            let mut backoff = PROBE_BACKOFF_START;
            loop {
                let wait = if self.metadata().is_none() {
                    // Still loading: the loop above reports for itself.
                    every
                } else {
                    match discovery::fetch_metadata(&self.http, &self.settings.oidc.issuer).await {
                        Ok(_) => {
                            self.health.up();
                            backoff = PROBE_BACKOFF_START;
                            every
                        }
                        Err(e) => {
                            self.health.down(&e);
                            let wait = backoff.min(every);
                            backoff = backoff.saturating_mul(2);
                            wait
                        }
                    }
                };
                crate::metrics::get()
                    .provider_ready(self.id(), self.readiness() == Readiness::Ready);
                // At most one probe per PROBE_MIN_GAP, however often a request suspects.
                let earliest = tokio::time::Instant::now() + PROBE_MIN_GAP;
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.health.suspected() => tokio::time::sleep_until(earliest).await,
                    _ = shutdown.changed() => return,
                }
                if *shutdown.borrow() {
                    return;
                }
            }
        };
        tokio::join!(keys, probe);
    }
}
