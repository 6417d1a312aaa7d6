//! `portcullis import oauth2-proxy`: an oauth2-proxy configuration (its config file, its
//! command-line flags, or both, the flags winning) turned into a portcullis configuration.
//! Every option given is either carried over or listed with the reason it was not: nothing is
//! dropped in silence, and nothing is guessed (a route regex that is not a plain path prefix
//! or path is listed, not approximated).

use std::collections::BTreeMap;

use toml::{Table, Value};

/// The result: the TOML text, and what could not be carried over (option: why).
pub struct Imported {
    /// A portcullis configuration file.
    pub toml: String,
    /// Each option left out, with the reason, in the order of the options' names.
    pub left_out: Vec<String>,
}

/// oauth2-proxy's options as given: each a list of values (a flag given twice, or a list in
/// the file, has several).
type Options = BTreeMap<String, Vec<Value>>;

/// Flags whose name is not their config-file key with `-` for `_`.
const FLAG_KEYS: &[(&str, &str)] = &[
    ("email-domain", "email_domains"),
    ("upstream", "upstreams"),
    ("allowed-group", "allowed_groups"),
    ("skip-auth-route", "skip_auth_routes"),
    ("whitelist-domain", "whitelist_domains"),
    ("cookie-domain", "cookie_domains"),
    ("trusted-ip", "trusted_ips"),
];

/// Options that are lists (a flag may be repeated, or hold values separated by commas).
const LIST_KEYS: &[&str] = &[
    "email_domains",
    "upstreams",
    "allowed_groups",
    "skip_auth_routes",
    "whitelist_domains",
    "cookie_domains",
    "trusted_ips",
    "extra_jwt_issuers",
];

/// Reads `args`: file names, `--flag=value`, `--flag value` and `--flag` (a boolean).
pub fn oauth2_proxy(args: &[String]) -> Result<Imported, String> {
    let mut file: Options = BTreeMap::new();
    let mut flags: Options = BTreeMap::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            read_file(arg, &mut file)?;
            continue;
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Value::String(v.to_string())),
            None => match args.get(i) {
                Some(next) if !next.starts_with('-') && !is_boolean_flag(flag) => {
                    i += 1;
                    (flag.to_string(), Value::String(next.clone()))
                }
                _ => (flag.to_string(), Value::Boolean(true)),
            },
        };
        if name == "config" {
            read_file(value.as_str().unwrap_or_default(), &mut file)?;
            continue;
        }
        let key = FLAG_KEYS
            .iter()
            .find(|(f, _)| *f == name)
            .map_or_else(|| name.replace('-', "_"), |(_, k)| k.to_string());
        // pflag's string slices split on commas too.
        let values: Vec<Value> = match (&value, LIST_KEYS.contains(&key.as_str())) {
            (Value::String(s), true) => s
                .split(',')
                .map(|v| Value::String(v.trim().to_string()))
                .collect(),
            _ => vec![value],
        };
        flags.entry(key).or_default().extend(values);
    }
    // A flag replaces the file's value of the same option.
    file.extend(flags);
    Ok(translate(file))
}

/// Flags that take no value, so `--flag next` keeps `next` as a file name.
fn is_boolean_flag(flag: &str) -> bool {
    matches!(
        flag,
        "reverse-proxy"
            | "skip-jwt-bearer-tokens"
            | "pass-access-token"
            | "pass-authorization-header"
            | "set-xauthrequest"
            | "set-authorization-header"
            | "pass-user-headers"
            | "cookie-secure"
            | "cookie-httponly"
            | "skip-provider-button"
            | "ssl-insecure-skip-verify"
            | "insecure-oidc-allow-unverified-email"
    )
}

fn read_file(path: &str, into: &mut Options) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let table: Table = text
        .parse()
        .map_err(|e| format!("{path}: not an oauth2-proxy config file: {e}"))?;
    for (key, value) in table {
        let values = match value {
            Value::Array(items) => items,
            other => vec![other],
        };
        into.insert(key, values);
    }
    Ok(())
}

/// Builds the portcullis configuration, taking each option it understands out of `options`;
/// what is left is listed.
fn translate(mut options: Options) -> Imported {
    let mut left_out = Vec::new();
    let mut out = Table::new();
    let mut take = |key: &str| options.remove(key);
    let strings = |values: Vec<Value>| -> Vec<String> {
        values
            .into_iter()
            .filter_map(|v| match v {
                Value::String(s) if !s.is_empty() => Some(s),
                Value::String(_) => None,
                other => Some(other.to_string()),
            })
            .collect()
    };
    let first = |values: Option<Vec<Value>>| values.map(strings).and_then(|v| v.into_iter().next());
    let truth = |values: Option<Vec<Value>>| {
        values.and_then(|v| v.into_iter().next()).map(|v| match v {
            Value::Boolean(b) => b,
            Value::String(s) => s == "true",
            _ => false,
        })
    };
    // [server]
    let mut server = Table::new();
    if let Some(address) = first(take("http_address")) {
        let address = address
            .strip_prefix("http://")
            .unwrap_or(&address)
            .to_string();
        let address = if address.starts_with(':') {
            format!("0.0.0.0{address}")
        } else {
            address
        };
        server.insert("listen".into(), Value::String(address));
    }
    let trusted = take("trusted_ips").map(strings).unwrap_or_default();
    if !trusted.is_empty() {
        server.insert("trusted_proxies".into(), strings_value(trusted));
    }
    if truth(take("reverse_proxy")) == Some(true) && !server.contains_key("trusted_proxies") {
        left_out.push(
            "reverse_proxy: portcullis believes forwarding headers only from the addresses in \
             server.trusted_proxies; list your proxy's there"
                .to_string(),
        );
    }

    // [upstream]
    let upstreams = take("upstreams").map(strings).unwrap_or_default();
    let mut upstream = Table::new();
    match upstreams.split_first() {
        Some((u, rest)) if u.starts_with("http://") || u.starts_with("https://") => {
            upstream.insert("url".into(), Value::String(u.clone()));
            if !rest.is_empty() {
                left_out.push(format!(
                    "upstreams: portcullis forwards to one upstream ({u}); not carried over: {}",
                    rest.join(", ")
                ));
            }
        }
        Some((u, _)) => {
            upstream.insert("url".into(), Value::String("http://127.0.0.1:9".into()));
            left_out.push(format!(
                "upstreams: {u} is not an http(s) URL; with a front proxy asking /oauth2/auth \
                 (as with static://202) the upstream is never reached: upstream.url is a \
                 placeholder"
            ));
        }
        None => {
            upstream.insert("url".into(), Value::String("http://127.0.0.1:9".into()));
            left_out.push("upstreams: none given; upstream.url is a placeholder".to_string());
        }
    }

    // [oidc]
    let mut oidc = Table::new();
    let provider = first(take("provider")).unwrap_or_else(|| "google".into());
    let issuer = first(take("oidc_issuer_url"))
        .or_else(|| (provider == "google").then(|| "https://accounts.google.com".to_string()));
    match (&issuer, provider.as_str()) {
        (
            Some(_),
            "oidc" | "keycloak-oidc" | "google" | "azure" | "entra-id" | "gitlab" | "adfs",
        ) => {}
        (Some(_), other) => left_out.push(format!(
            "provider: {other:?} is not OpenID Connect in oauth2-proxy; portcullis uses the \
             issuer's discovery document instead ({})",
            issuer.as_deref().unwrap_or_default()
        )),
        (None, other) => left_out.push(format!(
            "provider: {other:?} without oidc_issuer_url: portcullis needs an OpenID Connect \
             issuer (oidc.issuer is a placeholder)"
        )),
    }
    oidc.insert(
        "issuer".into(),
        Value::String(issuer.unwrap_or_else(|| "https://issuer.example".into())),
    );
    for (from, to) in [
        ("client_id", "client_id"),
        ("client_secret", "client_secret"),
        ("client_secret_file", "client_secret_file"),
        ("redirect_url", "redirect_url"),
        ("oidc_email_claim", "email_claim"),
        ("oidc_groups_claim", "groups_claim"),
        ("user_id_claim", "user_claim"),
    ] {
        if let Some(v) = first(take(from)) {
            oidc.insert(to.into(), Value::String(v));
        }
    }
    if let Some(scope) = first(take("scope")) {
        let scopes: Vec<String> = scope.split_whitespace().map(str::to_string).collect();
        oidc.insert("scopes".into(), strings_value(scopes));
    }
    if let Some(method) = first(take("code_challenge_method")) {
        if method != "S256" {
            left_out.push(format!(
                "code_challenge_method: portcullis always uses S256 PKCE, not {method:?}"
            ));
        }
    }

    // [session]
    let mut session = Table::new();
    if let Some(name) = first(take("cookie_name")) {
        session.insert("cookie_name".into(), Value::String(name));
    }
    if take("cookie_secret").is_some() {
        left_out.push(
            "cookie_secret: oauth2-proxy's sessions cannot be read by portcullis, so its secret \
             is not reused; session.secrets holds a new one (users sign in once more)"
                .to_string(),
        );
    }
    session.insert(
        "secrets".into(),
        strings_value(vec![crate::config::generate_secret()]),
    );
    if let Some(expire) = first(take("cookie_expire")) {
        session.insert("lifetime".into(), Value::String(expire));
    }
    if take("cookie_refresh").is_some() {
        left_out.push(
            "cookie_refresh: portcullis refreshes a session when the provider's tokens expire"
                .to_string(),
        );
    }
    let domains = take("cookie_domains")
        .or_else(|| take("cookie_domain"))
        .map(strings)
        .unwrap_or_default();
    if let Some((d, rest)) = domains.split_first() {
        session.insert(
            "domain".into(),
            Value::String(d.trim_start_matches('.').into()),
        );
        if !rest.is_empty() {
            left_out.push(format!(
                "cookie_domains: portcullis sets one domain ({d}); not carried over: {}",
                rest.join(", ")
            ));
        }
    }
    if let Some(secure) = truth(take("cookie_secure")) {
        session.insert("secure".into(), Value::Boolean(secure));
    }
    if let Some(same_site) = first(take("cookie_samesite")) {
        session.insert("same_site".into(), Value::String(same_site.to_lowercase()));
    }
    take("cookie_httponly");
    match first(take("session_store_type")).as_deref() {
        Some("redis") => {
            session.insert("store".into(), Value::String("redis".into()));
            let mut redis = Table::new();
            match first(take("redis_connection_url")) {
                Some(url) => {
                    redis.insert("url".into(), Value::String(url));
                }
                None => left_out.push(
                    "session_store_type: redis without redis_connection_url (Sentinel and \
                     Cluster take session.redis.sentinel / cluster)"
                        .to_string(),
                ),
            }
            session.insert("redis".into(), Value::Table(redis));
        }
        Some("cookie") | None => {}
        Some(other) => left_out.push(format!("session_store_type: {other:?} is not known")),
    }

    // [authorization]
    let mut authorization = Table::new();
    let email_domains: Vec<String> = take("email_domains")
        .map(strings)
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d != "*")
        .collect();
    if !email_domains.is_empty() {
        authorization.insert("allowed_email_domains".into(), strings_value(email_domains));
    }
    if let Some(path) = first(take("authenticated_emails_file")) {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let emails: Vec<String> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_string)
                    .collect();
                authorization.insert("allowed_emails".into(), strings_value(emails));
            }
            Err(e) => left_out.push(format!("authenticated_emails_file: {path}: {e}")),
        }
    }
    let groups = take("allowed_groups").map(strings).unwrap_or_default();
    if !groups.is_empty() {
        authorization.insert("allowed_groups".into(), strings_value(groups));
    }

    // [[routes]]: skip_auth_routes ("METHOD=^/path") and the older skip_auth_regex.
    let mut routes = Vec::new();
    let skipped = take("skip_auth_routes")
        .into_iter()
        .chain(take("skip_auth_regex"))
        .flat_map(strings);
    for rule in skipped {
        match public_route(&rule) {
            Some(route) => routes.push(Value::Table(route)),
            None => left_out.push(format!(
                "skip_auth_routes: {rule:?} is a regex portcullis does not read as a path or a \
                 path prefix; write it as a [[routes]] entry with policy = \"public\""
            )),
        }
    }

    // [bearer]: skip_jwt_bearer_tokens accepts the login issuer's tokens for our client, and
    // extra_jwt_issuers ("issuer=audience") others.
    let mut bearer = Table::new();
    if truth(take("skip_jwt_bearer_tokens")) == Some(true) {
        // oauth2-proxy checks the login issuer's tokens against our client id: its ID tokens.
        bearer.insert("accept_id_tokens".into(), Value::Boolean(true));
        let mut issuers = Vec::new();
        for pair in take("extra_jwt_issuers").map(strings).unwrap_or_default() {
            match pair.split_once('=') {
                Some((iss, aud)) => {
                    let mut t = Table::new();
                    t.insert("issuer".into(), Value::String(iss.into()));
                    t.insert("audiences".into(), strings_value(vec![aud.to_string()]));
                    issuers.push(Value::Table(t));
                }
                None => left_out.push(format!(
                    "extra_jwt_issuers: {pair:?} is not issuer=audience"
                )),
            }
        }
        if !issuers.is_empty() {
            bearer.insert("issuers".into(), Value::Array(issuers));
        }
    }

    // [headers]
    let mut headers = Table::new();
    if truth(take("pass_access_token")) == Some(true) {
        headers.insert("pass_access_token".into(), Value::Boolean(true));
    }
    if truth(take("pass_authorization_header")) == Some(true) {
        headers.insert("pass_id_token_as_bearer".into(), Value::Boolean(true));
    }
    // portcullis always answers /oauth2/auth with X-Auth-Request-* and always sends the
    // upstream the identity headers.
    take("set_xauthrequest");
    take("pass_user_headers");

    // [redirects]
    let mut redirects = Table::new();
    let allowed = take("whitelist_domains").map(strings).unwrap_or_default();
    if !allowed.is_empty() {
        redirects.insert("allowed_domains".into(), strings_value(allowed));
    }

    for (key, values) in options {
        let shown = match key.as_str() {
            k if k.contains("secret") || k.contains("password") => "[set]".to_string(),
            _ => strings(values).join(", "),
        };
        left_out.push(format!("{key} = {shown}: not carried over"));
    }
    for (name, table) in [
        ("server", server),
        ("upstream", upstream),
        ("oidc", oidc),
        ("session", session),
        ("authorization", authorization),
        ("bearer", bearer),
        ("headers", headers),
        ("redirects", redirects),
    ] {
        if !table.is_empty() {
            out.insert(name.into(), Value::Table(table));
        }
    }
    if !routes.is_empty() {
        out.insert("routes".into(), Value::Array(routes));
    }
    left_out.sort();
    Imported {
        toml: toml::to_string(&out).unwrap_or_default(),
        left_out,
    }
}

fn strings_value(values: Vec<String>) -> Value {
    Value::Array(values.into_iter().map(Value::String).collect())
}

/// A public route for one of oauth2-proxy's skip-auth rules, when its regex is a plain path
/// (`^/healthz$`) or path prefix (`^/static/`), with or without a `METHOD=` in front.
fn public_route(rule: &str) -> Option<Table> {
    let (method, regex) = match rule.split_once('=') {
        Some((m, r)) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => (Some(m), r),
        _ => (None, rule),
    };
    let body = regex.strip_prefix('^')?;
    let (path, exact) = match body.strip_suffix('$') {
        Some(p) => (p, true),
        None => (body, false),
    };
    let plain = path.starts_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'~'));
    if !plain {
        return None;
    }
    let mut route = Table::new();
    route.insert("path".into(), Value::String(path.to_string()));
    if exact {
        route.insert("exact".into(), Value::Boolean(true));
    }
    route.insert("policy".into(), Value::String("public".into()));
    if let Some(m) = method {
        route.insert("methods".into(), strings_value(vec![m.to_string()]));
    }
    Some(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import(args: &[&str]) -> Imported {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        oauth2_proxy(&args).unwrap()
    }

    /// The output is a configuration portcullis accepts.
    fn parses(imported: &Imported) -> crate::config::Config {
        crate::config::Config::parse(&imported.toml, "imported.toml", &|_| None)
            .unwrap_or_else(|e| panic!("{e}\n{}", imported.toml))
    }

    #[test]
    fn a_config_file_and_flags_become_a_configuration_that_validates() {
        let dir = std::env::temp_dir().join(format!("portcullis-import-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("oauth2-proxy.cfg");
        std::fs::write(
            &file,
            r#"
http_address = "0.0.0.0:4180"
provider = "oidc"
oidc_issuer_url = "https://login.example.com/realms/staff"
client_id = "web"
client_secret = "abc123"
redirect_url = "https://app.example.com/oauth2/callback"
upstreams = ["http://127.0.0.1:8080/"]
email_domains = ["example.com"]
cookie_name = "_oauth2_proxy"
cookie_secret = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"
cookie_expire = "12h"
cookie_refresh = "1h"
cookie_secure = true
skip_auth_routes = ["GET=^/healthz$", "^/static/", "^/api/v[0-9]+/public"]
whitelist_domains = [".example.com"]
pass_access_token = true
custom_sign_in_logo = "/logo.png"
"#,
        )
        .unwrap();
        let imported = import(&[
            file.to_str().unwrap(),
            "--allowed-group=sre",
            "--allowed-group",
            "ops",
            "--skip-jwt-bearer-tokens",
            "--extra-jwt-issuers=https://ci.example.com=ci-api",
        ]);
        let config = parses(&imported);
        let oidc = config.oidc.as_ref().unwrap().first();
        assert_eq!(oidc.issuer, "https://login.example.com/realms/staff");
        assert_eq!(config.upstream.url.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(
            config.server.listeners[0].address.to_string(),
            "0.0.0.0:4180"
        );
        assert_eq!(
            config.session.as_ref().unwrap().cookie_name,
            "_oauth2_proxy"
        );
        assert_eq!(config.bearer.issuers.len(), 1);
        assert!(config.headers.pass_access_token);
        assert!(
            imported
                .toml
                .contains("allowed_groups = [\"sre\", \"ops\"]"),
            "{}",
            imported.toml
        );
        assert!(imported.toml.contains("\"/healthz\""), "{}", imported.toml);
        // Listed, never dropped in silence: a regex it cannot read, options it does not have,
        // the secret it does not reuse (its value never shown).
        let listed = imported.left_out.join("\n");
        for expected in [
            "^/api/v[0-9]+/public",
            "custom_sign_in_logo",
            "cookie_refresh",
            "cookie_secret",
        ] {
            assert!(
                listed.contains(expected),
                "{expected} not listed:\n{listed}"
            );
        }
        assert!(!listed.contains("c2VjcmV0"), "a secret's value was shown");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_auth_only_deployment_and_unknown_options_are_said_so() {
        let imported = import(&[
            "--provider=oidc",
            "--oidc-issuer-url=https://idp.example.com",
            "--client-id=c",
            "--client-secret=s",
            "--redirect-url=https://app.example.com/oauth2/callback",
            "--upstream=static://202",
            "--reverse-proxy",
            "--ssl-insecure-skip-verify",
        ]);
        parses(&imported);
        let listed = imported.left_out.join("\n");
        assert!(listed.contains("static://202"), "{listed}");
        assert!(listed.contains("trusted_proxies"), "{listed}");
        assert!(listed.contains("ssl_insecure_skip_verify"), "{listed}");
    }

    #[test]
    fn only_plain_paths_and_prefixes_become_public_routes() {
        assert!(public_route("^/healthz$").is_some());
        assert!(public_route("POST=^/hooks/").is_some());
        assert!(public_route("^/a.b$").is_none());
        assert!(public_route("/no-anchor").is_none());
        assert!(public_route("^/(a|b)").is_none());
    }
}
