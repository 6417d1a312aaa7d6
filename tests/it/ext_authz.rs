//! Envoy's external authorization: the gRPC `Authorization/Check` service on
//! `server.ext_authz_listen`, asked with a client built from Envoy's published protos
//! (`envoy-types`, generated from Envoy's `.proto` files), with the check requests Envoy
//! sends; and the HTTP form (`path_prefix: /oauth2/auth`), which answers 200.

use std::collections::HashMap;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::{
    Address, CheckRequest, CheckResponse, DeniedHttpResponse, HttpResponse, OkHttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::SocketAddress;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use reqwest::StatusCode;
use tonic::transport::Channel;

use crate::support::pki::{Ca, Role};
use crate::support::tokens::{dealer_claims, dealer_token, DEALER, STATIC_AUDIENCE};
use crate::support::*;

struct Envoy {
    world: World,
    grpc_port: u16,
    grpc: AuthorizationClient<Channel>,
    alice: Browser,
}

/// A proxy with an ext_authz listener, trusting 127.0.0.1 (for the HTTP form), with alice
/// signed in.
async fn envoy(extra_routes: &str) -> Envoy {
    let grpc_port = free_port();
    let dealer = crate::support::keys::fixture("dealer-rs512.pub.pem");
    let world = World::start_with(|c| c, |toml| {
        server_option(
            toml,
            &format!(
                "ext_authz_listen = \"127.0.0.1:{grpc_port}\"\ntrusted_proxies = [\"127.0.0.1/32\"]"
            ),
        ) + &format!(
            "\n[[bearer.issuers]]\nissuer = \"{DEALER}\"\naudiences = [\"{STATIC_AUDIENCE}\"]\npublic_keys = [\"{}\"]\n\n[[routes]]\npath = \"/admin\"\ngroups = [\"admins\"]\n{extra_routes}",
            dealer.display()
        )
    })
    .await;
    let url = format!("http://127.0.0.1:{grpc_port}");
    wait_until("the ext_authz listener", Duration::from_secs(20), || {
        let addr = format!("127.0.0.1:{grpc_port}");
        async move { tokio::net::TcpStream::connect(addr).await.is_ok() }
    })
    .await;
    let grpc = AuthorizationClient::connect(url).await.ok();
    let mut alice = Browser::new();
    alice.login(&world.proxy, "alice", "/").await;
    Envoy {
        world,
        grpc_port,
        grpc: grpc.expect("connected"),
        alice,
    }
}

/// A check request as Envoy's ext_authz filter sends one: the client's address and,
/// optionally, its certificate (URL-encoded PEM, `include_peer_certificate`); the HTTP
/// request's method, path with query, host, scheme and lower-cased headers, pseudo-headers
/// among them.
fn check(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    cert_pem: Option<&str>,
) -> CheckRequest {
    let mut map: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    map.insert(":authority".into(), "app.example.com".into());
    map.insert(":method".into(), method.into());
    map.insert(":path".into(), path.into());
    map.insert("x-request-id".into(), "7d1c".into());
    let certificate = cert_pem
        .map(|pem| {
            percent_encoding::utf8_percent_encode(pem, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        })
        .unwrap_or_default();
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(envoy_types::pb::envoy::config::core::v3::Address {
                    address: Some(Address::SocketAddress(SocketAddress {
                        address: "10.1.2.3".into(),
                        ..SocketAddress::default()
                    })),
                }),
                certificate,
                ..Peer::default()
            }),
            request: Some(Request {
                http: Some(HttpRequest {
                    id: "7d1c".into(),
                    method: method.into(),
                    headers: map,
                    path: path.into(),
                    host: "app.example.com".into(),
                    scheme: "https".into(),
                    protocol: "HTTP/2".into(),
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    }
}

fn ok(r: &CheckResponse) -> &OkHttpResponse {
    assert_eq!(r.status.as_ref().map(|s| s.code), Some(0), "{r:?}");
    match &r.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok,
        other => panic!("not an OK response: {other:?}"),
    }
}

fn denied(r: &CheckResponse) -> (i32, &DeniedHttpResponse) {
    let code = r.status.as_ref().map_or(0, |s| s.code);
    assert_ne!(code, 0, "{r:?}");
    match &r.http_response {
        Some(HttpResponse::DeniedResponse(d)) => (code, d),
        other => panic!("not a denial: {other:?}"),
    }
}

fn status(d: &DeniedHttpResponse) -> i32 {
    d.status.as_ref().map_or(0, |s| s.code)
}

/// The values a response sets for `name`, in order.
fn values<'a>(
    headers: &'a [envoy_types::ext_authz::v3::pb::HeaderValueOption],
    name: &str,
) -> Vec<&'a str> {
    headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .filter(|h| h.key.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_grpc_checks_get_the_decision_the_proxy_makes() {
    portcullis::jwt::provider::install();
    let mut e = envoy("").await;
    let cookie = format!("{}; theme=dark", e.alice.jar.header());

    // alice's session: allowed, her identity set over the forged one, the forged copies of
    // other identity headers removed, portcullis' cookie taken out of Cookie.
    let r = e
        .grpc
        .check(check(
            "GET",
            "/app/x?y=1",
            &[
                ("cookie", &cookie),
                ("x-forwarded-user", "mallory"),
                ("x-auth-request-email", "mallory@evil.example"),
                ("accept", "text/html"),
            ],
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    let allowed = ok(&r);
    assert_eq!(values(&allowed.headers, "x-forwarded-user"), ["alice"]);
    assert_eq!(
        values(&allowed.headers, "x-forwarded-email"),
        ["alice@example.com"]
    );
    assert_eq!(
        values(&allowed.headers, "x-forwarded-issuer"),
        [e.world.idp.issuer()]
    );
    assert_eq!(values(&allowed.headers, "cookie"), ["theme=dark"]);
    assert_eq!(allowed.headers_to_remove, ["x-auth-request-email"]);
    for h in &allowed.headers {
        assert_eq!(
            h.append_action, 2,
            "overwrite, never append to a client's copy: {h:?}"
        );
    }

    // Nobody: a browser is sent to sign in (302 to /oauth2/start, back to the same target), a
    // program gets 401 with the Bearer challenge.
    let r = e
        .grpc
        .check(check(
            "GET",
            "/app/x?y=1",
            &[("accept", "text/html,application/xhtml+xml")],
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    let (code, d) = denied(&r);
    assert_eq!((code, status(d)), (16, 302));
    assert_eq!(
        values(&d.headers, "location"),
        ["/oauth2/start?rd=%2Fapp%2Fx%3Fy%3D1"]
    );
    let r = e
        .grpc
        .check(check(
            "POST",
            "/api/items",
            &[("accept", "application/json")],
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    let (code, d) = denied(&r);
    assert_eq!((code, status(d)), (16, 401));
    assert!(values(&d.headers, "www-authenticate")[0].starts_with("Bearer"));

    // A bearer token: allowed as its subject; a tampered one refused as invalid.
    let token = dealer_token(&dealer_claims("svc-reports"));
    let bearer = format!("Bearer {token}");
    let r = e
        .grpc
        .check(check(
            "GET",
            "/api/items",
            &[("authorization", &bearer)],
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(values(&ok(&r).headers, "x-forwarded-user"), ["svc-reports"]);
    let r = e
        .grpc
        .check(check(
            "GET",
            "/api/items",
            &[("authorization", &format!("{bearer}x"))],
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    let (_, d) = denied(&r);
    assert_eq!(status(d), 401);
    assert!(values(&d.headers, "www-authenticate")[0].contains("invalid_token"));

    // The route's rules: alice is not an admin.
    let r = e
        .grpc
        .check(check(
            "GET",
            "/admin/users",
            &[("cookie", &cookie), ("accept", "application/json")],
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    let (code, d) = denied(&r);
    assert_eq!((code, status(d)), (7, 403));

    // What cannot be read one way is refused with 400, as an answer (never an RPC error,
    // which Envoy's failure_mode_allow would let through).
    let mut no_http = check("GET", "/", &[], None);
    no_http.attributes.as_mut().unwrap().request = None;
    let mut two_hosts = check("GET", "/", &[("host", "other.example.com")], None);
    two_hosts
        .attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http
        .as_mut()
        .unwrap()
        .headers
        .remove(":authority");
    for (case, bad) in [
        ("no HTTP attributes", no_http),
        (
            "an absolute-form path",
            check("GET", "http://app.example.com/x", &[], None),
        ),
        (
            "a path with a dot segment",
            check("GET", "/public/../admin", &[], None),
        ),
        ("a Host that contradicts the host", two_hosts),
        (
            "a certificate that is no certificate",
            check("GET", "/", &[], Some("not a certificate")),
        ),
    ] {
        let r = e.grpc.check(bad).await.unwrap().into_inner();
        let (code, d) = denied(&r);
        assert_eq!(status(d), 400, "{case}: {r:?}");
        assert!(code == 3 || code == 16 || code == 7, "{case}: {code}");
    }

    // Each check has its access-log line.
    let proxy = &e.world.proxy;
    wait_until("the checks' log lines", Duration::from_secs(5), || {
        let log = proxy.log();
        async move { log.matches("\"path\":\"/app/x\"").count() >= 2 }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_in_the_check_request_meets_the_route_and_binds_tokens() {
    portcullis::jwt::provider::install();
    let ca = Ca::new("ext_authz CA");
    let runner = ca.issue(
        "ea-runner",
        "ci-runner",
        &["spiffe://cluster.local/ns/ci/sa/runner"],
        Role::Client,
        false,
    );
    let other = ca.issue(
        "ea-other",
        "other",
        &["spiffe://cluster.local/ns/ci/sa/other"],
        Role::Client,
        false,
    );
    let mut e = envoy(
        "\n[[routes]]\npath = \"/ci/\"\nclient_cert_sans = [\"spiffe://cluster.local/ns/ci/sa/runner\"]\n\n[[routes]]\npath = \"/bound/\"\nrequire_bound_tokens = true\n",
    )
    .await;
    let ask = |path: &str, headers: Vec<(&str, String)>, cert: Option<&str>| {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        check("GET", path, &h, cert)
    };
    // The certificate Envoy verified (and forwards) is the identity on a route that asks.
    let r = e
        .grpc
        .check(ask("/ci/build", vec![], Some(&runner.cert_pem)))
        .await
        .unwrap()
        .into_inner();
    let allowed = ok(&r);
    assert_eq!(
        values(&allowed.headers, "x-forwarded-user"),
        ["spiffe://cluster.local/ns/ci/sa/runner"]
    );
    assert_eq!(values(&allowed.headers, "x-forwarded-client-cert").len(), 1);
    let r = e
        .grpc
        .check(ask("/ci/build", vec![], Some(&other.cert_pem)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status(denied(&r).1), 403);
    let r = e
        .grpc
        .check(ask("/ci/build", vec![], None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status(denied(&r).1), 403);

    // A certificate-bound token (RFC 8705) is served with its certificate only.
    let thumbprint = {
        use base64::Engine;
        use rustls_pki_types::pem::PemObject;
        use sha2::Digest;
        let der =
            rustls_pki_types::CertificateDer::from_pem_slice(runner.cert_pem.as_bytes()).unwrap();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&der))
    };
    let mut claims = dealer_claims("svc-bound");
    claims["cnf"] = serde_json::json!({ "x5t#S256": thumbprint });
    let bearer = format!("Bearer {}", dealer_token(&claims));
    let with = |cert| ask("/bound/x", vec![("authorization", bearer.clone())], cert);
    let r = e
        .grpc
        .check(with(Some(&runner.cert_pem)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(values(&ok(&r).headers, "x-forwarded-user"), ["svc-bound"]);
    for cert in [Some(other.cert_pem.as_str()), None] {
        let r = e.grpc.check(with(cert)).await.unwrap().into_inner();
        assert_eq!(status(denied(&r).1), 401);
    }
    drop(e.alice);
}

#[tokio::test(flavor = "multi_thread")]
async fn envoys_http_ext_authz_gets_200_with_the_headers_to_set_and_to_remove() {
    let e = envoy("").await;
    let proxy = &e.world.proxy;
    // What Envoy's http_service with path_prefix /oauth2/auth sends: the prefix, then the
    // original target; the original method and headers.
    let r = plain_client()
        .get(proxy.url("/oauth2/auth/app/x?y=1"))
        .header("cookie", format!("{}; theme=dark", e.alice.jar.header()))
        .header("x-auth-request-user", "mallory")
        .header("host", "app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "Envoy lets a request through on 200 only"
    );
    assert_eq!(header_str(&r, "x-forwarded-user".parse().unwrap()), "alice");
    assert_eq!(header_str(&r, "cookie".parse().unwrap()), "theme=dark");
    assert_eq!(
        header_str(&r, "x-envoy-auth-headers-to-remove".parse().unwrap()),
        "x-auth-request-user"
    );
    let r = plain_client()
        .post(proxy.url("/oauth2/auth/api/items"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Without the proxy among trusted_proxies, the HTTP form answers no one.
    let untrusted = World::start(|c| c, "").await;
    let r = plain_client()
        .get(untrusted.proxy.url("/oauth2/auth/app/x"))
        .header("cookie", e.alice.jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

/// A client nobody here wrote: Envoy's protos from PyPI (envoy-data-plane) over grpcio.
#[tokio::test(flavor = "multi_thread")]
async fn an_envoy_data_plane_client_over_grpcio_gets_the_same_answers() {
    let e = envoy("").await;
    let port = e.grpc_port;
    let script = format!(
        "{}/tests/scripts/ext_authz_check.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let pythonpath = format!("{}/target/python", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(format!("127.0.0.1:{port}"))
        .arg(e.alice.jar.header())
        .env("PYTHONPATH", &pythonpath)
        .output()
        .await
        .expect("python3");
    assert!(
        out.status.success(),
        "ext_authz_check.py failed (is envoy-data-plane in target/python? `bash .ci/test` installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(answers.len(), 3, "{answers:?}");
    let session = &answers[0];
    assert_eq!(session["code"], 0, "{session}");
    assert_eq!(session["set"]["x-forwarded-user"], "alice");
    // Its only cookie was portcullis' own: Cookie goes altogether.
    assert_eq!(session["remove"], serde_json::json!(["cookie"]));
    let browser = &answers[1];
    assert_eq!(
        (browser["code"].as_i64(), browser["http_status"].as_i64()),
        (Some(16), Some(302))
    );
    assert_eq!(browser["location"], "/oauth2/start?rd=%2Fapp%2Fx%3Fy%3D1");
    let program = &answers[2];
    assert_eq!(program["http_status"], 401);
}
