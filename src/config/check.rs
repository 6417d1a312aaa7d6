//! What every section's validator shares: where errors point, and the checks more than one
//! section makes (durations, leeways, "exactly one source", secret files, URLs, header and
//! claim names). One rule each, so two keys that mean the same kind of thing are read alike.

use std::time::Duration;

use url::Url;

use super::file::OneOrMany;
use super::{ClaimNames, ConfigError};

/// The context of one validation: the file's name for errors, the environment, and the
/// files the configuration names (read here or later), which a reload watches.
pub(super) struct Check<'a> {
    pub source: &'a str,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    files: std::cell::RefCell<Vec<std::path::PathBuf>>,
}

/// One place a value may come from, for [`Check::exactly_one`].
pub(super) struct Source<T> {
    /// How an error names it: a key, or an environment variable.
    pub name: String,
    pub value: Option<T>,
}

impl<T> Source<T> {
    pub(super) fn new(name: impl Into<String>, value: Option<T>) -> Source<T> {
        Source {
            name: name.into(),
            value,
        }
    }
}

impl<'a> Check<'a> {
    pub(super) fn new(source: &'a str, env: &'a dyn Fn(&str) -> Option<String>) -> Check<'a> {
        Check {
            source,
            env,
            files: std::cell::RefCell::new(Vec::new()),
        }
    }

    /// Every file named so far, in the order named, each once.
    pub(super) fn files(&self) -> Vec<std::path::PathBuf> {
        self.files.borrow().clone()
    }

    /// Notes a file the configuration depends on but another part of the program reads (a
    /// TLS certificate, a public key), so that a change to it reloads the configuration.
    pub(super) fn names(&self, path: impl Into<std::path::PathBuf>) {
        let path = path.into();
        let mut files = self.files.borrow_mut();
        if !files.contains(&path) {
            files.push(path);
        }
    }

    /// Reads a file the configuration names under `key`; the one way a section reads a file.
    pub(super) fn read(&self, key: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
        self.names(path);
        std::fs::read(path).map_err(|e| self.err(key, format!("cannot read `{path}`: {e}")))
    }

    pub(super) fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.source.to_string(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// A positive duration no larger than `max` (absurd values would overflow clocks or switch
    /// checks off: a leeway of years accepts any expired token).
    pub(super) fn duration(
        &self,
        key: &str,
        value: Option<&str>,
        default: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(text) = value else {
            return Ok(default);
        };
        let d = humantime::parse_duration(text.trim()).map_err(|e| {
            self.err(
                key,
                format!("not a duration ({e}); write e.g. \"30s\", \"12h\""),
            )
        })?;
        if d > max {
            return Err(self.err(
                key,
                format!("must be at most {}", humantime::format_duration(max)),
            ));
        }
        if d.is_zero() {
            return Err(self.err(key, "must be greater than zero"));
        }
        Ok(d)
    }

    /// Clock skew tolerated on token times: like [`Check::duration`] (60 s by default, at most
    /// 5 minutes), except that zero is allowed: a deployment with synchronised clocks may
    /// want none.
    pub(super) fn leeway(&self, key: &str, value: Option<&str>) -> Result<Duration, ConfigError> {
        match value.map(str::trim) {
            Some("0") | Some("0s") => Ok(Duration::ZERO),
            other => self.duration(
                key,
                other,
                Duration::from_secs(60),
                Duration::from_secs(300),
            ),
        }
    }

    /// The one source among `sources` that is set (its value says which, typically an enum
    /// with a variant per source). Two set is an error at `key` naming them
    /// all, whatever the order; none set is `Ok(None)` (the caller decides what that means).
    pub(super) fn exactly_one<T>(
        &self,
        key: &str,
        sources: Vec<Source<T>>,
    ) -> Result<Option<T>, ConfigError> {
        let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
        let listed = names.join(", ");
        if sources.iter().filter(|s| s.value.is_some()).count() > 1 {
            return Err(self.err(key, format!("set more than once: use one of {listed}")));
        }
        Ok(sources.into_iter().find_map(|s| s.value))
    }

    /// The contents of a secret file, without the line ending editors and `echo` leave at its
    /// end (`\n` or `\r\n`, repeated or not): the same rule for every secret file.
    pub(super) fn secret_file(&self, key: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
        let mut bytes = self.read(key, path)?;
        while bytes.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
            bytes.pop();
        }
        Ok(bytes)
    }

    /// A header name a deployment may choose: well-formed, and none that HTTP or portcullis'
    /// own decisions depend on.
    pub(super) fn header_name(
        &self,
        key: &str,
        value: &str,
    ) -> Result<http::HeaderName, ConfigError> {
        let parsed = http::HeaderName::from_bytes(value.as_bytes())
            .map_err(|_| self.err(key, "not a header name"))?;
        if crate::forward::is_reserved_name(parsed.as_str()) {
            return Err(self.err(
                key,
                format!("`{value}` is a header HTTP or portcullis itself relies on"),
            ));
        }
        Ok(parsed)
    }

    /// https everywhere, plain http only on loopback unless explicitly allowed.
    pub(super) fn scheme(&self, key: &str, url: &Url, allow_http: bool) -> Result<(), ConfigError> {
        match url.scheme() {
            "https" => Ok(()),
            "http" => {
                let loopback = match url.host() {
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                    None => false,
                };
                if loopback || allow_http {
                    Ok(())
                } else {
                    Err(self.err(
                        key,
                        "plain http is only accepted on loopback; use https (or set oidc.insecure_allow_http = true for a lab)",
                    ))
                }
            }
            other => Err(self.err(key, format!("scheme `{other}` is not supported"))),
        }
    }

    /// `<table>.user_claim` and friends, with their defaults.
    pub(super) fn claim_names(
        &self,
        table: &str,
        user: Option<OneOrMany>,
        email: Option<String>,
        groups: Option<String>,
    ) -> Result<ClaimNames, ConfigError> {
        let claim = |name: &str, v: Option<String>, default: &str| {
            let v = v.unwrap_or_else(|| default.to_string());
            if v.trim().is_empty() {
                return Err(self.err(format!("{table}.{name}"), "must not be empty"));
            }
            Ok(v)
        };
        let user = match user {
            None => vec!["sub".to_string()],
            Some(list) => list.as_slice().to_vec(),
        };
        if user.is_empty() {
            return Err(self.err(format!("{table}.user_claim"), "lists no claim"));
        }
        if let Some(i) = user.iter().position(|c| c.trim().is_empty()) {
            return Err(self.err(format!("{table}.user_claim[{i}]"), "must not be empty"));
        }
        Ok(ClaimNames {
            user,
            email: claim("email_claim", email, "email")?,
            groups: claim("groups_claim", groups, "groups")?,
        })
    }

    /// A list of audiences: none empty, and at least one when `required`.
    pub(super) fn audiences(
        &self,
        key: &str,
        list: &[String],
        required: bool,
    ) -> Result<(), ConfigError> {
        if required && list.is_empty() {
            return Err(self.err(key, "needs at least one audience"));
        }
        if let Some(i) = list.iter().position(|a| a.trim().is_empty()) {
            return Err(self.err(format!("{key}[{i}]"), "must not be empty"));
        }
        Ok(())
    }
}
