//! `portcullis login`'s side of portcullis (RFC 8628): `POST /oauth2/device/authorize` starts
//! a device sign-in at the provider with portcullis' own client and answers the code to show
//! the person; `POST /oauth2/device/token` (`device_code=…`) asks the provider once whether
//! they approved, and on approval makes a session like any sign-in's and answers its cookie.
//! The provider's device code travels sealed: only portcullis opens it, and it says which
//! provider the sign-in began with.
//!
//! Errors are RFC 8628's words in JSON (`authorization_pending`, `slow_down`,
//! `access_denied`, `expired_token`, `invalid_grant`), 503 while the provider or the session
//! store cannot be reached.

use pingora::http::RequestHeader;
use serde_json::json;

use super::Answer;
use crate::app::{App, Login};
use crate::oidc::device::{self, Poll};
use crate::respond::Reply;
use crate::session::Loaded;

fn error(status: u16, code: &str, description: &str) -> Reply {
    Reply::json(
        status,
        &json!({"error": code, "error_description": description}),
    )
    .header("Cache-Control", "no-store")
}

/// The single value of form field `name`: absent or repeated is `None`.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let mut values = url::form_urlencoded::parse(body).filter(|(k, _)| k == name);
    match (values.next(), values.next()) {
        (Some((_, v)), None) => Some(v.into_owned()),
        _ => None,
    }
}

pub(super) async fn authorize(app: &App, login: &Login, req: &RequestHeader, body: &[u8]) -> Reply {
    if req.method != http::Method::POST {
        return Reply::text(405, "method not allowed\n").header("Allow", "POST");
    }
    let chosen = match form_field(body, "provider") {
        Some(id) => login.providers.get(&id),
        None => login.providers.only(),
    };
    let Some(provider) = chosen else {
        let ids: Vec<&str> = login.providers.iter().map(|p| p.id()).collect();
        return error(
            400,
            "invalid_request",
            &format!("name one provider (provider=…): {}", ids.join(", ")),
        );
    };
    let now = app.clock.now();
    let started = match provider.start_device_login(now).await {
        Ok(s) => s,
        Err(e) if e.is_provider_down() => {
            tracing::warn!(error = %e, provider = provider.id(), "device sign-in: provider unavailable");
            return error(
                503,
                "temporarily_unavailable",
                "the identity provider cannot be reached",
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, provider = provider.id(), "device sign-in refused");
            return error(
                400,
                "unsupported_grant_type",
                "the identity provider offers no device sign-in to portcullis",
            );
        }
    };
    let sealed = device::encode(&started).ok().and_then(|text| {
        let record = json!({"provider": provider.id(), "started": now.secs(), "response": text});
        login.flows.seal_device(record.to_string().as_bytes())
    });
    let Some(device_code) = sealed else {
        return error(
            500,
            "server_error",
            "the device sign-in could not be sealed",
        );
    };
    let mut answer = json!({
        "device_code": device_code,
        "user_code": started.user_code().secret(),
        "verification_uri": started.verification_uri().as_str(),
        "expires_in": started.expires_in().as_secs(),
        "interval": started.interval().as_secs(),
    });
    if let Some(complete) = started.verification_uri_complete() {
        answer["verification_uri_complete"] = json!(complete.secret());
    }
    Reply::json(200, &answer).header("Cache-Control", "no-store")
}

pub(super) async fn token(app: &App, login: &Login, req: &RequestHeader, body: &[u8]) -> Answer {
    if req.method != http::Method::POST {
        return Reply::text(405, "method not allowed\n")
            .header("Allow", "POST")
            .into();
    }
    let now = app.clock.now();
    let record = form_field(body, "device_code")
        .and_then(|code| login.flows.open_device(&code))
        .and_then(|plain| serde_json::from_slice::<serde_json::Value>(&plain).ok());
    let opened = record.as_ref().and_then(|r| {
        let provider = login.providers.get(r["provider"].as_str()?)?;
        let started = device::decode(r["response"].as_str()?)?;
        let at = r["started"].as_u64()?;
        Some((provider, started, at))
    });
    let Some((provider, started, at)) = opened else {
        return error(400, "invalid_grant", "not a device code of this portcullis").into();
    };
    if now.secs() >= at.saturating_add(started.expires_in().as_secs()) {
        return error(
            400,
            "expired_token",
            "the sign-in took too long: start again",
        )
        .into();
    }
    let session = match provider.poll_device_login(&started, now).await {
        Ok(Poll::Approved(session)) => session,
        Ok(Poll::Pending) => return error(400, "authorization_pending", "not approved yet").into(),
        Ok(Poll::SlowDown) => return error(400, "slow_down", "poll less often").into(),
        Ok(Poll::Refused(why)) => {
            tracing::info!(reason = %why, provider = provider.id(), "device sign-in refused by the provider");
            return error(400, &why, "the identity provider refused the sign-in").into();
        }
        Err(e) if e.is_provider_down() => {
            return error(
                503,
                "temporarily_unavailable",
                "the identity provider cannot be reached",
            )
            .into()
        }
        Err(e) => {
            tracing::warn!(error = %e, provider = provider.id(), "device sign-in failed");
            return error(
                400,
                "invalid_grant",
                "the identity provider's answer could not be verified",
            )
            .into();
        }
    };
    let cookies = match login
        .sessions
        .create(&session, &Loaded::default(), now)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "device sign-in: the session cannot be kept");
            return error(
                503,
                "temporarily_unavailable",
                "sessions cannot be stored right now",
            )
            .into();
        }
    };
    // The cookie header a program sends from now on: each cookie's name=value (a cookie
    // cleared on the way, of an earlier session, has an empty value and is left out).
    let header: Vec<&str> = cookies
        .iter()
        .filter_map(|c| c.as_str().split(';').next())
        .filter(|pair| !pair.ends_with('='))
        .collect();
    tracing::info!(
        user = session.identity.user(),
        provider = provider.id(),
        "device sign-in"
    );
    crate::metrics::get().login(provider.id(), "ok");
    Answer {
        reply: Reply::json(
            200,
            &json!({"cookie": header.join("; "), "expires_at": session.expires_at}),
        )
        .header("Cache-Control", "no-store")
        .cookies(cookies),
        user: session.identity.user.clone(),
        reason: None,
    }
}
