//! The pingora `ProxyHttp` implementation. It only wires the stages together:
//! classify → (endpoint | authenticate → forward) → log.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};

use crate::access::{Caller, Target};
use crate::access_log;
use crate::answer::{self, Asker, Then};
use crate::app::{App, Live};
use crate::classify::{self, Route};
use crate::client_cert::{ClientCert, UnreadableCertHeader};
use crate::config::UpstreamProtocol;
use crate::endpoints::{self, Facts};
use crate::forward::{self, Peer};
use crate::metrics;
use crate::outcome::Outcome;
use crate::respond;
use crate::session::chunks::SetCookie;

pub(crate) struct Portcullis {
    /// The configuration new requests get; a reload replaces it.
    pub live: Arc<Live>,
}

/// Per-request state shared across the filters.
pub(crate) struct RequestCtx {
    /// The configuration and stages this request runs on, from start to end, whatever a
    /// reload does meanwhile.
    app: Arc<App>,
    started: Instant,
    caller: Option<Caller>,
    /// The verified client certificate (our TLS listener's, or a trusted proxy's report).
    client_cert: Option<Arc<ClientCert>>,
    /// `http` or `https`, as the client reached us (or the trusted proxy in front of us).
    scheme: &'static str,
    /// Cookies to set on the upstream's response (a refreshed session).
    set_cookies: Vec<SetCookie>,
    /// For the access log.
    user: Option<String>,
    /// Why the request was refused, for the access log.
    reason: Option<String>,
    outcome: Outcome,
    /// When the request was sent upstream, for the upstream latency histogram.
    upstream_sent: Option<Instant>,
}

/// Answers 400 and closes the connection: the request cannot be read one way only, so what
/// follows it on the connection cannot be trusted either.
async fn refuse(session: &mut Session, ctx: &mut RequestCtx, reason: &str) -> Result<bool> {
    ctx.outcome = Outcome::BadRequest;
    ctx.reason = Some(reason.to_string());
    session.set_keepalive(None);
    respond::bad_request(reason).send(session).await?;
    Ok(true)
}

/// The request body, when it is at most `limit` bytes (`None` when it is larger).
async fn read_body(session: &mut Session, limit: usize) -> Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    while let Some(chunk) = session.read_request_body().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// The first address `host:port` resolves to; a failed lookup is a connect error (502).
async fn resolve(address: &str) -> Result<std::net::SocketAddr> {
    match tokio::net::lookup_host(address).await {
        Ok(mut addrs) => addrs.next().ok_or_else(|| {
            pingora::Error::explain(
                ErrorType::ConnectNoRoute,
                "the upstream host has no address",
            )
            .into_up()
        }),
        // Marked as the upstream's failure, so the client gets a 502, not a 500.
        Err(e) => Err(pingora::Error::because(
            ErrorType::ConnectNoRoute,
            "cannot resolve the upstream host",
            e,
        )
        .into_up()),
    }
}

/// Whether the request came over one of our TLS listeners.
fn is_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

fn peer_ip(session: &Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// How the client reached us: a trusted proxy's `X-Forwarded-Proto` when it sends one
/// (once, `http` or `https`), else the listener's.
fn scheme(session: &Session, trusted: bool) -> &'static str {
    let mut reported = session
        .req_header()
        .headers
        .get_all("x-forwarded-proto")
        .iter();
    let own = if is_tls(session) { "https" } else { "http" };
    match (trusted, reported.next(), reported.next()) {
        (true, Some(v), None) if v.as_bytes().eq_ignore_ascii_case(b"https") => "https",
        (true, Some(v), None) if v.as_bytes().eq_ignore_ascii_case(b"http") => "http",
        _ => own,
    }
}

impl RequestCtx {
    fn trusted(&self, session: &Session) -> bool {
        peer_ip(session).is_some_and(|ip| self.app.config.server.is_trusted_proxy(ip))
    }

    /// The client certificate the TLS handshake verified; else, from a trusted proxy, the
    /// one its header (`server.client_cert_header`) reports. A header that cannot be read one
    /// way is an error (400); from anyone else the header means nothing (and is stripped).
    fn client_cert_of(
        &self,
        session: &Session,
        trusted: bool,
    ) -> Result<Option<Arc<ClientCert>>, UnreadableCertHeader> {
        let handshake = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .and_then(|tls| tls.extension.get::<Arc<ClientCert>>());
        if let Some(cert) = handshake {
            return Ok(Some(cert.clone()));
        }
        let Some(kind) = self
            .app
            .config
            .server
            .client_cert_header
            .filter(|_| trusted)
        else {
            return Ok(None);
        };
        let values: Vec<&[u8]> = session
            .req_header()
            .headers
            .get_all(kind.name())
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        Ok(crate::client_cert::from_header(kind, &values)?.map(Arc::new))
    }
}

#[async_trait]
impl ProxyHttp for Portcullis {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            app: self.live.app(),
            started: Instant::now(),
            caller: None,
            client_cert: None,
            scheme: "http",
            set_cookies: Vec::new(),
            user: None,
            reason: None,
            outcome: Outcome::Endpoint,
            upstream_sent: None,
        }
    }

    /// The listener marks a request whose end it could not find before pingora reads it, with
    /// more bytes behind it: the answer closes the connection.
    fn on_connection_reuse(
        &self,
        session: &mut Session,
        _ctx: &mut RequestCtx,
        mark: Box<dyn std::any::Any + Send + Sync>,
    ) {
        if mark.is::<crate::listener::LastOnConnection>() {
            session.set_keepalive(None);
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let app = ctx.app.clone();
        let app = app.as_ref();
        // Before anything else looks at it: a request whose body could be read two ways is
        // refused, and its connection closed (what follows it cannot be trusted either).
        let raw_head = || session.as_http1().map(|h1| h1.get_headers_raw_bytes());
        let framing = classify::ambiguous_framing(&session.req_header().headers, raw_head);
        if let Some(reason) = framing {
            return refuse(session, ctx, reason).await;
        }
        let route = classify::classify(session.req_header().uri.path(), |p| app.is_callback(p));
        // Only back-channel logout and the device sign-in read a body (a form), bounded.
        let body = if matches!(
            route,
            Route::Endpoint(
                classify::Endpoint::BackchannelLogout
                    | classify::Endpoint::DeviceAuthorize
                    | classify::Endpoint::DeviceToken
            )
        ) {
            match read_body(session, endpoints::MAX_BODY_BYTES).await? {
                Some(body) => body,
                None => {
                    ctx.outcome = Outcome::Endpoint;
                    crate::respond::Reply::text(413, "request body too large\n")
                        .send(session)
                        .await?;
                    return Ok(true);
                }
            }
        } else {
            Vec::new()
        };
        // One host per request, checked before anything depends on it: the routes, the
        // endpoints and the upstream all see the same one. Only health checks need none.
        let trusted = ctx.trusted(session);
        let host = match crate::host::of_request(session.req_header(), trusted) {
            Ok(Some(host)) => Some(host),
            Ok(None) if classify::needs_no_host(route) => None,
            Ok(None) => return refuse(session, ctx, "a request without a Host header").await,
            Err(e) => return refuse(session, ctx, &e.to_string()).await,
        };
        ctx.client_cert = match ctx.client_cert_of(session, trusted) {
            Ok(cert) => cert,
            Err(e) => return refuse(session, ctx, &e.to_string()).await,
        };
        ctx.scheme = scheme(session, trusted);
        if let Route::Endpoint(endpoint) = route {
            let facts = Facts {
                trusted_proxy: trusted,
                host,
                client_cert: ctx.client_cert.as_deref(),
                scheme: ctx.scheme,
            };
            // Boxed: the endpoints' state (provider calls, forms) is large, and kept inline it
            // would make every request's filter future as large, allocated and copied each time.
            let answer = Box::pin(endpoints::handle(
                app,
                endpoint,
                session.req_header(),
                &body,
                &facts,
            ))
            .await;
            ctx.outcome = Outcome::Endpoint;
            ctx.user = answer.user;
            ctx.reason = answer.reason;
            answer.reply.send(session).await?;
            return Ok(true);
        }

        let req = session.req_header();
        let target = Target::of(req, host, ctx.client_cert.as_deref(), ctx.scheme);
        let decided = app.decide(req, &target).await;
        let asker = Asker::client(app, req, &decided.verdict);
        let challenges = app.challenges(&decided.verdict, ctx.scheme, host);
        let settled = answer::settle(decided.verdict, &asker, &challenges);
        ctx.outcome = settled.outcome;
        ctx.user = settled.user;
        ctx.reason = settled.reason;
        match settled.then {
            Then::Forward(caller) => {
                ctx.caller = caller;
                ctx.set_cookies = decided.set_cookies;
                Ok(false)
            }
            Then::Answer(reply) => {
                reply.cookies(decided.set_cookies).send(session).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let up = &ctx.app.config.upstream;
        let addr = match up.ip {
            Some(ip) => ip,
            // A host name is looked up for each new request, off the worker threads (the
            // system resolver caches); pingora's own lookup would block and panic on failure.
            None => resolve(&up.address).await?,
        };
        let mut peer = HttpPeer::new(addr, up.tls, up.sni.clone());
        peer.options.connection_timeout = Some(up.connect_timeout);
        peer.options.read_timeout = Some(up.read_timeout);
        match up.protocol {
            UpstreamProtocol::Http1 => {}
            UpstreamProtocol::H2 => peer.options.set_http_version(2, 2),
            UpstreamProtocol::Auto => peer.options.set_http_version(2, 1),
        }
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let peer = Peer {
            ip: peer_ip(session),
            trusted: ctx.trusted(session),
            // A trusted proxy's own X-Forwarded-Proto is kept as it is; anyone else's is
            // replaced by how the client reached us.
            scheme: ctx.scheme,
        };
        forward::for_upstream(
            upstream_request,
            &ctx.app,
            ctx.caller.as_ref(),
            ctx.client_cert.as_deref(),
            &peer,
        );
        ctx.upstream_sent = Some(Instant::now());
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // 1xx responses are interim: the cookie belongs on the final one.
        if upstream_response.status.is_informational() {
            return Ok(());
        }
        if let Some(sent) = ctx.upstream_sent.take() {
            metrics::get().upstream(
                Some(upstream_response.status.as_u16()),
                Some(sent.elapsed()),
            );
        }
        if ctx.set_cookies.is_empty() {
            return Ok(());
        }
        for cookie in ctx.set_cookies.drain(..) {
            upstream_response.append_header("Set-Cookie", cookie.into_string())?;
        }
        // A response carrying a user's session must never be stored by a shared cache.
        upstream_response.insert_header("Cache-Control", "private, no-store")?;
        Ok(())
    }

    /// A request that could not be proxied (upstream refused, reset, timed out; client sent
    /// something unreadable): our own small page instead of pingora's empty default, and 504
    /// rather than 502 when the upstream did not answer in time.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &pingora::Error,
        _ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let status = respond::proxy_failure_status(e);
        // Once a response has started, nothing more can be said: the connection is closed.
        if let Some(code) = status.filter(|_| session.response_written().is_none()) {
            // The request body may be unread: say so, so that the client does not send its
            // next request on a connection about to be closed.
            session.set_keepalive(None);
            let reply = if respond::is_grpc(session.req_header()) {
                respond::Reply::grpc(
                    respond::GrpcStatus::Unavailable,
                    "the upstream could not be reached",
                )
            } else {
                respond::proxy_failure(code)
            };
            if let Err(err) = reply.send(session).await {
                tracing::debug!(error = %err, "cannot send the error page to the client");
            }
        }
        FailToProxy {
            // pingora's "no status": the client is gone.
            error_code: status.map_or(0, |s| s.as_u16()),
            can_reuse_downstream: false,
        }
    }

    /// A request the client got wrong (unreadable, a bad body, gone midway) is the client's
    /// business: its access-log line records the status and the error kind at INFO, like any
    /// request, and nothing more is written, so no client can fill the log with ERROR lines.
    /// Failures of the upstream or of portcullis itself are still logged as errors.
    fn suppress_error_log(
        &self,
        _session: &Session,
        _ctx: &RequestCtx,
        e: &pingora::Error,
    ) -> bool {
        respond::proxy_failure_status(e).is_none_or(|s| s.as_u16() < 500)
    }

    /// pingora's error log describes a request with this: the path only, since a query may
    /// carry an authorization code or state.
    fn request_summary(&self, session: &Session, _ctx: &RequestCtx) -> String {
        let req = session.req_header();
        format!("{} {}", req.method, req.uri.path())
    }

    async fn logging(
        &self,
        session: &mut Session,
        e: Option<&pingora::Error>,
        ctx: &mut RequestCtx,
    ) {
        // Sent upstream but no response header came back (refused, reset, timed out).
        if ctx.upstream_sent.is_some() {
            metrics::get().upstream(None, None);
        }
        let req = session.req_header();
        access_log::record(&access_log::Entry {
            method: req.method.as_str(),
            path: req.uri.path(),
            status: session.response_written().map(|r| r.status.as_u16()),
            outcome: ctx.outcome,
            user: ctx.user.as_deref(),
            client: peer_ip(session),
            duration: Some(ctx.started.elapsed()),
            error: e.map(|e| e.etype().as_str()),
            reason: ctx.reason.as_deref(),
        });
    }
}
