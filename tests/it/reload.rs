//! Hot reload: SIGHUP and changed files bring in a new configuration while requests keep
//! flowing; requests in flight finish on the configuration they began on; a configuration
//! that does not validate (or whose provider cannot be reached) changes nothing.
//!
//! The configuration file is a symlink in a watched directory pointing into one that is not:
//! editing the target changes nothing until SIGHUP, so every step below is triggered by
//! exactly one thing, and the reload counters can be asserted exactly.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::upstream::NamedUpstream;
use crate::support::*;
use reqwest::header::{AUTHORIZATION, COOKIE};
use reqwest::StatusCode;

const HS_ISSUER: &str = "https://hs-dealer.example";
const HS_AUDIENCE: &str = "hs-api";
const FIRST_HS_SECRET: &str = "the first shared secret, 32 bytes or more";
const SECOND_HS_SECRET: &str = "the second shared secret, also 32 bytes or more";
/// A second session secret, put first by a rotation (the first stays to open old cookies).
const NEW_SECRET: &str = "bmV3LXNlY3JldC1uZXctc2VjcmV0LW5ldy1zZWNyZXQtISE";

/// Writes `contents` to `path` the way deployment tools do: a new file renamed over the old.
fn replace_file(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// Points the symlink `link` at `target`, atomically (how a Kubernetes ConfigMap updates).
fn repoint(link: &Path, target: &Path) {
    let tmp = link.with_extension("new-link");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).expect("symlink");
    std::fs::rename(&tmp, link).expect("rename link");
}

fn hs_token(secret: &str) -> String {
    let claims = serde_json::json!({
        "iss": HS_ISSUER, "aud": HS_AUDIENCE, "sub": "hs-job",
        "iat": tokens::now(), "exp": tokens::now() + 300,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256")
}

/// A resource server on `port` in front of `upstream` (`rest`: its issuers and routes), with
/// `/metrics` on `metrics_port`.
fn resource_server(port: u16, metrics_port: u16, upstream: &str, rest: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n\
         [upstream]\nurl = \"{upstream}\"\n[logging]\nformat = \"json\"\n{rest}"
    )
}

/// The reload counters on `/metrics`.
struct Reloads {
    url: String,
}

impl Reloads {
    /// Those served on `metrics_port`.
    fn at(metrics_port: u16) -> Reloads {
        Reloads {
            url: format!("http://127.0.0.1:{metrics_port}/metrics"),
        }
    }

    async fn read(&self) -> (f64, f64, f64) {
        let text = plain_client()
            .get(&self.url)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        (
            metric_value(&text, "portcullis_config_reloads_total{result=\"applied\"}"),
            metric_value(&text, "portcullis_config_reloads_total{result=\"refused\"}"),
            metric_value(&text, "portcullis_config_last_reload_successful"),
        )
    }

    /// Waits until `applied` and `refused` reach these counts, then checks they stay there
    /// (nothing else triggered a reload).
    async fn wait_for(&self, applied: f64, refused: f64) {
        wait_until(
            &format!("{applied} applied and {refused} refused reloads"),
            Duration::from_secs(20),
            || async { (self.read().await.0, self.read().await.1) == (applied, refused) },
        )
        .await;
        let (a, r, _) = self.read().await;
        assert_eq!((a, r), (applied, refused), "one reload per step");
    }
}

/// Requests of one signed-in user, sent without pause until stopped; every answer must be 200
/// from one of the two upstreams.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: String, cookie: String, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, sent, failures) = (stop.clone(), sent.clone(), failures.clone());
                let (url, cookie) = (url.clone(), cookie.clone());
                tokio::spawn(async move {
                    let client = plain_client();
                    while !stop.load(Ordering::Relaxed) {
                        let outcome = match client.get(&url).header(COOKIE, &cookie).send().await {
                            Ok(r) => {
                                let status = r.status();
                                let body = r.text().await.unwrap_or_default();
                                (status == StatusCode::OK
                                    && (body == "upstream-a" || body == "upstream-b"))
                                    .then_some(())
                                    .ok_or(format!("{status}: {body}"))
                            }
                            Err(e) => Err(format!("transport: {e}")),
                        };
                        sent.fetch_add(1, Ordering::Relaxed);
                        if let Err(f) = outcome {
                            failures.lock().expect("failures").push(f);
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            sent,
            failures,
            tasks,
        }
    }

    /// Stops the load; returns how many requests were sent and the failures.
    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("load task");
        }
        let failures = self.failures.lock().expect("failures").clone();
        (self.sent.load(Ordering::Relaxed), failures)
    }
}

/// The files of one test: `watched/portcullis.toml` is a symlink to a file in `elsewhere/`.
struct Files {
    link: PathBuf,
    elsewhere: PathBuf,
    hs_secret: PathBuf,
    versions: AtomicUsize,
}

impl Files {
    fn new() -> Files {
        let watched = scratch_dir("reload-watched");
        let elsewhere = scratch_dir("reload-elsewhere");
        let hs_secret = watched.join("hs.secret");
        std::fs::write(&hs_secret, FIRST_HS_SECRET).expect("hs secret");
        Files {
            link: watched.join("portcullis.toml"),
            elsewhere,
            hs_secret,
            versions: AtomicUsize::new(0),
        }
    }

    /// Links the configuration file to a first version holding `toml`.
    fn link_to(&self, toml: &str) {
        std::os::unix::fs::symlink(self.version(toml), &self.link).expect("symlink");
    }

    /// A new file beside the current target, not yet linked.
    fn version(&self, toml: &str) -> PathBuf {
        let n = self.versions.fetch_add(1, Ordering::SeqCst);
        let path = self.elsewhere.join(format!("config-{n}.toml"));
        std::fs::write(&path, toml).expect("write config");
        path
    }

    /// Rewrites the file the link points to now: unseen by the watcher, until SIGHUP.
    fn edit_in_place(&self, toml: &str) {
        let target = std::fs::read_link(&self.link).expect("link");
        replace_file(&target, toml);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_under_load_changes_secrets_routes_keys_and_upstream_and_fails_no_request() {
    let port = free_port();
    let metrics_port = free_port();
    let idp = start_idp(idp_config(port)).await;
    let a = NamedUpstream::start("upstream-a").await;
    let b = NamedUpstream::start("upstream-b").await;
    let render = |upstream: &str, secrets: &[&str], routes: &str, server: &str, hs: &Path| {
        let extra = format!(
            "[[bearer.issuers]]\nissuer = \"{HS_ISSUER}\"\naudiences = [\"{HS_AUDIENCE}\"]\n\
             shared_secret_file = \"{}\"\n{routes}",
            hs.display()
        );
        let toml = config(port, idp.issuer(), upstream, &extra);
        let toml = server_option(
            toml,
            &format!("metrics_listen = \"127.0.0.1:{metrics_port}\"\n{server}"),
        );
        let secrets: Vec<String> = secrets.iter().map(|s| format!("\"{s}\"")).collect();
        toml.replace(
            &format!("secrets = [\"{SECRET}\"]"),
            &format!("secrets = [{}]", secrets.join(", ")),
        )
    };
    let open_route = "[[routes]]\npath = \"/open/\"\npolicy = \"public\"\n";

    let files = Files::new();
    files.link_to(&render(&a.url(), &[SECRET], "", "", &files.hs_secret));
    let args = [
        "run".to_string(),
        "--config".into(),
        files.link.display().to_string(),
    ];
    let proxy = Proxy::spawn(port, &args, files.link.clone()).await;
    proxy.wait_ready().await;
    let reloads = Reloads::at(metrics_port);
    assert_eq!(reloads.read().await, (0.0, 0.0, 1.0));

    let mut browser = Browser::new();
    browser.login(&proxy, "alice", "/").await;
    let cookie = browser.jar.header();
    let client = plain_client();
    let get = |path: &str, header: Option<(reqwest::header::HeaderName, String)>| {
        let mut req = client.get(proxy.url(path));
        if let Some((name, value)) = header {
            req = req.header(name, value);
        }
        async move {
            let r = req.send().await.expect("request");
            let status = r.status();
            (status, r.text().await.unwrap_or_default())
        }
    };
    let bearer = |secret: &str| Some((AUTHORIZATION, format!("Bearer {}", hs_token(secret))));
    assert_eq!(get("/open/x", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get("/x", bearer(FIRST_HS_SECRET)).await,
        (StatusCode::OK, "upstream-a".to_string())
    );

    let load = Load::start(proxy.url("/app"), cookie, 4);

    // 1. Session secrets rotated (SIGHUP): the signed-in user's cookie keeps working.
    files.edit_in_place(&render(
        &a.url(),
        &[NEW_SECRET, SECRET],
        "",
        "",
        &files.hs_secret,
    ));
    reloads.wait_for(0.0, 0.0).await;
    proxy.hangup();
    reloads.wait_for(1.0, 0.0).await;

    // 2. A route added, by a new file swapped in the way a ConfigMap update does (no signal).
    let with_route = files.version(&render(
        &a.url(),
        &[NEW_SECRET, SECRET],
        open_route,
        "",
        &files.hs_secret,
    ));
    repoint(&files.link, &with_route);
    reloads.wait_for(2.0, 0.0).await;
    assert_eq!(get("/open/x", None).await.0, StatusCode::OK);

    // 3. A file the configuration names changes (the issuer's shared secret): no signal.
    replace_file(&files.hs_secret, SECOND_HS_SECRET);
    reloads.wait_for(3.0, 0.0).await;
    assert_eq!(
        get("/x", bearer(FIRST_HS_SECRET)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(get("/x", bearer(SECOND_HS_SECRET)).await.0, StatusCode::OK);

    // 4. Another upstream (SIGHUP).
    let to_b = render(
        &b.url(),
        &[NEW_SECRET, SECRET],
        open_route,
        "",
        &files.hs_secret,
    );
    files.edit_in_place(&to_b);
    proxy.hangup();
    reloads.wait_for(4.0, 0.0).await;
    assert_eq!(get("/open/x", None).await.1, "upstream-b");

    // 5. A file that does not validate changes nothing; the log names the file and the key.
    let broken = to_b.replace("[session]\n", "[session]\nlifetime = \"forever\"\n");
    files.edit_in_place(&broken);
    proxy.hangup();
    reloads.wait_for(4.0, 1.0).await;
    let (_, _, ok) = reloads.read().await;
    assert_eq!(ok, 0.0, "the last reload was refused");
    let log = proxy.log();
    let refusal = log
        .lines()
        .find(|l| l.contains("configuration not reloaded"))
        .unwrap_or_else(|| panic!("no refusal in the log:\n{log}"));
    assert!(refusal.contains("session.lifetime"), "{refusal}");
    assert!(
        refusal.contains(&files.link.display().to_string()),
        "{refusal}"
    );
    assert_eq!(
        get("/open/x", None).await,
        (StatusCode::OK, "upstream-b".into())
    );

    // 6. A provider that cannot be reached is refused too, before it serves anyone.
    let unreachable = to_b.replace(idp.issuer(), "http://127.0.0.1:9");
    files.edit_in_place(&unreachable);
    proxy.hangup();
    reloads.wait_for(4.0, 2.0).await;
    assert_eq!(
        get("/open/x", None).await,
        (StatusCode::OK, "upstream-b".into())
    );

    // 7. A key that only a restart applies is named in the log, and the rest applies.
    let restart_only = render(
        &b.url(),
        &[NEW_SECRET, SECRET],
        "",
        "threads = 3",
        &files.hs_secret,
    );
    files.edit_in_place(&restart_only);
    proxy.hangup();
    reloads.wait_for(5.0, 2.0).await;
    assert_eq!(reloads.read().await.2, 1.0);
    assert_eq!(get("/open/x", None).await.0, StatusCode::UNAUTHORIZED);
    let log = proxy.log();
    assert!(
        log.lines()
            .any(|l| l.contains("server.threads") && l.contains("next start")),
        "{log}"
    );

    let (sent, failures) = load.finish().await;
    eprintln!(
        "{sent} requests under load across the reloads, {} failed",
        failures.len()
    );
    assert!(sent >= 100, "only {sent} requests under load");
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed across the reloads: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_in_flight_finishes_on_the_configuration_it_began_on() {
    let port = free_port();
    let metrics_port = free_port();
    let a = NamedUpstream::start("upstream-a").await;
    let b = NamedUpstream::start("upstream-b").await;
    let render = |upstream: &str| {
        resource_server(
            port,
            metrics_port,
            upstream,
            &format!(
                "[[bearer.issuers]]\nissuer = \"{HS_ISSUER}\"\naudiences = [\"{HS_AUDIENCE}\"]\n\
                 shared_secret = \"{FIRST_HS_SECRET}\"\n[[routes]]\npath = \"/\"\npolicy = \"public\"\n"
            ),
        )
    };
    let proxy = Proxy::start(port, &render(&a.url())).await;
    let reloads = Reloads::at(metrics_port);
    let held = tokio::spawn({
        let url = proxy.url("/hold");
        async move {
            let r = plain_client().get(url).send().await.expect("held request");
            (r.status(), r.text().await.unwrap_or_default())
        }
    });
    a.holding.notified().await;

    // The file changes (and the watcher reloads it).
    replace_file(&proxy.config_path, &render(&b.url()));
    reloads.wait_for(1.0, 0.0).await;
    let now = plain_client()
        .get(proxy.url("/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(now.text().await.unwrap_or_default(), "upstream-b");

    a.release();
    let (status, body) = held.await.expect("held request");
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "upstream-a"),
        "the request in flight finished on the upstream it began with"
    );
}

/// A reload waits for a provider or key set it names for the first time, never for one the
/// running configuration already had: an issuer that was down before does not hold up a
/// change elsewhere in the file.
#[tokio::test(flavor = "multi_thread")]
async fn an_issuer_that_was_down_before_does_not_hold_up_a_reload() {
    let port = free_port();
    let metrics_port = free_port();
    let closed = free_port();
    let up = NamedUpstream::start("upstream-a").await;
    let render = |routes: &str| {
        resource_server(
            port,
            metrics_port,
            &up.url(),
            &format!(
                "[[bearer.issuers]]\nissuer = \"http://127.0.0.1:{closed}\"\naudiences = [\"api\"]\n\
                 jwks_url = \"http://127.0.0.1:{closed}/keys\"\n{routes}"
            ),
        )
    };
    let proxy = Proxy::start(port, &render("")).await;
    let reloads = Reloads::at(metrics_port);
    let open = || async {
        plain_client()
            .get(proxy.url("/open/x"))
            .send()
            .await
            .expect("request")
            .status()
    };
    assert_eq!(open().await, StatusCode::UNAUTHORIZED);
    replace_file(
        &proxy.config_path,
        &render("[[routes]]\npath = \"/open/\"\npolicy = \"public\"\n"),
    );
    reloads.wait_for(1.0, 0.0).await;
    assert_eq!(open().await, StatusCode::OK);
}
