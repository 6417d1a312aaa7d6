//! `/oauth2/userinfo` (who am I, as JSON; never tokens) and `/oauth2/auth` (forward
//! authentication for nginx `auth_request` and Traefik).

use http::Method;
use pingora::http::RequestHeader;
use serde_json::json;

use super::{Answer, Facts};
use crate::access::{Caller, Target, Verdict};
use crate::app::App;
use crate::respond::{self, unauthorized_api, Reply};
use crate::session::SessionData;

pub async fn userinfo(app: &App, req: &RequestHeader) -> Answer {
    with_session(app, req, |session| {
        let id = &session.identity;
        Reply::json(
            200,
            &json!({
                "user": id.user,
                "email": id.email,
                "groups": id.groups,
                "preferred_username": id.preferred_username,
                "expires_at": session.expires_at,
            }),
        )
    })
    .await
}

/// Answers with `build(session)` for a valid session, with 401 otherwise; either way with the
/// cookies authentication wants set (a refreshed or a cleared session).
async fn with_session(
    app: &App,
    req: &RequestHeader,
    build: impl FnOnce(&SessionData) -> Reply,
) -> Answer {
    let auth = app.authenticate(req).await;
    match auth.session {
        None => unauthorized_api("no valid session")
            .cookies(auth.set_cookies)
            .into(),
        Some(session) => Answer {
            reply: build(&session).cookies(auth.set_cookies),
            user: Some(session.identity.user.clone()),
        },
    }
}

/// Forward authentication for nginx `auth_request` and Traefik: the same decision the proxy
/// makes, applied to the original request a trusted front proxy reports (method, host, URI).
/// 202 with `X-Auth-Request-*` to let it through, 401 to ask for credentials, 403 to refuse.
/// (nginx treats any other status as an error, so an ambiguous path is a 403 here.)
pub async fn forward_auth(app: &App, req: &RequestHeader, facts: &Facts) -> Answer {
    // Each fact about the original request must be reported once, or with one value: two
    // readings (say X-Forwarded-Uri next to X-Original-URI) are refused like an ambiguous path.
    let (Ok(original), Ok(method), Ok(forwarded_host)) = (
        original_uri(req, facts),
        reported(req, facts, &["x-forwarded-method", "x-original-method"]),
        reported(req, facts, &["x-forwarded-host"]),
    ) else {
        return respond::forbidden(false).into();
    };
    // With routes configured, a decision needs the original request; without it the default
    // rule would answer for every path (fail open), so refuse and say why.
    if original.is_none() && !app.config.routes.routes().is_empty() {
        tracing::warn!(
            trusted_proxy = facts.trusted_proxy,
            "forward-auth without the original URI from a trusted proxy; refused (set X-Original-URI and server.trusted_proxies)"
        );
        return respond::forbidden(false).into();
    }
    let method = match method {
        Some(m) => match Method::from_bytes(m.as_bytes()) {
            Ok(m) => Some(m),
            Err(_) => return respond::forbidden(false).into(),
        },
        None => None,
    };
    // The auth subrequest's own Host names portcullis, not the application: only a reported
    // host counts.
    let target = Target {
        method: method.as_ref(),
        host: forwarded_host.as_deref(),
        path: original
            .as_deref()
            .map(|u| u.split('?').next().unwrap_or(u).as_bytes()),
    };
    let decided = app.decide(req, &target).await;
    let pass_access_token = app.config.headers.pass_access_token && facts.trusted_proxy;
    let (reply, user) = match decided.verdict {
        Verdict::Public => (Reply::text(202, ""), None),
        Verdict::Allow(caller) => {
            let user = caller.identity().user.clone();
            (allowed(&caller, pass_access_token), Some(user))
        }
        Verdict::Unauthenticated => (unauthorized_api("no valid session"), None),
        Verdict::InvalidToken(e) => (respond::invalid_token(&e), None),
        Verdict::BadRequest(_) => (respond::forbidden(false), None),
        Verdict::Forbidden(caller) => (
            respond::forbidden(false),
            Some(caller.identity().user.clone()),
        ),
        Verdict::InsufficientScope(needed) => (respond::insufficient_scope(&needed), None),
    };
    Answer {
        reply: reply.cookies(decided.set_cookies),
        user,
    }
}

fn allowed(caller: &Caller, pass_access_token: bool) -> Reply {
    let id = caller.identity();
    let mut reply = Reply::text(202, "").header("X-Auth-Request-User", id.user.clone());
    if let Some(email) = &id.email {
        reply = reply.header("X-Auth-Request-Email", email.clone());
    }
    if !id.groups.is_empty() {
        reply = reply.header("X-Auth-Request-Groups", id.groups.join(","));
    }
    if let Some(u) = &id.preferred_username {
        reply = reply.header("X-Auth-Request-Preferred-Username", u.clone());
    }
    match caller {
        Caller::Session(s) if pass_access_token => match &s.access_token {
            Some(t) => reply.header("X-Auth-Request-Access-Token", t.clone()),
            None => reply,
        },
        _ => reply,
    }
}

/// Two different values for one fact about the original request.
#[derive(Debug, PartialEq, Eq)]
pub struct Ambiguous;

/// What a trusted front proxy reports under any of `names`: nothing, one value (possibly
/// repeated identically under several names), or — several different values — ambiguity.
/// From anyone else these headers mean nothing.
fn reported(
    req: &RequestHeader,
    facts: &Facts,
    names: &[&str],
) -> Result<Option<String>, Ambiguous> {
    if !facts.trusted_proxy {
        return Ok(None);
    }
    let mut found: Option<&[u8]> = None;
    for value in names.iter().flat_map(|n| req.headers.get_all(*n).iter()) {
        match found {
            Some(v) if v != value.as_bytes() => return Err(Ambiguous),
            _ => found = Some(value.as_bytes()),
        }
    }
    match found {
        None => Ok(None),
        Some(v) => std::str::from_utf8(v)
            .map(|s| Some(s.to_string()))
            .map_err(|_| Ambiguous),
    }
}

/// The URI the user asked the front proxy for: believed only from a trusted proxy.
pub fn original_uri(req: &RequestHeader, facts: &Facts) -> Result<Option<String>, Ambiguous> {
    reported(req, facts, &["x-forwarded-uri", "x-original-uri"])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/oauth2/auth", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn the_original_uri_is_believed_only_from_trusted_proxies() {
        let trusted = Facts {
            trusted_proxy: true,
        };
        let stranger = Facts {
            trusted_proxy: false,
        };
        let r = req(&[("x-original-uri", "/admin?x=1")]);
        assert_eq!(original_uri(&r, &trusted), Ok(Some("/admin?x=1".into())));
        assert_eq!(original_uri(&r, &stranger), Ok(None));
        // The same value under both names is one reading; different values are two.
        let r = req(&[("x-forwarded-uri", "/a"), ("x-original-uri", "/a")]);
        assert_eq!(original_uri(&r, &trusted), Ok(Some("/a".into())));
        let r = req(&[("x-forwarded-uri", "/a"), ("x-original-uri", "/b")]);
        assert_eq!(original_uri(&r, &trusted), Err(Ambiguous));
        let r = req(&[("x-forwarded-uri", "/a"), ("x-forwarded-uri", "/b")]);
        assert_eq!(original_uri(&r, &trusted), Err(Ambiguous));
    }
}
