//! `Authorization: Bearer <JWT>` for programs: SRE scripts, CI jobs, other services.
//!
//! A token names its issuer (`iss`); only an issuer configured here is considered, and only the
//! keys that issuer published (or that were configured for it) can verify its tokens, so one
//! issuer's key can never vouch for another issuer's claims. A verified token is remembered
//! until it expires, keyed by a hash of the token: the signature is checked once, not on every
//! request. A remembered token is verified again when its issuer's key set changed, so a key
//! the issuer withdrew stops working.

mod issuer;

use crate::clock::{SharedClock, UnixTime};
use base64::Engine;
use std::sync::Arc;
use std::time::Duration;

use quick_cache::sync::Cache;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::jwt::keys::KeySet;
use crate::jwt::remote::RemoteKeys;
use crate::jwt::verify::{self, Expect, Step, VerifyError};
use crate::oidc::{Provider, Readiness};
use crate::session::Identity;
use issuer::Issuer;

/// What kind of token this was, for routes that accept only one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    /// An RFC 9068 access token (`typ: at+jwt`).
    AccessJwt,
    /// An OpenID Connect ID token of the login issuer (audience: our client id).
    IdToken,
    /// Any other JWT access token (Okta's, Keycloak's, a token dealer's).
    Plain,
}

/// A caller proven by a bearer token.
#[derive(Debug)]
pub struct Principal {
    /// Who the token names.
    pub identity: Identity,
    /// The token's `scope` (or `scp`) values.
    pub scopes: Vec<String>,
    /// What kind of token it is, for routes that take one kind only.
    pub token_type: TokenType,
    /// Its `exp`, in Unix seconds: it is not remembered past that.
    pub expires_at: u64,
    /// What the token is bound to (`cnf`), if anything: only that sender may present it.
    pub binding: Option<Binding>,
}

/// A token's confirmation (`cnf`): who may present it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// RFC 8705 `x5t#S256`: the SHA-256 of the client certificate of the connection it
    /// arrives on.
    Certificate([u8; 32]),
    /// RFC 9449 `jkt`: the thumbprint of the key that signs its DPoP proofs.
    Key(String),
}

impl Binding {
    /// The token's `cnf`, if it has one. A `cnf` portcullis cannot check (another method, or
    /// two) is refused: honouring a binding by ignoring it would accept a stolen token.
    fn of(claims: &Map<String, Value>) -> Result<Option<Binding>, BearerError> {
        let Some(cnf) = claims.get("cnf") else {
            return Ok(None);
        };
        let cnf = cnf.as_object().ok_or(BearerError::Invalid)?;
        match (cnf.get("x5t#S256"), cnf.get("jkt"), cnf.len()) {
            (Some(x5t), None, 1) => {
                let text = x5t.as_str().ok_or(BearerError::Invalid)?;
                let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(text)
                    .map_err(|_| BearerError::Invalid)?;
                let hash =
                    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| BearerError::Invalid)?;
                Ok(Some(Binding::Certificate(hash)))
            }
            (None, Some(jkt), 1) => {
                let text = jkt
                    .as_str()
                    .filter(|t| !t.is_empty())
                    .ok_or(BearerError::Invalid)?;
                Ok(Some(Binding::Key(text.to_string())))
            }
            _ => Err(BearerError::UnsupportedBinding),
        }
    }
}

/// Why a token was refused. The text goes into `error_description` (RFC 6750 §3), so it is
/// fixed wording: never a token fragment, never a quote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    #[error("the token is malformed")]
    /// Not a compact JWS of reasonable size.
    Malformed,
    #[error("the token's issuer is not accepted here")]
    /// No configured issuer has its `iss`.
    UnknownIssuer,
    #[error("the issuer's keys are not available")]
    /// The issuer's keys could not be had (its JWKS is unreachable).
    KeysUnavailable,
    #[error("the token's signature or algorithm is not valid")]
    /// No key of the issuer verifies it with an allowed algorithm.
    Signature,
    #[error("the token has expired")]
    /// Past its `exp`, leeway included.
    Expired,
    #[error("the token is not valid yet")]
    /// Before its `nbf`, or issued in the future.
    NotYetValid,
    #[error("the token is not meant for this service")]
    /// None of its audiences is accepted.
    Audience,
    #[error("the token is not valid")]
    /// Another defect (a claim of the wrong type, a missing user claim).
    Invalid,
    #[error("this kind of token is not accepted here")]
    /// A valid token of a kind the route does not take.
    WrongType,
    #[error("only sender-constrained tokens are accepted here")]
    /// An unbound token where the issuer or the route asks for bound ones.
    Unbound,
    #[error("the token is bound to another client certificate")]
    /// A certificate-bound token (RFC 8705) on a connection without that certificate.
    CertificateMismatch,
    #[error("the token is bound to a DPoP key and must be sent with a DPoP proof")]
    /// A DPoP-bound token sent as `Bearer` (RFC 9449 §7.1).
    DpopBound,
    #[error("the token's confirmation method is not supported")]
    /// A `cnf` portcullis cannot check.
    UnsupportedBinding,
    #[error("DPoP is not accepted here")]
    /// `Authorization: DPoP` where `[bearer.dpop]` is off.
    DpopNotAccepted,
    #[error("the token is not bound to a DPoP key")]
    /// `Authorization: DPoP` with a token that has no `cnf.jkt`.
    NotDpopBound,
}

impl From<&VerifyError> for BearerError {
    fn from(e: &VerifyError) -> BearerError {
        match e {
            VerifyError::Malformed | VerifyError::DuplicateClaim => BearerError::Malformed,
            VerifyError::Algorithm(_) | VerifyError::UnknownKey(_) | VerifyError::Signature(_) => {
                BearerError::Signature
            }
            VerifyError::Expired { .. } => BearerError::Expired,
            VerifyError::NotYetValid { .. } | VerifyError::IssuedInFuture { .. } => {
                BearerError::NotYetValid
            }
            VerifyError::Audience { .. } => BearerError::Audience,
            VerifyError::Issuer { .. } => BearerError::UnknownIssuer,
            VerifyError::MissingClaim(_) | VerifyError::Invalid(_) => BearerError::Invalid,
        }
    }
}

/// A refused token: what the client is told (fixed wording) and the exact reason, for the
/// operator's log only. The reason may quote a claim or a key id, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What the client's `error_description` says.
    pub error: BearerError,
    /// What the access log's `reason` says.
    pub reason: String,
}

impl From<BearerError> for Refusal {
    /// A refusal whose reason is all there is to say.
    fn from(error: BearerError) -> Refusal {
        Refusal {
            reason: error.to_string(),
            error,
        }
    }
}

impl From<VerifyError> for Refusal {
    fn from(e: VerifyError) -> Refusal {
        Refusal {
            error: BearerError::from(&e),
            reason: e.to_string(),
        }
    }
}

impl Refusal {
    pub(crate) fn new(error: BearerError, reason: impl Into<String>) -> Refusal {
        Refusal {
            error,
            reason: reason.into(),
        }
    }
}

/// How long fetching an issuer's keys may take when `[oidc]` does not say (`oidc.http_timeout`).
const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Larger tokens are not remembered (see [`BearerAuth::verify_uncached`]).
const MAX_REMEMBERED_TOKEN_BYTES: usize = 4096;

#[derive(Clone)]
struct Remembered {
    principal: Arc<Principal>,
    issuer: usize,
    /// The key set that verified it; a different current set means "verify again".
    keys: Arc<KeySet>,
}

/// Bearer-token verification for every configured issuer, with a bounded cache of the
/// tokens verified (by their SHA-256).
pub struct BearerAuth {
    issuers: Vec<Issuer>,
    /// Key sets a reload names for the first time (issuer, keys).
    first_seen: Vec<(String, Arc<RemoteKeys>)>,
    leeway: Duration,
    verified: Cache<[u8; 32], Remembered>,
    clock: SharedClock,
}

impl BearerAuth {
    /// The sign-in providers' issuers (through each provider's keys), and each
    /// `[[bearer.issuers]]`.
    /// With `previous` (the verifier before a reload), key sets fetched from the same place
    /// are taken over rather than fetched again; verified tokens are not, since the new
    /// configuration may judge them otherwise.
    pub fn new(
        config: &Config,
        login: Vec<Arc<Provider>>,
        clock: SharedClock,
        previous: Option<&BearerAuth>,
    ) -> reqwest::Result<BearerAuth> {
        let timeout = config
            .oidc
            .as_ref()
            .map_or(DEFAULT_HTTP_TIMEOUT, |o| o.first().http_timeout);
        let http = crate::oidc::discovery::http_client(timeout)?;
        let mut issuers: Vec<Issuer> = login
            .into_iter()
            .map(|provider| Issuer::login(&config.bearer, provider))
            .collect();
        issuers.extend(
            config
                .bearer
                .issuers
                .iter()
                .map(|i| Issuer::extra(i, http.clone())),
        );
        let mut first_seen = Vec::new();
        if let Some(previous) = previous {
            let before = previous.remote_keys();
            for (issuer, keys) in issuers.iter().filter_map(Issuer::remote) {
                let mut known = false;
                for (_, old) in &before {
                    known |= keys.adopt(old);
                }
                if !known {
                    first_seen.push((issuer.to_string(), keys.clone()));
                }
            }
        }
        Ok(BearerAuth {
            first_seen,
            issuers,
            leeway: config.bearer.leeway,
            verified: Cache::new(config.bearer.cache_entries.max(1)),
            clock,
        })
    }

    /// Ready when every issuer's keys are loaded (a resource server's `/ready`): a replica
    /// that could verify no token of some issuer should not get that issuer's callers yet.
    pub fn readiness(&self) -> Readiness {
        match self.issuers.iter().find(|i| i.current_keys().is_none()) {
            None => Readiness::Ready,
            Some(i) => Readiness::NotReady(i.last_error()),
        }
    }

    /// Key sets fetched over HTTP that need background upkeep (the login provider's is kept
    /// by the provider itself).
    pub fn remote_keys(&self) -> Vec<(String, Arc<RemoteKeys>)> {
        self.issuers
            .iter()
            .filter_map(Issuer::remote)
            .map(|(issuer, keys)| (issuer.to_string(), keys.clone()))
            .collect()
    }

    /// Fetches the key sets a reload names for the first time, so that a configuration whose
    /// new issuer cannot be reached is refused before it serves anyone (one the configuration
    /// before had is not waited for, as [`Providers::load_new`](crate::oidc::providers::Providers::load_new)).
    pub async fn load_new(&self) -> Result<(), String> {
        for (issuer, keys) in &self.first_seen {
            keys.refresh()
                .await
                .map_err(|e| format!("keys of {issuer}: {e}"))?;
        }
        Ok(())
    }

    /// Verifies a bearer token, from memory when it was verified before.
    pub async fn verify(&self, token: &str) -> Result<Arc<Principal>, Refusal> {
        // Size and alphabet first: nothing is hashed or parsed for a junk header.
        if !verify::well_formed(token) {
            return Err(malformed(token));
        }
        if let Some(hit) = self.remembered(token) {
            return Ok(hit);
        }
        // Boxed: a key set fetch's state is large, and inline it would be part of every
        // request's future, allocated and copied on every request, cache hits included.
        let principal = Box::pin(self.verify_uncached(token)).await?;
        Ok(principal)
    }

    /// A token verified before, still within its lifetime and still signed by a key its issuer
    /// publishes. Synchronous and cheap: one SHA-256 and a cache lookup.
    pub fn remembered(&self, token: &str) -> Option<Arc<Principal>> {
        let hash = token_hash(token);
        let hit = self.verified.get(&hash)?;
        let now = self.clock.now().secs();
        let fresh = now
            <= hit
                .principal
                .expires_at
                .saturating_add(self.leeway.as_secs());
        let same_keys = self.issuers[hit.issuer]
            .current_keys()
            .is_some_and(|k| Arc::ptr_eq(&k, &hit.keys));
        if fresh && same_keys {
            Some(hit.principal)
        } else {
            self.verified.remove(&hash);
            None
        }
    }

    /// Full verification (signature and claims), remembering the result.
    pub async fn verify_uncached(&self, token: &str) -> Result<Arc<Principal>, Refusal> {
        if !verify::well_formed(token) {
            return Err(malformed(token));
        }
        let (index, principal, keys) = self.verify_fully(token, self.clock.now()).await?;
        let principal = Arc::new(principal);
        // Memory stays bounded by entries × size: unusually large tokens (and so principals)
        // are verified every time rather than remembered.
        if token.len() > MAX_REMEMBERED_TOKEN_BYTES {
            return Ok(principal);
        }
        self.verified.insert(
            token_hash(token),
            Remembered {
                principal: principal.clone(),
                issuer: index,
                keys,
            },
        );
        Ok(principal)
    }

    async fn verify_fully(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<(usize, Principal, Arc<KeySet>), Refusal> {
        let unverified = verify::unverified_claims(token)?;
        let iss = unverified
            .get("iss")
            .ok_or_else(|| Refusal::new(BearerError::UnknownIssuer, "missing claim iss"))?;
        let (index, issuer) = self
            .issuers
            .iter()
            .enumerate()
            .find(|(_, i)| iss.as_str() == Some(i.issuer.as_str()))
            .ok_or_else(|| {
                Refusal::new(
                    BearerError::UnknownIssuer,
                    format!("iss {iss} is not a configured issuer"),
                )
            })?;
        // An expired token is refused before any key is looked up or signature checked: no
        // signature could make it acceptable, and a flood of expired tokens (or of expired
        // tokens naming unknown keys, which would ask for the JWKS) then costs a parse each.
        // The full verification below checks `exp` again, with the same leeway.
        if let Some(exp) = unverified.get("exp").and_then(Value::as_u64) {
            let leeway = self.leeway.as_secs();
            if exp.saturating_add(leeway) < now.secs() {
                return Err(VerifyError::Expired {
                    exp,
                    now: now.secs(),
                    leeway,
                }
                .into());
            }
        }
        let header = verify::header(token)?;
        let keys = issuer
            .keys_for(header.kid.as_deref())
            .await
            .ok_or_else(|| {
                let why = issuer
                    .last_error()
                    .map_or_else(|| "not loaded yet".to_string(), |e| e.to_string());
                Refusal::new(
                    BearerError::KeysUnavailable,
                    format!("the issuer's keys are not available ({why})"),
                )
            })?;
        let expect = Expect {
            issuer: &issuer.issuer,
            audiences: &issuer.audiences,
            leeway: self.leeway,
            now,
        };
        let verified = verify::verify(token, &keys, &expect).map_err(|e| {
            let mut refusal = Refusal::from(e.clone());
            if let (VerifyError::UnknownKey(_), Some(ago)) = (&e, issuer.fetched_ago()) {
                refusal.reason = format!("{e} (JWKS fetched {}s ago)", ago.as_secs());
            }
            refusal
        })?;
        let token_type = token_type(&verified.header, &verified.claims, issuer, now)?;
        let identity = crate::session::Identity {
            provider: issuer.provider_id().map(str::to_string),
            issuer: Some(issuer.issuer.clone()),
            ..crate::oidc::identity::from_claims(&verified.claims, &issuer.claims)
                .map_err(|reason| Refusal::new(BearerError::Invalid, reason))?
        };
        let expires_at = verified
            .claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or_else(|| Refusal::new(BearerError::Invalid, "missing claim exp"))?;
        let binding = Binding::of(&verified.claims).map_err(|e| {
            let cnf = verified.claims.get("cnf").map(Value::to_string);
            let reason = format!("cnf {}: {e}", cnf.unwrap_or_default());
            Refusal::new(e, reason)
        })?;
        if issuer.require_bound && binding.is_none() {
            return Err(Refusal::new(
                BearerError::Unbound,
                "the issuer accepts only sender-constrained tokens, and this one has no cnf",
            ));
        }
        Ok((
            index,
            Principal {
                identity,
                scopes: scopes(&verified.claims),
                token_type,
                expires_at,
                binding,
            },
            keys,
        ))
    }
}

impl BearerAuth {
    /// Every step of verifying `token` and how it went, even past a failure: which issuer
    /// and key it matched, each claim check, its type, user and binding. Fetches the issuer's
    /// keys when they are published. For `portcullis explain-token`; never on a request.
    pub async fn explain(&self, token: &str) -> Vec<Step> {
        let token = token.trim();
        let mut steps = Vec::new();
        if !verify::well_formed(token) {
            steps.push(Step::failed("structure", malformed(token).reason));
            return steps;
        }
        let unverified = match verify::unverified_claims(token) {
            Ok(c) => c,
            Err(e) => {
                steps.push(Step::failed("structure", e));
                return steps;
            }
        };
        let iss = unverified.get("iss");
        let Some(issuer) = self
            .issuers
            .iter()
            .find(|i| iss.and_then(Value::as_str) == Some(i.issuer.as_str()))
        else {
            let known: Vec<&str> = self.issuers.iter().map(|i| i.issuer.as_str()).collect();
            let found = iss.map_or_else(|| "missing".to_string(), Value::to_string);
            steps.push(Step::failed(
                "issuer",
                format!("iss {found} is none of the configured {known:?}"),
            ));
            return steps;
        };
        steps.push(Step::passed("issuer", issuer.issuer.clone()));
        let kid = verify::header(token).ok().and_then(|h| h.kid);
        let Some(keys) = issuer.keys_for(kid.as_deref()).await else {
            let why = issuer
                .last_error()
                .map_or_else(|| "not loaded".to_string(), |e| e.to_string());
            steps.push(Step::failed("keys", why));
            return steps;
        };
        let origin = match issuer.fetched_ago() {
            Some(ago) => format!("published, fetched {}s ago", ago.as_secs()),
            None => "configured".to_string(),
        };
        steps.push(Step::passed(
            "keys",
            format!("{} key(s), {origin}", keys.len()),
        ));
        let now = self.clock.now();
        let expect = Expect {
            issuer: &issuer.issuer,
            audiences: &issuer.audiences,
            leeway: self.leeway,
            now,
        };
        steps.extend(verify::explain(token, &keys, &expect));
        if let Ok(header) = verify::header(token) {
            steps.push(match token_type(&header, &unverified, issuer, now) {
                Ok(t) => Step::passed("token type", format!("{t:?}")),
                Err(r) => Step::failed("token type", r.reason),
            });
        }
        steps.push(
            match crate::oidc::identity::from_claims(&unverified, &issuer.claims) {
                Ok(id) => Step::passed(
                    "user",
                    id.user.map_or_else(
                        || format!("none of {:?}: no user header is sent", issuer.claims.user),
                        |u| format!("{u:?}"),
                    ),
                ),
                Err(reason) => Step::failed("user", reason),
            },
        );
        steps.push(match Binding::of(&unverified) {
            Ok(None) if issuer.require_bound => Step::failed(
                "binding",
                "none, and the issuer accepts only sender-constrained tokens",
            ),
            Ok(None) => Step::passed("binding", "none (a plain bearer token)"),
            Ok(Some(Binding::Certificate(_))) => {
                Step::passed("binding", "cnf x5t#S256: only with that client certificate")
            }
            Ok(Some(Binding::Key(jkt))) => Step::passed(
                "binding",
                format!("cnf jkt {jkt}: only as `Authorization: DPoP` with a proof by that key"),
            ),
            Err(e) => Step::failed("binding", e),
        });
        steps
    }
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A token of `token` that is not even a JWS, with what is wrong in its shape (never the
/// token itself).
fn malformed(token: &str) -> Refusal {
    let reason = if token.len() > verify::MAX_TOKEN_BYTES {
        format!(
            "{} bytes, more than {}",
            token.len(),
            verify::MAX_TOKEN_BYTES
        )
    } else if token.split('.').count() != 3 {
        format!("{} dot-separated parts, not 3", token.split('.').count())
    } else {
        "characters outside base64url".to_string()
    };
    Refusal::new(
        BearerError::Malformed,
        format!("not a compact JWS: {reason}"),
    )
}

/// RFC 9068 access token, ID token, or another access token; logout tokens never pass.
fn token_type(
    header: &jsonwebtoken::Header,
    claims: &Map<String, Value>,
    issuer: &Issuer,
    now: UnixTime,
) -> Result<TokenType, Refusal> {
    let typ = header.typ.as_deref().map(str::to_ascii_lowercase);
    // Back-channel logout tokens (OIDC Back-Channel Logout §2.4) are not credentials.
    if typ.as_deref() == Some("logout+jwt") || claims.contains_key("events") {
        return Err(Refusal::new(
            BearerError::WrongType,
            "a back-channel logout token is not a credential",
        ));
    }
    if matches!(typ.as_deref(), Some("at+jwt") | Some("application/at+jwt")) {
        // RFC 9068 §2.2: these claims are required.
        for required in ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"] {
            if !claims.contains_key(required) {
                return Err(Refusal::new(
                    BearerError::Invalid,
                    format!("missing claim {required} (required in an at+jwt)"),
                ));
            }
        }
        return Ok(TokenType::AccessJwt);
    }
    if let Some(id_audience) = &issuer.id_audience {
        if audience_contains(claims, id_audience) {
            let expect = crate::oidc::id_token::Expectations {
                issuer: &issuer.issuer,
                client_id: id_audience,
                nonce: None,
                leeway: Duration::ZERO,
                now,
            };
            crate::oidc::id_token::check_claims(claims.clone(), &expect)
                .map_err(|e| Refusal::new(BearerError::Invalid, format!("as an ID token: {e}")))?;
            return Ok(TokenType::IdToken);
        }
    }
    Ok(TokenType::Plain)
}

fn audience_contains(claims: &Map<String, Value>, audience: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    }
}

/// `scope` as a space-separated string (RFC 8693 / 9068) or `scp` as an array (Okta, Azure).
fn scopes(claims: &Map<String, Value>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Some(Value::String(s)) = claims.get("scope") {
        out.extend(s.split_whitespace().map(str::to_string));
    }
    match claims.get("scp") {
        Some(Value::Array(list)) => {
            out.extend(list.iter().filter_map(Value::as_str).map(str::to_string))
        }
        Some(Value::String(s)) => out.extend(s.split_whitespace().map(str::to_string)),
        _ => {}
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scopes_from_either_claim() {
        let c = json!({"scope": "b a", "scp": ["c", "a"]});
        assert_eq!(scopes(c.as_object().unwrap()), ["a", "b", "c"]);
        assert!(scopes(json!({}).as_object().unwrap()).is_empty());
    }
}
