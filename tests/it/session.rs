//! The session cookie and its transport: chunking, flow-cookie cap, key rotation at the
//! provider, pass-through of WebSockets and streamed bodies, and secrets kept out of logs.

use std::time::Duration;

use crate::support::*;
use portcullis::demo::{DevIdpConfig, DevUser};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread")]
async fn a_large_session_is_chunked_and_shrinks_back_cleanly() {
    let groups: Vec<String> = (0..400)
        .map(|i| format!("team-with-a-long-name-{i:04}"))
        .collect();
    let many: Vec<&str> = groups.iter().map(String::as_str).collect();
    let w = World::start(
        |c| DevIdpConfig {
            users: vec![
                DevUser::demo("carol", "Carol", &many),
                DevUser::demo("alice", "Alice", &["sre"]),
            ],
            ..c
        },
        "",
    )
    .await;
    let mut b = Browser::new();
    b.login(&w.proxy, "carol", "/").await;
    let names = b.jar.session_names();
    assert!(names.len() >= 3, "expected chunks, got {names:?}");
    assert!(names.iter().all(|n| n.starts_with("_portcullis_")));
    let seen = Echoed::from(b.api(&w.proxy.url("/")).await).await;
    assert_eq!(seen.all("x-forwarded-groups")[0].split(',').count(), 400);
    assert!(seen
        .all("cookie")
        .iter()
        .all(|c| !c.contains("_portcullis")));

    // Logging in again as a user with a small session replaces every chunk.
    let authorize = b.start_login(&w.proxy, "/").await;
    let cb = b.submit_credentials(&authorize, "alice", "alice").await;
    assert_eq!(location(&b.callback(&cb).await), "/");
    assert_eq!(b.jar.session_names(), ["_portcullis"]);
    let seen = Echoed::from(b.api(&w.proxy.url("/")).await).await;
    assert_eq!(seen.all("x-forwarded-user"), ["alice"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn login_flow_cookies_are_capped_and_the_newest_wins() {
    let w = World::start(|c| c, "").await;
    let mut b = Browser::new();
    let mut authorizes = Vec::new();
    for i in 0..7 {
        authorizes.push(b.begin_login(&w.proxy, &format!("/tab/{i}")).await);
        let flows = b
            .jar
            .cookies
            .keys()
            .filter(|k| k.contains("_flow_"))
            .count();
        assert!(flows <= 4, "{flows} flow cookies after {} logins", i + 1);
    }
    let newest = authorizes.pop().unwrap();
    let cb = b.submit_credentials(&newest, "alice", "alice").await;
    assert_eq!(location(&b.callback(&cb).await), "/tab/6");
    // The oldest flow was dropped: its callback is refused with a clear 400 page.
    let cb = b.submit_credentials(&authorizes[0], "alice", "alice").await;
    let r = b.callback(&cb).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_signing_key_is_picked_up_with_one_jwks_refetch() {
    let w = World::start(|c| c, "").await;
    let fetches = w.idp.stats().jwks_fetches;
    w.idp.rotate_signing_key();
    w.idp.retire_old_keys();
    let mut b = Browser::new();
    assert_eq!(
        b.login(&w.proxy, "alice", "/after-rotation").await,
        "/after-rotation"
    );
    assert_eq!(w.idp.stats().jwks_fetches, fetches + 1);
}

/// A raw TCP upstream that answers any request with `101 Switching Protocols` and then echoes
/// bytes: enough to see the proxy tunnel an upgraded connection.
async fn upgrade_echo() -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(&buf).await.unwrap();
        head
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrades_pass_through_for_a_signed_in_user() {
    let port = free_port();
    let idp = start_idp(idp_config(port)).await;
    let (upstream, seen) = upgrade_echo().await;
    let proxy = Proxy::start(
        port,
        &config(port, idp.issuer(), &format!("http://{upstream}"), ""),
    )
    .await;
    proxy.wait_ready().await;
    let mut b = Browser::new();
    b.login(&proxy, "alice", "/").await;

    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!(
        "GET /socket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nCookie: {}\r\n\r\n",
        b.jar.header()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s.write_all(b"hello").await.unwrap();
    let mut echoed = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"hello");
    let upstream_head = String::from_utf8(seen.await.unwrap())
        .unwrap()
        .to_ascii_lowercase();
    assert!(upstream_head.contains("x-forwarded-user: alice"));
    assert!(!upstream_head.contains("_portcullis"));
}

#[tokio::test(flavor = "multi_thread")]
async fn request_bodies_stream_through() {
    let w = World::start(|c| c, "").await;
    let mut b = Browser::new();
    b.login(&w.proxy, "alice", "/").await;
    let body: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    let stream = futures_stream(body.clone());
    let r = b
        .client
        .post(w.proxy.url("/upload"))
        .header("cookie", b.jar.header())
        .header("accept", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["body_len"], body.len());
    assert_eq!(v["method"], "POST");
}

fn futures_stream(
    body: Vec<u8>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    ChunkStream { body, at: 0 }
}

struct ChunkStream {
    body: Vec<u8>,
    at: usize,
}

impl futures_core::Stream for ChunkStream {
    type Item = Result<Vec<u8>, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let at = self.at;
        if at >= self.body.len() {
            return std::task::Poll::Ready(None);
        }
        let end = (at + 64 * 1024).min(self.body.len());
        self.at = end;
        std::task::Poll::Ready(Some(Ok(self.body[at..end].to_vec())))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_token_or_cookie_reaches_the_log() {
    let w = World::start(|c| c, "").await;
    let mut b = Browser::new();
    let authorize = b.begin_login(&w.proxy, "/").await;
    let cb = b.submit_credentials(&authorize, "alice", "alice").await;
    let code = url::Url::parse(&cb)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    b.callback(&cb).await;
    b.api(&w.proxy.url("/")).await;
    // The cookies as they were while signed in: sign-out empties the jar.
    let signed_in = b.jar.cookies.clone();
    assert!(!signed_in.is_empty());
    b.sign_out(&w.proxy.url("/oauth2/sign_out")).await;
    let log = w.proxy.log();
    assert!(
        log.contains("\"outcome\""),
        "access log lines expected: {log}"
    );
    let client_secret = DevIdpConfig::default().client_secret;
    for secret in [client_secret.as_str(), SECRET, code.as_str()] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
    for (name, value) in &signed_in {
        assert!(
            !log.contains(value.as_str()),
            "cookie {name} reached the log"
        );
    }
    assert!(
        !log.contains("eyJ"),
        "something token-shaped reached the log"
    );
}
