//! Per-route policy from the outside: the path-confusion corpus against a public prefix, group
//! and email rules (route and global), route precedence and methods, the same policy through
//! forward auth, and a session cookie replayed from a Python script.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::*;
use portcullis::demo::{DevIdpConfig, DevUser};
use reqwest::header::{ACCEPT, CONTENT_TYPE, COOKIE};
use reqwest::StatusCode;

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/corpus/path-confusion.txt"
);

const PUBLIC_ROUTE: &str = r#"
[[routes]]
path = "/public/"
policy = "public"
"#;

/// Sends `GET <target> HTTP/1.1` with `target` exactly as given, anonymously; returns the
/// status (`None` when no status line came back) and everything the proxy sent.
async fn raw_get(port: u16, target: &[u8]) -> (Option<u16>, String) {
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(target);
    request.extend_from_slice(
        format!(" HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let (status, text, closed) = raw_exchange(port, &request, Duration::from_secs(20)).await;
    assert!(
        closed,
        "no end of response within 20s for {:?}",
        String::from_utf8_lossy(target)
    );
    (status, text)
}

/// What only the echo upstream ever answers with (JSON for programs, a page for browsers).
fn from_upstream(response: &str) -> bool {
    response.contains("\"body_len\"")
        || response.contains("\"headers\"")
        || response.contains("portcullis demo upstream")
}

/// The access-log lines of the proxy whose request was let through to the upstream.
fn forwarded_log_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            ["public", "cookie", "bearer"]
                .iter()
                .any(|o| l.contains(&format!("\"outcome\":\"{o}\"")))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_path_confusion_line_reaches_the_upstream_anonymously() {
    let w = World::start(|c| c, PUBLIC_ROUTE).await;
    let corpus = std::fs::read(CORPUS).unwrap_or_else(|e| panic!("{CORPUS}: {e}"));

    let mut distribution: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut total = 0;
    for (n, line) in corpus.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        total += 1;
        let (status, response) = raw_get(w.proxy.port, line).await;
        let key = match status {
            Some(400) if response.contains("ambiguous path refused") => "400 ambiguous path".into(),
            Some(s) => s.to_string(),
            None => "no response".into(),
        };
        *distribution.entry(key).or_default() += 1;
        let leaked = from_upstream(&response);
        if leaked || !matches!(status, Some(400 | 401 | 302 | 403)) {
            failures.push(format!(
                "line {}: {:?} -> {}{}",
                n + 1,
                String::from_utf8_lossy(line),
                response.lines().next().unwrap_or("(nothing)"),
                if leaked { " [UPSTREAM BODY]" } else { "" }
            ));
        }
    }
    eprintln!("path-confusion.txt: {total} lines, status distribution {distribution:?}");
    assert!(total > 40, "the corpus looks truncated: {total} lines");
    assert!(
        failures.is_empty(),
        "{} of {total} corpus lines broke the oracle (status distribution {distribution:?}):\n{}\n\
         forwarded according to the proxy log:\n{}",
        failures.len(),
        failures.join("\n"),
        forwarded_log_lines(&w.proxy.log()).join("\n")
    );
    // The proxy's own account agrees: nothing was let through. (Log lines are written after
    // the response, so this can only miss a late line, never invent one.)
    let log = w.proxy.log();
    let forwarded = forwarded_log_lines(&log);
    assert!(
        forwarded.is_empty(),
        "the proxy logged corpus requests as forwarded (distribution {distribution:?}):\n{}",
        forwarded.join("\n")
    );

    // Controls: the public subtree itself is served anonymously, and the raw client above
    // does recognise an upstream answer when it gets one.
    let (status, response) = raw_get(w.proxy.port, b"/public/ok.css").await;
    assert_eq!(status, Some(200), "{response}");
    assert!(from_upstream(&response), "{response}");

    let client = plain_client();
    let r = client
        .get(w.proxy.url("/public/ok.css"))
        .header("x-forwarded-user", "mallory")
        .header("X_Forwarded_User", "mallory")
        .header("x-forwarded-email", "mallory@company.com")
        .header("x-forwarded-groups", "sre")
        .header("remote-user", "mallory")
        .header("x-auth-request-user", "mallory")
        .send()
        .await
        .expect("request");
    let seen = Echoed::from(r).await;
    assert!(seen.uri.starts_with("/public/ok.css"), "{}", seen.uri);
    for name in [
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-groups",
        "remote-user",
        "x-auth-request-user",
    ] {
        assert!(
            seen.all(name).is_empty(),
            "{name} reached the upstream on a public route: {:?}",
            seen.all(name)
        );
    }
    for (name, value) in &seen.headers {
        assert!(
            !value.contains("mallory"),
            "{name}: {value} reached upstream"
        );
    }

    let r = client.get(w.proxy.url("/public")).send().await.unwrap();
    assert_eq!(Echoed::from(r).await.uri, "/public");

    let r = client
        .get(w.proxy.url("/publicity"))
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = r.json().await.expect("401 json");
    assert_eq!(body["error"], "unauthorized");
}

fn user(name: &str, email: &str, email_verified: bool, groups: &[&str]) -> DevUser {
    DevUser {
        username: name.to_owned(),
        // `Browser::login` types the username as the password.
        password: name.to_owned(),
        email: email.to_owned(),
        email_verified,
        name: name.to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
    }
}

fn rule_users(c: DevIdpConfig) -> DevIdpConfig {
    DevIdpConfig {
        users: vec![
            user("alice", "alice@company.com", true, &["sre", "dev"]),
            user("bob", "bob@company.com", true, &["dev"]),
            user("carol", "carol@sub.company.com", true, &[]),
            user("mallory", "a@evil.com@company.com", true, &[]),
            user("eve", "eve@company.com", false, &[]),
            user("dave", "dave@evilcompany.com", true, &[]),
        ],
        ..c
    }
}

const RULE_ROUTES: &str = r#"
[[routes]]
path = "/ops"
groups = ["sre"]

[[routes]]
path = "/staff"
email_domains = ["company.com"]

[[routes]]
path = "/subs"
email_domains = [".company.com"]

[[routes]]
path = "/alice-only"
emails = ["alice@company.com"]
"#;

const RULE_PATHS: [&str; 7] = [
    "/",
    "/ops",
    "/ops/deep/x",
    "/staff",
    "/subs/x",
    "/alice-only",
    // Decodes to `/ops`: the same rule applies.
    "/%6fps/x",
];

/// Checks one user's access to one path, both as a page navigation and as an API call;
/// describes every mismatch.
async fn check_access(
    b: &mut Browser,
    proxy: &Proxy,
    who: &str,
    path: &str,
    allowed: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let url = proxy.url(path);

    let r = b.get(&url, BROWSER_ACCEPT).await;
    let status = r.status();
    let content_type = r
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = r.text().await.unwrap_or_default();
    if allowed {
        if status != StatusCode::OK || !from_upstream(&body) {
            problems.push(format!("{who} {path} (browser): {status}, expected 200"));
        }
    } else if status != StatusCode::FORBIDDEN
        || !content_type.starts_with("text/html")
        || !body.contains("Access denied")
        || from_upstream(&body)
    {
        problems.push(format!(
            "{who} {path} (browser): {status} {content_type}, expected 403 page: {body:.200}"
        ));
    }

    let r = b.api(&url).await;
    let status = r.status();
    let content_type = r
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = r.text().await.unwrap_or_default();
    if allowed {
        let user = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v["headers"].as_array().and_then(|hs| {
                    hs.iter()
                        .find(|h| h[0] == "x-forwarded-user")
                        .and_then(|h| h[1].as_str().map(str::to_owned))
                })
            });
        if status != StatusCode::OK || user.as_deref() != Some(who) {
            problems.push(format!(
                "{who} {path} (api): {status}, user {user:?}, expected 200 as {who}"
            ));
        }
    } else {
        let error = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned));
        if status != StatusCode::FORBIDDEN
            || !content_type.starts_with("application/json")
            || error.as_deref() != Some("forbidden")
            || from_upstream(&body)
        {
            problems.push(format!(
                "{who} {path} (api): {status} {content_type}, expected 403 json: {body:.200}"
            ));
        }
    }
    problems
}

/// Logs each user in and checks the whole matrix; reports every mismatch at once.
async fn check_matrix(w: &World, matrix: &[(&str, [bool; 7])]) -> Vec<Browser> {
    let mut problems = Vec::new();
    let mut browsers = Vec::new();
    for (who, row) in matrix {
        let mut b = Browser::new();
        b.login(&w.proxy, who, "/").await;
        for (path, allowed) in RULE_PATHS.iter().zip(row) {
            problems.extend(check_access(&mut b, &w.proxy, who, path, *allowed).await);
        }
        browsers.push(b);
    }
    assert!(
        problems.is_empty(),
        "{} mismatches:\n{}\nproxy log:\n{}",
        problems.len(),
        problems.join("\n"),
        w.proxy
            .log()
            .lines()
            .filter(|l| l.contains("\"outcome\""))
            .collect::<Vec<_>>()
            .join("\n")
    );
    browsers
}

#[tokio::test(flavor = "multi_thread")]
async fn group_and_email_rules_decide_per_route() {
    let w = World::start(rule_users, RULE_ROUTES).await;
    const T: bool = true;
    const F: bool = false;
    //                      /  /ops  /ops/deep/x  /staff  /subs/x  /alice-only  /%6fps/x
    let browsers = check_matrix(
        &w,
        &[
            ("alice", [T, T, T, T, F, T, T]),
            ("bob", [T, F, F, T, F, F, F]),
            // A subdomain address: only the `.company.com` rule takes it.
            ("carol", [T, F, F, F, T, F, F]),
            // Two `@`: no usable email at all, so no email rule matches.
            ("mallory", [T, F, F, F, F, F, F]),
            // `email_verified: false`: the address does not count.
            ("eve", [T, F, F, F, F, F, F]),
            // `evilcompany.com` is neither `company.com` nor below it.
            ("dave", [T, F, F, F, F, F, F]),
        ],
    )
    .await;

    // What the upstream learns of each: only addresses a rule could rely on.
    let names = ["alice", "bob", "carol", "mallory", "eve", "dave"];
    let emails: [&[&str]; 6] = [
        &["alice@company.com"],
        &["bob@company.com"],
        &["carol@sub.company.com"],
        &[],
        &[],
        &["dave@evilcompany.com"],
    ];
    for ((mut b, who), email) in browsers.into_iter().zip(names).zip(emails) {
        let seen = Echoed::from(b.api(&w.proxy.url("/")).await).await;
        assert_eq!(seen.all("x-forwarded-user"), [who]);
        assert_eq!(seen.all("x-forwarded-email"), email, "{who}");
    }

    // A route is a subtree at a segment boundary: `/opsx` is not `/ops`.
    let mut bob = Browser::new();
    bob.login(&w.proxy, "bob", "/").await;
    let seen = Echoed::from(bob.api(&w.proxy.url("/opsx")).await).await;
    assert_eq!(seen.all("x-forwarded-user"), ["bob"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_global_authorization_table_applies_to_every_path() {
    let extra =
        format!("{RULE_ROUTES}\n[authorization]\nallowed_email_domains = [\"company.com\"]\n");
    let w = World::start(rule_users, &extra).await;
    const T: bool = true;
    const F: bool = false;
    //                      /  /ops  /ops/deep/x  /staff  /subs/x  /alice-only  /%6fps/x
    check_matrix(
        &w,
        &[
            ("alice", [T, T, T, T, F, T, T]),
            ("bob", [T, F, F, T, F, F, F]),
            // Global and route rules AND: carol's subdomain fails the global exact domain.
            ("carol", [F, F, F, F, F, F, F]),
            ("mallory", [F, F, F, F, F, F, F]),
            ("eve", [F, F, F, F, F, F, F]),
            ("dave", [F, F, F, F, F, F, F]),
        ],
    )
    .await;

    // Public routes stay public: global rules apply to authenticated requests only.
    let w2 = World::start(rule_users, &format!("{extra}{PUBLIC_ROUTE}")).await;
    let r = plain_client()
        .get(w2.proxy.url("/public/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut dave = Browser::new();
    dave.login(&w2.proxy, "dave", "/").await;
    let seen = Echoed::from(dave.api(&w2.proxy.url("/public/x")).await).await;
    assert!(seen.all("x-forwarded-user").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_most_specific_route_wins_and_methods_narrow_a_route() {
    let w = World::start(
        |c| c,
        r#"
[[routes]]
path = "/api"

[[routes]]
path = "/api/health"
exact = true
policy = "public"

[[routes]]
path = "/hooks"
methods = ["POST"]
policy = "public"
"#,
    )
    .await;
    let client = plain_client();
    let anonymous = |method: reqwest::Method, path: &str| {
        client
            .request(method, w.proxy.url(path))
            .header(ACCEPT, "application/json")
            .send()
    };

    // An exact route covers its trailing-slash twin too (many frameworks serve the same page).
    for path in ["/api/health", "/api/health?verbose=1", "/api/health/"] {
        let r = anonymous(reqwest::Method::GET, path).await.unwrap();
        assert_eq!(Echoed::from(r).await.uri, path);
    }
    // Everything else under /api falls to the /api route.
    for path in ["/api/health/x", "/api/x", "/api", "/api/healthz"] {
        let r = anonymous(reqwest::Method::GET, path).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body: serde_json::Value = r.json().await.expect("401 json");
        assert_eq!(body["error"], "unauthorized", "{path}");
    }

    // Methods: the public route covers POST only; GET falls back to the default (closed).
    for path in ["/hooks", "/hooks/github"] {
        let r = client
            .post(w.proxy.url(path))
            .header(ACCEPT, "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let seen = Echoed::from(r).await;
        assert_eq!(seen.uri, path);
        for method in [reqwest::Method::GET, reqwest::Method::PUT] {
            let r = anonymous(method.clone(), path).await.unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        }
    }
}

/// Asks `/oauth2/auth` about an original request described by `headers`.
async fn forward_auth(
    proxy: &Proxy,
    session: Option<&Browser>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = plain_client().get(proxy.url("/oauth2/auth"));
    if let Some(b) = session {
        req = req.header(COOKIE, b.jar.header());
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.expect("/oauth2/auth")
}

fn auth_user(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get("x-auth-request-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

const FORWARD_AUTH_ROUTES: &str = r#"
[[routes]]
path = "/ops"
groups = ["sre"]

[[routes]]
path = "/public/"
policy = "public"

[[routes]]
path = "/hooks"
methods = ["POST"]
policy = "public"

[[routes]]
path = "/"
host = "docs.example.com"
policy = "public"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_applies_the_policy_to_the_original_request() {
    let w = World::start_with(
        |c| c,
        |toml| server_option(toml, "trusted_proxies = [\"127.0.0.1/32\"]") + FORWARD_AUTH_ROUTES,
    )
    .await;
    let p = &w.proxy;

    // Anonymous.
    let anonymous: &[(&[(&str, &str)], u16)] = &[
        (&[("x-original-uri", "/public/x")], 202),
        (&[("x-forwarded-uri", "/public/x?y=1")], 202),
        (&[("x-original-uri", "/ops/x")], 401),
        // With routes configured, no original URI means no decision: refused, never the
        // default rule.
        (&[], 403),
        // No reported method: only routes without methods apply (/hooks is POST-only).
        (&[("x-original-uri", "/hooks/x")], 401),
        (
            &[
                ("x-original-uri", "/hooks/x"),
                ("x-forwarded-method", "POST"),
            ],
            202,
        ),
        (
            &[
                ("x-original-uri", "/hooks/x"),
                ("x-forwarded-method", "GET"),
            ],
            401,
        ),
        (
            &[
                ("x-original-uri", "/x"),
                ("x-forwarded-host", "docs.example.com"),
            ],
            202,
        ),
        (
            &[
                ("x-original-uri", "/x"),
                ("x-forwarded-host", "docs.example.com:443"),
            ],
            202,
        ),
        // Hosts are virtual servers: on docs.example.com only its own routes apply, so its
        // public `/` covers /ops too; elsewhere /ops needs sre.
        (
            &[
                ("x-original-uri", "/ops/x"),
                ("x-forwarded-host", "docs.example.com"),
            ],
            202,
        ),
        (
            &[
                ("x-original-uri", "/ops/x"),
                ("x-forwarded-host", "app.example.com"),
            ],
            401,
        ),
        // Ambiguous: refused (nginx treats anything but 2xx/401/403 as an error, so 403).
        (&[("x-original-uri", "/public/../ops")], 403),
        (&[("x-original-uri", "/public/%2e%2e/ops")], 403),
        (&[("x-original-uri", "/public/..%2fops")], 403),
        (&[("x-original-uri", "/public/..;/ops")], 403),
    ];
    for &(headers, want) in anonymous {
        let r = forward_auth(p, None, headers).await;
        assert_eq!(r.status().as_u16(), want, "anonymous {headers:?}");
        assert_eq!(auth_user(&r), None, "anonymous {headers:?}");
    }

    let mut bob = Browser::new();
    bob.login(p, "bob", "/").await;
    let mut alice = Browser::new();
    alice.login(p, "alice", "/").await;

    let r = forward_auth(p, Some(&bob), &[("x-original-uri", "/ops/x")]).await;
    assert_eq!(r.status().as_u16(), 403);
    let body: serde_json::Value = r.json().await.expect("403 json");
    assert_eq!(body["error"], "forbidden");
    let r = forward_auth(p, Some(&bob), &[("x-forwarded-uri", "/app?q=1")]).await;
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(auth_user(&r).as_deref(), Some("bob"));

    let r = forward_auth(p, Some(&alice), &[("x-original-uri", "/ops/x")]).await;
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(auth_user(&r).as_deref(), Some("alice"));
    let groups = r
        .headers()
        .get("x-auth-request-groups")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(groups.split(',').any(|g| g == "sre"), "{groups}");
    // An ambiguous URI is refused whoever asks.
    for uri in ["/public/../ops", "/ops/../public/x", "//ops"] {
        let r = forward_auth(p, Some(&alice), &[("x-original-uri", uri)]).await;
        assert_eq!(r.status().as_u16(), 403, "alice {uri}");
        assert_eq!(auth_user(&r), None, "alice {uri}");
    }

    // Without trusted_proxies the same headers are ignored, and with routes configured that
    // leaves no original request to decide on: refused (403), never the default rule.
    let u = World::start(|c| c, FORWARD_AUTH_ROUTES).await;
    let ignored: &[&[(&str, &str)]] = &[
        &[("x-original-uri", "/public/x")],
        &[("x-forwarded-uri", "/public/x")],
        &[
            ("x-original-uri", "/hooks/x"),
            ("x-forwarded-method", "POST"),
        ],
        &[
            ("x-original-uri", "/x"),
            ("x-forwarded-host", "docs.example.com"),
        ],
    ];
    for headers in ignored {
        let r = forward_auth(&u.proxy, None, headers).await;
        assert_eq!(r.status().as_u16(), 403, "untrusted {headers:?}");
    }
    let mut bob = Browser::new();
    bob.login(&u.proxy, "bob", "/").await;
    let r = forward_auth(&u.proxy, Some(&bob), &[("x-original-uri", "/ops/x")]).await;
    assert_eq!(
        r.status().as_u16(),
        403,
        "untrusted: the URI is not believed, so nothing is let through"
    );
}

/// A trusted front proxy relays the client's own headers unless told otherwise: nginx's
/// `auth_request` passes every client header to `/oauth2/auth` and, with the README's
/// configuration, only overwrites `X-Original-URI`. A client-sent `X-Forwarded-Uri` or
/// `X-Forwarded-Method` then sits next to the value nginx vouches for. An original request that
/// can be read two ways must be refused, like an ambiguous path, not decided on one reading (or
/// on the default rule).
#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_refuses_an_original_request_with_two_readings() {
    let w = World::start_with(
        |c| c,
        |toml| server_option(toml, "trusted_proxies = [\"127.0.0.1/32\"]") + FORWARD_AUTH_ROUTES,
    )
    .await;
    let p = &w.proxy;
    let mut problems = Vec::new();

    // What nginx sends for an anonymous `GET /ops/secret` whose client added its own headers.
    let conflicting: &[&[(&str, &str)]] = &[
        &[
            ("x-original-uri", "/ops/secret"),
            ("x-forwarded-uri", "/public/x"),
        ],
        &[
            ("x-original-uri", "/hooks/x"),
            ("x-original-method", "GET"),
            ("x-forwarded-method", "POST"),
        ],
    ];
    for headers in conflicting {
        let r = forward_auth(p, None, headers).await;
        if !matches!(r.status().as_u16(), 401 | 403) {
            problems.push(format!("anonymous {headers:?} -> {}", r.status()));
        }
    }

    // A proxy that appends rather than replaces: two URIs, one of them the client's.
    let mut bob = Browser::new();
    bob.login(p, "bob", "/").await;
    let duplicated: &[&[(&str, &str)]] = &[
        &[("x-original-uri", "/x"), ("x-original-uri", "/ops/x")],
        &[("x-forwarded-uri", "/x"), ("x-forwarded-uri", "/ops/x")],
    ];
    for headers in duplicated {
        let r = forward_auth(p, Some(&bob), headers).await;
        if r.status().as_u16() != 403 {
            problems.push(format!("bob {headers:?} -> {}", r.status()));
        }
    }

    assert!(
        problems.is_empty(),
        "ambiguous original requests were decided on:\n{}\nproxy log:\n{}",
        problems.join("\n"),
        p.log()
            .lines()
            .filter(|l| l.contains("/oauth2/auth"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Runs `python3 args…` in the crate directory with `env`, off the async workers.
async fn python(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new("python3");
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run python3")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_cookie_replayed_from_python_reaches_the_application_as_its_user() {
    let probe = python(&["-c", "import requests"], &[]).await;
    if !probe.status.success() {
        panic!(
            "skipping: python3 cannot import `requests` ({}); install it with \
             `python3 -m pip install requests`",
            String::from_utf8_lossy(&probe.stderr).trim()
        );
    }

    let w = World::start(|c| c, "").await;
    let mut b = Browser::new();
    b.login(&w.proxy, "alice", "/").await;
    let cookie = b
        .jar
        .cookies
        .get("_portcullis")
        .cloned()
        .expect("alice's session is one unchunked cookie");

    let out = python(
        &["tests/scripts/replay_cookie.py"],
        &[
            ("PORTCULLIS_URL", w.proxy.base.as_str()),
            ("PORTCULLIS_COOKIE", cookie.as_str()),
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "replay_cookie.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let echoed: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(echoed["uri"], "/api/whoami");
    let headers = echoed["headers"].as_array().expect("echo headers");
    let values = |name: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|h| h[0] == name)
            .filter_map(|h| h[1].as_str())
            .collect()
    };
    assert_eq!(values("x-forwarded-user"), ["alice"], "{stdout}");
    assert_eq!(values("x-forwarded-email"), ["alice@example.com"]);
    // The session cookie itself is not passed on to the application.
    assert!(
        values("cookie").iter().all(|c| !c.contains("_portcullis")),
        "{stdout}"
    );

    // A cookie that is not a session: a 401, and the script says so and fails.
    let out = python(
        &["tests/scripts/replay_cookie.py"],
        &[
            ("PORTCULLIS_URL", w.proxy.base.as_str()),
            ("PORTCULLIS_COOKIE", "not-a-session"),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("401"), "{stderr}");
    assert!(out.stdout.is_empty());
}

const HOST_ROUTES: &str = r#"
[[routes]]
path = "/public/"
policy = "public"

[[routes]]
path = "/"
host = "admin.local"
groups = ["sre"]
"#;

/// Sends `head` (request line and headers, without the final empty line) from `from` and
/// returns the status and whether the echo upstream answered.
async fn raw_head_from(from: [u8; 4], port: u16, head: &str) -> (Option<u16>, bool) {
    let request = format!("{head}\r\nConnection: close\r\n\r\n");
    let (status, text, closed) = raw_exchange_from(
        from.into(),
        port,
        request.as_bytes(),
        Duration::from_secs(20),
    )
    .await;
    assert!(closed, "no end of response within 20s for {head:?}");
    (status, from_upstream(&text))
}

/// Every request names one plain host, or none only for health checks: anything else is a
/// 400 before any rule is chosen, so no upstream can read the request as another host (or
/// another path) than the one the rules were applied to. The same grammar holds for the
/// `X-Forwarded-Host` of a trusted proxy, which then names the request's host.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_is_read_as_one_plain_host_or_refused() {
    const CLIENT: [u8; 4] = [127, 0, 0, 1];
    const TRUSTED: [u8; 4] = [127, 0, 0, 2];
    let w = World::start_with(
        |c| c,
        |t| server_option(t + HOST_ROUTES, r#"trusted_proxies = ["127.0.0.2"]"#),
    )
    .await;
    let port = w.proxy.port;
    let get = |target: &str, lines: &[&str]| {
        let mut head = vec![format!("GET {target} HTTP/1.1")];
        head.extend(lines.iter().map(|l| l.to_string()));
        head.join("\r\n")
    };
    // A plain host reaches the public route; admin.local is a virtual server of its own.
    let own = format!("Host: 127.0.0.1:{port}");
    let public = raw_head_from(CLIENT, port, &get("/public/x", &[&own])).await;
    assert_eq!(public, (Some(200), true));
    for host in ["admin.local", "ADMIN.local:80", "admin.local."] {
        let line = format!("Host: {host}");
        let answer = raw_head_from(CLIENT, port, &get("/public/x", &[&line])).await;
        assert_eq!(answer, (Some(401), false), "{host}");
    }
    let mut failures = Vec::new();
    let mut expect_400 = |what: String, answer: (Option<u16>, bool)| {
        if answer != (Some(400), false) {
            failures.push(format!("{what}: {answer:?}"));
        }
    };
    for host in [
        "app/admin/secret?",
        "admin.local/",
        "admin.local?",
        "admin.local#",
        "admin.local\\",
        "admin.local,x",
        "admin.local;x",
        "admin.local\"",
        "<admin.local>",
        "user@admin.local",
        "admin.local:",
        "admin.local:99999",
        "[::1",
        "",
    ] {
        let line = format!("Host: {host}");
        for from in [CLIENT, TRUSTED] {
            let answer = raw_head_from(from, port, &get("/public/x", &[&line])).await;
            expect_400(format!("Host {host:?} from {from:?}"), answer);
        }
        // A trusted proxy's X-Forwarded-Host is held to the same grammar.
        let forwarded = format!("X-Forwarded-Host: {host}");
        let answer = raw_head_from(TRUSTED, port, &get("/public/x", &[&own, &forwarded])).await;
        expect_400(format!("X-Forwarded-Host {host:?}"), answer);
    }
    let cases: [(&str, String); 5] = [
        (
            "two Host headers",
            get("/public/x", &["Host: a.example", "Host: admin.local"]),
        ),
        ("no Host (HTTP/1.1)", get("/public/x", &[])),
        ("no Host (HTTP/1.0)", "GET /public/x HTTP/1.0".into()),
        (
            "an absolute target naming another host",
            get("http://admin.local/public/x", &[&own]),
        ),
        (
            "two X-Forwarded-Host from a trusted proxy",
            get(
                "/public/x",
                &[
                    &own,
                    "X-Forwarded-Host: a.example",
                    "X-Forwarded-Host: admin.local",
                ],
            ),
        ),
    ];
    for (what, head) in cases {
        let from = if what.contains("trusted") {
            TRUSTED
        } else {
            CLIENT
        };
        expect_400(what.into(), raw_head_from(from, port, &head).await);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // A trusted proxy's X-Forwarded-Host names the request's host (the routes of admin.local
    // apply); a client's means nothing and is replaced.
    let to_admin = get("/public/x", &[&own, "X-Forwarded-Host: admin.local"]);
    assert_eq!(
        raw_head_from(TRUSTED, port, &to_admin).await,
        (Some(401), false)
    );
    assert_eq!(
        raw_head_from(CLIENT, port, &to_admin).await,
        (Some(200), true)
    );
    let junk = get("/public/x", &[&own, "X-Forwarded-Host: admin.local,x"]);
    assert_eq!(raw_head_from(CLIENT, port, &junk).await, (Some(200), true));
    // Health checks need no host.
    for path in ["/ping", "/ready"] {
        let head = format!("GET {path} HTTP/1.0");
        assert_eq!(
            raw_head_from(CLIENT, port, &head).await.0,
            Some(200),
            "{path}"
        );
    }
}
