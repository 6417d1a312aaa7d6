//! `/ping` (the process is alive) and `/ready` (it can log people in).

use crate::app::App;
use crate::oidc::Readiness;
use crate::respond::Reply;

pub(super) fn ping() -> Reply {
    Reply::text(200, "OK")
}

pub(super) fn ready(app: &App) -> Reply {
    // Still 200 while the session store is down: bearer tokens and client certificates are
    // served, and taking every replica out would not bring Redis back.
    if let Some(down) = app.login.as_ref().and_then(|l| l.sessions.health()) {
        return Reply::text(
            200,
            &format!("degraded: session store unreachable ({down}); bearer tokens are served, session cookies get 503 until it is back\n"),
        );
    }
    let readiness = app.readiness();
    match readiness {
        Readiness::Ready => Reply::text(200, "OK"),
        // Still 200: taking every replica out of service would also cut off everyone who is
        // signed in or holds a verified bearer token, who are still served.
        Readiness::Degraded(_) => Reply::text(
            200,
            &format!("degraded: identity provider unreachable ({readiness}); signed-in users and verified bearer tokens are served, new sign-ins wait\n"),
        ),
        Readiness::NotReady(_) => Reply::text(503, &format!("not ready: {readiness}\n")),
    }
}
