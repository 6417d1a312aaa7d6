//! RFC 9728: the protected resource's metadata, and `resource_metadata` in every challenge.

use crate::support::tokens::{API_AUDIENCE, DEALER, STATIC_AUDIENCE};
use crate::support::*;
use reqwest::header::WWW_AUTHENTICATE;
use reqwest::StatusCode;
use serde_json::{json, Value};

const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

fn extra(more: &str) -> String {
    format!(
        "[bearer]\naudiences = [\"{API_AUDIENCE}\"]\n{more}\n[bearer.dpop]\n\n[[bearer.issuers]]\nissuer = \"{DEALER}\"\naudiences = [\"{STATIC_AUDIENCE}\"]\npublic_keys = [\"{}\"]\n\n[[routes]]\npath = \"/reports\"\nscopes = [\"reports:read\"]\n\n[[routes]]\npath = \"/admin\"\nscopes = [\"admin\", \"reports:read\"]\n",
        crate::support::keys::fixture("dealer-rs512.pub.pem").display()
    )
}

async fn get(url: &str) -> reqwest::Response {
    plain_client()
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metadata_names_the_resource_its_issuers_scopes_and_dpop_and_every_401_points_there() {
    let w = World::start(|c| c, &extra("")).await;
    let r = get(&w.proxy.url(WELL_KNOWN)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header_str(&r, "access-control-allow-origin".parse().unwrap()),
        "*"
    );
    let doc: Value = r.json().await.unwrap();
    let origin = w.proxy.url("");
    assert_eq!(
        doc,
        json!({
            "resource": origin.trim_end_matches('/'),
            "authorization_servers": [w.idp.issuer(), DEALER],
            "scopes_supported": ["reports:read", "admin"],
            "bearer_methods_supported": ["header"],
            "dpop_signing_alg_values_supported": ["ES256", "ES384", "RS256", "PS256", "EdDSA"],
        })
    );
    let pointer = format!("resource_metadata=\"{}\"", w.proxy.url(WELL_KNOWN));
    // No token, a bad token: 401 with both challenges pointing at the metadata.
    for resp in [
        get(&w.proxy.url("/api/x")).await,
        plain_client()
            .get(w.proxy.url("/api/x"))
            .bearer_auth("not.a.token")
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let challenges: Vec<&str> = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(challenges.len(), 2, "{challenges:?}");
        for c in challenges {
            assert!(c.ends_with(&pointer), "{c}");
        }
    }
    // A path under the well-known name that names no resource here.
    assert_eq!(
        get(&w.proxy.url(&format!("{WELL_KNOWN}/other")))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_resource_with_a_path_has_its_metadata_at_that_path() {
    let w = World::start(|c| c, &extra("resource = \"https://api.example.com/mcp\"\nauthorization_servers = [\"https://login.example.com\"]")).await;
    let r = get(&w.proxy.url("/api/x")).await;
    assert!(
        header_str(&r, WWW_AUTHENTICATE).ends_with(
            "resource_metadata=\"https://api.example.com/.well-known/oauth-protected-resource/mcp\""
        ),
        "{}",
        header_str(&r, WWW_AUTHENTICATE)
    );
    let doc: Value = get(&w.proxy.url(&format!("{WELL_KNOWN}/mcp")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(doc["resource"], "https://api.example.com/mcp");
    assert_eq!(
        doc["authorization_servers"],
        json!(["https://login.example.com"])
    );
    assert_eq!(
        get(&w.proxy.url(WELL_KNOWN)).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_bearer_tokens_there_is_no_metadata_to_point_at() {
    let w = World::start(|c| c, "").await;
    assert_eq!(
        get(&w.proxy.url(WELL_KNOWN)).await.status(),
        StatusCode::NOT_FOUND
    );
    let r = get(&w.proxy.url("/api/x")).await;
    assert_eq!(
        header_str(&r, WWW_AUTHENTICATE),
        "Bearer realm=\"portcullis\""
    );
}
