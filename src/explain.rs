//! `portcullis explain-token`: the offline answer to "why is my token refused".
//!
//! It runs the same stages a request runs, on a token read from stdin: the bearer stage
//! explains each of its checks ([`crate::bearer::BearerAuth::explain`]), then the one decision
//! path ([`crate::app::App::decide`], settled by `answer::settle`) says what a request with
//! that token would get on the given method, host and path. Nothing is served and no request
//! leaves but the fetch of the issuer's published keys. The token itself is never printed.

use std::fmt::Write as _;
use std::sync::Arc;

use pingora::http::RequestHeader;

use crate::access::Target;
use crate::answer::{self, Asker, Then};
use crate::app::App;
use crate::config::Config;

/// The request the decision is made for.
pub struct Request<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The host the client asks for.
    pub host: &'a str,
    /// The path (a query is ignored, as routes ignore it).
    pub path: &'a str,
}

/// The report, and whether a request with the token would go through.
pub struct Report {
    /// One line per step, then the decision.
    pub text: String,
    /// The request would reach the upstream.
    pub allowed: bool,
}

/// Explains `token` under `config` for `request`.
pub async fn explain(config: Config, token: &str, request: &Request<'_>) -> anyhow::Result<Report> {
    crate::jwt::provider::install();
    let app = App::new(Arc::new(config))?;
    let token = token.trim();
    let mut text = String::new();
    for step in app.bearer.explain(token).await {
        let mark = if step.passed { "ok  " } else { "FAIL" };
        writeln!(text, "{mark} {:<14} {}", step.name, step.detail)?;
    }

    let mut req = RequestHeader::build(request.method, request.path.as_bytes(), None)?;
    req.insert_header(http::header::HOST, request.host)?;
    req.insert_header(http::header::AUTHORIZATION, format!("Bearer {token}"))?;
    let target = Target::of(&req, Some(request.host), None, "https");
    let decided = app.decide(&req, &target).await;
    let asker = Asker::Client {
        browser_navigation: false,
        return_to: request.path,
        grpc: false,
        robots_txt: false,
    };
    let settled = answer::settle(decided.verdict, &asker, &answer::Challenges::default());
    let (status, allowed) = match &settled.then {
        Then::Forward(_) => ("forwarded to the upstream".to_string(), true),
        Then::Answer(reply) => (format!("answered {}", reply.status()), false),
    };
    write!(
        text,
        "decision {} https://{}{} -> {status} ({})",
        request.method,
        request.host,
        request.path,
        settled.outcome.as_str()
    )?;
    if let Some(user) = &settled.user {
        write!(text, " as user {user:?}")?;
    }
    if let Some(reason) = &settled.reason {
        write!(text, ": {reason}")?;
    }
    text.push('\n');
    Ok(Report { text, allowed })
}
