//! The decision for one request to the application, in the order the brief of the product
//! gives it: normalise the path (ambiguous → refused before any rule is chosen) → pick the
//! route → authenticate (bearer token or session cookie) → authorize (global rules, then the
//! route's). Used by the proxy and, for the original request, by `/oauth2/auth`.

use crate::session::chunks::SetCookie;
use std::sync::Arc;

use http::Method;
use pingora::http::RequestHeader;

use crate::answer::{Challenges, DpopChallenge};
use crate::app::App;
use crate::bearer::{BearerError, Binding, Principal, Refusal, TokenType};
use crate::client_cert::{CertRefusal, CertRequirements, ClientCert};
use crate::dpop::{Expected, ProofError};
use crate::policy::{self, Access, Decision, Subject, TokenKind};
use crate::session::{Identity, SessionData, StoreUnavailable};
use subtle::ConstantTimeEq;

/// Who proved themselves, and how.
#[derive(Clone)]
pub enum Caller {
    Session(Arc<SessionData>),
    Bearer(Arc<Principal>),
    /// A verified client certificate alone, on a route that asks for one: the user is its
    /// URI name, else its DNS name, else its subject.
    Certificate(Arc<Identity>),
}

impl Caller {
    pub fn identity(&self) -> &Identity {
        match self {
            Caller::Session(s) => &s.identity,
            Caller::Bearer(p) => &p.identity,
            Caller::Certificate(id) => id,
        }
    }

    /// What the rules see of the caller.
    pub(crate) fn subject(&self) -> Subject<'_> {
        let id = self.identity();
        Subject {
            email: id.email.as_deref(),
            groups: &id.groups,
            scopes: self.scopes(),
        }
    }

    /// Bearer tokens carry scopes; browser sessions and certificates do not.
    fn scopes(&self) -> Option<&[String]> {
        match self {
            Caller::Session(_) | Caller::Certificate(_) => None,
            Caller::Bearer(p) => Some(&p.scopes),
        }
    }

    fn of_certificate(cert: &ClientCert) -> Caller {
        Caller::Certificate(Arc::new(Identity {
            user: Some(cert.user()),
            email: None,
            groups: Vec::new(),
            preferred_username: None,
            provider: None,
            issuer: None,
        }))
    }
}

pub enum Verdict {
    /// A public route: forwarded without any identity.
    Public,
    Allow(Caller),
    /// The path (or the method, or the host) could be read two ways: refused before any rule
    /// was chosen.
    BadRequest(Ambiguity),
    /// No credentials, or a session that is gone.
    Unauthenticated,
    InvalidToken(Refusal),
    /// Authenticated, but the rules say no: whose rules, `by`.
    Forbidden {
        caller: Caller,
        by: Rules,
    },
    InsufficientScope(Vec<String>),
    /// The route's client-certificate rules are not met (403).
    CertificateRefused(CertRefusal),
    /// A DPoP-bound token with a proof that does not hold (401).
    InvalidProof(ProofError),
    /// A session cookie that could not be checked: the session store is unreachable (503).
    StoreUnavailable(StoreUnavailable),
}

impl Verdict {
    /// Why the request is refused, exactly, for the operator's access log: `None` when it
    /// goes through.
    pub fn reason(&self) -> Option<String> {
        Some(match self {
            Verdict::Public | Verdict::Allow(_) => return None,
            Verdict::BadRequest(a) => a.to_string(),
            Verdict::Unauthenticated => {
                "no bearer token, no usable session and no client certificate".to_string()
            }
            Verdict::InvalidToken(refusal) => refusal.reason.clone(),
            Verdict::Forbidden { by, .. } => by.refusal().to_string(),
            Verdict::InsufficientScope(needed) => format!("missing scope(s) {needed:?}"),
            Verdict::CertificateRefused(refusal) => refusal.to_string(),
            Verdict::InvalidProof(e) => format!("DPoP proof: {e}"),
            Verdict::StoreUnavailable(e) => e.to_string(),
        })
    }
}

/// Whose rules refused an authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    /// `[authorization]`, which applies to every request.
    Authorization,
    /// The route's `groups`, `emails` and `email_domains`.
    Route,
    /// A front proxy's own restriction on `/oauth2/auth` (oauth2-proxy's `allowed_groups`,
    /// `allowed_emails`, `allowed_email_domains` query parameters).
    FrontProxy,
}

impl Rules {
    /// The refusal, for the access log.
    pub fn refusal(self) -> &'static str {
        match self {
            Rules::Authorization => "[authorization] does not admit the caller",
            Rules::Route => "the route's groups or email rules do not admit the caller",
            Rules::FrontProxy => {
                "the front proxy's allowed_groups, allowed_emails or allowed_email_domains do \
                 not admit the caller"
            }
        }
    }
}

/// Why a request could be read two ways.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Ambiguity {
    /// Methods are case-sensitive tokens: `post` is not `POST` to a route matcher, but some
    /// frameworks upper-case it again.
    #[error("method names are upper case")]
    LowercaseMethod,
    #[error("ambiguous path refused: {0}")]
    Path(#[from] policy::PathError),
    #[error("{0}")]
    Host(#[from] policy::BadHost),
}

/// The verdict, with the cookies authentication wants set either way.
pub struct Decided {
    pub verdict: Verdict,
    pub set_cookies: Vec<SetCookie>,
}

/// The request being decided on. For `/oauth2/auth` this is the original request a front
/// proxy reports; `path` is `None` when it reports none (the default rule applies).
pub struct Target<'a> {
    /// `None` when a front proxy did not report it: then only routes without methods apply.
    pub method: Option<&'a Method>,
    pub host: Option<&'a str>,
    pub path: Option<&'a [u8]>,
    /// The verified client certificate, from our TLS listener or a trusted proxy's header.
    pub client_cert: Option<&'a ClientCert>,
    /// `http` or `https`: how the client reached us (or the trusted front proxy).
    pub scheme: &'a str,
}

impl<'a> Target<'a> {
    /// The request itself, for the host [`crate::host::of_request`] found.
    pub fn of(
        req: &'a RequestHeader,
        host: Option<&'a str>,
        client_cert: Option<&'a ClientCert>,
        scheme: &'a str,
    ) -> Target<'a> {
        let raw = req.raw_path();
        let path = raw.split(|b| *b == b'?').next().unwrap_or(raw);
        Target {
            method: Some(&req.method),
            host,
            path: Some(path),
            client_cert,
            scheme,
        }
    }

    /// The URL the client used, without query: what a DPoP proof's `htu` must name.
    fn url(&self) -> Option<String> {
        let path = std::str::from_utf8(self.path?).ok()?;
        Some(format!("{}://{}{path}", self.scheme, self.host?))
    }
}

/// How an access token is presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    /// `Authorization: Bearer` (RFC 6750).
    Bearer,
    /// `Authorization: DPoP` with a `DPoP` proof (RFC 9449).
    Dpop,
}

/// The token of `Authorization: Bearer <token>` or `DPoP <token>`: `None` when the request
/// carries no such credentials, `Err` when it carries something unusable (several headers,
/// an empty token).
fn access_token(req: &RequestHeader) -> Option<Result<(Scheme, &str), BearerError>> {
    let mut values = req.headers.get_all(http::header::AUTHORIZATION).iter();
    let first = values.next()?;
    let value = first.to_str().ok();
    let token = value.and_then(|v| {
        let (scheme, rest) = v.split_once(' ')?;
        if scheme.eq_ignore_ascii_case("bearer") {
            Some((Scheme::Bearer, rest.trim()))
        } else if scheme.eq_ignore_ascii_case("dpop") {
            Some((Scheme::Dpop, rest.trim()))
        } else {
            None
        }
    });
    match (token, values.next()) {
        (None, None) => None,
        (_, Some(_)) => Some(Err(BearerError::Malformed)),
        (Some((_, "")), None) => Some(Err(BearerError::Malformed)),
        (Some(t), None) => Some(Ok(t)),
    }
}

impl App {
    /// The decision for `target`, timed for `portcullis_decision_seconds`.
    pub async fn decide(&self, req: &RequestHeader, target: &Target<'_>) -> Decided {
        let started = std::time::Instant::now();
        let decided = self.decide_untimed(req, target).await;
        crate::metrics::get().decision(started.elapsed());
        decided
    }

    async fn decide_untimed(&self, req: &RequestHeader, target: &Target<'_>) -> Decided {
        // Refuse rather than guess which method was meant.
        if target
            .method
            .is_some_and(|m| m.as_str().bytes().any(|b| b.is_ascii_lowercase()))
        {
            return decided(Verdict::BadRequest(Ambiguity::LowercaseMethod));
        }
        let no_cert_rules = &NO_CERT_RULES;
        let mut route = None;
        if let Some(raw) = target.path {
            let path = match policy::normalise(raw) {
                Ok(p) => p,
                Err(e) => return decided(Verdict::BadRequest(e.into())),
            };
            route = match self.config.routes.lookup(target.method, target.host, &path) {
                Ok(found) => found,
                Err(e) => return decided(Verdict::BadRequest(e.into())),
            };
        }
        let (access, token_kind, cert_rules, bound_only) = match route {
            Some(route) => (
                route.access(),
                route.token_kind(),
                route.client_cert(),
                route.require_bound_tokens(),
            ),
            None => (&DEFAULT_ACCESS, TokenKind::Any, no_cert_rules, false),
        };
        // A route that chooses a provider takes its sessions only: another provider's
        // session is no session here (a browser is sent to sign in with the route's).
        let route_provider = route.and_then(|r| r.provider());
        let requirements = match access {
            Access::Public => return decided(Verdict::Public),
            Access::Authenticated(r) => r,
        };
        // A route's certificate rules come before any other credential: a token or a session
        // does not stand in for the certificate the route asks for.
        if let Err(refusal) = cert_rules.check(target.client_cert) {
            return decided(Verdict::CertificateRefused(refusal));
        }

        let (caller, set_cookies) = match access_token(req) {
            Some(Err(e)) => return decided(Verdict::InvalidToken(e.into())),
            Some(Ok((scheme, token))) => match self.bearer.verify(token).await {
                Ok(p) if !kind_fits(token_kind, p.token_type) => {
                    return decided(Verdict::InvalidToken(Refusal::new(
                        BearerError::WrongType,
                        format!(
                            "a {:?} token where the route takes {token_kind:?}",
                            p.token_type
                        ),
                    )))
                }
                Ok(p) => {
                    let held = match scheme {
                        Scheme::Bearer => {
                            presented_by_its_holder(&p, target.client_cert, bound_only)
                                .map_err(Verdict::InvalidToken)
                        }
                        Scheme::Dpop => self.proof_holds(&p, req, target, token),
                    };
                    match held {
                        Ok(()) => (Caller::Bearer(p), Vec::new()),
                        Err(verdict) => return decided(verdict),
                    }
                }
                Err(e) => return decided(Verdict::InvalidToken(e)),
            },
            None => {
                let auth = self.authenticate(req).await;
                let session = auth.session.filter(|s| {
                    route_provider.is_none_or(|id| self.session_provider(s) == Some(id))
                });
                match (session, target.client_cert, auth.unavailable) {
                    (Some(s), _, _) => (Caller::Session(s), auth.set_cookies),
                    // The certificate alone, where the route asks for one (checked above).
                    (None, Some(cert), _) if !cert_rules.is_empty() => {
                        (Caller::of_certificate(cert), auth.set_cookies)
                    }
                    // A cookie that could not be checked: neither signed in nor out.
                    (None, _, Some(down)) => return decided(Verdict::StoreUnavailable(down)),
                    (None, _, None) => {
                        return Decided {
                            verdict: Verdict::Unauthenticated,
                            set_cookies: auth.set_cookies,
                        }
                    }
                }
            }
        };

        let subject = caller.subject();
        let verdict = match self.config.authorization.evaluate(&subject) {
            Decision::Allow => match requirements.evaluate(&subject) {
                Decision::Allow => Verdict::Allow(caller),
                Decision::Deny => Verdict::Forbidden {
                    caller,
                    by: Rules::Route,
                },
                Decision::InsufficientScope { needed } => Verdict::InsufficientScope(needed),
            },
            Decision::Deny | Decision::InsufficientScope { .. } => Verdict::Forbidden {
                caller,
                by: Rules::Authorization,
            },
        };
        Decided {
            verdict,
            set_cookies,
        }
    }

    /// What a refusal's challenges say for a request to `host` over `scheme`: DPoP's where
    /// DPoP is accepted, and where the resource's metadata is (RFC 9728). Nothing for a
    /// request that goes through: no nonce is computed for it.
    pub(crate) fn challenges(
        &self,
        verdict: &Verdict,
        scheme: &str,
        host: Option<&str>,
    ) -> Challenges {
        if matches!(verdict, Verdict::Allow(_) | Verdict::Public) {
            return Challenges::default();
        }
        Challenges {
            dpop: self.dpop.as_ref().map(|dpop| DpopChallenge {
                algs: dpop.algs().to_string(),
                nonce: dpop.nonce(self.clock.now()),
            }),
            resource_metadata: self
                .resource_metadata
                .as_ref()
                .and_then(|m| m.url(scheme, host)),
        }
    }

    /// Whether a token sent with `Authorization: DPoP` is DPoP-bound and comes with a proof
    /// for this request, signed by the key it is bound to.
    fn proof_holds(
        &self,
        p: &Principal,
        req: &RequestHeader,
        target: &Target<'_>,
        token: &str,
    ) -> Result<(), Verdict> {
        let Some(dpop) = &self.dpop else {
            return Err(Verdict::InvalidToken(BearerError::DpopNotAccepted.into()));
        };
        let Some(Binding::Key(jkt)) = &p.binding else {
            return Err(Verdict::InvalidToken(BearerError::NotDpopBound.into()));
        };
        let url = target
            .url()
            .ok_or(Verdict::InvalidProof(ProofError::Request))?;
        let method = target.method.map_or("", |m| m.as_str());
        let proofs: Vec<&[u8]> = req
            .headers
            .get_all("dpop")
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let expected = Expected {
            method,
            url: &url,
            access_token: token,
            jkt,
        };
        dpop.check(&proofs, &expected, self.clock.now())
            .map_err(Verdict::InvalidProof)
    }
}

/// Whether a bearer token arrives from the sender it is bound to: a certificate-bound token
/// (RFC 8705) on a connection with that certificate; a DPoP-bound token never as `Bearer`
/// (RFC 9449 §7.1). An unbound token passes unless `bound_only` (the route's
/// `require_bound_tokens`; an issuer's is checked when the token is verified).
fn presented_by_its_holder(
    p: &Principal,
    cert: Option<&ClientCert>,
    bound_only: bool,
) -> Result<(), Refusal> {
    use base64::Engine;
    let b64 = |hash: &[u8; 32]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash);
    match &p.binding {
        None if bound_only => Err(Refusal::new(
            BearerError::Unbound,
            "the route accepts only sender-constrained tokens, and this one has no cnf",
        )),
        None => Ok(()),
        Some(Binding::Certificate(hash)) => match cert {
            Some(c) if bool::from(c.hash.ct_eq(hash)) => Ok(()),
            Some(c) => Err(Refusal::new(
                BearerError::CertificateMismatch,
                format!(
                    "cnf x5t#S256 {} is not the client certificate's {}",
                    b64(hash),
                    b64(&c.hash)
                ),
            )),
            None => Err(Refusal::new(
                BearerError::CertificateMismatch,
                format!("cnf x5t#S256 {}, and no client certificate", b64(hash)),
            )),
        },
        Some(Binding::Key(_)) => Err(Refusal::new(
            BearerError::DpopBound,
            "a DPoP-bound token (cnf jkt) sent as Bearer",
        )),
    }
}

/// Routes without certificate rules (and unmatched paths).
static NO_CERT_RULES: CertRequirements = CertRequirements {
    required: false,
    subjects: Vec::new(),
    sans: Vec::new(),
};

/// Unmatched paths: authenticated, nothing more (closed by default).
static DEFAULT_ACCESS: Access = Access::Authenticated(policy::Requirements {
    scopes: Vec::new(),
    groups: Vec::new(),
    emails: Vec::new(),
    email_domains: Vec::new(),
});

fn decided(verdict: Verdict) -> Decided {
    Decided {
        verdict,
        set_cookies: Vec::new(),
    }
}

fn kind_fits(wanted: TokenKind, got: TokenType) -> bool {
    match wanted {
        TokenKind::Any => true,
        TokenKind::Access => got == TokenType::AccessJwt,
        TokenKind::Id => got == TokenType::IdToken,
    }
}
