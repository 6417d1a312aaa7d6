//! A development OpenID provider: authorization code flow with PKCE, refresh tokens, userinfo,
//! RP-initiated logout, the client credentials grant for machine clients, ES256 keys that rotate
//! on demand.
//!
//! Why build one: `portcullis demo` must log a person in without any external service, and the
//! integration tests need an IdP whose behaviour they control — two-second token lifetimes,
//! strict refresh token rotation, key rollover, and counters that show what the proxy asked for.
//! It is strict where a real provider is strict (exact redirect URIs, PKCE S256 only, single-use
//! codes) so that a proxy passing against it is not relying on leniency.
//!
//! It is *not* a real IdP: passwords are in the configuration, there is no SSO session (every
//! authorization shows the form), and every page says so.

mod endpoints;
mod keys;
mod pages;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use endpoints::{CodeGrant, RefreshGrant};
use keys::KeyRing;

/// What the dev IdP accepts: one confidential web client, a fixed list of users, and machine
/// clients that get tokens without a user.
#[derive(Debug, Clone)]
pub struct DevIdpConfig {
    /// The web client: the only one allowed the authorization code and refresh token grants.
    pub client_id: String,
    /// That client's secret, checked at `/token` (Basic or in the body).
    pub client_secret: String,
    /// Redirect URIs allowed at `/authorize` and `/token`; compared exactly, character for
    /// character. Empty by default: the caller knows where its callback lives.
    pub redirect_uris: Vec<String>,
    /// Where `/logout` may send the user afterwards; exact match, anything else gets a
    /// "signed out" page instead.
    pub post_logout_redirect_uris: Vec<String>,
    /// Lifetime of access tokens (and `expires_in`). Tests shorten it to force refreshes.
    pub access_token_ttl: Duration,
    /// Lifetime of ID tokens.
    pub id_token_ttl: Duration,
    /// Lifetime of refresh tokens.
    pub refresh_token_ttl: Duration,
    /// When true, each refresh returns a new refresh token and the used one stops working at
    /// once, so a second use gets `invalid_grant`. When false, refresh responses carry no
    /// `refresh_token` and the original stays valid.
    pub rotate_refresh_tokens: bool,
    /// Who can sign in.
    pub users: Vec<DevUser>,
    /// Clients allowed the `client_credentials` grant (and only that grant). Their ids should
    /// differ from `client_id`: on a clash the web client is the one authenticated.
    pub service_clients: Vec<ServiceClient>,
}

/// A machine client: SRE scripts, CI jobs. It authenticates like the web client (HTTP Basic or
/// the body) and gets access tokens for itself, with no user and no ID or refresh token.
#[derive(Debug, Clone)]
pub struct ServiceClient {
    /// Its client id.
    pub client_id: String,
    /// Its client secret.
    pub client_secret: String,
    /// Scopes it may ask for; asking for none grants all of them.
    pub scopes: Vec<String>,
    /// The `aud` of its access tokens: the API resource they are meant for.
    pub audience: String,
}

/// A user of the dev IdP. `sub` is the username, so it is stable across restarts.
#[derive(Debug, Clone)]
pub struct DevUser {
    /// What the login form takes.
    pub username: String,
    /// Its password on the login form.
    pub password: String,
    /// The `email` claim.
    pub email: String,
    /// The `email_verified` claim.
    pub email_verified: bool,
    /// The `name` claim.
    pub name: String,
    /// The `groups` claim.
    pub groups: Vec<String>,
}

impl DevUser {
    /// A user whose password is the username and whose email is `username@example.com`.
    pub fn demo(username: &str, name: &str, groups: &[&str]) -> DevUser {
        DevUser {
            username: username.to_owned(),
            password: username.to_owned(),
            email: format!("{username}@example.com"),
            email_verified: true,
            name: name.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }
}

impl Default for DevIdpConfig {
    fn default() -> Self {
        DevIdpConfig {
            client_id: "portcullis-demo".to_owned(),
            client_secret: "demo-secret-not-for-production".to_owned(),
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            access_token_ttl: Duration::from_secs(300),
            id_token_ttl: Duration::from_secs(300),
            refresh_token_ttl: Duration::from_secs(8 * 3600),
            rotate_refresh_tokens: true,
            users: vec![
                DevUser::demo("alice", "Alice Example", &["sre", "dev"]),
                DevUser::demo("bob", "Bob Example", &["dev"]),
            ],
            service_clients: vec![ServiceClient {
                client_id: "ci-runner".to_owned(),
                client_secret: "ci-runner-secret-not-for-production".to_owned(),
                scopes: vec!["test_api_access".to_owned(), "reports:read".to_owned()],
                audience: "portcullis-api".to_owned(),
            }],
        }
    }
}

/// Counters of what the IdP was asked, for tests to assert on (e.g. "no refresh happened").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DevIdpStats {
    /// Successful `authorization_code` grants at `/token`.
    pub authorization_code_grants: u64,
    /// `authorization_code` grant requests that failed (any error, client auth included).
    pub authorization_code_grants_failed: u64,
    /// Successful `refresh_token` grants.
    pub refresh_token_grants: u64,
    /// `refresh_token` grant requests that failed.
    pub refresh_token_grants_failed: u64,
    /// Successful `client_credentials` grants.
    pub client_credentials_grants: u64,
    /// `client_credentials` grant requests that failed (any error, client auth included).
    pub client_credentials_grants_failed: u64,
    /// Calls to `/userinfo`, successful or not.
    pub userinfo_calls: u64,
    /// Fetches of `/jwks`.
    pub jwks_fetches: u64,
    /// Fetches of `/.well-known/openid-configuration`.
    pub discovery_fetches: u64,
    /// Successful logins at the form.
    pub logins: u64,
    /// Calls to `/logout`.
    pub logouts: u64,
}

#[derive(Default)]
struct Counters {
    authorization_code_grants: AtomicU64,
    authorization_code_grants_failed: AtomicU64,
    refresh_token_grants: AtomicU64,
    refresh_token_grants_failed: AtomicU64,
    client_credentials_grants: AtomicU64,
    client_credentials_grants_failed: AtomicU64,
    userinfo_calls: AtomicU64,
    jwks_fetches: AtomicU64,
    discovery_fetches: AtomicU64,
    logins: AtomicU64,
    logouts: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> DevIdpStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DevIdpStats {
            authorization_code_grants: get(&self.authorization_code_grants),
            authorization_code_grants_failed: get(&self.authorization_code_grants_failed),
            refresh_token_grants: get(&self.refresh_token_grants),
            refresh_token_grants_failed: get(&self.refresh_token_grants_failed),
            client_credentials_grants: get(&self.client_credentials_grants),
            client_credentials_grants_failed: get(&self.client_credentials_grants_failed),
            userinfo_calls: get(&self.userinfo_calls),
            jwks_fetches: get(&self.jwks_fetches),
            discovery_fetches: get(&self.discovery_fetches),
            logins: get(&self.logins),
            logouts: get(&self.logouts),
        }
    }
}

/// State shared by the handle and the serving task.
struct Shared {
    issuer: String,
    config: DevIdpConfig,
    keys: KeyRing,
    codes: Mutex<HashMap<String, CodeGrant>>,
    refresh_tokens: Mutex<HashMap<String, RefreshGrant>>,
    counters: Counters,
}

/// Locks a map, recovering from poisoning: every critical section is a single insert, remove or
/// scan, so a panic elsewhere cannot leave the data half-updated.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running dev IdP. Dropping it also stops serving; [`DevIdp::shutdown`] waits for that.
pub struct DevIdp {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl DevIdp {
    /// Serves on `listener`; the issuer is `http://{listener.local_addr()}` (no trailing slash).
    pub async fn start(listener: TcpListener, config: DevIdpConfig) -> std::io::Result<DevIdp> {
        let addr = listener.local_addr()?;
        Self::start_with_issuer(listener, config, format!("http://{addr}")).await
    }

    /// Like [`DevIdp::start`] with an explicit issuer, for when the listening address is not
    /// what browsers use (e.g. bound to `0.0.0.0`). The issuer must be an origin without a path:
    /// endpoints are served at the root.
    pub async fn start_with_issuer(
        listener: TcpListener,
        config: DevIdpConfig,
        issuer: String,
    ) -> std::io::Result<DevIdp> {
        crate::jwt::provider::install();
        let keys = KeyRing::new().map_err(std::io::Error::other)?;
        let issuer = issuer.trim_end_matches('/').to_owned();
        let shared = Arc::new(Shared {
            issuer,
            config,
            keys,
            codes: Mutex::new(HashMap::new()),
            refresh_tokens: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(crate::demo::http::serve(
            listener,
            Arc::clone(&shared),
            stopped,
        ));
        tracing::warn!(
            issuer = %shared.issuer,
            "development identity provider listening; never use it in production"
        );
        Ok(DevIdp { shared, stop, task })
    }

    /// The issuer URL, without a trailing slash.
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// A snapshot of the request counters.
    pub fn stats(&self) -> DevIdpStats {
        self.shared.counters.snapshot()
    }

    /// Publishes a new signing key and signs with it from now on; old keys stay in the JWKS
    /// until [`DevIdp::retire_old_keys`].
    pub fn rotate_signing_key(&self) {
        if let Err(err) = self.shared.keys.rotate() {
            tracing::error!(error = %err, "signing key rotation failed; keeping the current key");
        }
    }

    /// Removes every key but the current signing key from the JWKS. Tokens signed with the
    /// removed keys no longer verify, here (`/userinfo`) or at a relying party that refetches.
    pub fn retire_old_keys(&self) {
        self.shared.keys.retire_old();
    }

    /// Kills every refresh token, as if the user's sessions had ended at the IdP.
    pub fn revoke_refresh_tokens(&self) {
        lock(&self.shared.refresh_tokens).clear();
    }

    /// The claims the IdP would put in an ID token for `username` right now, for tests to
    /// tweak (`exp`, `aud`, `nonce`, ...) and then sign with [`DevIdp::sign_claims`].
    /// `None` if there is no such user.
    pub fn id_token_claims_for(
        &self,
        username: &str,
        nonce: Option<&str>,
    ) -> Option<serde_json::Value> {
        let user = self.shared.user(username)?;
        let now = endpoints::now();
        Some(
            self.shared
                .id_token_claims(user, now, now, "test-session", nonce),
        )
    }

    /// Signs `claims` exactly as given, with the current key (`alg` ES256, `typ` JWT, `kid`).
    ///
    /// # Panics
    ///
    /// If signing fails, which needs a broken system random source. This is a test helper, not
    /// something the serving path calls.
    #[allow(clippy::panic)] // a test helper that documents its panic, never on a request
    pub fn sign_claims(&self, claims: &serde_json::Value) -> String {
        match self.shared.keys.sign("JWT", claims) {
            Ok(token) => token,
            Err(err) => panic!("dev IdP could not sign test claims: {err}"),
        }
    }

    /// Signs `claims` with the current key under `header` exactly as built: its `kid`, `typ`
    /// and other fields are kept (no `kid` is added if it has none; see
    /// [`DevIdp::current_kid`]). Attack tests use it to forge tokens whose only defect is the one
    /// they name, signed by a key the relying party really trusts.
    ///
    /// The key is P-256, so `header.alg` must be ES256 — build the header with
    /// `Header::new(Algorithm::ES256)`, since `Header::default()` says HS256. Any other `alg` is
    /// an error rather than a token whose header lies about its signature.
    pub fn sign_with_header(
        &self,
        header: &jsonwebtoken::Header,
        claims: &serde_json::Value,
    ) -> Result<String, String> {
        self.shared
            .keys
            .sign_with_header(header, claims)
            .map_err(|err| err.to_string())
    }

    /// The `kid` of the key that signs now; it changes with [`DevIdp::rotate_signing_key`].
    pub fn current_kid(&self) -> String {
        // The ring is never empty (see `KeyRing::sign`); an empty kid would match no key.
        self.shared.keys.current_kid().unwrap_or_default()
    }

    /// The public JWK Set as `/jwks` serves it (without counting as a fetch).
    pub fn jwks(&self) -> serde_json::Value {
        self.shared.keys.jwks()
    }

    /// An access token for service client `client_id` with exactly `scopes`, carrying the same
    /// claims and header as one from the `client_credentials` grant. The scopes are *not*
    /// checked against the client's allowed ones, so a test can mint an over-scoped token that
    /// is otherwise genuine. `None` for an unknown client (or if signing fails).
    pub fn mint_access_token(&self, client_id: &str, scopes: &[&str]) -> Option<String> {
        let client = self.shared.service_client(client_id)?;
        let scope = scopes.join(" ");
        let claims = self
            .shared
            .service_access_token_claims(client, &scope, endpoints::now());
        match self.shared.keys.sign(endpoints::ACCESS_TOKEN_TYP, &claims) {
            Ok(token) => Some(token),
            Err(err) => {
                tracing::error!(error = %err, "dev IdP could not mint an access token");
                None
            }
        }
    }

    /// Stops accepting, asks open connections to finish, and waits for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
