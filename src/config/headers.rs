//! `[headers]`: what the upstream receives besides the request.

use super::check::Check;
use super::file::HeadersFile;
use super::ConfigError;
use crate::forward::IdentityNames;

/// The validated `[headers]`.
#[derive(Debug, Clone)]
pub struct Headers {
    /// A session's access token goes upstream (and to forward auth).
    pub pass_access_token: bool,
    /// A session's ID token goes upstream as `Authorization: Bearer`.
    pub pass_id_token_as_bearer: bool,
    /// What the identity headers portcullis sets are called.
    pub names: IdentityNames,
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
    let names = IdentityNames {
        user: name("user", n.user, &defaults.user)?,
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
        pass_access_token: h.pass_access_token,
        pass_id_token_as_bearer: h.pass_id_token_as_bearer,
        names,
        strip,
    })
}
