//! `/oauth2/userinfo` (who am I, as JSON; never tokens) and `/oauth2/auth` (forward
//! authentication for nginx `auth_request` and Traefik).

use pingora::http::RequestHeader;
use serde_json::json;

use super::{Answer, Facts};
use crate::app::App;
use crate::respond::{unauthorized_api, Reply};
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

/// 202 with `X-Auth-Request-*` when the session is valid, 401 otherwise. The proxy in front
/// maps those headers into the request it forwards.
pub async fn forward_auth(app: &App, req: &RequestHeader, facts: &Facts) -> Answer {
    if let Some(uri) = original_uri(req, facts) {
        tracing::debug!(original_uri = %uri, "forward-auth");
    }
    // The access token goes only to a trusted front proxy: answered to anyone, this endpoint
    // would hand it to any script running on the application's origin.
    let pass_access_token = app.config.headers.pass_access_token && facts.trusted_proxy;
    with_session(app, req, |session| {
        let id = &session.identity;
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
        match &session.access_token {
            Some(t) if pass_access_token => reply.header("X-Auth-Request-Access-Token", t.clone()),
            _ => reply,
        }
    })
    .await
}

/// The URI the user asked the front proxy for: believed only from a trusted proxy.
pub fn original_uri(req: &RequestHeader, facts: &Facts) -> Option<String> {
    if !facts.trusted_proxy {
        return None;
    }
    ["x-forwarded-uri", "x-original-uri"]
        .iter()
        .find_map(|name| {
            let mut values = req.headers.get_all(*name).iter();
            match (values.next(), values.next()) {
                (Some(v), None) => v.to_str().ok().map(str::to_string),
                _ => None,
            }
        })
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
        assert_eq!(original_uri(&r, &trusted).as_deref(), Some("/admin?x=1"));
        assert_eq!(original_uri(&r, &stranger), None);
        let r = req(&[("x-forwarded-uri", "/a"), ("x-original-uri", "/b")]);
        assert_eq!(original_uri(&r, &trusted).as_deref(), Some("/a"));
        // Two copies of one header: ambiguous, ignored.
        let r = req(&[("x-forwarded-uri", "/a"), ("x-forwarded-uri", "/b")]);
        assert_eq!(original_uri(&r, &trusted), None);
    }
}
