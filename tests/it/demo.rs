//! `portcullis demo`, the README's first command: a newcomer can log in and see their identity.

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_lets_alice_log_in_and_shows_her_identity_headers() {
    let port = free_port();
    let args = [
        "demo".to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
    ];
    let demo = Proxy::spawn(port, &args, std::path::PathBuf::new()).await;
    demo.wait_ready().await;
    let mut b = Browser::new();
    assert_eq!(b.login(&demo, "alice", "/hello?x=1").await, "/hello?x=1");
    // The page a person sees: the echo upstream's HTML, alice's headers highlighted.
    let page = b
        .get(&demo.url("/hello?x=1"), BROWSER_ACCEPT)
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("portcullis demo upstream"), "{page}");
    assert!(
        page.contains("<tr class=\"identity\"><th>x-forwarded-user</th><td>alice</td></tr>"),
        "{page}"
    );
    let seen = Echoed::from(b.api(&demo.url("/")).await).await;
    assert_eq!(seen.all("x-forwarded-groups"), ["sre,dev"]);
    // bob too.
    let mut b = Browser::new();
    b.login(&demo, "bob", "/").await;
    let seen = Echoed::from(b.api(&demo.url("/")).await).await;
    assert_eq!(seen.all("x-forwarded-user"), ["bob"]);
}
