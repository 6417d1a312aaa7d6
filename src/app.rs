//! Shared state of a running portcullis and the authentication stage that every protected
//! request and the identity endpoints go through.

use crate::metrics::RefreshResult;
use std::sync::Arc;

use pingora::http::RequestHeader;

use crate::bearer::BearerAuth;
use crate::config::Config;
use crate::oidc::Provider;
use crate::session::refresh::{Outcome, Refresher};
use crate::session::{now, SessionData, SessionStore};

pub struct App {
    pub config: Arc<Config>,
    pub provider: Arc<Provider>,
    pub sessions: SessionStore,
    pub refresher: Refresher,
    pub bearer: BearerAuth,
}

/// What authentication concluded, with the cookies to set on the response either way
/// (a refreshed session, or the clearing of an unusable one).
pub struct Authentication {
    pub session: Option<Arc<SessionData>>,
    pub set_cookies: Vec<String>,
}

impl App {
    pub fn new(config: Arc<Config>) -> anyhow::Result<App> {
        let provider = Arc::new(Provider::new(config.clone())?);
        let bearer = BearerAuth::new(&config, provider.clone(), provider.http());
        Ok(App {
            provider,
            sessions: SessionStore::new(&config.session)?,
            refresher: Refresher::default(),
            bearer,
            config,
        })
    }

    /// Reads the session cookie; refreshes expired tokens (single-flight).
    pub async fn authenticate(&self, req: &RequestHeader) -> Authentication {
        let cookies = cookie_headers(req);
        let now = now();
        let loaded = self.sessions.load(&cookies, now);
        let Some(session) = loaded.session else {
            let set_cookies = if loaded.unusable {
                self.sessions.clear(&loaded.present)
            } else {
                Vec::new()
            };
            return Authentication {
                session: None,
                set_cookies,
            };
        };
        if !session.needs_refresh(now) {
            return Authentication {
                session: Some(Arc::new(session)),
                set_cookies: Vec::new(),
            };
        }
        let Some(refresh_token) = session.refresh_token.clone() else {
            // Nothing to refresh with: the session lives to its own expiry.
            return Authentication {
                session: Some(Arc::new(session)),
                set_cookies: Vec::new(),
            };
        };
        let provider = self.provider.clone();
        let old = session.clone();
        let refreshed = self
            .refresher
            .refresh(&refresh_token, async move {
                // Counted here, once per call to the provider, not per request that shares it.
                let metrics = crate::metrics::get();
                match provider.refresh_session(&old).await {
                    Ok(s) => {
                        metrics.refresh(RefreshResult::Refreshed);
                        Outcome::Refreshed(Arc::new(s))
                    }
                    Err(e) => {
                        tracing::info!(user = %old.identity.user, error = %e, "session refresh failed");
                        if e.is_provider_down() {
                            metrics.refresh(RefreshResult::ProviderDown);
                            Outcome::ProviderDown
                        } else {
                            metrics.refresh(RefreshResult::Rejected);
                            Outcome::Rejected
                        }
                    }
                }
            })
            .await;
        match refreshed {
            Outcome::Refreshed(new) => Authentication {
                set_cookies: self.sessions.save(&new, &loaded.present, now),
                session: Some(new),
            },
            Outcome::ProviderDown => Authentication {
                session: Some(Arc::new(session)),
                set_cookies: Vec::new(),
            },
            Outcome::Rejected => Authentication {
                session: None,
                set_cookies: self.sessions.clear(&loaded.present),
            },
        }
    }
}

/// Every `Cookie` header of the request (HTTP/2 may send several).
pub fn cookie_headers(req: &RequestHeader) -> Vec<&[u8]> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .map(|v| v.as_bytes())
        .collect()
}
