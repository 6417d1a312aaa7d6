//! Envoy's HTTP ext_authz service: Envoy asks `/oauth2/auth` followed by the original
//! request's target (`http_service` with `path_prefix: /oauth2/auth`), with the original
//! method and headers. Envoy lets a request through on 200 only (a 202, `/oauth2/auth`'s
//! answer for nginx, is a denial to Envoy), so this form answers 200. The decision and the
//! answer are those of the gRPC service ([`crate::ext_authz`]): on 200 the headers to set
//! upstream (copied by `allowed_upstream_headers`) and `x-envoy-auth-headers-to-remove` for
//! the client copies to drop; otherwise the proxy's own answer for the client.
//!
//! Only a trusted proxy's request is answered: the caller is a front proxy acting on the
//! answer, and an allowed answer carries the identity (and the access token, when passed).

use pingora::http::RequestHeader;

use super::{Answer, Facts};
use crate::app::App;
use crate::classify::ENVOY_AUTH_PREFIX;
use crate::ext_authz::{self, Checked, Original};
use crate::respond::{self, Reply};

/// The header Envoy reads the names to remove from the original request in.
const HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";

pub(super) async fn http_ext_authz(app: &App, req: &RequestHeader, facts: &Facts<'_>) -> Answer {
    if !facts.trusted_proxy {
        return Answer {
            reply: respond::forbidden(false),
            user: None,
            reason: Some(
                "Envoy's HTTP ext_authz is answered to server.trusted_proxies only".to_string(),
            ),
        };
    }
    let raw = req.uri.path_and_query().map_or("", |pq| pq.as_str());
    // The prefix without its slash: the original target starts with one.
    let target = raw.get(ENVOY_AUTH_PREFIX.len() - 1..).unwrap_or("");
    let original =
        match Original::of_prefixed(req, target, facts.scheme, facts.client_cert.cloned(), None) {
            Ok(o) => o,
            Err(e) => {
                return Answer {
                    reply: respond::bad_request(&e.to_string()),
                    user: None,
                    reason: Some(e.to_string()),
                }
            }
        };
    let decision = ext_authz::decide(app, &original).await;
    let reply = match decision.checked {
        Checked::Allowed {
            changes,
            set_cookies,
        } => {
            let mut reply = Reply::text(200, "");
            for (name, value) in changes.set {
                if let Ok(v) = value.to_str() {
                    reply = reply.header_named(name, v.to_string());
                }
            }
            if !changes.remove.is_empty() {
                let names: Vec<&str> = changes.remove.iter().map(|n| n.as_str()).collect();
                reply = reply.header(HEADERS_TO_REMOVE, names.join(","));
            }
            reply.cookies(set_cookies)
        }
        Checked::Refused(reply) => reply,
    };
    Answer {
        reply,
        user: decision.user,
        reason: decision.reason,
    }
}
