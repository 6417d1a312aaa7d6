//! TLS listeners: HTTP/1.1 and HTTP/2 by ALPN, `X-Forwarded-Proto: https`, client
//! certificates off, optional and required, and certificates reloaded without a restart.
//! Clients: curl (as an operator would call it) and a rustls client that keeps one
//! connection open across a reload. Certificates are made here ([`crate::support::pki`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::support::pki::{Ca, Issued, Role};
use crate::support::tokens::{dealer_claims, dealer_token, DEALER, STATIC_AUDIENCE};
use crate::support::*;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// curl's exit code, its output, and what `-w` appended after the last newline.
async fn curl(args: &[String]) -> (i32, String, String) {
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code} %{http_version}",
        ])
        .args(args)
        .output()
        .await
        .expect("curl");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, tail) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    (
        out.status.code().unwrap_or(-1),
        body.to_string(),
        tail.to_string(),
    )
}

/// curl with these request headers (`Name: value` each).
async fn curl_headers(headers: &[String], url: String) -> (i32, String, String) {
    let mut args: Vec<String> = headers
        .iter()
        .flat_map(|h| ["-H".to_string(), h.clone()])
        .collect();
    args.push(url);
    curl(&args).await
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A `[[server.listeners]]` table.
fn tls_listener(port: u16, server: &Issued, more: &str) -> String {
    format!(
        "\n[[server.listeners]]\naddress = \"127.0.0.1:{port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n{more}\n",
        s(&server.cert),
        s(&server.key)
    )
}

const PUBLIC_ROUTE: &str = "\n[[routes]]\npath = \"/public/\"\npolicy = \"public\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_listener_speaks_http1_and_http2_and_says_https_upstream() {
    let ca = Ca::new("tls test CA");
    let ca_file = ca.file("ca.pem");
    let server = ca.server("tls-server");
    let port = free_port();
    let w = World::start(|c| c, &(tls_listener(port, &server, "") + PUBLIC_ROUTE)).await;
    let url = |path: &str| format!("https://127.0.0.1:{port}{path}");
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let (code, body, tail) = curl(&[
            flag.into(),
            "--cacert".into(),
            s(&ca_file),
            "-H".into(),
            "X-Forwarded-Proto: http".into(),
            url("/public/x"),
        ])
        .await;
        assert_eq!(code, 0, "{flag}: {body}");
        assert_eq!(tail, format!("200 {version}"), "{flag}");
        let echoed: serde_json::Value = serde_json::from_str(&body).expect("echo json");
        let proto: Vec<&str> = echoed["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .filter(|h| {
                h[0].as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case("x-forwarded-proto"))
            })
            .filter_map(|h| h[1].as_str())
            .collect();
        assert_eq!(
            proto,
            ["https"],
            "{flag}: a client's own X-Forwarded-Proto never wins"
        );
        // The same stages on every protocol: an API call without credentials is a 401.
        let (_, _, tail) = curl(&[
            flag.into(),
            "--cacert".into(),
            s(&ca_file),
            "-H".into(),
            "Accept: application/json".into(),
            url("/private"),
        ])
        .await;
        assert_eq!(tail, format!("401 {version}"), "{flag}");
    }
    // With http2 = false, ALPN offers HTTP/1.1 only.
    let port2 = free_port();
    let toml = tls_listener(port2, &server, "http2 = false") + PUBLIC_ROUTE;
    let w2 = World::start(|c| c, &toml).await;
    let (code, _, tail) = curl(&[
        "--http2".into(),
        "--cacert".into(),
        s(&ca_file),
        format!("https://127.0.0.1:{port2}/public/x"),
    ])
    .await;
    assert_eq!((code, tail.as_str()), (0, "200 1.1"));
    drop((w, w2));
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_are_required_or_optional_as_configured() {
    let ca = Ca::new("client CA");
    let ca_file = ca.file("clients-ca.pem");
    let other = Ca::new("another CA");
    let server = ca.server("mtls-server");
    let good = ca.issue(
        "runner",
        "ci-runner",
        &["runner.ci.svc"],
        Role::Client,
        false,
    );
    let expired = ca.issue("old", "old-runner", &[], Role::Client, true);
    let stranger = other.issue("stranger", "ci-runner", &[], Role::Client, false);
    let (required, optional) = (free_port(), free_port());
    let toml = tls_listener(
        required,
        &server,
        &format!(
            "client_certs = \"required\"\nclient_ca = \"{}\"",
            s(&ca_file)
        ),
    ) + &tls_listener(
        optional,
        &server,
        &format!(
            "client_certs = \"optional\"\nclient_ca = \"{}\"",
            s(&ca_file)
        ),
    ) + PUBLIC_ROUTE;
    let w = World::start(|c| c, &toml).await;
    let call = |port: u16, cert: Option<&Issued>| {
        let mut args = vec!["--cacert".to_string(), s(&ca_file)];
        if let Some(c) = cert {
            args.extend(["--cert".into(), s(&c.cert), "--key".into(), s(&c.key)]);
        }
        args.push(format!("https://127.0.0.1:{port}/public/x"));
        async move { curl(&args).await }
    };
    let served = |r: &(i32, String, String)| r.0 == 0 && r.2.starts_with("200 ");
    let cases = [
        (required, None, false, "required, no certificate"),
        (
            required,
            Some(&good),
            true,
            "required, a certificate of the CA",
        ),
        (
            required,
            Some(&expired),
            false,
            "required, an expired certificate",
        ),
        (
            required,
            Some(&stranger),
            false,
            "required, another CA's certificate",
        ),
        (optional, None, true, "optional, no certificate"),
        (
            optional,
            Some(&good),
            true,
            "optional, a certificate of the CA",
        ),
        (
            optional,
            Some(&stranger),
            false,
            "optional, another CA's certificate",
        ),
    ];
    for (port, cert, expect, case) in cases {
        let r = call(port, cert).await;
        assert_eq!(served(&r), expect, "{case}: {r:?}");
    }
    // A client that names the server by an IP address in SNI (wrk, OpenSSL's s_client; rustls
    // warns about it) is served all the same.
    let sni = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{optional}")])
        .args(["-servername", "127.0.0.1", "-CAfile", &s(&ca_file)])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("openssl s_client");
    assert!(
        String::from_utf8_lossy(&sni.stdout).contains("Verify return code: 0"),
        "{}",
        String::from_utf8_lossy(&sni.stderr)
    );
    // Refused handshakes are the clients' business: no error or warning line for them.
    let log = w.proxy.log();
    for level in ["\"level\":\"ERROR\"", "\"level\":\"WARN\""] {
        assert!(!log.contains(level), "{log}");
    }
    drop(w);
}

/// A rustls client that trusts `ca` and checks the name `127.0.0.1`.
fn client(ca: &Ca) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).expect("ca pem"))
        .expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn connect(connector: &tokio_rustls::TlsConnector, port: u16) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    connector.connect(name, tcp).await.expect("handshake")
}

/// The certificate the server presented on `conn`.
fn presented(conn: &TlsStream<TcpStream>) -> Vec<u8> {
    conn.get_ref()
        .1
        .peer_certificates()
        .expect("peer certificates")[0]
        .to_vec()
}

fn der(issued: &Issued) -> Vec<u8> {
    CertificateDer::from_pem_slice(issued.cert_pem.as_bytes())
        .expect("cert pem")
        .to_vec()
}

/// One keep-alive request on `conn`: its status.
async fn get(conn: &mut TlsStream<TcpStream>) -> u16 {
    conn.write_all(b"GET /public/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("content-length");
            if body.len() >= length {
                return status_of(&text).expect("status");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_reload_on_sighup_and_on_change_and_a_broken_file_keeps_the_old_one() {
    let ca = Ca::new("reload CA");
    let first = ca.server("first");
    let port = free_port();
    // The listener reads the files at these paths; the test rewrites them.
    let cert = scratch_file("live.crt", first.cert_pem.as_bytes());
    let key = scratch_file("live.key", first.key_pem.as_bytes());
    let live = Issued {
        cert: cert.clone(),
        key: key.clone(),
        cert_pem: first.cert_pem.clone(),
        key_pem: first.key_pem.clone(),
    };
    let w = World::start(
        |c| c,
        &(tls_listener(port, &live, "http2 = false") + PUBLIC_ROUTE),
    )
    .await;
    let tls = &client(&ca);
    let mut kept = connect(tls, port).await;
    assert_eq!(presented(&kept), der(&first));
    assert_eq!(get(&mut kept).await, 200);

    // SIGHUP: new handshakes get the new certificate; the open connection keeps working.
    let second = ca.server("second");
    std::fs::write(&cert, &second.cert_pem).expect("write cert");
    std::fs::write(&key, &second.key_pem).expect("write key");
    w.proxy.hangup();
    let want = &der(&second);
    wait_until(
        "the reloaded certificate",
        Duration::from_secs(10),
        move || async move { presented(&connect(tls, port).await) == *want },
    )
    .await;
    assert_eq!(
        get(&mut kept).await,
        200,
        "an open connection keeps being served"
    );
    assert_eq!(presented(&kept), der(&first), "and keeps its certificate");

    // A change of the files alone (a Kubernetes Secret update) is picked up too.
    let third = ca.server("third");
    std::fs::write(&key, &third.key_pem).expect("write key");
    std::fs::write(&cert, &third.cert_pem).expect("write cert");
    let want = &der(&third);
    wait_until(
        "the changed certificate",
        Duration::from_secs(10),
        move || async move { presented(&connect(tls, port).await) == *want },
    )
    .await;

    // A broken file is not loaded: the certificate in use stays, and the log says why.
    std::fs::write(&cert, "not a certificate").expect("write cert");
    let proxy = &w.proxy;
    wait_until(
        "the refusal in the log",
        Duration::from_secs(10),
        move || async move { proxy.log().contains("TLS files not reloaded") },
    )
    .await;
    let mut fresh = connect(tls, port).await;
    assert_eq!(presented(&fresh), der(&third));
    assert_eq!(get(&mut fresh).await, 200);
    let log = w.proxy.log();
    assert!(log.contains(&s(&cert)), "the log names the file: {log}");
    assert!(
        !log.contains("PRIVATE KEY"),
        "never key material in the log"
    );
}

/// The values the echo upstream received under `name`.
fn echoed(body: &str, name: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(body).expect("echo json");
    v["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .filter_map(|h| h[1].as_str().map(str::to_string))
        .collect()
}

fn sha256_hex(pem: &str) -> String {
    use sha2::Digest;
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("pem");
    sha2::Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const CERT_ROUTES: &str = r#"
[[routes]]
path = "/ci/"
client_cert_sans = ["spiffe://cluster.local/ns/ci/sa/runner", "dns:runner.ci.svc"]
[[routes]]
path = "/ops/"
client_cert_subjects = ["CN=ops-bot,O=acme"]
[[routes]]
path = "/any-cert/"
client_cert = true
[[routes]]
path = "/public/"
policy = "public"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_is_an_identity_on_routes_that_ask_for_one_and_reaches_upstream_as_xfcc(
) {
    let ca = Ca::new("identity CA");
    let ca_file = ca.file("identity-ca.pem");
    let server = ca.server("identity-server");
    let runner = ca.issue(
        "runner",
        "ci-runner",
        &["spiffe://cluster.local/ns/ci/sa/runner", "runner.ci.svc"],
        Role::Client,
        false,
    );
    let ops = ca.issue("ops", "ops-bot", &[], Role::Client, false);
    let port = free_port();
    let toml = tls_listener(
        port,
        &server,
        &format!(
            "client_certs = \"optional\"\nclient_ca = \"{}\"",
            s(&ca_file)
        ),
    ) + CERT_ROUTES;
    let w = World::start(|c| c, &toml).await;
    let call = |path: &str, cert: Option<&Issued>, extra: &[&str]| {
        let mut args = vec!["--cacert".to_string(), s(&ca_file)];
        if let Some(c) = cert {
            args.extend(["--cert".into(), s(&c.cert), "--key".into(), s(&c.key)]);
        }
        for h in extra {
            args.extend(["-H".to_string(), h.to_string()]);
        }
        args.push(format!("https://127.0.0.1:{port}{path}"));
        async move { curl(&args).await }
    };
    let forged = "X-Forwarded-Client-Cert: Hash=0000000000000000000000000000000000000000000000000000000000000000;URI=spiffe://cluster.local/ns/ci/sa/runner";

    // The certificate alone authenticates where the route asks for it; its URI name is the user.
    let (_, body, tail) = call("/ci/build", Some(&runner), &[forged]).await;
    assert_eq!(tail, "200 2", "{body}");
    assert_eq!(
        echoed(&body, "x-forwarded-user"),
        ["spiffe://cluster.local/ns/ci/sa/runner"]
    );
    let xfcc = echoed(&body, "x-forwarded-client-cert");
    assert_eq!(xfcc.len(), 1, "only ours, never the client's: {xfcc:?}");
    assert!(
        xfcc[0].starts_with(&format!("Hash={};", sha256_hex(&runner.cert_pem))),
        "{xfcc:?}"
    );
    assert!(
        xfcc[0].contains("Subject=\"CN=ci-runner,O=acme\""),
        "{xfcc:?}"
    );
    assert!(
        xfcc[0].contains(";URI=spiffe://cluster.local/ns/ci/sa/runner"),
        "{xfcc:?}"
    );
    assert!(xfcc[0].contains(";DNS=runner.ci.svc"), "{xfcc:?}");

    // Subjects match as written; without SANs the subject is the user.
    let (_, body, tail) = call("/ops/deploy", Some(&ops), &[]).await;
    assert_eq!(tail, "200 2", "{body}");
    assert_eq!(echoed(&body, "x-forwarded-user"), ["CN=ops-bot,O=acme"]);
    let (_, _, tail) = call("/any-cert/x", Some(&ops), &[]).await;
    assert_eq!(tail, "200 2");

    // The wrong certificate, or none, is refused with 403 whatever else the request says.
    for (path, cert, case) in [
        ("/ci/build", Some(&ops), "another certificate"),
        ("/ops/deploy", Some(&runner), "another subject"),
        ("/ci/build", None, "no certificate"),
        ("/any-cert/x", None, "no certificate"),
    ] {
        let (_, body, tail) = call(path, cert, &[forged, "Accept: application/json"]).await;
        assert_eq!(tail, "403 2", "{path}, {case}: {body}");
        assert!(body.contains("client_certificate"), "{body}");
    }
    // Elsewhere a certificate is not a login: the default rule still asks for one.
    let (_, _, tail) = call("/elsewhere", Some(&runner), &["Accept: application/json"]).await;
    assert_eq!(tail, "401 2");
    // A client's own XFCC never reaches the upstream.
    let (_, body, _) = call("/public/x", None, &[forged]).await;
    assert!(
        echoed(&body, "x-forwarded-client-cert").is_empty(),
        "{body}"
    );
    let log = w.proxy.log();
    assert!(log.contains("\"outcome\":\"client_cert\""), "{log}");
}

/// A proxy that believes `header` from the peers in `trusted`.
async fn behind(header: &str, trusted: &str) -> World {
    let line = format!("trusted_proxies = [\"{trusted}\"]\nclient_cert_header = \"{header}\"");
    World::start_with(|c| c, |t| server_option(t, &line) + CERT_ROUTES).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxys_certificate_header_is_believed_and_nobody_elses() {
    let ca = Ca::new("ingress CA");
    let runner = ca.issue(
        "ingress-runner",
        "ci-runner",
        &["spiffe://cluster.local/ns/ci/sa/runner"],
        Role::Client,
        false,
    );
    // As nginx's $ssl_client_escaped_cert writes it: percent-encoded (a space is %20; the `+`
    // of base64 stays a character of the certificate).
    let escaped =
        percent_encoding::utf8_percent_encode(&runner.cert_pem, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    let hash = sha256_hex(&runner.cert_pem);
    let xfcc = format!(
        "Hash={hash};Subject=\"CN=ci-runner,O=acme\";URI=spiffe://cluster.local/ns/ci/sa/runner"
    );
    for (header, value) in [
        ("x-forwarded-client-cert", xfcc.clone()),
        ("ssl-client-cert", escaped.clone()),
    ] {
        let trusting = behind(header, "127.0.0.1").await;
        let stranger = behind(header, "10.0.0.0/8").await;
        let (_, body, tail) = curl_headers(
            &[format!("{header}: {value}")],
            trusting.proxy.url("/ci/build"),
        )
        .await;
        assert_eq!(tail, "200 1.1", "{header} from a trusted proxy: {body}");
        assert_eq!(
            echoed(&body, "x-forwarded-user"),
            ["spiffe://cluster.local/ns/ci/sa/runner"]
        );
        let sent = echoed(&body, "x-forwarded-client-cert");
        assert!(
            sent.len() == 1 && sent[0].starts_with(&format!("Hash={hash}")),
            "{sent:?}"
        );
        // Two reports, or one that cannot be read, are refused rather than guessed at.
        let (_, _, tail) = curl_headers(
            &[format!("{header}: {value}"), format!("{header}: {value}")],
            trusting.proxy.url("/ci/build"),
        )
        .await;
        assert_eq!(tail, "400 1.1", "{header} twice");
        let (_, _, tail) = curl_headers(
            &[format!("{header}: Hash=nothex")],
            trusting.proxy.url("/ci/build"),
        )
        .await;
        assert_eq!(tail, "400 1.1", "{header} unreadable");
        // From a peer that is not a trusted proxy the header means nothing.
        let (_, body, tail) = curl_headers(
            &[
                format!("{header}: {value}"),
                "Accept: application/json".to_string(),
            ],
            stranger.proxy.url("/ci/build"),
        )
        .await;
        assert_eq!(tail, "403 1.1", "{header} from a stranger: {body}");
        let (_, body, _) = curl_headers(
            &[format!("{header}: {value}")],
            stranger.proxy.url("/public/x"),
        )
        .await;
        assert!(echoed(&body, header).is_empty(), "{body}");
        assert!(
            echoed(&body, "x-forwarded-client-cert").is_empty(),
            "{body}"
        );
    }
}

/// The dealer issuer (static RS512 key), optionally only for bound tokens.
fn dealer_issuer(require_bound: bool) -> String {
    format!(
        "\n[[bearer.issuers]]\nissuer = \"{DEALER}\"\naudiences = [\"{STATIC_AUDIENCE}\"]\npublic_keys = [\"{}\"]\nrequire_bound_tokens = {require_bound}\n\n[[routes]]\npath = \"/bound-only/\"\nrequire_bound_tokens = true\n",
        crate::support::keys::fixture("dealer-rs512.pub.pem").display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_bound_token_is_accepted_only_with_its_certificate() {
    portcullis::jwt::provider::install();
    let ca = Ca::new("binding CA");
    let ca_file = ca.file("binding-ca.pem");
    let server = ca.server("binding-server");
    let runner = ca.issue("bound-runner", "ci-runner", &[], Role::Client, false);
    let other = ca.issue("other-runner", "ci-runner", &[], Role::Client, false);
    let thumbprint = {
        use base64::Engine;
        use sha2::Digest;
        let der = CertificateDer::from_pem_slice(runner.cert_pem.as_bytes()).expect("pem");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&der))
    };
    let token = |cnf: Option<serde_json::Value>| {
        let mut claims = dealer_claims("svc");
        if let Some(cnf) = cnf {
            claims["cnf"] = cnf;
        }
        dealer_token(&claims)
    };
    let bound = token(Some(serde_json::json!({ "x5t#S256": thumbprint })));
    let unbound = token(None);
    let dpop_bound = token(Some(
        serde_json::json!({ "jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I" }),
    ));
    let odd = token(Some(serde_json::json!({ "kid": "k1" })));
    for issuer_requires in [false, true] {
        let port = free_port();
        let toml = tls_listener(
            port,
            &server,
            &format!(
                "client_certs = \"optional\"\nclient_ca = \"{}\"",
                s(&ca_file)
            ),
        ) + &dealer_issuer(issuer_requires);
        let _world = World::start(|c| c, &toml).await;
        let call = |path: &str, token: &str, cert: Option<&Issued>| {
            let mut args = vec![
                "--cacert".to_string(),
                s(&ca_file),
                "-H".into(),
                format!("Authorization: Bearer {token}"),
            ];
            if let Some(c) = cert {
                args.extend(["--cert".into(), s(&c.cert), "--key".into(), s(&c.key)]);
            }
            args.push(format!("https://127.0.0.1:{port}{path}"));
            async move { curl(&args).await }
        };
        let cases = [
            (
                "/api/x",
                &bound,
                Some(&runner),
                "200",
                "bound, with its certificate",
            ),
            (
                "/bound-only/x",
                &bound,
                Some(&runner),
                "200",
                "bound, where only bound ones go",
            ),
            (
                "/api/x",
                &bound,
                Some(&other),
                "401",
                "bound, another certificate",
            ),
            ("/api/x", &bound, None, "401", "bound, no certificate"),
            (
                "/bound-only/x",
                &unbound,
                Some(&runner),
                "401",
                "unbound where bound ones are required",
            ),
            (
                "/api/x",
                &dpop_bound,
                Some(&runner),
                "401",
                "DPoP-bound sent as Bearer",
            ),
            (
                "/api/x",
                &odd,
                Some(&runner),
                "401",
                "a confirmation method not supported",
            ),
        ];
        for (path, token, cert, want, case) in cases {
            let (_, body, tail) = call(path, token, cert).await;
            assert!(
                tail.starts_with(want),
                "{case} (issuer requires: {issuer_requires}): {tail} {body}"
            );
            if want == "401" {
                assert!(body.contains("invalid_token"), "{case}: {body}");
            }
        }
        // An unbound token elsewhere: accepted unless its issuer asks for bound ones.
        let (_, body, tail) = call("/api/x", &unbound, None).await;
        let want = if issuer_requires { "401" } else { "200" };
        assert!(
            tail.starts_with(want),
            "unbound (issuer requires: {issuer_requires}): {tail} {body}"
        );
    }
}
