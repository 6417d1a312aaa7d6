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
    let all = keys(&redis);
    let stored: Vec<&String> = all
        .iter()
        .filter(|k| k.starts_with("portcullis:session:"))
        .collect();
    assert_eq!(stored.len(), 1, "{all:?}");
    // Besides it only the sub and sid indexes, keyed by MACs: no name in a key either.
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(all.iter().all(|k| !k.contains("alice")), "{all:?}");
    let mut c = redis.connection();
    let ttl: i64 = ::redis::cmd("TTL").arg(stored[0]).query(&mut c).unwrap();
    assert!((43_000..=43_200).contains(&ttl), "TTL {ttl}");
    // Neither the value nor a dump of the whole database shows who signed in or a token.
    let body: Vec<u8> = ::redis::cmd("GET").arg(stored[0]).query(&mut c).unwrap();
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
    assert!(
        keys(&redis)
            .iter()
            .all(|k| !k.starts_with("portcullis:session:")),
        "the session is deleted"
    );
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
    one_refresh_across_three_replicas(|toml, redis| {
        session_option(toml, "store = \"redis\"")
            + &format!("\n[session.redis]\nurl = \"{}\"\n", redis.url())
    })
    .await;
}

/// The same with the cookie store and `[session.revocation]`: the revocation list's Redis
/// holds the lease, and the refreshed session is handed over (sealed under its old refresh
/// token) to the replicas that waited and to the requests still carrying the old cookie.
#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_with_the_cookie_store_and_a_revocation_list_share_one_refresh() {
    one_refresh_across_three_replicas(|toml, redis| {
        toml + &format!("\n[session.revocation]\nurl = \"{}\"\n", redis.url())
    })
    .await;
}

/// Three replicas configured by `store` share one Redis; 30 concurrent requests of one
/// session right after its access token expired cost one refresh at the provider (which
/// rotates refresh tokens), and no request fails.
async fn one_refresh_across_three_replicas(store: impl Fn(String, &RedisServer) -> String) {
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
        let toml = store(
            config(port, idp.issuer(), &format!("http://{}", echo.addr()), ""),
            &redis,
        );
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

/// `portcullis sessions revoke --sub <sub>` against `config`; what it printed.
fn revoke_sub(config: &std::path::Path, sub: &str) -> String {
    let out = std::process::Command::new(binary())
        .args(["sessions", "revoke", "--config"])
        .arg(config)
        .args(["--sub", sub])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A logout token of the world's provider (see [`crate::support::tokens::logout_token`]).
fn logout_token(w: &World, extra: serde_json::Value) -> String {
    crate::support::tokens::logout_token(&w.idp, extra)
}

async fn post_logout(w: &World, token: &str) -> u16 {
    plain_client()
        .post(w.proxy.url("/oauth2/backchannel_logout"))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The provider ends a login (back-channel logout); an administrator ends a user's sessions
/// (`portcullis sessions revoke`). Both end every copy of the cookie; a forged, replayed or
/// otherwise wrong logout token ends nothing.
#[tokio::test(flavor = "multi_thread")]
async fn back_channel_logout_and_revoke_end_sessions_in_redis() {
    let redis = RedisServer::start().await;
    let w = world(&redis).await;
    let mut alice = Browser::new();
    alice.login(&w.proxy, "alice", "/app").await;
    let signed_in = |b: &Browser| {
        let req = b
            .client
            .get(w.proxy.url("/app"))
            .header("accept", "application/json")
            .header("cookie", b.jar.header());
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(signed_in(&alice).await, 200);

    // Wrong tokens end nothing.
    let forged = {
        let good = logout_token(&w, serde_json::json!({}));
        let (head, rest) = good.split_once('.').unwrap();
        let (payload, _) = rest.split_once('.').unwrap();
        let other = crate::support::keys::EcKey::generate(jsonwebtoken::Algorithm::ES256);
        let sig = other.sign_raw(format!("{head}.{payload}").as_bytes());
        format!("{head}.{payload}.{}", crate::support::jws::b64(&sig))
    };
    let wrong = [
        ("another key's signature", forged),
        (
            "a nonce",
            logout_token(&w, serde_json::json!({"nonce": "n"})),
        ),
        (
            "no event",
            logout_token(&w, serde_json::json!({"events": {}})),
        ),
        (
            "another audience",
            logout_token(&w, serde_json::json!({"aud": "x"})),
        ),
        (
            "neither sub nor sid",
            logout_token(&w, serde_json::json!({"sub": null})),
        ),
        ("expired", logout_token(&w, serde_json::json!({"exp": 1}))),
    ];
    for (case, token) in &wrong {
        assert_eq!(post_logout(&w, token).await, 400, "{case}");
    }
    assert_eq!(signed_in(&alice).await, 200, "still signed in");

    // The provider's logout for alice ends her session; the same token again is refused.
    let token = logout_token(&w, serde_json::json!({}));
    assert_eq!(post_logout(&w, &token).await, 200);
    assert_eq!(signed_in(&alice).await, 401);
    assert_eq!(post_logout(&w, &token).await, 400, "replayed");

    // The administrator's lever, from the command line against the same Redis.
    let mut bob = Browser::new();
    bob.login(&w.proxy, "bob", "/app").await;
    assert_eq!(signed_in(&bob).await, 200);
    assert_eq!(
        revoke_sub(&w.proxy.config_path, "bob"),
        "ended 1 session(s)"
    );
    assert_eq!(signed_in(&bob).await, 401);
}

/// With the cookie store, back-channel logout ends the login in this process (documented):
/// the cookie stops working here at once.
#[tokio::test(flavor = "multi_thread")]
async fn back_channel_logout_with_the_cookie_store_ends_the_login_in_this_process() {
    let w = World::start(|c| c, "").await;
    let mut alice = Browser::new();
    alice.login(&w.proxy, "alice", "/app").await;
    assert_eq!(
        alice.api(&w.proxy.url("/app")).await.status(),
        StatusCode::OK
    );
    let token = logout_token(&w, serde_json::json!({}));
    assert_eq!(post_logout(&w, &token).await, 200);
    assert_eq!(
        alice.api(&w.proxy.url("/app")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(post_logout(&w, &token).await, 400, "replayed");
}

/// A logout token whose sessions could not be ended is not spent: the provider's retry of the
/// same token is carried out, and only then is it a replay. Redis' ACL makes the failure
/// land exactly between the two steps: portcullis may mark the token used (and read the
/// list) but not record the ended sessions, until the operator grants it.
#[tokio::test(flavor = "multi_thread")]
async fn a_logout_token_that_could_not_be_carried_out_is_accepted_again() {
    let redis = RedisServer::start().await;
    redis.cli(&[
        "ACL",
        "SETUSER",
        "portcullis",
        "on",
        ">pc-password",
        "+@all",
        "%R~*",
        "~*{revoked}:seen:*",
    ]);
    let url = format!("redis://portcullis:pc-password@127.0.0.1:{}/0", redis.port);
    let w = World::start_with(
        |c| c,
        |toml| toml + &format!("\n[session.revocation]\nurl = \"{url}\"\n"),
    )
    .await;
    let mut alice = Browser::new();
    alice.login(&w.proxy, "alice", "/app").await;
    let token = logout_token(&w, serde_json::json!({}));
    assert_eq!(post_logout(&w, &token).await, 503);
    assert_eq!(
        post_logout(&w, &token).await,
        503,
        "a retry is not a replay"
    );
    assert_eq!(
        alice.api(&w.proxy.url("/app")).await.status(),
        StatusCode::OK,
        "nothing ended yet"
    );
    redis.cli(&["ACL", "SETUSER", "portcullis", "~*"]);
    assert_eq!(post_logout(&w, &token).await, 200);
    assert_eq!(
        alice.api(&w.proxy.url("/app")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(post_logout(&w, &token).await, 400, "now it is a replay");
}

/// The same sessions in a Redis Cluster (three masters): login, a session read through the
/// cluster, sign-out that deletes it.
#[tokio::test(flavor = "multi_thread")]
async fn sessions_work_in_a_redis_cluster() {
    let cluster = crate::support::redis::RedisCluster::start().await;
    let nodes = cluster.toml_list();
    let w = World::start_with(
        |c| c,
        |toml| {
            session_option(toml, "store = \"redis\"")
                + &format!("\n[session.redis]\ncluster = {nodes}\n")
        },
    )
    .await;
    let mut alice = Browser::new();
    alice.login(&w.proxy, "alice", "/app").await;
    let mut copy = Browser {
        client: plain_client(),
        jar: alice.jar.clone(),
    };
    assert_eq!(
        alice.api(&w.proxy.url("/app")).await.status(),
        StatusCode::OK
    );
    alice.sign_out(&w.proxy.url("/oauth2/sign_out")).await;
    assert_eq!(
        copy.api(&w.proxy.url("/app")).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// The same through Sentinel: portcullis asks the sentinel for the master and keeps the
/// session there.
#[tokio::test(flavor = "multi_thread")]
async fn sessions_work_through_sentinel() {
    let sentinel = crate::support::redis::RedisSentinel::start().await;
    let port = sentinel.port;
    let w = World::start_with(
        |c| c,
        |toml| {
            session_option(toml, "store = \"redis\"")
                + &format!(
                    "\n[session.redis]\nsentinel = {{ master = \"mymaster\", nodes = [\"redis://127.0.0.1:{port}\"] }}\n"
                )
        },
    )
    .await;
    let mut alice = Browser::new();
    alice.login(&w.proxy, "alice", "/app").await;
    assert_eq!(
        alice.api(&w.proxy.url("/app")).await.status(),
        StatusCode::OK
    );
    // The session is on the master the sentinel named.
    let mut c = sentinel.master.connection();
    let stored: Vec<String> = ::redis::cmd("KEYS")
        .arg("portcullis:session:*")
        .query(&mut c)
        .unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
}

/// The cookie store with `[session.revocation]`: two replicas share a revocation list in
/// Redis, so a sign-out on one, a back-channel logout on one and `sessions revoke` all end the
/// session on the other too.
#[tokio::test(flavor = "multi_thread")]
async fn the_cookie_store_with_a_revocation_list_ends_sessions_on_every_replica() {
    let redis = RedisServer::start().await;
    let ports = [free_port(), free_port()];
    let idp = start_idp(idp_config(ports[0])).await;
    let echo = start_echo().await;
    let mut replicas = Vec::new();
    for port in ports {
        let toml = config(port, idp.issuer(), &format!("http://{}", echo.addr()), "")
            + &format!("\n[session.revocation]\nurl = \"{}\"\n", redis.url());
        let proxy = Proxy::start(port, &toml).await;
        proxy.wait_ready().await;
        replicas.push(proxy);
    }
    let status = |b: &Browser, proxy: &Proxy| {
        let req = b
            .client
            .get(proxy.url("/app"))
            .header("accept", "application/json")
            .header("cookie", b.jar.header());
        async move { req.send().await.unwrap().status().as_u16() }
    };

    // Sign-out on the first replica: a copy of the cookie is refused on the second.
    let mut alice = Browser::new();
    alice.login(&replicas[0], "alice", "/app").await;
    let copy = Browser {
        client: plain_client(),
        jar: alice.jar.clone(),
    };
    assert_eq!(status(&copy, &replicas[1]).await, 200);
    alice.sign_out(&replicas[0].url("/oauth2/sign_out")).await;
    assert_eq!(status(&copy, &replicas[1]).await, 401);

    // The administrator's lever ends bob's sessions on both.
    let mut bob = Browser::new();
    bob.login(&replicas[0], "bob", "/app").await;
    assert_eq!(status(&bob, &replicas[1]).await, 200);
    assert_eq!(
        revoke_sub(&replicas[1].config_path, "bob"),
        "recorded: every replica refuses those sessions from now on"
    );
    for proxy in &replicas {
        assert_eq!(status(&bob, proxy).await, 401);
    }
    // Nothing in Redis names them.
    let mut c = redis.connection();
    let keys: Vec<String> = ::redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    assert!(!keys.is_empty());
    assert!(
        keys.iter()
            .all(|k| !k.contains("alice") && !k.contains("bob")),
        "{keys:?}"
    );
}
