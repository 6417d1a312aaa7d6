//! The device authorization grant (RFC 8628), run by portcullis with its own client for a
//! program that cannot take a browser redirect (`portcullis login`): the program shows the
//! person a code and a page at the provider; portcullis asks the provider once per poll of
//! the program whether the person has approved, and on approval makes a session like any
//! sign-in's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use oauth2::basic::BasicTokenType;
use oauth2::{DeviceAuthorizationUrl, Scope, StandardDeviceAuthorizationResponse};

use super::client::{self, TokenError, Tokens};
use super::login::LoginError;
use super::Provider;
use crate::clock::UnixTime;
use crate::session::SessionData;

/// What the provider answered to a device authorization request.
pub(crate) type Started = StandardDeviceAuthorizationResponse;

/// One look at whether the person has approved.
pub(crate) enum Poll {
    /// Approved: the session.
    Approved(Box<SessionData>),
    /// Not yet; ask again after the interval.
    Pending,
    /// Not yet; ask less often (`slow_down`).
    SlowDown,
    /// Over: denied, expired, or the provider refused the grant; its words.
    Refused(String),
}

impl Provider {
    /// Starts a device sign-in at the provider.
    pub(crate) async fn start_device_login(&self, now: UnixTime) -> Result<Started, LoginError> {
        let meta = self
            .metadata()
            .ok_or_else(|| LoginError::Unavailable(self.not_ready_reason()))?;
        let endpoint = meta.device_authorization_endpoint.clone().ok_or_else(|| {
            LoginError::Token(TokenError::Config(
                "the provider offers no device authorization endpoint".into(),
            ))
        })?;
        let url = DeviceAuthorizationUrl::new(endpoint)
            .map_err(|e| LoginError::Token(TokenError::Config(e.to_string())))?;
        let oidc = self.oidc();
        let client = client::client(oidc, &meta)?.set_device_authorization_url(url);
        let mut request = client
            .exchange_device_code()
            .add_scopes(oidc.scopes.iter().cloned().map(Scope::new));
        for (name, value) in client::authentication(oidc, &meta, now)? {
            request = request.add_extra_param(name, value);
        }
        let started: Started = self.observed(
            request
                .request_async(self.http())
                .await
                .map_err(client::token_error),
        )?;
        Ok(started)
    }

    /// Asks the provider once whether the sign-in `started` was approved.
    pub(crate) async fn poll_device_login(
        &self,
        started: &Started,
        now: UnixTime,
    ) -> Result<Poll, LoginError> {
        let meta = self
            .metadata()
            .ok_or_else(|| LoginError::Unavailable(self.not_ready_reason()))?;
        let oidc = self.oidc();
        let client = client::client(oidc, &meta)?;
        let mut request = client.exchange_device_access_token(started);
        for (name, value) in client::authentication(oidc, &meta, now)? {
            request = request.add_extra_param(name, value);
        }
        // oauth2 polls in a loop, sleeping between tries: here the first sleep ends the
        // look (the program polls), and the interval it asks for says which answer it was.
        let asked_to_wait: Arc<Mutex<Option<Duration>>> = Arc::default();
        let slept = asked_to_wait.clone();
        let sleep = move |interval: Duration| {
            if let Ok(mut slot) = slept.lock() {
                *slot = Some(interval);
            }
            std::future::pending::<()>()
        };
        let bound = oidc.http_timeout + Duration::from_secs(1);
        let attempt = request.request_async(self.http(), sleep, None);
        let result = match tokio::time::timeout(bound, attempt).await {
            Ok(done) => done,
            Err(_) => {
                let waited = asked_to_wait.lock().ok().and_then(|i| *i);
                return match waited {
                    Some(i) if i > started.interval() => Ok(Poll::SlowDown),
                    Some(_) => Ok(Poll::Pending),
                    // No answer to sleep on: the provider never answered.
                    None => Err(LoginError::Token(TokenError::Unreachable(
                        "the token endpoint did not answer in time".into(),
                    ))),
                };
            }
        };
        let response: oauth2::StandardTokenResponse<client::IdTokenField, BasicTokenType> =
            match result {
                Ok(r) => r,
                Err(oauth2::RequestTokenError::ServerResponse(e)) => {
                    return Ok(Poll::Refused(e.error().to_string()))
                }
                Err(oauth2::RequestTokenError::Request(e)) => {
                    self.health().suspect();
                    return Err(LoginError::Token(TokenError::Unreachable(e.to_string())));
                }
                Err(_) => return Err(LoginError::Token(TokenError::BadResponse)),
            };
        let tokens: Tokens = client::tokens(response);
        let session = self.session_of(tokens, None, now).await?;
        Ok(Poll::Approved(Box::new(session)))
    }
}

/// The device authorization response, for sealing into the code the program polls with.
pub(crate) fn encode(started: &Started) -> Result<String, serde_json::Error> {
    serde_json::to_string(started)
}

/// The response again, from what [`encode`] wrote.
pub(crate) fn decode(text: &str) -> Option<Started> {
    serde_json::from_str::<Started>(text).ok()
}
