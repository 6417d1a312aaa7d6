//! The command line: `check`, `secret`, and config errors that name the file and the key.

use std::process::Command;

use crate::support::*;

/// Runs `portcullis <cmd> --config <path>` to completion.
fn portcullis_with_config(cmd: &str, path: &std::path::Path) -> std::process::Output {
    Command::new(binary())
        .arg(cmd)
        .arg("--config")
        .arg(path)
        .output()
        .unwrap()
}

fn portcullis(args: &[&str]) -> std::process::Output {
    Command::new(binary()).args(args).output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn check_accepts_a_good_config_and_reaches_the_provider() {
    let idp = start_idp(idp_config(4180)).await;
    let path = write_config(&config(4180, idp.issuer(), "http://127.0.0.1:9", ""));
    let out = tokio::task::spawn_blocking(move || portcullis_with_config("check", &path))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("ok: "), "{stdout}");
    assert_eq!(stdout.lines().count(), 1);
    assert!(!stdout.contains(&portcullis::demo::DevIdpConfig::default().client_secret));
    assert!(!stdout.contains(SECRET));
}

#[test]
fn check_reports_an_unreachable_provider() {
    let port = free_port();
    let path = write_config(&config(
        4180,
        &format!("http://127.0.0.1:{port}"),
        "http://127.0.0.1:9",
        "",
    ));
    let out = portcullis_with_config("check", &path);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("oidc.issuer"), "{err}");
}

#[test]
fn check_offline_validates_without_the_provider() {
    let port = free_port();
    let good = config(
        4180,
        &format!("http://127.0.0.1:{port}"),
        "http://127.0.0.1:9",
        "",
    );
    let path = write_config(&good);
    let out = portcullis(&["check", "--offline", "--config", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("ok: ") && stdout.contains("offline"),
        "{stdout}"
    );
    // Offline still means validated: a broken file fails the same way.
    let path = write_config(&good.replace(SECRET, "c2hvcnQ="));
    let out = portcullis(&["check", "--offline", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("session.secrets[0]"));
}

#[test]
fn config_errors_name_the_file_and_the_key() {
    let bad =
        config(4180, "https://idp.example", "http://127.0.0.1:9", "").replace(SECRET, "c2hvcnQ=");
    let path = write_config(&bad);
    for cmd in ["check", "run"] {
        let out = portcullis_with_config(cmd, &path);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        let expected = format!(
            "{}: session.secrets[0]: must decode to at least 32 bytes",
            path.display()
        );
        assert!(err.contains(&expected), "{cmd}: {err}");
    }
    let unknown = config(
        4180,
        "https://idp.example",
        "http://127.0.0.1:9",
        "[headers]\npass_acess_token = true",
    );
    let path = write_config(&unknown);
    let out = portcullis_with_config("check", &path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("headers.pass_acess_token: unknown key"),
        "{err}"
    );
}

#[test]
fn secret_prints_a_usable_session_secret() {
    let out = Command::new(binary()).arg("secret").output().unwrap();
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap();
    let decoded = portcullis::config::decode_secret(s.trim()).unwrap();
    assert_eq!(decoded.len(), 32);
    let again = Command::new(binary()).arg("secret").output().unwrap();
    assert_ne!(s.as_bytes(), &again.stdout[..]);
}

/// `portcullis import oauth2-proxy` with oauth2-proxy's flags as one would run it: the file it
/// prints passes `portcullis check`, and what it could not carry over is listed on stderr
/// (a secret's value never shown).
#[test]
fn an_oauth2_proxy_command_line_imports_into_a_file_that_checks() {
    let out = portcullis(&[
        "import",
        "oauth2-proxy",
        "--provider=oidc",
        "--oidc-issuer-url=https://idp.example.com/realms/staff",
        "--client-id=web",
        "--client-secret=s3cret-value",
        "--redirect-url=https://app.example.com/oauth2/callback",
        "--upstream=http://127.0.0.1:8080",
        "--email-domain=example.com",
        "--allowed-group=sre",
        "--skip-auth-route=GET=^/healthz$",
        "--cookie-secret=b2F1dGgyLXByb3h5LWNvb2tpZS1zZWNyZXQ",
        "--banner=hello",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("banner"), "{stderr}");
    assert!(stderr.contains("cookie_secret"), "{stderr}");
    assert!(
        !stderr.contains("b2F1dGgy"),
        "a secret's value was shown: {stderr}"
    );
    let path = write_config(&toml);
    let check = portcullis(&["check", "--offline", "--config", path.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "{}\n{toml}",
        String::from_utf8_lossy(&check.stderr)
    );
}
