//! A drop-in for oauth2-proxy behind nginx: oauth2-proxy's own documented nginx snippet (its
//! `auth_request` integration page) and ingress-nginx's rendering of an `auth-url` with
//! `?allowed_groups=`, run against real nginx with only addresses changed. Where the snippet
//! writes `$host`, the test writes `$http_host`: nginx listens on a port of its own here, and
//! `$host` drops it.

use reqwest::StatusCode;

use crate::support::*;

/// oauth2-proxy's documented locations, the application's `location /` with its current
/// `@oauth2_signin` pattern, `/classic/` with the older `error_page 401 = /oauth2/sign_in`,
/// and two locations as ingress-nginx renders `auth-url: …/oauth2/auth?allowed_groups=…`.
fn site(nginx: u16, proxy: u16, backend: &str) -> String {
    let gate = |name: &str, groups: &str| {
        format!(
            r#"
  location /{name}/ {{
    auth_request /_external-auth-{name};
    error_page 401 = @oauth2_signin;
    auth_request_set $user $upstream_http_x_auth_request_user;
    proxy_set_header X-User $user;
    proxy_pass http://backend/;
  }}
  location = /_external-auth-{name} {{
    internal;
    proxy_pass_request_body off;
    proxy_set_header Content-Length "";
    proxy_set_header Host $http_host;
    proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
    proxy_set_header X-Original-Method $request_method;
    proxy_set_header X-Sent-From "nginx-ingress-controller";
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Auth-Request-Redirect $request_uri;
    set $target http://127.0.0.1:{proxy}/oauth2/auth?allowed_groups={groups};
    proxy_pass $target;
  }}"#
        )
    };
    format!(
        r#"
upstream backend {{ server {backend}; }}
server {{
  listen 127.0.0.1:{nginx};
  server_name 127.0.0.1;

  location /oauth2/ {{
    proxy_pass       http://127.0.0.1:{proxy};
    proxy_set_header Host                    $http_host;
    proxy_set_header X-Real-IP               $remote_addr;
    proxy_set_header X-Auth-Request-Redirect $request_uri;
  }}
  location = /oauth2/auth {{
    proxy_pass       http://127.0.0.1:{proxy};
    proxy_set_header Host             $http_host;
    proxy_set_header X-Real-IP        $remote_addr;
    proxy_set_header X-Forwarded-Uri  $request_uri;
    # nginx auth_request includes headers but not body
    proxy_set_header Content-Length   "";
    proxy_pass_request_body           off;
  }}

  location / {{
    auth_request /oauth2/auth;
    error_page 401 = @oauth2_signin;

    auth_request_set $user   $upstream_http_x_auth_request_user;
    auth_request_set $email  $upstream_http_x_auth_request_email;
    proxy_set_header X-User  $user;
    proxy_set_header X-Email $email;

    auth_request_set $auth_cookie $upstream_http_set_cookie;
    add_header Set-Cookie $auth_cookie;

    proxy_pass http://backend/;
  }}

  location /classic/ {{
    auth_request /oauth2/auth;
    error_page 401 = /oauth2/sign_in;
    proxy_pass http://backend/;
  }}

  location @oauth2_signin {{
    return 302 /oauth2/sign_in?rd=$scheme://$http_host$request_uri;
  }}
{sre}
{admins}
}}
"#,
        sre = gate("sre", "sre"),
        admins = gate("admins", "admins"),
    )
}

/// The `/oauth2/start?…` link of a sign-in page.
fn start_link(page: &str) -> String {
    let at = page.find("href=\"").expect("a link") + 6;
    let end = page[at..].find('"').expect("closing quote") + at;
    unescape_html(&page[at..end])
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth2_proxys_nginx_snippet_and_ingress_restrictions_work_unchanged() {
    let nginx_port = free_port();
    let proxy_port = free_port();
    let origin = format!("http://127.0.0.1:{nginx_port}");
    let idp = start_idp(idp_config(nginx_port)).await;
    let echo = start_echo().await;
    // The provider sends browsers back through nginx: redirect_url names nginx's port.
    let toml = config(
        nginx_port,
        idp.issuer(),
        &format!("http://{}", echo.addr()),
        "",
    )
    .replacen(
        &format!("listen = \"127.0.0.1:{nginx_port}\""),
        &format!("listen = \"127.0.0.1:{proxy_port}\"\ntrusted_proxies = [\"127.0.0.1\"]"),
        1,
    ) + "\n[redirects]\nallowed_domains = [\"127.0.0.1\"]\n";
    let proxy = Proxy::start(proxy_port, &toml).await;
    proxy.wait_ready().await;
    let _nginx = Nginx::start(
        &site(nginx_port, proxy_port, &echo.addr().to_string()),
        &format!("{origin}/oauth2/sign_in"),
    )
    .await;

    // The current snippet: 401 → @oauth2_signin → /oauth2/sign_in?rd=<the page> → the
    // provider → back to the page, with the identity nginx passes on.
    let mut alice = Browser::new();
    let page = format!("{origin}/app/report?q=1");
    let r = alice.get(&page, BROWSER_ACCEPT).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let sign_in = location(&r);
    assert!(
        sign_in.starts_with(&format!("{origin}/oauth2/sign_in?rd=")),
        "{sign_in}"
    );
    let r = alice.get(&sign_in, BROWSER_ACCEPT).await;
    assert_eq!(r.status(), StatusCode::OK, "oauth2-proxy's sign-in page");
    let start = start_link(&r.text().await.unwrap());
    assert!(start.starts_with("/oauth2/start?rd="), "{start}");
    let r = alice.get(&format!("{origin}{start}"), BROWSER_ACCEPT).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let callback = alice
        .submit_credentials(&location(&r), "alice", "alice")
        .await;
    let r = alice.callback(&callback).await;
    assert_eq!(location(&r), page, "back to the page that was asked for");
    let r = alice.get(&page, "application/json").await;
    assert_eq!(r.status(), StatusCode::OK);
    let echoed = Echoed::from(r).await;
    assert_eq!(echoed.all("x-user"), ["alice"]);

    // ingress-nginx's per-Ingress restriction: alice is in `sre`, not in `admins`.
    let r = alice
        .get(&format!("{origin}/sre/x"), "application/json")
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = alice
        .get(&format!("{origin}/admins/x"), "application/json")
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The access-log line is written once the answer has gone out.
    wait_until(
        "the refusal's reason in the access log",
        std::time::Duration::from_secs(10),
        || async { proxy.log().contains("allowed_groups") },
    )
    .await;

    // The older snippet: `error_page 401 = /oauth2/sign_in` serves the sign-in page in place,
    // and the way back comes from X-Auth-Request-Redirect.
    let mut bob = Browser::new();
    let r = bob
        .get(&format!("{origin}/classic/deep?x=1"), BROWSER_ACCEPT)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let start = start_link(&r.text().await.unwrap());
    assert_eq!(start, "/oauth2/start?rd=%2Fclassic%2Fdeep%3Fx%3D1");
    // A program gets the 401 it can act on, not a page.
    let r = plain_client()
        .get(format!("{origin}/classic/deep"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// oauth2-proxy answers `/robots.txt` itself. Here a crawler the routes refuse is told to stay
/// away instead of being sent to log in; a signed-in user, or anyone on a public route, gets
/// the application's own file.
#[tokio::test(flavor = "multi_thread")]
async fn robots_txt_keeps_crawlers_out_without_hiding_the_applications_own() {
    let w = World::start(|c| c, "").await;
    let robots = w.proxy.url("/robots.txt");
    for accept in [BROWSER_ACCEPT, "*/*"] {
        let r = plain_client()
            .get(&robots)
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.text().await.unwrap(), "User-agent: *\nDisallow: /\n");
    }
    let mut alice = Browser::new();
    alice.login(&w.proxy, "alice", "/").await;
    let r = alice.api(&robots).await;
    assert_eq!(Echoed::from(r).await.all("x-forwarded-user"), ["alice"]);

    let public = World::start(
        |c| c,
        "[[routes]]\npath = \"/robots.txt\"\nexact = true\npolicy = \"public\"\n",
    )
    .await;
    let r = plain_client()
        .get(public.proxy.url("/robots.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.text().await.unwrap().contains("\"uri\""),
        "the echo answered"
    );
}
