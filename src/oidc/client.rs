//! The OAuth 2.0 side of the login: authorization URL with PKCE and nonce, code exchange and
//! refresh, through the `oauth2` crate. The ID token rides along as an extra token field.

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken,
    EndpointNotSet, EndpointSet, ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardRevocableToken,
    StandardTokenResponse, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use std::time::Instant;

use super::discovery::Metadata;
use crate::config::{ClientAuthMethod, Oidc};

#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct IdTokenField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}
impl ExtraTokenFields for IdTokenField {}

pub(crate) type OidcTokenResponse = StandardTokenResponse<IdTokenField, BasicTokenType>;

type OidcClient = Client<
    BasicErrorResponse,
    OidcTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// Tokens from the token endpoint, reduced to what portcullis uses.
pub(crate) struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub expires_in: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The provider said no (`invalid_grant` and friends); its words are safe to log.
    #[error("the identity provider refused: {0}")]
    Refused(String),
    #[error("the identity provider is unreachable: {0}")]
    Unreachable(String),
    #[error("the identity provider's answer is not a token response")]
    BadResponse,
    #[error("the provider's endpoints are not usable: {0}")]
    Config(String),
}

fn client(oidc: &Oidc, meta: &Metadata) -> Result<OidcClient, TokenError> {
    let auth = AuthUrl::new(meta.authorization_endpoint.clone())
        .map_err(|e| TokenError::Config(e.to_string()))?;
    let token = TokenUrl::new(meta.token_endpoint.clone())
        .map_err(|e| TokenError::Config(e.to_string()))?;
    let method = oidc
        .auth_method
        .unwrap_or_else(|| meta.client_auth_method());
    Ok(Client::new(ClientId::new(oidc.client_id.clone()))
        .set_client_secret(ClientSecret::new(oidc.client_secret.expose().to_string()))
        .set_auth_uri(auth)
        .set_token_uri(token)
        .set_redirect_uri(RedirectUrl::from_url(oidc.redirect_url.clone()))
        .set_auth_type(match method {
            ClientAuthMethod::Basic => AuthType::BasicAuth,
            ClientAuthMethod::Post => AuthType::RequestBody,
        }))
}

/// The per-login secrets that must survive the round trip through the provider.
pub(crate) struct Authorization {
    pub url: url::Url,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

pub(crate) fn authorization(oidc: &Oidc, meta: &Metadata) -> Result<Authorization, TokenError> {
    let client = client(oidc, meta)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let nonce = CsrfToken::new_random().secret().clone();
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(oidc.scopes.iter().cloned().map(Scope::new))
        .add_extra_param("nonce", nonce.clone())
        .set_pkce_challenge(challenge)
        .url();
    Ok(Authorization {
        url,
        state: state.secret().clone(),
        nonce,
        pkce_verifier: verifier.secret().clone(),
    })
}

pub(crate) async fn exchange_code(
    http: &reqwest::Client,
    oidc: &Oidc,
    meta: &Metadata,
    code: &str,
    pkce_verifier: &str,
) -> Result<Tokens, TokenError> {
    let client = client(oidc, meta)?;
    let started = Instant::now();
    let resp = client
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()))
        .request_async(http)
        .await
        .map_err(token_error);
    record(started, &resp);
    Ok(tokens(resp?))
}

pub(crate) async fn refresh(
    http: &reqwest::Client,
    oidc: &Oidc,
    meta: &Metadata,
    refresh_token: &str,
) -> Result<Tokens, TokenError> {
    let client = client(oidc, meta)?;
    let rt = RefreshToken::new(refresh_token.to_string());
    let started = Instant::now();
    let resp = client
        .exchange_refresh_token(&rt)
        .request_async(http)
        .await
        .map_err(token_error);
    record(started, &resp);
    Ok(tokens(resp?))
}

/// Reports a token-endpoint call to the metrics.
fn record<T>(started: Instant, result: &Result<T, TokenError>) {
    use crate::metrics::CallResult;
    let outcome = match result {
        Ok(_) => CallResult::Ok,
        Err(TokenError::Refused(_)) => CallResult::Refused,
        Err(_) => CallResult::Failed,
    };
    crate::metrics::get().idp_call("token", outcome, started.elapsed());
}

fn tokens(resp: OidcTokenResponse) -> Tokens {
    Tokens {
        access_token: resp.access_token().secret().clone(),
        refresh_token: resp.refresh_token().map(|t| t.secret().clone()),
        id_token: resp.extra_fields().id_token.clone(),
        expires_in: resp.expires_in().map(|d| d.as_secs()),
    }
}

/// Maps oauth2's error without its raw body (which could hold tokens) into words safe to log.
fn token_error<RE: std::error::Error + 'static>(
    e: RequestTokenError<RE, BasicErrorResponse>,
) -> TokenError {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let mut text = r.error().to_string();
            if let Some(d) = r.error_description() {
                text.push_str(": ");
                text.push_str(&d.chars().take(200).collect::<String>());
            }
            TokenError::Refused(text)
        }
        RequestTokenError::Request(re) => {
            let mut text = re.to_string();
            let mut src = re.source();
            while let Some(s) = src {
                text.push_str(": ");
                text.push_str(&s.to_string());
                src = s.source();
            }
            TokenError::Unreachable(text)
        }
        RequestTokenError::Parse(..) | RequestTokenError::Other(_) => TokenError::BadResponse,
    }
}
