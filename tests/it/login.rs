//! The browser login end to end over HTTP, against the real binary, the development provider
//! and the echo upstream.

use crate::support::*;
use std::time::Duration;

use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread")]
async fn login_returns_to_the_deep_link_and_the_upstream_sees_alice() {
    let w = World::start(|c| c, "").await;
    let mut b = Browser::new();
    let back = b
        .login(&w.proxy, "alice", "/reports/q3?year=2026&view=full")
        .await;
    assert_eq!(back, "/reports/q3?year=2026&view=full");
    assert_eq!(b.jar.session_names(), ["_portcullis"]);
    // The flow cookie was used once and cleared.
    assert!(!b.jar.cookies.keys().any(|k| k.contains("_flow_")));

    let seen = Echoed::from(b.api(&w.proxy.url(&back)).await).await;
    assert_eq!(seen.uri, "/reports/q3?year=2026&view=full");
    assert_eq!(seen.all("x-forwarded-user"), ["alice"]);
    assert_eq!(seen.all("x-forwarded-email"), ["alice@example.com"]);
    assert_eq!(seen.all("x-forwarded-groups"), ["sre,dev"]);
    assert_eq!(seen.all("x-forwarded-preferred-username"), ["alice"]);
    // portcullis' own cookie never reaches the application.
    assert!(seen
        .all("cookie")
        .iter()
        .all(|c| !c.contains("_portcullis")));
    assert_eq!(w.idp.stats().authorization_code_grants, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_identity_headers_never_arrive() {
    let w = World::start(|c| c, "").await;
    let mut b = Browser::new();
    b.login(&w.proxy, "bob", "/").await;
    let forged = [
        "X-Forwarded-Email",
        "x-forwarded-email",
        "X_Forwarded_Email",
        "X-FORWARDED-USER",
        "X-Forwarded-Groups",
        "X-Auth-Request-User",
        "X-Auth-Request-Email",
        "X-Forwarded-Access-Token",
        "Remote-User",
    ];
    let mut req = b
        .client
        .get(w.proxy.url("/whoami"))
        .header("accept", "application/json")
        .header("cookie", format!("{}; theme=dark", b.jar.header()));
    for name in forged {
        req = req.header(name, "mallory@evil.example");
    }
    let seen = Echoed::from(req.send().await.unwrap()).await;
    for (name, value) in &seen.headers {
        assert!(
            !value.contains("mallory"),
            "{name}: {value} reached the upstream"
        );
    }
    assert_eq!(seen.all("x-forwarded-user"), ["bob"]);
    assert_eq!(seen.all("x-forwarded-email"), ["bob@example.com"]);
    assert_eq!(seen.all("cookie"), ["theme=dark"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthenticated_api_clients_get_401_json_and_browsers_a_login_redirect() {
    let w = World::start(|c| c, "").await;
    let client = plain_client();
    for accept in ["*/*", "application/json"] {
        let r = client
            .get(w.proxy.url("/api/items"))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().contains_key("www-authenticate"));
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized");
    }
    // fetch() from a page: never a redirect.
    let r = client
        .get(w.proxy.url("/api/items"))
        .header("accept", "*/*")
        .header("sec-fetch-mode", "cors")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = client
        .get(w.proxy.url("/app?x=1"))
        .header("accept", BROWSER_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(location(&r), "/oauth2/start?rd=%2Fapp%3Fx%3D1");
    // Nothing of the upstream's reaches an anonymous client.
    assert!(!r.text().await.unwrap().contains("headers"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_cookie_is_no_session_and_is_cleared() {
    let w = World::start(|c| c, "").await;
    let mut b = Browser::new();
    b.login(&w.proxy, "alice", "/").await;
    let value = b.jar.cookies.get_mut("_portcullis").unwrap();
    let mid = value.len() / 2;
    let flipped = if &value[mid..mid + 1] == "A" {
        "B"
    } else {
        "A"
    };
    value.replace_range(mid..mid + 1, flipped);
    let r = b.api(&w.proxy.url("/x")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        b.jar.session_names().is_empty(),
        "the bad cookie must be cleared"
    );
    // Garbage of every shape: still a clean 401, never a 500.
    for junk in ["", "x", "AAAA", "%%%", "_portcullis_0=a"] {
        let r = plain_client()
            .get(w.proxy.url("/x"))
            .header("cookie", format!("_portcullis={junk}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "cookie {junk:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cookie_planted_before_login_is_replaced_by_a_fresh_session() {
    let w = World::start(|c| c, "").await;
    let mut b = Browser::new();
    b.jar
        .cookies
        .insert("_portcullis".into(), "planted-by-attacker".into());
    b.login(&w.proxy, "alice", "/").await;
    let v = b.jar.cookies.get("_portcullis").unwrap();
    assert_ne!(v, "planted-by-attacker");
    assert_eq!(b.api(&w.proxy.url("/")).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_session_survives_token_expiry_through_refresh() {
    // Tokens that expire at once: every request with an expired session refreshes.
    let w = World::start(expiring_tokens, "").await;
    let mut b = Browser::new();
    b.login(&w.proxy, "alice", "/").await;
    for round in 1..=3u64 {
        let before = b.jar.cookies["_portcullis"].clone();
        let seen = Echoed::from(b.api(&w.proxy.url("/after-expiry")).await).await;
        assert_eq!(seen.all("x-forwarded-user"), ["alice"]);
        assert_eq!(w.idp.stats().refresh_token_grants, round);
        assert_ne!(
            b.jar.cookies["_portcullis"], before,
            "the refreshed session is stored"
        );
    }
    assert_eq!(w.idp.stats().refresh_token_grants_failed, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_share_one_refresh_and_rotation_never_logs_out() {
    let w = World::start(expiring_tokens, "").await;
    let mut b = Browser::new();
    b.login(&w.proxy, "alice", "/").await;
    let old_cookie = b.jar.header();
    let client = plain_client();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let req = client
            .get(w.proxy.url(&format!("/asset/{i}")))
            .header("accept", "*/*")
            .header("cookie", old_cookie.clone());
        tasks.push(tokio::spawn(
            async move { req.send().await.unwrap().status() },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    let stats = w.idp.stats();
    assert_eq!(
        stats.refresh_token_grants, 1,
        "one refresh for all concurrent requests"
    );
    assert_eq!(stats.refresh_token_grants_failed, 0);
    // A straggler with the old cookie (its refresh token is spent at the provider) still works.
    let r = client
        .get(w.proxy.url("/late"))
        .header("accept", "*/*")
        .header("cookie", old_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(w.idp.stats().refresh_token_grants_failed, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_refresh_signs_out_but_an_unreachable_provider_does_not() {
    let w = World::start(expiring_tokens, "").await;
    let mut b = Browser::new();
    b.login(&w.proxy, "alice", "/").await;
    // Provider down: the session keeps working.
    let World { idp, echo, proxy } = w;
    idp.shutdown().await;
    let r = b.api(&proxy.url("/while-idp-down")).await;
    assert_eq!(r.status(), StatusCode::OK);

    // A provider that refuses the refresh token: unauthenticated, cookie cleared.
    let w2 = World::start(expiring_tokens, "").await;
    let mut b2 = Browser::new();
    b2.login(&w2.proxy, "bob", "/").await;
    w2.idp.revoke_refresh_tokens();
    let r = b2.api(&w2.proxy.url("/after-revoke")).await;
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "after the provider revoked the refresh token: {body}\n--- portcullis log ---\n{}\nprovider: {:?}",
        w2.proxy.log(),
        w2.idp.stats(),
    );
    assert!(b2.jar.session_names().is_empty());
    drop((echo, proxy));
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_out_clears_cookies_and_ends_the_session_at_the_provider() {
    let w = World::start(|c| c, "").await;
    let mut b = Browser::new();
    b.login(&w.proxy, "alice", "/").await;
    let r = b
        .sign_out_response(&w.proxy.url("/oauth2/sign_out?rd=%2Fgoodbye"))
        .await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(b.jar.session_names().is_empty(), "session cookies cleared");
    let to = location(&r);
    assert!(to.starts_with(&format!("{}/", w.idp.issuer())), "{to}");
    let u = url::Url::parse(&to).unwrap();
    let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
    assert!(q.contains_key("id_token_hint"));
    assert_eq!(q["post_logout_redirect_uri"], w.proxy.url("/goodbye"));
    assert_eq!(
        b.api(&w.proxy.url("/")).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // With end_session_method = "post" the ID token goes to the provider in a form the page
    // posts, never in a URL.
    let w = World::start_with(
        |c| c,
        |t| t.replacen("[oidc]\n", "[oidc]\nend_session_method = \"post\"\n", 1),
    )
    .await;
    let mut b = Browser::new();
    b.login(&w.proxy, "alice", "/").await;
    let r = b
        .sign_out_response(&w.proxy.url("/oauth2/sign_out?rd=%2Fgoodbye"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("location").is_none());
    assert!(b.jar.session_names().is_empty(), "session cookies cleared");
    let to = sign_out_destination(r).await.unwrap();
    assert!(
        to.starts_with(&format!("{}/logout?", w.idp.issuer())),
        "{to}"
    );
    let u = url::Url::parse(&to).unwrap();
    let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
    assert!(q.contains_key("id_token_hint"));
    assert_eq!(q["post_logout_redirect_uri"], w.proxy.url("/goodbye"));
}

/// A sign-out that another site starts (a link, an image, a posted form) must not end the
/// session: a GET the browser does not mark as same-origin gets a page with a button, a
/// cross-site POST is refused. The button's POST, from the site itself, signs out.
#[tokio::test(flavor = "multi_thread")]
async fn another_site_cannot_sign_the_user_out() {
    let w = World::start(|c| c, "").await;
    let mut b = Browser::new();
    b.login(&w.proxy, "alice", "/").await;
    let cookies = b.jar.header();
    let client = plain_client();
    let url = w.proxy.url("/oauth2/sign_out?rd=%2Fbye");
    for (what, headers) in [
        ("cross-site link", vec![("sec-fetch-site", "cross-site")]),
        ("sibling subdomain", vec![("sec-fetch-site", "same-site")]),
        ("a browser that says nothing", vec![]),
    ] {
        let mut req = client.get(&url).header("cookie", &cookies);
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{what}");
        assert!(
            r.headers().get("set-cookie").is_none(),
            "{what}: cookies touched"
        );
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
        let page = r.text().await.unwrap();
        assert!(
            page.contains("<form method=\"post\" action=\"/oauth2/sign_out?rd=%2Fbye\">"),
            "{what}: {page}"
        );
        assert_eq!(b.api(&w.proxy.url("/")).await.status(), 200, "{what}");
    }
    for (what, header) in [
        ("cross-site form", ("sec-fetch-site", "cross-site")),
        ("foreign Origin", ("origin", "https://evil.example")),
    ] {
        let r = client
            .post(&url)
            .header("cookie", &cookies)
            .header(header.0, header.1)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{what}");
        assert!(r.headers().get("set-cookie").is_none(), "{what}");
        assert_eq!(b.api(&w.proxy.url("/")).await.status(), 200, "{what}");
    }
    // The confirmation button: a POST from the site's own page.
    let origin = w.proxy.url("");
    let r = client
        .post(&url)
        .header("cookie", &cookies)
        .header("origin", origin.trim_end_matches('/'))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(r.headers().get("set-cookie").is_some());
    let to = sign_out_destination(r).await.unwrap();
    assert!(to.starts_with(w.idp.issuer()), "{to}");
    // Other methods are not sign-out.
    let r = client.delete(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_answers_202_with_identity_or_401() {
    let w = World::start(|c| c, "").await;
    let mut b = Browser::new();
    let r = b.api(&w.proxy.url("/oauth2/auth")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    b.login(&w.proxy, "alice", "/").await;
    let r = b.api(&w.proxy.url("/oauth2/auth")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let h = r.headers();
    assert_eq!(h["x-auth-request-user"], "alice");
    assert_eq!(h["x-auth-request-email"], "alice@example.com");
    assert_eq!(h["x-auth-request-groups"], "sre,dev");
    assert_eq!(h["x-auth-request-preferred-username"], "alice");
    let info: serde_json::Value = b
        .api(&w.proxy.url("/oauth2/userinfo"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["user"], "alice");
    let text = info.to_string();
    assert!(
        !text.contains("token"),
        "userinfo must not expose tokens: {text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_logins_in_two_tabs_both_succeed() {
    let w = World::start(|c| c, "").await;
    let mut b = Browser::new();
    let first = b.begin_login(&w.proxy, "/tab-one").await;
    let second = b.begin_login(&w.proxy, "/tab-two").await;
    assert_eq!(
        b.jar
            .cookies
            .keys()
            .filter(|k| k.contains("_flow_"))
            .count(),
        2
    );
    // Finish in the opposite order.
    let cb2 = b.submit_credentials(&second, "alice", "alice").await;
    let cb1 = b.submit_credentials(&first, "alice", "alice").await;
    let r2 = b.callback(&cb2).await;
    assert_eq!(location(&r2), "/tab-two");
    let r1 = b.callback(&cb1).await;
    assert_eq!(location(&r1), "/tab-one");
}

#[tokio::test(flavor = "multi_thread")]
async fn unsafe_return_targets_fall_back_to_the_root() {
    let w = World::start(|c| c, "").await;
    for rd in [
        "https%3A%2F%2Fevil.example%2F",
        "%2F%2Fevil.example",
        "%2F%5Cevil.example",
        "javascript%3Aalert(1)",
        "%2Foauth2%2Fstart",
        "%2Foauth2%2Fcallback%3Fcode%3Dx",
    ] {
        let mut b = Browser::new();
        let r = b
            .get(
                &w.proxy.url(&format!("/oauth2/start?rd={rd}")),
                BROWSER_ACCEPT,
            )
            .await;
        let authorize = location(&r);
        let cb = b.submit_credentials(&authorize, "alice", "alice").await;
        let r = b.callback(&cb).await;
        assert_eq!(location(&r), "/", "rd={rd}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_reports_503_until_the_provider_appears() {
    let port = free_port();
    let idp_port = free_port();
    let echo = start_echo().await;
    let issuer = format!("http://127.0.0.1:{idp_port}");
    let proxy = Proxy::start(
        port,
        &config(port, &issuer, &format!("http://{}", echo.addr()), ""),
    )
    .await;
    let client = plain_client();
    let r = client.get(proxy.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.text().await.unwrap().contains("not ready"));
    // A login attempt meanwhile gets a clear 503 page, not a hang or a 500.
    let r = client
        .get(proxy.url("/oauth2/start"))
        .header("accept", BROWSER_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", idp_port))
        .await
        .unwrap();
    let idp = start_idp_on(listener, idp_config(port)).await;
    proxy.wait_ready().await;
    let mut b = Browser::new();
    assert_eq!(b.login(&proxy, "alice", "/").await, "/");
    drop(idp);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idp_outage_degrades_ready_and_new_logins_while_sessions_keep_working() {
    let port = free_port();
    let idp_port = free_port();
    let echo = start_echo().await;
    let issuer = format!("http://127.0.0.1:{idp_port}");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", idp_port))
        .await
        .unwrap();
    let idp = start_idp_on(listener, idp_config(port)).await;
    let toml = config(port, &issuer, &format!("http://{}", echo.addr()), "").replacen(
        "[oidc]\n",
        "[oidc]\nhealth_check_interval = \"1s\"\n",
        1,
    );
    let proxy = Proxy::start(port, &toml).await;
    proxy.wait_ready().await;
    let mut alice = Browser::new();
    assert_eq!(alice.login(&proxy, "alice", "/").await, "/");

    drop(idp);
    let client = plain_client();
    let ready = proxy.url("/ready");
    let ready_says = |prefix: &'static str| {
        let (client, ready) = (client.clone(), ready.clone());
        async move {
            match client.get(&ready).send().await {
                Ok(r) if r.status() == StatusCode::OK => {
                    r.text().await.is_ok_and(|t| t.starts_with(prefix))
                }
                _ => false,
            }
        }
    };
    wait_until("/ready to report degraded", Duration::from_secs(10), || {
        ready_says("degraded")
    })
    .await;
    // Signed in before the outage: still served.
    let r = alice.api(&proxy.url("/during-outage")).await;
    assert_eq!(r.status(), StatusCode::OK);
    // A new sign-in gets a page that says so, not a redirect to a dead provider.
    let r = client
        .get(proxy.url("/oauth2/start"))
        .header("accept", BROWSER_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "5");

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", idp_port))
        .await
        .unwrap();
    let idp = start_idp_on(listener, idp_config(port)).await;
    wait_until("/ready to report OK again", Duration::from_secs(10), || {
        ready_says("OK")
    })
    .await;
    let mut bob = Browser::new();
    assert_eq!(bob.login(&proxy, "bob", "/after").await, "/after");
    drop(idp);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_host_name_is_resolved_and_an_unresolvable_one_is_a_502() {
    let echo = start_echo().await;
    let public = "[[routes]]\npath = \"/\"\npolicy = \"public\"\n";
    let issuer = format!("http://127.0.0.1:{}", free_port());
    let by_name = format!("http://localhost:{}", echo.addr().port());
    for (upstream, expected) in [
        (by_name.as_str(), StatusCode::OK),
        // `.invalid` never resolves (RFC 6761): a clear 502, never a crash.
        ("http://upstream.invalid:8080", StatusCode::BAD_GATEWAY),
    ] {
        let port = free_port();
        let proxy = Proxy::start(port, &config(port, &issuer, upstream, public)).await;
        let r = plain_client().get(proxy.url("/x")).send().await.unwrap();
        assert_eq!(r.status(), expected, "{upstream}");
        // And the proxy is still there for the next request.
        let r = plain_client().get(proxy.url("/ping")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{upstream}\n{}", proxy.log());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_strict_cookies_the_callback_continues_with_a_page_of_its_own() {
    let w = World::start_with(|c| c, |t| session_option(t, "same_site = \"strict\"")).await;
    let mut b = Browser::new();
    let authorize = b.begin_login(&w.proxy, "/deep?a=1&b=2").await;
    let cb = b.submit_credentials(&authorize, "alice", "alice").await;
    let r = b.callback(&cb).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let page = r.text().await.unwrap();
    assert!(
        page.contains("content=\"0;url=/deep?a=1&amp;b=2\""),
        "{page}"
    );
    assert!(b.jar.cookies.contains_key("_portcullis"), "{cookie}");
    assert_eq!(
        b.api(&w.proxy.url("/deep?a=1&b=2")).await.status(),
        StatusCode::OK
    );
}

/// A callback's code exchange speaks for one browser, not for the provider: a crafted `code`
/// that a WAF in front of the provider answers with an HTML 413 page fails that callback only.
/// `/ready` stays OK and everyone else can still sign in (before, one such request every
/// health interval switched sign-in off for everybody).
#[tokio::test(flavor = "multi_thread")]
async fn a_crafted_code_that_the_providers_waf_refuses_does_not_take_sign_in_down() {
    let port = free_port();
    let waf_port = free_port();
    let echo = start_echo().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let idp_addr = listener.local_addr().unwrap();
    // The provider as browsers and portcullis see it: behind nginx, which refuses bodies over
    // 2 KiB with its own HTML page (a WAF or a load balancer does the same).
    let issuer = format!("http://127.0.0.1:{waf_port}");
    let idp =
        portcullis::demo::DevIdp::start_with_issuer(listener, idp_config(port), issuer.clone())
            .await
            .unwrap();
    let waf = Nginx::start(
        &format!(
            "server {{ listen 127.0.0.1:{waf_port}; client_max_body_size 2k;\n\
             location / {{ proxy_pass http://{idp_addr}; proxy_set_header Host $http_host; }} }}"
        ),
        &format!("{issuer}/.well-known/openid-configuration"),
    )
    .await;
    let toml = config(port, &issuer, &format!("http://{}", echo.addr()), "");
    let proxy = Proxy::start(port, &toml).await;
    proxy.wait_ready().await;

    let client = plain_client();
    let ready = || async { client.get(proxy.url("/ready")).send().await.unwrap() };
    for attempt in 0..3 {
        let mut mallory = Browser::new();
        let authorize = mallory.start_login(&proxy, "/").await;
        let state = url::Url::parse(&authorize)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        let code = "A".repeat(4000);
        let r = mallory
            .callback(&proxy.url(&format!(
                "/oauth2/callback?code={code}&state={state}&iss={}",
                url::form_urlencoded::byte_serialize(issuer.as_bytes()).collect::<String>()
            )))
            .await;
        // The exchange failed: this browser's sign-in fails, with a page saying so.
        assert!(
            !r.status().is_success() && !r.status().is_redirection(),
            "{}",
            r.status()
        );
        let r = ready().await;
        assert_eq!(r.status(), StatusCode::OK);
        let text = r.text().await.unwrap();
        assert!(
            text.starts_with("OK"),
            "attempt {attempt}: /ready says {text:?}"
        );
    }
    // Sign-in still works for everyone else, at once.
    let mut alice = Browser::new();
    assert_eq!(alice.login(&proxy, "alice", "/after").await, "/after");
    drop((waf, idp));
}

/// Only the provider's GET completes a login: a HEAD to the callback URL (a link checker, a
/// prefetch) gets 405 and leaves the flow for the real GET.
#[tokio::test(flavor = "multi_thread")]
async fn only_a_get_completes_a_login_at_the_callback() {
    let w = World::start(|c| c, "").await;
    let mut b = Browser::new();
    let authorize = b.begin_login(&w.proxy, "/landing").await;
    let cb = b.submit_credentials(&authorize, "alice", "alice").await;
    for method in [reqwest::Method::HEAD, reqwest::Method::POST] {
        let r = plain_client()
            .request(method.clone(), &cb)
            .header("cookie", b.jar.header())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert!(r.headers().get("set-cookie").is_none(), "{method}");
    }
    let r = b.callback(&cb).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(location(&r), "/landing");
    assert_eq!(w.idp.stats().authorization_code_grants, 1);
}
