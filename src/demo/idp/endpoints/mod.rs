//! The dev IdP's HTTP endpoints: discovery, JWKS, authorize, token, userinfo, logout.
//!
//! Each check mirrors a rule a real provider enforces (RFC 6749, RFC 7636, RFC 9068, OpenID
//! Connect Core and RP-Initiated Logout), so a relying party that works here has not leaned on
//! leniency.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use jsonwebtoken::{Algorithm, Validation};
use rand::RngCore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use url::Url;

mod authorize;
mod discovery;
mod logout;
mod token;
mod userinfo;

use super::{bump, lock, pages, DevUser, ServiceClient, Shared};
use crate::demo::http::{self as demo_http, Body, Handler};

/// How long an authorization code can be redeemed.
const CODE_TTL: Duration = Duration::from_secs(60);

/// The JWT `typ` of access tokens (RFC 9068 §2.1), so one can never pass for an ID token.
pub(super) const ACCESS_TOKEN_TYP: &str = "at+jwt";

const SCOPES: &[&str] = &["openid", "profile", "email", "groups", "offline_access"];

const CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "azp",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "sid",
    "email",
    "email_verified",
    "name",
    "preferred_username",
    "groups",
];

/// An issued, not yet redeemed authorization code and everything it was bound to.
pub(super) struct CodeGrant {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    username: String,
    scope: String,
    auth_time: u64,
    sid: String,
    expires: Instant,
}

/// A live refresh token. `sid` ties it to the login that started it, so logout can end it.
#[derive(Clone)]
pub(super) struct RefreshGrant {
    client_id: String,
    username: String,
    scope: String,
    auth_time: u64,
    sid: String,
    expires: Instant,
}

/// Seconds since the Unix epoch, as JWT claims count time.
pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// 256 random bits, base64url: codes, refresh tokens, session ids, `jti`.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Compares secrets in constant time. Hashing first makes the time independent of the lengths
/// too, which a plain slice comparison would reveal.
fn secret_eq(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes())
        .as_slice()
        .ct_eq(Sha256::digest(b.as_bytes()).as_slice())
        .into()
}

/// BASE64URL(SHA256(verifier)), the S256 transformation of RFC 7636 §4.2.
fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// RFC 7636 §4.1: 43 to 128 characters from the unreserved set.
fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// An S256 challenge is a SHA-256 digest in unpadded base64url: exactly 43 characters.
fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

type Params = HashMap<String, String>;

/// Parses `application/x-www-form-urlencoded` (bodies and query strings alike). A repeated
/// parameter is refused, as RFC 6749 §3.1 requires; the error is its name.
fn parse_params(raw: &[u8]) -> Result<Params, String> {
    let mut params = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(raw) {
        if params
            .insert(name.clone().into_owned(), value.into_owned())
            .is_some()
        {
            return Err(name.into_owned());
        }
    }
    Ok(params)
}

/// A parameter's value; an empty value counts as absent (RFC 6749 §3.1).
fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split_ascii_whitespace().any(|s| s == wanted)
}

/// Decodes one `application/x-www-form-urlencoded` component, as RFC 6749 §2.3.1 wraps client
/// credentials before they go into HTTP Basic.
fn form_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `Authorization: Basic` client credentials, or `None` if the header is anything else.
fn parse_basic(value: &HeaderValue) -> Option<(String, String)> {
    let (scheme, encoded) = value.to_str().ok()?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

/// The token from `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let (scheme, token) = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// An OAuth 2.0 error response (RFC 6749 §5.2).
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
    /// The client tried HTTP Basic, so a 401 must carry a matching challenge.
    basic_challenge: bool,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
            basic_challenge: false,
        }
    }

    fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    fn unauthorized_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", description)
    }

    fn invalid_client(basic: bool, description: impl Into<String>) -> Self {
        OAuthError {
            basic_challenge: basic,
            ..Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
        }
    }

    fn into_response(self) -> Response<Body> {
        let mut res = no_store(demo_http::json(
            self.status,
            &json!({ "error": self.error, "error_description": self.description }),
        ));
        if self.basic_challenge {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"portcullis-dev-idp\""),
            );
        }
        res
    }
}

impl From<super::keys::KeyError> for OAuthError {
    fn from(err: super::keys::KeyError) -> Self {
        tracing::error!(error = %err, "dev IdP could not sign a token");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "token signing failed",
        )
    }
}

/// Token and user data must not be cached anywhere (RFC 6749 §5.1).
fn no_store(mut res: Response<Body>) -> Response<Body> {
    let headers = res.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

impl Handler for Shared {
    fn name(&self) -> &'static str {
        "dev-idp"
    }

    async fn handle(&self, req: Request<Bytes>) -> Response<Body> {
        let method = req.method();
        let get = method == Method::GET;
        let post = method == Method::POST;
        match req.uri().path() {
            "/.well-known/openid-configuration" if get => self.discovery(),
            "/jwks" if get => self.jwks(),
            "/authorize" if get => {
                self.authorize(req.uri().query().unwrap_or("").as_bytes(), false)
            }
            "/authorize" if post => self.authorize(req.body(), true),
            "/token" if post => self.token(&req),
            "/userinfo" if get || post => self.userinfo(req.headers()),
            "/logout" if get => self.logout(req.uri().query().unwrap_or("").as_bytes()),
            "/logout" if post => self.logout(req.body()),
            "/.well-known/openid-configuration"
            | "/jwks"
            | "/authorize"
            | "/token"
            | "/userinfo"
            | "/logout" => demo_http::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
            _ => demo_http::text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

impl Shared {
    pub(super) fn user(&self, username: &str) -> Option<&DevUser> {
        self.config.users.iter().find(|u| u.username == username)
    }
}

/// Redirects to `base` with `pairs` appended to its query.
fn redirect_with(base: &str, pairs: &[(&str, &str)]) -> Response<Body> {
    let Ok(mut url) = Url::parse(base) else {
        return demo_http::html(
            StatusCode::INTERNAL_SERVER_ERROR,
            pages::error("The registered redirect URI is not a valid absolute URL."),
        );
    };
    if !pairs.is_empty() {
        url.query_pairs_mut().extend_pairs(pairs);
    }
    demo_http::redirect(url.as_str())
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = HeaderValue::from_str(&format!(
            "Basic {}",
            STANDARD.encode("my%20client:p%3Aw+d%25")
        ))
        .unwrap();
        assert_eq!(
            parse_basic(&header),
            Some(("my client".to_owned(), "p:w d%".to_owned()))
        );
        let bad = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode("a:%zz"))).unwrap();
        assert_eq!(parse_basic(&bad), None);
        assert_eq!(form_decode("%+1"), None);
        assert_eq!(parse_basic(&HeaderValue::from_static("Bearer abc")), None);
    }

    #[test]
    fn pkce_rules() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(is_valid_verifier(verifier));
        assert_eq!(
            s256(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(is_s256_challenge(&s256(verifier)));
        assert!(!is_valid_verifier("short"));
        assert!(!is_valid_verifier(&"a".repeat(129)));
        assert!(!is_valid_verifier(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn repeated_parameters_are_refused() {
        assert_eq!(parse_params(b"a=1&b=2&a=3"), Err("a".to_owned()));
        let params = parse_params(b"a=&b=x%20y").unwrap();
        assert_eq!(param(&params, "a"), None);
        assert_eq!(param(&params, "b"), Some("x y"));
    }
}
