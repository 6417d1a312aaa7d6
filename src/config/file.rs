//! The configuration file as written: plain serde types, every table closed to unknown keys.
//!
//! Nothing here is trusted or interpreted beyond its type: each section's module
//! (`server.rs`, `oidc.rs`, …) turns its table into the validated form, and [`super::Config`]
//! gathers them. Keeping the two apart means a value is checked in exactly one place, and the
//! rest of the program only ever sees the validated form. A closed set of words (`same_site`,
//! `policy`, …) is an enum here, so serde names the key, the line and the words allowed.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    #[serde(default)]
    pub server: ServerFile,
    pub upstream: UpstreamFile,
    /// Browser sign-in; absent for a resource server that only takes tokens and certificates.
    pub oidc: Option<OidcFile>,
    /// Needed with `[oidc]`; without it only `secrets` may be given (they key DPoP nonces).
    pub session: Option<SessionFile>,
    #[serde(default)]
    pub redirects: RedirectsFile,
    #[serde(default)]
    pub headers: HeadersFile,
    #[serde(default)]
    pub logging: LoggingFile,
    #[serde(default)]
    pub bearer: BearerFile,
    #[serde(default)]
    pub routes: Vec<RouteFile>,
    #[serde(default)]
    pub authorization: AuthorizationFile,
}

/// One string or a list of them: `listen = "addr"` or `listen = ["addr", "addr"]`,
/// `user_claim = "sub"` or `user_claim = ["sub", "client_id"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn as_slice(&self) -> &[String] {
        match self {
            OneOrMany::One(s) => std::slice::from_ref(s),
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerFile {
    /// Plain HTTP/1 listeners, the shorthand; `127.0.0.1:4180` when neither this nor
    /// `listeners` is given.
    pub listen: Option<OneOrMany>,
    /// `[[server.listeners]]`: listeners with their own settings (TLS, HTTP/2, client
    /// certificates).
    #[serde(default)]
    pub listeners: Vec<ListenerFile>,
    /// How long a TLS handshake may take.
    pub tls_handshake_timeout: Option<String>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Worker threads for the proxy service.
    pub threads: Option<usize>,
    /// How long a stopping server keeps serving after it stops listening (SIGTERM).
    pub shutdown_grace: Option<String>,
    /// Where Prometheus metrics are served (`/metrics`); off when absent.
    pub metrics_listen: Option<String>,
    /// Envoy's external authorization (gRPC `envoy.service.auth.v3.Authorization/Check`).
    pub ext_authz_listen: Option<String>,
    /// How long a whole request head may take to arrive.
    pub header_timeout: Option<String>,
    /// The longest request head accepted, in bytes.
    pub max_header_bytes: Option<usize>,
    /// Connections open at once, in all.
    pub max_connections: Option<usize>,
    /// Connections open at once from one client address (0: no bound).
    pub max_connections_per_client: Option<usize>,
    /// The header a trusted TLS-terminating proxy puts the verified client certificate in.
    pub client_cert_header: Option<super::ClientCertHeader>,
}

/// One `[[server.listeners]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListenerFile {
    pub address: String,
    /// PEM certificate chain; with `tls_key`, the listener speaks TLS.
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    /// Offer HTTP/2 by ALPN (TLS only); default true with TLS.
    pub http2: Option<bool>,
    pub client_certs: Option<ClientCertsFile>,
    /// PEM CA certificates that issue client certificates; needed unless `client_certs` is off.
    pub client_ca: Option<String>,
}

/// `server.listeners[].client_certs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum ClientCertsFile {
    Off,
    Optional,
    Required,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpstreamFile {
    pub url: String,
    pub connect_timeout: Option<String>,
    pub read_timeout: Option<String>,
    /// How the upstream speaks: `http1` (default), `h2` (h2c with prior knowledge on http://,
    /// ALPN h2 on https://) or `auto` (https:// only: ALPN offers both).
    pub protocol: Option<super::UpstreamProtocol>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OidcFile {
    /// `[[oidc.providers]]`: several providers, each a table of the keys below. Beside it,
    /// `[oidc]` holds nothing else (a provider's settings are its own, never inherited).
    #[serde(default)]
    pub providers: Vec<OidcFile>,
    /// How routes, `/oauth2/start?provider=` and sessions name the provider; `default` for
    /// a lone `[oidc]`.
    pub id: Option<String>,
    /// What the sign-in chooser page shows (the `id` when not given).
    pub name: Option<String>,
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<String>,
    pub redirect_url: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub user_claim: Option<OneOrMany>,
    pub email_claim: Option<String>,
    pub groups_claim: Option<String>,
    /// How portcullis authenticates at the token endpoint; default: the client secret, sent
    /// the way discovery advertises.
    pub client_auth: Option<ClientAuthFile>,
    /// The older name of `client_auth`, for the two secret methods.
    pub token_endpoint_auth_method: Option<super::ClientAuthMethod>,
    /// `private_key_jwt`: the PEM private key assertions are signed with; `tls_client_auth`:
    /// the key of `client_cert`.
    pub client_key: Option<String>,
    /// The `kid` put in assertions (`private_key_jwt`), when the provider wants one.
    pub client_key_id: Option<String>,
    /// `tls_client_auth`: the PEM client certificate (chain) presented to the provider.
    pub client_cert: Option<String>,
    /// PEM certificates of the CAs the provider's TLS certificates chain to, trusted besides
    /// the public roots.
    pub provider_ca: Option<String>,
    /// Timeout of every call to the identity provider.
    pub http_timeout: Option<String>,
    /// Allow a plain-http issuer that is not on loopback (a lab set-up; never production).
    #[serde(default)]
    pub insecure_allow_http: bool,
    /// Clock skew tolerated on token times.
    pub leeway: Option<String>,
    /// How often the provider is probed while it is up (while it is down: sooner).
    pub health_check_interval: Option<String>,
    /// How the browser is sent to the provider's `end_session_endpoint`.
    pub end_session_method: Option<super::EndSessionMethod>,
}

impl OidcFile {
    /// The first provider setting given, beside `providers` (where none may be).
    pub(super) fn first_key_set(&self) -> Option<&'static str> {
        let set = [
            ("id", self.id.is_some()),
            ("name", self.name.is_some()),
            ("issuer", self.issuer.is_some()),
            ("client_id", self.client_id.is_some()),
            ("client_secret", self.client_secret.is_some()),
            ("client_secret_file", self.client_secret_file.is_some()),
            ("redirect_url", self.redirect_url.is_some()),
            ("scopes", self.scopes.is_some()),
            ("user_claim", self.user_claim.is_some()),
            ("email_claim", self.email_claim.is_some()),
            ("groups_claim", self.groups_claim.is_some()),
            ("client_auth", self.client_auth.is_some()),
            (
                "token_endpoint_auth_method",
                self.token_endpoint_auth_method.is_some(),
            ),
            ("client_key", self.client_key.is_some()),
            ("client_key_id", self.client_key_id.is_some()),
            ("client_cert", self.client_cert.is_some()),
            ("provider_ca", self.provider_ca.is_some()),
            ("http_timeout", self.http_timeout.is_some()),
            ("insecure_allow_http", self.insecure_allow_http),
            ("leeway", self.leeway.is_some()),
            (
                "health_check_interval",
                self.health_check_interval.is_some(),
            ),
            ("end_session_method", self.end_session_method.is_some()),
        ];
        set.into_iter().find(|(_, on)| *on).map(|(key, _)| key)
    }
}

/// `oidc.client_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum ClientAuthFile {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    TlsClientAuth,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SessionFile {
    pub cookie_name: Option<String>,
    #[serde(default)]
    pub secrets: Vec<String>,
    pub lifetime: Option<String>,
    pub secure: Option<bool>,
    pub same_site: Option<SameSiteFile>,
    pub domain: Option<String>,
    /// Where sessions live: `cookie` (default) or `redis`.
    pub store: Option<StoreFile>,
    /// `[session.redis]`, for `store = "redis"`.
    pub redis: Option<RedisFile>,
    /// `[session.revocation]`: a Redis where the cookie store records ended sessions.
    pub revocation: Option<RedisFile>,
}

/// `session.store`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum StoreFile {
    Cookie,
    Redis,
}

/// `[session.redis]`: exactly one of `url`, `sentinel`, `cluster`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RedisFile {
    pub url: Option<String>,
    pub sentinel: Option<SentinelFile>,
    pub cluster: Option<Vec<String>>,
    pub password_file: Option<String>,
    pub key_prefix: Option<String>,
    /// The bound on every call to Redis.
    pub timeout: Option<String>,
}

/// `session.redis.sentinel`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SentinelFile {
    /// The name of the monitored master.
    pub master: String,
    /// The sentinels, `redis://host:26379` each.
    pub nodes: Vec<String>,
    /// The database on the master.
    pub db: Option<i64>,
}

/// `session.same_site`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum SameSiteFile {
    Lax,
    Strict,
    None,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RedirectsFile {
    #[serde(default)]
    pub allowed_domains: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HeadersFile {
    #[serde(default)]
    pub pass_access_token: bool,
    #[serde(default)]
    pub pass_id_token_as_bearer: bool,
    /// More request headers to remove from every client request (the application's own).
    #[serde(default)]
    pub strip: Vec<String>,
    #[serde(default)]
    pub names: HeaderNamesFile,
    /// How the user header is written: `{user}` (the default), or with `{provider}` and
    /// `{issuer}` around it, e.g. `{provider}:{user}`.
    pub user_format: Option<String>,
    /// Which identity headers: `oauth2-proxy` (default), `alb`, `both`.
    pub style: Option<HeaderStyleFile>,
    /// `[headers.alb]`: what ALB's signed header says of its signer.
    pub alb: Option<AlbFile>,
    /// Send `X-Portcullis-Assertion`, a signed JWT of the identity.
    #[serde(default)]
    pub assertion: bool,
    /// The assertion's `iss` (default: the origin of each request).
    pub assertion_issuer: Option<String>,
    /// The assertion's `aud` (default: the upstream URL).
    pub assertion_audience: Option<String>,
}

/// `headers.style`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub(super) enum HeaderStyleFile {
    #[serde(rename = "oauth2-proxy")]
    OAuth2Proxy,
    #[serde(rename = "alb")]
    Alb,
    #[serde(rename = "both")]
    Both,
}

/// `[headers.alb]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AlbFile {
    /// The `signer` of `x-amzn-oidc-data`: what ALB sets to its ARN, and applications check.
    pub signer: String,
}

/// The names of the identity headers portcullis sets.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HeaderNamesFile {
    pub user: Option<String>,
    pub issuer: Option<String>,
    pub email: Option<String>,
    pub groups: Option<String>,
    pub preferred_username: Option<String>,
    pub access_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoggingFile {
    pub level: Option<String>,
    /// `auto` (JSON unless stderr is a terminal), `json` or `text`.
    pub format: Option<super::LogFormat>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BearerFile {
    /// Audiences accepted on access tokens of the login issuer.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Accept the login issuer's ID tokens (audience = our client id) as bearer tokens.
    pub accept_id_tokens: Option<bool>,
    pub leeway: Option<String>,
    /// Verified tokens remembered until they expire.
    pub cache_entries: Option<usize>,
    /// Only sender-constrained tokens of the login issuer (`cnf`).
    #[serde(default)]
    pub require_bound_tokens: bool,
    /// `[bearer.dpop]`: DPoP-bound tokens and their proofs.
    pub dpop: Option<DpopFile>,
    /// RFC 9728: the protected resource's identifier, when not the origin of each request.
    pub resource: Option<String>,
    /// RFC 9728: where clients get tokens, when not the issuers accepted here.
    pub authorization_servers: Option<Vec<String>>,
    #[serde(default)]
    pub issuers: Vec<IssuerFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IssuerFile {
    pub issuer: String,
    #[serde(default)]
    pub audiences: Vec<String>,
    /// One key source at most; none means discovery.
    pub jwks_url: Option<String>,
    pub public_keys: Option<Vec<String>>,
    pub shared_secret: Option<String>,
    pub shared_secret_file: Option<String>,
    pub user_claim: Option<OneOrMany>,
    pub email_claim: Option<String>,
    pub groups_claim: Option<String>,
    #[serde(default)]
    pub insecure_allow_http: bool,
    /// Only sender-constrained tokens of this issuer (`cnf`).
    #[serde(default)]
    pub require_bound_tokens: bool,
}

/// `[bearer.dpop]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DpopFile {
    pub enabled: Option<bool>,
    pub algorithms: Option<Vec<String>>,
    pub proof_lifetime: Option<String>,
    pub replay_cache_entries: Option<usize>,
    #[serde(default)]
    pub use_dpop_nonce: bool,
}

/// One `[[routes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteFile {
    pub path: String,
    #[serde(default)]
    pub exact: bool,
    #[serde(default)]
    pub methods: Vec<String>,
    pub host: Option<String>,
    /// The `[[oidc.providers]]` id browsers sign in with here; its sessions only.
    pub provider: Option<String>,
    /// `public` or `authenticated` (the default).
    pub policy: Option<RoutePolicyFile>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub emails: Vec<String>,
    #[serde(default)]
    pub email_domains: Vec<String>,
    /// `any` (default), `access` (RFC 9068 access tokens only) or `id` (ID tokens only).
    pub token_type: Option<TokenTypeFile>,
    /// A verified client certificate is required (implied by the two lists below).
    pub client_cert: Option<bool>,
    /// Subjects accepted (`CN=ci-runner,O=acme`); any one of them.
    #[serde(default)]
    pub client_cert_subjects: Vec<String>,
    /// Subject alternative names accepted (`spiffe://…`, `dns:…`); any one of them.
    #[serde(default)]
    pub client_cert_sans: Vec<String>,
    /// Only sender-constrained bearer tokens on this route.
    #[serde(default)]
    pub require_bound_tokens: bool,
}

/// `routes[].policy`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RoutePolicyFile {
    Public,
    Authenticated,
}

/// `routes[].token_type`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum TokenTypeFile {
    Any,
    Access,
    Id,
}

/// `[authorization]`: rules for every authenticated request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthorizationFile {
    #[serde(default)]
    pub allowed_emails: Vec<String>,
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    #[serde(default)]
    pub allowed_groups: Vec<String>,
}
