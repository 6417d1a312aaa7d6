//! Turning provider tokens into a session: at the end of a login and on each refresh.

use super::client::{self, Tokens};
use super::id_token::IdTokenError;
use super::{identity, Provider};
use crate::clock::UnixTime;
use crate::session::SessionData;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the identity provider is not available: {0}")]
    Unavailable(String),
    #[error("token request failed: {0}")]
    Token(#[from] client::TokenError),
    #[error("the provider returned no ID token")]
    NoIdToken,
    #[error("the ID token is not valid: {0}")]
    IdToken(#[from] IdTokenError),
    #[error("{0}")]
    Identity(String),
    #[error("the refreshed ID token names another user")]
    UserChanged,
    #[error("the session has no refresh token")]
    NoRefreshToken,
}

impl LoginError {
    /// The provider could not be asked (as opposed to: it said no).
    pub fn is_provider_down(&self) -> bool {
        // A token endpoint that answers with something other than an OAuth error (a 5xx page,
        // garbage) is broken, not refusing: the session should survive it.
        matches!(
            self,
            LoginError::Unavailable(_)
                | LoginError::Token(client::TokenError::Unreachable(_))
                | LoginError::Token(client::TokenError::BadResponse)
        )
    }
}

impl Provider {
    /// Exchanges the code of a finished login and builds a brand-new session from it.
    pub async fn complete_login(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        now: UnixTime,
    ) -> Result<SessionData, LoginError> {
        let meta = self
            .metadata()
            .ok_or_else(|| LoginError::Unavailable(self.not_ready_reason()))?;
        let tokens = self.observed(
            client::exchange_code(
                self.http(),
                &self.settings.oidc,
                &meta,
                code,
                pkce_verifier,
                now,
            )
            .await,
        )?;
        self.session_of(tokens, Some(nonce), now).await
    }

    /// A brand-new session from the tokens of a finished sign-in: the ID token verified (with
    /// the login's `nonce`; a device sign-in has none).
    pub(crate) async fn session_of(
        &self,
        tokens: Tokens,
        nonce: Option<&str>,
        now: UnixTime,
    ) -> Result<SessionData, LoginError> {
        let id_token = tokens.id_token.clone().ok_or(LoginError::NoIdToken)?;
        let claims = self.verify_id_token(&id_token, nonce, now).await?;
        let identity = self.vouched(
            identity::of_person(&claims, &self.settings.oidc.claims)
                .map_err(LoginError::Identity)?,
        );
        let ids = LoginIds::of(&claims);
        let created = now.secs();
        let expires_at = created + self.settings.session_lifetime.as_secs();
        Ok(self.session_from(identity, tokens, None, ids, now, expires_at))
    }

    /// Spends the session's refresh token for fresh tokens; the session keeps its identity
    /// (a refreshed ID token must name the same user) and its absolute expiry.
    pub async fn refresh_session(
        &self,
        old: &SessionData,
        now: UnixTime,
    ) -> Result<SessionData, LoginError> {
        let refresh_token = old
            .refresh_token
            .as_deref()
            .ok_or(LoginError::NoRefreshToken)?;
        let meta = self
            .metadata()
            .ok_or_else(|| LoginError::Unavailable(self.not_ready_reason()))?;
        let tokens = self.observed(
            client::refresh(self.http(), &self.settings.oidc, &meta, refresh_token, now).await,
        )?;
        let (identity, ids) = match &tokens.id_token {
            Some(t) => {
                let claims = self.verify_id_token(t, None, now).await?;
                let fresh = self.vouched(
                    identity::of_person(&claims, &self.settings.oidc.claims)
                        .map_err(LoginError::Identity)?,
                );
                if fresh.user != old.identity.user {
                    return Err(LoginError::UserChanged);
                }
                (fresh, LoginIds::of(&claims))
            }
            None => (self.vouched(old.identity.clone()), LoginIds::default()),
        };
        Ok(self.session_from(identity, tokens, Some(old), ids, now, old.expires_at))
    }

    /// `identity`, as this provider vouches for it: its id and issuer recorded, so that the
    /// same `sub` at another provider is another user.
    fn vouched(&self, identity: crate::session::Identity) -> crate::session::Identity {
        crate::session::Identity {
            provider: Some(self.id().to_string()),
            issuer: Some(self.settings.oidc.issuer.clone()),
            ..identity
        }
    }

    /// A session from the provider's tokens; `previous` is the session a refresh renews.
    fn session_from(
        &self,
        identity: crate::session::Identity,
        tokens: Tokens,
        previous: Option<&SessionData>,
        login: LoginIds,
        now: UnixTime,
        expires_at: u64,
    ) -> SessionData {
        // A refreshed session keeps the time its login happened.
        let created_at = previous.map_or(now.secs(), |p| p.created_at);
        let keep_id_token = self.settings.keep_id_token
            || self
                .metadata()
                .is_some_and(|m| m.end_session_endpoint.is_some());
        let tokens_expire_at = tokens
            .expires_in
            .map(|s| now.secs().saturating_add(s))
            .filter(|t| *t < expires_at);
        SessionData {
            identity,
            created_at,
            expires_at,
            tokens_expire_at,
            // Providers that do not rotate refresh tokens send none back: keep the old one.
            refresh_token: tokens
                .refresh_token
                .or_else(|| previous.and_then(|p| p.refresh_token.clone())),
            id_token: if keep_id_token {
                tokens
                    .id_token
                    .or_else(|| previous.and_then(|p| p.id_token.clone()))
            } else {
                None
            },
            access_token: self
                .settings
                .keep_access_token
                .then_some(tokens.access_token),
            sub: login.sub.or_else(|| previous.and_then(|p| p.sub.clone())),
            sid: login.sid.or_else(|| previous.and_then(|p| p.sid.clone())),
            id: match previous {
                Some(p) => p.id.clone(),
                None => Some(crate::session::Ticket::fresh().id()),
            },
        }
    }

    /// Why the provider cannot be used now, in words for a page or a log.
    pub fn not_ready_reason(&self) -> String {
        self.readiness().to_string()
    }

    /// What a token request made for one browser says about the provider: nothing that
    /// another user's sign-in depends on (see [`super::health`]). One that could not reach it
    /// has the probe look at once.
    pub(crate) fn observed<T>(
        &self,
        result: Result<T, client::TokenError>,
    ) -> Result<T, client::TokenError> {
        if let Err(client::TokenError::Unreachable(_)) = &result {
            self.health.suspect();
        }
        result
    }
}

/// The provider's names for one login, from its ID token: what back-channel logout names.
#[derive(Default)]
struct LoginIds {
    sub: Option<String>,
    sid: Option<String>,
}

impl LoginIds {
    fn of(claims: &serde_json::Map<String, serde_json::Value>) -> LoginIds {
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(serde_json::Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        LoginIds {
            sub: text("sub"),
            sid: text("sid"),
        }
    }
}
