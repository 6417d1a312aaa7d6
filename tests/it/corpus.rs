//! The security corpora of `tests/corpus/` end to end, against the real binary:
//!
//! * `open-redirects.txt`: every line as the `rd` of `/oauth2/start` (carried through a real
//!   login at the dev provider to the callback's final `Location`), of `/oauth2/sign_out` (with
//!   and without provider sign-out) and as a deep link a browser is sent to log in from. Each
//!   `Location` is resolved the way a browser resolves it (WHATWG URL rules, which the `url`
//!   crate implements) and must name our own origin or an allowed domain.
//! * `header-spoofing.txt`: every name in every spelling (canonical, lower, UPPER, `_`,
//!   duplicated, padded, mixed `-`/`_`) on every kind of request; a value the client sent must
//!   never reach the upstream, nor come back in a forward-auth answer.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use url::Url;

const OPEN_REDIRECTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/corpus/open-redirects.txt"
);
const HEADER_SPOOFING: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/corpus/header-spoofing.txt"
);

/// The allow list the open-redirect corpus is written against (its README).
const ALLOWED_DOMAINS: &str = r#"
[redirects]
allowed_domains = ["foo.bar", ".bar.foo", "www.whitelisteddomain.tld"]
"#;

/// Requests in flight at once against one proxy.
const PARALLEL: usize = 16;

// ---------------------------------------------------------------------------------------------
// Open redirects
// ---------------------------------------------------------------------------------------------

/// The non-empty lines of the corpus with their line numbers (1-based).
fn redirect_corpus() -> Vec<(usize, String)> {
    let text =
        std::fs::read_to_string(OPEN_REDIRECTS).unwrap_or_else(|e| panic!("{OPEN_REDIRECTS}: {e}"));
    let lines: Vec<(usize, String)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(n, l)| (n + 1, l.to_string()))
        .collect();
    assert_eq!(lines.len(), 558, "the corpus changed or is truncated");
    lines
}

/// A line decoded once as a query value (`+` is a space, `%xx` a byte), then encoded again as
/// `application/x-www-form-urlencoded`: the proxy's `rd` is then exactly the decoded value.
fn as_rd_value(line: &str) -> String {
    let decoded: Vec<u8> =
        percent_encoding::percent_decode(line.replace('+', " ").as_bytes()).collect();
    url::form_urlencoded::byte_serialize(&decoded).collect()
}

/// The line itself as the value (`%2f` arrives as `%2f`): the payload encoded once more, for
/// an application that decodes the target again.
fn encoded(line: &str) -> String {
    url::form_urlencoded::byte_serialize(line.as_bytes()).collect()
}

/// How each line is put into `rd`: as pasted into a link, decoded, encoded twice.
const FORMS_OF_RD: usize = 3;

/// Where a `Location` header sends a browser, judged by the corpus oracle.
#[derive(Clone)]
struct Oracle {
    /// The proxy's own origin, e.g. `http://127.0.0.1:4180/`.
    home: Url,
}

impl Oracle {
    /// `Ok` when `location`, resolved against `base` (the URL that answered with it) as a
    /// browser does, names our own origin or an allowed domain; the reason otherwise.
    fn safe(&self, base: &Url, location: &str) -> Result<Url, String> {
        let resolved = base
            .join(location)
            .map_err(|e| format!("Location {location:?} does not resolve: {e}"))?;
        if !matches!(resolved.scheme(), "http" | "https") {
            return Err(format!("Location {location:?} resolves to {resolved}"));
        }
        let host = resolved.host_str().unwrap_or("");
        let ours = resolved.origin() == self.home.origin();
        let allowed = host == "foo.bar"
            || host == "www.whitelisteddomain.tld"
            || host
                .strip_suffix(".bar.foo")
                .is_some_and(|labels| !labels.is_empty() && !labels.ends_with('.'));
        if ours || allowed {
            Ok(resolved)
        } else {
            Err(format!(
                "Location {location:?} sends the browser to {resolved} (host {host:?})"
            ))
        }
    }

    /// The oracle, and beyond it: every corpus entry is refused, so the browser lands on `/`.
    fn refused(&self, base: &Url, location: &str) -> Result<(), String> {
        let resolved = self.safe(base, location)?;
        if resolved != self.home {
            return Err(format!(
                "Location {location:?} ({resolved}) was accepted; the fallback is {}",
                self.home
            ));
        }
        Ok(())
    }
}

/// A browser sharing one connection pool with the others, with its own cookie jar.
fn browser(client: &reqwest::Client) -> Browser {
    Browser {
        client: client.clone(),
        jar: Jar::default(),
    }
}

/// Follows a login that `first` (a navigation or `/oauth2/start?rd=`) begins, as alice, through
/// the dev provider; returns the callback's URL and final `Location`, `Ok(None)` when `first`
/// was refused before any login began (a 400 for an ambiguous deep link).
async fn login_from(
    client: reqwest::Client,
    first: Url,
    idp_origin: url::Origin,
    proxy_origin: url::Origin,
) -> Result<Option<(Url, String)>, String> {
    let mut b = browser(&client);
    let mut resp = b.get(first.as_str(), BROWSER_ACCEPT).await;
    let mut at = first.clone();
    if first.path() != "/oauth2/start" {
        // A deep link: a navigation is sent to `/oauth2/start?rd=...` or refused outright.
        if resp.status() != StatusCode::FOUND {
            return match resp.status().as_u16() {
                400 | 403 | 404 => Ok(None),
                s => Err(format!("deep link answered {s}")),
            };
        }
        let start = location(&resp);
        at = at
            .join(&start)
            .map_err(|e| format!("deep link redirect {start:?}: {e}"))?;
        if at.origin() != proxy_origin || at.path() != "/oauth2/start" {
            return Err(format!("deep link redirected to {at} instead of the login"));
        }
        resp = b.get(at.as_str(), BROWSER_ACCEPT).await;
    }
    if resp.status() != StatusCode::FOUND {
        return Err(format!("/oauth2/start answered {}", resp.status()));
    }
    let authorize = at
        .join(&location(&resp))
        .map_err(|e| format!("authorize URL: {e}"))?;
    if authorize.origin() != idp_origin {
        return Err(format!(
            "/oauth2/start sent the browser to {authorize}, not the provider"
        ));
    }
    let callback = b
        .submit_credentials(authorize.as_str(), "alice", "alice")
        .await;
    let callback = Url::parse(&callback).map_err(|e| format!("callback URL: {e}"))?;
    let resp = b.callback(callback.as_str()).await;
    if resp.status() != StatusCode::FOUND {
        return Err(format!("the callback answered {}", resp.status()));
    }
    if b.jar.session_names().is_empty() {
        return Err("the login set no session".into());
    }
    Ok(Some((callback, location(&resp))))
}

/// What one probe found: `Ok(true)` checked, `Ok(false)` refused before a redirect was issued.
type Probe = Result<bool, String>;
type BoxProbe = std::pin::Pin<Box<dyn std::future::Future<Output = Probe> + Send>>;

/// Runs `probes` with at most [`PARALLEL`] at once; returns (checked, refused early, failures).
async fn run_probes(probes: Vec<(String, BoxProbe)>) -> (usize, usize, Vec<String>) {
    let gate = Arc::new(Semaphore::new(PARALLEL));
    let mut set = JoinSet::new();
    for (what, probe) in probes {
        let gate = gate.clone();
        set.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore");
            (what, probe.await)
        });
    }
    let (mut checked, mut early, mut failures) = (0, 0, Vec::new());
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((_, Ok(true))) => checked += 1,
            Ok((_, Ok(false))) => early += 1,
            Ok((what, Err(why))) => failures.push(format!("{what}: {why}")),
            Err(panic) => failures.push(format!("a probe panicked: {panic}")),
        }
    }
    failures.sort();
    (checked, early, failures)
}

fn report(endpoint: &str, checked: usize, early: usize, failures: &[String], took: Duration) {
    println!(
        "{endpoint}: {checked} redirects checked, {early} refused before any redirect, {} failures, {:.1} s",
        failures.len(),
        took.as_secs_f64()
    );
}

fn assert_no_failures(endpoint: &str, failures: &[String]) {
    let count = |needle: &str| failures.iter().filter(|f| f.contains(needle)).count();
    assert!(
        failures.is_empty(),
        "{endpoint}: {} corpus probes broke the oracle ({} sent the browser to a foreign host, \
         {} to a Location a browser cannot resolve, {} were accepted (our own or an allowed host, not the fallback `/`); \
         the first 40 follow):\n{}",
        failures.len(),
        count("sends the browser to"),
        count("does not resolve"),
        count("was accepted"),
        failures
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Every line, in three forms (the raw line pasted into a link, as a browser would send it; the
/// decoded value properly encoded; the line itself as the value), through a real login: `/oauth2/start?rd=` stores the
/// target in the login cookie and the callback's `Location` must be our own `/`. Lines that are
/// paths are also tried as deep links, which the proxy itself turns into `/oauth2/start?rd=`.
#[tokio::test(flavor = "multi_thread")]
async fn no_open_redirect_after_login() {
    let w = World::start(|c| c, ALLOWED_DOMAINS).await;
    let home = Url::parse(&w.proxy.url("/")).expect("proxy URL");
    let oracle = Oracle { home: home.clone() };
    let idp_origin = Url::parse(w.idp.issuer()).expect("issuer").origin();
    let client = plain_client();
    let corpus = redirect_corpus();

    let mut probes: Vec<(String, _)> = Vec::new();
    let mut deep_links = 0;
    for (n, line) in &corpus {
        let mut firsts = vec![
            (
                "link",
                Url::parse(&w.proxy.url(&format!("/oauth2/start?rd={line}"))),
            ),
            (
                "value",
                Url::parse(
                    &w.proxy
                        .url(&format!("/oauth2/start?rd={}", as_rd_value(line))),
                ),
            ),
            (
                "encoded twice",
                Url::parse(&w.proxy.url(&format!("/oauth2/start?rd={}", encoded(line)))),
            ),
        ];
        if line.starts_with('/') {
            deep_links += 1;
            firsts.push(("deep link", Url::parse(&w.proxy.url(line))));
        }
        for (form, first) in firsts {
            let first = first.unwrap_or_else(|e| panic!("line {n} ({form}): {e}"));
            let (client, oracle, idp, ours) = (
                client.clone(),
                oracle.clone(),
                idp_origin.clone(),
                home.origin(),
            );
            let probe: BoxProbe = Box::pin(async move {
                match login_from(client, first, idp, ours).await? {
                    None => Ok(false),
                    Some((callback, loc)) => oracle.refused(&callback, &loc).map(|_| true),
                }
            });
            probes.push((format!("line {n} {line:?} ({form})"), probe));
        }
    }
    let total = probes.len();
    assert_eq!(total, FORMS_OF_RD * corpus.len() + deep_links);

    let began = Instant::now();
    let (checked, early, failures) = run_probes(probes).await;
    report(
        "redirect after login",
        checked,
        early,
        &failures,
        began.elapsed(),
    );
    assert_no_failures("redirect after login", &failures);
    // Every `/oauth2/start?rd=` probe must have gone through a whole login; only deep links
    // may be refused up front (an ambiguous path is a 400 before any login).
    assert!(
        checked >= FORMS_OF_RD * corpus.len(),
        "only {checked} of {total} logins completed ({early} refused early)"
    );
}

/// Sign-out accepts any method and an `rd`. With a provider that supports RP-initiated logout
/// the browser goes there and the target travels as `post_logout_redirect_uri`; without one
/// (the provider not loaded) it goes straight to the target. Both are checked for every line.
#[tokio::test(flavor = "multi_thread")]
async fn no_open_redirect_after_sign_out() {
    let w = World::start(|c| c, ALLOWED_DOMAINS).await;
    // A second proxy whose provider never answers: no end_session_endpoint is known, so
    // sign-out redirects to the target itself.
    let lone_port = free_port();
    let dead_issuer = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = l.local_addr().expect("addr");
        drop(l);
        format!("http://{a}")
    };
    let lone = Proxy::start(
        lone_port,
        &config(
            lone_port,
            &dead_issuer,
            &format!("http://{}", w.echo.addr()),
            ALLOWED_DOMAINS,
        ),
    )
    .await;

    let end_session = format!("{}/logout", w.idp.issuer());
    let client = plain_client();
    let corpus = redirect_corpus();
    let mut with_provider = Vec::new();
    let mut without_provider = Vec::new();
    for (n, line) in &corpus {
        for (form, rd) in [
            ("link", line.clone()),
            ("value", as_rd_value(line)),
            ("encoded twice", encoded(line)),
        ] {
            for method in ["GET", "POST"] {
                // With provider sign-out.
                let url = Url::parse(&w.proxy.url(&format!("/oauth2/sign_out?rd={rd}")))
                    .unwrap_or_else(|e| panic!("line {n}: {e}"));
                let home = Url::parse(&w.proxy.url("/")).expect("proxy URL");
                let (c, end_session) = (client.clone(), end_session.clone());
                let probe: BoxProbe = Box::pin(async move {
                    let loc = sign_out_location(&c, method, &url).await?;
                    let rest = loc
                        .strip_prefix(&format!("{end_session}?"))
                        .ok_or_else(|| {
                            format!("sign-out went to {loc:?}, not the provider's logout")
                        })?;
                    let backs: Vec<String> = url::form_urlencoded::parse(rest.as_bytes())
                        .filter(|(k, _)| k == "post_logout_redirect_uri")
                        .map(|(_, v)| v.into_owned())
                        .collect();
                    let [back] = backs.as_slice() else {
                        return Err(format!("post_logout_redirect_uri {backs:?}"));
                    };
                    Oracle { home: home.clone() }
                        .refused(&home, back)
                        .map(|_| true)
                });
                with_provider.push((format!("line {n} {line:?} ({form}, {method})"), probe));

                // Without.
                let url = Url::parse(&lone.url(&format!("/oauth2/sign_out?rd={rd}")))
                    .unwrap_or_else(|e| panic!("line {n}: {e}"));
                let home = Url::parse(&lone.url("/")).expect("proxy URL");
                let c = client.clone();
                let probe: BoxProbe = Box::pin(async move {
                    let loc = sign_out_location(&c, method, &url).await?;
                    Oracle { home }.refused(&url, &loc).map(|_| true)
                });
                without_provider.push((format!("line {n} {line:?} ({form}, {method})"), probe));
            }
        }
    }
    let expected = corpus.len() * FORMS_OF_RD * 2;
    let mut results = Vec::new();
    for (endpoint, probes) in [
        ("sign-out via the provider", with_provider),
        ("sign-out without provider logout", without_provider),
    ] {
        assert_eq!(probes.len(), expected);
        let began = Instant::now();
        let (checked, early, failures) = run_probes(probes).await;
        report(endpoint, checked, early, &failures, began.elapsed());
        results.push((endpoint, checked, failures));
    }
    for (endpoint, checked, failures) in results {
        assert_no_failures(endpoint, &failures);
        assert_eq!(checked, expected, "{endpoint}: every probe must be checked");
    }
}

/// Where a sign-out request from a page of the site sends the browser: a 302's `Location`,
/// or the provider's logout with the fields of the form posted there.
async fn sign_out_location(
    client: &reqwest::Client,
    method: &'static str,
    url: &Url,
) -> Result<String, String> {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let resp = client
        .request(method, url.clone())
        .header(reqwest::header::ACCEPT, BROWSER_ACCEPT)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .map_err(|e| format!("sign-out request: {e}"))?;
    sign_out_destination(resp).await
}

// ---------------------------------------------------------------------------------------------
// Header spoofing
// ---------------------------------------------------------------------------------------------

fn spoofing_corpus() -> Vec<String> {
    let text = std::fs::read_to_string(HEADER_SPOOFING)
        .unwrap_or_else(|e| panic!("{HEADER_SPOOFING}: {e}"));
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    assert!(names.len() >= 27, "the corpus looks truncated: {names:?}");
    names
}

/// Believed from a trusted proxy (and then forwarded as sent), replaced for anyone else.
const FORWARDING: &[&str] = &[
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-prefix",
];

/// What `/oauth2/auth` answers with when it lets a request through (the access token to
/// trusted proxies with `headers.pass_access_token`).
const FORWARD_AUTH_ANSWER: &[&str] = &[
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-groups",
    "x-auth-request-preferred-username",
    "x-auth-request-access-token",
];

/// How `/oauth2/auth` learns about the original request from a trusted proxy.
const REPORTS: &[&str] = &["x-forwarded-uri", "x-original-uri", "x-original-url"];

/// The spellings a client may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    Canonical,
    Lower,
    Upper,
    /// `X_Forwarded_User`
    Underscore,
    /// The canonical name twice, with two values.
    Duplicated,
    /// The value padded with spaces.
    Padded,
    /// The `-` and the `_` spelling side by side (one variable for CGI-style applications).
    Mixed,
}

const FORMS: &[Form] = &[
    Form::Canonical,
    Form::Lower,
    Form::Upper,
    Form::Underscore,
    Form::Duplicated,
    Form::Padded,
    Form::Mixed,
];

/// The header lines that send `name` in `form` with values containing `marker`.
fn spoof_lines(form: Form, name: &str, marker: &str) -> Vec<String> {
    spoof_lines_with(form, name, &format!("{marker}a"), &format!("{marker}b"))
}

/// The header lines that send `name` in `form` with `value` (and `second` for the second line
/// of the two-line forms).
fn spoof_lines_with(form: Form, name: &str, value: &str, second: &str) -> Vec<String> {
    let under = name.replace('-', "_");
    match form {
        Form::Canonical => vec![format!("{name}: {value}")],
        Form::Lower => vec![format!("{}: {value}", name.to_ascii_lowercase())],
        Form::Upper => vec![format!("{}: {value}", name.to_ascii_uppercase())],
        Form::Underscore => vec![format!("{under}: {value}")],
        Form::Duplicated => vec![format!("{name}: {value}"), format!("{name}: {second}")],
        Form::Padded => vec![format!("{name}:    {value}   ")],
        Form::Mixed => vec![format!("{name}: {value}"), format!("{under}: {second}")],
    }
}

/// A response read off the wire.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Everything received, for searching and for messages.
    text: String,
}

impl Raw {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The echo upstream's report of the headers it received, `None` if this is not one.
    fn echoed(&self) -> Option<Vec<(String, String)>> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        v.get("body_len")?;
        Some(
            v["headers"]
                .as_array()?
                .iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap_or("").to_string(),
                        p[1].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect(),
        )
    }
}

/// Sends `head` (request line and header lines, without the final blank line) from `from` and
/// reads the whole answer (`Connection: close`).
async fn exchange(from: Ipv4Addr, port: u16, head: &str) -> Raw {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind((from, 0).into()).expect("bind the client side");
    let mut stream = socket
        .connect((Ipv4Addr::LOCALHOST, port).into())
        .await
        .expect("connect to the proxy");
    let request = format!("{head}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut bytes))
        .await
        .expect("the answer within 20 s")
        .expect("read the answer");
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&bytes)));
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = bytes[split + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Raw {
        status,
        headers,
        text: format!("{head}\r\n\r\n{}", String::from_utf8_lossy(&body)),
        body,
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        rest = &rest[eol + 2..];
        if size == 0 || rest.len() < size {
            break;
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
    out
}

/// What a kind of request must come to.
#[derive(Clone, Copy)]
enum Expect {
    /// Forwarded; the upstream sees exactly this user (or none).
    Upstream(Option<&'static str>),
    /// Answered by the proxy with this status.
    Answer(u16),
    /// `/oauth2/auth` lets it through as this user (or as a public route).
    Allowed(Option<&'static str>),
}

struct Kind {
    what: &'static str,
    from: Ipv4Addr,
    method: &'static str,
    target: &'static str,
    /// Header lines of the legitimate request (credentials, a trusted proxy's report).
    lines: Vec<String>,
    expect: Expect,
}

const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const TRUSTED_PROXY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// A proxy with a public subtree that trusts 127.0.0.2 as its front proxy (tests connect from
/// 127.0.0.1 as a client and from 127.0.0.2 as that proxy) and passes the provider's access
/// token on; a session cookie for alice and an ID token of bob as a bearer token.
async fn spoofing_world() -> (World, String, String) {
    let w = World::start_with(
        |c| c,
        |toml| {
            server_option(toml, "trusted_proxies = [\"127.0.0.2/32\"]")
                + "\n[headers]\npass_access_token = true\n"
                + "\n[bearer]\naccept_id_tokens = true\n"
                + "\n[[routes]]\npath = \"/public/\"\npolicy = \"public\"\n"
        },
    )
    .await;
    let mut alice = Browser::new();
    let landed = alice.login(&w.proxy, "alice", "/app").await;
    assert_eq!(landed, "/app");
    let cookie = format!("Cookie: {}", alice.jar.header());
    let claims = w.idp.id_token_claims_for("bob", None).expect("bob");
    let bearer = format!("Authorization: Bearer {}", w.idp.sign_claims(&claims));
    (w, cookie, bearer)
}

/// Sends `kind` with every name of `names` spoofed in `form`; returns the failures.
async fn spoof_once(
    port: u16,
    kind: &Kind,
    names: &[String],
    form: Form,
    marker: &str,
) -> Vec<String> {
    let mut head = vec![
        format!("{} {} HTTP/1.1", kind.method, kind.target),
        format!("Host: 127.0.0.1:{port}"),
        "Accept: application/json".to_string(),
    ];
    head.extend(kind.lines.iter().cloned());
    for (i, name) in names.iter().enumerate() {
        head.extend(spoof_lines(form, name, &format!("{marker}{i}x")));
    }
    let r = exchange(kind.from, port, &head.join("\r\n")).await;
    let at = format!("{} ({form:?})", kind.what);
    let mut failures = Vec::new();
    let mut fail = |why: String| failures.push(format!("{at}: {why}"));
    let carries_marker = |s: &str| s.to_ascii_lowercase().contains(marker);
    match kind.expect {
        Expect::Upstream(user) => {
            let Some(echoed) = r.echoed().filter(|_| r.status == 200) else {
                fail(format!("not forwarded: {}", r.status));
                return failures;
            };
            for (n, v) in &echoed {
                if carries_marker(n) || carries_marker(v) {
                    fail(format!("the upstream received the client's {n}: {v:?}"));
                }
            }
            let all = |name: &str| -> Vec<&str> {
                echoed
                    .iter()
                    .filter(|(n, _)| n.replace('_', "-").eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str())
                    .collect()
            };
            // With `pass_access_token` the session's own token is set: one value, never two.
            if all("x-forwarded-access-token").len() > 1 {
                fail(format!(
                    "X-Forwarded-Access-Token {:?}",
                    all("x-forwarded-access-token")
                ));
            }
            let want: Vec<&str> = user.into_iter().collect();
            if all("x-forwarded-user") != want {
                fail(format!(
                    "X-Forwarded-User {:?}, expected {want:?}",
                    all("x-forwarded-user")
                ));
            }
            if kind.from == CLIENT {
                let host = format!("127.0.0.1:{port}");
                for (name, value) in [
                    ("x-forwarded-for", "127.0.0.1"),
                    ("x-forwarded-proto", "http"),
                    ("x-forwarded-host", host.as_str()),
                ] {
                    if all(name) != [value] {
                        fail(format!(
                            "{name} {:?}, expected the proxy's {value:?}",
                            all(name)
                        ));
                    }
                }
                if !all("x-forwarded-prefix").is_empty() {
                    fail("X-Forwarded-Prefix reached the upstream".into());
                }
            }
        }
        Expect::Answer(status) => {
            if r.status != status {
                fail(format!("answered {}, expected {status}", r.status));
            }
            if r.echoed().is_some() {
                fail("forwarded to the upstream".into());
            }
            if carries_marker(&r.text) {
                fail(format!("the answer repeats a client value:\n{}", r.text));
            }
        }
        Expect::Allowed(user) => {
            if r.status != 202 {
                fail(format!("answered {}, expected 202:\n{}", r.status, r.text));
            }
            if carries_marker(&r.text) {
                fail(format!("the answer repeats a client value:\n{}", r.text));
            }
            for name in FORWARD_AUTH_ANSWER {
                if r.header(name).len() > usize::from(user.is_some()) {
                    fail(format!("{name} {:?}", r.header(name)));
                }
            }
            let want: Vec<&str> = user.into_iter().collect();
            if r.header("x-auth-request-user") != want {
                fail(format!(
                    "X-Auth-Request-User {:?}, expected {want:?}",
                    r.header("x-auth-request-user")
                ));
            }
        }
    }
    failures
}

/// The corpus oracle on every kind of request: from a client (never trusted) every name, in
/// every form, is removed or replaced; from the trusted front proxy every identity name still
/// is (only forwarding headers and the original-request report are believed from it), and
/// `/oauth2/auth` answers with the verified identity, never a client value.
#[tokio::test(flavor = "multi_thread")]
async fn no_spoofed_header_reaches_the_upstream_or_a_forward_auth_answer() {
    let (w, cookie, bearer) = spoofing_world().await;
    let port = w.proxy.port;
    let names = spoofing_corpus();
    let preflight = vec![
        "Origin: http://app.example".to_string(),
        "Access-Control-Request-Method: POST".to_string(),
        "Access-Control-Request-Headers: x-forwarded-user, authorization".to_string(),
    ];
    let report = |uri: &str| format!("X-Forwarded-Uri: {uri}");
    let kind = |what, from, method, target, lines: Vec<String>, expect| Kind {
        what,
        from,
        method,
        target,
        lines,
        expect,
    };
    #[rustfmt::skip]
    let kinds = vec![
        kind("anonymous GET on a public route", CLIENT, "GET", "/public/page", vec![], Expect::Upstream(None)),
        kind("GET with a session cookie", CLIENT, "GET", "/app", vec![cookie.clone()], Expect::Upstream(Some("alice"))),
        kind("GET with a bearer token", CLIENT, "GET", "/app", vec![bearer.clone()], Expect::Upstream(Some("bob"))),
        kind("POST with a session cookie", CLIENT, "POST", "/app", vec![cookie.clone(), "Content-Length: 0".into()], Expect::Upstream(Some("alice"))),
        kind("OPTIONS preflight on a public route", CLIENT, "OPTIONS", "/public/api", preflight.clone(), Expect::Upstream(None)),
        // A preflight carries no credentials, so on a protected route it is refused like any
        // other anonymous API call.
        kind("OPTIONS preflight on a protected route", CLIENT, "OPTIONS", "/app", preflight.clone(), Expect::Answer(401)),
        kind("OPTIONS with a session cookie", CLIENT, "OPTIONS", "/app", vec![cookie.clone()], Expect::Upstream(Some("alice"))),
        kind("OPTIONS with a bearer token", CLIENT, "OPTIONS", "/app", vec![bearer.clone()], Expect::Upstream(Some("bob"))),
        // From a client the original-request report is not believed, and with routes
        // configured forward auth refuses rather than guess.
        kind("forward auth from a client, anonymous", CLIENT, "GET", "/oauth2/auth", vec![], Expect::Answer(403)),
        kind("forward auth from a client, session cookie", CLIENT, "GET", "/oauth2/auth", vec![cookie.clone()], Expect::Answer(403)),
        kind("forward auth from a client, bearer token", CLIENT, "GET", "/oauth2/auth", vec![bearer.clone()], Expect::Answer(403)),
        kind("/ping", CLIENT, "GET", "/ping", vec![], Expect::Answer(200)),
        kind("/ready", CLIENT, "GET", "/ready", vec![], Expect::Answer(200)),
        kind("/ping with a session cookie", CLIENT, "GET", "/ping", vec![cookie.clone()], Expect::Answer(200)),
        // Through the trusted front proxy.
        kind("trusted proxy, GET with a session cookie", TRUSTED_PROXY, "GET", "/app", vec![cookie.clone()], Expect::Upstream(Some("alice"))),
        kind("trusted proxy, anonymous GET on a public route", TRUSTED_PROXY, "GET", "/public/page", vec![], Expect::Upstream(None)),
        kind("trusted proxy, forward auth with a session cookie", TRUSTED_PROXY, "GET", "/oauth2/auth", vec![cookie.clone(), report("/app")], Expect::Allowed(Some("alice"))),
        kind("trusted proxy, forward auth with a bearer token", TRUSTED_PROXY, "GET", "/oauth2/auth", vec![bearer.clone(), report("/app")], Expect::Allowed(Some("bob"))),
        kind("trusted proxy, forward auth, anonymous on a public route", TRUSTED_PROXY, "GET", "/oauth2/auth", vec![report("/public/page")], Expect::Allowed(None)),
        kind("trusted proxy, forward auth, anonymous on a protected route", TRUSTED_PROXY, "GET", "/oauth2/auth", vec![report("/app")], Expect::Answer(401)),
    ];

    let began = Instant::now();
    let mut set = JoinSet::new();
    let mut sent = 0;
    let kinds = Arc::new(kinds);
    for k in 0..kinds.len() {
        for &form in FORMS {
            let kind = &kinds[k];
            // From the trusted proxy the forwarding headers are believed (the next test checks
            // them) and forward auth reads its report of the original request: those names
            // carry what the trusted proxy says, not a client's spoof.
            let names: Vec<String> = names
                .iter()
                .filter(|n| {
                    let n = n.to_ascii_lowercase();
                    kind.from == CLIENT
                        || !(FORWARDING.contains(&n.as_str())
                            || (matches!(kind.expect, Expect::Allowed(_) | Expect::Answer(_))
                                && REPORTS.contains(&n.as_str())))
                })
                .cloned()
                .collect();
            let marker = format!("spoof{sent}z");
            sent += 1;
            let kinds = kinds.clone();
            set.spawn(async move { spoof_once(port, &kinds[k], &names, form, &marker).await });
        }
    }
    let mut failures = Vec::new();
    while let Some(f) = set.join_next().await {
        failures.extend(f.expect("probe"));
    }
    println!(
        "header spoofing: {sent} requests ({} kinds x {} forms, {} names each), {} failures, {:.1} s",
        kinds.len(),
        FORMS.len(),
        names.len(),
        failures.len(),
        began.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} spoofing probes broke the oracle:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `X-Forwarded-Host`, `-Proto` and `-Prefix` and the original-request report of forward auth
/// are believed from `server.trusted_proxies` only, and from there only in the `-` spelling.
#[tokio::test(flavor = "multi_thread")]
async fn forwarding_headers_and_reports_are_believed_only_from_trusted_proxies() {
    let (w, cookie, _) = spoofing_world().await;
    let port = w.proxy.port;
    let spoofed = [
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Prefix", "/evil"),
    ];
    let mut failures = Vec::new();
    for form in [
        Form::Canonical,
        Form::Lower,
        Form::Upper,
        Form::Padded,
        Form::Underscore,
    ] {
        for from in [CLIENT, TRUSTED_PROXY] {
            let mut head = vec![
                "GET /app HTTP/1.1".to_string(),
                format!("Host: 127.0.0.1:{port}"),
                "Accept: application/json".into(),
                cookie.clone(),
            ];
            for (name, value) in spoofed {
                head.extend(spoof_lines_with(form, name, value, value));
            }
            let r = exchange(from, port, &head.join("\r\n")).await;
            let Some(echoed) = r.echoed() else {
                failures.push(format!("{form:?} from {from}: not forwarded: {}", r.text));
                continue;
            };
            let all = |name: &str| -> Vec<String> {
                echoed
                    .iter()
                    .filter(|(n, _)| n.replace('_', "-").eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
                    .collect()
            };
            let believed = from == TRUSTED_PROXY && form != Form::Underscore;
            let own_host = format!("127.0.0.1:{port}");
            let expected: [(&str, Vec<&str>); 3] = if believed {
                [
                    ("x-forwarded-host", vec!["evil.example"]),
                    ("x-forwarded-proto", vec!["https"]),
                    ("x-forwarded-prefix", vec!["/evil"]),
                ]
            } else {
                [
                    ("x-forwarded-host", vec![own_host.as_str()]),
                    ("x-forwarded-proto", vec!["http"]),
                    ("x-forwarded-prefix", vec![]),
                ]
            };
            for (name, want) in expected {
                if all(name) != want {
                    failures.push(format!(
                        "{form:?} from {from}: the upstream got {name} {:?}, expected {want:?}",
                        all(name)
                    ));
                }
            }
        }
    }

    // X-Forwarded-Uri spoofing: a client that claims the original request was for a public
    // path gets no 202 from forward auth; the trusted proxy saying the same does.
    for form in FORMS.iter().copied() {
        for name in REPORTS {
            let value = if *name == "x-original-url" {
                format!("http://127.0.0.1:{port}/public/page")
            } else {
                "/public/page".to_string()
            };
            let mut head = vec![
                "GET /oauth2/auth HTTP/1.1".to_string(),
                format!("Host: 127.0.0.1:{port}"),
            ];
            head.extend(spoof_lines_with(form, name, &value, &value));
            let client = exchange(CLIENT, port, &head.join("\r\n")).await;
            if client.status == 202 {
                failures.push(format!(
                    "{name} ({form:?}) from a client was believed: {}",
                    client.text
                ));
            }
            let proxy = exchange(TRUSTED_PROXY, port, &head.join("\r\n")).await;
            let want = if form == Form::Underscore { 403 } else { 202 };
            if proxy.status != want {
                failures.push(format!(
                    "{name} ({form:?}) from the trusted proxy: {} (expected {want})",
                    proxy.status
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The identity and routing headers applications trust (Grafana's `X-WEBAUTH-USER`, the
/// `Remote-*` family, `X-Forwarded-Method`, `X-Original-Host`…) never pass from a client, nor
/// do the names a deployment adds (`headers.strip`); a renamed identity header
/// (`headers.names`) is set under its new name only, and a client's copy of it is removed.
#[tokio::test(flavor = "multi_thread")]
async fn application_identity_headers_are_stripped_and_can_be_renamed() {
    let w = World::start(
        |c| c,
        "\n[headers]\nstrip = [\"X-App-Role\"]\n[headers.names]\nuser = \"X-WEBAUTH-USER\"\n",
    )
    .await;
    let mut alice = Browser::new();
    alice.login(&w.proxy, "alice", "/").await;
    let forged = [
        "Remote-Groups",
        "Remote-Email",
        "Remote-Name",
        "X-Webauth-User",
        "X_WEBAUTH_USER",
        "X-Webauth-Role",
        "X-Auth-User",
        "X-Username",
        "X-Authenticated-User",
        "X-Forwarded-Username",
        "X-Forwarded-Login",
        "X-Forwarded-User-Id",
        "X-Forwarded-Method",
        "X-Original-Method",
        "X-Forwarded-Path",
        "X-Original-Host",
        "X-Host",
        "Client-IP",
        "X-App-Role",
        "X_App_Role",
    ];
    let mut req = plain_client()
        .get(w.proxy.url("/app"))
        .header(reqwest::header::ACCEPT, "application/json")
        .header(reqwest::header::COOKIE, alice.jar.header());
    for name in forged {
        req = req.header(name, "mallory");
    }
    let seen = Echoed::from(req.send().await.unwrap()).await;
    for name in forged {
        let n = name.replace('_', "-");
        let got: Vec<&str> = seen
            .headers
            .iter()
            .filter(|(k, _)| k.replace('_', "-").eq_ignore_ascii_case(&n))
            .map(|(_, v)| v.as_str())
            .collect();
        assert!(
            !got.contains(&"mallory"),
            "{name} reached the upstream: {got:?}"
        );
    }
    assert_eq!(seen.all("x-webauth-user"), ["alice"]);
    assert!(
        seen.all("x-forwarded-user").is_empty(),
        "renamed, not doubled"
    );
    assert_eq!(seen.all("x-forwarded-groups"), ["sre,dev"]);
}

/// With `headers.pass_access_token`, `/oauth2/auth` hands the access token to a forward-auth
/// subrequest only: from a trusted proxy reporting an original request for the application.
/// A page's own `fetch('/oauth2/auth')` that the proxy passes on (nginx's `location /oauth2/`
/// reports the request itself) gets the identity, never the token.
#[tokio::test(flavor = "multi_thread")]
async fn the_access_token_goes_only_to_a_forward_auth_subrequest() {
    let (w, cookie, _) = spoofing_world().await;
    let port = w.proxy.port;
    let ask = |original: Option<&str>| {
        let mut head = vec![
            "GET /oauth2/auth HTTP/1.1".to_string(),
            format!("Host: 127.0.0.1:{port}"),
            cookie.clone(),
        ];
        head.extend(original.map(|o| format!("X-Original-URI: {o}")));
        head.join("\r\n")
    };
    let r = exchange(TRUSTED_PROXY, port, &ask(Some("/app?x=1"))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(
        r.header("x-auth-request-access-token").len(),
        1,
        "{}",
        r.text
    );
    for own in [
        "/oauth2/auth",
        "/%6Fauth2/auth",
        "/oauth2/userinfo",
        "/oauth2/callback",
    ] {
        let r = exchange(TRUSTED_PROXY, port, &ask(Some(own))).await;
        assert!(
            r.header("x-auth-request-access-token").is_empty(),
            "{own}: {}",
            r.text
        );
    }
    // The same subrequest from anyone but the trusted proxy: no original request, no token.
    let r = exchange(CLIENT, port, &ask(Some("/app"))).await;
    assert!(
        r.header("x-auth-request-access-token").is_empty(),
        "{}",
        r.text
    );
}
