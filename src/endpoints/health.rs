//! `/ping` (the process is alive) and `/ready` (it can log people in).

use crate::app::App;
use crate::oidc::Readiness;
use crate::respond::Reply;

pub fn ping() -> Reply {
    Reply::text(200, "OK")
}

pub fn ready(app: &App) -> Reply {
    match app.provider.readiness() {
        Readiness::Ready => Reply::text(200, "OK"),
        Readiness::NotReady(reason) => Reply::text(503, &format!("not ready: {reason}\n")),
    }
}
