//! `[session]`: the sealed session cookie.

use std::fmt;
use std::time::Duration;

use super::check::Check;
use super::file::{SameSiteFile, SessionFile};
use super::{decode_secret, ConfigError, ENV_SESSION_SECRETS, MIN_SECRET_BYTES};

/// The validated `[session]`.
#[derive(Debug, PartialEq, Eq)]
pub struct Session {
    /// The session cookie's name (chunks add `_0`, `_1`, …).
    pub cookie_name: String,
    /// Decoded secrets; the first seals.
    pub secrets: Vec<SessionSecret>,
    /// How long a session lasts at most, refreshes included.
    pub lifetime: Duration,
    /// Cookies carry `Secure`.
    pub secure: bool,
    /// The session cookie's `SameSite`.
    pub same_site: cookie::SameSite,
    /// The cookies' `Domain`; host-only when `None`.
    pub domain: Option<String>,
    /// Where sessions live: the cookie, or Redis.
    pub storage: super::SessionStorage,
    /// With the cookie store: the Redis where every replica records and checks sessions
    /// ended (sign-out, back-channel logout, `portcullis sessions revoke`).
    pub revocation: Option<super::RedisSettings>,
}

/// Decoded session secret bytes (at least [`MIN_SECRET_BYTES`]).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionSecret(pub Vec<u8>);

impl fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSecret([redacted])")
    }
}

/// `[session]` (or its secrets from the environment): required with browser sign-in
/// (`login`); without it optional, and then only its secrets mean anything: they key the
/// DPoP nonces every replica must accept.
pub(super) fn validate(
    check: &Check,
    s: Option<SessionFile>,
    login: bool,
) -> Result<Option<Session>, ConfigError> {
    if login {
        return table(check, s.unwrap_or_default()).map(Some);
    }
    let s = match s {
        Some(s) => s,
        None if (check.env)(ENV_SESSION_SECRETS).is_some() => SessionFile::default(),
        None => return Ok(None),
    };
    let cookie_only = [
        ("cookie_name", s.cookie_name.is_some()),
        ("lifetime", s.lifetime.is_some()),
        ("secure", s.secure.is_some()),
        ("same_site", s.same_site.is_some()),
        ("domain", s.domain.is_some()),
        ("store", s.store.is_some()),
        ("redis", s.redis.is_some()),
        ("revocation", s.revocation.is_some()),
    ];
    if let Some((key, _)) = cookie_only.iter().find(|(_, set)| *set) {
        return Err(check.err(
            format!("session.{key}"),
            "applies to browser sessions, and there is no [oidc] to sign in with",
        ));
    }
    table(check, s).map(Some)
}

fn table(check: &Check, s: SessionFile) -> Result<Session, ConfigError> {
    let storage = super::redis::validate(check, s.store, s.redis)?;
    let revocation = super::redis::revocation(check, &storage, s.revocation)?;
    let cookie_name = cookie_name(check, s.cookie_name)?;
    let secrets = secrets(check, s.secrets)?;
    let lifetime = check.duration(
        "session.lifetime",
        s.lifetime.as_deref(),
        Duration::from_secs(12 * 3600),
        Duration::from_secs(90 * 24 * 3600),
    )?;
    let secure = s.secure.unwrap_or(true);
    let same_site = match s.same_site.unwrap_or(SameSiteFile::Lax) {
        SameSiteFile::Lax => cookie::SameSite::Lax,
        SameSiteFile::Strict => cookie::SameSite::Strict,
        SameSiteFile::None if !secure => {
            return Err(check.err(
                "session.same_site",
                "\"none\" requires session.secure = true (browsers drop it otherwise)",
            ))
        }
        SameSiteFile::None => cookie::SameSite::None,
    };
    let domain = match s.domain {
        None => None,
        Some(d) => Some(domain(check, &d)?),
    };
    // Browsers drop prefixed cookies whose attributes break the prefix's promise; the
    // session would silently never stick.
    if cookie_name.starts_with("__Host-") && (!secure || domain.is_some()) {
        return Err(check.err(
            "session.cookie_name",
            "a __Host- cookie needs session.secure = true and no session.domain",
        ));
    }
    if cookie_name.starts_with("__Secure-") && !secure {
        return Err(check.err(
            "session.cookie_name",
            "a __Secure- cookie needs session.secure = true",
        ));
    }
    Ok(Session {
        cookie_name,
        secrets,
        lifetime,
        secure,
        same_site,
        domain,
        storage,
        revocation,
    })
}

fn cookie_name(check: &Check, name: Option<String>) -> Result<String, ConfigError> {
    let name = name.unwrap_or_else(|| "_portcullis".into());
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    {
        return Err(check.err(
            "session.cookie_name",
            "use letters, digits, `_`, `-` and `.` only",
        ));
    }
    // Room for the suffixes of chunks (`_15`) and login cookies (`_flow_` + 12).
    if name.len() > 100 {
        return Err(check.err("session.cookie_name", "must be at most 100 characters"));
    }
    Ok(name)
}

/// From the file or the environment, not both; each base64 of at least [`MIN_SECRET_BYTES`].
fn secrets(check: &Check, in_file: Vec<String>) -> Result<Vec<SessionSecret>, ConfigError> {
    let env_secrets = (check.env)(ENV_SESSION_SECRETS);
    let (key, raw): (&str, Vec<String>) = match (in_file.is_empty(), env_secrets) {
        (false, Some(_)) => {
            return Err(check.err(
                "session.secrets",
                format!("set both in the file and in {ENV_SESSION_SECRETS}; use one"),
            ))
        }
        (false, None) => ("session.secrets", in_file),
        (true, Some(env)) => (
            ENV_SESSION_SECRETS,
            env.split(',').map(|p| p.trim().to_string()).collect(),
        ),
        (true, None) => {
            return Err(check.err(
                "session.secrets",
                format!("missing: generate one with `portcullis secret` and set it here or in {ENV_SESSION_SECRETS}"),
            ))
        }
    };
    raw.iter()
        .enumerate()
        .map(|(i, text)| {
            let bytes = decode_secret(text).ok_or_else(|| {
                check.err(
                    format!("{key}[{i}]"),
                    "is not base64 (use `portcullis secret`)",
                )
            })?;
            if bytes.len() < MIN_SECRET_BYTES {
                return Err(check.err(
                    format!("{key}[{i}]"),
                    format!("must decode to at least {MIN_SECRET_BYTES} bytes"),
                ));
            }
            Ok(SessionSecret(bytes))
        })
        .collect()
}

fn domain(check: &Check, d: &str) -> Result<String, ConfigError> {
    let d = d.trim().to_ascii_lowercase();
    if d.is_empty()
        || !d
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        return Err(check.err("session.domain", "is not a domain name"));
    }
    Ok(d)
}
