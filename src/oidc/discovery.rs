//! The identity provider's published metadata (OpenID Connect Discovery 1.0) and key set,
//! fetched with bounded size and time.

use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::config::{ClientAuth, ClientAuthMethod, Oidc};

/// Documents larger than this are refused: a JWKS or discovery document is a few KiB.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// RFC 9207: the provider always names itself (`iss`) in authorization responses.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    /// RFC 8628: where a device (`portcullis login`) starts a sign-in.
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    /// RFC 8705 §5: endpoints to use with mutual TLS, when they differ.
    #[serde(default)]
    pub mtls_endpoint_aliases: Option<MtlsAliases>,
}

/// RFC 8705 §5 `mtls_endpoint_aliases`, the one portcullis calls.
#[derive(Debug, Clone, Deserialize)]
pub struct MtlsAliases {
    /// The token endpoint for clients that authenticate with a certificate.
    #[serde(default)]
    pub token_endpoint: Option<String>,
}

impl Metadata {
    /// Whether the provider offers the token-endpoint authentication `auth` names: checked
    /// when the provider is loaded and by `portcullis check`, so a mismatch shows at start
    /// (in `/ready` and the log), not as a failed login. A provider that lists no methods
    /// offers `client_secret_basic` only (RFC 8414 §2).
    pub fn check_client_auth(&self, auth: &ClientAuth) -> Result<(), String> {
        let Some(wanted) = auth.method_name() else {
            return Ok(());
        };
        let offered: &[String] = self
            .token_endpoint_auth_methods_supported
            .as_deref()
            .unwrap_or_default();
        let basic_by_default = offered.is_empty() && wanted == "client_secret_basic";
        if basic_by_default || offered.iter().any(|m| m == wanted) {
            Ok(())
        } else {
            Err(format!(
                "oidc.client_auth is \"{wanted}\", and the provider's token endpoint offers {offered:?}"
            ))
        }
    }

    /// The token endpoint for `auth`: the mutual-TLS alias for `tls_client_auth` when the
    /// provider publishes one.
    pub fn token_endpoint_for(&self, auth: &ClientAuth) -> &str {
        match (auth, &self.mtls_endpoint_aliases) {
            (
                ClientAuth::TlsClientAuth(_),
                Some(MtlsAliases {
                    token_endpoint: Some(t),
                }),
            ) => t,
            _ => &self.token_endpoint,
        }
    }

    /// The client authentication the provider supports, preferring HTTP Basic (the default of
    /// RFC 6749 and of Discovery when the list is absent).
    pub fn client_auth_method(&self) -> ClientAuthMethod {
        match &self.token_endpoint_auth_methods_supported {
            Some(methods)
                if !methods.iter().any(|m| m == "client_secret_basic")
                    && methods.iter().any(|m| m == "client_secret_post") =>
            {
                ClientAuthMethod::Post
            }
            _ => ClientAuthMethod::Basic,
        }
    }
}

/// Why a fetch failed, in words fit for `/ready` and logs (no secrets involved).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
    #[error("{url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: invalid document: {reason}")]
    Invalid { url: String, reason: String },
}

pub(crate) fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Fetches and checks the discovery document: its `issuer` must equal the configured one exactly
/// (Discovery §4.3), otherwise tokens would be checked against the wrong authority.
pub(crate) async fn fetch_metadata(
    http: &reqwest::Client,
    issuer: &str,
) -> Result<Metadata, FetchError> {
    let started = std::time::Instant::now();
    let result = check_metadata(http, issuer).await;
    record("discovery", started, &result);
    result
}

/// Reports a provider call to the metrics; the result's error kind decides the label.
pub(crate) fn record<T>(
    endpoint: &'static str,
    started: std::time::Instant,
    result: &Result<T, FetchError>,
) {
    use crate::metrics::CallResult;
    let outcome = match result {
        Ok(_) => CallResult::Ok,
        Err(FetchError::Status { .. }) => CallResult::Refused,
        Err(FetchError::Http { .. } | FetchError::Invalid { .. }) => CallResult::Failed,
    };
    crate::metrics::get().idp_call(endpoint, outcome, started.elapsed());
}

async fn check_metadata(http: &reqwest::Client, issuer: &str) -> Result<Metadata, FetchError> {
    let url = discovery_url(issuer);
    let meta: Metadata = fetch_json(http, &url).await?;
    if meta.issuer != issuer {
        return Err(FetchError::Invalid {
            url,
            reason: format!(
                "issuer `{}` differs from the configured `{issuer}`",
                meta.issuer
            ),
        });
    }
    for (name, value) in [
        ("authorization_endpoint", &meta.authorization_endpoint),
        ("token_endpoint", &meta.token_endpoint),
        ("jwks_uri", &meta.jwks_uri),
    ] {
        if url::Url::parse(value).is_err() {
            return Err(FetchError::Invalid {
                url,
                reason: format!("{name} is not a URL"),
            });
        }
    }
    if let Some(methods) = &meta.code_challenge_methods_supported {
        if !methods.iter().any(|m| m == "S256") {
            return Err(FetchError::Invalid {
                url,
                reason: "the provider does not support PKCE S256".into(),
            });
        }
    }
    Ok(meta)
}

pub(crate) async fn fetch_jwks(
    http: &reqwest::Client,
    jwks_uri: &str,
) -> Result<JwkSet, FetchError> {
    fetch_json(http, jwks_uri).await
}

async fn fetch_json<T: DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, FetchError> {
    let (body, _) = fetch_raw(http, url).await?;
    serde_json::from_slice(&body).map_err(|e| FetchError::Invalid {
        url: url.to_string(),
        reason: e.to_string(),
    })
}

/// A JSON document's bytes (at most 1 MiB) and the `max-age` of its `Cache-Control`, if any.
pub(crate) async fn fetch_raw(
    http: &reqwest::Client,
    url: &str,
) -> Result<(Vec<u8>, Option<Duration>), FetchError> {
    let http_err = |e: reqwest::Error| FetchError::Http {
        url: url.to_string(),
        reason: describe(&e),
    };
    let mut resp = http
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(http_err)?;
    let status = resp.status();
    if !status.is_success() {
        return Err(FetchError::Status {
            url: url.to_string(),
            status: status.as_u16(),
        });
    }
    let max_age = resp
        .headers()
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .find_map(|d| d.trim().strip_prefix("max-age="))
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .map(Duration::from_secs);
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(http_err)? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(FetchError::Invalid {
                url: url.to_string(),
                reason: "larger than 1 MiB".into(),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, max_age))
}

/// reqwest's Display hides the cause ("error sending request"); the chain says what happened.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    let mut depth = 0;
    while let Some(s) = source {
        if depth >= 3 {
            break;
        }
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
        depth += 1;
    }
    text
}

/// The HTTP client for every call to the identity provider: bounded in time, never following
/// redirects (a token endpoint that redirects is an SSRF vector, RFC 6749 §3.2).
pub(crate) fn http_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    builder(timeout).build()
}

/// The client for every call to the `[oidc]` provider: with its extra CAs
/// (`oidc.provider_ca`), and with our client certificate for `tls_client_auth`.
pub(crate) fn provider_client(oidc: &Oidc) -> reqwest::Result<reqwest::Client> {
    let mut b = builder(oidc.http_timeout);
    for ca in &oidc.provider_ca.0 {
        b = b.add_root_certificate(ca.clone());
    }
    if let Some(identity) = oidc.client_auth.identity() {
        b = b.identity(identity.0.clone());
    }
    b.build()
}

fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
}
