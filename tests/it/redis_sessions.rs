//! Server-side sessions in a real Redis (`session.store = "redis"`): the body is encrypted
//! with a key only the cookie carries, signing out ends every copy of the cookie, and Redis
//! going away is a 503 (never a login loop, never a 500) that heals without a restart.

use std::time::Duration;

use portcullis::demo::DevIdpConfig;
use reqwest::StatusCode;

use crate::support::redis::RedisServer;
use crate::support::tokens::{access_token, API_AUDIENCE};
use crate::support::*;

/// A proxy whose sessions live in `redis`; a short call timeout so an outage shows fast.
async fn world(redis: &RedisServer) -> World {
    let url = redis.url();
    World::start_with(
        |c| c,
        |toml| {
            session_option(toml, "store = \"redis\"")
                + &format!(
                    "\n[session.redis]\nurl = \"{url}\"\ntimeout = \"500ms\"\n\n[bearer]\naudiences = [\"{API_AUDIENCE}\"]\n"
                )
        },
    )
    .await
}

/// The keys portcullis wrote.
fn keys(redis: &RedisServer) -> Vec<String> {
    let mut c = redis.connection();
    ::redis::cmd("KEYS").arg("*").query(&mut c).expect("KEYS")
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_live_in_redis_encrypted_and_end_everywhere_at_sign_out() {
    let redis = RedisServer::start().await;
    let w = world(&redis).await;
    let mut alice = Browser::new();
    alice.login(&w.proxy, "alice", "/app").await;
    let r = alice.api(&w.proxy.url("/app")).await;
    let echoed = Echoed::from(r).await;
    assert_eq!(echoed.all("x-forwarded-user"), ["alice"]);

    // The cookie is a small ticket; Redis holds one encrypted body with the session's TTL.
    let cookie = alice
        .jar
        .cookies
        .get("_portcullis")
        .expect("session cookie")
        .clone();
    assert!(
        cookie.len() < 200,
        "the ticket cookie is {} bytes",
        cookie.len()
    );
    let stored = keys(&redis);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(stored[0].starts_with("portcullis:session:"), "{stored:?}");
    let mut c = redis.connection();
    let ttl: i64 = ::redis::cmd("TTL").arg(&stored[0]).query(&mut c).unwrap();
    assert!((43_000..=43_200).contains(&ttl), "TTL {ttl}");
    // Neither the value nor a dump of the whole database shows who signed in or a token.
    let body: Vec<u8> = ::redis::cmd("GET").arg(&stored[0]).query(&mut c).unwrap();
    let () = ::redis::cmd("SAVE").query(&mut c).unwrap();
    let dump = std::fs::read(redis.dir.join("dump.rdb")).expect("dump.rdb");
    for secret in ["alice", "example.com", "sre"] {
        for (what, bytes) in [("value", &body), ("dump", &dump)] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{what} shows {secret}"
            );
        }
    }
    let session_json = {
        let mut probe = Browser {
            client: alice.client.clone(),
            jar: alice.jar.clone(),
        };
        probe.api(&w.proxy.url("/oauth2/userinfo")).await
    };
    assert_eq!(session_json.status(), StatusCode::OK);

    // A copy of the cookie (a second device, a stolen one) stops working at sign-out.
    let mut copy = Browser {
        client: plain_client(),
        jar: alice.jar.clone(),
    };
    alice.sign_out(&w.proxy.url("/oauth2/sign_out")).await;
    assert!(keys(&redis).is_empty(), "the session is deleted");
    let r = copy.get(&w.proxy.url("/app"), BROWSER_ACCEPT).await;
    assert_eq!(r.status(), StatusCode::FOUND, "the copy is signed out");
    assert!(location(&r).starts_with("/oauth2/start"));
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_away_is_a_503_for_cookies_only_and_heals_without_a_restart() {
    let mut redis = RedisServer::start().await;
    let w = world(&redis).await;
    let mut alice = Browser::new();
    alice.login(&w.proxy, "alice", "/app").await;
    let token = access_token(&w.idp);
    let bearer = || {
        plain_client()
            .get(w.proxy.url("/api"))
            .header("authorization", format!("Bearer {token}"))
            .send()
    };

    // Frozen Redis: the browser gets a 503 page (not a login redirect, not a 500); its
    // cookie is kept; bearer callers are served; /ready says degraded.
    redis.pause();
    let r = alice.get(&w.proxy.url("/app"), BROWSER_ACCEPT).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        r.headers().get("set-cookie").is_none(),
        "the cookie is kept"
    );
    assert!(r.text().await.unwrap().contains("Temporarily unavailable"));
    let r = alice.api(&w.proxy.url("/app")).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(bearer().await.unwrap().status(), StatusCode::OK);
    let ready = plain_client()
        .get(w.proxy.url("/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert!(ready
        .text()
        .await
        .unwrap()
        .starts_with("degraded: session store unreachable"));

    // Back: the same cookie works again, no restart.
    redis.resume();
    let client = alice.client.clone();
    let header = alice.jar.header();
    let url = w.proxy.url("/app");
    wait_until("the session to work again", Duration::from_secs(10), || {
        let req = client
            .get(&url)
            .header("accept", "application/json")
            .header("cookie", &header);
        async move { req.send().await.is_ok_and(|r| r.status() == StatusCode::OK) }
    })
    .await;

    // A Redis that restarted empty: the user is signed out cleanly (login redirect, cookie
    // cleared), not shown an error.
    redis.restart_empty().await;
    // The first call after the restart may meet the dead connection (503); one of the next
    // ones reconnects. Polled without taking the answer's cookies.
    let header = alice.jar.header();
    wait_until(
        "portcullis to reach the new redis",
        Duration::from_secs(10),
        || {
            let req = client
                .get(&url)
                .header("accept", "application/json")
                .header("cookie", &header);
            async move {
                req.send()
                    .await
                    .is_ok_and(|r| r.status() != StatusCode::SERVICE_UNAVAILABLE)
            }
        },
    )
    .await;
    let r = alice.get(&w.proxy.url("/app"), BROWSER_ACCEPT).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(location(&r).starts_with("/oauth2/start"));
    assert!(!alice.jar.cookies.contains_key("_portcullis"), "cleared");
    assert!(!w.proxy.log().contains("\"status\":500"), "no 500 ever");
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_share_one_refresh_of_a_session() {
    let redis = RedisServer::start().await;
    let ports = [free_port(), free_port(), free_port()];
    let idp = start_idp(DevIdpConfig {
        access_token_ttl: Duration::from_secs(2),
        rotate_refresh_tokens: true,
        ..idp_config(ports[0])
    })
    .await;
    let echo = start_echo().await;
    let mut replicas = Vec::new();
    for port in ports {
        let toml = session_option(
            config(port, idp.issuer(), &format!("http://{}", echo.addr()), ""),
            "store = \"redis\"",
        ) + &format!("\n[session.redis]\nurl = \"{}\"\n", redis.url());
        let proxy = Proxy::start(port, &toml).await;
        proxy.wait_ready().await;
        replicas.push(proxy);
    }
    let mut alice = Browser::new();
    alice.login(&replicas[0], "alice", "/app").await;
    let before = idp.stats().refresh_token_grants;
    assert_eq!(before, 0);

    // Past the access token's lifetime: every request of the session needs a refresh.
    let expired_at = std::time::Instant::now() + Duration::from_secs(3);
    wait_until(
        "the access token to expire",
        Duration::from_secs(10),
        || async move { std::time::Instant::now() >= expired_at },
    )
    .await;
    let cookie = alice.jar.header();
    let mut calls = Vec::new();
    for i in 0..30 {
        let url = replicas[i % 3].url("/app");
        let req = alice
            .client
            .get(url)
            .header("accept", "application/json")
            .header("cookie", cookie.clone());
        calls.push(tokio::spawn(async move { req.send().await }));
    }
    let mut statuses = Vec::new();
    for call in calls {
        let r = call.await.expect("task").expect("request");
        statuses.push(r.status().as_u16());
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let stats = idp.stats();
    assert_eq!(
        stats.refresh_token_grants, 1,
        "exactly one refresh at the provider"
    );
    assert_eq!(
        stats.refresh_token_grants_failed, 0,
        "no refresh token spent twice"
    );
    // The session goes on with the new tokens on every replica.
    for proxy in &replicas {
        let r = alice.api(&proxy.url("/app")).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
}
