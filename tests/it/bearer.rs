//! Bearer tokens for API clients, over HTTP against the real binary, the development provider,
//! two static-key issuers and the echo upstream: acceptance and identity, route scopes, the
//! verified-token cache, forward auth, and every attack class of
//! `tests/corpus/jwt-attacks.md`. Each forged token is built from the real keys (or an
//! attacker's) so that its only defect is the one its case names, and every refusal must be a
//! 401 with `WWW-Authenticate: Bearer error="invalid_token"`, never a login redirect.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use portcullis::demo::DevIdpConfig;
use portcullis::jwt::remote::UNKNOWN_KID_REFETCH_EVERY;
use reqwest::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::bearer::{Bench, ES384_ISSUER};
use crate::support::jws::*;
use crate::support::keys::*;
use crate::support::tokens::*;
use crate::support::trap::Trap;
use crate::support::*;

const BACKCHANNEL_LOGOUT: &str = "http://schemas.openid.net/event/backchannel-logout";

// ---------------------------------------------------------------------------------------------
// 1–3, 5–8: the behaviour API clients rely on
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_client_credentials_token_from_the_provider_passes_as_its_client_within_its_scopes() {
    let t = Bench::start().await;
    let service = DevIdpConfig::default().service_clients[0].clone();
    assert_eq!(service.client_id, CLIENT);
    let resp = t
        .client
        .post(format!("{}/token", t.issuer()))
        .basic_auth(&service.client_id, Some(&service.client_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token request");
    assert_eq!(resp.status(), StatusCode::OK);
    let grant: Value = resp.json().await.expect("token response");
    let token = grant["access_token"].as_str().expect("access_token");
    assert_eq!(grant["scope"], "test_api_access reports:read");
    assert_eq!(t.idp().stats().client_credentials_grants, 1);

    // A script's call: the upstream learns the caller from portcullis, not from the client.
    let resp = t
        .client
        .get(t.w.proxy.url("/api/items?page=2"))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(ACCEPT, "application/json")
        .header("X-Forwarded-User", "mallory")
        .header("X-Auth-Request-User", "mallory")
        .header("Remote-User", "mallory")
        .send()
        .await
        .expect("request");
    let seen = Echoed::from(resp).await;
    assert_eq!(seen.uri, "/api/items?page=2");
    assert_eq!(seen.all("x-forwarded-user"), [CLIENT]);
    for (name, value) in &seen.headers {
        assert!(
            !value.contains("mallory"),
            "forged {name}: {value} reached the upstream"
        );
    }
    // The caller's own Authorization header is forwarded unchanged.
    assert_eq!(seen.all("authorization"), [format!("Bearer {token}")]);

    // A browser-style navigation with the token: served, never redirected to a login.
    t.accepted("navigation with a bearer token", "/", token, CLIENT)
        .await;
    t.accepted(
        "reports:read grants /reports/q3",
        "/reports/q3",
        token,
        CLIENT,
    )
    .await;

    // A route that needs a scope the token lacks.
    let resp = t.navigate("/admin", token).send().await.expect("request");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let www = header_str(&resp, WWW_AUTHENTICATE);
    assert!(www.contains(r#"error="insufficient_scope""#), "{www}");
    assert!(www.contains(r#"scope="admin:write""#), "{www}");
    assert_eq!(location(&resp), "");
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["error"], "insufficient_scope");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_token_an_api_call_gets_401_and_a_bad_token_is_never_redirected() {
    let t = Bench::start().await;
    // No credentials at all: the existing answer for programs.
    let resp = t
        .client
        .get(t.w.proxy.url("/api/items"))
        .header(ACCEPT, "application/json")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // RFC 9728: the challenge names where the resource's metadata is.
    assert_eq!(
        header_str(&resp, WWW_AUTHENTICATE),
        format!(
            r#"Bearer realm="portcullis", resource_metadata="{}""#,
            t.w.proxy.url("/.well-known/oauth-protected-resource")
        )
    );
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["error"], "unauthorized");

    // A page navigation without a token still goes to the login...
    let resp = t
        .client
        .get(t.w.proxy.url("/api/items"))
        .header(ACCEPT, BROWSER_ACCEPT)
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::FOUND);

    // ...but the same navigation with an invalid bearer token is refused, not redirected.
    let genuine = access_token(t.idp());
    let (h, p, s) = segments(&genuine);
    let mut sig = unb64(s);
    sig[0] ^= 1;
    let flipped = format!("{h}.{p}.{}", b64(&sig));
    let mut cases = t.cases("invalid tokens from a browser");
    cases.refused("not a JWT", "/api/items", "not-a-jwt").await;
    cases
        .refused("one signature bit flipped", "/api/items", &flipped)
        .await;
    cases.finish();
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_foreign_tampered_and_unknown_key_tokens_get_invalid_token() {
    let t = Bench::start().await;
    let idp = t.idp();
    t.accepted("genuine access token", "/", &access_token(idp), CLIENT)
        .await;
    let mut cases = t.cases("basic refusals");

    let mut c = access_claims(idp);
    c["iat"] = json!(now() - 600);
    c["exp"] = json!(now() - 120);
    cases
        .refused("expired 120 s ago (leeway 60 s)", "/", &sign_at(idp, &c))
        .await;

    let mut c = access_claims(idp);
    c["aud"] = json!("someone-elses-api");
    cases
        .refused("wrong audience", "/", &sign_at(idp, &c))
        .await;

    let mut c = access_claims(idp);
    c["iss"] = json!("https://idp.nobody-configured.example");
    cases
        .refused("issuer nobody configured", "/", &sign_at(idp, &c))
        .await;

    let genuine = access_token(idp);
    let (h, _, s) = segments(&genuine);
    let mut c = claims_of(&genuine);
    c["scope"] = json!("test_api_access reports:read admin:write");
    let tampered = format!("{h}.{}.{s}", b64(c.to_string().as_bytes()));
    cases
        .refused("tampered payload (scope widened)", "/", &tampered)
        .await;

    let mut h = at_header(idp);
    h.kid = Some("no-such-key".into());
    cases
        .refused("unknown kid", "/", &sign_with(idp, &h, &access_claims(idp)))
        .await;
    cases.finish();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_static_key_issuer_token_passes_with_scopes_from_scp_or_scope() {
    let t = Bench::start().await;
    // `scp` as an array (Okta, Azure style).
    let token = dealer_token(&dealer_claims("report-bot"));
    let seen = Echoed::from(t.api("/reports/q3", &token).await).await;
    assert_eq!(seen.all("x-forwarded-user"), ["report-bot"]);
    t.accepted(
        "RS512 dealer token, scp array",
        "/reports/q3",
        &token,
        "report-bot",
    )
    .await;

    // `scope` as a space-separated string.
    let mut c = dealer_claims("report-bot");
    c.as_object_mut().expect("object").remove("scp");
    c["scope"] = json!("audit reports:read");
    t.accepted(
        "RS512 dealer token, scope string",
        "/reports/q3",
        &dealer_token(&c),
        "report-bot",
    )
    .await;

    // Without the scope: authenticated, but not for /reports.
    for (case, scopes) in [
        ("no scope claim", None),
        ("scope string without reports:read", Some(json!("audit"))),
        ("scp array without reports:read", Some(json!(["audit"]))),
    ] {
        let mut c = dealer_claims("report-bot");
        c.as_object_mut().expect("object").remove("scp");
        if let Some(s) = scopes {
            let key = if s.is_array() { "scp" } else { "scope" };
            c[key] = s;
        }
        let token = dealer_token(&c);
        t.accepted(case, "/", &token, "report-bot").await;
        let resp = t
            .navigate("/reports/q3", &token)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{case}");
        let www = header_str(&resp, WWW_AUTHENTICATE);
        assert!(www.contains(r#"scope="reports:read""#), "{case}: {www}");
    }

    // The ES384 static issuer works too (the control of the curve cases below).
    let token = t.es384_token(&t.es384_claims("es-bot"));
    t.accepted("ES384 static issuer", "/", &token, "es-bot")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verified_token_is_remembered_while_the_provider_is_down() {
    let mut t = Bench::start().await;
    let token = access_token(t.idp());
    t.accepted(
        "first use, verified with the provider's keys",
        "/",
        &token,
        CLIENT,
    )
    .await;
    // Another token from the same (already fetched) key, never sent before: it needs the
    // cached key set, not the provider.
    let fresh = access_token(t.idp());
    // A token from a key the proxy has not fetched yet: it would need the provider.
    t.idp().rotate_signing_key();
    let unseen = access_token(t.idp());

    // Stop the provider for good; a stand-in nobody talks to keeps the bench's shape.
    let stand_in = start_idp(DevIdpConfig::default()).await;
    let provider = std::mem::replace(&mut t.w.idp, stand_in);
    let provider_addr = provider.issuer().trim_start_matches("http://").to_string();
    provider.shutdown().await;
    wait_until(
        "the provider to stop listening",
        Duration::from_secs(10),
        || {
            let addr = provider_addr.clone();
            async move { tokio::net::TcpStream::connect(addr).await.is_err() }
        },
    )
    .await;

    t.accepted("second use, provider down", "/", &token, CLIENT)
        .await;
    t.accepted(
        "a new token from a cached key, provider down",
        "/",
        &fresh,
        CLIENT,
    )
    .await;
    let mut cases = t.cases("provider down");
    cases
        .refused(
            "a new key's token while the provider is unreachable",
            "/",
            &unseen,
        )
        .await;
    cases.finish();
    t.accepted("third use, after a failed refetch", "/", &token, CLIENT)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_accepts_a_bearer_token_and_refuses_a_bad_one() {
    portcullis::jwt::provider::install();
    // The test client plays nginx: a trusted proxy reporting the original request.
    let w = World::start_with(
        |c| c,
        |toml| {
            server_option(toml, "trusted_proxies = [\"127.0.0.1/32\"]")
                + &format!(
                    "[bearer]\naudiences = [\"{API_AUDIENCE}\"]\n\
                     [[routes]]\npath = \"/admin\"\nscopes = [\"admin:write\"]\n"
                )
        },
    )
    .await;
    let client = plain_client();
    let auth = |token: &str, original: Option<&str>| {
        let mut req = client
            .get(w.proxy.url("/oauth2/auth"))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header(ACCEPT, BROWSER_ACCEPT);
        if let Some(uri) = original {
            req = req.header("x-original-uri", uri);
        }
        req.send()
    };
    let token = access_token(&w.idp);
    let resp = auth(&token, Some("/reports/q3")).await.expect("request");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(
        header_str(&resp, "x-auth-request-user".parse().unwrap()),
        CLIENT
    );
    // The route policy applies to the original URI: a scope the token lacks.
    let resp = auth(&token, Some("/admin/x")).await.expect("request");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(header_str(&resp, WWW_AUTHENTICATE).contains("insufficient_scope"));
    // With routes configured, no original URI means no decision: refused, never the default.
    let resp = auth(&token, None).await.expect("request");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    let mut c = access_claims(&w.idp);
    c["exp"] = json!(now() - 3600);
    for (case, bad) in [
        ("expired token at /oauth2/auth", sign_at(&w.idp, &c)),
        ("garbage token at /oauth2/auth", "a.b.c".to_string()),
    ] {
        let resp = auth(&bad, Some("/reports/q3")).await.expect("request");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{case}");
        assert!(
            header_str(&resp, WWW_AUTHENTICATE).contains(r#"error="invalid_token""#),
            "{case}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_id_token_of_the_login_issuer_identifies_its_user() {
    let t = Bench::start().await;
    let claims = id_token_claims(t.idp());
    assert_eq!(claims["aud"], DevIdpConfig::default().client_id);
    let token = t.idp().sign_claims(&claims);
    let seen = Echoed::from(t.api("/", &token).await).await;
    assert_eq!(seen.all("x-forwarded-user"), ["alice"]);
    assert_eq!(seen.all("x-forwarded-email"), ["alice@example.com"]);
    assert_eq!(seen.all("x-forwarded-groups"), ["sre,dev"]);
    assert_eq!(seen.all("x-forwarded-preferred-username"), ["alice"]);
    t.accepted("ID token as a browser navigation", "/", &token, "alice")
        .await;
}

/// An ID token is a statement to this client about a login, not a credential: it travels in
/// sign-out URLs and provider logs. Unless `accept_id_tokens` is turned on, a valid one is
/// refused as a bearer token, inline and at forward auth.
#[tokio::test(flavor = "multi_thread")]
async fn an_id_token_is_no_bearer_credential_unless_turned_on() {
    let w = World::start(|c| c, "").await;
    let token = w.idp.sign_claims(&id_token_claims(&w.idp));
    for path in ["/app", "/oauth2/auth"] {
        let r = plain_client()
            .get(w.proxy.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(
            header_str(&r, WWW_AUTHENTICATE).contains(r#"error="invalid_token""#),
            "{path}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 4: every class of tests/corpus/jwt-attacks.md
// ---------------------------------------------------------------------------------------------

/// Class 1: `alg: none` in any spelling.
#[tokio::test(flavor = "multi_thread")]
async fn attack_01_alg_none() {
    let t = Bench::start().await;
    let idp = t.idp();
    let genuine = access_token(idp);
    t.accepted("genuine", "/", &genuine, CLIENT).await;
    let (_, payload, signature) = segments(&genuine);
    let kid = idp.current_kid();
    let mut cases = t.cases("class 1: alg none");
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = b64(json!({"alg": alg, "typ": "at+jwt", "kid": kid})
            .to_string()
            .as_bytes());
        cases
            .refused(
                &format!("alg {alg:?}, empty signature"),
                "/",
                &format!("{header}.{payload}."),
            )
            .await;
        cases
            .refused(
                &format!("alg {alg:?}, original signature kept"),
                "/",
                &format!("{header}.{payload}.{signature}"),
            )
            .await;
    }
    let header = b64(br#"{"typ":"at+jwt"}"#);
    cases
        .refused("no alg at all", "/", &format!("{header}.{payload}."))
        .await;
    let dealer_payload = b64(dealer_claims("report-bot").to_string().as_bytes());
    cases
        .refused(
            "alg none on the static RSA issuer",
            "/",
            &format!("{}.{dealer_payload}.", b64(br#"{"alg":"none"}"#)),
        )
        .await;
    cases.finish();
}

/// Class 2: HMAC keyed with the issuer's public key.
#[tokio::test(flavor = "multi_thread")]
async fn attack_02_hmac_keyed_with_the_public_key() {
    let t = Bench::start().await;
    let idp = t.idp();
    let genuine = access_token(idp);
    t.accepted("genuine", "/", &genuine, CLIENT).await;

    // The provider's EC public key in every form an HMAC confusion might use. The PEM is proven
    // to be the real key: it verifies the genuine token.
    let jwk = current_jwk(idp);
    let x_text = jwk["x"].as_str().expect("x").to_string();
    let y = unb64(jwk["y"].as_str().expect("y"));
    let x = unb64(&x_text);
    let point = [&[0x04u8][..], &x, &y].concat();
    let spki = p256_spki(&point);
    let pem = der_to_pem("PUBLIC KEY", &spki);
    let (signing_input, signature) = genuine.rsplit_once('.').expect("JWS");
    assert!(
        jsonwebtoken::crypto::verify(
            signature,
            signing_input.as_bytes(),
            &DecodingKey::from_ec_pem(pem.as_bytes()).expect("EC PEM"),
            Algorithm::ES256
        )
        .expect("verify"),
        "the PEM built here must be the provider's real key"
    );
    let claims = claims_of(&genuine);
    let ec_secrets: Vec<(&str, Vec<u8>)> = vec![
        ("PEM", pem.clone().into_bytes()),
        (
            "PEM without final newline",
            pem.trim_end().as_bytes().to_vec(),
        ),
        ("DER (SPKI)", spki.clone()),
        ("JWK x as base64url text", x_text.clone().into_bytes()),
        ("JWK x raw bytes", x.clone()),
        ("uncompressed point", point.clone()),
        ("JWK JSON", jwk.to_string().into_bytes()),
    ];
    let mut cases = t.cases("class 2: HMAC with the public key");
    for (name, secret) in &ec_secrets {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let mut h = at_header(idp);
            h.alg = alg;
            let token =
                jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(secret)).expect("HMAC");
            cases
                .refused(
                    &format!("{alg:?} keyed with the provider's {name}"),
                    "/",
                    &token,
                )
                .await;
        }
        let mut h = at_header(idp);
        h.alg = Algorithm::HS256;
        h.kid = None;
        let token =
            jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(secret)).expect("HMAC");
        cases
            .refused(
                &format!("HS256 keyed with the provider's {name}, no kid"),
                "/",
                &token,
            )
            .await;
    }

    // The static RSA issuer's public key: the configured PEM file, its DER, and n.
    t.accepted(
        "genuine dealer token",
        "/",
        &dealer_token(&dealer_claims("report-bot")),
        "report-bot",
    )
    .await;
    let pem = read_fixture("dealer-rs512.pub.pem");
    let spki = pem_to_der(std::str::from_utf8(&pem).expect("PEM text"));
    let pkcs1 = spki_to_pkcs1(&spki);
    let (n, _) = rsa_components(&pkcs1);
    let rsa_secrets: Vec<(&str, Vec<u8>)> = vec![
        ("PEM file bytes", pem.clone()),
        ("DER (SPKI)", spki),
        ("DER (PKCS#1)", pkcs1.clone()),
        ("modulus n raw bytes", n.clone()),
        ("JWK n as base64url text", b64(&n).into_bytes()),
        (
            "JWK JSON",
            rsa_jwk(&pkcs1, "dealer").to_string().into_bytes(),
        ),
    ];
    for (name, secret) in &rsa_secrets {
        for alg in [Algorithm::HS256, Algorithm::HS512] {
            let token = jsonwebtoken::encode(
                &Header::new(alg),
                &dealer_claims("report-bot"),
                &EncodingKey::from_secret(secret),
            )
            .expect("HMAC");
            cases
                .refused(
                    &format!("{alg:?} keyed with the dealer's {name}"),
                    "/",
                    &token,
                )
                .await;
        }
    }
    cases.finish();
}

/// Class 3: the signature stripped, or another valid token's pasted on.
#[tokio::test(flavor = "multi_thread")]
async fn attack_03_signature_stripped_or_transplanted() {
    let t = Bench::start().await;
    let idp = t.idp();
    let victim = access_token(idp);
    let mut wider = access_claims(idp);
    wider["scope"] = json!("test_api_access reports:read admin:write");
    let donor = access_token(idp);
    t.accepted("genuine", "/", &victim, CLIENT).await;
    t.accepted("genuine donor", "/", &donor, CLIENT).await;
    let (h, p, _) = segments(&victim);
    let (_, _, donor_sig) = segments(&donor);
    let wide_payload = b64(wider.to_string().as_bytes());

    let dealer_victim = dealer_token(&dealer_claims("report-bot"));
    let dealer_donor = dealer_token(&dealer_claims("other-bot"));
    let (dh, dp, _) = segments(&dealer_victim);
    let (_, _, dealer_donor_sig) = segments(&dealer_donor);

    let mut cases = t.cases("class 3: signature stripped or transplanted");
    cases
        .refused("stripped: header.payload.", "/", &format!("{h}.{p}."))
        .await;
    cases
        .refused(
            "stripped, payload widened",
            "/admin",
            &format!("{h}.{wide_payload}."),
        )
        .await;
    cases
        .refused(
            "another valid token's signature",
            "/",
            &format!("{h}.{p}.{donor_sig}"),
        )
        .await;
    cases
        .refused(
            "another valid token's signature, payload widened",
            "/admin",
            &format!("{h}.{wide_payload}.{donor_sig}"),
        )
        .await;
    cases
        .refused("dealer token stripped", "/", &format!("{dh}.{dp}."))
        .await;
    cases
        .refused(
            "dealer token with another dealer token's signature",
            "/",
            &format!("{dh}.{dp}.{dealer_donor_sig}"),
        )
        .await;
    cases
        .refused(
            "provider token with a dealer signature",
            "/",
            &format!("{h}.{p}.{dealer_donor_sig}"),
        )
        .await;
    cases.finish();
}

/// Class 4: a valid signature by an attacker's key that the token itself points to.
#[tokio::test(flavor = "multi_thread")]
async fn attack_04_attacker_keys_named_by_the_token() {
    let t = Bench::start().await;
    let idp = t.idp();
    let claims = access_claims(idp);
    let dealer = dealer_claims("report-bot");
    let real_kid = idp.current_kid();

    // Where the attacker would serve keys and certificates: the proxy must never ask.
    let trap = Trap::start().await;
    let trap_url = trap.url.clone();

    let rsa_jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(rsa_jwk(&attacker_pkcs1(), "attacker-rsa")).expect("jwk");
    let attacker_ec = EcKey::generate(Algorithm::ES256);
    let mut ec_jwk_value = attacker_ec.jwk();
    ec_jwk_value["kid"] = json!("attacker-ec");
    let ec_jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(ec_jwk_value).expect("jwk");
    let cert = openssl(
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &fixture("attacker-rs256.key.pem").display().to_string(),
            "-subj",
            "/CN=attacker.example",
            "-days",
            "1",
            "-outform",
            "DER",
        ],
        b"",
    );
    let x5c = vec![STANDARD.encode(&cert)];

    let rsa = |alg: Algorithm, kid: Option<&str>, edit: &dyn Fn(&mut Header), c: &Value| {
        let mut h = Header::new(alg);
        h.typ = Some(if c["iss"] == DEALER { "JWT" } else { "at+jwt" }.into());
        h.kid = kid.map(str::to_string);
        edit(&mut h);
        jsonwebtoken::encode(&h, c, &attacker_key()).expect("attacker RS token")
    };
    let ec = |kid: Option<&str>, edit: &dyn Fn(&mut Header)| {
        let mut h = Header::new(Algorithm::ES256);
        h.typ = Some("at+jwt".into());
        h.kid = kid.map(str::to_string);
        edit(&mut h);
        attacker_ec.token(&h, &claims)
    };
    let with_jwk = |h: &mut Header| h.jwk = Some(rsa_jwk.clone());
    let with_ec_jwk = |h: &mut Header| h.jwk = Some(ec_jwk.clone());
    let with_jku = |h: &mut Header| h.jku = Some(format!("{trap_url}/jwks.json"));
    let with_x5u = |h: &mut Header| h.x5u = Some(format!("{trap_url}/attacker.pem"));
    let with_x5c = |h: &mut Header| h.x5c = Some(x5c.clone());

    let mut cases = t.cases("class 4: attacker keys");
    let provider_cases: Vec<(&str, String)> = vec![
        (
            "RS256, embedded jwk, no kid",
            rsa(Algorithm::RS256, None, &with_jwk, &claims),
        ),
        (
            "RS256, embedded jwk, its kid",
            rsa(Algorithm::RS256, Some("attacker-rsa"), &with_jwk, &claims),
        ),
        (
            "ES256, embedded EC jwk, the provider's kid",
            ec(Some(&real_kid), &with_ec_jwk),
        ),
        ("ES256, embedded EC jwk, no kid", ec(None, &with_ec_jwk)),
        (
            "ES256, embedded EC jwk, its kid",
            ec(Some("attacker-ec"), &with_ec_jwk),
        ),
        (
            "RS256, jku to the attacker",
            rsa(Algorithm::RS256, Some("attacker-rsa"), &with_jku, &claims),
        ),
        (
            "ES256, jku to the attacker, the provider's kid",
            ec(Some(&real_kid), &with_jku),
        ),
        (
            "RS256, x5u to the attacker",
            rsa(Algorithm::RS256, None, &with_x5u, &claims),
        ),
        ("ES256, x5u to the attacker", ec(Some(&real_kid), &with_x5u)),
        (
            "RS256, x5c self-signed chain",
            rsa(Algorithm::RS256, None, &with_x5c, &claims),
        ),
        (
            "RS256, x5c self-signed chain, the provider's kid",
            rsa(Algorithm::RS256, Some(&real_kid), &with_x5c, &claims),
        ),
    ];
    for (case, token) in &provider_cases {
        cases
            .refused(&format!("provider: {case}"), "/", token)
            .await;
    }
    let dealer_cases: Vec<(&str, String)> = vec![
        (
            "RS512, embedded jwk",
            rsa(Algorithm::RS512, None, &with_jwk, &dealer),
        ),
        (
            "RS512, jku to the attacker",
            rsa(Algorithm::RS512, None, &with_jku, &dealer),
        ),
        (
            "RS512, x5u to the attacker",
            rsa(Algorithm::RS512, None, &with_x5u, &dealer),
        ),
        (
            "RS512, x5c self-signed chain",
            rsa(Algorithm::RS512, None, &with_x5c, &dealer),
        ),
        (
            "RS256, attacker key, no header tricks",
            rsa(Algorithm::RS256, None, &|_| {}, &dealer),
        ),
    ];
    for (case, token) in &dealer_cases {
        cases.refused(&format!("dealer: {case}"), "/", token).await;
    }
    cases.finish();
    let fetched = trap.fetches();
    assert!(
        fetched.is_empty(),
        "the proxy fetched URLs named by tokens: {fetched:?}"
    );
}

/// Class 5: `kid` tricks, except the flood of unknown kids (its own test: the refetch budget
/// must be fresh).
#[tokio::test(flavor = "multi_thread")]
async fn attack_05_kid_tricks() {
    let t = Bench::start().await;
    let idp = t.idp();
    let claims = access_claims(idp);
    t.accepted("genuine", "/", &sign_at(idp, &claims), CLIENT)
        .await;
    let with_kid = |kid: String| {
        let mut h = at_header(idp);
        h.kid = Some(kid);
        sign_with(idp, &h, &claims)
    };
    let mut cases = t.cases("class 5: kid tricks");
    let kids: Vec<(&str, String)> = vec![
        ("unknown kid", "kid-nobody-published".into()),
        ("path traversal ../../dev/null", "../../dev/null".into()),
        ("absolute path /dev/null", "/dev/null".into()),
        ("SQL-ish ' OR '1'='1", "' OR '1'='1' --".into()),
        ("SQL-ish UNION", "x' UNION SELECT 'secret' AS key --".into()),
        ("8 KiB kid", "k".repeat(8 * 1024)),
        ("64 KiB kid", "k".repeat(64 * 1024)),
        ("empty kid", String::new()),
    ];
    for (case, kid) in kids {
        cases.refused(case, "/", &with_kid(kid)).await;
    }
    // The kid of the provider's EC key on tokens of other key types.
    let real_kid = idp.current_kid();
    let mut h = Header::new(Algorithm::RS256);
    h.typ = Some("at+jwt".into());
    h.kid = Some(real_kid.clone());
    let token = jsonwebtoken::encode(&h, &claims, &attacker_key()).expect("RS256");
    cases
        .refused(
            "RS256 (attacker key) naming the provider's EC kid",
            "/",
            &token,
        )
        .await;
    let mut h = Header::new(Algorithm::ES384);
    h.typ = Some("at+jwt".into());
    h.kid = Some(real_kid.clone());
    cases
        .refused(
            "ES384 (the static issuer's key) naming the provider's P-256 kid",
            "/",
            &t.es384.token(&h, &claims),
        )
        .await;
    let mut h = at_header(idp);
    h.alg = Algorithm::HS256;
    let x = current_jwk(idp)["x"].as_str().expect("x").to_string();
    let token =
        jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(x.as_bytes())).expect("HMAC");
    cases
        .refused("HS256 naming the provider's EC kid", "/", &token)
        .await;
    cases.finish();
}

/// Class 5, the flood: 20 made-up kids at once cost the provider one JWKS fetch.
#[tokio::test(flavor = "multi_thread")]
async fn attack_05_a_flood_of_unknown_kids_costs_one_jwks_fetch() {
    let t = Bench::start().await;
    let idp = t.idp();
    let claims = access_claims(idp);
    let before = idp.stats().jwks_fetches;
    let started = Instant::now();
    let mut requests = Vec::new();
    for _ in 0..20 {
        let mut h = at_header(idp);
        h.kid = Some(format!("random-{}", random_id()));
        let req = t.navigate("/", &sign_with(idp, &h, &claims));
        requests.push(tokio::spawn(async move { req.send().await }));
    }
    let mut cases = t.cases("class 5: unknown kid flood");
    for (i, r) in requests.into_iter().enumerate() {
        let resp = r.await.expect("task").expect("request");
        cases
            .refused_response(&format!("random kid #{i}"), resp)
            .await;
    }
    cases.finish();
    // All 20 fell within one refetch interval, so one fetch is all they may cost.
    let elapsed = started.elapsed();
    assert!(
        elapsed < UNKNOWN_KID_REFETCH_EVERY,
        "the flood took {elapsed:?}, longer than the refetch interval"
    );
    assert_eq!(
        idp.stats().jwks_fetches - before,
        1,
        "20 unknown kids within {elapsed:?} must cost exactly one JWKS fetch"
    );
    t.accepted(
        "genuine, after the flood",
        "/",
        &sign_at(idp, &claims),
        CLIENT,
    )
    .await;
    assert_eq!(idp.stats().jwks_fetches - before, 1);
}

/// An expired token is refused before any key is looked up or signature checked: a flood of
/// expired tokens naming unknown keys costs no JWKS fetch at all.
#[tokio::test(flavor = "multi_thread")]
async fn expired_tokens_are_refused_before_any_key_is_looked_up() {
    let t = Bench::start().await;
    let idp = t.idp();
    let t0 = now();
    let mut claims = access_claims(idp);
    claims["iat"] = json!(t0 - 7200);
    claims["exp"] = json!(t0 - 3600);
    let before = idp.stats().jwks_fetches;
    let mut cases = t.cases("expired tokens naming unknown keys");
    for i in 0..5 {
        let mut h = at_header(idp);
        h.kid = Some(format!("random-{}", random_id()));
        let resp = t
            .navigate("/", &sign_with(idp, &h, &claims))
            .send()
            .await
            .expect("request");
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(challenge.contains("expired"), "#{i}: {challenge}");
        cases.refused_response(&format!("expired #{i}"), resp).await;
    }
    cases.finish();
    assert_eq!(
        idp.stats().jwks_fetches - before,
        0,
        "an expired token must not cost a JWKS fetch"
    );
}

/// Class 6: time claims.
#[tokio::test(flavor = "multi_thread")]
async fn attack_06_time_claims() {
    let t = Bench::start().await;
    let idp = t.idp();
    t.accepted("genuine", "/", &access_token(idp), CLIENT).await;
    let t0 = now();
    type Edit = fn(&mut Value, u64);
    let edits: [(&str, Edit); 5] = [
        ("exp missing", |c, _| {
            c.as_object_mut().expect("object").remove("exp");
        }),
        ("exp an hour ago", |c, t0| {
            c["iat"] = json!(t0 - 7200);
            c["exp"] = json!(t0 - 3600);
        }),
        ("exp 90 s ago (beyond the 60 s leeway)", |c, t0| {
            c["iat"] = json!(t0 - 400);
            c["exp"] = json!(t0 - 90);
        }),
        ("nbf an hour ahead", |c, t0| c["nbf"] = json!(t0 + 3600)),
        ("iat a day ahead", |c, t0| c["iat"] = json!(t0 + 86_400)),
    ];
    let mut cases = t.cases("class 6: time claims");
    for (case, edit) in edits {
        let mut c = access_claims(idp);
        edit(&mut c, t0);
        cases
            .refused(
                &format!("provider access token: {case}"),
                "/",
                &sign_at(idp, &c),
            )
            .await;
        let mut c = dealer_claims("report-bot");
        edit(&mut c, t0);
        cases
            .refused(&format!("dealer token: {case}"), "/", &dealer_token(&c))
            .await;
        let mut c = id_token_claims(idp);
        edit(&mut c, t0);
        cases
            .refused(&format!("ID token: {case}"), "/", &idp.sign_claims(&c))
            .await;
    }
    cases.finish();
}

/// Class 7: issuer confusion.
#[tokio::test(flavor = "multi_thread")]
async fn attack_07_issuer_confusion() {
    let t = Bench::start().await;
    let idp = t.idp();
    let issuer = t.issuer();
    t.accepted("genuine provider token", "/", &access_token(idp), CLIENT)
        .await;
    t.accepted(
        "genuine dealer token",
        "/",
        &dealer_token(&dealer_claims("report-bot")),
        "report-bot",
    )
    .await;
    t.accepted(
        "genuine ES384 token",
        "/",
        &t.es384_token(&t.es384_claims("es-bot")),
        "es-bot",
    )
    .await;
    let mut cases = t.cases("class 7: issuer confusion");

    // Another configured issuer's name on a token signed by the provider's key.
    for other in [DEALER, ES384_ISSUER] {
        let mut c = access_claims(idp);
        c["iss"] = json!(other);
        c["aud"] = json!(STATIC_AUDIENCE);
        cases
            .refused(
                &format!("iss {other} signed by the provider (with its kid)"),
                "/",
                &sign_at(idp, &c),
            )
            .await;
        let mut h = at_header(idp);
        h.kid = None;
        cases
            .refused(
                &format!("iss {other} signed by the provider (no kid)"),
                "/",
                &sign_with(idp, &h, &c),
            )
            .await;
    }
    // The provider's name on tokens signed by the static issuers' keys.
    let mut c = access_claims(idp);
    c["iss"] = json!(issuer);
    cases
        .refused(
            "iss = provider, signed by the dealer's RS512 key",
            "/",
            &dealer_token(&c),
        )
        .await;
    cases
        .refused(
            "iss = provider, signed by the ES384 issuer's key",
            "/",
            &t.es384_token(&c),
        )
        .await;
    // One static issuer's name, the other's key.
    let mut c = dealer_claims("report-bot");
    c["iss"] = json!(ES384_ISSUER);
    cases
        .refused(
            "iss = ES384 issuer, signed by the dealer",
            "/",
            &dealer_token(&c),
        )
        .await;
    let mut c = t.es384_claims("es-bot");
    c["iss"] = json!(DEALER);
    cases
        .refused(
            "iss = dealer, signed by the ES384 issuer",
            "/",
            &t.es384_token(&c),
        )
        .await;

    // Near misses of the configured names, signed by the right key.
    let upper = issuer.to_ascii_uppercase();
    for (case, iss) in [
        ("provider iss with a trailing slash", format!("{issuer}/")),
        ("provider iss in upper case", upper),
        ("provider iss with a path", format!("{issuer}/oauth2")),
    ] {
        let mut c = access_claims(idp);
        c["iss"] = json!(iss);
        cases.refused(case, "/", &sign_at(idp, &c)).await;
    }
    for (case, iss) in [
        ("dealer iss with a trailing slash", format!("{DEALER}/")),
        (
            "dealer iss with a capital",
            "https://Dealer.internal".to_string(),
        ),
    ] {
        let mut c = dealer_claims("report-bot");
        c["iss"] = json!(iss);
        cases.refused(case, "/", &dealer_token(&c)).await;
    }
    let mut c = access_claims(idp);
    c.as_object_mut().expect("object").remove("iss");
    cases.refused("no iss at all", "/", &sign_at(idp, &c)).await;
    let mut c = access_claims(idp);
    c["iss"] = json!([issuer]);
    cases
        .refused("iss as an array", "/", &sign_at(idp, &c))
        .await;
    cases.finish();
}

/// Class 8: audience and `azp`.
#[tokio::test(flavor = "multi_thread")]
async fn attack_08_audience_and_azp() {
    let t = Bench::start().await;
    let idp = t.idp();
    let client_id = DevIdpConfig::default().client_id;
    t.accepted("genuine access token", "/", &access_token(idp), CLIENT)
        .await;
    t.accepted(
        "genuine ID token",
        "/",
        &idp.sign_claims(&id_token_claims(idp)),
        "alice",
    )
    .await;
    let mut multi = access_claims(idp);
    multi["aud"] = json!(["someone-else", API_AUDIENCE]);
    t.accepted(
        "audience list containing ours",
        "/",
        &sign_at(idp, &multi),
        CLIENT,
    )
    .await;

    let mut cases = t.cases("class 8: audience and azp");
    let audiences: [(&str, Option<Value>); 5] = [
        ("aud missing", None),
        ("aud foreign", Some(json!("someone-elses-api"))),
        (
            "aud array without ours",
            Some(json!(["other-api", "more-api"])),
        ),
        ("aud empty array", Some(json!([]))),
        ("aud in another case", Some(json!("Portcullis-API"))),
    ];
    for (case, aud) in &audiences {
        let mut c = access_claims(idp);
        match aud {
            Some(a) => c["aud"] = a.clone(),
            None => {
                c.as_object_mut().expect("object").remove("aud");
            }
        }
        cases
            .refused(&format!("provider token: {case}"), "/", &sign_at(idp, &c))
            .await;
        let mut c = dealer_claims("report-bot");
        match aud {
            Some(a) => c["aud"] = a.clone(),
            None => {
                c.as_object_mut().expect("object").remove("aud");
            }
        }
        cases
            .refused(&format!("dealer token: {case}"), "/", &dealer_token(&c))
            .await;
    }
    // An audience that is valid for another issuer only.
    let mut c = dealer_claims("report-bot");
    c["aud"] = json!(API_AUDIENCE);
    cases
        .refused(
            "dealer token for the provider's audience",
            "/",
            &dealer_token(&c),
        )
        .await;
    let mut c = access_claims(idp);
    c["aud"] = json!(STATIC_AUDIENCE);
    cases
        .refused(
            "provider token for the static issuers' audience",
            "/",
            &sign_at(idp, &c),
        )
        .await;
    // ID tokens: azp must name us.
    let mut c = id_token_claims(idp);
    c["azp"] = json!("someone-elses-client");
    cases
        .refused("ID token with a foreign azp", "/", &idp.sign_claims(&c))
        .await;
    let mut c = id_token_claims(idp);
    c["aud"] = json!([client_id, "someone-elses-client"]);
    c["azp"] = json!("someone-elses-client");
    cases
        .refused(
            "ID token for us and another client, azp the other",
            "/",
            &idp.sign_claims(&c),
        )
        .await;
    let mut c = id_token_claims(idp);
    c["aud"] = json!([client_id, "someone-elses-client"]);
    c.as_object_mut().expect("object").remove("azp");
    cases
        .refused(
            "ID token for several audiences without azp",
            "/",
            &idp.sign_claims(&c),
        )
        .await;
    cases.finish();
}

/// Class 9: the wrong kind of token for the route, and logout tokens anywhere.
#[tokio::test(flavor = "multi_thread")]
async fn attack_09_token_type_confusion() {
    let t = Bench::start().await;
    let idp = t.idp();
    let client_id = DevIdpConfig::default().client_id;
    let access = access_token(idp);
    let id = idp.sign_claims(&id_token_claims(idp));
    let plain = dealer_token(&dealer_claims("report-bot"));
    t.accepted(
        "access token on the access-only route",
        "/machine/jobs",
        &access,
        CLIENT,
    )
    .await;
    t.accepted("ID token on the ID-only route", "/people/me", &id, "alice")
        .await;

    let mut cases = t.cases("class 9: token type confusion");
    cases
        .refused("ID token on the access-only route", "/machine/jobs", &id)
        .await;
    cases
        .refused(
            "plain JWT on the access-only route",
            "/machine/jobs",
            &plain,
        )
        .await;
    let mut c = id_token_claims(idp);
    c["aud"] = json!(API_AUDIENCE);
    cases
        .refused(
            "ID-token claims for the API audience, typ JWT, on the access-only route",
            "/machine/jobs",
            &idp.sign_claims(&c),
        )
        .await;
    cases
        .refused("access token on the ID-only route", "/people/me", &access)
        .await;
    cases
        .refused("plain JWT on the ID-only route", "/people/me", &plain)
        .await;

    // Back-channel logout tokens are never credentials.
    let logout = |typ: &str, aud: &str, events: bool| {
        let mut c = json!({
            "iss": idp.issuer(), "sub": "alice", "aud": aud, "iat": now(), "exp": now() + 120,
            "jti": random_id(), "sid": "test-session",
        });
        if events {
            c["events"] = json!({ BACKCHANNEL_LOGOUT: {} });
        }
        let mut h = at_header(idp);
        h.typ = Some(typ.into());
        sign_with(idp, &h, &c)
    };
    for path in ["/", "/machine/jobs", "/people/me"] {
        cases
            .refused(
                &format!("logout token (typ logout+jwt, events) for our client on {path}"),
                path,
                &logout("logout+jwt", &client_id, true),
            )
            .await;
    }
    cases
        .refused(
            "logout token (typ logout+jwt, events) for the API audience",
            "/",
            &logout("logout+jwt", API_AUDIENCE, true),
        )
        .await;
    cases
        .refused(
            "logout token with typ JWT (events only)",
            "/",
            &logout("JWT", &client_id, true),
        )
        .await;
    cases
        .refused(
            "logout token with typ at+jwt (events only)",
            "/",
            &logout("at+jwt", API_AUDIENCE, true),
        )
        .await;
    cases
        .refused(
            "typ logout+jwt without events",
            "/",
            &logout("logout+jwt", API_AUDIENCE, false),
        )
        .await;
    // RFC 9068 access tokens must carry their required claims.
    for missing in ["jti", "client_id", "sub", "iat"] {
        let mut c = access_claims(idp);
        c.as_object_mut().expect("object").remove(missing);
        cases
            .refused(
                &format!("at+jwt without {missing} on the access-only route"),
                "/machine/jobs",
                &sign_at(idp, &c),
            )
            .await;
    }
    cases.finish();
}

/// Class 10: malformed tokens.
#[tokio::test(flavor = "multi_thread")]
async fn attack_10_malformed() {
    let t = Bench::start().await;
    let idp = t.idp();
    let genuine = access_token(idp);
    t.accepted("genuine", "/", &genuine, CLIENT).await;
    let (h, p, s) = segments(&genuine);
    let mut cases = t.cases("class 10: malformed");

    // Segment counts.
    cases
        .refused("two segments", "/", &format!("{h}.{p}"))
        .await;
    cases.refused("one segment", "/", h).await;
    cases
        .refused("four segments", "/", &format!("{genuine}.{s}"))
        .await;
    cases.refused("only dots", "/", "..").await;
    cases
        .refused("empty header segment", "/", &format!(".{p}.{s}"))
        .await;
    cases
        .refused("empty payload segment", "/", &format!("{h}..{s}"))
        .await;
    let jwe_header = b64(
        json!({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": idp.current_kid()})
            .to_string()
            .as_bytes(),
    );
    let jwe = format!(
        "{jwe_header}.{}.{}.{}.{}",
        b64(&[7u8; 256]),
        b64(&[1u8; 12]),
        b64(&[2u8; 64]),
        b64(&[3u8; 16])
    );
    cases.refused("five-segment JWE", "/", &jwe).await;

    // Characters and padding. The standard-alphabet signature decodes to the very same bytes.
    let std_sig = (0..40)
        .map(|_| access_token(idp))
        .find_map(|tok| {
            let (h, p, s) = segments(&tok);
            let std = STANDARD_NO_PAD.encode(unb64(s));
            (std.contains('+') || std.contains('/')).then(|| format!("{h}.{p}.{std}"))
        })
        .expect("a signature with '+' or '/' in standard base64");
    cases
        .refused("signature in standard base64 ('+', '/')", "/", &std_sig)
        .await;
    let padded_sig = format!("{h}.{p}.{}", URL_SAFE.encode(unb64(s)));
    assert!(padded_sig.ends_with('='));
    cases
        .refused("signature with base64 padding", "/", &padded_sig)
        .await;
    cases
        .refused("'!' inside the signature", "/", &format!("{h}.{p}.!{s}"))
        .await;
    cases
        .refused("whitespace inside the token", "/", &format!("{h}. {p}.{s}"))
        .await;
    // Payloads signed over exactly as written, by the dealer's real key.
    let mut c = dealer_claims("report-bot");
    c["note"] = json!("~~~???");
    let std_payload = STANDARD_NO_PAD.encode(c.to_string());
    assert!(std_payload.contains('+') || std_payload.contains('/'));
    cases
        .refused(
            "payload in standard base64, validly signed",
            "/",
            &compact(&dealer_header_segment(), &std_payload, dealer_sign),
        )
        .await;
    let mut c = dealer_claims("report-bot");
    let padded_payload = (0..3)
        .map(|i| {
            c["note"] = json!("x".repeat(i));
            URL_SAFE.encode(c.to_string())
        })
        .find(|e| e.ends_with('='))
        .expect("a payload that needs padding");
    cases
        .refused(
            "payload with base64 padding, validly signed",
            "/",
            &compact(&dealer_header_segment(), &padded_payload, dealer_sign),
        )
        .await;
    let payload = b64(dealer_claims("report-bot").to_string().as_bytes());
    cases
        .refused(
            "'*' inside the payload, validly signed",
            "/",
            &compact(
                &dealer_header_segment(),
                &format!("{payload}*"),
                dealer_sign,
            ),
        )
        .await;

    // JSON that is not a claims object, signed by the provider's real key.
    for (case, payload) in [
        ("payload a JSON array", json!([access_claims(idp)])),
        ("payload a JSON string", json!("ci-runner")),
        ("payload JSON null", Value::Null),
        ("payload a JSON number", json!(42)),
    ] {
        cases
            .refused(case, "/", &sign_with(idp, &at_header(idp), &payload))
            .await;
    }
    let header_array = b64(br#"["RS512"]"#);
    cases
        .refused(
            "header a JSON array, validly signed",
            "/",
            &compact(&header_array, &payload, dealer_sign),
        )
        .await;
    cases
        .refused(
            "header not JSON, validly signed",
            "/",
            &compact(&b64(b"RS512"), &payload, dealer_sign),
        )
        .await;

    // Duplicate claims, validly signed over the exact bytes: last-one-wins must not apply.
    let t0 = now();
    let dupes = [
        (
            "duplicate sub",
            format!(
                r#"{{"iss":"{DEALER}","sub":"report-bot","sub":"admin","aud":"{STATIC_AUDIENCE}","iat":{t0},"exp":{}}}"#,
                t0 + 300
            ),
        ),
        (
            "duplicate iss",
            format!(
                r#"{{"iss":"https://evil.example","iss":"{DEALER}","sub":"report-bot","aud":"{STATIC_AUDIENCE}","iat":{t0},"exp":{}}}"#,
                t0 + 300
            ),
        ),
        (
            "duplicate aud",
            format!(
                r#"{{"iss":"{DEALER}","sub":"report-bot","aud":"other-api","aud":"{STATIC_AUDIENCE}","iat":{t0},"exp":{}}}"#,
                t0 + 300
            ),
        ),
        (
            "duplicate exp",
            format!(
                r#"{{"iss":"{DEALER}","sub":"report-bot","aud":"{STATIC_AUDIENCE}","iat":{t0},"exp":{},"exp":{}}}"#,
                t0 - 3600,
                t0 + 300
            ),
        ),
        (
            "duplicate scp",
            format!(
                r#"{{"iss":"{DEALER}","sub":"report-bot","aud":"{STATIC_AUDIENCE}","iat":{t0},"exp":{},"scp":["audit"],"scp":["reports:read"]}}"#,
                t0 + 300
            ),
        ),
    ];
    let clean = format!(
        r#"{{"iss":"{DEALER}","sub":"report-bot","aud":"{STATIC_AUDIENCE}","iat":{t0},"exp":{}}}"#,
        t0 + 300
    );
    t.accepted(
        "raw-signed dealer token without duplicates",
        "/",
        &compact(
            &dealer_header_segment(),
            &b64(clean.as_bytes()),
            dealer_sign,
        ),
        "report-bot",
    )
    .await;
    for (case, json_text) in &dupes {
        cases
            .refused(
                case,
                "/reports/x",
                &compact(
                    &dealer_header_segment(),
                    &b64(json_text.as_bytes()),
                    dealer_sign,
                ),
            )
            .await;
    }
    let dup_header = b64(br#"{"alg":"RS512","alg":"none","typ":"JWT"}"#);
    cases
        .refused(
            "duplicate alg in the header",
            "/",
            &compact(&dup_header, &b64(clean.as_bytes()), dealer_sign),
        )
        .await;

    // Size and depth.
    let mut c = access_claims(idp);
    c["pad"] = json!("a".repeat(17 * 1024));
    cases
        .refused("larger than 16 KiB", "/", &sign_at(idp, &c))
        .await;
    let mut c = access_claims(idp);
    c["pad"] = json!("a".repeat(11 * 1024));
    let nearly = sign_at(idp, &c);
    assert!(nearly.len() <= 16 * 1024, "{}", nearly.len());
    t.accepted("16 KiB or less", "/", &nearly, CLIENT).await;
    let mut deep = json!(1);
    for _ in 0..300 {
        deep = json!([deep]);
    }
    let mut c = access_claims(idp);
    c["deep"] = deep;
    cases
        .refused("300-deep nested JSON claim", "/", &sign_at(idp, &c))
        .await;
    let deep_payload = format!(
        r#"{{"iss":"{DEALER}","sub":"report-bot","aud":"{STATIC_AUDIENCE}","iat":{t0},"exp":{},"deep":{}1{}}}"#,
        t0 + 300,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    cases
        .refused(
            "5000-deep nested JSON, validly signed",
            "/",
            &compact(
                &dealer_header_segment(),
                &b64(deep_payload.as_bytes()),
                dealer_sign,
            ),
        )
        .await;

    // Two Authorization headers: which one counts is ambiguous.
    let resp = t
        .navigate("/", &genuine)
        .header(AUTHORIZATION, "Bearer a.b.c")
        .send()
        .await
        .expect("request");
    cases
        .refused_response("two Authorization headers", resp)
        .await;
    cases.finish();
}

/// Class 11 (and the cache, test 6): a key the issuer withdrew stops working at once, even for
/// a token that was verified and remembered while the key was still published.
#[tokio::test(flavor = "multi_thread")]
async fn attack_11_a_withdrawn_key_is_refused_even_for_a_remembered_token() {
    let t = Bench::start().await;
    let idp = t.idp();
    let old_kid = idp.current_kid();
    let remembered = access_token(idp);
    let never_seen = access_token(idp);
    t.accepted(
        "old key, first use (verified and remembered)",
        "/",
        &remembered,
        CLIENT,
    )
    .await;
    t.accepted("old key, from memory", "/", &remembered, CLIENT)
        .await;

    idp.rotate_signing_key();
    idp.retire_old_keys();
    assert_ne!(idp.current_kid(), old_kid);
    assert!(
        !idp.jwks().to_string().contains(&old_kid),
        "the old key must be gone from the JWKS"
    );
    // A token from the new key makes the proxy refetch (an unknown kid).
    let fetches = idp.stats().jwks_fetches;
    t.accepted("new key, first use", "/", &access_token(idp), CLIENT)
        .await;
    assert_eq!(
        idp.stats().jwks_fetches,
        fetches + 1,
        "the new kid must have made the proxy refetch"
    );

    let mut cases = t.cases("class 11: withdrawn key");
    cases
        .refused("old key, remembered before the rotation", "/", &remembered)
        .await;
    cases
        .refused("old key, never seen before", "/", &never_seen)
        .await;
    cases
        .refused("old key, remembered, asked again", "/", &remembered)
        .await;
    cases.finish();
}

/// Class 12: curve and key-size mismatches.
#[tokio::test(flavor = "multi_thread")]
async fn attack_12_curve_mismatch_and_weak_rsa() {
    let t = Bench::start().await;
    let claims = t.es384_claims("es-bot");
    t.accepted("genuine ES384", "/", &t.es384_token(&claims), "es-bot")
        .await;
    let payload = b64(claims.to_string().as_bytes());
    let mut cases = t.cases("class 12: curve and key size");

    // ES256 in the header, a P-384 signature by the issuer's real key over exactly that.
    let es256_header = b64(br#"{"alg":"ES256","typ":"JWT"}"#);
    cases
        .refused(
            "ES256 header, signed by the ES384 key",
            "/",
            &compact(&es256_header, &payload, |m| t.es384.sign_raw(m)),
        )
        .await;
    // The other way round: ES384 in the header, a P-256 signature.
    let p256 = EcKey::generate(Algorithm::ES256);
    let es384_header = b64(br#"{"alg":"ES384","typ":"JWT"}"#);
    cases
        .refused(
            "ES384 header, signed by a P-256 key",
            "/",
            &compact(&es384_header, &payload, |m| p256.sign_raw(m)),
        )
        .await;
    // The ES384 signature relabelled as ES512 / EdDSA.
    let genuine = t.es384_token(&claims);
    let (_, p, s) = segments(&genuine);
    for alg in ["ES512", "EdDSA", "PS384"] {
        let h = b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
        cases
            .refused(
                &format!("ES384 signature relabelled {alg}"),
                "/",
                &format!("{h}.{p}.{s}"),
            )
            .await;
    }

    // RS256 by the 1024-bit key, against the dealer (RSA) and the provider.
    let weak_key = fixture("weak-rsa1024.key.pem").display().to_string();
    let weak_sign = |m: &[u8]| openssl(&["dgst", "-sha256", "-sign", &weak_key], m);
    let rs256 = b64(br#"{"alg":"RS256","typ":"JWT"}"#);
    let dealer_payload = b64(dealer_claims("report-bot").to_string().as_bytes());
    let weak = compact(&rs256, &dealer_payload, weak_sign);
    assert_eq!(unb64(segments(&weak).2).len(), 128, "a 1024-bit signature");
    cases
        .refused("RS256 by a 1024-bit key, dealer iss", "/", &weak)
        .await;
    let mut c = access_claims(t.idp());
    c["iat"] = json!(now());
    let provider_payload = b64(c.to_string().as_bytes());
    cases
        .refused(
            "RS256 by a 1024-bit key, provider iss",
            "/",
            &compact(&rs256, &provider_payload, weak_sign),
        )
        .await;
    cases.finish();
}

/// Class 12, configuration: a 1024-bit RSA public key is refused when portcullis starts.
#[tokio::test(flavor = "multi_thread")]
async fn attack_12_a_1024_bit_issuer_key_is_refused_at_start() {
    let idp = start_idp(DevIdpConfig::default()).await;
    let port = free_port();
    let issuer_with = |key: &str| {
        format!(
            "[bearer]\naudiences = [\"{API_AUDIENCE}\"]\n\n[[bearer.issuers]]\nissuer = \"{DEALER}\"\naudiences = [\"{STATIC_AUDIENCE}\"]\npublic_keys = [\"{}\"]\n",
            fixture(key).display()
        )
    };
    let toml = |key: &str| config(port, idp.issuer(), "http://127.0.0.1:9", &issuer_with(key));

    // Control: the same configuration with the 2048-bit key checks fine.
    let good = write_config(&toml("dealer-rs512.pub.pem"));
    let out = tokio::task::spawn_blocking(move || {
        Command::new(binary())
            .args(["check", "--config"])
            .arg(&good)
            .output()
    })
    .await
    .expect("join")
    .expect("portcullis check");
    assert!(
        out.status.success(),
        "2048-bit control: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let weak = write_config(&toml("weak-rsa1024.pub.pem"));
    let path = weak.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(binary())
            .args(["check", "--config"])
            .arg(&path)
            .output()
    })
    .await
    .expect("join")
    .expect("portcullis check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "check: {err}");
    assert!(
        err.contains(&format!(
            "{}: bearer.issuers[0].public_keys",
            weak.display()
        )),
        "check: {err}"
    );
    assert!(err.contains("1024"), "check names the key size: {err}");

    // `run` refuses it too, and exits instead of serving.
    let mut child = Command::new(binary())
        .args(["run", "--config"])
        .arg(&weak)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("portcullis run");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`portcullis run` kept running with a 1024-bit issuer key");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("stderr");
    assert_eq!(status.code(), Some(1), "run: {err}");
    assert!(err.contains("bearer.issuers[0].public_keys"), "run: {err}");
}

/// Beyond the corpus: RFC 7515 §4.1.11. A `crit` header lists extensions the recipient must
/// understand; when it does not, the JWS is invalid, however well it is signed.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_with_an_unknown_critical_header_is_refused() {
    let t = Bench::start().await;
    let idp = t.idp();
    t.accepted("genuine", "/", &access_token(idp), CLIENT).await;
    let mut cases = t.cases("crit");
    let mut h = at_header(idp);
    h.crit = Some(vec!["urn:example:must-understand".into()]);
    h.extras
        .insert("urn:example:must-understand", json!({"bound-to": "tls"}));
    cases
        .refused(
            "provider token, crit names an unknown extension",
            "/",
            &sign_with(idp, &h, &access_claims(idp)),
        )
        .await;
    // RFC 7797: with `b64: false` the signing input is the raw payload; a verifier that does not
    // implement it must refuse the token rather than read it the RFC 7515 way.
    let header = b64(br#"{"alg":"RS512","typ":"JWT","b64":false,"crit":["b64"]}"#);
    let payload = b64(dealer_claims("report-bot").to_string().as_bytes());
    cases
        .refused(
            "dealer token, crit b64 (RFC 7797 unencoded payload)",
            "/",
            &compact(&header, &payload, dealer_sign),
        )
        .await;
    cases.finish();
}
