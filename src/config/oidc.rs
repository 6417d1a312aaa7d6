//! `[oidc]`: the identity provider browsers sign in with, and how portcullis is its client.

use std::fmt;
use std::time::Duration;

use url::Url;

use super::check::Check;
use super::client_auth::{ClientAuth, ProviderCa};
use super::file::OidcFile;
use super::ConfigError;

/// A value that must never reach a log line or an error message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub(super) fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Which claims name the user, the email and the groups.
#[derive(Debug, Clone)]
pub struct ClaimNames {
    /// The claims that may name the user, tried in order (`["sub"]` by default).
    pub user: Vec<String>,
    /// The claim with the email address.
    pub email: String,
    /// The claim with the groups.
    pub groups: String,
}

/// How the client authenticates at the token endpoint (`oidc.token_endpoint_auth_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum ClientAuthMethod {
    #[serde(rename = "client_secret_basic")]
    /// HTTP Basic (`client_secret_basic`).
    Basic,
    #[serde(rename = "client_secret_post")]
    /// In the form body (`client_secret_post`).
    Post,
}

/// The validated `[oidc]`.
#[derive(Debug, Clone)]
pub struct Oidc {
    /// Exactly as configured; compared to `iss` byte for byte.
    pub issuer: String,
    /// Our client id at the provider.
    pub client_id: String,
    /// How we authenticate at the provider's token endpoint.
    pub client_auth: ClientAuth,
    /// CAs the provider's TLS certificates may chain to, besides the public roots.
    pub provider_ca: ProviderCa,
    /// Where the provider sends the browser back.
    pub redirect_url: Url,
    /// The path of `redirect_url`: where the IdP sends the browser back.
    pub callback_path: String,
    /// The scopes asked for (`openid` among them).
    pub scopes: Vec<String>,
    /// Which claims name the user, the email and the groups.
    pub claims: ClaimNames,
    /// The bound on every call to the provider.
    pub http_timeout: Duration,
    /// Clock skew tolerated on ID-token times.
    pub leeway: Duration,
    /// How often the provider's discovery document is fetched to notice an outage (and the
    /// end of one) before a user does.
    pub health_check_interval: Duration,
    /// How sign-out reaches the provider's `end_session_endpoint`.
    pub end_session_method: EndSessionMethod,
}

/// How sign-out sends the browser on to the provider's `end_session_endpoint` with the
/// `id_token_hint`.
///
/// RP-Initiated Logout 1.0 says providers take both, but not all do (oidc-provider 9 only
/// with `enableHttpPostMethods`), and a provider whose session cookie is `SameSite=Lax`
/// never sees it on a POST from another site, so it could not end its session. Hence GET
/// stays the default and POST is for providers known to take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndSessionMethod {
    /// A redirect with the parameters in the query: works with every provider.
    #[default]
    Get,
    /// A form the page submits itself: the ID token travels in a request body, never in a URL
    /// (browser history, the provider's access logs).
    Post,
}

pub(super) fn validate(check: &Check, o: OidcFile) -> Result<Oidc, ConfigError> {
    let issuer_url =
        Url::parse(&o.issuer).map_err(|e| check.err("oidc.issuer", format!("not a URL ({e})")))?;
    check.scheme("oidc.issuer", &issuer_url, o.insecure_allow_http)?;
    if issuer_url.query().is_some() || issuer_url.fragment().is_some() {
        return Err(check.err("oidc.issuer", "must not have a query or fragment"));
    }
    if o.client_id.trim().is_empty() {
        return Err(check.err("oidc.client_id", "must not be empty"));
    }
    let client_auth = super::client_auth::validate(check, &o)?;
    let provider_ca = super::client_auth::provider_ca(check, o.provider_ca.as_deref())?;
    let (redirect_url, callback_path) = redirect_url(check, &o.redirect_url)?;
    let scopes = scopes(check, o.scopes)?;
    let claims = check.claim_names("oidc", o.user_claim, o.email_claim, o.groups_claim)?;
    Ok(Oidc {
        issuer: o.issuer,
        client_id: o.client_id,
        client_auth,
        provider_ca,
        redirect_url,
        callback_path,
        scopes,
        claims,
        http_timeout: check.duration(
            "oidc.http_timeout",
            o.http_timeout.as_deref(),
            Duration::from_secs(10),
            Duration::from_secs(60),
        )?,
        leeway: check.leeway("oidc.leeway", o.leeway.as_deref())?,
        health_check_interval: check.duration(
            "oidc.health_check_interval",
            o.health_check_interval.as_deref(),
            Duration::from_secs(15),
            Duration::from_secs(3600),
        )?,
        end_session_method: o.end_session_method.unwrap_or_default(),
    })
}

/// The callback URL and its path, which must not be one of the built-in endpoints.
fn redirect_url(check: &Check, text: &str) -> Result<(Url, String), ConfigError> {
    let key = "oidc.redirect_url";
    let url = Url::parse(text).map_err(|e| check.err(key, format!("not an absolute URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(check.err(key, "must be an absolute http(s) URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(check.err(key, "must not have a query or fragment"));
    }
    let path = url.path().to_string();
    if crate::classify::is_reserved_non_callback(&path) {
        return Err(check.err(
            key,
            format!("path `{path}` collides with a built-in endpoint"),
        ));
    }
    Ok((url, path))
}

fn scopes(check: &Check, scopes: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let scopes = scopes.unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]);
    if !scopes.iter().any(|s| s == "openid") {
        return Err(check.err("oidc.scopes", "must include \"openid\""));
    }
    for (i, s) in scopes.iter().enumerate() {
        if s.is_empty()
            || s.chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '"')
        {
            return Err(check.err(format!("oidc.scopes[{i}]"), "is not a valid scope token"));
        }
    }
    Ok(scopes)
}
