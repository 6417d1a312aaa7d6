//! `[headers]`: what the upstream receives besides the request.

use super::check::Check;
use super::file::{HeaderStyleFile, HeadersFile};
use super::ConfigError;
use crate::forward::{IdentityNames, UserFormat};

/// The validated `[headers]`.
#[derive(Debug, Clone)]
pub struct Headers {
    /// A session's access token goes upstream (and to forward auth).
    pub pass_access_token: bool,
    /// A session's ID token goes upstream as `Authorization: Bearer`.
    pub pass_id_token_as_bearer: bool,
    /// What the identity headers portcullis sets for the upstream are called, and how the
    /// user is written.
    pub names: IdentityNames,
    /// The same for `/oauth2/auth` answers: oauth2-proxy's names, the same user format.
    pub forward_auth: IdentityNames,
    /// More names removed from every client request, normalised (lower case, `-` for `_`).
    pub strip: Vec<String>,
    /// Which identity headers the upstream gets.
    pub style: HeaderStyle,
    /// `signer` of ALB's `x-amzn-oidc-data`, with `style` `alb` or `both`.
    pub alb_signer: Option<String>,
    /// `X-Portcullis-Assertion`, when on.
    pub assertion: Option<Assertion>,
}

/// `headers.style`: which family of identity headers the upstream gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderStyle {
    /// `X-Forwarded-User` and its siblings (oauth2-proxy's).
    OAuth2Proxy,
    /// AWS ALB's `x-amzn-oidc-identity`, `-accesstoken` and the signed `-data`, in ALB's
    /// format, so an application written for ALB moves over unchanged.
    Alb,
    /// Both.
    Both,
}

impl HeaderStyle {
    /// Whether oauth2-proxy's headers are sent.
    pub fn oauth2_proxy(self) -> bool {
        matches!(self, HeaderStyle::OAuth2Proxy | HeaderStyle::Both)
    }

    /// Whether ALB's headers are sent.
    pub fn alb(self) -> bool {
        matches!(self, HeaderStyle::Alb | HeaderStyle::Both)
    }
}

/// `headers.assertion` and its settings.
#[derive(Debug, Clone)]
pub struct Assertion {
    /// `iss`; `None`: the origin each request names.
    pub issuer: Option<String>,
    /// `aud`: `headers.assertion_audience`, or the upstream URL.
    pub audience: String,
}

pub(super) fn validate(
    check: &Check,
    h: HeadersFile,
    upstream: &super::Upstream,
) -> Result<Headers, ConfigError> {
    let style = match h.style {
        None | Some(HeaderStyleFile::OAuth2Proxy) => HeaderStyle::OAuth2Proxy,
        Some(HeaderStyleFile::Alb) => HeaderStyle::Alb,
        Some(HeaderStyleFile::Both) => HeaderStyle::Both,
    };
    let alb_signer = match (style.alb(), h.alb) {
        (true, Some(alb)) if alb.signer.trim().is_empty() || alb.signer.chars().any(char::is_control) => {
            return Err(check.err("headers.alb.signer", "must not be empty"))
        }
        (true, Some(alb)) => Some(alb.signer),
        (true, None) => {
            return Err(check.err(
                "headers.alb.signer",
                "missing: ALB's applications check the signer of x-amzn-oidc-data (an ALB ARN \
                 such as arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/web/0123456789abcdef)",
            ))
        }
        (false, Some(_)) => {
            return Err(check.err(
                "headers.alb",
                "is set, but headers.style sends no ALB headers (set style = \"alb\" or \"both\")",
            ))
        }
        (false, None) => None,
    };
    let text = |key: &str, v: Option<String>| match v {
        Some(v) if v.trim().is_empty() || v.chars().any(char::is_control) => {
            Err(check.err(key, "must not be empty"))
        }
        other => Ok(other),
    };
    let assertion_issuer = text("headers.assertion_issuer", h.assertion_issuer)?;
    let assertion_audience = text("headers.assertion_audience", h.assertion_audience)?;
    let assertion = match h.assertion {
        true => Some(Assertion {
            issuer: assertion_issuer,
            audience: assertion_audience
                .unwrap_or_else(|| upstream.url.as_str().trim_end_matches('/').to_string()),
        }),
        false if assertion_issuer.is_some() || assertion_audience.is_some() => {
            return Err(check.err(
                "headers.assertion",
                "is off, but assertion_issuer or assertion_audience is set",
            ))
        }
        false => None,
    };
    let defaults = IdentityNames::default();
    let n = h.names;
    let name = |key: &str, value: Option<String>, default: &http::HeaderName| match value {
        Some(value) => check.header_name(&format!("headers.names.{key}"), &value),
        None => Ok(default.clone()),
    };
    let user_format = match h.user_format {
        Some(text) => UserFormat::parse(&text).map_err(|e| check.err("headers.user_format", e))?,
        None => UserFormat::default(),
    };
    let names = IdentityNames {
        user_format: user_format.clone(),
        user: name("user", n.user, &defaults.user)?,
        issuer: name("issuer", n.issuer, &defaults.issuer)?,
        email: name("email", n.email, &defaults.email)?,
        groups: name("groups", n.groups, &defaults.groups)?,
        preferred_username: name(
            "preferred_username",
            n.preferred_username,
            &defaults.preferred_username,
        )?,
        access_token: name("access_token", n.access_token, &defaults.access_token)?,
    };
    let all = names.all();
    for (i, a) in all.iter().enumerate() {
        if all[..i].contains(a) {
            return Err(check.err("headers.names", format!("`{a}` names two headers")));
        }
    }
    let strip = h
        .strip
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let parsed = check.header_name(&format!("headers.strip[{i}]"), value)?;
            Ok(parsed.as_str().replace('_', "-"))
        })
        .collect::<Result<_, ConfigError>>()?;
    Ok(Headers {
        style,
        alb_signer,
        assertion,
        forward_auth: IdentityNames::forward_auth(user_format),
        pass_access_token: h.pass_access_token,
        pass_id_token_as_bearer: h.pass_id_token_as_bearer,
        names,
        strip,
    })
}
