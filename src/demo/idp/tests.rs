//! End-to-end tests of the dev IdP over real HTTP, driving the code flow by hand.

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use rand::RngCore;
use reqwest::header::{AUTHORIZATION, CACHE_CONTROL, LOCATION};
use reqwest::redirect::Policy;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use url::Url;

use super::{DevIdp, DevIdpConfig};

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const LOGGED_OUT: &str = "http://127.0.0.1:9/logged-out";

async fn start(config: DevIdpConfig) -> DevIdp {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    DevIdp::start(listener, config).await.unwrap()
}

fn config() -> DevIdpConfig {
    DevIdpConfig {
        redirect_uris: vec![REDIRECT.to_owned()],
        post_logout_redirect_uris: vec![LOGGED_OUT.to_owned()],
        ..DevIdpConfig::default()
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

fn verifier() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn authorize_params(challenge: &str) -> Vec<(&'static str, String)> {
    vec![
        ("client_id", "portcullis-demo".into()),
        ("redirect_uri", REDIRECT.into()),
        ("response_type", "code".into()),
        ("scope", "openid email profile".into()),
        ("state", "st-123".into()),
        ("nonce", "n-456".into()),
        ("code_challenge", challenge.into()),
        ("code_challenge_method", "S256".into()),
    ]
}

fn query_of(location: &str) -> Vec<(String, String)> {
    Url::parse(location)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// GET the form, POST it back with the credentials, return the redirect's `Location`.
async fn login(idp: &DevIdp, challenge: &str, username: &str, password: &str) -> String {
    let http = client();
    let params = authorize_params(challenge);
    let form = http
        .get(format!("{}/authorize", idp.issuer()))
        .query(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    let page = form.text().await.unwrap();
    assert!(page.contains("Never use in production"));
    assert!(page.contains(">Sign in</button>"));
    assert!(page.contains("name=\"username\"") && page.contains("name=\"password\""));

    let mut posted = params.clone();
    posted.push(("username", username.into()));
    posted.push(("password", password.into()));
    let res = http
        .post(format!("{}/authorize", idp.issuer()))
        .form(&posted)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302, "login should redirect");
    res.headers()[LOCATION].to_str().unwrap().to_owned()
}

async fn code_for(idp: &DevIdp, challenge: &str) -> String {
    let location = login(idp, challenge, "alice", "alice").await;
    assert!(location.starts_with(REDIRECT));
    let query = query_of(&location);
    assert_eq!(get(&query, "state"), Some("st-123"));
    assert_eq!(get(&query, "iss"), Some(idp.issuer()));
    get(&query, "code").unwrap().to_owned()
}

async fn exchange(idp: &DevIdp, code: &str, verifier: &str) -> reqwest::Response {
    client()
        .post(format!("{}/token", idp.issuer()))
        .basic_auth("portcullis-demo", Some("demo-secret-not-for-production"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
}

async fn refresh(idp: &DevIdp, token: &str) -> reqwest::Response {
    client()
        .post(format!("{}/token", idp.issuer()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", "portcullis-demo"),
            ("client_secret", "demo-secret-not-for-production"),
        ])
        .send()
        .await
        .unwrap()
}

async fn tokens(idp: &DevIdp) -> Value {
    let v = verifier();
    let code = code_for(idp, &challenge(&v)).await;
    let res = exchange(idp, &code, &v).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn error_of(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    (status, body["error"].as_str().unwrap().to_owned())
}

/// Verifies an ID token the way a relying party would: keys from the published JWKS.
async fn verify_id_token(idp: &DevIdp, token: &str) -> Value {
    let jwks: JwkSet = client()
        .get(format!("{}/jwks", idp.issuer()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[idp.issuer()]);
    validation.set_audience(&["portcullis-demo"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap()
        .claims
}

#[tokio::test]
async fn discovery_document() {
    let idp = start(config()).await;
    assert!(!idp.issuer().ends_with('/'));
    let doc: Value = client()
        .get(format!("{}/.well-known/openid-configuration", idp.issuer()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let iss = idp.issuer();
    assert_eq!(doc["issuer"], iss);
    assert_eq!(doc["authorization_endpoint"], format!("{iss}/authorize"));
    assert_eq!(doc["token_endpoint"], format!("{iss}/token"));
    assert_eq!(doc["userinfo_endpoint"], format!("{iss}/userinfo"));
    assert_eq!(doc["jwks_uri"], format!("{iss}/jwks"));
    assert_eq!(doc["end_session_endpoint"], format!("{iss}/logout"));
    assert_eq!(doc["response_types_supported"], json!(["code"]));
    assert_eq!(
        doc["grant_types_supported"],
        json!(["authorization_code", "refresh_token", "client_credentials"])
    );
    assert_eq!(doc["subject_types_supported"], json!(["public"]));
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    assert!(doc["scopes_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("openid")));
    assert!(doc["claims_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("groups")));
    assert_eq!(idp.stats().discovery_fetches, 1);
    let missing = client().get(format!("{iss}/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    idp.shutdown().await;
}

#[tokio::test]
async fn code_flow_with_pkce() {
    let idp = start(config()).await;
    let v = verifier();
    let code = code_for(&idp, &challenge(&v)).await;
    let res = exchange(&idp, &code, &v).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()[CACHE_CONTROL], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["scope"], "openid email profile");
    assert!(body["refresh_token"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));

    let claims = verify_id_token(&idp, body["id_token"].as_str().unwrap()).await;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["azp"], "portcullis-demo");
    assert_eq!(claims["nonce"], "n-456");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["groups"], json!(["sre", "dev"]));
    assert!(claims["auth_time"].is_u64() && claims["iat"].is_u64());

    let access = body["access_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(access).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let info = client()
        .get(format!("{}/userinfo", idp.issuer()))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 200);
    let info: Value = info.json().await.unwrap();
    assert_eq!(info["sub"], "alice");
    assert_eq!(info["groups"], json!(["sre", "dev"]));

    // Codes are single use.
    assert_eq!(
        error_of(exchange(&idp, &code, &v).await).await,
        (400, "invalid_grant".into())
    );
    let stats = idp.stats();
    assert_eq!(stats.authorization_code_grants, 1);
    assert_eq!(stats.authorization_code_grants_failed, 1);
    assert_eq!(stats.userinfo_calls, 1);
    assert_eq!(stats.jwks_fetches, 1);
    assert_eq!(stats.logins, 1);
    idp.shutdown().await;
}

#[tokio::test]
async fn wrong_password_shows_the_form_again() {
    let idp = start(config()).await;
    let mut params = authorize_params(&challenge(&verifier()));
    params.push(("username", "alice".into()));
    params.push(("password", "wrong".into()));
    let res = client()
        .post(format!("{}/authorize", idp.issuer()))
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    assert!(page.contains("Wrong username or password."));
    assert!(page.contains("value=\"alice\""));
    assert_eq!(idp.stats().logins, 0);
    idp.shutdown().await;
}

#[tokio::test]
async fn wrong_verifier_is_invalid_grant() {
    let idp = start(config()).await;
    let code = code_for(&idp, &challenge(&verifier())).await;
    assert_eq!(
        error_of(exchange(&idp, &code, &verifier()).await).await,
        (400, "invalid_grant".into())
    );
    idp.shutdown().await;
}

#[tokio::test]
async fn redirect_uri_must_match_at_token() {
    let idp = start(config()).await;
    let v = verifier();
    let code = code_for(&idp, &challenge(&v)).await;
    let res = client()
        .post(format!("{}/token", idp.issuer()))
        .basic_auth("portcullis-demo", Some("demo-secret-not-for-production"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "http://127.0.0.1:9/callback/"),
            ("code_verifier", v.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await, (400, "invalid_grant".into()));
    idp.shutdown().await;
}

#[tokio::test]
async fn authorize_refusals() {
    let idp = start(config()).await;
    let http = client();
    let url = format!("{}/authorize", idp.issuer());
    let with = |name: &'static str, value: &str| {
        let mut params = authorize_params(&challenge(&verifier()));
        params.retain(|(n, _)| *n != name);
        if !value.is_empty() {
            params.push((name, value.to_owned()));
        }
        params
    };

    // Untrusted redirect target or client: a page, never a redirect.
    for params in [
        with("redirect_uri", "http://evil.example/cb"),
        with("client_id", "someone-else"),
        with("redirect_uri", ""),
    ] {
        let res = http.get(&url).query(&params).send().await.unwrap();
        assert_eq!(res.status(), 400);
        assert!(res.headers().get(LOCATION).is_none());
    }

    // Trusted redirect target: the error goes back to the client.
    for (params, error) in [
        (with("code_challenge_method", "plain"), "invalid_request"),
        (with("code_challenge_method", ""), "invalid_request"),
        (with("code_challenge", ""), "invalid_request"),
        (with("response_type", "token"), "unsupported_response_type"),
        (with("scope", "email profile"), "invalid_scope"),
        (with("prompt", "none"), "login_required"),
    ] {
        let res = http.get(&url).query(&params).send().await.unwrap();
        assert_eq!(res.status(), 302);
        let query = query_of(res.headers()[LOCATION].to_str().unwrap());
        assert_eq!(get(&query, "error"), Some(error));
        assert_eq!(get(&query, "state"), Some("st-123"));
        assert_eq!(get(&query, "code"), None);
    }
    idp.shutdown().await;
}

#[tokio::test]
async fn form_escapes_reflected_parameters() {
    let idp = start(config()).await;
    let mut params = authorize_params(&challenge(&verifier()));
    params.retain(|(n, _)| *n != "state");
    params.push(("state", "\"><script>alert(1)</script>".into()));
    let page = client()
        .get(format!("{}/authorize", idp.issuer()))
        .query(&params)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("<script>"));
    assert!(page.contains("value=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\""));
    idp.shutdown().await;
}

#[tokio::test]
async fn refresh_tokens_rotate_and_die_on_use() {
    let idp = start(config()).await;
    let first = tokens(&idp).await;
    let old = first["refresh_token"].as_str().unwrap();

    let res = refresh(&idp, old).await;
    assert_eq!(res.status(), 200);
    let second: Value = res.json().await.unwrap();
    let new = second["refresh_token"].as_str().unwrap();
    assert_ne!(new, old);
    let claims = verify_id_token(&idp, second["id_token"].as_str().unwrap()).await;
    assert_eq!(claims["sub"], "alice");
    assert!(claims.get("nonce").is_none());

    assert_eq!(
        error_of(refresh(&idp, old).await).await,
        (400, "invalid_grant".into())
    );
    assert_eq!(refresh(&idp, new).await.status(), 200);
    let stats = idp.stats();
    assert_eq!(stats.refresh_token_grants, 2);
    assert_eq!(stats.refresh_token_grants_failed, 1);
    idp.shutdown().await;
}

#[tokio::test]
async fn refresh_without_rotation_keeps_the_token() {
    let idp = start(DevIdpConfig {
        rotate_refresh_tokens: false,
        ..config()
    })
    .await;
    let first = tokens(&idp).await;
    let token = first["refresh_token"].as_str().unwrap();
    for _ in 0..2 {
        let res = refresh(&idp, token).await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert!(body.get("refresh_token").is_none());
    }
    idp.revoke_refresh_tokens();
    assert_eq!(
        error_of(refresh(&idp, token).await).await,
        (400, "invalid_grant".into())
    );
    idp.shutdown().await;
}

#[tokio::test]
async fn client_authentication() {
    let idp = start(DevIdpConfig {
        client_secret: "s3cr:t+/ü".into(),
        ..config()
    })
    .await;
    let url = format!("{}/token", idp.issuer());
    let form = [("grant_type", "refresh_token"), ("refresh_token", "nope")];

    let res = client()
        .post(&url)
        .basic_auth("portcullis-demo", Some("wrong"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("www-authenticate"));
    assert_eq!(error_of(res).await, (401, "invalid_client".into()));

    let res = client().post(&url).form(&form).send().await.unwrap();
    assert_eq!(error_of(res).await, (401, "invalid_client".into()));

    // RFC 6749 §2.3.1: form-urlencode each part, then base64. The client is authenticated, so
    // the error is now about the (unknown) refresh token.
    let encoded = STANDARD.encode("portcullis-demo:s3cr%3At%2B%2F%C3%BC");
    let res = client()
        .post(&url)
        .header(AUTHORIZATION, format!("Basic {encoded}"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await, (400, "invalid_grant".into()));

    let res = client()
        .post(&url)
        .form(&[
            ("grant_type", "password"),
            ("client_id", "portcullis-demo"),
            ("client_secret", "s3cr:t+/ü"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await, (400, "unsupported_grant_type".into()));
    idp.shutdown().await;
}

#[tokio::test]
async fn key_rotation_changes_the_jwks() {
    let idp = start(config()).await;
    let jwks = |idp: &DevIdp| {
        let url = format!("{}/jwks", idp.issuer());
        async move {
            let set: Value = client()
                .get(url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            set["keys"].as_array().unwrap().clone()
        }
    };
    let before = jwks(&idp).await;
    assert_eq!(before.len(), 1);
    assert_eq!(before[0]["kty"], "EC");
    assert_eq!(before[0]["crv"], "P-256");
    assert_eq!(before[0]["alg"], "ES256");
    assert_eq!(before[0]["use"], "sig");
    let old_kid = before[0]["kid"].as_str().unwrap().to_owned();
    let old_access = tokens(&idp).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    idp.rotate_signing_key();
    assert_eq!(jwks(&idp).await.len(), 2);
    let body = tokens(&idp).await;
    let id_token = body["id_token"].as_str().unwrap();
    let new_kid = jsonwebtoken::decode_header(id_token).unwrap().kid.unwrap();
    assert_ne!(new_kid, old_kid);
    verify_id_token(&idp, id_token).await;

    idp.retire_old_keys();
    let after = jwks(&idp).await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["kid"], new_kid.as_str());
    let res = client()
        .get(format!("{}/userinfo", idp.issuer()))
        .bearer_auth(old_access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    idp.shutdown().await;
}

#[tokio::test]
async fn userinfo_refuses_foreign_and_expired_tokens() {
    let idp = start(DevIdpConfig {
        access_token_ttl: Duration::from_secs(1),
        ..config()
    })
    .await;
    let url = format!("{}/userinfo", idp.issuer());
    let body = tokens(&idp).await;
    let status = |token: String| {
        let url = url.clone();
        async move {
            client()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // An ID token is not an access token.
    assert_eq!(status(body["id_token"].as_str().unwrap().into()).await, 401);
    assert_eq!(status("not-a-jwt".into()).await, 401);
    assert_eq!(client().get(&url).send().await.unwrap().status(), 401);
    // Test-minted ID token claims sign fine but are still not access tokens.
    let minted = idp.sign_claims(&idp.id_token_claims_for("bob", Some("n")).unwrap());
    assert_eq!(status(minted).await, 401);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        status(body["access_token"].as_str().unwrap().into()).await,
        401
    );
    idp.shutdown().await;
}

#[tokio::test]
async fn sign_claims_verifies_against_jwks() {
    let idp = start(config()).await;
    let mut claims = idp.id_token_claims_for("bob", Some("abc")).unwrap();
    assert!(idp.id_token_claims_for("mallory", None).is_none());
    claims["aud"] = json!("portcullis-demo");
    let verified = verify_id_token(&idp, &idp.sign_claims(&claims)).await;
    assert_eq!(verified["sub"], "bob");
    assert_eq!(verified["nonce"], "abc");
    assert_eq!(verified["groups"], json!(["dev"]));
    idp.shutdown().await;
}

#[tokio::test]
async fn logout() {
    let idp = start(config()).await;
    let body = tokens(&idp).await;
    let id_token = body["id_token"].as_str().unwrap();
    let url = format!("{}/logout", idp.issuer());

    // Unregistered target: signed-out page, no redirect.
    let res = client()
        .get(&url)
        .query(&[
            ("client_id", "portcullis-demo"),
            ("post_logout_redirect_uri", "http://evil.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("You are signed out"));

    // Registered target, but nothing ties the request to our client.
    let res = client()
        .get(&url)
        .query(&[("post_logout_redirect_uri", LOGGED_OUT)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // With a valid hint: redirect with state, and that login's refresh token is dead.
    let res = client()
        .get(&url)
        .query(&[
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", LOGGED_OUT),
            ("state", "bye"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    assert_eq!(
        res.headers()[LOCATION].to_str().unwrap(),
        format!("{LOGGED_OUT}?state=bye")
    );
    let refresh_token = body["refresh_token"].as_str().unwrap();
    assert_eq!(
        error_of(refresh(&idp, refresh_token).await).await,
        (400, "invalid_grant".into())
    );
    assert_eq!(idp.stats().logouts, 3);
    idp.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let idp = start(config()).await;
    let url = format!("{}/jwks", idp.issuer());
    // A pooled keep-alive connection must not outlive the server.
    let http = client();
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
    idp.shutdown().await;
    assert!(http.get(&url).send().await.is_err());
}

const CI_ID: &str = "ci-runner";
const CI_SECRET: &str = "ci-runner-secret-not-for-production";

/// Verifies a JWT with a key from `jwks` (the `/jwks` document), as a resource server would,
/// for `audience`. Returns the header too, for `typ` and `kid` checks.
fn verify_with_jwks(jwks: &Value, token: &str, iss: &str, audience: &str) -> (Header, Value) {
    let set: JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let key = DecodingKey::from_jwk(set.find(header.kid.as_deref().unwrap()).unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[iss]);
    validation.set_audience(&[audience]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap()
        .claims;
    (header, claims)
}

async fn fetch_jwks(idp: &DevIdp) -> Value {
    client()
        .get(format!("{}/jwks", idp.issuer()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn client_credentials_basic(
    idp: &DevIdp,
    id: &str,
    secret: &str,
    scope: Option<&str>,
) -> reqwest::Response {
    let mut form = vec![("grant_type", "client_credentials")];
    form.extend(scope.map(|s| ("scope", s)));
    client()
        .post(format!("{}/token", idp.issuer()))
        .basic_auth(id, Some(secret))
        .form(&form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn client_credentials_with_basic_auth() {
    let idp = start(config()).await;
    let res = client_credentials_basic(&idp, CI_ID, CI_SECRET, None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()[CACHE_CONTROL], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["scope"], "test_api_access reports:read");
    assert!(body.get("refresh_token").is_none());
    assert!(body.get("id_token").is_none());

    let token = body["access_token"].as_str().unwrap();
    let (header, claims) = verify_with_jwks(
        &fetch_jwks(&idp).await,
        token,
        idp.issuer(),
        "portcullis-api",
    );
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some(idp.current_kid().as_str()));
    assert_eq!(claims["iss"], idp.issuer());
    assert_eq!(claims["sub"], CI_ID);
    assert_eq!(claims["aud"], "portcullis-api");
    assert_eq!(claims["client_id"], CI_ID);
    assert_eq!(claims["scope"], "test_api_access reports:read");
    let iat = claims["iat"].as_u64().unwrap();
    assert_eq!(claims["exp"].as_u64().unwrap(), iat + 300);
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 32));
    assert!(claims.get("groups").is_none());

    // Not a user's token: the IdP's own userinfo refuses it (wrong audience, no such user).
    let info = client()
        .get(format!("{}/userinfo", idp.issuer()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 401);

    let stats = idp.stats();
    assert_eq!(stats.client_credentials_grants, 1);
    assert_eq!(stats.client_credentials_grants_failed, 0);
    idp.shutdown().await;
}

#[tokio::test]
async fn client_credentials_with_body_auth_and_narrower_scope() {
    let idp = start(config()).await;
    let res = client()
        .post(format!("{}/token", idp.issuer()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CI_ID),
            ("client_secret", CI_SECRET),
            ("scope", "reports:read reports:read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["scope"], "reports:read");
    let (_, claims) = verify_with_jwks(
        &idp.jwks(),
        body["access_token"].as_str().unwrap(),
        idp.issuer(),
        "portcullis-api",
    );
    assert_eq!(claims["scope"], "reports:read");
    assert_eq!(claims["sub"], CI_ID);
    // Two tokens, two `jti`s.
    let again: Value = client_credentials_basic(&idp, CI_ID, CI_SECRET, Some("reports:read"))
        .await
        .json()
        .await
        .unwrap();
    let (_, second) = verify_with_jwks(
        &idp.jwks(),
        again["access_token"].as_str().unwrap(),
        idp.issuer(),
        "portcullis-api",
    );
    assert_ne!(claims["jti"], second["jti"]);
    assert_eq!(idp.stats().client_credentials_grants, 2);
    idp.shutdown().await;
}

#[tokio::test]
async fn client_credentials_refusals() {
    let idp = start(config()).await;

    // A scope beyond the client's.
    let res = client_credentials_basic(&idp, CI_ID, CI_SECRET, Some("reports:read admin")).await;
    assert_eq!(error_of(res).await, (400, "invalid_scope".into()));

    // Wrong secret.
    let res = client_credentials_basic(&idp, CI_ID, "wrong", None).await;
    assert!(res.headers().contains_key("www-authenticate"));
    assert_eq!(error_of(res).await, (401, "invalid_client".into()));

    // The web client authenticates fine but may not use this grant.
    let res = client_credentials_basic(
        &idp,
        "portcullis-demo",
        "demo-secret-not-for-production",
        None,
    )
    .await;
    assert_eq!(error_of(res).await, (400, "unauthorized_client".into()));

    // Nor may a service client use the web client's grants.
    let res = client()
        .post(format!("{}/token", idp.issuer()))
        .basic_auth(CI_ID, Some(CI_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await, (400, "unauthorized_client".into()));

    let stats = idp.stats();
    assert_eq!(stats.client_credentials_grants, 0);
    assert_eq!(stats.client_credentials_grants_failed, 3);
    assert_eq!(stats.refresh_token_grants_failed, 1);
    idp.shutdown().await;
}

#[tokio::test]
async fn mint_access_token_matches_the_grant() {
    let idp = start(config()).await;
    assert!(idp.mint_access_token("nobody", &["x"]).is_none());
    // Over-scoped on purpose: minting does not police scopes.
    let token = idp
        .mint_access_token(CI_ID, &["test_api_access", "admin"])
        .unwrap();
    let (header, claims) = verify_with_jwks(
        &fetch_jwks(&idp).await,
        &token,
        idp.issuer(),
        "portcullis-api",
    );
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.kid.as_deref(), Some(idp.current_kid().as_str()));
    assert_eq!(claims["sub"], CI_ID);
    assert_eq!(claims["client_id"], CI_ID);
    assert_eq!(claims["scope"], "test_api_access admin");
    assert!(claims["jti"].is_string());
    assert_eq!(
        claims["exp"].as_u64().unwrap(),
        claims["iat"].as_u64().unwrap() + 300
    );
    idp.shutdown().await;
}

#[tokio::test]
async fn sign_with_header_keeps_the_callers_header() {
    let idp = start(config()).await;
    let claims = json!({ "iss": idp.issuer(), "sub": "x", "aud": "portcullis-api", "exp": 4_000_000_000u64 });

    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("JWT".into());
    header.kid = Some(idp.current_kid());
    let token = idp.sign_with_header(&header, &claims).unwrap();
    let (got, verified) = verify_with_jwks(&idp.jwks(), &token, idp.issuer(), "portcullis-api");
    assert_eq!(got.typ.as_deref(), Some("JWT"));
    assert_eq!(got.kid, header.kid);
    assert_eq!(verified, claims);

    // A kid no key has, and no typ: kept as given, still signed by the real key.
    let mut header = Header::new(Algorithm::ES256);
    header.typ = None;
    header.kid = Some("no-such-key".into());
    let token = idp.sign_with_header(&header, &claims).unwrap();
    let got = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(got.kid.as_deref(), Some("no-such-key"));
    assert_eq!(got.typ, None);
    let key = DecodingKey::from_jwk(
        serde_json::from_value::<JwkSet>(idp.jwks())
            .unwrap()
            .find(&idp.current_kid())
            .unwrap(),
    )
    .unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&["portcullis-api"]);
    assert!(jsonwebtoken::decode::<Value>(&token, &key, &validation).is_ok());

    // No kid at all is kept too.
    let token = idp
        .sign_with_header(&Header::new(Algorithm::ES256), &claims)
        .unwrap();
    assert_eq!(jsonwebtoken::decode_header(&token).unwrap().kid, None);

    // The key is P-256: other algorithms (including Header::default()'s HS256) are errors.
    for alg in [Algorithm::HS256, Algorithm::RS256, Algorithm::ES384] {
        let err = idp
            .sign_with_header(&Header::new(alg), &claims)
            .unwrap_err();
        assert!(err.contains("ES256"), "{err}");
    }

    // After rotation the helpers follow the new key.
    let old = idp.current_kid();
    idp.rotate_signing_key();
    assert_ne!(idp.current_kid(), old);
    assert_eq!(idp.jwks()["keys"].as_array().unwrap().len(), 2);
    assert_eq!(idp.stats().jwks_fetches, 0);
    idp.shutdown().await;
}
