//! The bench of the bearer-token tests: the development provider, the echo upstream and the
//! proxy with two static-key issuers and scoped routes; and [`Cases`], the named refusals of one
//! attack class.

use std::path::Path;

use jsonwebtoken::{Algorithm, Header};
use portcullis::demo::DevIdp;
use reqwest::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};

use super::keys::{fixture, EcKey};
use super::tokens::{now, random_id, API_AUDIENCE, DEALER, STATIC_AUDIENCE};
use super::{header_str, location, plain_client, scratch_file, World, BROWSER_ACCEPT};

/// The static ES384 issuer, whose key each bench generates.
pub const ES384_ISSUER: &str = "https://es384.internal";

fn bearer_extra(es384_jwk: &Path) -> String {
    format!(
        r#"
[bearer]
audiences = ["{API_AUDIENCE}"]
accept_id_tokens = true

[[bearer.issuers]]
issuer = "{DEALER}"
audiences = ["{STATIC_AUDIENCE}"]
public_keys = ["{dealer}"]

[[bearer.issuers]]
issuer = "{ES384_ISSUER}"
audiences = ["{STATIC_AUDIENCE}"]
public_keys = ["{es384}"]

[[routes]]
path = "/reports"
scopes = ["reports:read"]

[[routes]]
path = "/admin"
scopes = ["admin:write"]

[[routes]]
path = "/machine"
token_type = "access"

[[routes]]
path = "/people"
token_type = "id"
"#,
        dealer = fixture("dealer-rs512.pub.pem").display(),
        es384 = es384_jwk.display(),
    )
}

pub struct Bench {
    pub w: World,
    pub client: reqwest::Client,
    /// The ES384 issuer's key pair (its public JWK is in the config).
    pub es384: EcKey,
}

impl Bench {
    /// Starts provider, upstream and proxy, and makes sure the proxy answering is this one.
    ///
    /// The harness picks the proxy's port by binding `:0` and letting go; until the proxy binds
    /// it, another listener of a test running in parallel (a provider, an upstream) can take that
    /// port, and then `/ping` is answered by a stranger. Ours sends a login to our provider; when
    /// it does not, the bench is dropped (which ends its processes) and started again.
    pub async fn start() -> Bench {
        portcullis::jwt::provider::install();
        for attempt in 1..=3 {
            let es384 = EcKey::generate(Algorithm::ES384);
            let jwk = scratch_file("es384.jwk.json", es384.jwk().to_string().as_bytes());
            let extra = bearer_extra(&jwk);
            // In a task: a harness panic (port taken, nothing answering) becomes an error.
            let started = tokio::spawn(async move { World::start(|c| c, &extra).await }).await;
            match started {
                Ok(w) if serves_this_world(&w).await => {
                    return Bench {
                        w,
                        client: plain_client(),
                        es384,
                    }
                }
                Ok(_) => eprintln!("bench attempt {attempt}: the proxy's port was taken; again"),
                Err(e) => eprintln!("bench attempt {attempt}: {e}; again"),
            }
        }
        panic!("no bench after 3 attempts");
    }

    pub fn idp(&self) -> &DevIdp {
        &self.w.idp
    }

    pub fn issuer(&self) -> String {
        self.w.idp.issuer().to_string()
    }

    /// A page navigation by a browser that also carries a bearer token: it must never be sent
    /// to a login page.
    pub fn navigate(&self, path: &str, token: &str) -> RequestBuilder {
        self.client
            .get(self.w.proxy.url(path))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header(ACCEPT, BROWSER_ACCEPT)
            .header("sec-fetch-mode", "navigate")
    }

    /// A script's call: the echo upstream answers JSON.
    pub async fn api(&self, path: &str, token: &str) -> Response {
        self.client
            .get(self.w.proxy.url(path))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header(ACCEPT, "application/json")
            .send()
            .await
            .expect("request")
    }

    pub fn es384_claims(&self, sub: &str) -> Value {
        json!({
            "iss": ES384_ISSUER, "sub": sub, "aud": STATIC_AUDIENCE, "iat": now(),
            "exp": now() + 300, "jti": random_id(),
        })
    }

    pub fn es384_token(&self, claims: &Value) -> String {
        self.es384.token(&Header::new(Algorithm::ES384), claims)
    }

    fn log_tail(&self) -> String {
        let log = self.w.proxy.log();
        let start = log.len().saturating_sub(3000);
        let start = (start..log.len())
            .find(|i| log.is_char_boundary(*i))
            .unwrap_or(0);
        log[start..].to_string()
    }

    /// A control: `token` is accepted on `path` as `user` (the HTML echo shows the header).
    pub async fn accepted(&self, case: &str, path: &str, token: &str, user: &str) {
        let resp = self.navigate(path, token).send().await.expect("request");
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(
            status,
            StatusCode::OK,
            "control `{case}` must be accepted: {}\n--- proxy log ---\n{}",
            clip(&body, 400),
            self.log_tail()
        );
        let row = format!("<th>x-forwarded-user</th><td>{user}</td>");
        assert!(
            body.contains(&row),
            "control `{case}`: upstream did not see user {user}: {}",
            clip(&body, 2000)
        );
    }

    pub fn cases(&self, class: &'static str) -> Cases<'_> {
        Cases {
            bench: self,
            class,
            checked: 0,
            failures: Vec::new(),
        }
    }
}

/// Whether the proxy at `w.proxy` is the one configured for `w.idp`.
async fn serves_this_world(w: &World) -> bool {
    let resp = plain_client()
        .get(w.proxy.url("/oauth2/start?rd=/"))
        .send()
        .await;
    resp.is_ok_and(|r| {
        r.status() == StatusCode::FOUND && location(&r).starts_with(&format!("{}/", w.idp.issuer()))
    })
}

fn clip(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Why `resp` is not an RFC 6750 `invalid_token` refusal (401, challenge with `error` and
/// `error_description`, JSON body, no redirect), or `None` when it is one.
async fn not_invalid_token(resp: Response) -> Option<String> {
    let status = resp.status();
    let www = header_str(&resp, WWW_AUTHENTICATE);
    let location = location(&resp);
    let body = resp.text().await.unwrap_or_default();
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let ok = status == StatusCode::UNAUTHORIZED
        && www.starts_with("Bearer ")
        && www.contains(r#"error="invalid_token""#)
        && www.contains(r#"error_description=""#)
        && json["error"] == "invalid_token"
        && location.is_empty();
    (!ok).then(|| {
        format!(
            "got {status}, WWW-Authenticate {www:?}, Location {location:?}, body {:?}",
            clip(&body, 200)
        )
    })
}

/// The refusals of one attack class. Every case is checked on its own and named; `finish`
/// fails the test listing every case that was not refused, with the proxy's log.
pub struct Cases<'a> {
    bench: &'a Bench,
    class: &'static str,
    checked: usize,
    failures: Vec<String>,
}

impl Cases<'_> {
    /// `token` on `path` (as a browser navigation) must be refused with `invalid_token`.
    pub async fn refused(&mut self, case: &str, path: &str, token: &str) {
        let resp = self
            .bench
            .navigate(path, token)
            .send()
            .await
            .expect("request");
        self.refused_response(case, resp).await;
    }

    pub async fn refused_response(&mut self, case: &str, resp: Response) {
        self.checked += 1;
        if let Some(why) = not_invalid_token(resp).await {
            self.failures.push(format!("  - {case}: {why}"));
        }
    }

    pub fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{}: {} of {} cases were not refused with 401 invalid_token:\n{}\n--- proxy log (tail) ---\n{}",
            self.class,
            self.failures.len(),
            self.checked,
            self.failures.join("\n"),
            self.bench.log_tail()
        );
        eprintln!("{}: {} cases refused", self.class, self.checked);
    }
}
