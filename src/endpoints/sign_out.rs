//! `/oauth2/sign_out`: forget the session here, then at the provider when it supports
//! RP-initiated logout.

use pingora::http::RequestHeader;

use super::{return_target, Facts};
use crate::app::{cookie_headers, App};
use crate::oidc::flow;
use crate::respond::Reply;
use crate::session::now;

pub fn sign_out(app: &App, req: &RequestHeader, facts: &Facts) -> Reply {
    let target = return_target(app, req, facts);
    let cookies = cookie_headers(req);
    let loaded = app.sessions.load(&cookies, now());
    let mut set_cookies = app.sessions.clear(&loaded.present);
    set_cookies.extend(flow::clear_all(&app.sessions, &cookies));
    if let Some(session) = loaded.session.as_ref() {
        tracing::info!(user = %session.identity.user, "sign-out");
        app.refresher.forget(session);
    }
    let end_session = app
        .provider
        .metadata()
        .and_then(|m| m.end_session_endpoint.clone())
        .and_then(|e| url::Url::parse(&e).ok());
    let Some(mut url) = end_session else {
        return Reply::redirect(&target).cookies(set_cookies);
    };
    // The provider needs an absolute address to come back to; a relative target is resolved
    // against the application's public origin (that of oidc.redirect_url).
    let back = app
        .config
        .oidc
        .redirect_url
        .join(&target)
        .map(|u| u.to_string())
        .unwrap_or(target);
    {
        let mut q = url.query_pairs_mut();
        if let Some(hint) = loaded.session.as_ref().and_then(|s| s.id_token.as_deref()) {
            q.append_pair("id_token_hint", hint);
        }
        q.append_pair("post_logout_redirect_uri", &back);
        q.append_pair("client_id", &app.config.oidc.client_id);
    }
    Reply::redirect(url.as_str()).cookies(set_cookies)
}
