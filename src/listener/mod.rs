//! The listener: the first stage of every request, before pingora parses it.
//!
//! pingora 0.9 reads a request head with a timeout on each read (60 s) and a size limit of
//! 1 MiB, answered with a bare 400. It bounds neither the whole head's duration (a client
//! sending one byte every 59 s holds a connection, its task and its buffer for ever: slowloris)
//! nor offers a hook to answer an oversized head with 431. So this stage reads each head itself:
//! the whole head must arrive within `server.header_timeout` (408 otherwise) and fit in
//! `server.max_header_bytes` and [`MAX_FIELDS`] fields (414 or 431 otherwise); refused
//! connections are closed. A head that arrived is handed to pingora as bytes already read
//! (`set_pipelined_prefix`), so pingora parses exactly what it would have read itself and
//! makes no extra read or copy; the scanner only finds where the head ends ([`head`]).
//!
//! Requests a client pipelines (sends before the answer to the previous one) are answered in
//! order: bytes after the end of a request are kept here as the start of the next head.
//!
//! On TLS listeners ([`tls`]) the handshake comes first, within its own bound; a connection
//! that agrees on HTTP/2 is handed to pingora's HTTP/2 server, which reads each stream's
//! head itself. Plain listeners speak HTTP/1.x only (no h2c).

mod admission;
mod head;
pub mod tls;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout, timeout_at, Instant};

pub use admission::{Admission, Admitted, ConnectionLimits, Crowded};
pub use head::{HeadScan, Oversized, Progress, MAX_FIELDS};

use crate::outcome::Outcome;

/// The bounds on one request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a whole head may take: counted from the accept for a connection's first
    /// request, from the first byte for the next ones (the wait before is [`IDLE`]).
    pub header_timeout: Duration,
    /// The longest head accepted, request line and empty lines before it included.
    pub max_header_bytes: usize,
}

/// How long a kept-alive connection may wait for its next request: pingora's keep-alive.
pub const IDLE: Duration = Duration::from_secs(60);
/// The first read's buffer: most heads fit (pingora starts with the same size).
const FIRST_READ: usize = 4096;
/// What the wait for a connection's first bytes reads: most heads without large cookies.
const FIRST_WAIT: usize = 1024;
/// After a refusal, what the client still sends is read and dropped for this long (or up to
/// [`LINGER_BYTES`]), so that it sees the answer rather than a reset from unread data.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 8 << 20;
/// Writing a refusal (a few hundred bytes) to a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Writing the answer to a connection over the bounds: one short try.
const TURN_AWAY_WRITE: Duration = Duration::from_millis(200);

/// Whether a peer's connections are counted per address (not a trusted proxy's, which carry
/// many users' connections).
pub type CountsPerAddress = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// Wraps the proxy (any HTTP/1 app) so that connections are admitted within
/// [`ConnectionLimits`] and each request head is read within [`Limits`].
pub struct Listener<A> {
    inner: Arc<A>,
    limits: Limits,
    admission: Arc<Admission>,
    counts_per_address: CountsPerAddress,
    tls: tls::TlsPorts,
}

impl<A> Listener<A> {
    /// `inner` served behind the bounds: heads within `limits`, connections admitted by
    /// `admission` (counted per address where `counts_per_address` says so), TLS on the
    /// ports of `tls`.
    pub fn new(
        inner: A,
        limits: Limits,
        admission: Arc<Admission>,
        counts_per_address: CountsPerAddress,
        tls: tls::TlsPorts,
    ) -> Listener<A> {
        Listener {
            inner: Arc::new(inner),
            limits,
            admission,
            counts_per_address,
            tls,
        }
    }
}

/// What reading a head came to.
enum Head {
    /// A complete head, or one the parser will refuse: pingora takes it from here.
    Ready(Request),
    /// The client closed, stayed idle past [`IDLE`] or sent nothing at all, or the server is
    /// stopping: the connection closes without an answer.
    Closed,
    Refused(Refusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Timeout,
    Oversized(Oversized),
}

impl Refusal {
    /// Status, reason phrase, and the name the access log gives it.
    fn status(self) -> (u16, &'static str, &'static str) {
        match self {
            Refusal::Timeout => (408, "Request Timeout", "header_timeout"),
            Refusal::Oversized(Oversized::RequestLine) => {
                (414, "URI Too Long", "request_line_too_long")
            }
            Refusal::Oversized(Oversized::Head) => {
                (431, "Request Header Fields Too Large", "header_too_large")
            }
            Refusal::Oversized(Oversized::Fields) => {
                (431, "Request Header Fields Too Large", "too_many_fields")
            }
        }
    }

    fn explanation(self, limits: &Limits) -> String {
        match self {
            Refusal::Timeout => format!(
                "The request head did not arrive within {}.\n",
                humantime::format_duration(limits.header_timeout)
            ),
            Refusal::Oversized(Oversized::RequestLine) => format!(
                "The request line is longer than {} bytes.\n",
                limits.max_header_bytes
            ),
            Refusal::Oversized(Oversized::Head) => format!(
                "The request head is longer than {} bytes (too many or too large cookies?).\n",
                limits.max_header_bytes
            ),
            Refusal::Oversized(Oversized::Fields) => {
                format!("The request has more than {MAX_FIELDS} header fields.\n")
            }
        }
    }
}

#[async_trait]
impl<A> ServerApp for Listener<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let started = Instant::now();
        let peer = peer_ip(&stream);
        let counted = peer.filter(|ip| (self.counts_per_address)(*ip));
        // Held for as long as the connection is open.
        let _admitted = match self.admission.admit(counted) {
            Ok(admitted) => admitted,
            Err(crowded) => {
                turn_away(stream, crowded, peer).await;
                return None;
            }
        };
        if let Some(endpoint) = local_port(&stream).and_then(|p| self.tls.for_port(p)) {
            stream = handshake(stream, endpoint, self.tls.handshake_timeout).await?;
            // HTTP/2 multiplexes requests on one connection: pingora reads their heads itself
            // (bounded by the h2 options the server sets from `server.max_header_bytes`).
            if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
                return ServerApp::process_new(&self.inner, stream, shutdown).await;
            }
        }
        // `None` for the connection's first request; then what pingora hands back for reuse.
        let mut settings: Option<HttpPersistentSettings> = None;
        let mut reused = false;
        // Bytes of the next request, read together with this one (pipelining).
        let mut carry = BytesMut::new();
        loop {
            let head = read_head(&mut stream, &self.limits, carry, reused, started, shutdown);
            let request = match head.await {
                Head::Ready(request) => request,
                Head::Closed => return None,
                Head::Refused(why) => {
                    refuse(stream, why, &self.limits).await;
                    return None;
                }
            };
            let Request {
                bytes: prefix,
                next,
                last,
            } = request;
            carry = next;
            let mut session = ServerSession::new_http1(stream);
            match settings.take() {
                Some(settings) => settings.apply_to_session(&mut session),
                // As pingora sets up a connection's first session.
                None => {
                    let stopping = *shutdown.borrow();
                    session.set_keepalive((!stopping).then_some(IDLE.as_secs()));
                    session.set_keepalive_reuses_remaining(
                        self.inner
                            .server_options()
                            .and_then(|o| o.keepalive_request_limit),
                    );
                }
            }
            // pingora is handed this request's bytes only: those of a pipelined next request
            // stay here, so that it is read within the same bounds and answered in turn. When
            // the end of this request cannot be told before pingora reads it (a chunked body
            // with more bytes behind it), the answer says `Connection: close`: the client
            // learns that what it sent after this request was not served and must be resent.
            if last {
                // pingora decides keep-alive from the request once it has read it; the proxy
                // overrides that when it sees this mark (`ProxyHttp::on_connection_reuse`).
                session.set_connection_user_context(Some(Box::new(LastOnConnection)));
            }
            session.set_pipelined_prefix(prefix);
            let next = self.inner.process_new_http(session, shutdown).await?;
            (stream, settings) = next.consume();
            reused = true;
        }
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await;
    }
}

/// Marks a request after which the connection must end (see [`Request::last`]).
pub struct LastOnConnection;

/// One request's bytes as far as they were read, and what came after them.
struct Request {
    /// The head, and as much of the body as arrived with it.
    bytes: BytesMut,
    /// Bytes after the end of this request: the start of the next one.
    next: BytesMut,
    /// More bytes arrived after the head, but where this request ends is not known before its
    /// body is read (chunked): the connection ends after this request.
    last: bool,
}

impl Request {
    /// Splits what was read at the end of the request whose head ends at `head_len`.
    fn split(mut bytes: BytesMut, head_len: usize) -> Request {
        if bytes.len() == head_len {
            return Request {
                bytes,
                next: BytesMut::new(),
                last: false,
            };
        }
        match body_length(&bytes[..head_len]) {
            Some(body) => {
                let end = head_len.saturating_add(body);
                let next = if end < bytes.len() {
                    bytes.split_off(end)
                } else {
                    BytesMut::new()
                };
                Request {
                    bytes,
                    next,
                    last: false,
                }
            }
            None => Request {
                bytes,
                next: BytesMut::new(),
                last: true,
            },
        }
    }
}

/// How long the body of the request with this head is, when the head alone says so: 0 without
/// `Content-Length` and `Transfer-Encoding`, the one `Content-Length` otherwise. `None` for a
/// chunked body, and for framing the proxy refuses anyway (it closes the connection then).
fn body_length(head: &[u8]) -> Option<usize> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut fields);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        return None;
    }
    let mut length = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return None;
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            if length.is_some() || h.value.is_empty() || !h.value.iter().all(u8::is_ascii_digit) {
                return None;
            }
            length = std::str::from_utf8(h.value).ok()?.parse::<usize>().ok();
            length?;
        }
    }
    Some(length.unwrap_or(0))
}

async fn read_head(
    stream: &mut Stream,
    limits: &Limits,
    carry: BytesMut,
    reused: bool,
    accepted: Instant,
    shutdown: &ShutdownWatch,
) -> Head {
    let (mut buf, deadline) = if !carry.is_empty() {
        // A pipelined request: its first bytes are here, the clock starts now.
        (carry, Instant::now() + limits.header_timeout)
    } else if reused {
        if *shutdown.borrow() {
            return Head::Closed;
        }
        let mut shutdown = shutdown.clone();
        let first = tokio::select! {
            biased;
            read = timeout(IDLE, first_bytes(stream)) => read,
            _ = shutdown.changed() => return Head::Closed,
        };
        match first {
            Ok(Ok(buf)) if !buf.is_empty() => (buf, Instant::now() + limits.header_timeout),
            _ => return Head::Closed,
        }
    } else {
        let deadline = accepted + limits.header_timeout;
        match timeout_at(deadline, first_bytes(stream)).await {
            Ok(Ok(buf)) if !buf.is_empty() => (buf, deadline),
            // Closed, or silent until the bound: closed without an answer.
            _ => return Head::Closed,
        }
    };
    let mut scan = HeadScan::default();
    let mut request_line_checked = false;
    loop {
        match scan.advance(&buf, limits.max_header_bytes) {
            Progress::Complete(end) => return Head::Ready(Request::split(buf, end)),
            Progress::Oversized(what) => return Head::Refused(Refusal::Oversized(what)),
            Progress::Partial => {}
        }
        // A request line the parser refuses is answered (400, by pingora) at once rather than
        // after the client gives up waiting for the rest.
        if !request_line_checked && scan.request_line_done() {
            request_line_checked = true;
            let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
            if httparse::Request::new(&mut fields).parse(&buf).is_err() {
                return Head::Ready(Request {
                    bytes: buf,
                    next: BytesMut::new(),
                    last: true,
                });
            }
        }
        if buf.capacity() - buf.len() < FIRST_READ / 4 {
            buf.reserve(buf.len().max(FIRST_READ));
        }
        match timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => return Head::Closed,
            Err(_) => return Head::Refused(Refusal::Timeout),
        }
    }
}

/// Answers a connection over the bounds and closes it at once: nothing is read, and the
/// answer gets one short try, so a flood of them holds nothing.
async fn turn_away(mut stream: Stream, crowded: Crowded, peer: Option<IpAddr>) {
    let (status, reason, name, text) = match crowded {
        Crowded::Total => (
            503,
            "Service Unavailable",
            "too_many_connections",
            "The server has too many open connections; try again in a moment.\n",
        ),
        Crowded::Client => (
            429,
            "Too Many Requests",
            "too_many_connections_from_client",
            "Too many open connections from your address; close some and try again.\n",
        ),
    };
    log_refusal(peer, status, name);
    let _ = answer(
        &mut stream,
        status,
        reason,
        "Retry-After: 1\r\n",
        text,
        TURN_AWAY_WRITE,
    )
    .await;
}

/// The access-log line of a connection answered here rather than by the proxy: never the
/// head's contents.
fn log_refusal(peer: Option<IpAddr>, status: u16, name: &str) {
    crate::access_log::record(&crate::access_log::Entry {
        method: "-",
        path: "-",
        status: Some(status),
        outcome: Outcome::BadRequest,
        user: None,
        client: peer,
        duration: None,
        error: Some(name),
        reason: None,
    });
}

/// Writes a plain-text answer that closes the connection (`extra` is more header lines, each
/// ending in CRLF) within `within`; whether it was all written.
async fn answer(
    stream: &mut Stream,
    status: u16,
    reason: &str,
    extra: &str,
    body: &str,
    within: Duration,
) -> bool {
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n{extra}Cache-Control: no-store\r\n\
         X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let sent = timeout(within, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.flush().await?;
        stream.shutdown().await
    })
    .await;
    matches!(sent, Ok(Ok(())))
}

/// Waits for a connection's first bytes without a heap buffer: until it sends something, an
/// idle connection costs its socket and its task, not [`FIRST_READ`] bytes more.
async fn first_bytes(stream: &mut Stream) -> std::io::Result<BytesMut> {
    let mut first = [0u8; FIRST_WAIT];
    let n = stream.read(&mut first).await?;
    if n == 0 {
        return Ok(BytesMut::new());
    }
    // A read that did not fill the wait's buffer usually holds the whole head: it gets an
    // allocation of its size, a small one from the allocator's fast path, since pingora reads
    // whatever follows into buffers of its own. A full one has more behind it: room for it.
    let capacity = if n == FIRST_WAIT { FIRST_READ } else { n };
    let mut buf = BytesMut::with_capacity(capacity);
    buf.extend_from_slice(&first[..n]);
    Ok(buf)
}

/// Answers a refused head, then closes the connection.
async fn refuse(mut stream: Stream, why: Refusal, limits: &Limits) {
    let (status, reason, name) = why.status();
    log_refusal(peer_ip(&stream), status, name);
    let body = why.explanation(limits);
    if !answer(&mut stream, status, reason, "", &body, WRITE_TIMEOUT).await {
        return;
    }
    let drain = async {
        let mut sink = [0u8; 8192];
        let mut dropped = 0;
        while dropped < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(n) if n > 0 => dropped += n,
                _ => break,
            }
        }
    };
    let _ = timeout(LINGER, drain).await;
}

/// The port the connection arrived on.
fn local_port(stream: &Stream) -> Option<u16> {
    let digest = stream.get_socket_digest()?;
    digest.local_addr()?.as_inet().map(|a| a.port())
}

/// Runs the TLS handshake within `within`. A client that fails it, or is too slow, is the
/// client's business: a debug line, and the connection is closed.
async fn handshake(
    stream: Stream,
    endpoint: &tls::TlsEndpoint,
    within: Duration,
) -> Option<Stream> {
    // pingora hands over its own TCP stream type, boxed.
    let l4 = match stream.into_any().downcast::<L4Stream>() {
        Ok(l4) => *l4,
        Err(_) => {
            tracing::error!("a TLS listener received a connection that is not TCP; closed");
            return None;
        }
    };
    let handshake = pingora::protocols::tls::server::handshake_with_callback(
        endpoint.acceptor(),
        l4,
        &tls::ReadClientCert,
    );
    match timeout(within, handshake).await {
        Ok(Ok(tls)) => Some(Box::new(tls)),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake did not finish in time");
            None
        }
    }
}

fn peer_ip(stream: &Stream) -> Option<IpAddr> {
    let digest = stream.get_socket_digest()?;
    digest.peer_addr()?.as_inet().map(|a| a.ip())
}
