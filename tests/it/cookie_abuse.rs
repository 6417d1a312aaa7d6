//! Abuse of the session and login cookies against the real binary: tampered, truncated,
//! re-encoded and oversized values, chunk layouts that lie, cookies planted before login
//! (session fixation, a planted login flow), nonce reuse (mod_auth_openidc's static AES-GCM IV)
//! and replay of a cookie after sign-out.
//!
//! Every attack must end as "no session" (401 for an API call, a login redirect for a page
//! navigation, with our cookies expired) or a clear 400, never a 500, a panic or an identity at
//! the upstream.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use portcullis::clock::{Clock, SystemClock};
use portcullis::config::Config;
use portcullis::demo::{DevIdpConfig, DevUser};
use portcullis::oidc::flow::LoginFlows;
use portcullis::session::CookieStore;
use reqwest::header::{ACCEPT, COOKIE, SET_COOKIE};
use reqwest::{Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NAME: &str = "_portcullis";

/// The session store of a running proxy, built from the very config file it was started with.
fn store_of(proxy: &Proxy) -> CookieStore {
    let cfg = Config::load(&proxy.config_path).expect("the proxy's config");
    CookieStore::new(cfg.session.as_ref().expect("[session]")).expect("session store")
}

/// The login flows of a running proxy, likewise.
fn flows_of(proxy: &Proxy) -> LoginFlows {
    let cfg = Config::load(&proxy.config_path).expect("the proxy's config");
    LoginFlows::new(cfg.session.as_ref().expect("[session]")).expect("login flows")
}

/// A GET of `/probe` whose `Cookie` headers are exactly `cookie_lines` (one header each).
async fn get_with(proxy: &Proxy, accept: &str, cookie_lines: &[String]) -> Response {
    let mut req = plain_client()
        .get(proxy.url("/probe"))
        .header(ACCEPT, accept);
    for line in cookie_lines {
        req = req.header(COOKIE, line.as_str());
    }
    req.send().await.expect("the proxy answers")
}

/// Names the response expires (`Max-Age=0`) with `Set-Cookie`.
fn expired(resp: &Response) -> BTreeSet<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.contains("Max-Age=0"))
        .filter_map(|v| v.split_once('=').map(|(n, _)| n.trim().to_owned()))
        .collect()
}

/// Every `name=value` cookie a response sets with a non-empty value.
fn set_values(resp: &Response) -> Vec<(String, String)> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| !v.contains("Max-Age=0"))
        .filter_map(|v| {
            let pair = v.split(';').next()?;
            let (n, val) = pair.split_once('=')?;
            Some((n.trim().to_owned(), val.trim().to_owned()))
        })
        .collect()
}

/// The request is treated as anonymous: an API call gets the 401 challenge, every cookie name
/// portcullis could have set that it carried is expired, and a navigation with the same cookies is sent to log in.
async fn assert_anonymous(proxy: &Proxy, cookie_lines: &[String], what: &str) {
    let r = get_with(proxy, "application/json", cookie_lines).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
    let cleared = expired(&r);
    for name in sent_names(cookie_lines) {
        assert!(
            cleared.contains(&name),
            "{what}: {name} not expired; expired {cleared:?}"
        );
    }
    let body = r.text().await.unwrap_or_default();
    assert!(body.contains("\"unauthorized\""), "{what}: {body}");
    let r = get_with(proxy, BROWSER_ACCEPT, cookie_lines).await;
    assert_eq!(r.status(), StatusCode::FOUND, "{what}");
    assert!(
        location(&r).starts_with("/oauth2/start?rd="),
        "{what}: {}",
        location(&r)
    );
}

/// The names portcullis sets (the session and its chunks `_0` to `_15`) in these Cookie lines.
/// Other look-alikes (`_portcullis_16`, `_portcullis_007`) make the session unusable too, but
/// portcullis never set them, so it does not spend a `Set-Cookie` on them.
fn sent_names(cookie_lines: &[String]) -> BTreeSet<String> {
    let ours: BTreeSet<String> = std::iter::once(NAME.to_owned())
        .chain((0..16).map(|i| format!("{NAME}_{i}")))
        .collect();
    cookie_lines
        .iter()
        .flat_map(|l| l.split(';'))
        .filter_map(|p| p.split_once('=').map(|(n, _)| n.trim().to_owned()))
        .filter(|n| ours.contains(n))
        .collect()
}

/// Who the upstream was told the user is, for a request with these Cookie lines.
async fn upstream_user(proxy: &Proxy, cookie_lines: &[String]) -> Vec<String> {
    let r = get_with(proxy, "application/json", cookie_lines).await;
    let seen = Echoed::from(r).await;
    assert!(
        seen.all("cookie").iter().all(|c| !c.contains(NAME)),
        "our cookies must not reach the upstream"
    );
    seen.all("x-forwarded-user")
        .into_iter()
        .map(str::to_owned)
        .collect()
}

fn cookie_line(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The chunks of a chunked session in index order.
fn chunks_of(b: &Browser) -> Vec<(String, String)> {
    let mut out: Vec<(usize, String, String)> = b
        .jar
        .cookies
        .iter()
        .filter_map(|(n, v)| {
            let i = n.strip_prefix(&format!("{NAME}_"))?.parse().ok()?;
            Some((i, n.clone(), v.clone()))
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, n, v)| (n, v)).collect()
}

/// A user whose groups make a session of several chunks.
fn big_user(name: &str) -> DevUser {
    let groups: Vec<String> = (0..400)
        .map(|i| format!("{name}-team-long-name-{i:04}"))
        .collect();
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    DevUser::demo(name, name, &groups)
}

fn with_big_users(c: DevIdpConfig) -> DevIdpConfig {
    let mut users = c.users.clone();
    users.push(big_user("carol"));
    users.push(big_user("dave"));
    DevIdpConfig { users, ..c }
}

fn query(url: &str, key: &str) -> String {
    url::Url::parse(url)
        .expect("absolute URL")
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("{key} missing from {url}"))
}

fn with_query(url: &str, key: &str, value: &str) -> String {
    let mut u = url::Url::parse(url).expect("absolute URL");
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == key { value.to_owned() } else { v.into() };
            (k.into_owned(), v)
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u.to_string()
}

fn flow_cookies(b: &Browser) -> Vec<(String, String)> {
    b.jar
        .cookies
        .iter()
        .filter(|(n, _)| n.contains("_flow_"))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Bit flips, truncation, re-encoding

#[tokio::test(flavor = "multi_thread")]
async fn no_bit_flip_truncation_or_reencoding_of_a_real_session_opens() {
    let w = World::start(|c| c, "").await;
    let mut b = Browser::new();
    b.login(&w.proxy, "alice", "/").await;
    let value = b.jar.cookies[NAME].clone();
    let store = store_of(&w.proxy);
    let t = SystemClock.now();
    let load = |v: &str| store.load(&[format!("{NAME}={v}").as_bytes()], t);

    // The control: the untouched value opens with the proxy's own configuration.
    let genuine = load(&value);
    assert_eq!(
        genuine.session.expect("genuine").identity.user.as_deref(),
        Some("alice")
    );
    assert!(!genuine.unusable);

    // One bit flipped at every position of the sealed bytes: version, nonce, ciphertext, tag.
    let raw = URL_SAFE_NO_PAD.decode(&value).expect("base64url");
    assert!(raw.len() > 200, "a real session: {} bytes", raw.len());
    let started = Instant::now();
    for i in 0..raw.len() {
        for bit in 0..8 {
            let mut tampered = raw.clone();
            tampered[i] ^= 1 << bit;
            let l = load(&URL_SAFE_NO_PAD.encode(&tampered));
            assert!(
                l.session.is_none() && l.unusable,
                "byte {i} bit {bit} opened"
            );
        }
    }
    eprintln!(
        "{} bit flips refused in {:?}",
        raw.len() * 8,
        started.elapsed()
    );

    // Truncated at every length, decoded and encoded; extended by a byte or a character.
    for len in 0..raw.len() {
        let l = load(&URL_SAFE_NO_PAD.encode(&raw[..len]));
        assert!(l.session.is_none(), "decoded length {len} opened");
    }
    for len in 0..value.len() {
        let l = load(&value[..len]);
        assert!(l.session.is_none() && l.unusable, "encoded length {len}");
    }
    let mut longer = raw.clone();
    longer.push(0);
    assert!(load(&URL_SAFE_NO_PAD.encode(&longer)).session.is_none());
    assert!(load(&format!("{value}A")).session.is_none());

    // The base64 alphabet abused: padding, the standard alphabet, whitespace and percent-escapes
    // inside the value, quoting, a non-canonical last character (same bytes, other spare bits).
    assert!(value.contains('-') && value.contains('_'), "{value}");
    let mid = value.len() / 2;
    let padded = format!("{value}{}", "=".repeat((4 - value.len() % 4) % 4));
    let last = value.chars().last().expect("non-empty");
    let spare_bits = match value.len() % 4 {
        2 => 0b1111,
        3 => 0b11,
        _ => 0,
    };
    let mut variants = vec![
        ("one =", format!("{value}=")),
        ("two =", format!("{value}==")),
        ("+/ alphabet", value.replace('-', "+").replace('_', "/")),
        ("only + for -", value.replace('-', "+")),
        ("only / for _", value.replace('_', "/")),
        (
            "space inside",
            format!("{} {}", &value[..mid], &value[mid..]),
        ),
        (
            "tab inside",
            format!("{}\t{}", &value[..mid], &value[mid..]),
        ),
        ("%2D escape", value.replacen('-', "%2D", 1)),
        ("quoted", format!("\"{value}\"")),
        ("lower-cased", value.to_ascii_lowercase()),
    ];
    // A value whose length is a multiple of 4 has no padding to add.
    if padded != value {
        variants.push(("padded", padded));
    }
    if spare_bits != 0 {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let pos = ALPHABET
            .iter()
            .position(|&c| char::from(c) == last)
            .expect("alphabet");
        let other = char::from(ALPHABET[pos ^ 1]);
        variants.push((
            "non-canonical last character",
            format!("{}{other}", &value[..value.len() - 1]),
        ));
    }
    for (what, v) in &variants {
        assert_ne!(v, &value, "{what}");
        let l = load(v);
        assert!(l.session.is_none() && l.unusable, "{what} opened");
    }

    // End to end, a sample of the bit flips (spread over every part of the value, the version
    // byte and the last tag byte included) and some of the re-encodings: each is no session and
    // the cookie is expired.
    let step = (raw.len() / 24).max(1);
    let mut positions: Vec<usize> = (0..raw.len()).step_by(step).collect();
    positions.extend([1, 12, 13, raw.len() - 16, raw.len() - 1]);
    for (n, i) in positions.into_iter().enumerate() {
        let mut tampered = raw.clone();
        tampered[i] ^= 1 << (n % 8);
        let line = format!("{NAME}={}", URL_SAFE_NO_PAD.encode(&tampered));
        assert_anonymous(&w.proxy, &[line], &format!("byte {i} flipped")).await;
    }
    for (what, v) in variants
        .iter()
        .filter(|(w, _)| !w.contains("inside") && !w.contains("quoted"))
    {
        assert_anonymous(&w.proxy, &[format!("{NAME}={v}")], what).await;
    }
    for len in [0, 1, 40, value.len() / 2, value.len() - 1] {
        let line = format!("{NAME}={}", &value[..len]);
        assert_anonymous(&w.proxy, &[line], &format!("truncated to {len}")).await;
    }
    // The untouched cookie still works: the refusals above were about the damage.
    assert_eq!(
        upstream_user(&w.proxy, &[format!("{NAME}={value}")]).await,
        ["alice"]
    );
}

// ---------------------------------------------------------------------------------------------
// Nonces (mod_auth_openidc's static AES-GCM IV)

#[tokio::test(flavor = "multi_thread")]
async fn sealing_the_same_session_never_repeats_a_nonce() {
    let w = World::start(|c| c, "").await;
    let (mut first, mut second) = (Browser::new(), Browser::new());
    first.login(&w.proxy, "alice", "/").await;
    second.login(&w.proxy, "alice", "/").await;
    let nonce = |v: &str| URL_SAFE_NO_PAD.decode(v).expect("base64url")[1..13].to_vec();
    assert_ne!(
        nonce(&first.jar.cookies[NAME]),
        nonce(&second.jar.cookies[NAME])
    );

    // The same session data sealed again and again, in the same second.
    let store = store_of(&w.proxy);
    let t = SystemClock.now();
    let line = format!("{NAME}={}", first.jar.cookies[NAME]);
    let session = store.load(&[line.as_bytes()], t).session.expect("session");
    let mut nonces = BTreeSet::new();
    let mut bodies = BTreeSet::new();
    for _ in 0..200 {
        let set = store.save(&session, &[NAME.to_owned()], t);
        assert_eq!(set.len(), 1, "{set:?}");
        let value = set[0]
            .split(';')
            .next()
            .and_then(|p| p.strip_prefix(&format!("{NAME}=")))
            .expect("our cookie")
            .to_owned();
        let raw = URL_SAFE_NO_PAD.decode(&value).expect("base64url");
        assert!(nonces.insert(raw[1..13].to_vec()), "nonce repeated");
        assert!(bodies.insert(raw[13..].to_vec()), "ciphertext repeated");
        let again = store.load(&[format!("{NAME}={value}").as_bytes()], t);
        assert_eq!(
            again.session.expect("reopens").identity.user.as_deref(),
            Some("alice")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Oversized cookies

/// Sends raw request bytes and returns the status line, writing and reading concurrently (the
/// proxy may answer before it has read everything).
async fn raw_status(port: u16, request: Vec<u8>) -> String {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        // The proxy may close mid-request (that is the point); a failed write is not an error.
        let _ = wr.write_all(&request).await;
        wr
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        while !got.windows(2).any(|w| w == b"\r\n") {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 20 s");
    drop(writer.await);
    let text = String::from_utf8_lossy(&got);
    text.lines().next().unwrap_or("").to_owned()
}

fn raw_get(port: u16, cookie_lines: &[String]) -> Vec<u8> {
    let mut req = format!(
        "GET /probe HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\nConnection: close\r\n"
    );
    for line in cookie_lines {
        req.push_str(&format!("Cookie: {line}\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_cookies_are_no_session_or_a_clean_431() {
    // The largest head pingora itself reads, so that the cookie reader sees the most it can.
    let w = World::start_with(
        |c| c,
        |toml| server_option(toml, "max_header_bytes = 1048575"),
    )
    .await;
    let filler = |n: usize| "A".repeat(n);

    // Far above MAX_SEALED_LEN (64 KiB) as one value.
    assert_anonymous(&w.proxy, &[format!("{NAME}={}", filler(70_000))], "70 kB").await;
    // Sixteen full chunks: the most a reader accepts, holding no valid value.
    let sixteen: Vec<(String, String)> = (0..16)
        .map(|i| (format!("{NAME}_{i}"), filler(3_980)))
        .collect();
    assert_anonymous(&w.proxy, &[cookie_line(&sixteen)], "16 chunks").await;
    // More chunks than the maximum: 17, and 40 spread over several headers.
    let mut seventeen = sixteen.clone();
    seventeen.push((format!("{NAME}_16"), filler(3_980)));
    assert_anonymous(&w.proxy, &[cookie_line(&seventeen)], "17 chunks").await;
    let forty: Vec<String> = (0..40)
        .map(|i| format!("{NAME}_{i}={}", filler(1_000)))
        .collect();
    assert_anonymous(&w.proxy, &forty, "40 chunks, one header each").await;

    // A real session with thousands of other cookies around it still works: nothing is
    // confused by the crowd, and the crowd alone is no session.
    let mut b = Browser::new();
    b.login(&w.proxy, "alice", "/").await;
    let crowd: Vec<String> = (0..5_000).map(|i| format!("c{i}=v{i}")).collect();
    let crowd = crowd.join("; ");
    let line = format!("{crowd}; {NAME}={}; {crowd}", b.jar.cookies[NAME]);
    assert_eq!(upstream_user(&w.proxy, &[line]).await, ["alice"]);
    let r = get_with(&w.proxy, "application/json", std::slice::from_ref(&crowd)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // At most `server.max_header_bytes` (here pingora's own limit, 1,048,575 bytes) of request
    // head and 256 header lines are read. Just under that the request reaches portcullis and
    // is simply no session; above it the listener answers 431 and closes. Never a 500, never
    // the upstream.
    let near = format!("{NAME}={}", filler(1_000_000));
    assert_eq!(
        raw_status(w.proxy.port, raw_get(w.proxy.port, &[near])).await,
        "HTTP/1.1 401 Unauthorized"
    );
    for size in [1_100_000, 4_000_000] {
        let above = format!("{NAME}={}", filler(size));
        assert_eq!(
            raw_status(w.proxy.port, raw_get(w.proxy.port, &[above])).await,
            "HTTP/1.1 431 Request Header Fields Too Large",
            "{size} bytes"
        );
    }
    let lines: Vec<String> = (0..300).map(|i| format!("{NAME}_{}=x", i % 16)).collect();
    assert_eq!(
        raw_status(w.proxy.port, raw_get(w.proxy.port, &lines)).await,
        "HTTP/1.1 431 Request Header Fields Too Large",
        "300 Cookie header lines"
    );
    // The proxy is still serving afterwards.
    assert_eq!(
        upstream_user(&w.proxy, &[format!("{NAME}={}", b.jar.cookies[NAME])]).await,
        ["alice"]
    );
    let log = w.proxy.log();
    assert!(!log.contains("panicked"), "{log}");
}

// ---------------------------------------------------------------------------------------------
// Chunk layouts that lie

#[tokio::test(flavor = "multi_thread")]
async fn chunk_layouts_that_lie_are_no_session() {
    let w = World::start(with_big_users, "").await;
    let (mut carol, mut dave, mut alice) = (Browser::new(), Browser::new(), Browser::new());
    carol.login(&w.proxy, "carol", "/").await;
    dave.login(&w.proxy, "dave", "/").await;
    alice.login(&w.proxy, "alice", "/").await;
    let c = chunks_of(&carol);
    let d = chunks_of(&dave);
    assert!(
        c.len() >= 3 && d.len() >= 3,
        "{} and {} chunks",
        c.len(),
        d.len()
    );
    let plain_alice = (NAME.to_owned(), alice.jar.cookies[NAME].clone());

    // The order of cookies does not matter, nor does splitting them over two Cookie headers.
    assert_eq!(upstream_user(&w.proxy, &[cookie_line(&c)]).await, ["carol"]);
    let mut reversed = c.clone();
    reversed.reverse();
    assert_eq!(
        upstream_user(&w.proxy, &[cookie_line(&reversed)]).await,
        ["carol"]
    );
    let (head, tail) = c.split_at(1);
    assert_eq!(
        upstream_user(&w.proxy, &[cookie_line(tail), cookie_line(head)]).await,
        ["carol"]
    );

    let k = c.len();
    let named = |i: usize, v: &str| (format!("{NAME}_{i}"), v.to_owned());
    let mut cases: Vec<(&str, Vec<String>)> = Vec::new();
    // Contents swapped between names.
    let mut swapped = c.clone();
    swapped[0].1 = c[1].1.clone();
    swapped[1].1 = c[0].1.clone();
    cases.push(("swapped contents", vec![cookie_line(&swapped)]));
    // A chunk missing: first (a gap from 0), middle (a gap), last (a truncated value).
    for (what, skip) in [
        ("missing first", 0),
        ("missing middle", 1),
        ("missing last", k - 1),
    ] {
        let rest: Vec<_> = c
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, p)| p.clone())
            .collect();
        cases.push((what, vec![cookie_line(&rest)]));
    }
    cases.push((
        "gap _0, _2",
        vec![cookie_line(&[c[0].clone(), c[2].clone()])],
    ));
    // Duplicates: the same chunk twice in one header, and again in a second header.
    let mut dup = c.clone();
    dup.push(c[0].clone());
    cases.push(("duplicate chunk", vec![cookie_line(&dup)]));
    cases.push((
        "duplicate across headers",
        vec![cookie_line(&c), cookie_line(&c[..1])],
    ));
    // Plain and chunked together, each a valid session of its own, in either order.
    let mut plain_first = vec![plain_alice.clone()];
    plain_first.extend(c.iter().cloned());
    cases.push(("plain then chunks", vec![cookie_line(&plain_first)]));
    let mut chunks_first = c.clone();
    chunks_first.push(plain_alice.clone());
    cases.push(("chunks then plain", vec![cookie_line(&chunks_first)]));
    cases.push((
        "plain and chunks in two headers",
        vec![
            cookie_line(&c),
            cookie_line(std::slice::from_ref(&plain_alice)),
        ],
    ));
    // Chunk names the reader does not accept, next to a valid set.
    for bad in ["16", "17", "99", "100", "007", "01", "1x", ""] {
        let mut extra = c.clone();
        extra.push((format!("{NAME}_{bad}"), c[0].1.clone()));
        cases.push(("bad chunk name", vec![cookie_line(&extra)]));
    }
    // A complete valid set and a stray chunk after a hole: the prefix alone would open.
    let mut beyond_gap = c.clone();
    beyond_gap.push(named(k + 1, &c[0].1));
    cases.push(("stray chunk after a gap", vec![cookie_line(&beyond_gap)]));
    // An extra chunk after a complete set, and chunks spliced from another user's session.
    let mut appended = c.clone();
    appended.push(named(k, &c[0].1));
    cases.push(("extra chunk", vec![cookie_line(&appended)]));
    let mut spliced = vec![c[0].clone()];
    spliced.extend(d[1..].iter().cloned());
    cases.push(("spliced with dave's", vec![cookie_line(&spliced)]));
    let mut spliced = d.clone();
    let last = d.len() - 1;
    spliced[last] = named(last, &c[k - 1].1);
    cases.push(("dave's with carol's tail", vec![cookie_line(&spliced)]));
    for (what, lines) in &cases {
        assert_anonymous(&w.proxy, lines, what).await;
    }

    // Chunking is transport only: the seal binds the base name, so carol's chunks joined into
    // one plain cookie are the same session (her own value, nothing gained), not another one.
    let joined: String = c.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(
        upstream_user(&w.proxy, &[format!("{NAME}={joined}")]).await,
        ["carol"]
    );
}

// ---------------------------------------------------------------------------------------------
// Session fixation

#[tokio::test(flavor = "multi_thread")]
async fn a_planted_session_is_never_adopted_by_the_victims_login() {
    let w = World::start(with_big_users, "").await;
    let mut attacker = Browser::new();
    attacker.login(&w.proxy, "bob", "/").await;
    let mut big_attacker = Browser::new();
    big_attacker.login(&w.proxy, "carol", "/").await;

    // A real session of another user (plain), then a real chunked one, planted in the victim's
    // browser before the victim signs in.
    let planted_plain = vec![(NAME.to_owned(), attacker.jar.cookies[NAME].clone())];
    for planted in [planted_plain, chunks_of(&big_attacker)] {
        let mut victim = Browser::new();
        victim.jar.cookies.extend(planted.iter().cloned());
        let authorize = victim.start_login(&w.proxy, "/home").await;
        let cb = victim
            .submit_credentials(&authorize, "alice", "alice")
            .await;
        let r = victim.callback(&cb).await;
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(location(&r), "/home");

        // The callback sets a fresh session and expires every planted name it does not overwrite.
        let set = set_values(&r);
        let fresh: Vec<&(String, String)> =
            set.iter().filter(|(n, _)| n.starts_with(NAME)).collect();
        assert!(!fresh.is_empty(), "no session cookie set");
        for (n, v) in &fresh {
            assert!(
                planted.iter().all(|(_, p)| p != v),
                "{n}: planted value kept"
            );
        }
        let written: BTreeSet<String> = fresh.iter().map(|(n, _)| n.clone()).collect();
        let cleared = expired(&r);
        for (n, _) in &planted {
            assert!(
                written.contains(n) || cleared.contains(n),
                "planted {n} neither replaced nor expired"
            );
        }
        assert_eq!(victim.jar.session_names(), [NAME]);
        let line = victim.jar.header();
        assert_eq!(upstream_user(&w.proxy, &[line]).await, ["alice"]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_planted_login_flow_cannot_finish_or_hijack_the_victims_login() {
    let w = World::start(|c| c, "").await;

    // The attacker starts a login of their own and keeps its flow cookie and state.
    let mut attacker = Browser::new();
    let authorize_a = attacker.start_login(&w.proxy, "/").await;
    let state_a = query(&authorize_a, "state");
    let flow_a = flow_cookies(&attacker);
    assert_eq!(flow_a.len(), 1);

    // The victim's browser carries the attacker's flow cookie (planted), then logs in.
    let mut victim = Browser::new();
    victim.jar.cookies.extend(flow_a.iter().cloned());
    let authorize_v = victim.start_login(&w.proxy, "/mine").await;
    let state_v = query(&authorize_v, "state");
    assert_ne!(state_a, state_v);
    let cb_v = victim
        .submit_credentials(&authorize_v, "alice", "alice")
        .await;
    let grants = |w: &World| {
        let s = w.idp.stats();
        (
            s.authorization_code_grants,
            s.authorization_code_grants_failed,
        )
    };
    assert_eq!(grants(&w), (0, 0));

    // The state of the victim's callback changed to a longer one with the same prefix (the part
    // in the flow cookie's name): refused before any code is spent.
    let prefix_twin = format!("{}{}", &state_v[..12], "A".repeat(state_v.len() - 12));
    assert_ne!(prefix_twin, state_v);
    let r = victim
        .callback(&with_query(&cb_v, "state", &prefix_twin))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(set_values(&r).iter().all(|(n, _)| n != NAME));
    assert_eq!(grants(&w), (0, 0), "no code exchange for a wrong state");

    // The victim's code with the attacker's state (whose flow cookie the victim carries): the
    // attacker's PKCE verifier cannot redeem the victim's code.
    let r = victim.callback(&with_query(&cb_v, "state", &state_a)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(set_values(&r).iter().all(|(n, _)| n != NAME));
    assert_eq!(
        grants(&w),
        (0, 1),
        "the provider refused the mismatched PKCE"
    );
    assert!(victim.jar.session_names().is_empty());

    // The attacker's sealed flow value moved under the victim's own flow cookie name: the name
    // is bound into the seal, so it does not open there.
    let mut victim2 = Browser::new();
    let authorize_v2 = victim2.start_login(&w.proxy, "/mine").await;
    let flow_v2 = flow_cookies(&victim2);
    assert_eq!(flow_v2.len(), 1);
    victim2
        .jar
        .cookies
        .insert(flow_v2[0].0.clone(), flow_a[0].1.clone());
    let cb_v2 = victim2
        .submit_credentials(&authorize_v2, "alice", "alice")
        .await;
    let r = victim2.callback(&cb_v2).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        grants(&w),
        (0, 1),
        "no code exchange for a foreign flow value"
    );

    // The attacker's finished login (code and state) replayed in a browser without the
    // attacker's flow cookie: no flow matches.
    let cb_a = attacker
        .submit_credentials(&authorize_a, "bob", "bob")
        .await;
    let mut victim3 = Browser::new();
    victim3.start_login(&w.proxy, "/mine").await;
    let r = victim3.callback(&cb_a).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(victim3.jar.session_names().is_empty());
    assert_eq!(grants(&w), (0, 1));

    // Control: a clean login of the victim still works.
    let mut clean = Browser::new();
    assert_eq!(clean.login(&w.proxy, "alice", "/mine").await, "/mine");
    assert_eq!(grants(&w), (1, 1));
}

// ---------------------------------------------------------------------------------------------
// Replay after sign-out

/// Signs the browser out here and at the provider (posting the form to its logout, as the
/// page portcullis answers with does).
async fn sign_out_everywhere(w: &World, b: &mut Browser) {
    let logouts = w.idp.stats().logouts;
    let at_provider = b.sign_out(&w.proxy.url("/oauth2/sign_out")).await;
    assert!(b.jar.session_names().is_empty(), "cookies cleared here");
    assert!(at_provider.starts_with(w.idp.issuer()), "{at_provider}");
    let url = url::Url::parse(&at_provider).expect("logout URL");
    let fields: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert!(
        fields.iter().any(|(k, _)| k == "id_token_hint"),
        "{at_provider}"
    );
    let mut action = url.clone();
    action.set_query(None);
    let r = plain_client()
        .post(action)
        .form(&fields)
        .send()
        .await
        .expect("logout");
    assert!(r.status().is_success() || r.status().is_redirection());
    assert_eq!(w.idp.stats().logouts, logouts + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_taken_before_sign_out_lives_until_its_tokens_need_a_refresh() {
    let w = World::start(|c| c, "").await;
    let mut b = Browser::new();
    b.login(&w.proxy, "alice", "/").await;
    let copy = b.jar.header();
    sign_out_everywhere(&w, &mut b).await;
    // Stateless: nothing here remembers the sign-out, and the tokens (5 minutes) are still
    // fresh, so the provider is not asked. The copy is alice until a refresh is due.
    assert_eq!(
        upstream_user(&w.proxy, std::slice::from_ref(&copy)).await,
        ["alice"]
    );
    assert_eq!(w.idp.stats().refresh_token_grants, 0);
    // The signed-out browser itself is anonymous.
    assert_eq!(
        b.api(&w.proxy.url("/")).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_replayed_after_sign_out_dies_at_its_next_refresh() {
    let w = World::start(expiring_tokens, "").await;
    let mut b = Browser::new();
    b.login(&w.proxy, "alice", "/").await;
    let first = b.jar.header();

    // One request refreshes (the tokens expire at once): the browser now holds a second cookie,
    // and the refresh of the first is remembered for requests still in flight with it.
    let refreshed_at = Instant::now();
    assert_eq!(
        Echoed::from(b.api(&w.proxy.url("/")).await)
            .await
            .all("x-forwarded-user"),
        ["alice"]
    );
    assert_eq!(w.idp.stats().refresh_token_grants, 1);
    let second = b.jar.header();
    assert_ne!(first, second);

    // Sign-out here and at the provider, which ends the login's refresh tokens.
    sign_out_everywhere(&w, &mut b).await;

    // The latest cookie replayed: this process knows it was signed out, so its refresh is
    // refused without asking the provider; it is no session and is cleared.
    assert_anonymous(
        &w.proxy,
        std::slice::from_ref(&second),
        "replayed after sign-out",
    )
    .await;
    // The older copy, within the 60 s for which its refresh is remembered: the remembered
    // result (the signed-out session) no longer answers for it.
    assert_anonymous(
        &w.proxy,
        std::slice::from_ref(&first),
        "the copy the signed-out session was refreshed from",
    )
    .await;
    assert!(
        refreshed_at.elapsed() < Duration::from_secs(55),
        "inside the window"
    );
    // Nothing reached the provider again: the one refresh before sign-out in all.
    let stats = w.idp.stats();
    assert_eq!(
        (
            stats.refresh_token_grants,
            stats.refresh_token_grants_failed
        ),
        (1, 0)
    );
}

/// Login CSRF from a sibling subdomain needs a cookie planted for this host from elsewhere.
/// With a `__Host-` name, every cookie portcullis sets (the login flow's, the session's, their
/// expiry at the callback and at sign-out) carries the prefix, `Secure`, `Path=/` and no
/// `Domain`: the only shape browsers accept for a `__Host-` cookie, and only from this very
/// host, so a sibling subdomain cannot plant any of them.
#[tokio::test(flavor = "multi_thread")]
async fn with_a_host_prefix_every_cookie_portcullis_sets_is_host_only() {
    let w = World::start_with(
        |c| c,
        |toml| {
            session_option(
                toml.replacen("secure = false\n", "", 1),
                "cookie_name = \"__Host-portcullis\"\nsecure = true",
            )
        },
    )
    .await;
    let mut b = Browser::new();
    let mut set = Vec::new();
    let mut keep = |b: &mut Browser, resp: &Response| {
        b.jar.absorb(resp.headers());
        for sc in resp.headers().get_all(SET_COOKIE) {
            set.push(sc.to_str().expect("ascii").to_string());
        }
    };
    let start = b.get(&w.proxy.url("/oauth2/start?rd=/"), "text/html").await;
    assert_eq!(start.status(), StatusCode::FOUND);
    keep(&mut b, &start);
    let callback = b
        .submit_credentials(&location(&start), "alice", "alice")
        .await;
    let back = b.callback(&callback).await;
    assert_eq!(
        back.status(),
        StatusCode::FOUND,
        "login with __Host- cookies"
    );
    keep(&mut b, &back);
    assert!(b.jar.cookies.contains_key("__Host-portcullis"));
    assert_eq!(
        Echoed::from(b.api(&w.proxy.url("/")).await)
            .await
            .all("x-forwarded-user"),
        ["alice"]
    );
    let out = b.sign_out_response(&w.proxy.url("/oauth2/sign_out")).await;
    keep(&mut b, &out);

    assert!(
        set.len() >= 4,
        "flow, session, flow expiry, session expiry: {set:?}"
    );
    for cookie in &set {
        let lower = cookie.to_ascii_lowercase();
        assert!(cookie.starts_with("__Host-"), "{cookie}");
        assert!(lower.contains("; secure"), "{cookie}");
        assert!(
            lower.contains("; path=/;") || lower.ends_with("; path=/"),
            "{cookie}"
        );
        assert!(!lower.contains("domain="), "{cookie}");
    }
}

/// Thousands of cookies named like ours cost one linear pass and a bounded answer: only names
/// portcullis could have set (the session and its 16 chunks; the first 8 login flows) are
/// expired, however many the request invents. Before, 5,500 `_portcullis_N` cookies got 5,501
/// `Set-Cookie` lines (406 KB) and 4,500 flow cookies on /oauth2/start got 4,498.
#[tokio::test(flavor = "multi_thread")]
async fn thousands_of_cookies_named_like_ours_get_a_bounded_answer() {
    let w = World::start(|c| c, "").await;
    let mut line = String::new();
    for i in 0..5500 {
        line.push_str(&format!("{NAME}_{i}=x; "));
    }
    line.push_str(&format!("{NAME}=y"));
    let started = Instant::now();
    let r = get_with(&w.proxy, "application/json", &[line]).await;
    let took = started.elapsed();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let set = set_cookie_lines(&r);
    assert_eq!(set.len(), 17, "{:?}", &set[..set.len().min(20)]);
    assert_eq!(expired(&r).len(), 17, "only expiries, each name once");
    eprintln!(
        "5,500 session-like cookies: {} Set-Cookie in {took:?}",
        set.len()
    );

    // The same with 3,500 login-flow cookies at /oauth2/start (what fits in the default
    // server.max_header_bytes): the first 8 are looked at, and the 5 oldest of those expired so
    // that the new flow makes 4.
    let prefix = flows_of(&w.proxy).prefix().to_owned();
    let mut line = String::new();
    for i in 0..3500 {
        line.push_str(&format!("{prefix}{i:012}=x; "));
    }
    line.push_str("theme=dark");
    let started = Instant::now();
    let r = plain_client()
        .get(w.proxy.url("/oauth2/start"))
        .header(ACCEPT, BROWSER_ACCEPT)
        .header(COOKIE, line.as_str())
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), StatusCode::FOUND);
    let set = set_cookie_lines(&r);
    assert_eq!(
        (set.len(), expired(&r).len()),
        (6, 5),
        "{:?}",
        &set[..set.len().min(20)]
    );
    eprintln!(
        "3,500 flow cookies at /oauth2/start: {} Set-Cookie in {took:?}",
        set.len()
    );
    // Sign-out expires no more of them either.
    let r = plain_client()
        .get(w.proxy.url("/oauth2/sign_out"))
        .header(COOKIE, line.as_str())
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert!(
        set_cookie_lines(&r).len() <= 9,
        "{}",
        set_cookie_lines(&r).len()
    );
}

fn set_cookie_lines(resp: &Response) -> Vec<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect()
}
