//! Test harness: the real `portcullis` binary as a child process on an ephemeral port, the
//! development provider and echo upstream in-process, and a tiny browser-like client with a
//! cookie jar we can inspect and replay.
//!
//! The submodules hold what the bearer-token tests forge and check tokens with: [`jws`] (compact
//! JWS by hand), [`keys`] (key fixtures, PEM/DER, JWKs, EC keys, `openssl`), [`tokens`] (the
//! issuers' tokens), [`trap`] (a listener that must never be asked) and [`bearer`] (their bench).

pub mod bearer;
pub mod dpop;
pub mod jws;
pub mod keys;
pub mod pki;
pub mod redis;
pub mod tokens;
pub mod trap;
pub mod upstream;

use std::collections::BTreeMap;
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portcullis::demo::{DevIdp, DevIdpConfig, EchoServer};
use reqwest::header::{HeaderMap, ACCEPT, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Response, StatusCode};

pub const SECRET: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY";
pub const BROWSER_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

/// A port that was free a moment ago (bind :0, read, drop).
/// Ports are drawn below Linux's ephemeral range (32768+), where in-process servers bound to
/// port 0 land, so a proxy's port is not taken by another test's provider or upstream in the
/// moment between this check and the proxy binding it.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    for attempt in 0..1000u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(attempt);
        let port = 20_000 + (h.finish() % 12_000) as u16;
        if StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

/// Polls `check` until it returns true or `within` passes: a readiness probe, not a sleep.
pub async fn wait_until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The value of one series in the text exposition format (0 when absent).
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Polls `url` until it answers 200.
pub async fn wait_for_ok(url: &str, what: &str, within: Duration) {
    let client = plain_client();
    wait_until(what, within, || {
        let req = client.get(url);
        async move { req.send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
}

/// The proxy binary with a generated config; killed (by PID) on drop.
pub struct Proxy {
    child: Child,
    pub port: u16,
    pub base: String,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(format!("{}-{name}", COUNTER.fetch_add(1, Ordering::SeqCst)))
}

/// A new, empty directory of its own in the test process's temp directory.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = scratch(name);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A file for this test process (a config, keys it names), in the process's own temp directory.
pub fn scratch_file(name: &str, contents: &[u8]) -> PathBuf {
    let path = scratch(name);
    std::fs::write(&path, contents).expect("write scratch file");
    path
}

pub fn write_config(toml: &str) -> PathBuf {
    scratch_file("config.toml", toml.as_bytes())
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

impl Proxy {
    /// Starts `portcullis run` on `port` and waits until `/ping` answers.
    pub async fn start(port: u16, toml: &str) -> Proxy {
        Proxy::start_logging(port, toml, "info").await
    }

    /// [`Proxy::start`] with `RUST_LOG` set to `rust_log`.
    pub async fn start_logging(port: u16, toml: &str, rust_log: &str) -> Proxy {
        let config_path = write_config(toml);
        let args = [
            "run".to_string(),
            "--config".into(),
            config_path.display().to_string(),
        ];
        Proxy::spawn_logging(port, &args, config_path, rust_log).await
    }

    /// Starts `portcullis <args>` serving on `port` and waits until `/ping` answers.
    pub async fn spawn(port: u16, args: &[String], config_path: PathBuf) -> Proxy {
        Proxy::spawn_logging(port, args, config_path, "info").await
    }

    async fn spawn_logging(
        port: u16,
        args: &[String],
        config_path: PathBuf,
        rust_log: &str,
    ) -> Proxy {
        let log_path = scratch("proxy.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(binary())
            .args(args)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn portcullis");
        let proxy = Proxy {
            child,
            port,
            base: format!("http://127.0.0.1:{port}"),
            config_path,
            log_path,
        };
        wait_for_ok(
            &proxy.url("/ping"),
            "the proxy to listen",
            Duration::from_secs(20),
        )
        .await;
        proxy
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The proxy process's id (for `/proc/<pid>/…` checks).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends the proxy SIGHUP (reload).
    pub fn hangup(&self) {
        let hup = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(hup.success(), "kill -HUP");
    }

    /// Waits for `/ready` to answer 200.
    pub async fn wait_ready(&self) {
        wait_for_ok(
            &self.url("/ready"),
            "the proxy to be ready",
            Duration::from_secs(30),
        )
        .await;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// The config for a proxy on `port` in front of `upstream`, logging in at `issuer`.
pub fn config(port: u16, issuer: &str, upstream: &str, extra: &str) -> String {
    let idp = DevIdpConfig::default();
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
[upstream]
url = "{upstream}"
[oidc]
issuer = "{issuer}"
client_id = "{client_id}"
client_secret = "{client_secret}"
redirect_url = "http://127.0.0.1:{port}/oauth2/callback"
[session]
secrets = ["{SECRET}"]
secure = false
[logging]
format = "json"
{extra}
"#,
        client_id = idp.client_id,
        client_secret = idp.client_secret,
    )
}

/// Adds `line` to the `[session]` table of a generated config.
pub fn session_option(toml: String, line: &str) -> String {
    toml.replacen("[session]\n", &format!("[session]\n{line}\n"), 1)
}

/// The dev provider configured for a proxy on `port`.
pub fn idp_config(port: u16) -> DevIdpConfig {
    DevIdpConfig {
        redirect_uris: vec![format!("http://127.0.0.1:{port}/oauth2/callback")],
        post_logout_redirect_uris: vec![format!("http://127.0.0.1:{port}/")],
        ..DevIdpConfig::default()
    }
}

pub async fn start_idp_on(listener: tokio::net::TcpListener, config: DevIdpConfig) -> DevIdp {
    DevIdp::start(listener, config).await.expect("dev idp")
}

pub async fn start_idp(config: DevIdpConfig) -> DevIdp {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    start_idp_on(l, config).await
}

pub async fn start_echo() -> EchoServer {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    EchoServer::start(l).await.expect("echo")
}

/// A provider whose access tokens expire at once: every request with a session refreshes.
pub fn expiring_tokens(c: DevIdpConfig) -> DevIdpConfig {
    DevIdpConfig {
        access_token_ttl: Duration::ZERO,
        ..c
    }
}

/// Everything a typical test needs, started and ready.
pub struct World {
    pub idp: DevIdp,
    pub echo: EchoServer,
    pub proxy: Proxy,
}

impl World {
    /// `extra`: TOML tables appended to the generated config.
    pub async fn start(
        idp_config: impl FnOnce(DevIdpConfig) -> DevIdpConfig,
        extra: &str,
    ) -> World {
        World::start_with(idp_config, |toml| toml + extra).await
    }

    /// Like [`World::start`], with the generated config rewritten by `edit`.
    pub async fn start_with(
        idp_config: impl FnOnce(DevIdpConfig) -> DevIdpConfig,
        edit: impl FnOnce(String) -> String,
    ) -> World {
        let port = free_port();
        let idp = start_idp(idp_config(self::idp_config(port))).await;
        let echo = start_echo().await;
        let toml = edit(config(
            port,
            idp.issuer(),
            &format!("http://{}", echo.addr()),
            "",
        ));
        let proxy = Proxy::start(port, &toml).await;
        proxy.wait_ready().await;
        World { idp, echo, proxy }
    }
}

/// A cookie jar we control: what a browser or a script would send.
#[derive(Clone, Default)]
pub struct Jar {
    pub cookies: BTreeMap<String, String>,
}

impl Jar {
    pub fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Applies every `Set-Cookie` of a response; `Max-Age=0` deletes.
    pub fn absorb(&mut self, headers: &HeaderMap) {
        for sc in headers.get_all(SET_COOKIE) {
            let sc = sc.to_str().expect("ascii set-cookie");
            let (pair, attrs) = sc.split_once(';').unwrap_or((sc, ""));
            let (name, value) = pair.split_once('=').expect("name=value");
            if attrs.to_ascii_lowercase().contains("max-age=0") {
                self.cookies.remove(name.trim());
            } else {
                self.cookies
                    .insert(name.trim().to_string(), value.trim().to_string());
            }
        }
    }

    pub fn session_names(&self) -> Vec<&String> {
        self.cookies
            .keys()
            .filter(|k| k.starts_with("_portcullis") && !k.contains("_flow_"))
            .collect()
    }
}

/// A browser-ish client: no automatic redirects, explicit cookie jar.
pub struct Browser {
    pub client: reqwest::Client,
    pub jar: Jar,
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            client: plain_client(),
            jar: Jar::default(),
        }
    }

    pub async fn get(&mut self, url: &str, accept: &str) -> Response {
        let mut req = self.client.get(url).header(ACCEPT, accept);
        if !self.jar.cookies.is_empty() {
            req = req.header(COOKIE, self.jar.header());
        }
        let resp = req.send().await.expect("request");
        self.jar.absorb(resp.headers());
        resp
    }

    /// Starts a login for `target` by navigating there; returns the provider's authorize URL.
    pub async fn begin_login(&mut self, proxy: &Proxy, target: &str) -> String {
        let resp = self.get(&proxy.url(target), BROWSER_ACCEPT).await;
        assert_eq!(
            resp.status(),
            StatusCode::FOUND,
            "navigation must redirect to login"
        );
        let start = location(&resp);
        assert!(start.starts_with("/oauth2/start?rd="), "{start}");
        let resp = self.get(&proxy.url(&start), BROWSER_ACCEPT).await;
        assert_eq!(resp.status(), StatusCode::FOUND);
        location(&resp)
    }

    /// Starts a login at `/oauth2/start` directly (e.g. already signed in, switching user).
    pub async fn start_login(&mut self, proxy: &Proxy, target: &str) -> String {
        let rd: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
        let resp = self
            .get(
                &proxy.url(&format!("/oauth2/start?rd={rd}")),
                BROWSER_ACCEPT,
            )
            .await;
        assert_eq!(resp.status(), StatusCode::FOUND);
        location(&resp)
    }

    /// Submits the provider's login form for an authorize URL; returns the callback URL.
    pub async fn submit_credentials(
        &mut self,
        authorize: &str,
        user: &str,
        password: &str,
    ) -> String {
        let (endpoint, query) = authorize.split_once('?').expect("authorize query");
        let mut form: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        form.push(("username".into(), user.into()));
        form.push(("password".into(), password.into()));
        let resp = self
            .client
            .post(endpoint)
            .form(&form)
            .send()
            .await
            .expect("login form");
        assert_eq!(
            resp.status(),
            StatusCode::FOUND,
            "the provider must accept the login"
        );
        location(&resp)
    }

    /// Follows the callback; returns the response (302 back to the target on success).
    pub async fn callback(&mut self, callback: &str) -> Response {
        self.get(callback, BROWSER_ACCEPT).await
    }

    /// The whole login for `target`; returns where the proxy finally sends the browser.
    pub async fn login(&mut self, proxy: &Proxy, user: &str, target: &str) -> String {
        let authorize = self.begin_login(proxy, target).await;
        let cb = self.submit_credentials(&authorize, user, user).await;
        let resp = self.callback(&cb).await;
        assert_eq!(
            resp.status(),
            StatusCode::FOUND,
            "callback: {}",
            resp.text().await.unwrap_or_default()
        );
        location(&resp)
    }

    /// An API-style call (`Accept: application/json`) with the jar's cookies.
    pub async fn api(&mut self, url: &str) -> Response {
        self.get(url, "application/json").await
    }
}

/// The value of header `name`, or `""` when it is missing or not text.
pub fn header_str(resp: &Response, name: reqwest::header::HeaderName) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

pub fn location(resp: &Response) -> String {
    resp.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The echo upstream's JSON report of what it received.
pub struct Echoed {
    pub headers: Vec<(String, String)>,
    pub uri: String,
}

impl Echoed {
    pub async fn from(resp: Response) -> Echoed {
        assert_eq!(resp.status(), StatusCode::OK);
        let v: serde_json::Value = resp.json().await.expect("echo json");
        let headers = v["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap_or("").to_string(),
                    p[1].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        Echoed {
            headers,
            uri: v["uri"].as_str().unwrap_or("").to_string(),
        }
    }

    /// All values under `name`, matching the name after lower-casing and `_` → `-`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        let want = name.to_ascii_lowercase().replace('_', "-");
        self.headers
            .iter()
            .filter(|(n, _)| n.to_ascii_lowercase().replace('_', "-") == want)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Adds `line` to the `[server]` table of a generated config (e.g. `trusted_proxies = [...]`).
pub fn server_option(toml: String, line: &str) -> String {
    toml.replacen("[server]\n", &format!("[server]\n{line}\n"), 1)
}

/// Sends `request` exactly as given and reads until the proxy closes or `within` passes.
/// Returns the status (`None` when no status line came back), everything read, and whether
/// the proxy closed the connection within the bound.
pub async fn raw_exchange(
    port: u16,
    request: &[u8],
    within: Duration,
) -> (Option<u16>, String, bool) {
    raw_exchange_from(std::net::Ipv4Addr::LOCALHOST, port, request, within).await
}

/// [`raw_exchange`] from the loopback address `from` (say a trusted proxy's, 127.0.0.2).
pub async fn raw_exchange_from(
    from: std::net::Ipv4Addr,
    port: u16,
    request: &[u8],
    within: Duration,
) -> (Option<u16>, String, bool) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind((from, 0).into()).expect("bind the client side");
    let mut stream = socket
        .connect((std::net::Ipv4Addr::LOCALHOST, port).into())
        .await
        .expect("connect to the proxy");
    // The proxy may refuse and close before it has read everything: a failed write is fine.
    let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, request).await;
    let mut response = Vec::new();
    let mut chunk = [0u8; 8192];
    let read_all = async {
        loop {
            match tokio::io::AsyncReadExt::read(&mut stream, &mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(within, read_all).await.is_ok();
    let text = String::from_utf8_lossy(&response).into_owned();
    (status_of(&text), text, closed)
}

pub fn status_of(response: &str) -> Option<u16> {
    response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
}

/// Debian's nginx with a configuration of the test's, in the foreground; killed (by PID) on
/// drop. `http` is the body of the `http {}` block; it listens where it says.
pub struct Nginx {
    child: Child,
}

impl Nginx {
    /// Starts nginx and waits until `ready_url` answers at all.
    pub async fn start(http: &str, ready_url: &str) -> Nginx {
        let dir = scratch("nginx");
        std::fs::create_dir_all(&dir).expect("nginx dir");
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log;\nevents {{}}\nhttp {{\naccess_log off;\n\
             client_body_temp_path {d}/body;\nproxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\nuwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n\
             {http}\n}}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("nginx.conf");
        let child = Command::new("nginx")
            .args(["-p", &d.to_string(), "-c", &conf_path.display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (apt-get install nginx-light)");
        let nginx = Nginx { child };
        let client = plain_client();
        wait_until("nginx to answer", Duration::from_secs(10), || {
            let req = client.get(ready_url);
            async move { req.send().await.is_ok() }
        })
        .await;
        nginx
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Undoes `respond::escape_html`.
pub fn unescape_html(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Where a sign-out answer sends the browser: the `Location` of a 302, or, for the page that
/// posts a form to the provider (`oidc.end_session_method = "post"`), the form's action with
/// its fields as a query: what the same sign-out would put in a URL with "get".
pub async fn sign_out_destination(resp: Response) -> Result<String, String> {
    match resp.status() {
        StatusCode::FOUND => Ok(location(&resp)),
        StatusCode::OK => {
            let csp = resp
                .headers()
                .get("content-security-policy")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let body = resp.text().await.map_err(|e| e.to_string())?;
            let action = body
                .split("<form method=\"post\" action=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .ok_or_else(|| format!("neither a redirect nor a form: {body}"))?;
            if !csp.contains("script-src 'sha256-") {
                return Err(format!("the form page's CSP allows no script: {csp:?}"));
            }
            let mut url = url::Url::parse(&unescape_html(action)).map_err(|e| e.to_string())?;
            for input in body.split("<input type=\"hidden\" name=\"").skip(1) {
                let (name, rest) = input.split_once('"').ok_or("input name")?;
                let value = rest
                    .strip_prefix(" value=\"")
                    .and_then(|v| v.split('"').next())
                    .ok_or("input value")?;
                url.query_pairs_mut()
                    .append_pair(&unescape_html(name), &unescape_html(value));
            }
            Ok(url.to_string())
        }
        other => Err(format!("sign-out answered {other}")),
    }
}

impl Browser {
    /// Signs out from a page of the proxy's own site (`Sec-Fetch-Site: same-origin`); returns
    /// where the answer sends the browser (see [`sign_out_destination`]).
    pub async fn sign_out(&mut self, url: &str) -> String {
        let resp = self.sign_out_response(url).await;
        sign_out_destination(resp).await.expect("a sign-out answer")
    }

    /// The answer to [`Browser::sign_out`] itself.
    pub async fn sign_out_response(&mut self, url: &str) -> Response {
        let mut req = self
            .client
            .get(url)
            .header(ACCEPT, BROWSER_ACCEPT)
            .header("sec-fetch-site", "same-origin");
        if !self.jar.cookies.is_empty() {
            req = req.header(COOKIE, self.jar.header());
        }
        let resp = req.send().await.expect("request");
        self.jar.absorb(resp.headers());
        resp
    }
}
