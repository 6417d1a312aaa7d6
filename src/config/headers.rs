//! `[headers]`: what the upstream receives besides the request.

use super::check::Check;
use super::file::HeadersFile;
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
}

pub(super) fn validate(check: &Check, h: HeadersFile) -> Result<Headers, ConfigError> {
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
        forward_auth: IdentityNames::forward_auth(user_format),
        pass_access_token: h.pass_access_token,
        pass_id_token_as_bearer: h.pass_id_token_as_bearer,
        names,
        strip,
    })
}
