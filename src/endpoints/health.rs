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
    let (status, mut text) = match &readiness {
        Readiness::Ready => (200, "OK".to_string()),
        // Still 200: taking every replica out of service would also cut off everyone who is
        // signed in or holds a verified bearer token, who are still served (and, with several
        // providers, everyone who signs in with another one).
        Readiness::Degraded(_) => (
            200,
            format!("degraded: identity provider unreachable ({readiness}); signed-in users and verified bearer tokens are served, new sign-ins wait\n"),
        ),
        Readiness::NotReady(_) => (503, format!("not ready: {readiness}\n")),
    };
    // With several providers and one of them not ready, each one's state on a line of its
    // own ("OK" alone says they all are).
    let several = app.login.as_ref().filter(|l| l.providers.len() > 1);
    if let Some(login) = several.filter(|_| readiness != Readiness::Ready) {
        for p in login.providers.iter() {
            let state = match p.readiness() {
                Readiness::Ready => "ready".to_string(),
                r @ Readiness::Degraded(_) => format!("degraded ({r})"),
                r @ Readiness::NotReady(_) => format!("not ready ({r})"),
            };
            text.push_str(&format!("provider {}: {state}\n", p.id()));
        }
    }
    Reply::text(status, &text)
}
