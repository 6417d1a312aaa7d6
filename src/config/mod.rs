//! Configuration: the TOML file model ([`file`]) checked into a [`Config`] the program can trust.
//!
//! Every error names the file and the key path (`config.toml: session.secrets[0]: ...`), and no
//! error message ever repeats a secret's value.

mod file;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use ipnet::IpNet;
use url::Url;

use crate::policy::{Access, DomainRule, Requirements, RouteSpec, RouteTable, TokenKind};
use crate::redirect::RedirectPolicy;
use file::FileConfig;

/// Environment variable that supplies the OIDC client secret.
pub const ENV_CLIENT_SECRET: &str = "PORTCULLIS_OIDC_CLIENT_SECRET";
/// Environment variable that supplies the session secrets, comma-separated.
pub const ENV_SESSION_SECRETS: &str = "PORTCULLIS_SESSION_SECRETS";

/// The smallest session secret accepted: AES-256 wants 32 bytes of key material.
pub const MIN_SECRET_BYTES: usize = 32;

/// `server.header_timeout` by default: longer than a slow client needs for a head, and longer
/// than the 10 s Chromium keeps a preconnected socket unused (a shorter bound could close one
/// just as the browser starts sending on it).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// `server.max_connections` by default: about 100 MiB of idle connections (25 KiB each), well
/// inside the Helm chart's 256 MiB limit.
const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// `server.max_connections_per_client` by default: a browser opens 6 per host, so this leaves
/// room for some 80 people behind one NAT address. Trusted proxies are not bound per address.
const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 512;

/// `server.max_header_bytes` by default: about twice the largest session cookie portcullis
/// writes.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 128 * 1024;
/// The largest session (16 cookies of 4000 bytes) plus 16 KiB for everything else: a smaller
/// limit would lock out users whose session grew large.
pub const MIN_HEADER_BYTES: usize =
    crate::session::chunks::MAX_CHUNKS * crate::session::chunks::MAX_COOKIE_BYTES + 16 * 1024;
/// pingora refuses larger heads itself.
pub const MAX_HEADER_BYTES: usize = 1024 * 1024 - 1;

/// A configuration problem, located by file and key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub key: String,
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

/// A value that must never reach a log line or an error message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Where it came from, for messages.
    pub source: String,
    pub server: Server,
    pub upstream: Upstream,
    pub oidc: Oidc,
    pub session: Session,
    pub redirects: RedirectPolicy,
    pub headers: Headers,
    pub logging: Logging,
    pub bearer: Bearer,
    pub routes: RouteTable,
    /// `[authorization]`: applies to every authenticated request, on top of route rules.
    pub authorization: Requirements,
}

#[derive(Debug)]
pub struct Server {
    pub listen: Vec<SocketAddr>,
    pub trusted_proxies: Vec<IpNet>,
    pub threads: usize,
    pub shutdown_grace: Duration,
    /// Where `/metrics` is served: its own address, so that the users the proxy protects
    /// cannot read it through the proxy's port.
    pub metrics_listen: Option<SocketAddr>,
    /// Bounds on each request head, enforced before pingora parses it.
    pub head_limits: crate::listener::Limits,
    /// Bounds on open connections, enforced at accept.
    pub connection_limits: crate::listener::ConnectionLimits,
}

impl Server {
    /// Whether a peer's forwarding headers (`X-Forwarded-*`, `X-Original-URI`) may be believed.
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        let peer = canonical_ip(peer);
        self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }
}

/// `::ffff:10.0.0.1` and `10.0.0.1` are one peer.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub url: Url,
    /// `host:port` to connect to.
    pub address: String,
    /// The address itself when the host is an IP literal: no lookup per request.
    pub ip: Option<SocketAddr>,
    pub tls: bool,
    /// Server name for TLS.
    pub sni: String,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

/// Which claims name the user, the email and the groups.
#[derive(Debug, Clone)]
pub struct ClaimNames {
    pub user: String,
    pub email: String,
    pub groups: String,
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMethod {
    Basic,
    Post,
}

#[derive(Debug)]
pub struct Oidc {
    /// Exactly as configured; compared to `iss` byte for byte.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub redirect_url: Url,
    /// The path of `redirect_url`: where the IdP sends the browser back.
    pub callback_path: String,
    pub scopes: Vec<String>,
    pub claims: ClaimNames,
    pub auth_method: Option<ClientAuthMethod>,
    pub http_timeout: Duration,
    pub leeway: Duration,
    /// How often the provider's discovery document is fetched to notice an outage (and the
    /// end of one) before a user does.
    pub health_check_interval: Duration,
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

#[derive(Debug)]
pub struct Session {
    pub cookie_name: String,
    /// Decoded secrets; the first seals.
    pub secrets: Vec<SessionSecret>,
    pub lifetime: Duration,
    pub secure: bool,
    pub same_site: cookie::SameSite,
    pub domain: Option<String>,
}

/// Decoded session secret bytes (at least [`MIN_SECRET_BYTES`]).
#[derive(Clone)]
pub struct SessionSecret(pub Vec<u8>);

impl fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSecret([redacted])")
    }
}

/// Bearer-token acceptance.
#[derive(Debug)]
pub struct Bearer {
    /// Audiences accepted on the login issuer's access tokens.
    pub audiences: Vec<String>,
    pub accept_id_tokens: bool,
    pub leeway: Duration,
    pub cache_entries: usize,
    pub issuers: Vec<BearerIssuer>,
}

#[derive(Debug)]
pub struct BearerIssuer {
    /// Exactly as configured; compared to `iss` byte for byte.
    pub issuer: String,
    pub audiences: Vec<String>,
    pub keys: IssuerKeys,
    pub claims: ClaimNames,
}

/// Where an extra issuer's verification keys come from.
pub enum IssuerKeys {
    Discovery,
    JwksUrl(String),
    /// Public keys from files, or an HMAC shared secret.
    Static(std::sync::Arc<crate::jwt::keys::KeySet>),
}

impl fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IssuerKeys::Discovery => f.write_str("Discovery"),
            IssuerKeys::JwksUrl(u) => write!(f, "JwksUrl({u})"),
            IssuerKeys::Static(k) => write!(f, "Static({} key(s))", k.len()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Headers {
    pub pass_access_token: bool,
    pub pass_id_token_as_bearer: bool,
    /// What the identity headers portcullis sets are called.
    pub names: crate::forward::IdentityNames,
    /// More names removed from every client request, normalised (lower case, `-` for `_`).
    pub strip: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Auto,
    Json,
    Text,
}

#[derive(Debug, Clone)]
pub struct Logging {
    pub level: String,
    pub format: LogFormat,
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
        Config::parse(&text, &source, &|name| std::env::var(name).ok())
    }

    /// Parses TOML `text`; `source` names it in errors; `env` looks up environment variables.
    pub fn parse(
        text: &str,
        source: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file = parse_file(text, source)?;
        Validator { source, env }.config(file)
    }

    /// A one-line description without secrets, for `portcullis check` and the start-up log.
    pub fn summary(&self) -> String {
        let listen: Vec<String> = self.server.listen.iter().map(|a| a.to_string()).collect();
        format!(
            "listen {} -> upstream {}; issuer {}; client {}; {} session secret(s); cookie {}",
            listen.join(","),
            self.upstream.url,
            self.oidc.issuer,
            self.oidc.client_id,
            self.session.secrets.len(),
            self.session.cookie_name,
        )
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

struct Validator<'a> {
    source: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Validator<'_> {
    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.source.to_string(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// A positive duration no larger than `max` (absurd values would overflow clocks or switch
    /// checks off: a leeway of years accepts any expired token).
    fn duration(
        &self,
        key: &str,
        value: Option<&str>,
        default: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        match value {
            None => Ok(default),
            Some(text) => {
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
        }
    }

    fn config(&self, f: FileConfig) -> Result<Config, ConfigError> {
        let server = self.server(f.server)?;
        let upstream = self.upstream(f.upstream)?;
        let oidc = self.oidc(f.oidc)?;
        let session = self.session(f.session)?;
        let redirects = self.redirects(f.redirects)?;
        let headers = self.headers(f.headers)?;
        let logging = self.logging(f.logging)?;
        let bearer = self.bearer(f.bearer, &oidc)?;
        let routes = self.routes(f.routes)?;
        let authorization = self.requirements(
            "authorization",
            Vec::new(),
            f.authorization.allowed_groups,
            f.authorization.allowed_emails,
            f.authorization.allowed_email_domains,
            [
                "",
                "allowed_groups",
                "allowed_emails",
                "allowed_email_domains",
            ],
        )?;
        Ok(Config {
            source: self.source.to_string(),
            server,
            upstream,
            oidc,
            session,
            redirects,
            headers,
            logging,
            bearer,
            routes,
            authorization,
        })
    }

    fn server(&self, s: file::ServerFile) -> Result<Server, ConfigError> {
        let listen_raw = s.listen.into_vec();
        if listen_raw.is_empty() {
            return Err(self.err("server.listen", "needs at least one address"));
        }
        let mut listen = Vec::new();
        for (i, a) in listen_raw.iter().enumerate() {
            let addr: SocketAddr = a.parse().map_err(|_| {
                self.err(
                    format!("server.listen[{i}]"),
                    format!("`{a}` is not an address like 127.0.0.1:4180 or [::1]:4180"),
                )
            })?;
            listen.push(addr);
        }
        let mut trusted_proxies = Vec::new();
        for (i, p) in s.trusted_proxies.iter().enumerate() {
            let net = p
                .parse::<IpNet>()
                .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    self.err(
                        format!("server.trusted_proxies[{i}]"),
                        format!("`{p}` is not a CIDR like 10.0.0.0/8 or an IP address"),
                    )
                })?;
            trusted_proxies.push(net.trunc());
        }
        let threads = match s.threads {
            Some(0) => return Err(self.err("server.threads", "must be at least 1")),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let shutdown_grace = self.duration(
            "server.shutdown_grace",
            s.shutdown_grace.as_deref(),
            Duration::from_secs(5),
            Duration::from_secs(3600),
        )?;
        let metrics_listen = match s.metrics_listen.as_deref() {
            None => None,
            Some(a) => {
                let addr: SocketAddr = a.parse().map_err(|_| {
                    self.err(
                        "server.metrics_listen",
                        format!("`{a}` is not an address like 127.0.0.1:9180 or [::1]:9180"),
                    )
                })?;
                if listen.iter().any(|l| {
                    l.port() == addr.port()
                        && (l.ip() == addr.ip()
                            || l.ip().is_unspecified()
                            || addr.ip().is_unspecified())
                }) {
                    return Err(self.err(
                        "server.metrics_listen",
                        format!("`{a}` overlaps server.listen: metrics need their own port"),
                    ));
                }
                Some(addr)
            }
        };
        let header_timeout = self.duration(
            "server.header_timeout",
            s.header_timeout.as_deref(),
            DEFAULT_HEADER_TIMEOUT,
            Duration::from_secs(600),
        )?;
        let max_header_bytes = s.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES);
        if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&max_header_bytes) {
            return Err(self.err(
                "server.max_header_bytes",
                format!(
                    "must be between {MIN_HEADER_BYTES} (the largest session cookie portcullis \
                     writes, with room for other headers) and {MAX_HEADER_BYTES} (pingora's limit)"
                ),
            ));
        }
        let total = s.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if !(1..=1_000_000).contains(&total) {
            return Err(self.err("server.max_connections", "must be between 1 and 1000000"));
        }
        let per_client = s
            .max_connections_per_client
            .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_CLIENT);
        if per_client > total {
            return Err(self.err(
                "server.max_connections_per_client",
                "must be at most server.max_connections (0 for no bound per address)",
            ));
        }
        Ok(Server {
            listen,
            trusted_proxies,
            threads,
            shutdown_grace,
            metrics_listen,
            head_limits: crate::listener::Limits {
                header_timeout,
                max_header_bytes,
            },
            connection_limits: crate::listener::ConnectionLimits {
                total,
                per_client: per_client.min(total),
            },
        })
    }

    fn upstream(&self, u: file::UpstreamFile) -> Result<Upstream, ConfigError> {
        let url =
            Url::parse(&u.url).map_err(|e| self.err("upstream.url", format!("not a URL ({e})")))?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => {
                return Err(self.err(
                    "upstream.url",
                    format!("scheme `{other}` is not supported; use http or https"),
                ))
            }
        };
        let host = url
            .host_str()
            .ok_or_else(|| self.err("upstream.url", "has no host"))?
            .to_string();
        if !url.username().is_empty() || url.password().is_some() {
            return Err(self.err("upstream.url", "must not carry credentials"));
        }
        if url.path() != "/" || url.query().is_some() {
            return Err(self.err(
                "upstream.url",
                "must be scheme://host[:port] only; paths are forwarded as requested",
            ));
        }
        let port = url
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        let address = format!("{host}:{port}");
        let sni = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(Upstream {
            connect_timeout: self.duration(
                "upstream.connect_timeout",
                u.connect_timeout.as_deref(),
                Duration::from_secs(5),
                Duration::from_secs(300),
            )?,
            read_timeout: self.duration(
                "upstream.read_timeout",
                u.read_timeout.as_deref(),
                Duration::from_secs(60),
                Duration::from_secs(3600),
            )?,
            url,
            ip: address.parse().ok(),
            address,
            tls,
            sni,
        })
    }

    fn headers(&self, h: file::HeadersFile) -> Result<Headers, ConfigError> {
        use crate::forward::IdentityNames;
        let defaults = IdentityNames::default();
        let n = h.names;
        let name = |key: &str, value: Option<String>, default: &http::HeaderName| match value {
            Some(value) => self.header_name(&format!("headers.names.{key}"), &value),
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
                return Err(self.err("headers.names", format!("`{a}` names two headers")));
            }
        }
        let mut strip = Vec::with_capacity(h.strip.len());
        for (i, value) in h.strip.iter().enumerate() {
            let parsed = self.header_name(&format!("headers.strip[{i}]"), value)?;
            strip.push(parsed.as_str().replace('_', "-"));
        }
        Ok(Headers {
            pass_access_token: h.pass_access_token,
            pass_id_token_as_bearer: h.pass_id_token_as_bearer,
            names,
            strip,
        })
    }

    /// The contents of a secret file, without the line ending editors and `echo` leave at its
    /// end (`\n` or `\r\n`, repeated or not): the same rule for every secret file.
    fn secret_file(&self, key: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
        let mut bytes =
            std::fs::read(path).map_err(|e| self.err(key, format!("cannot read `{path}`: {e}")))?;
        while bytes.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
            bytes.pop();
        }
        Ok(bytes)
    }

    /// A header name a deployment may choose: well-formed, and none that HTTP or portcullis'
    /// own decisions depend on.
    fn header_name(&self, key: &str, value: &str) -> Result<http::HeaderName, ConfigError> {
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

    fn oidc(&self, o: file::OidcFile) -> Result<Oidc, ConfigError> {
        let issuer_url = Url::parse(&o.issuer)
            .map_err(|e| self.err("oidc.issuer", format!("not a URL ({e})")))?;
        self.check_scheme("oidc.issuer", &issuer_url, o.insecure_allow_http)?;
        if issuer_url.query().is_some() || issuer_url.fragment().is_some() {
            return Err(self.err("oidc.issuer", "must not have a query or fragment"));
        }
        if o.client_id.trim().is_empty() {
            return Err(self.err("oidc.client_id", "must not be empty"));
        }
        let client_secret = self.client_secret(&o)?;
        let redirect_url = Url::parse(&o.redirect_url)
            .map_err(|e| self.err("oidc.redirect_url", format!("not an absolute URL ({e})")))?;
        if !matches!(redirect_url.scheme(), "http" | "https") || redirect_url.host().is_none() {
            return Err(self.err("oidc.redirect_url", "must be an absolute http(s) URL"));
        }
        if redirect_url.query().is_some() || redirect_url.fragment().is_some() {
            return Err(self.err("oidc.redirect_url", "must not have a query or fragment"));
        }
        let callback_path = redirect_url.path().to_string();
        if crate::classify::is_reserved_non_callback(&callback_path) {
            return Err(self.err(
                "oidc.redirect_url",
                format!("path `{callback_path}` collides with a built-in endpoint"),
            ));
        }
        let scopes = o
            .scopes
            .unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]);
        if !scopes.iter().any(|s| s == "openid") {
            return Err(self.err("oidc.scopes", "must include \"openid\""));
        }
        for (i, s) in scopes.iter().enumerate() {
            if s.is_empty()
                || s.chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '"')
            {
                return Err(self.err(format!("oidc.scopes[{i}]"), "is not a valid scope token"));
            }
        }
        let claims = self.claim_names(
            "oidc",
            o.user_claim.clone(),
            o.email_claim.clone(),
            o.groups_claim.clone(),
        )?;
        let auth_method = match o.token_endpoint_auth_method.as_deref() {
            None => None,
            Some("client_secret_basic") => Some(ClientAuthMethod::Basic),
            Some("client_secret_post") => Some(ClientAuthMethod::Post),
            Some(other) => {
                return Err(self.err(
                    "oidc.token_endpoint_auth_method",
                    format!(
                        "`{other}` is not supported; use client_secret_basic or client_secret_post"
                    ),
                ))
            }
        };
        Ok(Oidc {
            issuer: o.issuer.clone(),
            client_id: o.client_id,
            client_secret,
            redirect_url,
            callback_path,
            scopes,
            claims,
            auth_method,
            http_timeout: self.duration(
                "oidc.http_timeout",
                o.http_timeout.as_deref(),
                Duration::from_secs(10),
                Duration::from_secs(60),
            )?,
            leeway: match o.leeway.as_deref() {
                Some("0") | Some("0s") => Duration::ZERO,
                other => self.duration(
                    "oidc.leeway",
                    other,
                    Duration::from_secs(60),
                    Duration::from_secs(300),
                )?,
            },
            health_check_interval: self.duration(
                "oidc.health_check_interval",
                o.health_check_interval.as_deref(),
                Duration::from_secs(15),
                Duration::from_secs(3600),
            )?,
            end_session_method: o.end_session_method.unwrap_or_default(),
        })
    }

    /// `<table>.user_claim` and friends, with their defaults.
    fn claim_names(
        &self,
        table: &str,
        user: Option<String>,
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
        Ok(ClaimNames {
            user: claim("user_claim", user, "sub")?,
            email: claim("email_claim", email, "email")?,
            groups: claim("groups_claim", groups, "groups")?,
        })
    }

    /// https everywhere, plain http only on loopback unless explicitly allowed.
    fn check_scheme(&self, key: &str, url: &Url, allow_http: bool) -> Result<(), ConfigError> {
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

    fn client_secret(&self, o: &file::OidcFile) -> Result<Secret, ConfigError> {
        let from_env = (self.env)(ENV_CLIENT_SECRET);
        let given = [
            o.client_secret.is_some(),
            o.client_secret_file.is_some(),
            from_env.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given > 1 {
            return Err(self.err(
                "oidc.client_secret",
                format!("set more than once: use one of client_secret, client_secret_file or {ENV_CLIENT_SECRET}"),
            ));
        }
        let secret = if let Some(s) = &o.client_secret {
            s.clone()
        } else if let Some(path) = &o.client_secret_file {
            let bytes = self.secret_file("oidc.client_secret_file", path)?;
            String::from_utf8(bytes)
                .map_err(|_| self.err("oidc.client_secret_file", "is not UTF-8 text"))?
        } else if let Some(s) = from_env {
            s
        } else {
            return Err(self.err(
                "oidc.client_secret",
                format!("missing: set client_secret, client_secret_file or {ENV_CLIENT_SECRET}"),
            ));
        };
        if secret.is_empty() {
            return Err(self.err("oidc.client_secret", "must not be empty"));
        }
        Ok(Secret(secret))
    }

    fn session(&self, s: file::SessionFile) -> Result<Session, ConfigError> {
        let cookie_name = s.cookie_name.unwrap_or_else(|| "_portcullis".into());
        if cookie_name.is_empty()
            || !cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        {
            return Err(self.err(
                "session.cookie_name",
                "use letters, digits, `_`, `-` and `.` only",
            ));
        }
        // Room for the suffixes of chunks (`_15`) and login cookies (`_flow_` + 12).
        if cookie_name.len() > 100 {
            return Err(self.err("session.cookie_name", "must be at most 100 characters"));
        }
        let env_secrets = (self.env)(ENV_SESSION_SECRETS);
        let (key, raw): (&str, Vec<String>) = match (s.secrets.is_empty(), env_secrets) {
            (false, Some(_)) => {
                return Err(self.err(
                    "session.secrets",
                    format!("set both in the file and in {ENV_SESSION_SECRETS}; use one"),
                ))
            }
            (false, None) => ("session.secrets", s.secrets),
            (true, Some(env)) => (
                ENV_SESSION_SECRETS,
                env.split(',').map(|p| p.trim().to_string()).collect(),
            ),
            (true, None) => {
                return Err(self.err(
                    "session.secrets",
                    format!("missing: generate one with `portcullis secret` and set it here or in {ENV_SESSION_SECRETS}"),
                ))
            }
        };
        let mut secrets = Vec::new();
        for (i, text) in raw.iter().enumerate() {
            let bytes = decode_secret(text).ok_or_else(|| {
                self.err(
                    format!("{key}[{i}]"),
                    "is not base64 (use `portcullis secret`)",
                )
            })?;
            if bytes.len() < MIN_SECRET_BYTES {
                return Err(self.err(
                    format!("{key}[{i}]"),
                    format!("must decode to at least {MIN_SECRET_BYTES} bytes"),
                ));
            }
            secrets.push(SessionSecret(bytes));
        }
        let lifetime = self.duration(
            "session.lifetime",
            s.lifetime.as_deref(),
            Duration::from_secs(12 * 3600),
            Duration::from_secs(90 * 24 * 3600),
        )?;
        let secure = s.secure.unwrap_or(true);
        let same_site = match s.same_site.as_deref().unwrap_or("lax") {
            "lax" => cookie::SameSite::Lax,
            "strict" => cookie::SameSite::Strict,
            "none" => {
                if !secure {
                    return Err(self.err(
                        "session.same_site",
                        "\"none\" requires session.secure = true (browsers drop it otherwise)",
                    ));
                }
                cookie::SameSite::None
            }
            other => {
                return Err(self.err(
                    "session.same_site",
                    format!("`{other}` is not one of lax, strict, none"),
                ))
            }
        };
        let domain = match s.domain {
            None => None,
            Some(d) => {
                let d = d.trim().to_ascii_lowercase();
                if d.is_empty()
                    || !d
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
                {
                    return Err(self.err("session.domain", "is not a domain name"));
                }
                Some(d)
            }
        };
        // Browsers drop prefixed cookies whose attributes break the prefix's promise; the
        // session would silently never stick.
        if cookie_name.starts_with("__Host-") && (!secure || domain.is_some()) {
            return Err(self.err(
                "session.cookie_name",
                "a __Host- cookie needs session.secure = true and no session.domain",
            ));
        }
        if cookie_name.starts_with("__Secure-") && !secure {
            return Err(self.err(
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
        })
    }

    fn redirects(&self, r: file::RedirectsFile) -> Result<RedirectPolicy, ConfigError> {
        RedirectPolicy::new(&r.allowed_domains)
            .map_err(|reason| self.err("redirects.allowed_domains", reason))
    }

    fn bearer(&self, b: file::BearerFile, oidc: &Oidc) -> Result<Bearer, ConfigError> {
        self.audiences("bearer.audiences", &b.audiences, false)?;
        if let Some(i) = b.audiences.iter().position(|a| *a == oidc.client_id) {
            return Err(self.err(
                format!("bearer.audiences[{i}]"),
                "is the client id: ID tokens are governed by bearer.accept_id_tokens",
            ));
        }
        let leeway = match b.leeway.as_deref() {
            Some("0") | Some("0s") => Duration::ZERO,
            other => self.duration(
                "bearer.leeway",
                other,
                Duration::from_secs(60),
                Duration::from_secs(300),
            )?,
        };
        let cache_entries = match b.cache_entries {
            Some(n) if n > 10_000_000 => {
                return Err(self.err("bearer.cache_entries", "must be at most 10000000"))
            }
            Some(n) => n,
            None => 10_000,
        };
        let mut issuers: Vec<BearerIssuer> = Vec::new();
        for (i, f) in b.issuers.into_iter().enumerate() {
            let at = |k: &str| format!("bearer.issuers[{i}].{k}");
            let url = Url::parse(&f.issuer)
                .map_err(|e| self.err(at("issuer"), format!("not a URL ({e})")))?;
            if f.issuer == oidc.issuer || issuers.iter().any(|other| other.issuer == f.issuer) {
                return Err(self.err(
                    at("issuer"),
                    "appears twice (the login issuer is configured by [oidc] and [bearer] audiences)",
                ));
            }
            self.audiences(&at("audiences"), &f.audiences, true)?;
            let sources = [
                f.jwks_url.is_some(),
                f.public_keys.is_some(),
                f.shared_secret.is_some() || f.shared_secret_file.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if sources > 1 || (f.shared_secret.is_some() && f.shared_secret_file.is_some()) {
                return Err(self.err(
                    at("jwks_url"),
                    "give one key source: jwks_url, public_keys, shared_secret or shared_secret_file (none means discovery)",
                ));
            }
            let keys = if let Some(u) = f.jwks_url {
                let parsed = Url::parse(&u)
                    .map_err(|e| self.err(at("jwks_url"), format!("not a URL ({e})")))?;
                self.check_scheme(&at("jwks_url"), &parsed, f.insecure_allow_http)?;
                IssuerKeys::JwksUrl(u)
            } else if let Some(paths) = f.public_keys {
                if paths.is_empty() {
                    return Err(self.err(at("public_keys"), "lists no file"));
                }
                let paths: Vec<std::path::PathBuf> = paths.iter().map(Into::into).collect();
                let set = crate::jwt::keys::KeySet::from_files(&paths)
                    .map_err(|e| self.err(at("public_keys"), e))?;
                IssuerKeys::Static(std::sync::Arc::new(set))
            } else if let Some(secret) = f.shared_secret {
                IssuerKeys::Static(std::sync::Arc::new(
                    self.shared_secret(&at("shared_secret"), secret.into_bytes())?,
                ))
            } else if let Some(path) = f.shared_secret_file {
                let bytes = self.secret_file(&at("shared_secret_file"), &path)?;
                IssuerKeys::Static(std::sync::Arc::new(
                    self.shared_secret(&at("shared_secret_file"), bytes)?,
                ))
            } else {
                self.check_scheme(&at("issuer"), &url, f.insecure_allow_http)?;
                IssuerKeys::Discovery
            };
            let claims = self.claim_names(
                &format!("bearer.issuers[{i}]"),
                f.user_claim,
                f.email_claim,
                f.groups_claim,
            )?;
            issuers.push(BearerIssuer {
                issuer: f.issuer,
                audiences: f.audiences,
                keys,
                claims,
            });
        }
        Ok(Bearer {
            audiences: b.audiences,
            accept_id_tokens: b.accept_id_tokens.unwrap_or(false),
            leeway,
            cache_entries,
            issuers,
        })
    }

    fn routes(&self, routes: Vec<file::RouteFile>) -> Result<RouteTable, ConfigError> {
        let mut specs = Vec::new();
        for (i, r) in routes.into_iter().enumerate() {
            let table = format!("routes[{i}]");
            let at = |k: &str| format!("{table}.{k}");
            let mut methods = Vec::new();
            for (j, m) in r.methods.iter().enumerate() {
                let method =
                    http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                        self.err(
                            format!("{table}.methods[{j}]"),
                            format!("`{m}` is not an HTTP method"),
                        )
                    })?;
                methods.push(method);
            }
            let token_kind = match r.token_type.as_deref() {
                None | Some("any") => TokenKind::Any,
                Some("access") => TokenKind::Access,
                Some("id") => TokenKind::Id,
                Some(other) => {
                    return Err(self.err(
                        at("token_type"),
                        format!("`{other}` is not one of any, access, id"),
                    ))
                }
            };
            if token_kind == TokenKind::Id && !r.scopes.is_empty() {
                return Err(self.err(
                    at("scopes"),
                    "ID tokens carry no scopes: token_type = \"id\" with scopes can never be met",
                ));
            }
            let has_rules = !(r.scopes.is_empty()
                && r.groups.is_empty()
                && r.emails.is_empty()
                && r.email_domains.is_empty());
            let access = match r.policy.as_deref() {
                Some("public") if has_rules => {
                    return Err(self.err(
                        at("policy"),
                        "a public route cannot also require scopes, groups or emails",
                    ))
                }
                Some("public") => Access::Public,
                None | Some("authenticated") => Access::Authenticated(self.requirements(
                    &table,
                    r.scopes,
                    r.groups,
                    r.emails,
                    r.email_domains,
                    ["scopes", "groups", "emails", "email_domains"],
                )?),
                Some(other) => {
                    return Err(self.err(
                        at("policy"),
                        format!("`{other}` is not one of public, authenticated"),
                    ))
                }
            };
            if r.path.starts_with(crate::classify::RESERVED_PREFIX) {
                return Err(self.err(
                    at("path"),
                    "/oauth2/ belongs to portcullis; no route applies there",
                ));
            }
            specs.push(RouteSpec {
                path: r.path,
                exact: r.exact,
                methods,
                host: r.host,
                access,
                token_kind,
            });
        }
        RouteTable::new(specs).map_err(|(i, reason)| self.err(format!("routes[{i}]"), reason))
    }

    /// Requirements from lists; `names` are the keys of scopes, groups, emails, domains.
    fn requirements(
        &self,
        table: &str,
        scopes: Vec<String>,
        groups: Vec<String>,
        emails: Vec<String>,
        domains: Vec<String>,
        names: [&str; 4],
    ) -> Result<Requirements, ConfigError> {
        let check_list = |name: &str, list: &[String]| -> Result<(), ConfigError> {
            match list
                .iter()
                .position(|v| v.trim().is_empty() || v.chars().any(char::is_whitespace))
            {
                Some(i) => Err(self.err(
                    format!("{table}.{name}[{i}]"),
                    "must be one word, not empty",
                )),
                None => Ok(()),
            }
        };
        check_list(names[0], &scopes)?;
        // RFC 6749 §3.3 scope-token: printable ASCII without `"` and `\` (they are quoted into
        // WWW-Authenticate).
        if let Some(i) = scopes.iter().position(|s| {
            !s.bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
        }) {
            return Err(self.err(format!("{table}.{}[{i}]", names[0]), "is not a valid scope"));
        }
        // Group names may have spaces ("Domain Admins") but travel comma-joined: one with a
        // comma could never match (it is dropped from identities for that reason).
        if let Some(i) = groups
            .iter()
            .position(|g| g.trim().is_empty() || g.contains(',') || g.chars().any(char::is_control))
        {
            return Err(self.err(
                format!("{table}.{}[{i}]", names[1]),
                "must be a group name: not empty, no comma",
            ));
        }
        let mut parsed_emails = Vec::new();
        for (i, e) in emails.iter().enumerate() {
            let (address, _) = crate::policy::parse_email(e).ok_or_else(|| {
                self.err(
                    format!("{table}.{}[{i}]", names[2]),
                    "is not an email address",
                )
            })?;
            parsed_emails.push(address);
        }
        let mut email_domains = Vec::new();
        for (i, d) in domains.iter().enumerate() {
            email_domains.push(
                DomainRule::parse(d)
                    .map_err(|e| self.err(format!("{table}.{}[{i}]", names[3]), e))?,
            );
        }
        Ok(Requirements {
            scopes,
            groups,
            emails: parsed_emails,
            email_domains,
        })
    }

    fn audiences(&self, key: &str, list: &[String], required: bool) -> Result<(), ConfigError> {
        if required && list.is_empty() {
            return Err(self.err(key, "needs at least one audience"));
        }
        if let Some(i) = list.iter().position(|a| a.trim().is_empty()) {
            return Err(self.err(format!("{key}[{i}]"), "must not be empty"));
        }
        Ok(())
    }

    /// HMAC keys shorter than the hash are guessable; RFC 7518 §3.2 asks for at least 256 bits.
    fn shared_secret(
        &self,
        key: &str,
        secret: Vec<u8>,
    ) -> Result<crate::jwt::keys::KeySet, ConfigError> {
        if secret.len() < 32 {
            return Err(self.err(key, "must be at least 32 bytes"));
        }
        Ok(crate::jwt::keys::KeySet::shared_secret(&secret))
    }

    fn logging(&self, l: file::LoggingFile) -> Result<Logging, ConfigError> {
        let format = match l.format.as_deref().unwrap_or("auto") {
            "auto" => LogFormat::Auto,
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            other => {
                return Err(self.err(
                    "logging.format",
                    format!("`{other}` is not one of auto, json, text"),
                ))
            }
        };
        let level = l.level.unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            return Err(self.err("logging.level", format!("`{level}` is not a log filter")));
        }
        Ok(Logging { level, format })
    }
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
mod tests {
    use super::*;

    const SECRET: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"; // 32 bytes

    fn base() -> String {
        format!(
            r#"
[server]
listen = "127.0.0.1:4180"
[upstream]
url = "http://127.0.0.1:8080"
[oidc]
issuer = "https://idp.example.com"
client_id = "portcullis"
client_secret = "s3cr3t-value"
redirect_url = "https://app.example.com/oauth2/callback"
[session]
secrets = ["{SECRET}"]
"#
        )
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "config.toml", &|_| None)
    }

    /// The base config with `line` added to `[server]`.
    fn with_server_line(line: &str) -> Result<Config, ConfigError> {
        parse(&base().replace(
            "listen = \"127.0.0.1:4180\"",
            &format!("listen = \"127.0.0.1:4180\"\n{line}"),
        ))
    }

    #[test]
    fn connection_limits_have_defaults_and_bounds() {
        let limits = parse(&base()).unwrap().server.connection_limits;
        assert_eq!((limits.total, limits.per_client), (4096, 512));
        let with = |lines: &str| base().replace("[server]", &format!("[server]\n{lines}"));
        let l = parse(&with(
            "max_connections = 100\nmax_connections_per_client = 0",
        ))
        .unwrap()
        .server
        .connection_limits;
        assert_eq!((l.total, l.per_client), (100, 0));
        for (lines, key) in [
            ("max_connections = 0", "server.max_connections"),
            ("max_connections = 100", "server.max_connections_per_client"),
            (
                "max_connections = 10\nmax_connections_per_client = 11",
                "server.max_connections_per_client",
            ),
        ] {
            let e = parse(&with(lines)).unwrap_err().to_string();
            assert!(e.contains(key), "{lines}: {e}");
        }
    }

    #[test]
    fn request_head_limits_have_defaults_and_bounds() {
        let with = with_server_line;
        let limits = parse(&base()).unwrap().server.head_limits;
        assert_eq!(limits.header_timeout, Duration::from_secs(20));
        assert_eq!(limits.max_header_bytes, 128 * 1024);
        let set = with("header_timeout = \"3s\"\nmax_header_bytes = 200000").unwrap();
        assert_eq!(
            set.server.head_limits.header_timeout,
            Duration::from_secs(3)
        );
        assert_eq!(set.server.head_limits.max_header_bytes, 200_000);
        for bad in [
            "max_header_bytes = 8192",
            "max_header_bytes = 2000000",
            "max_header_bytes = -1",
        ] {
            let e = with(bad).unwrap_err();
            assert_eq!(e.key, "server.max_header_bytes", "{bad}: {e}");
        }
        for bad in [
            "header_timeout = \"0s\"",
            "header_timeout = \"1h\"",
            "header_timeout = \"soon\"",
        ] {
            assert_eq!(with(bad).unwrap_err().key, "server.header_timeout", "{bad}");
        }
    }

    #[test]
    fn metrics_need_their_own_port() {
        let with = |addr: &str| with_server_line(&format!("metrics_listen = \"{addr}\""));
        assert_eq!(parse(&base()).unwrap().server.metrics_listen, None);
        assert_eq!(
            with("127.0.0.1:9180").unwrap().server.metrics_listen,
            Some("127.0.0.1:9180".parse().unwrap())
        );
        for bad in ["127.0.0.1:4180", "0.0.0.0:4180", "localhost:9180"] {
            assert_eq!(with(bad).unwrap_err().key, "server.metrics_listen", "{bad}");
        }
    }

    #[test]
    fn minimal_config_is_valid_with_defaults() {
        let c = parse(&base()).unwrap();
        assert_eq!(c.session.cookie_name, "_portcullis");
        assert_eq!(c.session.lifetime, Duration::from_secs(43200));
        assert!(c.session.secure);
        assert_eq!(c.oidc.callback_path, "/oauth2/callback");
        assert_eq!(c.oidc.scopes, ["openid", "email", "profile"]);
        assert_eq!(c.upstream.address, "127.0.0.1:8080");
    }

    #[test]
    fn short_secret_names_file_and_key() {
        let text = base().replace(SECRET, "c2hvcnQ");
        let e = parse(&text).unwrap_err();
        assert_eq!(
            e.to_string(),
            "config.toml: session.secrets[0]: must decode to at least 32 bytes"
        );
    }

    #[test]
    fn unknown_key_is_an_error_with_its_path() {
        let text = base().replace("[session]", "[session]\ncookie_nme = \"x\"");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.key, "session.cookie_nme");
        assert!(e.message.starts_with("unknown key"), "{e}");
    }

    #[test]
    fn type_errors_carry_the_path() {
        let text = base().replace("[session]", "[session]\nsecure = \"yes\"");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.key, "session.secure");
    }

    #[test]
    fn secret_files_lose_their_trailing_line_ending_alike() {
        let dir = std::env::temp_dir().join(format!("portcullis-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let client = dir.join("client");
        std::fs::write(&client, "s3cr3t\r\n").unwrap();
        let text = base().replace(
            "client_secret = \"s3cr3t-value\"",
            &format!("client_secret_file = \"{}\"", client.display()),
        );
        assert_eq!(parse(&text).unwrap().oidc.client_secret.expose(), "s3cr3t");
        // The same rule for a shared-secret file: `\r\n` at the end is no part of the key, so
        // a key written on Windows opens what the one written with `echo` does.
        let key = "0123456789abcdef0123456789abcdef";
        for (name, contents) in [("crlf", format!("{key}\r\n")), ("lf", format!("{key}\n"))] {
            let path = dir.join(name);
            std::fs::write(&path, contents).unwrap();
            let issuer = format!(
                "[[bearer.issuers]]\nissuer = \"https://dealer\"\naudiences = [\"x\"]\nshared_secret_file = \"{}\"\n",
                path.display()
            );
            assert!(parse(&(base() + &issuer)).is_ok(), "{name}");
        }
        let bad = dir.join("missing");
        let issuer = format!(
            "[[bearer.issuers]]\nissuer = \"https://dealer\"\naudiences = [\"x\"]\nshared_secret_file = \"{}\"\n",
            bad.display()
        );
        let e = parse(&(base() + &issuer)).unwrap_err().to_string();
        assert!(e.contains("shared_secret_file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn header_names_and_strips_are_checked_and_name_their_key() {
        let with = |table: &str| format!("{}\n{table}\n", base());
        let c = parse(&with(
            "[headers]\nstrip = [\"X_App_Role\"]\n[headers.names]\nuser = \"X-WEBAUTH-USER\"",
        ))
        .unwrap();
        assert_eq!(c.headers.names.user.as_str(), "x-webauth-user");
        assert_eq!(c.headers.names.email.as_str(), "x-forwarded-email");
        assert_eq!(c.headers.strip, ["x-app-role"]);
        for (table, key) in [
            ("[headers.names]\nuser = \"Cookie\"", "headers.names.user"),
            (
                "[headers.names]\ngroups = \"bad name\"",
                "headers.names.groups",
            ),
            (
                "[headers.names]\nemail = \"x-forwarded-user\"",
                "headers.names",
            ),
            ("[headers]\nstrip = [\"ok\", \"Host\"]", "headers.strip[1]"),
            (
                "[headers]\nstrip = [\"X-Forwarded-For\"]",
                "headers.strip[0]",
            ),
        ] {
            let e = parse(&with(table)).unwrap_err().to_string();
            assert!(e.contains(key), "{table}: {e}");
        }
    }

    #[test]
    fn secrets_never_appear_in_errors_or_debug() {
        let text = base().replace("[session]", "[session]\nsame_site = \"bogus\"");
        let e = parse(&text).unwrap_err();
        assert!(!e.to_string().contains("s3cr3t-value"));
        let c = parse(&base()).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cr3t-value"));
        assert!(!dbg.contains(SECRET));
        assert!(!c.summary().contains("s3cr3t-value"));
    }

    #[test]
    fn client_secret_from_env_and_conflicts() {
        let text = base().replace("client_secret = \"s3cr3t-value\"\n", "");
        let c = Config::parse(&text, "c.toml", &|k| {
            (k == ENV_CLIENT_SECRET).then(|| "from-env".to_string())
        })
        .unwrap();
        assert_eq!(c.oidc.client_secret.expose(), "from-env");
        let e = Config::parse(&base(), "c.toml", &|k| {
            (k == ENV_CLIENT_SECRET).then(|| "x".to_string())
        })
        .unwrap_err();
        assert_eq!(e.key, "oidc.client_secret");
        let e = parse(&text).unwrap_err();
        assert!(e.message.starts_with("missing"));
    }

    #[test]
    fn session_secrets_from_env() {
        let text = base().replace(&format!("secrets = [\"{SECRET}\"]"), "");
        let c = Config::parse(&text, "c.toml", &|k| {
            (k == ENV_SESSION_SECRETS).then(|| format!("{SECRET}, {}", generate_secret()))
        })
        .unwrap();
        assert_eq!(c.session.secrets.len(), 2);
        let e = Config::parse(&text, "c.toml", &|k| {
            (k == ENV_SESSION_SECRETS).then(|| "tooshort".to_string())
        })
        .unwrap_err();
        assert_eq!(e.key, "PORTCULLIS_SESSION_SECRETS[0]");
    }

    #[test]
    fn plain_http_issuer_only_on_loopback() {
        let text = base().replace("https://idp.example.com", "http://idp.example.com");
        assert_eq!(parse(&text).unwrap_err().key, "oidc.issuer");
        let text = base().replace("https://idp.example.com", "http://127.0.0.1:9000");
        assert!(parse(&text).is_ok());
    }

    #[test]
    fn listen_accepts_a_list_and_trusted_proxies_cidrs() {
        let text = base().replace(
            "listen = \"127.0.0.1:4180\"",
            "listen = [\"127.0.0.1:4180\", \"[::1]:4180\"]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.168.1.1\"]",
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.server.listen.len(), 2);
        assert!(c.server.is_trusted_proxy("10.1.2.3".parse().unwrap()));
        assert!(c
            .server
            .is_trusted_proxy("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.server.is_trusted_proxy("192.168.1.2".parse().unwrap()));
        let bad = base().replace("listen = \"127.0.0.1:4180\"", "listen = [\"nope\"]");
        assert_eq!(parse(&bad).unwrap_err().key, "server.listen[0]");
    }

    #[test]
    fn absurd_durations_and_cookie_names_are_refused() {
        let text = base().replace("[session]", "[session]\nlifetime = \"100years\"");
        assert_eq!(parse(&text).unwrap_err().key, "session.lifetime");
        let text = base().replace("[oidc]", "[oidc]\nleeway = \"30years\"");
        assert_eq!(parse(&text).unwrap_err().key, "oidc.leeway");
        let long = "c".repeat(101);
        let text = base().replace("[session]", &format!("[session]\ncookie_name = \"{long}\""));
        assert_eq!(parse(&text).unwrap_err().key, "session.cookie_name");
        let text = base().replace(
            "[session]",
            "[session]\ncookie_name = \"__Host-p\"\nsecure = false",
        );
        assert_eq!(parse(&text).unwrap_err().key, "session.cookie_name");
        let text = base().replace("[session]", "[session]\ncookie_name = \"__Host-p\"");
        assert!(parse(&text).is_ok());
    }

    #[test]
    fn routes_and_authorization_are_checked() {
        let ok = base()
            + "[[routes]]\npath = \"/public/\"\npolicy = \"public\"\n\
               [[routes]]\npath = \"/ops\"\ngroups = [\"sre\"]\nmethods = [\"get\"]\n\
               [authorization]\nallowed_email_domains = [\".example.com\"]\n";
        let c = parse(&ok).unwrap();
        assert_eq!(c.routes.routes().len(), 2);
        let bad = base() + "[[routes]]\npath = \"/p\"\npolicy = \"public\"\ngroups = [\"x\"]\n";
        assert_eq!(parse(&bad).unwrap_err().key, "routes[0].policy");
        let bad = base() + "[[routes]]\npath = \"/p\"\nscopes = [\"a\\\"b\"]\n";
        assert_eq!(parse(&bad).unwrap_err().key, "routes[0].scopes[0]");
        let bad = base() + "[[routes]]\npath = \"/a/../b\"\n";
        assert_eq!(parse(&bad).unwrap_err().key, "routes[0]");
        let bad = base() + "[authorization]\nallowed_emails = [\"a@b@c\"]\n";
        assert_eq!(
            parse(&bad).unwrap_err().key,
            "authorization.allowed_emails[0]"
        );
        let bad = base() + "[[routes]]\npath = \"/p\"\nmethods = [\"G T\"]\n";
        assert_eq!(parse(&bad).unwrap_err().key, "routes[0].methods[0]");
    }

    #[test]
    fn bearer_issuers_are_checked() {
        let ok = base() + "[bearer]\naudiences = [\"api\"]\n[[bearer.issuers]]\nissuer = \"https://dealer\"\naudiences = [\"x\"]\njwks_url = \"https://dealer/jwks\"\n";
        assert_eq!(parse(&ok).unwrap().bearer.issuers.len(), 1);
        let none = base() + "[[bearer.issuers]]\nissuer = \"https://dealer\"\n";
        assert_eq!(parse(&none).unwrap_err().key, "bearer.issuers[0].audiences");
        let two = base() + "[[bearer.issuers]]\nissuer = \"https://dealer\"\naudiences = [\"x\"]\njwks_url = \"https://d/j\"\nshared_secret = \"0123456789abcdef0123456789abcdef\"\n";
        assert_eq!(parse(&two).unwrap_err().key, "bearer.issuers[0].jwks_url");
        let short = base() + "[[bearer.issuers]]\nissuer = \"https://dealer\"\naudiences = [\"x\"]\nshared_secret = \"short\"\n";
        assert_eq!(
            parse(&short).unwrap_err().key,
            "bearer.issuers[0].shared_secret"
        );
        let login = base()
            + "[[bearer.issuers]]\nissuer = \"https://idp.example.com\"\naudiences = [\"x\"]\n";
        assert_eq!(parse(&login).unwrap_err().key, "bearer.issuers[0].issuer");
        let weak = base()
            + &format!(
                "[[bearer.issuers]]\nissuer = \"https://weak\"\naudiences = [\"x\"]\npublic_keys = [\"{}/tests/fixtures/weak-rsa1024.pub.pem\"]\n",
                env!("CARGO_MANIFEST_DIR")
            );
        let e = parse(&weak).unwrap_err();
        assert_eq!(e.key, "bearer.issuers[0].public_keys");
        assert!(e.message.contains("1024"), "{e}");
    }

    #[test]
    fn the_documented_example_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let c = Config::parse(&text, "config.example.toml", &|_| None).unwrap();
        assert_eq!(c.session.cookie_name, "_portcullis");
    }

    #[test]
    fn generated_secret_is_accepted() {
        let s = generate_secret();
        assert_eq!(decode_secret(&s).map(|b| b.len()), Some(32));
    }
}
