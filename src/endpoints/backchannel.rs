//! `POST /oauth2/backchannel_logout` (OpenID Connect Back-Channel Logout 1.0): the provider
//! tells us a login ended (the user signed out there, or an administrator ended it), and every
//! session of that login (`sid`) or user (`sub`) ends here too: on every replica with the
//! Redis store, in this process with the cookie store.
//!
//! 200 when done; 400 for a token that does not verify, a replayed one, or a malformed
//! request (the reason goes to the log only); 503 when the session store cannot be reached,
//! so the provider may try again.

use std::time::Duration;

use http::Method;
use pingora::http::RequestHeader;

use crate::app::{App, Login};
use crate::respond::Reply;

/// The largest request body read: a logout token is a few hundred bytes.
pub(crate) const MAX_BODY_BYTES: usize = 16 * 1024;

/// How long a used logout token's `jti` is remembered: past its `exp` plus the leeway, it
/// would be refused anyway.
const REMEMBER_JTI: Duration = Duration::from_secs(10 * 60);

fn bad_request(reason: &str) -> Reply {
    tracing::info!(reason, "back-channel logout refused");
    Reply::json(
        400,
        &serde_json::json!({"error": "invalid_request", "error_description": "the logout request is not valid"}),
    )
    .header("Cache-Control", "no-store")
}

pub(super) async fn logout(app: &App, login: &Login, req: &RequestHeader, body: &[u8]) -> Reply {
    if req.method != Method::POST {
        return Reply::text(405, "method not allowed\n").header("Allow", "POST");
    }
    let form = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return bad_request("not application/x-www-form-urlencoded");
    }
    let mut tokens = url::form_urlencoded::parse(body)
        .filter(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned());
    let (Some(token), None) = (tokens.next(), tokens.next()) else {
        return bad_request("not exactly one logout_token");
    };
    let now = app.clock.now();
    // The token's `iss` only picks whose keys verify it; `iss` is then checked like every
    // other claim, so a token cannot name one provider and be signed by another.
    let issuer = crate::jwt::verify::unverified_claims(&token)
        .ok()
        .and_then(|c| c.get("iss")?.as_str().map(str::to_string));
    let Some(provider) = issuer.and_then(|iss| login.providers.by_issuer(&iss)) else {
        return bad_request("the logout token's iss is none of the providers");
    };
    let ended = match provider.verify_logout_token(&token, now).await {
        Ok(t) => t,
        Err(reason) => return bad_request(&reason),
    };
    match login.sessions.first_use(&ended.jti, REMEMBER_JTI).await {
        Ok(true) => {}
        Ok(false) => return bad_request("a logout token used before (jti)"),
        Err(e) => return unavailable(&e.to_string()),
    }
    let ending = crate::session::Ending {
        provider: provider.id(),
        sub: ended.sub.as_deref(),
        sid: ended.sid.as_deref(),
    };
    match login.sessions.end_sessions(ending, now).await {
        Ok(count) => {
            tracing::info!(
                provider = provider.id(),
                sub = ended.sub.as_deref(),
                sid = ended.sid.as_deref(),
                sessions = count,
                "back-channel logout"
            );
            Reply::text(200, "").header("Cache-Control", "no-store")
        }
        Err(e) => {
            // Checked first so that a replay ends nothing; undone now so that the provider's
            // retry of this very token is carried out rather than refused as a replay.
            login.sessions.forget_use(&ended.jti).await;
            unavailable(&e.to_string())
        }
    }
}

fn unavailable(reason: &str) -> Reply {
    tracing::warn!(reason, "back-channel logout could not be carried out");
    Reply::text(503, "the session store is unavailable\n").header("Retry-After", "5")
}
