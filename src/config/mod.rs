//! Configuration: the TOML file model ([`file`]) checked into a [`Config`] the program can trust.
//!
//! One module per section of the file (`[server]` in [`server`], `[oidc]` in [`oidc`], …)
//! holds that section's validated model and the function that builds it from the file's
//! table; the checks several sections share live in `check`. Every error names the file and
//! the key path (`config.toml: session.secrets[0]: ...`), and no error message ever repeats a
//! secret's value.

mod bearer;
mod check;
mod client_auth;
mod file;
mod headers;
mod logging;
mod oidc;
mod redis;
mod routes;
mod server;
mod session;
mod upstream;

use std::fmt;
use std::path::Path;

use base64::Engine;

use crate::policy::{Requirements, RouteTable};
use crate::redirect::RedirectPolicy;
use check::Check;
use file::FileConfig;

pub use bearer::{Bearer, BearerIssuer, Dpop, IssuerKeys};
pub use client_auth::{ClientAuth, ClientIdentity, ClientKey, ProviderCa};
pub use headers::{Assertion, HeaderStyle, Headers};
pub use logging::{LogFormat, Logging};
pub use oidc::{
    ClaimNames, ClientAuthMethod, EndSessionMethod, Oidc, OidcProviders, Secret, DEFAULT_PROVIDER,
};
pub use redis::{
    shown as redis_url_shown, RedisSettings, RedisTopology, SessionStorage, ENV_REDIS_PASSWORD,
};
pub use server::{
    ClientCertHeader, ClientCerts, Listener, ListenerKind, Server, TlsListener,
    DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_HEADER_BYTES, MAX_HEADER_BYTES, MIN_HEADER_BYTES,
};
pub use session::{Session, SessionSecret};
pub use upstream::{Upstream, UpstreamProtocol};

/// Environment variable that supplies the OIDC client secret.
pub const ENV_CLIENT_SECRET: &str = "PORTCULLIS_OIDC_CLIENT_SECRET";
/// Environment variable that supplies the session secrets, comma-separated.
pub const ENV_SESSION_SECRETS: &str = "PORTCULLIS_SESSION_SECRETS";

/// The smallest session secret accepted: AES-256 wants 32 bytes of key material.
pub const MIN_SECRET_BYTES: usize = 32;

/// A configuration problem, located by file and key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as named when it was loaded.
    pub file: String,
    /// The key path (`session.secrets[0]`); empty for the file as a whole.
    pub key: String,
    /// What is wrong, never quoting a secret.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Where it came from, for messages.
    pub source: String,
    /// `[server]`
    pub server: Server,
    /// `[upstream]`
    pub upstream: Upstream,
    /// `[oidc]` or `[[oidc.providers]]`: browsers sign in. `None`: a resource server, whose
    /// callers all bring a bearer token or a client certificate.
    pub oidc: Option<OidcProviders>,
    /// `[session]`: always there with `[oidc]`; without it, only when its secrets key DPoP
    /// nonces.
    pub session: Option<Session>,
    /// `[redirects]`
    pub redirects: RedirectPolicy,
    /// `[headers]`
    pub headers: Headers,
    /// `[logging]`
    pub logging: Logging,
    /// `[bearer]`
    pub bearer: Bearer,
    /// `[[routes]]`, most specific first.
    pub routes: RouteTable,
    /// `[authorization]`: applies to every authenticated request, on top of route rules.
    pub authorization: Requirements,
    /// Every file this configuration was read from: the file itself (when loaded from one)
    /// and each file it names (secrets, keys, certificates). A change to any reloads it.
    pub files: Vec<std::path::PathBuf>,
}

impl Config {
    /// Reads and validates `path`, taking secrets from the environment where the file leaves them out.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: source.clone(),
            key: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        let mut config = Config::parse(&text, &source, &|name| std::env::var(name).ok())?;
        config.files.insert(0, path.to_path_buf());
        Ok(config)
    }

    /// Parses TOML `text`; `source` names it in errors; `env` looks up environment variables.
    pub fn parse(
        text: &str,
        source: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file = parse_file(text, source)?;
        validate(&Check::new(source, env), file)
    }

    /// A one-line description without secrets, for `portcullis check` and the start-up log.
    pub fn summary(&self) -> String {
        let listen: Vec<String> = self
            .server
            .listeners
            .iter()
            .map(|l| l.address.to_string())
            .collect();
        let login = match (&self.oidc, &self.session) {
            (Some(oidc), Some(session)) => format!(
                "{}; {} session secret(s); cookie {}",
                oidc.iter()
                    .map(|o| match oidc.len() {
                        1 => format!("issuer {}; client {}", o.issuer, o.client_id),
                        _ => format!(
                            "provider {}: issuer {}, client {}",
                            o.id, o.issuer, o.client_id
                        ),
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                session.secrets.len(),
                session.cookie_name,
            ),
            _ => "no browser sign-in (resource server)".to_string(),
        };
        format!(
            "listen {} -> upstream {}; {login}; {} other token issuer(s)",
            listen.join(","),
            self.upstream.url,
            self.bearer.issuers.len(),
        )
    }
}

impl Config {
    /// For a reload: puts back the running values of the keys that take effect only at the
    /// next start, and names those that changed. They are what pingora binds and sizes once
    /// (listen addresses, threads, connection bounds), the log set-up, and the DPoP replay
    /// cache, which a reload keeps so that no proof can be replayed across it. So the new
    /// configuration says what actually runs.
    pub fn keep_restart_only(&mut self, running: &Config) -> Vec<&'static str> {
        let changed = running.restart_only_changes(self);
        let (next, run) = (&mut self.server, &running.server);
        next.listeners.clone_from(&run.listeners);
        next.threads = run.threads;
        next.shutdown_grace = run.shutdown_grace;
        next.metrics_listen = run.metrics_listen;
        next.ext_authz_listen = run.ext_authz_listen;
        next.head_limits = run.head_limits;
        next.connection_limits = run.connection_limits;
        next.tls_handshake_timeout = run.tls_handshake_timeout;
        self.logging.clone_from(&running.logging);
        if let Some(dpop) = &mut self.bearer.dpop {
            dpop.replay_cache_entries = running.bearer.dpop_replay_cache_entries();
        }
        changed
    }

    /// The keys whose values in `next` differ from this running configuration's and take
    /// effect only at the next start.
    fn restart_only_changes(&self, next: &Config) -> Vec<&'static str> {
        let (a, b) = (&self.server, &next.server);
        let replay_cache = |c: &Config| c.bearer.dpop_replay_cache_entries();
        [
            (
                "server.listen / server.listeners",
                a.listeners != b.listeners,
            ),
            ("server.threads", a.threads != b.threads),
            (
                "server.shutdown_grace",
                a.shutdown_grace != b.shutdown_grace,
            ),
            (
                "server.metrics_listen",
                a.metrics_listen != b.metrics_listen,
            ),
            (
                "server.ext_authz_listen",
                a.ext_authz_listen != b.ext_authz_listen,
            ),
            (
                "server.header_timeout / server.max_header_bytes",
                a.head_limits != b.head_limits,
            ),
            (
                "server.max_connections / server.max_connections_per_client",
                a.connection_limits != b.connection_limits,
            ),
            (
                "server.tls_handshake_timeout",
                a.tls_handshake_timeout != b.tls_handshake_timeout,
            ),
            ("logging", self.logging != next.logging),
            (
                "bearer.dpop.replay_cache_entries",
                replay_cache(self) != replay_cache(next),
            ),
        ]
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(key, _)| key)
        .collect()
    }
}

fn parse_file(text: &str, source: &str) -> Result<FileConfig, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize::<_, FileConfig>(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let mut message = inner.message().to_string();
        let mut key = if path == "." { String::new() } else { path };
        // "unknown field `x`, expected ..." is about the key `x` inside the path.
        if let Some(rest) = message.strip_prefix("unknown field `") {
            if let Some((field, _)) = rest.split_once('`') {
                // serde_path_to_error already ends the path with the field; older versions did not.
                if !(key == field || key.ends_with(&format!(".{field}"))) {
                    key = if key.is_empty() {
                        field.to_string()
                    } else {
                        format!("{key}.{field}")
                    };
                }
                message = "unknown key".to_string();
            }
        }
        if let Some(span) = inner.span() {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            message = format!("{message} (line {line})");
        }
        ConfigError {
            file: source.to_string(),
            key,
            message,
        }
    })
}

/// Each section by its own validator, in the order of the file; `[bearer]` after `[oidc]`,
/// whose issuer and client id it must not repeat.
fn validate(check: &Check, f: FileConfig) -> Result<Config, ConfigError> {
    let server = server::validate(check, f.server)?;
    let upstream = upstream::validate(check, f.upstream)?;
    let oidc = f.oidc.map(|o| oidc::validate(check, o)).transpose()?;
    let session = session::validate(check, f.session, oidc.is_some())?;
    let bearer = bearer::validate(check, f.bearer, oidc.as_ref(), session.as_ref())?;
    let headers = headers::validate(check, f.headers, &upstream)?;
    if oidc.is_none() && bearer.issuers.is_empty() && !server.takes_client_certs() {
        return Err(check.err(
            "",
            "no caller could ever sign in: configure [oidc] (browsers), [[bearer.issuers]] \
             (tokens) or client certificates (server.listeners client_certs, or \
             server.client_cert_header)",
        ));
    }
    Ok(Config {
        source: check.source.to_string(),
        server,
        upstream,
        session,
        redirects: RedirectPolicy::new(&f.redirects.allowed_domains)
            .map_err(|reason| check.err("redirects.allowed_domains", reason))?,
        headers,
        logging: logging::validate(check, f.logging)?,
        bearer,
        routes: routes::routes(check, f.routes, oidc.as_ref())?,
        authorization: routes::authorization(check, f.authorization)?,
        oidc,
        files: check.files(),
    })
}

/// Secrets are base64 in either alphabet, padded or not.
pub fn decode_secret(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let t = text.trim();
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(t).ok())
}

/// A fresh session secret in the form the configuration expects.
pub fn generate_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; MIN_SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A minimal valid configuration for unit tests across the crate; `secrets` is the TOML list
/// body of `session.secrets` (quoted base64 strings, comma-separated).
#[cfg(test)]
pub(crate) fn for_tests(secrets: &str) -> Config {
    let text = format!(
        r#"
[upstream]
url = "http://127.0.0.1:1"
[oidc]
issuer = "https://idp"
client_id = "c"
client_secret = "s"
redirect_url = "https://app/oauth2/callback"
[session]
secrets = [{secrets}]
"#
    );
    match Config::parse(&text, "test.toml", &|_| None) {
        Ok(c) => c,
        Err(e) => panic!("test config: {e}"),
    }
}

#[cfg(test)]
mod tests;
