//! What a decision becomes: the one mapping from a [`Verdict`] to the access log's
//! [`Outcome`] and to what the asker is told. The inline proxy and `/oauth2/auth` both go
//! through [`settle`]; they differ only in who is asking ([`Asker`]).

use crate::access::{Caller, Verdict};
use crate::dpop::ProofError;
use crate::forward::IdentityNames;
use crate::outcome::Outcome;
use crate::respond::{self, GrpcStatus, Reply};

/// Who the decision is for.
pub(crate) enum Asker<'a> {
    /// A client of the inline proxy: an allowed request goes on to the upstream, a person's
    /// browser without a session is sent to log in and comes back to `return_to`.
    Client {
        browser_navigation: bool,
        return_to: &'a str,
        /// A gRPC call: refusals are gRPC statuses, never a page or a redirect.
        grpc: bool,
        /// `GET /robots.txt`: a crawler refused here is told to stay away (oauth2-proxy's
        /// answer), rather than sent to log in; a public or signed-in one reaches the
        /// application's own.
        robots_txt: bool,
    },
    /// A front proxy's auth subrequest (nginx `auth_request`, Traefik `forwardAuth`): the
    /// answer is 202 with the identity, 401 or 403; never a redirect, and never a 400 (nginx
    /// takes any other status for an error of its own).
    FrontProxy {
        pass_access_token: bool,
        /// The identity headers of the answer (`headers.forward_auth`).
        names: &'a IdentityNames,
    },
}

impl<'a> Asker<'a> {
    /// The client of `req`, asking through the inline proxy or through a front proxy that
    /// passes the whole request on and our answer back (Envoy's ext_authz), for `verdict`.
    pub(crate) fn client(
        app: &crate::app::App,
        req: &'a pingora::http::RequestHeader,
        verdict: &Verdict,
    ) -> Asker<'a> {
        // Only a refusal depends on whether a person's browser asks; an allowed request's
        // headers are not searched for it (the most common case, on every request).
        let refused = !matches!(verdict, Verdict::Public | Verdict::Allow(_));
        Asker::Client {
            // Without browser sign-in there is no login to send a browser to: a 401 as for
            // any program.
            browser_navigation: refused
                && app.login.is_some()
                && crate::classify::is_browser_navigation(&req.method, &req.headers),
            return_to: req.uri.path_and_query().map_or("/", |pq| pq.as_str()),
            grpc: respond::is_grpc(req),
            robots_txt: req.uri.path() == "/robots.txt"
                && matches!(req.method, http::Method::GET | http::Method::HEAD),
        }
    }
}

/// What happens next.
pub(crate) enum Then {
    /// On to the upstream, as this caller (none on a public route).
    Forward(Option<Caller>),
    /// Answered here.
    Answer(Reply),
}

/// A verdict settled for its asker.
pub(crate) struct Settled {
    pub outcome: Outcome,
    /// Who the request was from, for the access log.
    pub user: Option<String>,
    /// Why it was refused, exactly, for the access log (never a token or a signature).
    pub reason: Option<String>,
    pub then: Then,
}

/// What a refusal's `WWW-Authenticate` challenges say besides the refusal itself.
#[derive(Default)]
pub(crate) struct Challenges {
    /// DPoP's, where `[bearer.dpop]` accepts proofs.
    pub dpop: Option<DpopChallenge>,
    /// Where the protected resource's metadata is (RFC 9728 `resource_metadata`), so that a
    /// program can find where to get a token from the refusal alone.
    pub resource_metadata: Option<String>,
}

/// What a 401 says about DPoP where `[bearer.dpop]` accepts it: the algorithms, and the
/// nonce of the moment when proofs must carry one.
pub(crate) struct DpopChallenge {
    pub algs: String,
    pub nonce: Option<String>,
}

impl DpopChallenge {
    /// Adds the DPoP challenge to `reply` (a 401), beside the Bearer one (RFC 9449 §7.1),
    /// naming the proof's error when a proof failed.
    fn add_to(&self, reply: &mut Reply, failed: Option<&ProofError>) {
        let challenge = match failed {
            Some(e) => format!(
                "DPoP error=\"{}\", error_description=\"{e}\", algs=\"{}\"",
                proof_error_code(e),
                self.algs
            ),
            None => format!("DPoP algs=\"{}\"", self.algs),
        };
        reply.add_header("WWW-Authenticate", challenge);
        if let Some(nonce) = &self.nonce {
            reply.add_header("DPoP-Nonce", nonce.clone());
        }
    }
}

/// The `error` of a failed proof (RFC 9449 §7.1, §8).
fn proof_error_code(e: &ProofError) -> &'static str {
    match e {
        ProofError::UseNonce => "use_dpop_nonce",
        _ => "invalid_dpop_proof",
    }
}

pub(crate) fn settle(verdict: Verdict, asker: &Asker<'_>, challenges: &Challenges) -> Settled {
    let failed_proof = match &verdict {
        Verdict::InvalidProof(e) => Some(*e),
        _ => None,
    };
    let reason = verdict.reason();
    let mut settled = settle_plain(verdict, asker);
    settled.reason = reason;
    if let (
        Asker::Client {
            robots_txt: true, ..
        },
        Then::Answer(reply),
    ) = (asker, &settled.then)
    {
        if matches!(reply.status(), 302 | 401 | 403) {
            settled.outcome = Outcome::Endpoint;
            settled.then = Then::Answer(respond::robots_txt());
            return settled;
        }
    }
    if let (Asker::Client { grpc: true, .. }, Then::Answer(reply)) = (asker, &mut settled.then) {
        let status = reply.status();
        let message = match status {
            401 => "authentication required",
            403 => "permission denied",
            _ => "the request was refused",
        };
        *reply = Reply::grpc(GrpcStatus::for_http(status), message);
        return settled;
    }
    if let Then::Answer(reply) = &mut settled.then {
        if let (Some(dpop), 401) = (&challenges.dpop, reply.status()) {
            dpop.add_to(reply, failed_proof.as_ref());
        }
        if let Some(url) = &challenges.resource_metadata {
            reply.add_challenge_param(&format!("resource_metadata=\"{url}\""));
        }
    }
    settled
}

fn settle_plain(verdict: Verdict, asker: &Asker<'_>) -> Settled {
    let answer = |outcome, reply| Settled {
        outcome,
        user: None,
        reason: None,
        then: Then::Answer(reply),
    };
    let front = matches!(asker, Asker::FrontProxy { .. });
    match verdict {
        Verdict::Public => match asker {
            Asker::Client { .. } => Settled {
                outcome: Outcome::Public,
                user: None,
                reason: None,
                then: Then::Forward(None),
            },
            Asker::FrontProxy { .. } => answer(Outcome::Public, Reply::text(202, "")),
        },
        Verdict::Allow(caller) => {
            let outcome = match caller {
                Caller::Session(_) => Outcome::Cookie,
                Caller::Bearer(_) => Outcome::Bearer,
                Caller::Certificate(_) => Outcome::ClientCert,
            };
            let user = caller.identity().user.clone();
            let then = match asker {
                Asker::Client { .. } => Then::Forward(Some(caller)),
                Asker::FrontProxy {
                    pass_access_token,
                    names,
                } => Then::Answer(allowed(&caller, *pass_access_token, names)),
            };
            Settled {
                outcome,
                user,
                reason: None,
                then,
            }
        }
        Verdict::BadRequest(_) if front => answer(Outcome::BadRequest, respond::forbidden(false)),
        Verdict::BadRequest(reason) => answer(
            Outcome::BadRequest,
            respond::bad_request(&reason.to_string()),
        ),
        Verdict::Unauthenticated => match asker {
            Asker::Client {
                browser_navigation: true,
                return_to,
                ..
            } => answer(
                Outcome::LoginRedirect,
                Reply::redirect(&login_redirect(return_to)),
            ),
            Asker::Client { .. } => answer(
                Outcome::Unauthenticated,
                respond::unauthorized_api("authentication required"),
            ),
            Asker::FrontProxy { .. } => answer(
                Outcome::Unauthenticated,
                respond::unauthorized_api("no valid session"),
            ),
        },
        Verdict::InvalidToken(refusal) => answer(
            Outcome::InvalidToken,
            respond::invalid_token(&refusal.error),
        ),
        Verdict::Forbidden { caller, .. } => {
            let browser = matches!(
                asker,
                Asker::Client {
                    browser_navigation: true,
                    ..
                }
            );
            Settled {
                outcome: Outcome::Forbidden,
                user: caller.identity().user.clone(),
                reason: None,
                then: Then::Answer(respond::forbidden(browser)),
            }
        }
        Verdict::InsufficientScope(needed) => answer(
            Outcome::InsufficientScope,
            respond::insufficient_scope(&needed),
        ),
        Verdict::CertificateRefused(refusal) => {
            answer(Outcome::Forbidden, respond::certificate_refused(refusal))
        }
        Verdict::StoreUnavailable(_) => {
            let browser = matches!(
                asker,
                Asker::Client {
                    browser_navigation: true,
                    ..
                }
            );
            answer(
                Outcome::Unavailable,
                respond::session_store_unavailable(browser),
            )
        }
        Verdict::InvalidProof(e) => answer(
            Outcome::InvalidToken,
            respond::invalid_proof(proof_error_code(&e), &e),
        ),
    }
}

/// Where a browser without a session goes: the login, coming back to `return_to` (the
/// request's own path and query).
fn login_redirect(return_to: &str) -> String {
    let mut location = String::from("/oauth2/start?rd=");
    location.extend(url::form_urlencoded::byte_serialize(return_to.as_bytes()));
    location
}

/// 202 for a front proxy, with the identity in oauth2-proxy's `X-Auth-Request-*` headers
/// (what nginx and Traefik recipes copy onward) and the session's access token when allowed.
fn allowed(caller: &Caller, pass_access_token: bool, names: &IdentityNames) -> Reply {
    let access_token = match caller {
        Caller::Session(s) if pass_access_token => s.access_token.as_deref(),
        _ => None,
    };
    names
        .values(caller.identity(), access_token)
        .fold(Reply::text(202, ""), |reply, (name, value)| {
            reply.header_named(name.clone(), value.into_owned())
        })
}
