//! Header hygiene on the way to the upstream: nothing a client sent may pass for something
//! portcullis vouches for.
//!
//! First every client copy of a header that carries identity is removed — under any letter
//! case and with `_` for `-`, because many frameworks (CGI, WSGI, PHP, Rack) fold
//! `X_Forwarded_User` and `X-Forwarded-User` into the same variable. Then the values derived
//! from the verified session are set. Forwarding headers (`X-Forwarded-For/-Proto/-Host`) are
//! believed only from configured trusted proxies; otherwise they are replaced.

use std::borrow::Cow;
use std::net::IpAddr;

use http::header::{HeaderName, HeaderValue, AUTHORIZATION, COOKIE, HOST};
use pingora::http::RequestHeader;

use crate::client_cert::ClientCert;
use crate::session::Identity;

pub(crate) const X_FORWARDED_USER: &str = "x-forwarded-user";
pub(crate) const X_FORWARDED_EMAIL: &str = "x-forwarded-email";
pub(crate) const X_FORWARDED_GROUPS: &str = "x-forwarded-groups";
pub(crate) const X_FORWARDED_PREFERRED_USERNAME: &str = "x-forwarded-preferred-username";
pub(crate) const X_FORWARDED_ACCESS_TOKEN: &str = "x-forwarded-access-token";
pub(crate) const X_FORWARDED_ISSUER: &str = "x-forwarded-issuer";

/// Names (normalised: lower case, `_` as `-`) that claim an identity, a token, a client
/// certificate, an original URL, method or host. A client copy is never forwarded, whoever
/// the peer is: applications and their frameworks read these as facts (Grafana's auth proxy
/// reads `X-WEBAUTH-USER`, Authelia-style set-ups `Remote-User`, Symfony `X-Original-URL`).
const IDENTITY_HEADERS: &[&str] = &[
    X_FORWARDED_USER,
    X_FORWARDED_EMAIL,
    X_FORWARDED_GROUPS,
    X_FORWARDED_PREFERRED_USERNAME,
    X_FORWARDED_ACCESS_TOKEN,
    X_FORWARDED_ISSUER,
    crate::signed_identity::ASSERTION,
    "x-forwarded-id-token",
    "x-forwarded-username",
    "x-forwarded-login",
    "x-forwarded-user-id",
    "x-forwarded-client-cert",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-forwarded-method",
    "x-client-cert",
    "ssl-client-cert",
    "x-ssl-client-cert",
    "x-remote-user",
    "x-user",
    "x-email",
    "x-auth-user",
    "x-username",
    "x-authenticated-user",
    "x-original-uri",
    "x-original-url",
    "x-original-method",
    "x-original-host",
    "x-host",
    "x-rewrite-url",
    // Method overrides would let a request matched as GET act as DELETE in the application.
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Prefixes of identity-bearing header families (normalised): oauth2-proxy's answers, ALB's,
/// Grafana's auth proxy (`X-WEBAUTH-USER`, `-EMAIL`, `-NAME`, `-ROLE`, `-GROUPS`) and the
/// `Remote-User`, `Remote-Groups`, `Remote-Email`, `Remote-Name` family.
const IDENTITY_PREFIXES: &[&str] = &["x-auth-request-", "x-amzn-oidc-", "x-webauth-", "remote-"];

/// Whether `name` (lower case) is a forwarding header (`X-Forwarded-For`, `-Proto`, …): the
/// business of whichever proxy forwards the request.
pub(crate) fn is_forwarding_header(name: &str) -> bool {
    FORWARDING_HEADERS.contains(&name)
}

/// Headers that HTTP itself, or portcullis' own decisions, depend on: they can be neither an
/// identity header's name nor stripped by configuration.
pub(crate) fn is_reserved_name(name: &str) -> bool {
    const RESERVED: &[&str] = &[
        "host",
        "authorization",
        "cookie",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "trailer",
        "keep-alive",
        "proxy-connection",
        "expect",
    ];
    let n = name.to_ascii_lowercase().replace('_', "-");
    RESERVED.contains(&n.as_str()) || FORWARDING_HEADERS.contains(&n.as_str()) || n.starts_with(':')
}

/// How the user header is written (`headers.user_format`): the user, with the provider's id
/// or the issuer around it where the upstream must tell apart the same `sub` at two
/// providers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFormat(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    User,
    /// The provider's id; a token issuer that is no sign-in provider: its `iss`.
    Provider,
    Issuer,
}

impl Default for UserFormat {
    fn default() -> Self {
        UserFormat(vec![Piece::User])
    }
}

impl UserFormat {
    /// `{user}` once, `{provider}` and `{issuer}` at most once each, text between them. Any
    /// other `{` or `}` is refused: a typo must not reach every request's header.
    pub fn parse(text: &str) -> Result<UserFormat, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                Some(0) => {
                    let end = rest.find('}').ok_or("has a `{` without its `}`")?;
                    let piece = match &rest[..=end] {
                        "{user}" => Piece::User,
                        "{provider}" => Piece::Provider,
                        "{issuer}" => Piece::Issuer,
                        other => {
                            return Err(format!(
                                "`{other}` is not one of {{user}}, {{provider}}, {{issuer}}"
                            ))
                        }
                    };
                    if pieces.contains(&piece) {
                        return Err(format!("names `{}` twice", &rest[..=end]));
                    }
                    pieces.push(piece);
                    rest = &rest[end + 1..];
                }
                Some(i) => {
                    pieces.push(Piece::Text(rest[..i].to_string()));
                    rest = &rest[i..];
                }
                None => {
                    pieces.push(Piece::Text(rest.to_string()));
                    rest = "";
                }
            }
        }
        if !pieces.contains(&Piece::User) {
            return Err("must contain {user}".into());
        }
        let text_ok = |t: &str| HeaderValue::from_str(t).is_ok() && !t.contains(',');
        if pieces
            .iter()
            .any(|p| matches!(p, Piece::Text(t) if !text_ok(t)))
        {
            return Err("its text must be visible header characters, without a comma".into());
        }
        Ok(UserFormat(pieces))
    }

    /// The user header's value for `id`. A caller vouched for by no provider or issuer (a
    /// client certificate alone) is written as its user alone.
    fn render<'a>(&self, id: &'a Identity) -> Option<Cow<'a, str>> {
        let user = id.user.as_deref()?;
        if let [Piece::User] = self.0.as_slice() {
            return Some(Cow::Borrowed(user));
        }
        let issuer = id.issuer.as_deref();
        let provider = id.provider.as_deref().or(issuer);
        if issuer.is_none() {
            return Some(Cow::Borrowed(user));
        }
        let mut out = String::new();
        for piece in &self.0 {
            out.push_str(match piece {
                Piece::Text(t) => t,
                Piece::User => user,
                Piece::Provider => provider.unwrap_or_default(),
                Piece::Issuer => issuer.unwrap_or_default(),
            });
        }
        Some(Cow::Owned(out))
    }
}

/// What the identity headers portcullis sets are called (`headers.names`), and how the user
/// is written (`headers.user_format`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityNames {
    pub user: HeaderName,
    pub email: HeaderName,
    pub groups: HeaderName,
    pub preferred_username: HeaderName,
    pub access_token: HeaderName,
    /// The issuer that vouches for the caller: with several providers (or token issuers),
    /// the same `sub` from two of them is two users.
    pub issuer: HeaderName,
    pub user_format: UserFormat,
}

impl Default for IdentityNames {
    fn default() -> Self {
        IdentityNames {
            user: HeaderName::from_static(X_FORWARDED_USER),
            email: HeaderName::from_static(X_FORWARDED_EMAIL),
            groups: HeaderName::from_static(X_FORWARDED_GROUPS),
            preferred_username: HeaderName::from_static(X_FORWARDED_PREFERRED_USERNAME),
            access_token: HeaderName::from_static(X_FORWARDED_ACCESS_TOKEN),
            issuer: HeaderName::from_static(X_FORWARDED_ISSUER),
            user_format: UserFormat::default(),
        }
    }
}

impl IdentityNames {
    /// The names `/oauth2/auth` answers with: oauth2-proxy's, which nginx and Traefik recipes
    /// copy onward (fixed, whatever `headers.names` says about the upstream's), with the
    /// user written as `user_format` says.
    pub fn forward_auth(user_format: UserFormat) -> IdentityNames {
        IdentityNames {
            user: HeaderName::from_static("x-auth-request-user"),
            email: HeaderName::from_static("x-auth-request-email"),
            groups: HeaderName::from_static("x-auth-request-groups"),
            preferred_username: HeaderName::from_static("x-auth-request-preferred-username"),
            access_token: HeaderName::from_static("x-auth-request-access-token"),
            issuer: HeaderName::from_static("x-auth-request-issuer"),
            user_format,
        }
    }

    /// Each identity header to send for `id`, under these names, with the access token when
    /// one is to be passed on: the one place identity becomes headers.
    pub fn values<'a>(
        &'a self,
        id: &'a Identity,
        access_token: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a HeaderName, Cow<'a, str>)> + 'a {
        let groups = (!id.groups.is_empty()).then(|| Cow::Owned(id.groups.join(",")));
        [
            (&self.user, self.user_format.render(id)),
            (&self.email, id.email.as_deref().map(Cow::Borrowed)),
            (&self.groups, groups),
            (
                &self.preferred_username,
                id.preferred_username.as_deref().map(Cow::Borrowed),
            ),
            (&self.access_token, access_token.map(Cow::Borrowed)),
            (&self.issuer, id.issuer.as_deref().map(Cow::Borrowed)),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
    }

    pub fn all(&self) -> [&HeaderName; 6] {
        [
            &self.user,
            &self.email,
            &self.groups,
            &self.preferred_username,
            &self.access_token,
            &self.issuer,
        ]
    }

    /// A client's copy of one of these names (any case, `_` for `-`) is never forwarded.
    /// Runs for every header of every request: compares in place, allocating nothing.
    fn claims(&self, normalised: &str) -> bool {
        let fold = |b: u8| if b == b'_' { b'-' } else { b };
        self.all().iter().any(|n| {
            let n = n.as_str().as_bytes();
            n.len() == normalised.len()
                && n.iter()
                    .zip(normalised.as_bytes())
                    .all(|(a, b)| fold(*a) == *b)
        })
    }
}

/// The header names a deployment adds to the defaults: renamed identity headers, and names
/// of its own to strip (`headers.strip`, normalised).
pub(crate) struct Hygiene<'a> {
    pub names: &'a IdentityNames,
    pub strip: &'a [String],
}

/// Forwarding headers: believed from trusted proxies, replaced for everyone else.
const FORWARDING_HEADERS: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-forwarded-server",
    "x-real-ip",
    "x-client-ip",
    "client-ip",
    "x-cluster-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "forwarded",
];

/// `X_Forwarded_User` → `x-forwarded-user`. `HeaderName`s are already lower case, so only
/// names with `_` (rare) cost an allocation: this runs for every header of every request.
fn normalise(name: &HeaderName) -> Cow<'_, str> {
    let name = name.as_str();
    if memchr::memchr(b'_', name.as_bytes()).is_some() {
        Cow::Owned(name.replace('_', "-"))
    } else {
        Cow::Borrowed(name)
    }
}

fn is_identity_header(normalised: &str) -> bool {
    IDENTITY_HEADERS.contains(&normalised)
        || IDENTITY_PREFIXES.iter().any(|p| normalised.starts_with(p))
}

/// What portcullis vouches for on this request.
pub(crate) struct Vouch<'a> {
    pub identity: Option<&'a Identity>,
    pub access_token: Option<&'a str>,
    /// Sent as `Authorization: Bearer` (`headers.pass_id_token_as_bearer`).
    pub id_token_as_bearer: Option<&'a str>,
    /// The verified client certificate, sent as `X-Forwarded-Client-Cert`.
    pub client_cert: Option<&'a ClientCert>,
}

/// The peer, as the TCP connection shows it.
pub(crate) struct Peer {
    pub ip: Option<IpAddr>,
    pub trusted: bool,
    /// `http` or `https`: how the client reached us.
    pub scheme: &'static str,
}

/// Rewrites `req` for the upstream as `app`'s configuration says, for `caller` (none on a
/// public route) with the verified `client_cert`, reached from `peer`: what the inline proxy
/// sends, and what Envoy's ext_authz is told to change.
pub(crate) fn for_upstream(
    req: &mut RequestHeader,
    app: &crate::app::App,
    caller: Option<&crate::access::Caller>,
    client_cert: Option<&ClientCert>,
    peer: &Peer,
) {
    use crate::access::Caller;
    let headers = &app.config.headers;
    // Tokens of a browser session may travel upstream; a bearer caller's own Authorization
    // header is forwarded untouched.
    let session = match caller {
        Some(Caller::Session(s)) => Some(s.as_ref()),
        _ => None,
    };
    // With `headers.style = "alb"`, ALB's headers stand in for oauth2-proxy's.
    let oauth2_proxy = headers.style.oauth2_proxy();
    let vouch = Vouch {
        identity: caller.map(Caller::identity).filter(|_| oauth2_proxy),
        access_token: session
            .and_then(|s| s.access_token.as_deref())
            .filter(|_| headers.pass_access_token && oauth2_proxy),
        id_token_as_bearer: session
            .and_then(|s| s.id_token.as_deref())
            .filter(|_| headers.pass_id_token_as_bearer),
        client_cert,
    };
    let hygiene = Hygiene {
        names: &headers.names,
        strip: &headers.strip,
    };
    prepare(
        req,
        &vouch,
        peer,
        &hygiene,
        // With pass_id_token_as_bearer the upstream trusts Authorization as identity: only a
        // verified bearer caller's own token, or ours, ever reaches it.
        headers.pass_id_token_as_bearer && !matches!(caller, Some(Caller::Bearer(_))),
        |name| app.owns_cookie(name),
    );
    if let (Some(signed), Some(caller)) = (&app.signed_identity, caller) {
        set_signed_identity(req, app, signed, caller, peer);
    }
}

/// ALB's headers and the identity assertion, signed for `caller`.
fn set_signed_identity(
    req: &mut RequestHeader,
    app: &crate::app::App,
    signed: &crate::signed_identity::SignedIdentity,
    caller: &crate::access::Caller,
    peer: &Peer,
) {
    let identity = caller.identity();
    let client_id = identity.provider.as_deref().and_then(|id| {
        let login = app.login.as_ref()?;
        Some(login.providers.get(id)?.oidc().client_id.as_str())
    });
    let host = req
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let origin = crate::signed_identity::Origin {
        client_id,
        request_origin: host.map(|h| format!("{}://{h}", peer.scheme)),
    };
    match signed.headers(caller, &origin, app.clock.now()) {
        Ok(headers) => {
            for (name, value) in headers {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    let _ = req.insert_header(name, v);
                }
            }
        }
        // The headers portcullis vouches for are still set; only the proof is missing.
        Err(e) => tracing::error!(error = %e, "the signed identity headers could not be made"),
    }
}

/// Rewrites `req` for the upstream. `is_ours` names portcullis' own cookies.
pub(crate) fn prepare(
    req: &mut RequestHeader,
    vouch: &Vouch<'_>,
    peer: &Peer,
    hygiene: &Hygiene<'_>,
    replace_authorization: bool,
    is_ours: impl Fn(&str) -> bool,
) {
    strip_client_headers(req, peer.trusted, hygiene, replace_authorization);
    strip_our_cookies(req, is_ours);
    set_forwarding(req, peer);
    set_identity(req, vouch, hygiene.names);
}

fn strip_client_headers(
    req: &mut RequestHeader,
    trusted: bool,
    hygiene: &Hygiene<'_>,
    strip_authorization: bool,
) {
    let doomed: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|name| {
            let n: &str = &normalise(name);
            // From a trusted proxy only the canonical `-` spelling is believed: a `_` copy
            // would collide with it in CGI-style applications.
            let forwarding = FORWARDING_HEADERS.contains(&n);
            is_identity_header(n)
                || hygiene.names.claims(n)
                || hygiene.strip.iter().any(|s| s == n)
                || (forwarding
                    && (!trusted || memchr::memchr(b'_', name.as_str().as_bytes()).is_some()))
                || (strip_authorization && n == "authorization")
        })
        .cloned()
        .collect();
    for name in doomed {
        req.remove_header(&name);
    }
}

fn strip_our_cookies(req: &mut RequestHeader, is_ours: impl Fn(&str) -> bool) {
    if !req.headers.contains_key(COOKIE) {
        return;
    }
    let mut kept: Vec<u8> = Vec::new();
    for value in req.headers.get_all(COOKIE) {
        if let Some(rest) = crate::session::chunks::strip_cookies(value.as_bytes(), &is_ours) {
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(&rest);
        }
    }
    req.remove_header(&COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_bytes(&kept) {
            let _ = req.insert_header(COOKIE, v);
        }
    }
}

/// The client's address as `X-Forwarded-For` writes it, as `Display` does. An IPv4 address is
/// written with `itoa`: `Display`'s formatting machinery cost as much as the rest of this
/// stage together (callgrind, on every forwarded request).
fn client_address(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut text = String::with_capacity(15);
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                text.push_str(digits.format(octet));
            }
            text
        }
        std::net::IpAddr::V6(_) => ip.to_string(),
    }
}

fn set_forwarding(req: &mut RequestHeader, peer: &Peer) {
    if let Some(ip) = peer.ip {
        let client = client_address(ip);
        // Only a trusted proxy's chain is kept (and only then looked up).
        let prior = peer
            .trusted
            .then(|| req.headers.get("x-forwarded-for"))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .filter(|p| !p.trim().is_empty());
        let xff = match prior {
            Some(prior) => format!("{prior}, {client}"),
            None => client,
        };
        let _ = req.insert_header("x-forwarded-for", xff);
    }
    if !(peer.trusted && req.headers.contains_key("x-forwarded-proto")) {
        let _ = req.insert_header("x-forwarded-proto", peer.scheme);
    }
    if !(peer.trusted && req.headers.contains_key("x-forwarded-host")) {
        let host = req.headers.get(HOST).cloned().or_else(|| {
            req.uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        if let Some(host) = host {
            let _ = req.insert_header("x-forwarded-host", host);
        }
    }
}

fn set_identity(req: &mut RequestHeader, vouch: &Vouch<'_>, names: &IdentityNames) {
    let mut set = |name: &HeaderName, value: &str| {
        // Values were checked for control characters when the session was made; a value that
        // still cannot be a header is dropped rather than forwarded mangled.
        if let Ok(v) = HeaderValue::from_str(value) {
            // pingora copies a `HeaderName` it is given into a buffer of its own (one
            // allocation per header, on every request); a well-known name (the defaults among
            // them) is given as the static string it is, which it keeps as it is. The header
            // on the wire is the same.
            let _ = match IDENTITY_HEADERS.iter().find(|s| **s == name.as_str()) {
                Some(static_name) => req.insert_header(*static_name, v),
                None => req.insert_header(name.clone(), v),
            };
        }
    };
    match vouch.identity {
        Some(id) => {
            for (name, value) in names.values(id, vouch.access_token) {
                set(name, &value);
            }
        }
        None => {
            if let Some(t) = vouch.access_token {
                set(&names.access_token, t);
            }
        }
    }
    if let Some(cert) = vouch.client_cert {
        set(
            &HeaderName::from_static("x-forwarded-client-cert"),
            &cert.xfcc(),
        );
    }
    if let Some(t) = vouch.id_token_as_bearer {
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer {t}")) {
            let _ = req.insert_header(AUTHORIZATION, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/app", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn values(r: &RequestHeader, name: &str) -> Vec<String> {
        r.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn client_addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "192.0.2.9",
            "::1",
            "::ffff:192.0.2.9",
            "2001:db8::8a2e:370:7334",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(client_address(ip), ip.to_string());
        }
    }

    fn alice() -> Identity {
        Identity {
            user: Some("alice".into()),
            email: Some("alice@example.com".into()),
            groups: vec!["sre".into(), "dev".into()],
            preferred_username: Some("alice".into()),
            provider: None,
            issuer: None,
        }
    }

    static NAMES: std::sync::LazyLock<IdentityNames> =
        std::sync::LazyLock::new(IdentityNames::default);

    fn defaults() -> Hygiene<'static> {
        Hygiene {
            names: &NAMES,
            strip: &[],
        }
    }

    fn peer(trusted: bool) -> Peer {
        Peer {
            ip: Some("192.0.2.7".parse().unwrap()),
            trusted,
            scheme: "http",
        }
    }

    #[test]
    fn every_spoofed_variant_is_replaced_or_removed() {
        let corpus = [
            "X-Forwarded-User",
            "x-forwarded-user",
            "X-FORWARDED-USER",
            "X_Forwarded_User",
            "x_forwarded_email",
            "X-Auth-Request-User",
            "X_AUTH_REQUEST_EMAIL",
            "X-Amzn-Oidc-Identity",
            "Remote-User",
            "X-Forwarded-Access-Token",
            "X-Original-URI",
            "Remote-Groups",
            "Remote-Email",
            "Remote-Name",
            "X-Webauth-User",
            "X-WEBAUTH-ROLE",
            "X-Auth-User",
            "X-Username",
            "X-Authenticated-User",
            "X-Forwarded-Username",
            "X-Forwarded-Login",
            "X-Forwarded-User-Id",
            "X-Forwarded-Method",
            "X-Original-Method",
            "X-Forwarded-Path",
            "X-Original-Host",
            "X-Host",
        ];
        let mut headers: Vec<(&str, &str)> = corpus.iter().map(|n| (*n, "mallory")).collect();
        headers.push(("X-Forwarded-User", "mallory2"));
        let mut r = request(&headers);
        let id = alice();
        let vouch = Vouch {
            identity: Some(&id),
            access_token: None,
            id_token_as_bearer: None,
            client_cert: None,
        };
        prepare(&mut r, &vouch, &peer(true), &defaults(), false, |_| false);
        for (name, value) in r.headers.iter() {
            assert_ne!(value, "mallory", "{name} survived");
            assert_ne!(value, "mallory2", "{name} survived");
        }
        assert_eq!(values(&r, "x-forwarded-user"), ["alice"]);
        assert_eq!(values(&r, "x-forwarded-groups"), ["sre,dev"]);
        assert_eq!(values(&r, "x-forwarded-email"), ["alice@example.com"]);
    }

    #[test]
    fn anonymous_requests_carry_no_identity() {
        let mut r = request(&[("x-forwarded-user", "mallory")]);
        let vouch = Vouch {
            identity: None,
            access_token: None,
            id_token_as_bearer: None,
            client_cert: None,
        };
        prepare(&mut r, &vouch, &peer(false), &defaults(), false, |_| false);
        assert!(values(&r, "x-forwarded-user").is_empty());
    }

    #[test]
    fn forwarding_headers_believed_only_from_trusted_proxies() {
        let hdrs = [
            ("host", "app.example.com"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("x_forwarded_for", "1.2.3.4"),
            ("true-client-ip", "1.2.3.4"),
            ("client-ip", "1.2.3.4"),
        ];
        let vouch = Vouch {
            identity: None,
            access_token: None,
            id_token_as_bearer: None,
            client_cert: None,
        };
        let mut r = request(&hdrs);
        prepare(&mut r, &vouch, &peer(false), &defaults(), false, |_| false);
        assert_eq!(values(&r, "x-forwarded-for"), ["192.0.2.7"]);
        assert_eq!(values(&r, "x-forwarded-proto"), ["http"]);
        assert_eq!(values(&r, "x-forwarded-host"), ["app.example.com"]);
        assert!(values(&r, "x_forwarded_for").is_empty());
        assert!(values(&r, "true-client-ip").is_empty());
        assert!(values(&r, "client-ip").is_empty());
        let mut r = request(&hdrs);
        prepare(&mut r, &vouch, &peer(true), &defaults(), false, |_| false);
        assert_eq!(values(&r, "x-forwarded-for"), ["203.0.113.9, 192.0.2.7"]);
        assert_eq!(values(&r, "x-forwarded-proto"), ["https"]);
        assert_eq!(values(&r, "x-forwarded-host"), ["evil.example"]);
        assert!(
            values(&r, "x_forwarded_for").is_empty(),
            "`_` spelling never believed"
        );
    }

    #[test]
    fn our_cookies_and_a_replaced_authorization_never_reach_the_upstream() {
        let mut r = request(&[
            ("cookie", "_portcullis=sealed; theme=dark"),
            ("cookie", "_portcullis_1=x"),
            ("authorization", "Bearer client-token"),
        ]);
        let vouch = Vouch {
            identity: None,
            access_token: None,
            id_token_as_bearer: Some("idt"),
            client_cert: None,
        };
        prepare(&mut r, &vouch, &peer(false), &defaults(), true, |n| {
            n.starts_with("_portcullis")
        });
        assert_eq!(values(&r, "cookie"), ["theme=dark"]);
        assert_eq!(values(&r, "authorization"), ["Bearer idt"]);
        let mut r = request(&[("cookie", "_portcullis=sealed")]);
        prepare(&mut r, &vouch, &peer(false), &defaults(), true, |n| {
            n.starts_with("_portcullis")
        });
        assert!(values(&r, "cookie").is_empty());
    }
}

#[cfg(test)]
mod renamed {
    use super::*;

    #[test]
    fn renamed_identity_headers_and_the_deployments_own_names_are_stripped_and_set() {
        let names = IdentityNames {
            user: HeaderName::from_static("x-webauth-user"),
            groups: HeaderName::from_static("x-app-groups"),
            ..IdentityNames::default()
        };
        let strip = vec!["x-app-role".to_string()];
        let hygiene = Hygiene {
            names: &names,
            strip: &strip,
        };
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in [
            ("X-App-Groups", "admin"),
            ("x_app_groups", "admin"),
            ("X-App-Role", "admin"),
            ("X_App_Role", "admin"),
            ("X-Forwarded-User", "mallory"),
        ] {
            r.append_header(k.to_string(), v).unwrap();
        }
        let id = Identity {
            user: Some("alice".into()),
            email: None,
            groups: vec!["dev".into()],
            preferred_username: None,
            provider: None,
            issuer: None,
        };
        let vouch = Vouch {
            identity: Some(&id),
            access_token: None,
            id_token_as_bearer: None,
            client_cert: None,
        };
        let peer = Peer {
            ip: None,
            trusted: true,
            scheme: "http",
        };
        prepare(&mut r, &vouch, &peer, &hygiene, false, |_| false);
        let got: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        assert!(
            got.contains(&("x-webauth-user".into(), "alice".into())),
            "{got:?}"
        );
        assert!(
            got.contains(&("x-app-groups".into(), "dev".into())),
            "{got:?}"
        );
        assert!(
            !got.iter().any(|(_, v)| v == "admin" || v == "mallory"),
            "{got:?}"
        );
        assert!(is_reserved_name("Cookie") && is_reserved_name("x_forwarded_for"));
        assert!(!is_reserved_name("x-webauth-user"));
    }
}

#[cfg(test)]
mod user_format {
    use super::*;

    fn from(provider: Option<&str>, issuer: Option<&str>) -> Identity {
        Identity {
            user: Some("alice".into()),
            email: None,
            groups: Vec::new(),
            preferred_username: None,
            provider: provider.map(str::to_string),
            issuer: issuer.map(str::to_string),
        }
    }

    fn user(format: &str, id: &Identity) -> String {
        let names = IdentityNames {
            user_format: UserFormat::parse(format).unwrap(),
            ..IdentityNames::default()
        };
        let values: Vec<_> = names.values(id, None).collect();
        let user = values.iter().find(|(n, _)| **n == names.user).unwrap();
        user.1.to_string()
    }

    #[test]
    fn the_same_sub_at_two_providers_is_two_users() {
        let okta = from(Some("okta"), Some("https://okta.example.com"));
        let ghe = from(Some("ghe"), Some("https://ghe.example.com"));
        assert_eq!(user("{provider}:{user}", &okta), "okta:alice");
        assert_eq!(user("{provider}:{user}", &ghe), "ghe:alice");
        assert_eq!(user("{user}", &okta), "alice");
        assert_eq!(
            user("{user}|{issuer}", &ghe),
            "alice|https://ghe.example.com"
        );
        // A token issuer that is no sign-in provider is named by its issuer.
        let dealer = from(None, Some("https://dealer.example.com"));
        assert_eq!(
            user("{provider}/{user}", &dealer),
            "https://dealer.example.com/alice"
        );
        // A certificate alone is vouched for by no issuer: its user as it is.
        assert_eq!(user("{provider}:{user}", &from(None, None)), "alice");
        // The issuer travels in a header of its own, stripped from clients like the others.
        let names = IdentityNames::default();
        let issuer: Vec<_> = names
            .values(&okta, None)
            .filter(|(n, _)| n.as_str() == X_FORWARDED_ISSUER)
            .map(|(_, v)| v.into_owned())
            .collect();
        assert_eq!(issuer, ["https://okta.example.com"]);
        assert!(names.claims("x_forwarded_issuer".replace('_', "-").as_str()));
    }
}
