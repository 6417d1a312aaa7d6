//! `[oidc]` or `[[oidc.providers]]`: the identity providers browsers sign in with, and how
//! portcullis is the client of each.

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

/// The id of a lone `[oidc]` provider. Its sessions' `sub` and `sid` are filed as they were
/// before there could be several providers, so a `[[oidc.providers]]` entry given this id
/// keeps the sessions and logouts of the `[oidc]` it replaces.
pub const DEFAULT_PROVIDER: &str = "default";

/// The validated `[oidc]`, or one `[[oidc.providers]]` entry.
#[derive(Debug, Clone)]
pub struct Oidc {
    /// How routes, `/oauth2/start?provider=`, sessions and metrics name it.
    pub id: String,
    /// What the sign-in chooser page shows.
    pub name: String,
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

/// The identity providers browsers sign in with: never empty, ids and issuers unique.
#[derive(Debug, Clone)]
pub struct OidcProviders {
    all: Vec<Oidc>,
}

impl OidcProviders {
    /// The first provider: the only one of a lone `[oidc]`.
    pub fn first(&self) -> &Oidc {
        // Never empty: validation refuses an empty list.
        &self.all[0]
    }

    /// Every provider, in the order of the file.
    pub fn iter(&self) -> std::slice::Iter<'_, Oidc> {
        self.all.iter()
    }

    /// The provider of this id.
    pub fn get(&self, id: &str) -> Option<&Oidc> {
        self.all.iter().find(|o| o.id == id)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Never true; for clippy's sake beside [`OidcProviders::len`].
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}

/// Where a provider's keys live in the file, and the environment variable its client secret
/// may come from: `oidc` and `PORTCULLIS_OIDC_CLIENT_SECRET` for a lone `[oidc]`,
/// `oidc.providers[i]` and `PORTCULLIS_OIDC_CLIENT_SECRET_<ID>` for each of several.
pub(super) struct Table {
    path: String,
    pub(super) env: String,
}

impl Table {
    /// The full name of `key` in this table, for an error.
    pub(super) fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }
}

/// `[oidc]` alone, or `[[oidc.providers]]` with nothing else beside it.
pub(super) fn validate(check: &Check, o: OidcFile) -> Result<OidcProviders, ConfigError> {
    if o.providers.is_empty() {
        let table = Table {
            path: "oidc".into(),
            env: super::ENV_CLIENT_SECRET.into(),
        };
        let id = o.id.clone().unwrap_or_else(|| DEFAULT_PROVIDER.into());
        check_id(check, "oidc.id", &id)?;
        return Ok(OidcProviders {
            all: vec![provider(check, &table, id, o)?],
        });
    }
    if let Some(key) = o.first_key_set() {
        return Err(check.err(
            format!("oidc.{key}"),
            "is set beside [[oidc.providers]]: each provider's settings go in its own table",
        ));
    }
    let mut all: Vec<Oidc> = Vec::new();
    for (i, p) in o.providers.into_iter().enumerate() {
        let path = format!("oidc.providers[{i}]");
        if !p.providers.is_empty() {
            return Err(check.err(format!("{path}.providers"), "providers do not nest"));
        }
        let id = p
            .id
            .clone()
            .ok_or_else(|| check.err(format!("{path}.id"), "missing: each provider needs one"))?;
        check_id(check, &format!("{path}.id"), &id)?;
        let env = format!(
            "{}_{}",
            super::ENV_CLIENT_SECRET,
            id.to_ascii_uppercase().replace('-', "_")
        );
        let one = provider(check, &Table { path, env }, id, p)?;
        if let Some(before) = all.iter().find(|b| b.id == one.id) {
            return Err(check.err(
                format!("oidc.providers[{i}].id"),
                format!("`{}` names two providers", before.id),
            ));
        }
        if let Some(before) = all.iter().find(|b| b.issuer == one.issuer) {
            return Err(check.err(
                format!("oidc.providers[{i}].issuer"),
                format!(
                    "is also provider `{}`'s: one issuer is one provider (a logout token \
                     or a callback could not tell them apart)",
                    before.id
                ),
            ));
        }
        all.push(one);
    }
    Ok(OidcProviders { all })
}

/// A provider id travels in URLs, metrics labels and session records: a short word.
fn check_id(check: &Check, key: &str, id: &str) -> Result<(), ConfigError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(check.err(
            key,
            "must be 1 to 64 of a-z, 0-9, `-` and `_` (it appears in URLs and metrics)",
        ))
    }
}

fn provider(check: &Check, t: &Table, id: String, o: OidcFile) -> Result<Oidc, ConfigError> {
    let required =
        |key: &str, value: Option<String>| value.ok_or_else(|| check.err(t.key(key), "missing"));
    let issuer = required("issuer", o.issuer.clone())?;
    let client_id = required("client_id", o.client_id.clone())?;
    let redirect = required("redirect_url", o.redirect_url.clone())?;
    let issuer_url =
        Url::parse(&issuer).map_err(|e| check.err(t.key("issuer"), format!("not a URL ({e})")))?;
    check.scheme(&t.key("issuer"), &issuer_url, o.insecure_allow_http)?;
    if issuer_url.query().is_some() || issuer_url.fragment().is_some() {
        return Err(check.err(t.key("issuer"), "must not have a query or fragment"));
    }
    if client_id.trim().is_empty() {
        return Err(check.err(t.key("client_id"), "must not be empty"));
    }
    let name = match o.name.clone() {
        Some(n) if n.trim().is_empty() || n.chars().any(char::is_control) => {
            return Err(check.err(t.key("name"), "must be a visible name"))
        }
        Some(n) => n,
        None => id.clone(),
    };
    let client_auth = super::client_auth::validate(check, t, &o)?;
    let provider_ca = super::client_auth::provider_ca(check, t, o.provider_ca.as_deref())?;
    let (redirect_url, callback_path) = redirect_url(check, t, &redirect)?;
    let scopes = scopes(check, t, o.scopes)?;
    let claims = check.claim_names(&t.path, o.user_claim, o.email_claim, o.groups_claim)?;
    Ok(Oidc {
        id,
        name,
        issuer,
        client_id,
        client_auth,
        provider_ca,
        redirect_url,
        callback_path,
        scopes,
        claims,
        http_timeout: check.duration(
            &t.key("http_timeout"),
            o.http_timeout.as_deref(),
            Duration::from_secs(10),
            Duration::from_secs(60),
        )?,
        leeway: check.leeway(&t.key("leeway"), o.leeway.as_deref())?,
        health_check_interval: check.duration(
            &t.key("health_check_interval"),
            o.health_check_interval.as_deref(),
            Duration::from_secs(15),
            Duration::from_secs(3600),
        )?,
        end_session_method: o.end_session_method.unwrap_or_default(),
    })
}

/// The callback URL and its path, which must not be one of the built-in endpoints.
fn redirect_url(check: &Check, t: &Table, text: &str) -> Result<(Url, String), ConfigError> {
    let key = &t.key("redirect_url");
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

fn scopes(
    check: &Check,
    t: &Table,
    scopes: Option<Vec<String>>,
) -> Result<Vec<String>, ConfigError> {
    let scopes = scopes.unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]);
    if !scopes.iter().any(|s| s == "openid") {
        return Err(check.err(t.key("scopes"), "must include \"openid\""));
    }
    for (i, s) in scopes.iter().enumerate() {
        if s.is_empty()
            || s.chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '"')
        {
            return Err(check.err(
                format!("{}[{i}]", t.key("scopes")),
                "is not a valid scope token",
            ));
        }
    }
    Ok(scopes)
}
