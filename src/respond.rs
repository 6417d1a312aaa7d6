//! Responses portcullis writes itself (endpoints, login redirects, refusals). Every one is
//! marked `no-store`: none may be cached by a shared cache, since they carry cookies or identity.

use bytes::Bytes;
use http::StatusCode;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession as HttpSession;
use pingora::proxy::Session;

use crate::session::chunks::SetCookie;

/// Headers every reply carries: none may be cached by a shared cache or sniffed as another type.
const ALWAYS: [(&str, &str); 2] = [
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
];

pub(crate) struct Reply {
    status: u16,
    headers: Vec<(Name, String)>,
    body: Bytes,
    /// The answer is its header alone, which ends the stream (a gRPC "trailers-only" reply).
    headers_only: bool,
}

/// A header name as written here (kept in its spelling) or as configured.
enum Name {
    Static(&'static str),
    Header(http::HeaderName),
}

impl Reply {
    pub(crate) fn new(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            headers: vec![(Name::Static("Content-Type"), content_type.to_string())],
            body: body.into(),
            headers_only: false,
        }
    }

    pub(crate) fn text(status: u16, body: &str) -> Reply {
        Reply::new(status, "text/plain; charset=utf-8", body.to_string())
    }

    pub(crate) fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply::new(status, "application/json", value.to_string())
    }

    /// A small self-contained page; `message` is escaped here.
    pub(crate) fn page(status: u16, title: &str, message: &str) -> Reply {
        let body = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
             <style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}}\
             h1{{font-size:1.4rem}}</style></head><body><h1>{t}</h1><p>{m}</p></body></html>",
            t = escape_html(title),
            m = escape_html(message),
        );
        Reply::new(status, "text/html; charset=utf-8", body).header(
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'",
        )
    }

    /// A page of links for a person to pick one of (the sign-in provider chooser). Every
    /// label and target is escaped here.
    pub(crate) fn choices(title: &str, lead: &str, links: &[(&str, String)]) -> Reply {
        let items: String = links
            .iter()
            .map(|(label, href)| {
                format!(
                    "<li><a href=\"{}\">{}</a></li>",
                    escape_html(href),
                    escape_html(label)
                )
            })
            .collect();
        let body = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
             <style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}}\
             h1{{font-size:1.4rem}}li{{margin:.6rem 0;font-size:1.1rem}}</style></head>\
             <body><h1>{t}</h1><p>{l}</p><ul>{items}</ul></body></html>",
            t = escape_html(title),
            l = escape_html(lead),
        );
        Reply::new(200, "text/html; charset=utf-8", body)
            .header(
                "content-security-policy",
                "default-src 'none'; style-src 'unsafe-inline'",
            )
            .header("Cache-Control", "no-store")
    }

    /// A page that moves the browser on to `target` itself. Used after login when the session
    /// cookie is `SameSite=Strict`: browsers withhold such a cookie on a redirect chain that
    /// started at the provider's site, but send it when a page of ours navigates.
    pub(crate) fn continue_to(target: &str) -> Reply {
        Reply::moving_on("Signed in", "Signed in. ", "Continue", target)
    }

    /// A page that moves the browser on to `target` itself: a refresh, and a link for a
    /// browser that does not follow one. `target` is escaped here.
    pub(crate) fn moving_on(title: &str, lead: &str, link: &str, target: &str) -> Reply {
        let t = escape_html(target);
        let body = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\">\
             <meta http-equiv=\"refresh\" content=\"0;url={t}\"><title>{title}</title></head>\
             <body><p>{lead}<a href=\"{t}\">{link}</a>.</p></body></html>",
            title = escape_html(title),
            lead = escape_html(lead),
            link = escape_html(link),
        );
        Reply::new(200, "text/html; charset=utf-8", body)
            .header("Content-Security-Policy", "default-src 'none'")
    }

    /// A gRPC call's refusal: HTTP 200 whose headers carry `grpc-status` and `grpc-message`
    /// and end the stream ("trailers-only", as gRPC servers answer a call they refuse).
    pub(crate) fn grpc(status: GrpcStatus, message: &str) -> Reply {
        let encoded: String =
            percent_encoding::utf8_percent_encode(message, GRPC_MESSAGE).to_string();
        let mut reply = Reply::new(200, "application/grpc", Bytes::new())
            .header("grpc-status", (status as u8).to_string())
            .header("grpc-message", encoded);
        reply.headers_only = true;
        reply
    }

    pub(crate) fn redirect(location: &str) -> Reply {
        Reply::new(302, "text/plain; charset=utf-8", "").header("Location", location)
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.add_header(name, value);
        self
    }

    /// [`Reply::header`] on a reply held by reference.
    /// Adds `param` to every `Bearer` and `DPoP` challenge of the reply's `WWW-Authenticate`.
    pub(crate) fn add_challenge_param(&mut self, param: &str) {
        for (name, value) in &mut self.headers {
            let is_challenge = match name {
                Name::Static(n) => n.eq_ignore_ascii_case("www-authenticate"),
                Name::Header(n) => *n == http::header::WWW_AUTHENTICATE,
            };
            if !is_challenge {
                continue;
            }
            if value.starts_with("Bearer ") || value.starts_with("DPoP ") {
                value.push_str(", ");
                value.push_str(param);
            }
        }
    }

    pub(crate) fn add_header(&mut self, name: &'static str, value: impl Into<String>) {
        self.headers.push((Name::Static(name), value.into()));
    }

    /// A header whose name is data (configured, or one of a set).
    pub(crate) fn header_named(mut self, name: http::HeaderName, value: String) -> Reply {
        self.headers.push((Name::Header(name), value));
        self
    }

    pub(crate) fn cookies(mut self, set_cookies: Vec<SetCookie>) -> Reply {
        for c in set_cookies {
            self.headers
                .push((Name::Static("Set-Cookie"), c.into_string()));
        }
        self
    }

    pub(crate) fn status(&self) -> u16 {
        self.status
    }

    /// The status, every header (those every reply carries first) and the body: for a front
    /// proxy that answers the client for us (Envoy's ext_authz). Only a gRPC refusal's
    /// "trailers-only" form is lost, which such a proxy writes itself.
    pub(crate) fn into_parts(self) -> (u16, Vec<(String, String)>, Bytes) {
        let headers = ALWAYS
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .chain(self.headers.into_iter().map(|(name, value)| {
                let name = match name {
                    Name::Static(n) => n.to_string(),
                    Name::Header(n) => n.as_str().to_string(),
                };
                (name, value)
            }))
            .collect();
        (self.status, headers, self.body)
    }

    pub(crate) async fn send(self, session: &mut Session) -> pingora::Result<()> {
        let mut resp = ResponseHeader::build(self.status, Some(self.headers.len() + 4))?;
        for (name, value) in ALWAYS {
            resp.insert_header(name, value)?;
        }
        for (name, value) in self.headers {
            match name {
                Name::Static(name) => resp.append_header(name, value)?,
                Name::Header(name) => resp.append_header(name, value)?,
            };
        }
        if self.headers_only {
            // pingora's proxy session never ends an HTTP/2 stream with its header: write to
            // the HTTP/2 stream itself (HEADERS with END_STREAM, what gRPC clients read as
            // "trailers-only"). Over HTTP/1 the empty body ends it.
            if let HttpSession::H2(h2) = session.as_downstream_mut() {
                return h2.write_response_header(Box::new(resp), true);
            }
            session.write_response_header(Box::new(resp), false).await?;
            session
                .write_response_body(Some(Bytes::new()), true)
                .await?;
            return Ok(());
        }
        resp.insert_header("Content-Length", self.body.len().to_string())?;
        let head_only = session.req_header().method == http::Method::HEAD;
        session
            .write_response_header(Box::new(resp), head_only)
            .await?;
        if !head_only {
            session.write_response_body(Some(self.body), true).await?;
        }
        Ok(())
    }
}

/// The gRPC status codes portcullis answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GrpcStatus {
    InvalidArgument = 3,
    PermissionDenied = 7,
    Unavailable = 14,
    Unauthenticated = 16,
}

impl GrpcStatus {
    /// The status for an HTTP refusal of the same meaning.
    pub(crate) fn for_http(status: u16) -> GrpcStatus {
        match status {
            401 => GrpcStatus::Unauthenticated,
            403 => GrpcStatus::PermissionDenied,
            400..=499 => GrpcStatus::InvalidArgument,
            _ => GrpcStatus::Unavailable,
        }
    }
}

/// What `grpc-message` percent-encodes: controls, `%` and everything outside printable ASCII.
const GRPC_MESSAGE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');

/// Whether a request is a gRPC call (`content-type: application/grpc[+proto|;…]`). Runs on
/// every request: compares in place, allocating nothing.
pub(crate) fn is_grpc(req: &pingora::http::RequestHeader) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    let Some(value) = req.headers.get(http::header::CONTENT_TYPE) else {
        return false;
    };
    let v = value.as_bytes().trim_ascii();
    v.get(..GRPC.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(GRPC))
        && matches!(v.get(GRPC.len()), None | Some(b'+') | Some(b';'))
}

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// 400 for a request that could be read two ways (never forwarded, never matched against rules).
pub(crate) fn bad_request(reason: &str) -> Reply {
    Reply::json(
        400,
        &serde_json::json!({"error": "bad_request", "error_description": reason}),
    )
}

/// 401 for a refused bearer token (RFC 6750 §3.1). A bearer caller is never sent to a login page.
pub(crate) fn invalid_token(reason: &crate::bearer::BearerError) -> Reply {
    let description = reason.to_string();
    Reply::json(
        401,
        &serde_json::json!({"error": "invalid_token", "error_description": description}),
    )
    .header(
        "WWW-Authenticate",
        format!("Bearer realm=\"portcullis\", error=\"invalid_token\", error_description=\"{description}\""),
    )
}

/// 401 for a DPoP proof that does not hold (RFC 9449 §7.1); the `WWW-Authenticate: DPoP`
/// challenge is added by the answer stage, which knows the accepted algorithms.
pub(crate) fn invalid_proof(code: &str, reason: &crate::dpop::ProofError) -> Reply {
    Reply::json(
        401,
        &serde_json::json!({"error": code, "error_description": reason.to_string()}),
    )
}

/// 403 for a valid token without the scopes a route needs (RFC 6750 §3.1).
pub(crate) fn insufficient_scope(needed: &[String]) -> Reply {
    let scope = needed.join(" ");
    Reply::json(
        403,
        &serde_json::json!({"error": "insufficient_scope", "scope": scope}),
    )
    .header(
        "WWW-Authenticate",
        format!("Bearer realm=\"portcullis\", error=\"insufficient_scope\", scope=\"{scope}\""),
    )
}

/// 403 for a request without the client certificate its route asks for (or another one).
pub(crate) fn certificate_refused(refusal: crate::client_cert::CertRefusal) -> Reply {
    Reply::json(
        403,
        &serde_json::json!({"error": "client_certificate", "error_description": refusal.to_string()}),
    )
}

/// 403 for an authenticated caller the rules do not let through: a page for a person's
/// browser, JSON for everything else.
pub(crate) fn forbidden(browser: bool) -> Reply {
    if browser {
        Reply::page(
            403,
            "Access denied",
            "You are signed in, but your account is not allowed to open this page.",
        )
    } else {
        Reply::json(
            403,
            &serde_json::json!({"error": "forbidden", "error_description": "not allowed by the access rules"}),
        )
    }
}

/// The status for a request that could not be proxied: 504 when the upstream did not answer in
/// time, 502 when it refused, reset or spoke nonsense, 400 for a client that sent something
/// unreadable, `None` when the client is gone (nothing can be written). Never a panic, never a
/// guess that hides an upstream failure behind a 500.
pub(crate) fn proxy_failure_status(e: &pingora::Error) -> Option<StatusCode> {
    use pingora::{ErrorSource, ErrorType};
    if let ErrorType::HTTPStatus(code) = e.etype() {
        // pingora's own statuses are valid ones; anything else reads as an internal error.
        return Some(StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    }
    let status = match e.esource() {
        ErrorSource::Upstream => match e.etype() {
            ErrorType::ConnectTimedout
            | ErrorType::ReadTimedout
            | ErrorType::WriteTimedout
            | ErrorType::TLSHandshakeTimedout => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        },
        ErrorSource::Downstream => match e.etype() {
            ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                return None
            }
            _ => StatusCode::BAD_REQUEST,
        },
        ErrorSource::Internal | ErrorSource::Unset => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Some(status)
}

/// The page for a request that could not be proxied (see [`proxy_failure_status`]).
pub(crate) fn proxy_failure(status: StatusCode) -> Reply {
    match status.as_u16() {
        504 => Reply::page(
            504,
            "The application did not answer in time",
            "The application behind this sign-in did not answer in time. Please try again in a moment.",
        ),
        502 => Reply::page(
            502,
            "The application is unavailable",
            "The application behind this sign-in cannot be reached right now. Please try again in a moment.",
        ),
        400 => bad_request("the request could not be read"),
        status => Reply::page(status, "Request failed", "The request could not be completed."),
    }
}

/// RFC 6750 §3 challenge for API clients.
/// 503 while the session store cannot be reached: a page for a browser (never a login
/// redirect, which would loop), JSON for everything else; retry shortly.
pub(crate) fn session_store_unavailable(browser: bool) -> Reply {
    let reply = if browser {
        Reply::page(
            503,
            "Temporarily unavailable",
            "Your session cannot be checked right now. Please try again in a moment.",
        )
    } else {
        Reply::json(
            503,
            &serde_json::json!({"error": "temporarily_unavailable", "error_description": "the session store cannot be reached"}),
        )
    };
    reply.header("Retry-After", "5")
}

/// What crawlers are told about a protected application: stay away (oauth2-proxy's
/// `/robots.txt`).
pub(crate) fn robots_txt() -> Reply {
    Reply::text(200, "User-agent: *\nDisallow: /\n")
}

pub(crate) fn unauthorized_api(description: &str) -> Reply {
    Reply::json(
        401,
        &serde_json::json!({"error": "unauthorized", "error_description": description}),
    )
    .header("WWW-Authenticate", "Bearer realm=\"portcullis\"")
}

#[cfg(test)]
mod grpc_tests {
    use super::*;

    #[test]
    fn grpc_calls_are_recognised_and_refusals_mapped() {
        let req = |ct: &str| {
            let mut r = pingora::http::RequestHeader::build("POST", b"/svc/M", None).unwrap();
            r.insert_header("content-type", ct).unwrap();
            r
        };
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC; x=1",
        ] {
            assert!(is_grpc(&req(ct)), "{ct}");
        }
        for ct in ["application/grpc-web", "application/json", "text/html"] {
            assert!(!is_grpc(&req(ct)), "{ct}");
        }
        assert_eq!(GrpcStatus::for_http(401), GrpcStatus::Unauthenticated);
        assert_eq!(GrpcStatus::for_http(403), GrpcStatus::PermissionDenied);
        assert_eq!(GrpcStatus::for_http(400), GrpcStatus::InvalidArgument);
        assert_eq!(GrpcStatus::for_http(502), GrpcStatus::Unavailable);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes() {
        assert_eq!(
            super::escape_html("<a href=\"x\">'&'"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;"
        );
    }
}
