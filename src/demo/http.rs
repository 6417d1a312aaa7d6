//! A deliberately tiny HTTP/1.1 server for the demo services.
//!
//! Why not pingora: the dev IdP and the echo upstream are started in-process by tests on ephemeral
//! ports, many times per test binary, and must stop cleanly when a test ends. hyper's connection
//! API gives exactly that with a few lines, and hyper is linked anyway.
//!
//! Bodies are collected before the handler runs (bounded by [`MAX_BODY_BYTES`]) because every
//! demo endpoint wants the whole form or nothing; streaming would only add states to get wrong.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The response body type of every demo handler.
pub type Body = Full<Bytes>;

/// Largest request body a demo service reads; anything bigger is answered with 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// One demo service: turns a fully read request into a response.
pub trait Handler: Send + Sync + 'static {
    /// A short label for log lines, such as `"dev-idp"`.
    fn name(&self) -> &'static str;

    /// Answers one request. Failures are responses too: there is no error channel on purpose.
    fn handle(&self, req: Request<Bytes>) -> impl Future<Output = Response<Body>> + Send;
}

/// Accepts connections on `listener` until `shutdown` turns `true` (or its sender is dropped).
///
/// Each connection runs in its own task and is told to finish gracefully on shutdown, so pooled
/// keep-alive connections in a test client cannot keep talking to a "stopped" server.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            () = wait_for_shutdown(&mut shutdown) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                tokio::spawn(serve_connection(
                    stream,
                    Arc::clone(&handler),
                    shutdown.clone(),
                ));
            }
            Err(err) => {
                // Usually EMFILE: back off briefly instead of spinning on the error.
                tracing::warn!(server = handler.name(), error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Resolves once shutdown is requested. A dropped sender means the owner is gone: stop as well.
async fn wait_for_shutdown(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn serve_connection<H: Handler>(
    stream: TcpStream,
    handler: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = handler.name();
    let service = service_fn(move |req| {
        let handler = Arc::clone(&handler);
        async move { Ok::<_, Infallible>(dispatch(&*handler, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = wait_for_shutdown(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(server = name, error = %err, "connection ended with an error");
    }
}

/// Reads the body within the limit, runs the handler, and logs one line without the query
/// string (it carries codes and state) and without any header or body content.
async fn dispatch<H: Handler>(handler: &H, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_owned();
    let response = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => {
            handler
                .handle(Request::from_parts(parts, collected.to_bytes()))
                .await
        }
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large for a demo service\n",
        ),
        Err(_) => text(StatusCode::BAD_REQUEST, "could not read the request body\n"),
    };
    tracing::info!(
        server = handler.name(),
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

/// A response with the given status, `Content-Type` and body.
pub fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    response(status, "text/plain; charset=utf-8", body)
}

/// An HTML page. The policy forbids scripts, frames and every external load: the pages are
/// static, and a reflected value that slipped past escaping still could not run.
pub fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut res = response(status, "text/html; charset=utf-8", body);
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => response(status, "application/json", body),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "could not encode JSON\n"),
    }
}

/// A `302 Found` to `location`; a location that is not a valid header value becomes a 500.
pub fn redirect(location: &str) -> Response<Body> {
    match HeaderValue::from_str(location) {
        Ok(value) => {
            let mut res = text(StatusCode::FOUND, "");
            res.headers_mut().insert(header::LOCATION, value);
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "redirect target is not a valid header value\n",
        ),
    }
}

pub(crate) use crate::respond::escape_html;

/// A complete HTML document around `body`; `title` is escaped here, `style` and `body` are
/// trusted markup from the caller.
pub fn document(title: &str, style: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{style}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape_html(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn invalid_redirect_target_is_a_server_error() {
        assert_eq!(
            redirect("http://x/\n").status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let ok = redirect("http://x/cb?code=1");
        assert_eq!(ok.status(), StatusCode::FOUND);
        assert_eq!(ok.headers()[header::LOCATION], "http://x/cb?code=1");
    }
}
