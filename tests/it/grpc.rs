//! gRPC through portcullis: a Python `grpcio` client over TLS and HTTP/2, a `grpcio` upstream
//! spoken to in h2c (`upstream.protocol = "h2"`). A call with a valid bearer token reaches the
//! service with its identity and comes back with its trailers; one without gets gRPC status 16
//! (UNAUTHENTICATED), one the rules refuse 7 (PERMISSION_DENIED), never a page or a redirect.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::support::keys::fixture;
use crate::support::pki::Ca;
use crate::support::tokens::{dealer_claims, dealer_token, DEALER, STATIC_AUDIENCE};
use crate::support::*;

fn script() -> String {
    format!("{}/tests/scripts/grpc_echo.py", env!("CARGO_MANIFEST_DIR"))
}

/// The gRPC upstream, ended (by PID) when dropped.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the service on `port` and waits for its "ready".
fn service(port: u16) -> Service {
    let mut child = Command::new("python3")
        .args([&script(), "server", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(
        line.trim(),
        "ready",
        "the gRPC service did not start (is python3-grpcio installed? `bash .ci/test` installs it)"
    );
    Service(child)
}

async fn client(target: &str, ca: &std::path::Path, token: &str) -> String {
    let out = tokio::process::Command::new("python3")
        .args([
            &script(),
            "client",
            target,
            &ca.display().to_string(),
            token,
        ])
        .output()
        .await
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_calls_pass_with_a_token_and_get_grpc_statuses_without_one() {
    portcullis::jwt::provider::install();
    let ca = Ca::new("grpc CA");
    let ca_file = ca.file("grpc-ca.pem");
    let server = ca.server("grpc-server");
    let upstream_port = free_port();
    let _service = service(upstream_port);
    let tls_port = free_port();
    let extra = format!(
        "\n[[server.listeners]]\naddress = \"127.0.0.1:{tls_port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\n[[bearer.issuers]]\nissuer = \"{DEALER}\"\naudiences = [\"{STATIC_AUDIENCE}\"]\npublic_keys = [\"{}\"]\n\n[[routes]]\npath = \"/echo.Echo/\"\nscopes = [\"reports:read\"]\n\n[[routes]]\npath = \"/admin.Admin/\"\nscopes = [\"admin:write\"]\n",
        server.cert.display(),
        server.key.display(),
        fixture("dealer-rs512.pub.pem").display()
    );
    let w = World::start_with(
        |c| c,
        |toml| {
            let upstream = toml
                .lines()
                .map(|l| {
                    if l.starts_with("url = \"http://127.0.0.1:") {
                        format!("url = \"http://127.0.0.1:{upstream_port}\"\nprotocol = \"h2\"")
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            upstream + &extra
        },
    )
    .await;
    let target = format!("127.0.0.1:{tls_port}");
    let token = dealer_token(&dealer_claims("svc"));
    assert_eq!(
        client(&target, &ca_file, &token).await,
        "ok hello ci as svc trailer=kept"
    );
    let anonymous = client(&target, &ca_file, "-").await;
    assert!(anonymous.starts_with("status 16 "), "{anonymous}");
    let expired = {
        let mut c = dealer_claims("svc");
        c["exp"] = serde_json::json!(crate::support::tokens::now() - 3600);
        dealer_token(&c)
    };
    let refused = client(&target, &ca_file, &expired).await;
    assert!(refused.starts_with("status 16 "), "{refused}");
    let log = w.proxy.log();
    assert!(log.contains("\"outcome\":\"bearer\""), "{log}");
}
