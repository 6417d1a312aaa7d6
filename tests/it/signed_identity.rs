//! ALB's headers and the identity assertion, as the upstream receives them. (Verified by
//! AWS's ALB verifier, jose and PyJWT in tests/e2e/signed.test.mjs.)

use crate::support::*;
use reqwest::StatusCode;

const SIGNER: &str =
    "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/p/0123456789abcdef";

#[tokio::test(flavor = "multi_thread")]
async fn style_alb_sends_albs_headers_instead_of_oauth2_proxys() {
    let w = World::start(
        |c| c,
        &format!(
            "[headers]\nstyle = \"alb\"\nassertion = true\n[headers.alb]\nsigner = \"{SIGNER}\"\n"
        ),
    )
    .await;
    let mut b = Browser::new();
    b.login(&w.proxy, "alice", "/").await;
    let seen = Echoed::from(b.api(&w.proxy.url("/app")).await).await;
    assert_eq!(seen.all("x-amzn-oidc-identity"), ["alice"]);
    assert_eq!(
        seen.all("x-amzn-oidc-accesstoken").len(),
        1,
        "ALB sends the access token"
    );
    assert!(seen.all("x-forwarded-user").is_empty());
    assert!(seen.all("x-forwarded-email").is_empty());
    // ALB's token: base64url with padding, its header naming signer, client, iss, exp.
    let data = seen.all("x-amzn-oidc-data")[0].to_string();
    assert!(data.split('.').all(|s| s.len() % 4 == 0), "{data}");
    let header: serde_json::Value = serde_json::from_slice(&crate::support::jws::unb64(
        data.split('.').next().unwrap().trim_end_matches('='),
    ))
    .unwrap();
    assert_eq!(header["signer"], SIGNER);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(
        header["client"],
        portcullis::demo::DevIdpConfig::default().client_id
    );
    assert_eq!(header["iss"], w.idp.issuer());
    // The key endpoints: ALB's PEM by kid, and the JWKS with the same key.
    let kid = header["kid"].as_str().unwrap();
    let pem = plain_client()
        .get(w.proxy.url(&format!("/oauth2/alb-keys/{kid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(pem.status(), StatusCode::OK);
    assert!(pem
        .text()
        .await
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    let jwks: serde_json::Value = plain_client()
        .get(w.proxy.url("/.well-known/portcullis/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["kid"] == kid));
    let unknown = plain_client()
        .get(
            w.proxy
                .url("/oauth2/alb-keys/00000000-0000-0000-0000-000000000000"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_signed_headers_no_key_is_published() {
    let w = World::start(|c| c, "").await;
    for path in ["/.well-known/portcullis/jwks.json", "/oauth2/alb-keys/x"] {
        let r = plain_client().get(w.proxy.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
}
