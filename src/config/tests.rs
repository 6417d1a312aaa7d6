//! The configuration's checks, each through the file text a user would write.
use super::*;
use std::time::Duration;

const SECRET: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"; // 32 bytes

fn base() -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:4180"
[upstream]
url = "http://127.0.0.1:8080"
[oidc]
issuer = "https://idp.example.com"
client_id = "portcullis"
client_secret = "s3cr3t-value"
redirect_url = "https://app.example.com/oauth2/callback"
[session]
secrets = ["{SECRET}"]
"#
    )
}

/// The client secret of a config that authenticates with one.
fn secret_of(c: &Config) -> String {
    match &c.oidc.as_ref().unwrap().first().client_auth {
        ClientAuth::Secret { secret, .. } => secret.expose().to_string(),
        other => panic!("not a secret: {other:?}"),
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "config.toml", &|_| None)
}

/// The base config with `line` added to `[server]`.
fn with_server_line(line: &str) -> Result<Config, ConfigError> {
    parse(&base().replace(
        "listen = \"127.0.0.1:4180\"",
        &format!("listen = \"127.0.0.1:4180\"\n{line}"),
    ))
}

#[test]
fn connection_limits_have_defaults_and_bounds() {
    let limits = parse(&base()).unwrap().server.connection_limits;
    assert_eq!((limits.total, limits.per_client), (4096, 512));
    let with = |lines: &str| base().replace("[server]", &format!("[server]\n{lines}"));
    let l = parse(&with(
        "max_connections = 100\nmax_connections_per_client = 0",
    ))
    .unwrap()
    .server
    .connection_limits;
    assert_eq!((l.total, l.per_client), (100, 0));
    for (lines, key) in [
        ("max_connections = 0", "server.max_connections"),
        ("max_connections = 100", "server.max_connections_per_client"),
        (
            "max_connections = 10\nmax_connections_per_client = 11",
            "server.max_connections_per_client",
        ),
    ] {
        let e = parse(&with(lines)).unwrap_err().to_string();
        assert!(e.contains(key), "{lines}: {e}");
    }
}

#[test]
fn request_head_limits_have_defaults_and_bounds() {
    let with = with_server_line;
    let limits = parse(&base()).unwrap().server.head_limits;
    assert_eq!(limits.header_timeout, Duration::from_secs(20));
    assert_eq!(limits.max_header_bytes, 128 * 1024);
    let set = with("header_timeout = \"3s\"\nmax_header_bytes = 200000").unwrap();
    assert_eq!(
        set.server.head_limits.header_timeout,
        Duration::from_secs(3)
    );
    assert_eq!(set.server.head_limits.max_header_bytes, 200_000);
    for bad in [
        "max_header_bytes = 8192",
        "max_header_bytes = 2000000",
        "max_header_bytes = -1",
    ] {
        let e = with(bad).unwrap_err();
        assert_eq!(e.key, "server.max_header_bytes", "{bad}: {e}");
    }
    for bad in [
        "header_timeout = \"0s\"",
        "header_timeout = \"1h\"",
        "header_timeout = \"soon\"",
    ] {
        assert_eq!(with(bad).unwrap_err().key, "server.header_timeout", "{bad}");
    }
}

#[test]
fn metrics_need_their_own_port() {
    let with = |addr: &str| with_server_line(&format!("metrics_listen = \"{addr}\""));
    assert_eq!(parse(&base()).unwrap().server.metrics_listen, None);
    assert_eq!(
        with("127.0.0.1:9180").unwrap().server.metrics_listen,
        Some("127.0.0.1:9180".parse().unwrap())
    );
    for bad in ["127.0.0.1:4180", "0.0.0.0:4180", "localhost:9180"] {
        assert_eq!(with(bad).unwrap_err().key, "server.metrics_listen", "{bad}");
    }
}

#[test]
fn minimal_config_is_valid_with_defaults() {
    let c = parse(&base()).unwrap();
    assert_eq!(c.session.as_ref().unwrap().cookie_name, "_portcullis");
    assert_eq!(
        c.session.as_ref().unwrap().lifetime,
        Duration::from_secs(43200)
    );
    assert!(c.session.as_ref().unwrap().secure);
    assert_eq!(
        c.oidc.as_ref().unwrap().first().callback_path,
        "/oauth2/callback"
    );
    assert_eq!(
        c.oidc.as_ref().unwrap().first().scopes,
        ["openid", "email", "profile"]
    );
    assert_eq!(c.upstream.address, "127.0.0.1:8080");
}

#[test]
fn short_secret_names_file_and_key() {
    let text = base().replace(SECRET, "c2hvcnQ");
    let e = parse(&text).unwrap_err();
    assert_eq!(
        e.to_string(),
        "config.toml: session.secrets[0]: must decode to at least 32 bytes"
    );
}

#[test]
fn unknown_key_is_an_error_with_its_path() {
    let text = base().replace("[session]", "[session]\ncookie_nme = \"x\"");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.key, "session.cookie_nme");
    assert!(e.message.starts_with("unknown key"), "{e}");
}

#[test]
fn type_errors_carry_the_path() {
    let text = base().replace("[session]", "[session]\nsecure = \"yes\"");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.key, "session.secure");
}

#[test]
fn secret_files_lose_their_trailing_line_ending_alike() {
    let dir = std::env::temp_dir().join(format!("portcullis-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let client = dir.join("client");
    std::fs::write(&client, "s3cr3t\r\n").unwrap();
    let text = base().replace(
        "client_secret = \"s3cr3t-value\"",
        &format!("client_secret_file = \"{}\"", client.display()),
    );
    assert_eq!(secret_of(&parse(&text).unwrap()), "s3cr3t");
    // The same rule for a shared-secret file: `\r\n` at the end is no part of the key, so
    // a key written on Windows opens what the one written with `echo` does.
    let key = "0123456789abcdef0123456789abcdef";
    for (name, contents) in [("crlf", format!("{key}\r\n")), ("lf", format!("{key}\n"))] {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        let issuer = format!(
            "[[bearer.issuers]]\nissuer = \"https://dealer\"\naudiences = [\"x\"]\nshared_secret_file = \"{}\"\n",
            path.display()
        );
        assert!(parse(&(base() + &issuer)).is_ok(), "{name}");
    }
    let bad = dir.join("missing");
    let issuer = format!(
        "[[bearer.issuers]]\nissuer = \"https://dealer\"\naudiences = [\"x\"]\nshared_secret_file = \"{}\"\n",
        bad.display()
    );
    let e = parse(&(base() + &issuer)).unwrap_err().to_string();
    assert!(e.contains("shared_secret_file"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn header_names_and_strips_are_checked_and_name_their_key() {
    let with = |table: &str| format!("{}\n{table}\n", base());
    let c = parse(&with(
        "[headers]\nstrip = [\"X_App_Role\"]\n[headers.names]\nuser = \"X-WEBAUTH-USER\"",
    ))
    .unwrap();
    assert_eq!(c.headers.names.user.as_str(), "x-webauth-user");
    assert_eq!(c.headers.names.email.as_str(), "x-forwarded-email");
    assert_eq!(c.headers.strip, ["x-app-role"]);
    for (table, key) in [
        ("[headers.names]\nuser = \"Cookie\"", "headers.names.user"),
        (
            "[headers.names]\ngroups = \"bad name\"",
            "headers.names.groups",
        ),
        (
            "[headers.names]\nemail = \"x-forwarded-user\"",
            "headers.names",
        ),
        ("[headers]\nstrip = [\"ok\", \"Host\"]", "headers.strip[1]"),
        (
            "[headers]\nstrip = [\"X-Forwarded-For\"]",
            "headers.strip[0]",
        ),
    ] {
        let e = parse(&with(table)).unwrap_err().to_string();
        assert!(e.contains(key), "{table}: {e}");
    }
}

#[test]
fn secrets_never_appear_in_errors_or_debug() {
    let text = base().replace("[session]", "[session]\nsame_site = \"bogus\"");
    let e = parse(&text).unwrap_err();
    assert!(!e.to_string().contains("s3cr3t-value"));
    let c = parse(&base()).unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("s3cr3t-value"));
    assert!(!dbg.contains(SECRET));
    assert!(!c.summary().contains("s3cr3t-value"));
}

#[test]
fn client_secret_from_env_and_conflicts() {
    let text = base().replace("client_secret = \"s3cr3t-value\"\n", "");
    let c = Config::parse(&text, "c.toml", &|k| {
        (k == ENV_CLIENT_SECRET).then(|| "from-env".to_string())
    })
    .unwrap();
    assert_eq!(secret_of(&c), "from-env");
    let e = Config::parse(&base(), "c.toml", &|k| {
        (k == ENV_CLIENT_SECRET).then(|| "x".to_string())
    })
    .unwrap_err();
    assert_eq!(e.key, "oidc.client_secret");
    let e = parse(&text).unwrap_err();
    assert!(e.message.starts_with("missing"));
}

#[test]
fn session_secrets_from_env() {
    let text = base().replace(&format!("secrets = [\"{SECRET}\"]"), "");
    let c = Config::parse(&text, "c.toml", &|k| {
        (k == ENV_SESSION_SECRETS).then(|| format!("{SECRET}, {}", generate_secret()))
    })
    .unwrap();
    assert_eq!(c.session.as_ref().unwrap().secrets.len(), 2);
    let e = Config::parse(&text, "c.toml", &|k| {
        (k == ENV_SESSION_SECRETS).then(|| "tooshort".to_string())
    })
    .unwrap_err();
    assert_eq!(e.key, "PORTCULLIS_SESSION_SECRETS[0]");
}

#[test]
fn plain_http_issuer_only_on_loopback() {
    let text = base().replace("https://idp.example.com", "http://idp.example.com");
    assert_eq!(parse(&text).unwrap_err().key, "oidc.issuer");
    let text = base().replace("https://idp.example.com", "http://127.0.0.1:9000");
    assert!(parse(&text).is_ok());
}

#[test]
fn listen_accepts_a_list_and_trusted_proxies_cidrs() {
    let text = base().replace(
        "listen = \"127.0.0.1:4180\"",
        "listen = [\"127.0.0.1:4180\", \"[::1]:4180\"]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.168.1.1\"]",
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.server.listeners.len(), 2);
    assert!(c
        .server
        .listeners
        .iter()
        .all(|l| l.kind == ListenerKind::Plain));
    assert!(c.server.is_trusted_proxy("10.1.2.3".parse().unwrap()));
    assert!(c
        .server
        .is_trusted_proxy("::ffff:10.1.2.3".parse().unwrap()));
    assert!(!c.server.is_trusted_proxy("192.168.1.2".parse().unwrap()));
    let bad = base().replace("listen = \"127.0.0.1:4180\"", "listen = [\"nope\"]");
    assert_eq!(parse(&bad).unwrap_err().key, "server.listen[0]");
}

#[test]
fn absurd_durations_and_cookie_names_are_refused() {
    let text = base().replace("[session]", "[session]\nlifetime = \"100years\"");
    assert_eq!(parse(&text).unwrap_err().key, "session.lifetime");
    let text = base().replace("[oidc]", "[oidc]\nleeway = \"30years\"");
    assert_eq!(parse(&text).unwrap_err().key, "oidc.leeway");
    let long = "c".repeat(101);
    let text = base().replace("[session]", &format!("[session]\ncookie_name = \"{long}\""));
    assert_eq!(parse(&text).unwrap_err().key, "session.cookie_name");
    let text = base().replace(
        "[session]",
        "[session]\ncookie_name = \"__Host-p\"\nsecure = false",
    );
    assert_eq!(parse(&text).unwrap_err().key, "session.cookie_name");
    let text = base().replace("[session]", "[session]\ncookie_name = \"__Host-p\"");
    assert!(parse(&text).is_ok());
}

#[test]
fn routes_and_authorization_are_checked() {
    let ok = base()
        + "[[routes]]\npath = \"/public/\"\npolicy = \"public\"\n\
           [[routes]]\npath = \"/ops\"\ngroups = [\"sre\"]\nmethods = [\"get\"]\n\
           [authorization]\nallowed_email_domains = [\".example.com\"]\n";
    let c = parse(&ok).unwrap();
    assert_eq!(c.routes.routes().len(), 2);
    let bad = base() + "[[routes]]\npath = \"/p\"\npolicy = \"public\"\ngroups = [\"x\"]\n";
    assert_eq!(parse(&bad).unwrap_err().key, "routes[0].policy");
    let bad = base() + "[[routes]]\npath = \"/p\"\nscopes = [\"a\\\"b\"]\n";
    assert_eq!(parse(&bad).unwrap_err().key, "routes[0].scopes[0]");
    let bad = base() + "[[routes]]\npath = \"/a/../b\"\n";
    assert_eq!(parse(&bad).unwrap_err().key, "routes[0]");
    let bad = base() + "[authorization]\nallowed_emails = [\"a@b@c\"]\n";
    assert_eq!(
        parse(&bad).unwrap_err().key,
        "authorization.allowed_emails[0]"
    );
    let bad = base() + "[[routes]]\npath = \"/p\"\nmethods = [\"G T\"]\n";
    assert_eq!(parse(&bad).unwrap_err().key, "routes[0].methods[0]");
}

#[test]
fn bearer_issuers_are_checked() {
    let ok = base() + "[bearer]\naudiences = [\"api\"]\n[[bearer.issuers]]\nissuer = \"https://dealer\"\naudiences = [\"x\"]\njwks_url = \"https://dealer/jwks\"\n";
    assert_eq!(parse(&ok).unwrap().bearer.issuers.len(), 1);
    let none = base() + "[[bearer.issuers]]\nissuer = \"https://dealer\"\n";
    assert_eq!(parse(&none).unwrap_err().key, "bearer.issuers[0].audiences");
    let two = base() + "[[bearer.issuers]]\nissuer = \"https://dealer\"\naudiences = [\"x\"]\njwks_url = \"https://d/j\"\nshared_secret = \"0123456789abcdef0123456789abcdef\"\n";
    assert_eq!(parse(&two).unwrap_err().key, "bearer.issuers[0].jwks_url");
    let short = base() + "[[bearer.issuers]]\nissuer = \"https://dealer\"\naudiences = [\"x\"]\nshared_secret = \"short\"\n";
    assert_eq!(
        parse(&short).unwrap_err().key,
        "bearer.issuers[0].shared_secret"
    );
    let login =
        base() + "[[bearer.issuers]]\nissuer = \"https://idp.example.com\"\naudiences = [\"x\"]\n";
    assert_eq!(parse(&login).unwrap_err().key, "bearer.issuers[0].issuer");
    let weak = base()
        + &format!(
            "[[bearer.issuers]]\nissuer = \"https://weak\"\naudiences = [\"x\"]\npublic_keys = [\"{}/tests/fixtures/weak-rsa1024.pub.pem\"]\n",
            env!("CARGO_MANIFEST_DIR")
        );
    let e = parse(&weak).unwrap_err();
    assert_eq!(e.key, "bearer.issuers[0].public_keys");
    assert!(e.message.contains("1024"), "{e}");
}

#[test]
fn the_documented_example_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let c = Config::parse(&text, "config.example.toml", &|_| None).unwrap();
    assert_eq!(c.session.as_ref().unwrap().cookie_name, "_portcullis");
}

#[test]
fn generated_secret_is_accepted() {
    let s = generate_secret();
    assert_eq!(decode_secret(&s).map(|b| b.len()), Some(32));
}

#[test]
fn closed_word_sets_name_their_key_and_the_words_allowed() {
    let cases = [
        (
            "[session]",
            "same_site = \"bogus\"",
            "session.same_site",
            "strict",
        ),
        (
            "[oidc]",
            "token_endpoint_auth_method = \"private\"",
            "oidc.token_endpoint_auth_method",
            "client_secret_post",
        ),
        (
            "[oidc]",
            "end_session_method = \"put\"",
            "oidc.end_session_method",
            "post",
        ),
    ];
    for (table, line, key, allowed) in cases {
        let e = parse(&base().replace(table, &format!("{table}\n{line}"))).unwrap_err();
        assert_eq!(e.key, key, "{e}");
        assert!(e.message.contains(allowed), "{e}");
    }
    let appended = [
        ("[logging]\nformat = \"yaml\"\n", "logging.format", "json"),
        (
            "[[routes]]\npath = \"/x\"\npolicy = \"private\"\n",
            "routes[0].policy",
            "authenticated",
        ),
        (
            "[[routes]]\npath = \"/x\"\ntoken_type = \"refresh\"\n",
            "routes[0].token_type",
            "access",
        ),
    ];
    for (tail, key, allowed) in appended {
        let e = parse(&(base() + tail)).unwrap_err();
        assert_eq!(e.key, key, "{e}");
        assert!(e.message.contains(allowed), "{e}");
    }
}

#[test]
fn each_value_comes_from_exactly_one_source() {
    let two = base()
        + "[[bearer.issuers]]\nissuer = \"https://dealer\"\naudiences = [\"x\"]\n\
           public_keys = [\"/k.pem\"]\nshared_secret_file = \"/s\"\n";
    let e = parse(&two).unwrap_err();
    assert_eq!(e.key, "bearer.issuers[0].jwks_url");
    assert!(
        e.message.contains("public_keys") && e.message.contains("shared_secret_file"),
        "{e}"
    );
    // A conflict is named before any file is read (the files here do not exist).
    let text = base().replace(
        "client_secret = \"s3cr3t-value\"",
        "client_secret = \"s3cr3t-value\"\nclient_secret_file = \"/nonexistent\"",
    );
    let e = parse(&text).unwrap_err();
    assert_eq!(e.key, "oidc.client_secret");
    assert!(e.message.starts_with("set more than once"), "{e}");
}

/// A certificate for `127.0.0.1` and its key, as files in a directory of this test's own.
fn tls_files(dir: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("portcullis-{dir}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

#[test]
fn tls_listeners_are_checked_and_name_their_key_and_file() {
    let (cert, key) = tls_files("tls-config");
    let (_, other_key) = tls_files("tls-config-other");
    let table = |lines: &str| {
        base().replace(
            "[upstream]",
            &format!("[[server.listeners]]\naddress = \"127.0.0.1:8443\"\n{lines}\n[upstream]"),
        )
    };
    let files = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"",
        cert.display(),
        key.display()
    );
    let c = parse(&table(&files)).unwrap();
    assert_eq!(c.server.listeners.len(), 2, "server.listen and the table");
    match &c.server.listeners[1].kind {
        ListenerKind::Tls(t) => {
            assert!(t.http2, "HTTP/2 by default with TLS");
            assert_eq!(t.client_certs, ClientCerts::Off);
        }
        other => panic!("{other:?}"),
    }
    let cases = [
        (
            format!("tls_cert = \"{}\"", cert.display()),
            "server.listeners[0].tls_key",
            "needed",
        ),
        (
            format!(
                "tls_cert = \"/nonexistent.crt\"\ntls_key = \"{}\"",
                key.display()
            ),
            "server.listeners[0].tls_cert",
            "/nonexistent.crt",
        ),
        (
            format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"",
                cert.display(),
                cert.display()
            ),
            "server.listeners[0].tls_key",
            "no PEM private key",
        ),
        (
            format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"",
                cert.display(),
                other_key.display()
            ),
            "server.listeners[0].tls_key",
            "is not the key of the certificate",
        ),
        (
            format!("{files}\nclient_certs = \"required\""),
            "server.listeners[0].client_ca",
            "needed",
        ),
        (
            format!("{files}\nclient_ca = \"{}\"", cert.display()),
            "server.listeners[0].client_ca",
            "off",
        ),
        (
            format!(
                "{files}\nclient_certs = \"sometimes\"\nclient_ca = \"{}\"",
                cert.display()
            ),
            "server.listeners[0].client_certs",
            "required",
        ),
        (
            "http2 = true".to_string(),
            "server.listeners[0].http2",
            "TLS",
        ),
        (
            "client_certs = \"required\"".to_string(),
            "server.listeners[0].client_certs",
            "TLS",
        ),
    ];
    for (lines, key, words) in cases {
        let e = parse(&table(&lines)).unwrap_err();
        assert_eq!(e.key, key, "{lines}: {e}");
        assert!(e.message.contains(words), "{lines}: {e}");
    }
    // One port, two kinds: the listener could not tell TLS from plain.
    let clash = base().replace("listen = \"127.0.0.1:4180\"", "listen = \"127.0.0.1:8443\"");
    let clash = clash.replace(
        "[upstream]",
        &format!("[[server.listeners]]\naddress = \"0.0.0.0:8443\"\n{files}\n[upstream]"),
    );
    assert_eq!(parse(&clash).unwrap_err().key, "server.listeners");
    // Without server.listen, only the tables listen (no default plain listener beside them).
    let only = table(&files).replace("listen = \"127.0.0.1:4180\"\n", "");
    let c = parse(&only).unwrap();
    assert_eq!(c.server.listeners.len(), 1);
}

#[test]
fn client_certificate_rules_are_checked() {
    let e = with_server_line("client_cert_header = \"x-forwarded-client-cert\"").unwrap_err();
    assert_eq!(e.key, "server.client_cert_header");
    let e = with_server_line("client_cert_header = \"x-client-cert\"").unwrap_err();
    assert_eq!(e.key, "server.client_cert_header");
    let ok = with_server_line(
        "trusted_proxies = [\"10.0.0.0/8\"]\nclient_cert_header = \"ssl-client-cert\"",
    )
    .unwrap();
    assert_eq!(
        ok.server.client_cert_header,
        Some(ClientCertHeader::EscapedPem)
    );
    let route = |lines: &str| base() + &format!("[[routes]]\npath = \"/ci/\"\n{lines}\n");
    let c = parse(&route("client_cert_sans = [\"dns:runner.ci.svc\"]")).unwrap();
    assert_eq!(c.routes.routes().len(), 1);
    for (lines, key) in [
        (
            "client_cert_sans = [\"runner.ci.svc\"]",
            "routes[0].client_cert_sans[0]",
        ),
        (
            "client_cert_subjects = [\"CN\"]",
            "routes[0].client_cert_subjects[0]",
        ),
        (
            "client_cert = false\nclient_cert_subjects = [\"CN=x\"]",
            "routes[0].client_cert",
        ),
        ("policy = \"public\"\nclient_cert = true", "routes[0]"),
        (
            "policy = \"public\"\nrequire_bound_tokens = true",
            "routes[0]",
        ),
    ] {
        assert_eq!(parse(&route(lines)).unwrap_err().key, key, "{lines}");
    }
}

#[test]
fn dpop_settings_are_checked() {
    let with = |lines: &str| parse(&(base() + &format!("[bearer.dpop]\n{lines}\n")));
    let c = with("").unwrap();
    let d = c.bearer.dpop.expect("on with the table");
    assert_eq!(d.algorithms.len(), 5);
    assert!(!d.use_dpop_nonce);
    assert!(
        parse(&base()).unwrap().bearer.dpop.is_none(),
        "off without the table"
    );
    assert!(with("enabled = false").unwrap().bearer.dpop.is_none());
    for (lines, key) in [
        ("algorithms = [\"HS256\"]", "bearer.dpop.algorithms[0]"),
        ("algorithms = [\"none\"]", "bearer.dpop.algorithms[0]"),
        ("algorithms = []", "bearer.dpop.algorithms"),
        ("proof_lifetime = \"1h\"", "bearer.dpop.proof_lifetime"),
        (
            "replay_cache_entries = 10",
            "bearer.dpop.replay_cache_entries",
        ),
    ] {
        assert_eq!(with(lines).unwrap_err().key, key, "{lines}");
    }
}

/// A resource server: no `[oidc]`, no `[session]`, one issuer of its own.
fn resource_server(extra: &str) -> Result<Config, ConfigError> {
    parse(&format!(
        r#"
[upstream]
url = "http://127.0.0.1:8080"
[[bearer.issuers]]
issuer = "https://dealer.internal"
audiences = ["reports-api"]
jwks_url = "https://dealer.internal/keys"
{extra}
"#
    ))
}

#[test]
fn a_resource_server_needs_no_login_and_refuses_what_only_login_means() {
    let c = resource_server("").unwrap();
    assert!(c.oidc.is_none() && c.session.is_none());
    assert!(
        c.summary().contains("no browser sign-in"),
        "{}",
        c.summary()
    );
    // Only the secrets of [session] mean something without [oidc] (they key DPoP nonces).
    let with_secrets = resource_server(&format!("[session]\nsecrets = [\"{SECRET}\"]")).unwrap();
    assert!(with_secrets.session.is_some());
    for (extra, key) in [
        ("[session]\ncookie_name = \"x\"", "session.cookie_name"),
        ("[session]\nlifetime = \"1h\"", "session.lifetime"),
        ("[bearer]\naudiences = [\"api\"]", "bearer.audiences"),
        (
            "[bearer]\naccept_id_tokens = true",
            "bearer.accept_id_tokens",
        ),
        (
            "[bearer]\nrequire_bound_tokens = true",
            "bearer.require_bound_tokens",
        ),
        (
            "[bearer.dpop]\nuse_dpop_nonce = true",
            "bearer.dpop.use_dpop_nonce",
        ),
    ] {
        // `[bearer]` tables go before the issuers' array of tables.
        let text = if extra.starts_with("[bearer") {
            format!(
                "[upstream]\nurl = \"http://127.0.0.1:8080\"\n{extra}\n[[bearer.issuers]]\nissuer = \"https://dealer.internal\"\naudiences = [\"reports-api\"]\njwks_url = \"https://dealer.internal/keys\"\n"
            )
        } else {
            format!(
                "[upstream]\nurl = \"http://127.0.0.1:8080\"\n[[bearer.issuers]]\nissuer = \"https://dealer.internal\"\naudiences = [\"reports-api\"]\njwks_url = \"https://dealer.internal/keys\"\n{extra}\n"
            )
        };
        let e = parse(&text).unwrap_err();
        assert_eq!(e.key, key, "{extra}: {e}");
    }
    // With nothing to sign in with, the file is refused as a whole.
    let e = parse("[upstream]\nurl = \"http://127.0.0.1:8080\"\n").unwrap_err();
    assert!(e.message.contains("no caller could ever sign in"), "{e}");
}

#[test]
fn user_claim_is_one_name_or_a_list_tried_in_order() {
    let c = resource_server("user_claim = [\"sub\", \"client_id\", \"azp\"]").unwrap();
    assert_eq!(c.bearer.issuers[0].claims.user, ["sub", "client_id", "azp"]);
    let c = resource_server("user_claim = \"client_id\"").unwrap();
    assert_eq!(c.bearer.issuers[0].claims.user, ["client_id"]);
    assert_eq!(
        resource_server("").unwrap().bearer.issuers[0].claims.user,
        ["sub"]
    );
    let e = resource_server("user_claim = []").unwrap_err();
    assert_eq!(e.key, "bearer.issuers[0].user_claim");
    let e = resource_server("user_claim = [\"sub\", \"\"]").unwrap_err();
    assert_eq!(e.key, "bearer.issuers[0].user_claim[1]");
}

/// The base config with the client secret replaced by `lines` in `[oidc]`.
fn with_client_auth(lines: &str) -> Result<Config, ConfigError> {
    parse(&base().replace("client_secret = \"s3cr3t-value\"", lines))
}

#[test]
fn client_auth_private_key_jwt_reads_its_key_and_wants_no_secret() {
    let (cert, key) = tls_files("client-auth");
    let rsa = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/dealer-rs512.key.pem"
    );
    let c = with_client_auth(&format!(
        "client_auth = \"private_key_jwt\"\nclient_key = \"{}\"\nclient_key_id = \"k1\"",
        key.display()
    ))
    .unwrap();
    match &c.oidc.as_ref().unwrap().first().client_auth {
        ClientAuth::PrivateKeyJwt(k) => {
            assert_eq!(k.alg, jsonwebtoken::Algorithm::ES256);
            assert_eq!(k.kid.as_deref(), Some("k1"));
        }
        other => panic!("{other:?}"),
    }
    let c = with_client_auth(&format!(
        "client_auth = \"private_key_jwt\"\nclient_key = \"{rsa}\""
    ))
    .unwrap();
    assert!(matches!(
        &c.oidc.as_ref().unwrap().first().client_auth,
        ClientAuth::PrivateKeyJwt(k) if k.alg == jsonwebtoken::Algorithm::RS256
    ));
    let cases = [
        // A secret beside a key would be silently unused.
        (
            format!(
                "client_auth = \"private_key_jwt\"\nclient_key = \"{}\"\nclient_secret = \"x\"",
                key.display()
            ),
            "oidc.client_secret",
        ),
        ("client_auth = \"private_key_jwt\"".to_string(), "oidc.client_key"),
        (
            format!(
                "client_auth = \"private_key_jwt\"\nclient_key = \"{}\"",
                cert.display()
            ),
            "oidc.client_key",
        ),
        (
            "client_auth = \"private_key_jwt\"\nclient_key = \"/nonexistent/key.pem\"".to_string(),
            "oidc.client_key",
        ),
        (
            "client_secret = \"x\"\nclient_auth = \"client_secret_post\"\ntoken_endpoint_auth_method = \"client_secret_post\"".to_string(),
            "oidc.token_endpoint_auth_method",
        ),
        (
            format!("client_secret = \"x\"\nclient_key = \"{}\"", key.display()),
            "oidc.client_key",
        ),
        ("client_auth = \"client_secret_jwt\"".to_string(), "oidc.client_auth"),
    ];
    for (lines, key) in cases {
        let e = with_client_auth(&lines).unwrap_err();
        assert_eq!(e.key, key, "{lines}: {e}");
    }
}

#[test]
fn client_auth_tls_needs_a_certificate_and_its_own_key() {
    let (cert, key) = tls_files("client-tls");
    let (_, other_key) = tls_files("client-tls-other");
    let ok = with_client_auth(&format!(
        "client_auth = \"tls_client_auth\"\nclient_cert = \"{}\"\nclient_key = \"{}\"",
        cert.display(),
        key.display()
    ))
    .unwrap();
    let oidc = ok.oidc.as_ref().unwrap().first();
    assert!(oidc.client_auth.identity().is_some());
    assert_eq!(oidc.client_auth.method_name(), Some("tls_client_auth"));
    let e = with_client_auth(&format!(
        "client_auth = \"tls_client_auth\"\nclient_cert = \"{}\"\nclient_key = \"{}\"",
        cert.display(),
        other_key.display()
    ))
    .unwrap_err();
    assert_eq!(e.key, "oidc.client_key");
    assert!(e.message.contains("is not the key of"), "{e}");
    let e = with_client_auth(&format!(
        "client_auth = \"tls_client_auth\"\nclient_key = \"{}\"",
        key.display()
    ))
    .unwrap_err();
    assert_eq!(e.key, "oidc.client_cert");
    // The provider's own CA, for a provider on a private PKI.
    let c = parse(&base().replace(
        "[session]",
        &format!("provider_ca = \"{}\"\n[session]", cert.display()),
    ))
    .unwrap();
    assert_eq!(c.oidc.unwrap().first().provider_ca.0.len(), 1);
    let e = parse(&base().replace(
        "[session]",
        &format!("provider_ca = \"{}\"\n[session]", key.display()),
    ))
    .unwrap_err();
    assert_eq!(e.key, "oidc.provider_ca");
}

#[test]
fn session_storage_and_revocation_are_checked() {
    // The base file ends in [session]: these lines go into it.
    let with = |lines: &str| parse(&format!("{}{lines}\n", base()));
    let c = with("store = \"redis\"\n[session.redis]\nurl = \"redis://127.0.0.1:6379/0\"").unwrap();
    assert!(matches!(
        c.session.as_ref().unwrap().storage,
        SessionStorage::Redis(_)
    ));
    for (lines, key) in [
        ("store = \"redis\"", "session.redis"),
        ("[session.redis]\nurl = \"redis://x\"", "session.redis"),
        (
            "store = \"redis\"\n[session.redis]\nurl = \"http://x\"",
            "session.redis.url",
        ),
        (
            "store = \"redis\"\n[session.redis]\nurl = \"redis://x\"\ncluster = [\"redis://y\"]",
            "session.redis.url",
        ),
        (
            "store = \"redis\"\n[session.redis]\nurl = \"redis://x\"\n[session.revocation]\nurl = \"redis://x\"",
            "session.revocation",
        ),
        ("[session.revocation]\nurl = \"ftp://x\"", "session.revocation.url"),
    ] {
        let e = with(lines).unwrap_err();
        assert_eq!(e.key, key, "{lines}: {e}");
    }
    let c = with("[session.revocation]\nurl = \"redis://127.0.0.1:6379/0\"").unwrap();
    assert!(c.session.unwrap().revocation.is_some());
}

#[test]
fn a_configuration_lists_the_files_it_names_for_reloads_to_watch() {
    let dir = std::env::temp_dir().join(format!("portcullis-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("client.secret");
    std::fs::write(&secret, "from-a-file\n").unwrap();
    let file = dir.join("portcullis.toml");
    let text = base().replace(
        "client_secret = \"s3cr3t-value\"",
        &format!("client_secret_file = \"{}\"", secret.display()),
    );
    std::fs::write(&file, text).unwrap();
    let c = Config::load(&file).unwrap();
    assert_eq!(c.files, vec![file.clone(), secret.clone()]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_reload_keeps_what_only_a_restart_changes_and_names_it() {
    let running = parse(&base()).unwrap();
    let mut next = parse(&base().replace(
        "listen = \"127.0.0.1:4180\"",
        "listen = \"127.0.0.1:4181\"\nthreads = 7\nmax_connections = 10000",
    ))
    .unwrap();
    let mut same = parse(&base()).unwrap();
    assert!(same.keep_restart_only(&running).is_empty());
    assert_eq!(
        next.keep_restart_only(&running),
        vec![
            "server.listen / server.listeners",
            "server.threads",
            "server.max_connections / server.max_connections_per_client",
        ]
    );
    assert_eq!(next.server.listeners, running.server.listeners);
    assert_eq!(next.server.threads, running.server.threads);
    assert_eq!(
        next.server.connection_limits,
        running.server.connection_limits
    );
}

/// Two providers in `[[oidc.providers]]`, with `extra` added to the second's table.
fn two_providers(extra: &str) -> String {
    format!(
        r#"
[upstream]
url = "http://127.0.0.1:8080"
[[oidc.providers]]
id = "okta"
name = "Staff (Okta)"
issuer = "https://okta.example.com"
client_id = "portcullis"
client_secret = "s3cr3t-value"
redirect_url = "https://app.example.com/oauth2/callback"
[[oidc.providers]]
id = "github-enterprise"
issuer = "https://ghe.example.com"
client_id = "portcullis-ghe"
redirect_url = "https://app.example.com/oauth2/callback/ghe"
{extra}
[session]
secrets = ["{SECRET}"]
"#
    )
}

#[test]
fn several_providers_each_with_their_own_table() {
    let env = |k: &str| {
        (k == "PORTCULLIS_OIDC_CLIENT_SECRET_GITHUB_ENTERPRISE").then(|| "from-env".to_string())
    };
    let c = Config::parse(&two_providers(""), "config.toml", &env).unwrap();
    let oidc = c.oidc.as_ref().unwrap();
    assert_eq!(oidc.len(), 2);
    let okta = oidc.get("okta").unwrap();
    assert_eq!(okta.name, "Staff (Okta)");
    let ghe = oidc.get("github-enterprise").unwrap();
    assert_eq!(
        (ghe.name.as_str(), ghe.callback_path.as_str()),
        ("github-enterprise", "/oauth2/callback/ghe")
    );
    match &ghe.client_auth {
        ClientAuth::Secret { secret, .. } => assert_eq!(secret.expose(), "from-env"),
        other => panic!("{other:?}"),
    }
    // The second provider's secret is its own: without it, its key is named.
    let e = parse(&two_providers("")).unwrap_err();
    assert_eq!(e.key, "oidc.providers[1].client_secret");
    assert!(
        e.message
            .contains("PORTCULLIS_OIDC_CLIENT_SECRET_GITHUB_ENTERPRISE"),
        "{e}"
    );
    // A lone [oidc] is the provider `default`.
    assert_eq!(parse(&base()).unwrap().oidc.unwrap().first().id, "default");
}

#[test]
fn several_providers_refuse_what_could_be_read_two_ways() {
    let with_secret = |extra: &str| two_providers(&format!("client_secret = \"x\"\n{extra}"));
    for (text, key) in [
        (
            with_secret("").replace(
                "[[oidc.providers]]\nid = \"okta\"",
                "[oidc]\nclient_id = \"stray\"\n[[oidc.providers]]\nid = \"okta\"",
            ),
            "oidc.client_id",
        ),
        (
            with_secret("").replace("id = \"github-enterprise\"", "id = \"okta\""),
            "oidc.providers[1].id",
        ),
        (
            with_secret("").replace("id = \"github-enterprise\"\n", ""),
            "oidc.providers[1].id",
        ),
        (
            with_secret("").replace("id = \"github-enterprise\"", "id = \"Git Hub\""),
            "oidc.providers[1].id",
        ),
        (
            with_secret("").replace("https://ghe.example.com", "https://okta.example.com"),
            "oidc.providers[1].issuer",
        ),
        (
            with_secret("").replace(
                "id = \"okta\"\nname = \"Staff (Okta)\"",
                "id = \"okta\"\nname = \"\"",
            ),
            "oidc.providers[0].name",
        ),
        (
            with_secret("scopes = [\"email\"]"),
            "oidc.providers[1].scopes",
        ),
    ] {
        let e = parse(&text).unwrap_err();
        assert_eq!(e.key, key, "{text}\n{e}");
    }
}

#[test]
fn a_route_chooses_a_provider_that_exists() {
    let text = |route: &str| {
        two_providers("client_secret = \"x\"")
            + &format!("[[routes]]\npath = \"/admin\"\n{route}\n")
    };
    let c = parse(&text("provider = \"github-enterprise\"")).unwrap();
    let route = c
        .routes
        .lookup(None, None, &crate::policy::normalise(b"/admin/x").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(route.provider(), Some("github-enterprise"));
    let e = parse(&text("provider = \"gitlab\"")).unwrap_err();
    assert_eq!(e.key, "routes[0].provider");
    assert!(e.message.contains("okta"), "{e}");
    let e = parse(&text("provider = \"okta\"\npolicy = \"public\"")).unwrap_err();
    assert_eq!(e.key, "routes[0].provider");
}

#[test]
fn the_user_format_names_only_what_there_is() {
    let with = |f: &str| parse(&format!("{}[headers]\nuser_format = \"{f}\"\n", base()));
    assert!(with("{provider}:{user}").is_ok());
    assert!(with("{user}@{issuer}").is_ok());
    for bad in ["{provider}", "{user}{user}", "{usr}", "{user", "a,{user}"] {
        let e = with(bad).unwrap_err();
        assert_eq!(e.key, "headers.user_format", "{bad}: {e}");
    }
}

#[test]
fn the_resource_and_its_authorization_servers_are_urls() {
    let with = |lines: &str| {
        parse(&format!(
            "{}[bearer]\naudiences = [\"api\"]\n{lines}\n",
            base()
        ))
    };
    let c = with("resource = \"https://api.example.com/mcp\"").unwrap();
    assert_eq!(c.bearer.resource.unwrap().path(), "/mcp");
    for (lines, key) in [
        ("resource = \"api.example.com\"", "bearer.resource"),
        (
            "resource = \"https://api.example.com/?x=1\"",
            "bearer.resource",
        ),
        ("resource = \"http://api.example.com\"", "bearer.resource"),
        ("authorization_servers = []", "bearer.authorization_servers"),
        (
            "authorization_servers = [\"https://a\", \"ftp://b\"]",
            "bearer.authorization_servers[1]",
        ),
    ] {
        assert_eq!(with(lines).unwrap_err().key, key, "{lines}");
    }
}

#[test]
fn alb_headers_need_their_signer_and_the_assertion_its_switch() {
    let with = |lines: &str| parse(&format!("{}[headers]\n{lines}\n", base()));
    let c = with("style = \"both\"\nassertion = true\n[headers.alb]\nsigner = \"arn:x\"").unwrap();
    assert_eq!(c.headers.alb_signer.as_deref(), Some("arn:x"));
    assert_eq!(
        c.headers.assertion.unwrap().audience,
        "http://127.0.0.1:8080"
    );
    for (lines, key) in [
        ("style = \"alb\"", "headers.alb.signer"),
        ("[headers.alb]\nsigner = \"arn:x\"", "headers.alb"),
        (
            "style = \"alb\"\n[headers.alb]\nsigner = \" \"",
            "headers.alb.signer",
        ),
        ("assertion_audience = \"https://app\"", "headers.assertion"),
    ] {
        assert_eq!(with(lines).unwrap_err().key, key, "{lines}");
    }
    assert!(with("style = \"aws\"").is_err());
}
