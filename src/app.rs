//! Shared state of a running portcullis and the authentication stage that every protected
//! request and the identity endpoints go through.

use crate::metrics::RefreshResult;
use std::sync::Arc;

use pingora::http::RequestHeader;

use crate::bearer::BearerAuth;
use crate::clock::SharedClock;
use crate::clock::UnixTime;
use crate::config::Config;
use crate::config::SessionStorage;
use crate::oidc::flow::LoginFlows;
use crate::oidc::providers::Providers;
use crate::session::chunks::SetCookie;
use crate::session::refresh::{Outcome, Refresher};
use crate::session::{
    CookieStore, EndedHere, Lease, Loaded, RedisStore, SessionData, SessionStore, StoreUnavailable,
};
use std::time::Duration;

/// The shared state of a running portcullis: its configuration and every stage a request
/// goes through, built once at start.
pub struct App {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Browser sign-in and its sessions; `None` for a resource server (no `[oidc]`).
    pub login: Option<Login>,
    /// Verifies bearer tokens, remembering the verified ones.
    pub bearer: BearerAuth,
    /// The time every expiry is compared with.
    pub clock: SharedClock,
    /// DPoP proofs, when `[bearer.dpop]` accepts them.
    pub(crate) dpop: Option<crate::dpop::Dpop>,
    /// ALB's signed headers and the identity assertion, when asked for.
    pub(crate) signed_identity: Option<crate::signed_identity::SignedIdentity>,
    /// RFC 9728 metadata, when any bearer token could be accepted.
    pub(crate) resource_metadata: Option<crate::resource_metadata::ResourceMetadata>,
    /// What a reload hands to the next `App`.
    kept: Kept,
}

/// What this process remembers that no configuration describes: refreshes in flight, DPoP
/// proofs already used, sessions ended and logout tokens used here. Each `App` built by a
/// reload gets its predecessor's, so that changing the configuration forgets none of it: a
/// refresh token is still spent once, a proof still used once, an ended session stays ended.
#[derive(Clone)]
struct Kept {
    refresher: Arc<Refresher>,
    dpop_replays: Arc<crate::dpop::Replays>,
    ended_here: Arc<EndedHere>,
}

impl Kept {
    fn new(config: &Config) -> Kept {
        Kept {
            refresher: Arc::default(),
            dpop_replays: Arc::new(crate::dpop::Replays::new(
                config.bearer.dpop_replay_cache_entries(),
            )),
            ended_here: Arc::default(),
        }
    }
}

/// The `App` new requests get. A reload replaces it; a request keeps the one it started
/// with to its end, so requests in flight finish on the configuration they began on.
pub struct Live(arc_swap::ArcSwap<App>);

impl Live {
    /// `app` serves from now on.
    pub fn new(app: Arc<App>) -> Live {
        Live(arc_swap::ArcSwap::new(app))
    }

    /// The `App` now serving, for one request (or one reload) to hold.
    pub fn app(&self) -> Arc<App> {
        self.0.load_full()
    }

    /// Makes `app` the one new requests get.
    pub(crate) fn set(&self, app: Arc<App>) {
        self.0.store(app);
    }
}

/// Everything browser sign-in needs: present exactly when `[oidc]` is configured, so no
/// other stage can reach a provider, a session store or a login flow that does not exist.
pub struct Login {
    /// The identity providers browsers sign in with.
    pub providers: Providers,
    /// Where sessions live between requests.
    pub sessions: Arc<dyn SessionStore>,
    /// Logins in progress.
    pub flows: LoginFlows,
    /// Refreshes expired sessions, one call to the provider per session at a time.
    pub refresher: Arc<Refresher>,
    /// `session.same_site`, which decides how the callback hands the session over.
    pub same_site: cookie::SameSite,
}

impl Login {
    /// Browser sign-in for `[oidc]` and `[session]`, `None` without them. After a reload
    /// (`previous`), the providers take over what the old ones loaded, and an unchanged
    /// `[session]` keeps its store (and with it the connections to Redis).
    fn new(config: &Config, kept: &Kept, previous: Option<&App>) -> anyhow::Result<Option<Login>> {
        let (Some(oidc), Some(session)) = (&config.oidc, &config.session) else {
            return Ok(None);
        };
        let before = previous.and_then(|app| Some((app.login.as_ref()?, &app.config.session)));
        let sessions: Arc<dyn SessionStore> = match before {
            Some((login, Some(s))) if s == session => login.sessions.clone(),
            _ => match &session.storage {
                SessionStorage::Cookie => {
                    Arc::new(CookieStore::remembering(session, kept.ended_here.clone())?)
                }
                SessionStorage::Redis(redis) => Arc::new(RedisStore::new(session, redis)?),
            },
        };
        Ok(Some(Login {
            providers: Providers::new(
                oidc,
                session,
                &config.headers,
                before.map(|(l, _)| &l.providers),
            )?,
            sessions,
            flows: LoginFlows::new(session)?,
            refresher: kept.refresher.clone(),
            same_site: session.same_site,
        }))
    }

    /// Whether `path` is where a provider sends browsers back (several providers may share
    /// one path: the login flow says whose callback it is).
    pub fn is_callback(&self, path: &str) -> bool {
        self.providers
            .iter()
            .any(|p| p.oidc().callback_path == path)
    }
}

/// What authentication concluded, with the cookies to set on the response either way
/// (a refreshed session, or the clearing of an unusable one).
#[derive(Default)]
pub struct Authentication {
    /// The usable session, if there is one.
    pub session: Option<Arc<SessionData>>,
    /// What the response must set (a refreshed or a cleared session).
    pub set_cookies: Vec<SetCookie>,
    /// The session store could not be asked: a request that carried a session cookie is
    /// neither signed in nor out (a 503, never a login redirect).
    pub unavailable: Option<StoreUnavailable>,
}

impl Authentication {
    fn of(session: Arc<SessionData>) -> Authentication {
        Authentication {
            session: Some(session),
            ..Authentication::default()
        }
    }
}

impl App {
    /// Builds every stage for `config`, on the system clock.
    pub fn new(config: Arc<Config>) -> anyhow::Result<App> {
        App::with_clock(config, crate::clock::system())
    }

    /// With another clock than the system's: for tests that need time to pass.
    pub fn with_clock(config: Arc<Config>, clock: SharedClock) -> anyhow::Result<App> {
        let kept = Kept::new(&config);
        App::build(config, clock, kept, None)
    }

    /// The `App` for a reloaded configuration: it keeps what this one remembers ([`Kept`])
    /// and takes over what this one has loaded where the configuration still names it (a
    /// provider's metadata and keys, an issuer's key set, an unchanged session store). What
    /// is new is loaded before it is returned: a provider or key set that cannot be reached
    /// is an error, and the configuration before stays in use.
    pub async fn reloaded(&self, config: Arc<Config>) -> anyhow::Result<App> {
        let next = App::build(config, self.clock.clone(), self.kept.clone(), Some(self))?;
        if let Some(login) = &next.login {
            login.providers.load_new().await?;
        }
        next.bearer.load_new().await.map_err(anyhow::Error::msg)?;
        Ok(next)
    }

    fn build(
        config: Arc<Config>,
        clock: SharedClock,
        kept: Kept,
        previous: Option<&App>,
    ) -> anyhow::Result<App> {
        let login = Login::new(&config, &kept, previous)?;
        let bearer = BearerAuth::new(
            &config,
            login
                .as_ref()
                .map(|l| l.providers.iter().cloned().collect())
                .unwrap_or_default(),
            clock.clone(),
            previous.map(|p| &p.bearer),
        )?;
        let dpop = config.bearer.dpop.as_ref().map(|d| {
            crate::dpop::Dpop::new(
                d.algorithms.clone(),
                d.proof_lifetime,
                config.bearer.leeway,
                kept.dpop_replays.clone(),
                // Nonces every replica accepts: derived from the first session secret.
                d.use_dpop_nonce
                    .then(|| config.session.as_ref())
                    .flatten()
                    .and_then(|s| s.secrets.first())
                    .map(|s| s.0.as_slice()),
            )
        });
        Ok(App {
            signed_identity: crate::signed_identity::SignedIdentity::of(&config),
            resource_metadata: crate::resource_metadata::ResourceMetadata::of(&config),
            dpop,
            kept,
            login,
            bearer,
            clock,
            config,
        })
    }

    /// Whether a cookie of this name is portcullis' own (a session's or a login flow's): it
    /// never reaches the upstream.
    pub fn owns_cookie(&self, name: &str) -> bool {
        self.login
            .as_ref()
            .is_some_and(|l| l.sessions.is_ours(name) || l.flows.is_ours(name))
    }

    /// Whether `path` is where a provider sends browsers back, when there is browser
    /// sign-in.
    pub fn is_callback(&self, path: &str) -> bool {
        self.login.as_ref().is_some_and(|l| l.is_callback(path))
    }

    /// The id of the provider `session` was signed in with (`None`: none configured now).
    pub(crate) fn session_provider(&self, session: &SessionData) -> Option<&str> {
        let login = self.login.as_ref()?;
        login
            .providers
            .of_session(&session.identity)
            .map(|p| p.id())
    }

    /// How ready this portcullis is to serve: its login providers' state, or without browser
    /// sign-in whether every token issuer's keys are loaded.
    pub fn readiness(&self) -> crate::oidc::Readiness {
        match &self.login {
            Some(login) => login.providers.readiness(),
            None => self.bearer.readiness(),
        }
    }

    /// Reads the session cookie; refreshes expired tokens (single-flight). Without browser
    /// sign-in there are no sessions.
    pub async fn authenticate(&self, req: &RequestHeader) -> Authentication {
        let Some(login) = &self.login else {
            return Authentication::default();
        };
        login.authenticate(req, self.clock.now()).await
    }
}

impl Login {
    async fn authenticate(
        &self,
        req: &RequestHeader,
        now: crate::clock::UnixTime,
    ) -> Authentication {
        let cookies = cookie_headers(req);
        let mut loaded = self.sessions.load(&cookies, now).await;
        if let Some(down) = loaded.unavailable.take() {
            return Authentication {
                unavailable: Some(down),
                ..Authentication::default()
            };
        }
        let Some(session) = loaded.session.take() else {
            let set_cookies = if loaded.unusable {
                self.sessions.clear(&loaded, now).await
            } else {
                Vec::new()
            };
            return Authentication {
                set_cookies,
                ..Authentication::default()
            };
        };
        // A session of a provider no longer configured (or whose id now names another
        // issuer) vouches for no one.
        let Some(provider) = self.providers.of_session(&session.identity).cloned() else {
            tracing::info!(
                provider = session
                    .identity
                    .provider
                    .as_deref()
                    .unwrap_or("(none recorded)"),
                "session of a provider that is not configured: signed out"
            );
            return Authentication {
                set_cookies: self.sessions.clear(&loaded, now).await,
                ..Authentication::default()
            };
        };
        if !session.needs_refresh(now) {
            return Authentication::of(session);
        }
        let Some(refresh_token) = session.refresh_token.clone() else {
            // Nothing to refresh with: the session lives to its own expiry.
            return Authentication::of(session);
        };
        let refresh = Refresh {
            provider,
            sessions: self.sessions.clone(),
            loaded: Loaded {
                session: Some(session.clone()),
                ..loaded.clone()
            },
            now,
        };
        // Boxed: the provider call's state is large, and inline it would be part of every
        // request's future, allocated and copied on every request (see `proxy.rs`).
        match self
            .refresher
            .refresh(&refresh_token, Box::pin(refresh.run()))
            .await
        {
            Outcome::Refreshed(new) => Authentication {
                set_cookies: self.sessions.refreshed_cookies(&new, &loaded, now),
                session: Some(new),
                unavailable: None,
            },
            Outcome::ProviderDown => Authentication::of(session),
            Outcome::Rejected => Authentication {
                set_cookies: self.sessions.clear(&loaded, now).await,
                ..Authentication::default()
            },
        }
    }
}

/// One refresh of one session, run in a task of its own (see [`Refresher`]): with a store
/// the replicas share, under the session's lease, so that only one replica asks the provider
/// and the others read its result from the store.
struct Refresh {
    provider: Arc<crate::oidc::Provider>,
    sessions: Arc<dyn SessionStore>,
    /// The session as the request read it (`session` is the one that needs refreshing).
    loaded: Loaded,
    now: UnixTime,
}

/// How long a request waits for another replica's refresh of its session: the provider call
/// is bounded by `oidc.http_timeout` (at most 60 s), a lease by its renewals.
const WAIT_FOR_OTHER_REPLICA: Duration = Duration::from_secs(65);
/// How soon a waiting replica first looks for the other replica's result; it waits twice as
/// long each time after, up to [`POLL_OTHER_REPLICA_MAX`]. Only one task per session and
/// replica polls (the others share its flight), so polling often costs Redis little, and a
/// refresh at a nearby provider takes about 10 ms (the refresh storm of `bench/run.sh`).
const POLL_OTHER_REPLICA: Duration = Duration::from_millis(5);
/// The longest wait between two looks at the other replica's result.
const POLL_OTHER_REPLICA_MAX: Duration = Duration::from_millis(100);

impl Refresh {
    async fn run(self) -> Outcome {
        let deadline = tokio::time::Instant::now() + WAIT_FOR_OTHER_REPLICA;
        let mut poll = POLL_OTHER_REPLICA;
        loop {
            match self.sessions.lease(&self.loaded).await {
                Lease::Unshared => return self.call_provider().await,
                Lease::Held(lease) => {
                    // Another replica may have refreshed it just before the lease was free.
                    let outcome = match self.already_refreshed().await {
                        Some(done) => done,
                        None => self.call_provider().await,
                    };
                    lease.release().await;
                    return outcome;
                }
                Lease::Busy => {}
                Lease::Unavailable(e) => {
                    tracing::warn!(error = %e, "no refresh while the session store is unavailable");
                    return Outcome::ProviderDown;
                }
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(POLL_OTHER_REPLICA_MAX);
            if let Some(done) = self.already_refreshed().await {
                return done;
            }
            if tokio::time::Instant::now() >= deadline {
                return Outcome::ProviderDown;
            }
        }
    }

    /// What the store says now: refreshed by another replica, signed out, or still due.
    async fn already_refreshed(&self) -> Option<Outcome> {
        let now = self.now;
        let again = self.sessions.reload(&self.loaded, now).await;
        if again.unavailable.is_some() {
            return None;
        }
        match again.session {
            None => Some(Outcome::Rejected),
            Some(s) if !s.needs_refresh(now) => Some(Outcome::Refreshed(s)),
            Some(_) => None,
        }
    }

    /// Spends the refresh token at the provider and keeps the result in the store.
    async fn call_provider(&self) -> Outcome {
        let Some(old) = self.loaded.session.as_ref() else {
            return Outcome::Rejected;
        };
        // Counted here, once per call to the provider, not per request that shares it.
        let metrics = crate::metrics::get();
        match self.provider.refresh_session(old, self.now).await {
            Ok(s) => {
                metrics.refresh(self.provider.id(), RefreshResult::Refreshed);
                if let Err(e) = self.sessions.persist(&s, &self.loaded, self.now).await {
                    tracing::warn!(error = %e, "a refreshed session could not be kept");
                }
                Outcome::Refreshed(Arc::new(s))
            }
            Err(e) => {
                tracing::info!(user = old.identity.user(), error = %e, "session refresh failed");
                if e.is_provider_down() {
                    metrics.refresh(self.provider.id(), RefreshResult::ProviderDown);
                    Outcome::ProviderDown
                } else {
                    metrics.refresh(self.provider.id(), RefreshResult::Rejected);
                    Outcome::Rejected
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: &str = "\"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY\"";
    const SECOND: &str = "\"bmV3LXNlY3JldC1uZXctc2VjcmV0LW5ldy1zZWNyZXQtISE\"";

    /// The `Cookie` header value of a new session `data` in `login`'s store.
    async fn signed_in(login: &Login, data: &SessionData, now: UnixTime) -> String {
        let set = login
            .sessions
            .create(data, &Loaded::default(), now)
            .await
            .unwrap();
        let cookie = set[0].clone().into_string();
        cookie.split(';').next().unwrap().to_string()
    }

    /// A rotation of the session secrets builds a new session store; what the old one ended
    /// must stay ended, a used logout token stay used, and refreshes in flight stay shared.
    #[tokio::test]
    async fn a_reload_forgets_no_ended_session_no_used_logout_token_and_no_refresh() {
        let app = App::new(Arc::new(crate::config::for_tests(FIRST))).unwrap();
        let now = app.clock.now();
        let before = app.login.as_ref().unwrap();
        let data = SessionData {
            identity: crate::session::Identity {
                user: Some("alice".into()),
                email: None,
                groups: Vec::new(),
                preferred_username: None,
                provider: None,
                issuer: None,
            },
            created_at: now.secs() - 10,
            expires_at: now.secs() + 3600,
            tokens_expire_at: None,
            refresh_token: None,
            id_token: None,
            access_token: None,
            sub: Some("alice-sub".into()),
            sid: None,
            id: Some("session-1".into()),
        };
        let cookie = signed_in(before, &data, now).await;
        before
            .sessions
            .end_sessions(
                crate::session::Ending {
                    provider: "default",
                    sub: Some("alice-sub"),
                    sid: None,
                },
                now,
            )
            .await
            .unwrap();
        let ttl = Duration::from_secs(60);
        assert!(before.sessions.first_use("jti-1", ttl).await.unwrap());

        let rotated = crate::config::for_tests(&format!("{SECOND}, {FIRST}"));
        let next = App::build(
            Arc::new(rotated),
            app.clock.clone(),
            app.kept.clone(),
            Some(&app),
        )
        .unwrap();
        let after = next.login.as_ref().unwrap();
        assert!(
            !Arc::ptr_eq(&before.sessions, &after.sessions),
            "a new store"
        );
        let loaded = after.sessions.load(&[cookie.as_bytes()], now).await;
        assert!(loaded.session.is_none(), "the ended session stays ended");
        assert!(!after.sessions.first_use("jti-1", ttl).await.unwrap());
        assert!(Arc::ptr_eq(&before.refresher, &after.refresher));

        // Control: a session that was not ended opens under the rotated secrets.
        let other = SessionData {
            sub: Some("bob-sub".into()),
            ..data
        };
        let cookie = signed_in(before, &other, now).await;
        let loaded = after.sessions.load(&[cookie.as_bytes()], now).await;
        assert!(loaded.session.is_some());
    }

    #[test]
    fn the_proxy_keeps_its_own_cookies_from_the_upstream() {
        let config = crate::config::for_tests("\"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY\"");
        let app = App::new(Arc::new(config)).unwrap();
        assert!(app.owns_cookie("_portcullis"));
        assert!(app.owns_cookie("_portcullis_0"));
        assert!(app.owns_cookie("_portcullis_flow_abc"));
        assert!(!app.owns_cookie("_portcullis_pref"));
        assert!(!app.owns_cookie("session"));
    }
}
