//! `/metrics` on `server.metrics_listen`: the counters move with what the proxy does.

use crate::support::metric_value as value;
use crate::support::*;
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_outcomes_provider_calls_refreshes_and_cookie_sizes() {
    let metrics_port = free_port();
    let w = World::start_with(expiring_tokens, |toml| {
        server_option(
            toml,
            &format!("metrics_listen = \"127.0.0.1:{metrics_port}\""),
        ) + "[bearer]\naudiences = [\"portcullis-api\"]\n"
    })
    .await;
    let client = plain_client();
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let scrape = || async {
        let r = client.get(&metrics_url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.text().await.unwrap()
    };
    let before = scrape().await;
    // Loading the provider took a discovery document and a key set.
    for series in [
        "portcullis_idp_requests_total{endpoint=\"discovery\",result=\"ok\"}",
        "portcullis_idp_requests_total{endpoint=\"jwks\",result=\"ok\"}",
    ] {
        assert!(value(&before, series) >= 1.0, "{series}\n{before}");
    }

    // A browser signs in (token endpoint, one session cookie), then uses the app; its access
    // token has already expired, so the session is refreshed.
    let mut alice = Browser::new();
    alice.login(&w.proxy, "alice", "/").await;
    assert_eq!(alice.api(&w.proxy.url("/a")).await.status(), StatusCode::OK);
    // Anonymous: a browser is sent to log in, an API client gets 401.
    let anon = plain_client();
    let r = anon
        .get(w.proxy.url("/b"))
        .header("accept", BROWSER_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let r = anon.get(w.proxy.url("/c")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Bearer: a valid token twice, a broken one once.
    let token = w
        .idp
        .mint_access_token("ci-runner", &["test_api_access"])
        .unwrap();
    for _ in 0..2 {
        let r = anon
            .get(w.proxy.url("/d"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = anon
        .get(w.proxy.url("/d"))
        .bearer_auth(format!("{token}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Forward auth: allowed with the token, 401 without.
    let r = anon
        .get(w.proxy.url("/oauth2/auth"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = anon.get(w.proxy.url("/oauth2/auth")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let after = scrape().await;
    let moved = |series: &str| value(&after, series) - value(&before, series);
    let expect = [
        ("portcullis_requests_total{outcome=\"cookie\"}", 1.0),
        ("portcullis_requests_total{outcome=\"bearer\"}", 2.0),
        // alice's first visit, and the anonymous browser.
        ("portcullis_requests_total{outcome=\"login_redirect\"}", 2.0),
        (
            "portcullis_requests_total{outcome=\"unauthenticated\"}",
            1.0,
        ),
        ("portcullis_requests_total{outcome=\"invalid_token\"}", 1.0),
        ("portcullis_forward_auth_total{status=\"202\"}", 1.0),
        ("portcullis_forward_auth_total{status=\"401\"}", 1.0),
        ("portcullis_upstream_responses_total{class=\"2xx\"}", 3.0),
        ("portcullis_upstream_response_seconds_count", 3.0),
        (
            "portcullis_idp_requests_total{endpoint=\"token\",result=\"ok\"}",
            2.0,
        ),
        (
            "portcullis_session_refreshes_total{provider=\"default\",result=\"refreshed\"}",
            1.0,
        ),
        ("portcullis_session_cookie_bytes_count", 2.0),
    ];
    for (series, n) in expect {
        assert_eq!(moved(series), n, "{series}\n{after}");
    }
    // Every request that was decided was timed.
    assert!(moved("portcullis_auth_decision_seconds_count") >= 7.0);

    // Only /metrics, and only on its own port.
    let r = client
        .get(format!("http://127.0.0.1:{metrics_port}/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = anon.get(w.proxy.url("/metrics")).send().await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "the proxy's port is the app's"
    );
    // No secret or token in the metrics.
    assert!(!after.contains(&token[..20]));
}
