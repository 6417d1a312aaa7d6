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

/// Who passed client authentication at `/token`; each kind has its own grants.
enum Client<'a> {
    /// The web client: authorization code and refresh token grants.
    Web,
    /// A machine client: the client credentials grant.
    Service(&'a ServiceClient),
}

/// A validated authorization request.
struct AuthRequest<'a> {
    client_id: &'a str,
    redirect_uri: &'a str,
    scope: &'a str,
    state: Option<&'a str>,
    nonce: Option<&'a str>,
    code_challenge: &'a str,
}

impl AuthRequest<'_> {
    /// The parameters the login form posts back.
    fn hidden_fields(&self) -> Vec<(&str, &str)> {
        let mut fields = vec![
            ("client_id", self.client_id),
            ("redirect_uri", self.redirect_uri),
            ("response_type", "code"),
            ("scope", self.scope),
            ("code_challenge", self.code_challenge),
            ("code_challenge_method", "S256"),
        ];
        if let Some(state) = self.state {
            fields.push(("state", state));
        }
        if let Some(nonce) = self.nonce {
            fields.push(("nonce", nonce));
        }
        fields
    }
}

/// Why an authorization request is refused, and so how: before the redirect URI is known to be
/// registered the user gets a page; after, the client gets the error at its redirect URI.
enum Refusal<'a> {
    Page(String),
    Redirect {
        redirect_uri: &'a str,
        state: Option<&'a str>,
        error: &'static str,
        description: &'static str,
    },
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

    fn discovery(&self) -> Response<Body> {
        bump(&self.counters.discovery_fetches);
        let iss = &self.issuer;
        demo_http::json(
            StatusCode::OK,
            &json!({
                "issuer": iss,
                "authorization_endpoint": format!("{iss}/authorize"),
                "token_endpoint": format!("{iss}/token"),
                "userinfo_endpoint": format!("{iss}/userinfo"),
                "jwks_uri": format!("{iss}/jwks"),
                "end_session_endpoint": format!("{iss}/logout"),
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
                "scopes_supported": SCOPES,
                "claims_supported": CLAIMS,
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "code_challenge_methods_supported": ["S256"],
                "authorization_response_iss_parameter_supported": true,
            }),
        )
    }

    fn jwks(&self) -> Response<Body> {
        bump(&self.counters.jwks_fetches);
        let mut res = demo_http::json(StatusCode::OK, &self.keys.jwks());
        // Like real providers: cacheable, so a relying party must refetch on an unknown `kid`.
        res.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        );
        res
    }

    fn check_authorize<'a>(&self, params: &'a Params) -> Result<AuthRequest<'a>, Refusal<'a>> {
        let client_id = param(params, "client_id")
            .ok_or_else(|| Refusal::Page("The request has no client_id.".into()))?;
        if client_id != self.config.client_id {
            return Err(Refusal::Page(format!("Unknown client_id {client_id:?}.")));
        }
        let redirect_uri = param(params, "redirect_uri")
            .ok_or_else(|| Refusal::Page("The request has no redirect_uri.".into()))?;
        if !self.config.redirect_uris.iter().any(|u| u == redirect_uri) {
            return Err(Refusal::Page(format!(
                "redirect_uri {redirect_uri:?} is not registered for this client (exact match \
                 required)."
            )));
        }
        let state = param(params, "state");
        let refuse = |error, description| Refusal::Redirect {
            redirect_uri,
            state,
            error,
            description,
        };
        if param(params, "response_type") != Some("code") {
            return Err(refuse(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
        let scope = param(params, "scope").unwrap_or("");
        if !has_scope(scope, "openid") {
            return Err(refuse("invalid_scope", "scope must include openid"));
        }
        let Some(code_challenge) = param(params, "code_challenge") else {
            return Err(refuse(
                "invalid_request",
                "PKCE is required: send code_challenge with code_challenge_method=S256",
            ));
        };
        if param(params, "code_challenge_method") != Some("S256") {
            return Err(refuse(
                "invalid_request",
                "code_challenge_method must be S256",
            ));
        }
        if !is_s256_challenge(code_challenge) {
            return Err(refuse(
                "invalid_request",
                "code_challenge is not an unpadded base64url SHA-256 digest",
            ));
        }
        Ok(AuthRequest {
            client_id,
            redirect_uri,
            scope,
            state,
            nonce: param(params, "nonce"),
            code_challenge,
        })
    }

    /// `GET /authorize` shows the form; `POST /authorize` is the form coming back.
    fn authorize(&self, raw: &[u8], submitted: bool) -> Response<Body> {
        let params = match parse_params(raw) {
            Ok(params) => params,
            Err(name) => {
                return self.refusal(Refusal::Page(format!(
                    "Parameter {name:?} was sent more than once."
                )))
            }
        };
        let request = match self.check_authorize(&params) {
            Ok(request) => request,
            Err(refusal) => return self.refusal(refusal),
        };
        if !submitted {
            let prompt = param(&params, "prompt").unwrap_or("");
            if has_scope(prompt, "none") {
                return self.refusal(Refusal::Redirect {
                    redirect_uri: request.redirect_uri,
                    state: request.state,
                    error: "login_required",
                    description: "the development IdP keeps no session; the user must sign in",
                });
            }
            let login_hint = param(&params, "login_hint").unwrap_or("");
            return self.login_form(&request, login_hint, None);
        }

        let username = param(&params, "username").unwrap_or("");
        let password = param(&params, "password").unwrap_or("");
        let Some(user) = self.check_password(username, password) else {
            tracing::info!("dev IdP login failed");
            return self.login_form(&request, username, Some("Wrong username or password."));
        };
        bump(&self.counters.logins);
        tracing::info!(user = %user.username, "dev IdP login");

        let code = random_token();
        let issued = Instant::now();
        {
            let mut codes = lock(&self.codes);
            codes.retain(|_, grant| grant.expires > issued);
            codes.insert(
                code.clone(),
                CodeGrant {
                    client_id: request.client_id.to_owned(),
                    redirect_uri: request.redirect_uri.to_owned(),
                    code_challenge: request.code_challenge.to_owned(),
                    nonce: request.nonce.map(str::to_owned),
                    username: user.username.clone(),
                    scope: request.scope.to_owned(),
                    auth_time: now(),
                    sid: random_token(),
                    expires: issued + CODE_TTL,
                },
            );
        }
        let mut pairs = vec![("code", code.as_str())];
        pairs.extend(request.state.map(|s| ("state", s)));
        pairs.push(("iss", self.issuer.as_str()));
        redirect_with(request.redirect_uri, &pairs)
    }

    fn refusal(&self, refusal: Refusal<'_>) -> Response<Body> {
        match refusal {
            Refusal::Page(message) => {
                demo_http::html(StatusCode::BAD_REQUEST, pages::error(&message))
            }
            Refusal::Redirect {
                redirect_uri,
                state,
                error,
                description,
            } => {
                let mut pairs = vec![("error", error), ("error_description", description)];
                pairs.extend(state.map(|s| ("state", s)));
                pairs.push(("iss", self.issuer.as_str()));
                redirect_with(redirect_uri, &pairs)
            }
        }
    }

    fn login_form(
        &self,
        request: &AuthRequest<'_>,
        username: &str,
        error: Option<&str>,
    ) -> Response<Body> {
        demo_http::html(
            StatusCode::OK,
            pages::login(
                request.client_id,
                &request.hidden_fields(),
                &self.config.users,
                username,
                error,
            ),
        )
    }

    fn check_password(&self, username: &str, password: &str) -> Option<&DevUser> {
        self.user(username)
            .filter(|user| secret_eq(password, &user.password))
    }

    fn token(&self, req: &Request<Bytes>) -> Response<Body> {
        let params = parse_params(req.body());
        let grant_type = params
            .as_ref()
            .ok()
            .and_then(|p| param(p, "grant_type"))
            .map(str::to_owned);
        let result = if !is_form(req.headers()) {
            Err(OAuthError::invalid_request(
                "the token request must be application/x-www-form-urlencoded",
            ))
        } else {
            match &params {
                Ok(params) => self.token_grant(req.headers(), params),
                Err(name) => Err(OAuthError::invalid_request(format!(
                    "parameter {name:?} was sent more than once"
                ))),
            }
        };
        let counters = &self.counters;
        let (ok, failed) = match grant_type.as_deref() {
            Some("authorization_code") => (
                Some(&counters.authorization_code_grants),
                Some(&counters.authorization_code_grants_failed),
            ),
            Some("refresh_token") => (
                Some(&counters.refresh_token_grants),
                Some(&counters.refresh_token_grants_failed),
            ),
            Some("client_credentials") => (
                Some(&counters.client_credentials_grants),
                Some(&counters.client_credentials_grants_failed),
            ),
            _ => (None, None),
        };
        match result {
            Ok(body) => {
                if let Some(counter) = ok {
                    bump(counter);
                }
                no_store(demo_http::json(StatusCode::OK, &body))
            }
            Err(err) => {
                if let Some(counter) = failed {
                    bump(counter);
                }
                tracing::info!(
                    grant_type = grant_type.as_deref().unwrap_or("-"),
                    error = err.error,
                    "dev IdP token request refused"
                );
                err.into_response()
            }
        }
    }

    fn token_grant(&self, headers: &HeaderMap, params: &Params) -> Result<Value, OAuthError> {
        let client = self.authenticate_client(headers, params)?;
        match (param(params, "grant_type"), client) {
            (Some("authorization_code"), Client::Web) => self.code_grant(params),
            (Some("refresh_token"), Client::Web) => self.refresh_grant(params),
            (Some("client_credentials"), Client::Service(service)) => {
                self.client_credentials_grant(service, params)
            }
            (Some("authorization_code" | "refresh_token"), Client::Service(_)) => Err(
                OAuthError::unauthorized_client("a service client may only use client_credentials"),
            ),
            (Some("client_credentials"), Client::Web) => Err(OAuthError::unauthorized_client(
                "the web client may not use client_credentials",
            )),
            (Some(_), _) => Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "supported grant types: authorization_code, refresh_token, client_credentials",
            )),
            (None, _) => Err(OAuthError::invalid_request("grant_type is required")),
        }
    }

    pub(super) fn service_client(&self, client_id: &str) -> Option<&ServiceClient> {
        self.config
            .service_clients
            .iter()
            .find(|c| c.client_id == client_id)
    }

    /// RFC 6749 §2.3.1: HTTP Basic or `client_id`/`client_secret` in the body, never both.
    /// Client ids are public, so finding the client may take variable time; only the secret
    /// comparison must not.
    fn authenticate_client(
        &self,
        headers: &HeaderMap,
        params: &Params,
    ) -> Result<Client<'_>, OAuthError> {
        let (client_id, secret, basic) = match headers.get(header::AUTHORIZATION) {
            Some(value) => {
                let (id, secret) = parse_basic(value).ok_or_else(|| {
                    OAuthError::invalid_client(true, "malformed HTTP Basic client credentials")
                })?;
                if params.contains_key("client_secret") {
                    return Err(OAuthError::invalid_request(
                        "use one client authentication method, not two",
                    ));
                }
                if param(params, "client_id").is_some_and(|body_id| body_id != id) {
                    return Err(OAuthError::invalid_client(
                        true,
                        "client_id in the body differs from the authenticated client",
                    ));
                }
                (id, secret, true)
            }
            None => {
                let missing =
                    || OAuthError::invalid_client(false, "client authentication is required");
                let id = param(params, "client_id").ok_or_else(missing)?;
                let secret = param(params, "client_secret").ok_or_else(missing)?;
                (id.to_owned(), secret.to_owned(), false)
            }
        };
        let (client, expected) = if client_id == self.config.client_id {
            (Client::Web, self.config.client_secret.as_str())
        } else if let Some(service) = self.service_client(&client_id) {
            (Client::Service(service), service.client_secret.as_str())
        } else {
            return Err(OAuthError::invalid_client(
                basic,
                "client authentication failed",
            ));
        };
        if secret_eq(&secret, expected) {
            Ok(client)
        } else {
            Err(OAuthError::invalid_client(
                basic,
                "client authentication failed",
            ))
        }
    }

    /// RFC 6749 §4.4: a token for the client itself. The requested scope must be within the
    /// client's; none requested means all of them (§3.3 lets the server pick a default).
    fn client_credentials_grant(
        &self,
        client: &ServiceClient,
        params: &Params,
    ) -> Result<Value, OAuthError> {
        let mut granted: Vec<&str> = Vec::new();
        for wanted in param(params, "scope")
            .unwrap_or("")
            .split_ascii_whitespace()
        {
            if !client.scopes.iter().any(|s| s == wanted) {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    format!("scope {wanted:?} is not allowed for this client"),
                ));
            }
            if !granted.contains(&wanted) {
                granted.push(wanted);
            }
        }
        if granted.is_empty() {
            granted = client.scopes.iter().map(String::as_str).collect();
        }
        let scope = granted.join(" ");
        let claims = self.service_access_token_claims(client, &scope, now());
        let access_token = self.keys.sign(ACCESS_TOKEN_TYP, &claims)?;
        tracing::info!(
            client_id = %client.client_id,
            scope = %scope,
            "dev IdP client credentials grant"
        );
        // No refresh token (RFC 6749 §4.4.3: the client can simply ask again) and no ID token
        // (there is no user).
        Ok(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.config.access_token_ttl.as_secs(),
            "scope": scope,
        }))
    }

    /// RFC 9068 access token claims for a machine client: it is its own subject, and the
    /// audience is the API it calls, not the IdP.
    pub(super) fn service_access_token_claims(
        &self,
        client: &ServiceClient,
        scope: &str,
        now: u64,
    ) -> Value {
        json!({
            "iss": self.issuer,
            "sub": client.client_id,
            "aud": client.audience,
            "client_id": client.client_id,
            "scope": scope,
            "iat": now,
            "exp": now + self.config.access_token_ttl.as_secs(),
            "jti": random_token(),
        })
    }

    fn code_grant(&self, params: &Params) -> Result<Value, OAuthError> {
        let code =
            param(params, "code").ok_or_else(|| OAuthError::invalid_request("code is required"))?;
        // Single use: the code is gone whatever happens next.
        let grant = lock(&self.codes)
            .remove(code)
            .ok_or_else(|| OAuthError::invalid_grant("unknown or already used code"))?;
        if grant.expires <= Instant::now() {
            return Err(OAuthError::invalid_grant("code expired"));
        }
        if grant.client_id != self.config.client_id {
            return Err(OAuthError::invalid_grant(
                "code was issued to another client",
            ));
        }
        if param(params, "redirect_uri") != Some(grant.redirect_uri.as_str()) {
            return Err(OAuthError::invalid_grant(
                "redirect_uri differs from the authorization request",
            ));
        }
        let verifier = param(params, "code_verifier")
            .ok_or_else(|| OAuthError::invalid_grant("code_verifier is required (PKCE)"))?;
        if !is_valid_verifier(verifier) || !secret_eq(&s256(verifier), &grant.code_challenge) {
            return Err(OAuthError::invalid_grant("PKCE verification failed"));
        }
        let user = self
            .user(&grant.username)
            .ok_or_else(|| OAuthError::invalid_grant("user no longer exists"))?;
        let refresh_token = random_token();
        let now = Instant::now();
        {
            let mut tokens = lock(&self.refresh_tokens);
            tokens.retain(|_, g| g.expires > now);
            tokens.insert(
                refresh_token.clone(),
                RefreshGrant {
                    client_id: grant.client_id.clone(),
                    username: grant.username.clone(),
                    scope: grant.scope.clone(),
                    auth_time: grant.auth_time,
                    sid: grant.sid.clone(),
                    expires: now + self.config.refresh_token_ttl,
                },
            );
        }
        self.token_response(
            user,
            &grant.scope,
            grant.auth_time,
            &grant.sid,
            grant.nonce.as_deref(),
            Some(refresh_token),
        )
    }

    fn refresh_grant(&self, params: &Params) -> Result<Value, OAuthError> {
        let token = param(params, "refresh_token")
            .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
        let now = Instant::now();
        let (grant, new_token) = {
            let mut tokens = lock(&self.refresh_tokens);
            let grant = match tokens.get(token) {
                Some(grant) if grant.expires > now => grant.clone(),
                Some(_) => {
                    tokens.remove(token);
                    return Err(OAuthError::invalid_grant("refresh token expired"));
                }
                None => {
                    return Err(OAuthError::invalid_grant(
                        "unknown, already used or revoked refresh token",
                    ))
                }
            };
            if grant.client_id != self.config.client_id {
                return Err(OAuthError::invalid_grant(
                    "refresh token was issued to another client",
                ));
            }
            if let Some(requested) = param(params, "scope") {
                if !requested
                    .split_ascii_whitespace()
                    .all(|s| has_scope(&grant.scope, s))
                {
                    return Err(OAuthError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_scope",
                        "a refresh cannot widen the granted scope",
                    ));
                }
            }
            let new_token = if self.config.rotate_refresh_tokens {
                // The old token dies in the same critical section: a concurrent second use of it
                // finds nothing, exactly like a replay.
                tokens.remove(token);
                let new_token = random_token();
                tokens.insert(
                    new_token.clone(),
                    RefreshGrant {
                        expires: now + self.config.refresh_token_ttl,
                        ..grant.clone()
                    },
                );
                Some(new_token)
            } else {
                None
            };
            (grant, new_token)
        };
        let user = self
            .user(&grant.username)
            .ok_or_else(|| OAuthError::invalid_grant("user no longer exists"))?;
        let scope = param(params, "scope").unwrap_or(&grant.scope);
        self.token_response(user, scope, grant.auth_time, &grant.sid, None, new_token)
    }

    fn token_response(
        &self,
        user: &DevUser,
        scope: &str,
        auth_time: u64,
        sid: &str,
        nonce: Option<&str>,
        refresh_token: Option<String>,
    ) -> Result<Value, OAuthError> {
        let now = now();
        let access_token = self.keys.sign(
            ACCESS_TOKEN_TYP,
            &self.access_token_claims(user, scope, now),
        )?;
        let id_token = self.keys.sign(
            "JWT",
            &self.id_token_claims(user, now, auth_time, sid, nonce),
        )?;
        let mut body = json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.config.access_token_ttl.as_secs(),
            "id_token": id_token,
            "scope": scope,
        });
        if let Some(refresh_token) = refresh_token {
            body["refresh_token"] = Value::String(refresh_token);
        }
        Ok(body)
    }

    /// An RFC 9068-style access token for this IdP's own `/userinfo` (and for relying parties
    /// that accept bearer tokens), audience the client.
    fn access_token_claims(&self, user: &DevUser, scope: &str, now: u64) -> Value {
        json!({
            "iss": self.issuer,
            "sub": user.username,
            "aud": self.config.client_id,
            "client_id": self.config.client_id,
            "scope": scope,
            "iat": now,
            "exp": now + self.config.access_token_ttl.as_secs(),
            "jti": random_token(),
            "groups": user.groups,
        })
    }

    /// ID token claims. Profile, email and groups are included whatever the scope: the proxy is
    /// the only client, and tests want them without negotiating scopes.
    pub(super) fn id_token_claims(
        &self,
        user: &DevUser,
        now: u64,
        auth_time: u64,
        sid: &str,
        nonce: Option<&str>,
    ) -> Value {
        let mut claims = json!({
            "iss": self.issuer,
            "sub": user.username,
            "aud": self.config.client_id,
            "azp": self.config.client_id,
            "exp": now + self.config.id_token_ttl.as_secs(),
            "iat": now,
            "auth_time": auth_time,
            "sid": sid,
            "email": user.email,
            "email_verified": user.email_verified,
            "name": user.name,
            "preferred_username": user.username,
            "groups": user.groups,
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = Value::String(nonce.to_owned());
        }
        claims
    }

    fn userinfo(&self, headers: &HeaderMap) -> Response<Body> {
        bump(&self.counters.userinfo_calls);
        let Some(user) = bearer(headers).and_then(|token| self.verify_access_token(token)) else {
            let mut res = demo_http::json(
                StatusCode::UNAUTHORIZED,
                &json!({ "error": "invalid_token" }),
            );
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            return res;
        };
        no_store(demo_http::json(
            StatusCode::OK,
            &json!({
                "sub": user.username,
                "email": user.email,
                "email_verified": user.email_verified,
                "name": user.name,
                "preferred_username": user.username,
                "groups": user.groups,
            }),
        ))
    }

    /// Checks signature (by a published key), `typ`, issuer, audience and expiry, no leeway.
    fn verify_access_token(&self, token: &str) -> Option<&DevUser> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
            return None;
        }
        let key = self.keys.find(header.kid.as_deref()?)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = 0;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.config.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Value>(token, key.decoding_key(), &validation).ok()?;
        self.user(data.claims.get("sub")?.as_str()?)
    }

    /// An `id_token_hint` is trusted if one of our published keys signed it for our client;
    /// expiry does not matter (OpenID RP-Initiated Logout §2).
    fn verify_id_token_hint(&self, token: &str) -> Option<Value> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let key = self.keys.find(header.kid.as_deref()?)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.config.client_id]);
        validation.set_required_spec_claims(&["iss", "aud", "sub"]);
        jsonwebtoken::decode::<Value>(token, key.decoding_key(), &validation)
            .ok()
            .map(|data| data.claims)
    }

    /// RP-initiated logout. A valid `id_token_hint` ends that login's refresh tokens. The user
    /// goes back to `post_logout_redirect_uri` only if it is registered *and* the request is
    /// tied to our client (valid hint or matching `client_id`); otherwise a signed-out page.
    fn logout(&self, raw: &[u8]) -> Response<Body> {
        bump(&self.counters.logouts);
        let Ok(params) = parse_params(raw) else {
            return demo_http::html(
                StatusCode::BAD_REQUEST,
                pages::error("A logout parameter was sent more than once."),
            );
        };
        let hint = param(&params, "id_token_hint").and_then(|t| self.verify_id_token_hint(t));
        if let Some(sid) = hint
            .as_ref()
            .and_then(|claims| claims.get("sid"))
            .and_then(Value::as_str)
        {
            lock(&self.refresh_tokens).retain(|_, grant| grant.sid != sid);
        }
        let for_our_client = match param(&params, "client_id") {
            Some(client_id) => client_id == self.config.client_id,
            None => hint.is_some(),
        };
        let target = param(&params, "post_logout_redirect_uri").filter(|uri| {
            self.config
                .post_logout_redirect_uris
                .iter()
                .any(|allowed| allowed == uri)
        });
        match target {
            Some(target) if for_our_client => {
                let state: Vec<_> = param(&params, "state")
                    .map(|s| ("state", s))
                    .into_iter()
                    .collect();
                redirect_with(target, &state)
            }
            _ => demo_http::html(StatusCode::OK, pages::signed_out()),
        }
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
