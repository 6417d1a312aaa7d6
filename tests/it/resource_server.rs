//! A resource server: no `[oidc]`, no `[session]`; its callers are programs with tokens from a
//! Keycloak-like realm (the development provider, found by discovery) and from a token
//! dealer whose RS512 tokens carry no `sub` and no `kid` (a PEM key). Every refusal's exact
//! reason is in the access log, never the token; `explain-token` says the same offline.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use jsonwebtoken::{Algorithm, Header};
use reqwest::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::keys::fixture;
use crate::support::tokens::{attacker_key, dealer_token, now, CLIENT, DEALER, STATIC_AUDIENCE};
use crate::support::*;

/// The resource server's configuration: the realm (discovered) and the dealer (a PEM key),
/// the routes of the Keycloak quickstart.
fn resource_server(port: u16, realm: &str, upstream: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
[upstream]
url = "{upstream}"
[logging]
format = "json"

[[bearer.issuers]]
issuer = "{realm}"
audiences = ["{api}"]
user_claim = ["sub", "client_id", "azp"]

[[bearer.issuers]]
issuer = "{DEALER}"
audiences = ["{STATIC_AUDIENCE}"]
public_keys = ["{dealer}"]
user_claim = ["sub", "client_id", "azp"]

[[routes]]
path = "/api/public"
policy = "public"

[[routes]]
path = "/api/private"

[[routes]]
path = "/api/private-scoped"
scopes = ["test_api_access"]
"#,
        api = crate::support::tokens::API_AUDIENCE,
        dealer = fixture("dealer-rs512.pub.pem").display(),
    )
}

/// The token dealer's shape: `iss`, `aud`, `iat`, `exp` and nothing else.
fn dealer_minimal(aud: &str) -> Value {
    json!({"iss": DEALER, "aud": aud, "iat": now(), "exp": now() + 300})
}

/// The upstream's view of one header, from the echo's JSON.
fn seen(echo: &Value, name: &str) -> Option<String> {
    echo["headers"].as_array()?.iter().find_map(|pair| {
        (pair[0].as_str()? == name).then(|| pair[1].as_str().unwrap_or_default().to_string())
    })
}

/// The access-log lines (JSON) of `proxy`, as objects.
fn access_lines(proxy: &Proxy) -> Vec<Value> {
    proxy
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "access")
        .collect()
}

/// The `reason` of the access-log line of the request to `path`, once it is written.
async fn reason_for(proxy: &Proxy, path: &str) -> String {
    let mut found = String::new();
    wait_until("the access-log line", Duration::from_secs(5), || {
        let line = access_lines(proxy)
            .into_iter()
            .rev()
            .find(|v| v["fields"]["path"] == path || v["path"] == path);
        found = line
            .map(|v| {
                let fields = if v["fields"].is_object() {
                    &v["fields"]
                } else {
                    &v
                };
                fields["reason"].as_str().unwrap_or_default().to_string()
            })
            .unwrap_or_default();
        let done = !found.is_empty();
        async move { done }
    })
    .await;
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resource_server_serves_programs_without_any_login() {
    portcullis::jwt::provider::install();
    let port = free_port();
    let realm = start_idp(idp_config(port)).await;
    let echo = start_echo().await;
    let proxy = Proxy::start(
        port,
        &resource_server(port, realm.issuer(), &format!("http://{}", echo.addr())),
    )
    .await;
    // Ready means: every issuer's keys are loaded (the realm's by discovery).
    proxy.wait_ready().await;
    let client = plain_client();
    let get = |path: &str, token: Option<&str>| {
        let mut r = client
            .get(proxy.url(path))
            .header(ACCEPT, "application/json");
        if let Some(t) = token {
            r = r.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        r
    };

    // No login anywhere: the login endpoints do not exist, and a browser gets a 401 like a
    // program (no redirect to a login that is not there).
    for path in [
        "/oauth2/start",
        "/oauth2/callback",
        "/oauth2/sign_out",
        "/oauth2/userinfo",
    ] {
        let r = get(path, None).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let r = client
        .get(proxy.url("/api/private"))
        .header(ACCEPT, BROWSER_ACCEPT)
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(header_str(&r, WWW_AUTHENTICATE).starts_with("Bearer"));
    assert_eq!(
        get("/api/public", None).send().await.unwrap().status(),
        StatusCode::OK
    );

    // The realm's client-credentials token: its scope opens the scoped route.
    let scoped = realm
        .mint_access_token(CLIENT, &["test_api_access"])
        .unwrap();
    let r = get("/api/private-scoped", Some(&scoped))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let echoed: Value = r.json().await.unwrap();
    assert_eq!(seen(&echoed, "x-forwarded-user").as_deref(), Some(CLIENT));
    let unscoped = realm.mint_access_token(CLIENT, &["reports:read"]).unwrap();
    let r = get("/api/private-scoped", Some(&unscoped))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(header_str(&r, WWW_AUTHENTICATE).contains("insufficient_scope"));

    // The dealer's token: no sub, no kid, RS512, a PEM key. Accepted; no user header at all.
    let minimal = dealer_token(&dealer_minimal(STATIC_AUDIENCE));
    let r = get("/api/private", Some(&minimal)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let echoed: Value = r.json().await.unwrap();
    assert_eq!(seen(&echoed, "x-forwarded-user"), None, "{echoed}");
    // The user claims are tried in order: `client_id` when there is no `sub`.
    let mut with_client = dealer_minimal(STATIC_AUDIENCE);
    with_client["client_id"] = json!("billing-job");
    let r = get("/api/private", Some(&dealer_token(&with_client)))
        .send()
        .await
        .unwrap();
    let echoed: Value = r.json().await.unwrap();
    assert_eq!(
        seen(&echoed, "x-forwarded-user").as_deref(),
        Some("billing-job")
    );

    // Refusals: fixed wording for the client, the exact reason in the access log.
    let other_audience = dealer_token(&dealer_minimal("x"));
    let r = get("/api/private?aud", Some(&other_audience))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = header_str(&r, WWW_AUTHENTICATE);
    assert!(
        challenge.contains("error_description=\"the token is not meant for this service\""),
        "{challenge}"
    );
    assert!(!challenge.contains("reports-api"), "{challenge}");
    let no_exp = {
        let mut c = dealer_minimal(STATIC_AUDIENCE);
        c.as_object_mut().unwrap().remove("exp");
        dealer_token(&c)
    };
    let r = get("/api/private-scoped", Some(&no_exp))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let unknown_kid = jsonwebtoken::encode(
        &header,
        &json!({"iss": realm.issuer(), "aud": "portcullis-api", "sub": "x", "exp": now() + 60}),
        &attacker_key(),
    )
    .unwrap();
    let r = get("/api/public-not", Some(&unknown_kid))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    assert_eq!(
        reason_for(&proxy, "/api/private").await,
        r#"aud "x" not in ["reports-api"]"#
    );
    assert_eq!(
        reason_for(&proxy, "/api/private-scoped").await,
        "missing claim exp"
    );
    let kid_reason = reason_for(&proxy, "/api/public-not").await;
    assert!(
        kid_reason.starts_with(r#"no key with kid "k1" (JWKS fetched "#),
        "{kid_reason}"
    );
    // No token and no signature ever reach the log.
    let log = proxy.log();
    for token in [&scoped, &minimal, &other_audience, &no_exp, &unknown_kid] {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "a signature is in the log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resource_server_is_ready_only_with_every_issuers_keys() {
    let port = free_port();
    let closed = free_port();
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
[upstream]
url = "http://127.0.0.1:9"
[[bearer.issuers]]
issuer = "http://127.0.0.1:{closed}"
audiences = ["api"]
jwks_url = "http://127.0.0.1:{closed}/keys"
"#
    );
    let proxy = Proxy::start(port, &toml).await;
    let r = plain_client()
        .get(proxy.url("/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = r.text().await.unwrap();
    assert!(body.starts_with("not ready: "), "{body}");
}

/// `portcullis <args>` with `stdin`; its exit code and stdout.
fn run_with_stdin(args: &[&str], stdin: &str) -> (Option<i32>, String) {
    let mut child = Command::new(binary())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code(), format!("{stdout}{stderr}"))
}

#[test]
fn explain_token_says_which_check_failed_and_what_the_route_would_do() {
    portcullis::jwt::provider::install();
    // The realm is not running: the dealer's tokens need no network.
    let path = write_config(&resource_server(
        4180,
        "http://127.0.0.1:9/realm",
        "http://127.0.0.1:9",
    ));
    let config = path.display().to_string();
    // `check` takes the file too: there is no provider to reach.
    let (code, out) = run_with_stdin(&["check", "--config", &config], "");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("no browser sign-in"), "{out}");
    let explain = |token: &str, route: &str| {
        run_with_stdin(
            &["explain-token", "--config", &config, "--path", route],
            token,
        )
    };

    let good = dealer_token(&dealer_minimal(STATIC_AUDIENCE));
    let (code, out) = explain(&good, "/api/private");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("ok   issuer         {DEALER}")),
        "{out}"
    );
    assert!(out.contains("RS512 verified by a key without kid"), "{out}");
    assert!(out.contains("no user header is sent"), "{out}");
    assert!(
        out.contains("decision GET https://localhost/api/private -> forwarded to the upstream"),
        "{out}"
    );
    assert!(!out.contains(&good), "the token is never printed");

    let (code, out) = explain(&good, "/api/private-scoped");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(r#"answered 403 (insufficient_scope): missing scope(s) ["test_api_access"]"#),
        "{out}"
    );

    let (code, out) = explain(&dealer_token(&dealer_minimal("x")), "/api/private");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(r#"FAIL aud            aud "x" not in ["reports-api"]"#),
        "{out}"
    );
    assert!(out.contains("answered 401 (invalid_token)"), "{out}");

    let (code, out) = explain("not-a-token", "/api/private");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL structure"), "{out}");
}
