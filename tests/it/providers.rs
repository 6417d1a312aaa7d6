//! Several identity providers in one instance (`[[oidc.providers]]`): a chooser, routes that
//! choose, sessions that remember their provider, no mix-up between providers, logouts and
//! outages that stay with their provider. Two development providers, both with a user
//! `alice` whose `sub` is `alice`: the same `sub` at two providers.

use crate::support::metric_value as value;
use crate::support::tokens::logout_token;
use crate::support::*;
use portcullis::demo::{DevIdp, DevIdpConfig, EchoServer};
use reqwest::StatusCode;

const BROWSER: &str = "text/html,application/xhtml+xml";

struct Two {
    a: DevIdp,
    b: DevIdp,
    proxy: Proxy,
    metrics: String,
    _echo: EchoServer,
}

/// Provider `a` calls back at `/oauth2/callback`, `b` at `/oauth2/callback/b`; each provider
/// accepts both addresses, so that only portcullis stands between a code and the wrong flow.
/// `b_issuer` replaces `b`'s issuer (a provider that cannot be reached).
async fn two(b_issuer: Option<&str>, extra: &str) -> Two {
    let port = free_port();
    let metrics_port = free_port();
    let callbacks = vec![
        format!("http://127.0.0.1:{port}/oauth2/callback"),
        format!("http://127.0.0.1:{port}/oauth2/callback/b"),
    ];
    let idp = |_| DevIdpConfig {
        redirect_uris: callbacks.clone(),
        post_logout_redirect_uris: vec![format!("http://127.0.0.1:{port}/")],
        ..DevIdpConfig::default()
    };
    let a = start_idp(idp(())).await;
    let b = start_idp(idp(())).await;
    let echo = start_echo().await;
    let d = DevIdpConfig::default();
    let (id, secret) = (&d.client_id, &d.client_secret);
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
metrics_listen = "127.0.0.1:{metrics_port}"
[upstream]
url = "http://{echo}"
[[oidc.providers]]
id = "a"
name = "Provider A"
issuer = "{a}"
client_id = "{id}"
client_secret = "{secret}"
redirect_url = "http://127.0.0.1:{port}/oauth2/callback"
health_check_interval = "1s"
[[oidc.providers]]
id = "b"
name = "Provider B"
issuer = "{b}"
client_id = "{id}"
client_secret = "{secret}"
redirect_url = "http://127.0.0.1:{port}/oauth2/callback/b"
health_check_interval = "1s"
[session]
secrets = ["{SECRET}"]
secure = false
[headers]
user_format = "{{provider}}:{{user}}"
[[routes]]
path = "/b-only"
provider = "b"
[logging]
format = "json"
{extra}
"#,
        echo = echo.addr(),
        a = a.issuer(),
        b = b_issuer.unwrap_or(b.issuer()),
    );
    let proxy = Proxy::start(port, &toml).await;
    proxy.wait_ready().await;
    Two {
        a,
        b,
        proxy,
        metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
        _echo: echo,
    }
}

/// `/oauth2/start` for `provider`, returning to `/`: the provider's authorize URL.
async fn start_with(b: &mut Browser, proxy: &Proxy, provider: &str) -> String {
    let resp = b
        .get(
            &proxy.url(&format!("/oauth2/start?provider={provider}&rd=%2F")),
            BROWSER,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    location(&resp)
}

/// The whole login of `user` at `provider`; the session is in `b`'s jar.
async fn sign_in(b: &mut Browser, proxy: &Proxy, provider: &str, user: &str) {
    let authorize = start_with(b, proxy, provider).await;
    let callback = b.submit_credentials(&authorize, user, user).await;
    let resp = b.callback(&callback).await;
    assert_eq!(
        resp.status(),
        StatusCode::FOUND,
        "{}",
        resp.text().await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_sub_at_two_providers_is_two_users_and_a_route_chooses_its_provider() {
    let t = two(None, "").await;
    let mut b = Browser::new();
    // With nothing to choose by, the person picks.
    let r = b.get(&t.proxy.url("/app"), BROWSER).await;
    assert_eq!(location(&r), "/oauth2/start?rd=%2Fapp");
    let r = b
        .get(&t.proxy.url("/oauth2/start?rd=%2Fapp"), BROWSER)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    for link in [
        "href=\"/oauth2/start?provider=a&amp;rd=%2Fapp\">Provider A</a>",
        "href=\"/oauth2/start?provider=b&amp;rd=%2Fapp\">Provider B</a>",
    ] {
        assert!(page.contains(link), "{link} in {page}");
    }
    let r = b
        .get(&t.proxy.url("/oauth2/start?provider=c"), BROWSER)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // alice at provider a.
    let authorize = start_with(&mut b, &t.proxy, "a").await;
    assert!(authorize.starts_with(t.a.issuer()), "{authorize}");
    let cb = b.submit_credentials(&authorize, "alice", "alice").await;
    assert_eq!(b.callback(&cb).await.status(), StatusCode::FOUND);
    let seen = Echoed::from(b.api(&t.proxy.url("/app")).await).await;
    assert_eq!(seen.all("x-forwarded-user"), ["a:alice"]);
    assert_eq!(seen.all("x-forwarded-issuer"), [t.a.issuer()]);
    let me: serde_json::Value = b
        .api(&t.proxy.url("/oauth2/userinfo"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (me["user"].as_str(), me["provider"].as_str()),
        (Some("alice"), Some("a"))
    );

    // The route that chooses b takes no session of a: a program gets 401, a browser is sent
    // to sign in, and /oauth2/start goes straight to b (the route's provider).
    assert_eq!(
        b.api(&t.proxy.url("/b-only")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = b.get(&t.proxy.url("/b-only/x"), BROWSER).await;
    assert_eq!(location(&r), "/oauth2/start?rd=%2Fb-only%2Fx");
    let r = b
        .get(&t.proxy.url("/oauth2/start?rd=%2Fb-only%2Fx"), BROWSER)
        .await;
    let authorize = location(&r);
    assert!(authorize.starts_with(t.b.issuer()), "{authorize}");
    let cb = b.submit_credentials(&authorize, "alice", "alice").await;
    let r = b.callback(&cb).await;
    assert_eq!(location(&r), "/b-only/x");
    // Now the same alice, vouched for by b: another user to the application.
    let seen = Echoed::from(b.api(&t.proxy.url("/b-only/x")).await).await;
    assert_eq!(seen.all("x-forwarded-user"), ["b:alice"]);
    assert_eq!(seen.all("x-forwarded-issuer"), [t.b.issuer()]);

    let metrics = scrape(&t.metrics).await;
    for series in [
        "portcullis_logins_total{provider=\"a\",result=\"ok\"}",
        "portcullis_logins_total{provider=\"b\",result=\"ok\"}",
        "portcullis_identity_provider_ready{provider=\"a\"}",
        "portcullis_identity_provider_ready{provider=\"b\"}",
    ] {
        assert_eq!(value(&metrics, series), 1.0, "{series}\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_finishes_only_the_login_of_the_provider_it_began_with() {
    let t = two(None, "").await;
    // A login begun with a; the code comes from b (a mix-up): b names itself (RFC 9207).
    let mut mixed = Browser::new();
    let authorize = start_with(&mut mixed, &t.proxy, "a").await;
    let at_b = authorize.replacen(t.a.issuer(), t.b.issuer(), 1);
    let cb = mixed.submit_credentials(&at_b, "alice", "alice").await;
    assert!(
        cb.contains(&format!("iss={}", urlencoding(t.b.issuer()))),
        "{cb}"
    );
    let r = mixed.callback(&cb).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("another issuer"));
    assert!(mixed.jar.session_names().is_empty());
    // The same with the issuer parameter stripped: the code is spent at a, which never issued
    // it.
    let mut stripped = Browser::new();
    let authorize = start_with(&mut stripped, &t.proxy, "a").await;
    let at_b = authorize.replacen(t.a.issuer(), t.b.issuer(), 1);
    let cb = stripped.submit_credentials(&at_b, "alice", "alice").await;
    let cb = cb.split("&iss=").next().unwrap().to_string();
    let r = stripped.callback(&cb).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(stripped.jar.session_names().is_empty());
    assert_eq!(t.b.stats().authorization_code_grants, 0);

    // A login begun with b, its answer delivered at a's callback address: refused there.
    let mut lost = Browser::new();
    let authorize = start_with(&mut lost, &t.proxy, "b").await;
    let cb = lost.submit_credentials(&authorize, "alice", "alice").await;
    assert!(cb.contains("/oauth2/callback/b?"), "{cb}");
    let r = lost
        .callback(&cb.replacen("/oauth2/callback/b?", "/oauth2/callback?", 1))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("came back to another provider"));
    assert!(lost.jar.session_names().is_empty());
    assert_eq!(t.b.stats().authorization_code_grants, 0);
}

async fn scrape(url: &str) -> String {
    plain_client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn urlencoding(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_logout_at_one_provider_ends_only_its_own_users_sessions() {
    let t = two(None, "").await;
    let mut at_a = Browser::new();
    sign_in(&mut at_a, &t.proxy, "a", "alice").await;
    let mut at_b = Browser::new();
    sign_in(&mut at_b, &t.proxy, "b", "alice").await;
    let logout = |idp: &DevIdp| logout_token(idp, serde_json::json!({}));
    let post = |token: String| {
        let url = t.proxy.url("/oauth2/backchannel_logout");
        async move {
            plain_client()
                .post(url)
                .form(&[("logout_token", token)])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // b signs alice out: b's alice only.
    assert_eq!(post(logout(&t.b)).await, StatusCode::OK);
    assert_eq!(
        at_b.api(&t.proxy.url("/app")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        at_a.api(&t.proxy.url("/app")).await.status(),
        StatusCode::OK
    );
    // A token signed by b that names a as its issuer verifies with a's keys: refused.
    let forged = logout_token(&t.b, serde_json::json!({ "iss": t.a.issuer() }));
    assert_eq!(post(forged).await, StatusCode::BAD_REQUEST);
    assert_eq!(
        at_a.api(&t.proxy.url("/app")).await.status(),
        StatusCode::OK
    );
    // a signs alice out: now a's too.
    assert_eq!(post(logout(&t.a)).await, StatusCode::OK);
    assert_eq!(
        at_a.api(&t.proxy.url("/app")).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_provider_down_leaves_the_others_serving() {
    // b's issuer is an address nothing listens on: never loaded.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let t = two(Some(&dead), "").await;
    let ready = plain_client()
        .get(t.proxy.url("/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let text = ready.text().await.unwrap();
    assert!(text.starts_with("degraded:"), "{text}");
    assert!(text.contains("provider a: ready\n"), "{text}");
    assert!(text.contains("provider b: not ready"), "{text}");
    // a's users sign in; b's get the outage page, not a connection error at the provider.
    let mut alice = Browser::new();
    sign_in(&mut alice, &t.proxy, "a", "alice").await;
    assert_eq!(
        alice.api(&t.proxy.url("/app")).await.status(),
        StatusCode::OK
    );
    let r = Browser::new()
        .get(&t.proxy.url("/oauth2/start?provider=b"), BROWSER)
        .await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let metrics = scrape(&t.metrics).await;
    assert_eq!(
        value(
            &metrics,
            "portcullis_identity_provider_ready{provider=\"a\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &metrics,
            "portcullis_identity_provider_ready{provider=\"b\"}"
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_that_begins_later_degrades_only_its_provider() {
    let t = two(None, "").await;
    let Two {
        a,
        b,
        proxy,
        metrics,
        _echo,
    } = t;
    b.shutdown().await;
    let client = plain_client();
    wait_until(
        "provider b to be seen down",
        std::time::Duration::from_secs(20),
        || {
            let req = client.get(proxy.url("/ready"));
            async move {
                let text = req.send().await.unwrap().text().await.unwrap();
                text.contains("provider b: degraded") && text.contains("provider a: ready")
            }
        },
    )
    .await;
    let mut alice = Browser::new();
    sign_in(&mut alice, &proxy, "a", "alice").await;
    let m = client
        .get(&metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        value(&m, "portcullis_identity_provider_ready{provider=\"b\"}"),
        0.0
    );
    drop(a);
}
