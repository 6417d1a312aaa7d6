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
use crate::clock::UnixTime;
use crate::config::{ClientAuth, ClientAuthMethod, Oidc};

#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct IdTokenField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}
impl ExtraTokenFields for IdTokenField {}

pub(crate) type OidcTokenResponse = StandardTokenResponse<IdTokenField, BasicTokenType>;

pub(crate) type OidcClient = Client<
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

pub(crate) fn client(oidc: &Oidc, meta: &Metadata) -> Result<OidcClient, TokenError> {
    let auth = AuthUrl::new(meta.authorization_endpoint.clone())
        .map_err(|e| TokenError::Config(e.to_string()))?;
    let token = TokenUrl::new(meta.token_endpoint_for(&oidc.client_auth).to_string())
        .map_err(|e| TokenError::Config(e.to_string()))?;
    let client = Client::new(ClientId::new(oidc.client_id.clone()))
        .set_auth_uri(auth)
        .set_token_uri(token)
        .set_redirect_uri(RedirectUrl::from_url(oidc.redirect_url.clone()));
    Ok(match &oidc.client_auth {
        ClientAuth::Secret { secret, method } => {
            let method = method.unwrap_or_else(|| meta.client_auth_method());
            client
                .set_client_secret(ClientSecret::new(secret.expose().to_string()))
                .set_auth_type(match method {
                    ClientAuthMethod::Basic => AuthType::BasicAuth,
                    ClientAuthMethod::Post => AuthType::RequestBody,
                })
        }
        // No secret: the client id goes in the body, beside the assertion (see
        // `authentication`) or on a connection that carries the client certificate.
        ClientAuth::PrivateKeyJwt(_) | ClientAuth::TlsClientAuth(_) => {
            client.set_auth_type(AuthType::RequestBody)
        }
    })
}

/// The body parameters that authenticate a token request beside what `client` sends: the
/// RFC 7523 assertion for `private_key_jwt` (fresh for every request: its own `jti`, a
/// minute to live, addressed to the token endpoint), nothing otherwise.
pub(crate) fn authentication(
    oidc: &Oidc,
    meta: &Metadata,
    now: UnixTime,
) -> Result<Vec<(&'static str, String)>, TokenError> {
    let ClientAuth::PrivateKeyJwt(key) = &oidc.client_auth else {
        return Ok(Vec::new());
    };
    let mut header = jsonwebtoken::Header::new(key.alg);
    header.kid = key.kid.clone();
    let claims = serde_json::json!({
        "iss": oidc.client_id,
        "sub": oidc.client_id,
        "aud": meta.token_endpoint_for(&oidc.client_auth),
        "jti": CsrfToken::new_random().secret(),
        "iat": now.secs(),
        "exp": now.secs() + ASSERTION_LIFETIME_SECS,
    });
    let assertion = jsonwebtoken::encode(&header, &claims, &key.key)
        .map_err(|e| TokenError::Config(format!("cannot sign the client assertion: {e}")))?;
    Ok(vec![
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
        ),
        ("client_assertion", assertion),
    ])
}

/// How long a client assertion lives: long enough for one request, short enough that a
/// captured one is worthless soon.
const ASSERTION_LIFETIME_SECS: u64 = 60;

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
    now: UnixTime,
) -> Result<Tokens, TokenError> {
    let client = client(oidc, meta)?;
    let mut request = client
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()));
    for (name, value) in authentication(oidc, meta, now)? {
        request = request.add_extra_param(name, value);
    }
    let started = Instant::now();
    let resp = request.request_async(http).await.map_err(token_error);
    record(started, &resp);
    Ok(tokens(resp?))
}

pub(crate) async fn refresh(
    http: &reqwest::Client,
    oidc: &Oidc,
    meta: &Metadata,
    refresh_token: &str,
    now: UnixTime,
) -> Result<Tokens, TokenError> {
    let client = client(oidc, meta)?;
    let rt = RefreshToken::new(refresh_token.to_string());
    let mut request = client.exchange_refresh_token(&rt);
    for (name, value) in authentication(oidc, meta, now)? {
        request = request.add_extra_param(name, value);
    }
    let started = Instant::now();
    let resp = request.request_async(http).await.map_err(token_error);
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

pub(crate) fn tokens(resp: OidcTokenResponse) -> Tokens {
    Tokens {
        access_token: resp.access_token().secret().clone(),
        refresh_token: resp.refresh_token().map(|t| t.secret().clone()),
        id_token: resp.extra_fields().id_token.clone(),
        expires_in: resp.expires_in().map(|d| d.as_secs()),
    }
}

/// Maps oauth2's error without its raw body (which could hold tokens) into words safe to log.
pub(crate) fn token_error<RE: std::error::Error + 'static>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config(client_auth: &str) -> Config {
        let text = format!(
            r#"
[upstream]
url = "http://127.0.0.1:1"
[oidc]
issuer = "https://idp.test"
client_id = "portcullis"
redirect_url = "https://app.test/oauth2/callback"
{client_auth}
[session]
secrets = ["MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"]
"#
        );
        Config::parse(&text, "test.toml", &|_| None).unwrap()
    }

    fn metadata(methods: &[&str]) -> Metadata {
        serde_json::from_value(serde_json::json!({
            "issuer": "https://idp.test",
            "authorization_endpoint": "https://idp.test/auth",
            "token_endpoint": "https://idp.test/token",
            "jwks_uri": "https://idp.test/jwks",
            "token_endpoint_auth_methods_supported": methods,
            "mtls_endpoint_aliases": {"token_endpoint": "https://mtls.idp.test/token"},
        }))
        .unwrap()
    }

    #[test]
    fn a_private_key_jwt_assertion_is_signed_fresh_for_the_token_endpoint() {
        crate::jwt::provider::install();
        let key = rcgen::KeyPair::generate().unwrap();
        let dir = std::env::temp_dir().join(format!("portcullis-pkj-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("client.key");
        std::fs::write(&path, key.serialize_pem()).unwrap();
        let config = config(&format!(
            "client_auth = \"private_key_jwt\"\nclient_key = \"{}\"",
            path.display()
        ));
        let oidc = config.oidc.as_ref().unwrap().first();
        let meta = metadata(&["private_key_jwt"]);
        let now = UnixTime::from_secs(1_700_000_000);
        let params = authentication(oidc, &meta, now).unwrap();
        assert_eq!(
            params[0],
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string()
            )
        );
        let assertion = &params[1].1;
        let public = jsonwebtoken::DecodingKey::from_ec_der(key.public_key_raw());
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.validate_exp = false;
        v.set_audience(&["https://idp.test/token"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(assertion, &public, &v)
            .unwrap()
            .claims;
        assert_eq!(claims["iss"], "portcullis");
        assert_eq!(claims["sub"], "portcullis");
        assert_eq!(claims["iat"], 1_700_000_000u64);
        assert_eq!(claims["exp"], 1_700_000_060u64);
        let again = authentication(oidc, &meta, now).unwrap();
        assert_ne!(again[1].1, *assertion, "every assertion has its own jti");
    }

    #[test]
    fn the_method_is_checked_against_what_the_provider_offers() {
        let secret = config("client_secret = \"s\"");
        let oidc = secret.oidc.as_ref().unwrap().first();
        // A secret without a method follows discovery.
        assert!(metadata(&[]).check_client_auth(&oidc.client_auth).is_ok());
        let post = config("client_secret = \"s\"\nclient_auth = \"client_secret_post\"");
        let post = &post.oidc.as_ref().unwrap().first().client_auth;
        assert!(metadata(&["client_secret_post"])
            .check_client_auth(post)
            .is_ok());
        let refused = metadata(&["client_secret_basic", "private_key_jwt"])
            .check_client_auth(post)
            .unwrap_err();
        assert!(
            refused.contains("\"client_secret_post\"") && refused.contains("private_key_jwt"),
            "{refused}"
        );
        // Listing nothing offers client_secret_basic only (RFC 8414).
        assert!(metadata(&[]).check_client_auth(post).is_err());
        // The mutual-TLS alias is only for tls_client_auth.
        assert_eq!(
            metadata(&[]).token_endpoint_for(post),
            "https://idp.test/token"
        );
    }
}
