//! DPoP (RFC 9449) through the proxy: a DPoP-bound token with a proof for the request is
//! served; a replayed proof, one for another URL or method, an unbound token under the DPoP
//! scheme are 401 with a `WWW-Authenticate: DPoP` challenge; server nonces when asked for.

use reqwest::header::WWW_AUTHENTICATE;
use reqwest::StatusCode;

use crate::support::dpop::DpopKey;
use crate::support::keys::fixture;
use crate::support::tokens::{dealer_claims, dealer_token, DEALER, STATIC_AUDIENCE};
use crate::support::*;

fn dpop_config(nonce: bool) -> String {
    format!(
        "\n[bearer.dpop]\nuse_dpop_nonce = {nonce}\n\n[[bearer.issuers]]\nissuer = \"{DEALER}\"\naudiences = [\"{STATIC_AUDIENCE}\"]\npublic_keys = [\"{}\"]\n",
        fixture("dealer-rs512.pub.pem").display()
    )
}

fn bound_token(key: &DpopKey) -> String {
    let mut claims = dealer_claims("svc");
    claims["cnf"] = serde_json::json!({ "jkt": key.jkt() });
    dealer_token(&claims)
}

async fn call(
    url: &str,
    method: reqwest::Method,
    scheme: &str,
    token: &str,
    proof: Option<&str>,
) -> reqwest::Response {
    let mut req = plain_client()
        .request(method, url)
        .header("Authorization", format!("{scheme} {token}"))
        .header("Accept", "application/json");
    if let Some(p) = proof {
        req = req.header("DPoP", p);
    }
    req.send().await.expect("request")
}

fn challenges(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dpop_bound_token_needs_a_fresh_proof_for_this_request() {
    let w = World::start(|c| c, &dpop_config(false)).await;
    let key = DpopKey::new();
    let token = bound_token(&key);
    let url = w.proxy.url("/api/reports");
    let get = reqwest::Method::GET;

    let proof = key.proof("GET", &url, &token, None);
    let ok = call(&url, get.clone(), "DPoP", &token, Some(&proof)).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let echoed = Echoed::from(ok).await;
    assert_eq!(echoed.all("x-forwarded-user"), ["svc"]);

    let refusals = [
        (
            "the same proof again",
            key.proof("GET", &url, &token, None),
            true,
        ),
        (
            "a proof for another URL",
            key.proof("GET", &w.proxy.url("/api/other"), &token, None),
            false,
        ),
        (
            "a proof for another method",
            key.proof("POST", &url, &token, None),
            false,
        ),
        (
            "a proof by another key",
            DpopKey::new().proof("GET", &url, &token, None),
            false,
        ),
    ];
    for (case, proof, replay) in refusals {
        if replay {
            // Spend it first, then replay it.
            let first = call(&url, get.clone(), "DPoP", &token, Some(&proof)).await;
            assert_eq!(first.status(), StatusCode::OK, "{case}: first use");
        }
        let resp = call(&url, get.clone(), "DPoP", &token, Some(&proof)).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{case}");
        let dpop = challenges(&resp);
        assert!(
            dpop.iter()
                .any(|c| c.starts_with("DPoP error=\"invalid_dpop_proof\"")
                    && c.contains("algs=\"ES256")),
            "{case}: {dpop:?}"
        );
    }
    // No proof at all.
    let resp = call(&url, get.clone(), "DPoP", &token, None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // An unbound token under the DPoP scheme, and the bound one as Bearer.
    let unbound = dealer_token(&dealer_claims("svc"));
    let proof = key.proof("GET", &url, &unbound, None);
    let resp = call(&url, get.clone(), "DPoP", &unbound, Some(&proof)).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = call(&url, get.clone(), "Bearer", &token, None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Every 401 says DPoP is accepted, and how.
    let anonymous = plain_client()
        .get(&url)
        .header("Accept", "application/json")
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let all = challenges(&anonymous);
    assert!(all.iter().any(|c| c.starts_with("Bearer")), "{all:?}");
    assert!(
        all.iter()
            .any(|c| c
                .starts_with("DPoP algs=\"ES256 ES384 RS256 PS256 EdDSA\", resource_metadata=")),
        "{all:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_use_dpop_nonce_a_proof_carries_the_nonce_portcullis_handed_out() {
    let w = World::start(|c| c, &dpop_config(true)).await;
    let key = DpopKey::new();
    let token = bound_token(&key);
    let url = w.proxy.url("/api/reports");
    let first = call(
        &url,
        reqwest::Method::GET,
        "DPoP",
        &token,
        Some(&key.proof("GET", &url, &token, None)),
    )
    .await;
    assert_eq!(first.status(), StatusCode::UNAUTHORIZED);
    assert!(
        challenges(&first)
            .iter()
            .any(|c| c.starts_with("DPoP error=\"use_dpop_nonce\"")),
        "{:?}",
        challenges(&first)
    );
    let nonce = first
        .headers()
        .get("dpop-nonce")
        .and_then(|v| v.to_str().ok())
        .expect("DPoP-Nonce")
        .to_string();
    let proof = key.proof("GET", &url, &token, Some(&nonce));
    let again = call(&url, reqwest::Method::GET, "DPoP", &token, Some(&proof)).await;
    assert_eq!(again.status(), StatusCode::OK);
    let made_up = key.proof("GET", &url, &token, Some("made-up"));
    let resp = call(&url, reqwest::Method::GET, "DPoP", &token, Some(&made_up)).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}
