//! Built-in endpoints: health, login, sign-out and identity. Each handler computes a [`Reply`];
//! this module only dispatches and sends.

mod health;
mod identity;
mod login;
mod sign_out;

use pingora::http::RequestHeader;

use crate::app::App;
use crate::classify::Endpoint;
use crate::respond::Reply;

/// Request facts an endpoint may need besides the header.
pub struct Facts {
    /// The peer is a configured trusted proxy.
    pub trusted_proxy: bool,
}

/// What an endpoint answered, and who it was about (for the access log).
pub struct Answer {
    pub reply: Reply,
    pub user: Option<String>,
}

impl From<Reply> for Answer {
    fn from(reply: Reply) -> Answer {
        Answer { reply, user: None }
    }
}

pub async fn handle(app: &App, endpoint: Endpoint, req: &RequestHeader, facts: &Facts) -> Answer {
    match endpoint {
        Endpoint::Ping => health::ping().into(),
        Endpoint::Ready => health::ready(app).into(),
        Endpoint::Start => login::start(app, req, facts).into(),
        Endpoint::Callback => login::callback(app, req).await,
        Endpoint::SignOut => sign_out::sign_out(app, req, facts).into(),
        Endpoint::UserInfo => identity::userinfo(app, req).await,
        Endpoint::Auth => identity::forward_auth(app, req, facts).await,
        Endpoint::UnknownReserved => Reply::text(404, "not found\n").into(),
    }
}

/// The single value of a query parameter. A parameter given twice is ambiguous and refused.
fn query_param(req: &RequestHeader, name: &str) -> Result<Option<String>, ()> {
    let Some(query) = req.uri.query() else {
        return Ok(None);
    };
    let mut found = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if k == name {
            if found.is_some() {
                return Err(());
            }
            found = Some(v.into_owned());
        }
    }
    Ok(found)
}

/// Where to send the browser afterwards: `rd`, or — when there is no `rd` — the original URI a
/// trusted front proxy reports (nginx `error_page 401 = /oauth2/start` cannot URL-encode
/// `$request_uri` into `rd` itself). Falls back to `/` when absent, ambiguous or refused.
fn return_target(app: &App, req: &RequestHeader, facts: &Facts) -> String {
    let candidate = match query_param(req, "rd") {
        Ok(Some(rd)) => Some(rd),
        Ok(None) => identity::original_uri(req, facts).ok().flatten(),
        Err(()) => None,
    };
    candidate
        .and_then(|target| app.config.redirects.validate(&target))
        // Returning to one of our own endpoints (say `/oauth2/start`) would loop.
        .filter(|target| {
            let path = target.split(['?', '#']).next().unwrap_or("");
            !(path.starts_with(crate::classify::RESERVED_PREFIX)
                || path == app.config.oidc.callback_path)
        })
        .unwrap_or_else(|| "/".to_string())
}
