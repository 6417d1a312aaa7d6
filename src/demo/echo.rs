//! The demo upstream: answers every request with a description of the request itself.
//!
//! Why: the proxy's job is to decide which identity headers reach the application. An upstream
//! that reflects what it received lets tests assert that (JSON) and lets a person running
//! `portcullis demo` see it (HTML).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, Request, Response, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::http::{self as demo_http, escape_html, Body, Handler};

/// A running echo upstream. Dropping it also stops it; [`EchoServer::shutdown`] waits for that.
pub struct EchoServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl EchoServer {
    /// Serves on `listener` until shut down.
    pub async fn start(listener: TcpListener) -> std::io::Result<EchoServer> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(demo_http::serve(listener, Arc::new(Echo), stopped));
        tracing::info!(%addr, "demo echo upstream listening");
        Ok(EchoServer { addr, stop, task })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, asks open connections to finish, and waits for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

struct Echo;

impl Handler for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }

    async fn handle(&self, req: Request<Bytes>) -> Response<Body> {
        if prefers_html(req.headers()) {
            demo_http::html(StatusCode::OK, render_html(&req))
        } else {
            demo_http::json(StatusCode::OK, &describe(&req))
        }
    }
}

/// Header pairs in the order hyper stores them (first appearance of each name, repeated values
/// together); names are lowercase as hyper normalises them.
fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// The JSON shape tests rely on: `{"method", "uri", "headers": [[name, value], ...], "body_len"}`.
fn describe(req: &Request<Bytes>) -> serde_json::Value {
    json!({
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "headers": header_pairs(req.headers()),
        "body_len": req.body().len(),
    })
}

/// Identity headers a proxy sets; highlighted so a person can spot them at a glance.
fn is_identity_header(name: &str) -> bool {
    name.starts_with("x-forwarded-")
}

fn render_html(req: &Request<Bytes>) -> String {
    let mut rows = String::new();
    for (name, value) in header_pairs(req.headers()) {
        let class = if is_identity_header(&name) {
            " class=\"identity\""
        } else {
            ""
        };
        rows.push_str(&format!(
            "<tr{class}><th>{}</th><td>{}</td></tr>\n",
            escape_html(&name),
            escape_html(&value)
        ));
    }
    let body = format!(
        r#"<h1>portcullis demo upstream</h1>
<p>This page is served by the upstream behind the proxy. It shows the request exactly as it arrived here.
Try <a href="/oauth2/userinfo">/oauth2/userinfo</a> or <a href="/oauth2/sign_out">sign out</a>.</p>
<p><code>{method} {target}</code> &middot; body: {body_len} bytes</p>
<h2>Request headers</h2>
<p class="note">Highlighted rows are the <code>X-Forwarded-*</code> identity headers set by the proxy.</p>
<table>
{rows}</table>
"#,
        method = escape_html(req.method().as_str()),
        target = escape_html(&req.uri().to_string()),
        body_len = req.body().len(),
    );
    demo_http::document("portcullis demo upstream", ECHO_STYLE, &body)
}

const ECHO_STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; color: #222; }
code { background: #f2f2f2; padding: 0.1rem 0.3rem; border-radius: 3px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: 0.35rem 0.6rem; border-bottom: 1px solid #ddd; font-family: ui-monospace, monospace; font-size: 0.9rem; word-break: break-all; }
th { white-space: nowrap; width: 1%; }
tr.identity { background: #fff4c2; font-weight: bold; }
.note { color: #555; }
";

/// True when `Accept` ranks `text/html` above `application/json`, so browsers get the page and
/// programs (which send no `Accept`, `*/*`, or `application/json`) get JSON.
fn prefers_html(headers: &HeaderMap) -> bool {
    let mut ranges = Vec::new();
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            ranges.push((media, q));
        }
    }
    let html = quality(&ranges, "text", "html");
    html > 0.0 && html > quality(&ranges, "application", "json")
}

/// The quality of `kind/sub` under the most specific matching range (RFC 9110 §12.5.1).
fn quality(ranges: &[(String, f32)], kind: &str, sub: &str) -> f32 {
    let exact = format!("{kind}/{sub}");
    let family = format!("{kind}/*");
    let mut best: Option<(u8, f32)> = None;
    for (media, q) in ranges {
        let specificity = if *media == exact {
            3
        } else if *media == family {
            2
        } else if media == "*/*" {
            1
        } else {
            continue;
        };
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, *q));
        }
    }
    best.map_or(0.0, |(_, q)| q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn content_negotiation() {
        assert!(!prefers_html(&HeaderMap::new()));
        assert!(!prefers_html(&accept("*/*")));
        assert!(!prefers_html(&accept("application/json")));
        assert!(prefers_html(&accept(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        )));
        assert!(!prefers_html(&accept("text/html;q=0.5, application/json")));
        assert!(!prefers_html(&accept("text/html;q=0, */*")));
    }

    async fn start() -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        EchoServer::start(listener).await.unwrap()
    }

    #[tokio::test]
    async fn json_shape() {
        let echo = start().await;
        let url = format!("http://{}/some/path?x=1&y=%3C", echo.addr());
        let res = reqwest::Client::new()
            .post(&url)
            .header("X-Forwarded-User", "alice")
            .header("X-Forwarded-Groups", "sre")
            .header("X-Forwarded-Groups", "dev")
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["method"], "POST");
        assert_eq!(body["uri"], "/some/path?x=1&y=%3C");
        assert_eq!(body["body_len"], 5);
        let headers: Vec<(String, String)> =
            serde_json::from_value(body["headers"].clone()).unwrap();
        assert!(headers.contains(&("x-forwarded-user".into(), "alice".into())));
        let groups: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n == "x-forwarded-groups")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(groups, ["sre", "dev"]);
        assert_eq!(body.as_object().unwrap().len(), 4);
        echo.shutdown().await;
    }

    #[tokio::test]
    async fn html_page_escapes_what_it_shows() {
        let echo = start().await;
        let res = reqwest::Client::new()
            .get(format!("http://{}/p?q=%22", echo.addr()))
            .header(header::ACCEPT, "text/html")
            .header("X-Forwarded-Email", "<b>eve</b>@example.com")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let page = res.text().await.unwrap();
        assert!(page.contains("portcullis demo upstream"));
        assert!(page.contains("&lt;b&gt;eve&lt;/b&gt;@example.com"));
        assert!(!page.contains("<b>eve"));
        assert!(page.contains("<tr class=\"identity\"><th>x-forwarded-email</th>"));
        echo.shutdown().await;
    }

    #[tokio::test]
    async fn oversized_body_is_refused() {
        let echo = start().await;
        let res = reqwest::Client::new()
            .put(format!("http://{}/upload", echo.addr()))
            .body(vec![0u8; demo_http::MAX_BODY_BYTES + 1])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 413);
        echo.shutdown().await;
    }

    #[tokio::test]
    async fn shutdown_stops_serving() {
        let echo = start().await;
        let addr = echo.addr();
        echo.shutdown().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
