//! Envoy's external authorization over gRPC (`envoy.service.auth.v3.Authorization/Check`),
//! on `server.ext_authz_listen`: for Envoy, Istio (a `CUSTOM` `AuthorizationPolicy`
//! provider), Contour and Envoy Gateway (`SecurityPolicy` `extAuth`).
//!
//! The decision is the inline proxy's, not a second one: the request Envoy describes becomes
//! the `RequestHeader` the proxy would have read ([`request::Original`]), goes through
//! `App::decide` and `answer::settle` as a client of the proxy, and the answer becomes what
//! Envoy does ([`response`]): an allowed request is rewritten as the proxy would forward it
//! (identity headers set, client copies and portcullis' cookies removed), a refused one gets
//! the proxy's own answer (a browser's login redirect, a program's 401 with its challenge).
//! A check request that cannot be read one way is refused with 400, never an RPC error:
//! Envoy's `failure_mode_allow` would let such a request through.
//!
//! The listener trusts whoever reaches it to describe requests truthfully, as Envoy does:
//! bind it where only Envoy can reach it (loopback beside a sidecar, or a network policy).

mod request;
mod response;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse,
};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::access::{Caller, Target};
use crate::access_log::{self, Entry};
use crate::answer::{self, Asker, Then};
use crate::app::{App, Live};
use crate::forward::{self, Peer};
use crate::outcome::Outcome;
use crate::respond::Reply;
use crate::session::chunks::SetCookie;
pub(crate) use request::Original;

/// The gRPC service, deciding with the live configuration.
struct Checks {
    live: Arc<Live>,
}

#[tonic::async_trait]
impl Authorization for Checks {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let app = self.live.app();
        Ok(tonic::Response::new(
            check(&app, &request.into_inner()).await,
        ))
    }
}

/// The answer to one gRPC check, with its access-log line.
pub(crate) async fn check(app: &App, check: &CheckRequest) -> CheckResponse {
    let started = Instant::now();
    match Original::of(check) {
        Ok(original) => {
            let decision = decide(app, &original).await;
            access_log::record(&Entry {
                method: original.req.method.as_str(),
                path: std::str::from_utf8(original.path()).unwrap_or("-"),
                status: Some(decision.status),
                outcome: decision.outcome,
                user: decision.user.as_deref(),
                client: original.client,
                duration: Some(started.elapsed()),
                error: None,
                reason: decision.reason.as_deref(),
            });
            response::of(decision.checked)
        }
        Err(e) => {
            let reason = e.to_string();
            log_malformed(&reason, started);
            response::malformed(&reason)
        }
    }
}

/// What the decision on an original request comes to, for either form of ext_authz.
pub(crate) enum Checked {
    /// On to the upstream with these changes to the request, and these cookies set on the
    /// response to the client.
    Allowed {
        changes: Changes,
        set_cookies: Vec<SetCookie>,
    },
    /// The client gets this answer instead.
    Refused(Reply),
}

/// How the upstream request differs from the client's.
#[derive(Default)]
pub(crate) struct Changes {
    /// Header values to set: the first of a name replaces what the client sent, any further
    /// one is added beside it.
    pub set: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Names to remove (client copies of identity headers, a `Cookie` of ours alone).
    pub remove: Vec<http::HeaderName>,
}

/// A decision on an original request, with what its access-log line says.
pub(crate) struct Decision {
    pub checked: Checked,
    /// The HTTP status the client gets (200 when allowed).
    pub status: u16,
    pub outcome: Outcome,
    pub user: Option<String>,
    pub reason: Option<String>,
}

/// Decides on `original` as the inline proxy would.
pub(crate) async fn decide(app: &App, original: &Original) -> Decision {
    let req = &original.req;
    let host = match crate::host::of_request(req, false) {
        Ok(h) => h,
        Err(e) => {
            return Decision {
                checked: Checked::Refused(crate::respond::bad_request(&e.to_string())),
                status: 400,
                outcome: Outcome::BadRequest,
                user: None,
                reason: Some(e.to_string()),
            }
        }
    };
    let target = Target {
        method: Some(&req.method),
        host,
        path: Some(original.path()),
        client_cert: original.client_cert.as_ref(),
        scheme: original.scheme,
    };
    let decided = app.decide(req, &target).await;
    let mut asker = Asker::client(app, req, &decided.verdict);
    // Envoy writes a refused gRPC call's status itself, from the HTTP status it is given.
    if let Asker::Client { grpc, .. } = &mut asker {
        *grpc = false;
    }
    let challenges = app.challenges(&decided.verdict, original.scheme, host);
    let settled = answer::settle(decided.verdict, &asker, &challenges);
    let (status, checked) = match settled.then {
        Then::Forward(caller) => (
            200,
            Checked::Allowed {
                changes: changes(app, original, caller.as_ref()),
                set_cookies: decided.set_cookies,
            },
        ),
        Then::Answer(reply) => {
            let reply = reply.cookies(decided.set_cookies);
            (reply.status(), Checked::Refused(reply))
        }
    };
    Decision {
        checked,
        status,
        outcome: settled.outcome,
        user: settled.user,
        reason: settled.reason,
    }
}

fn log_malformed(reason: &str, started: Instant) {
    access_log::record(&Entry {
        method: "-",
        path: "-",
        status: Some(400),
        outcome: Outcome::BadRequest,
        user: None,
        client: None,
        duration: Some(started.elapsed()),
        error: None,
        reason: Some(reason),
    });
}

/// The upstream request is rewritten exactly as the inline proxy would rewrite it
/// ([`forward::for_upstream`]); the changes are the difference. Forwarding headers
/// (`X-Forwarded-For`, …) and `Host` are the front proxy's business.
fn changes(app: &App, original: &Original, caller: Option<&Caller>) -> Changes {
    let before = &original.req;
    let mut after = before.clone();
    let peer = Peer {
        ip: original.client,
        trusted: true,
        scheme: original.scheme,
    };
    forward::for_upstream(
        &mut after,
        app,
        caller,
        original.client_cert.as_ref(),
        &peer,
    );
    let skip = |name: &http::HeaderName| {
        name == http::header::HOST || forward::is_forwarding_header(name.as_str())
    };
    let mut changes = Changes::default();
    for name in after.headers.keys().filter(|n| !skip(n)) {
        let new: Vec<_> = after.headers.get_all(name).iter().collect();
        if new != before.headers.get_all(name).iter().collect::<Vec<_>>() {
            changes
                .set
                .extend(new.into_iter().map(|v| (name.clone(), v.clone())));
        }
    }
    changes.remove = before
        .headers
        .keys()
        .filter(|n| !skip(n) && !after.headers.contains_key(*n))
        .cloned()
        .collect();
    changes
}

/// The ext_authz listener: a gRPC server on its own port, stopped with the server.
pub(crate) struct ExtAuthz {
    addr: SocketAddr,
    live: Arc<Live>,
}

impl ExtAuthz {
    pub(crate) fn new(addr: SocketAddr, live: Arc<Live>) -> ExtAuthz {
        ExtAuthz { addr, live }
    }
}

#[async_trait]
impl BackgroundService for ExtAuthz {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let service = AuthorizationServer::new(Checks {
            live: self.live.clone(),
        });
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        let served = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_shutdown(self.addr, stop)
            .await;
        if let Err(e) = served {
            tracing::error!(address = %self.addr, error = %e, "the ext_authz listener stopped");
        }
    }
}
