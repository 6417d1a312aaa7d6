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
use crate::jwt::verify::{self, Expect, VerifyError};
use crate::oidc::Provider;
use crate::session::Identity;
use issuer::{Issuer, IssuerKeys};

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

impl From<VerifyError> for BearerError {
    fn from(e: VerifyError) -> BearerError {
        match e {
            VerifyError::Malformed | VerifyError::DuplicateClaim => BearerError::Malformed,
            VerifyError::Algorithm | VerifyError::UnknownKey | VerifyError::Signature => {
                BearerError::Signature
            }
            VerifyError::Expired => BearerError::Expired,
            VerifyError::NotYetValid | VerifyError::IssuedInFuture => BearerError::NotYetValid,
            VerifyError::Audience => BearerError::Audience,
            VerifyError::Issuer => BearerError::UnknownIssuer,
            VerifyError::MissingClaim(_) | VerifyError::Invalid(_) => BearerError::Invalid,
        }
    }
}

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
    leeway: Duration,
    verified: Cache<[u8; 32], Remembered>,
    clock: SharedClock,
}

impl BearerAuth {
    /// The login issuer (through `provider`'s keys) and each `[[bearer.issuers]]`; `http`
    /// fetches the keys of those that publish them.
    pub fn new(
        config: &Config,
        provider: Arc<Provider>,
        http: &reqwest::Client,
        clock: SharedClock,
    ) -> BearerAuth {
        let mut issuers = vec![Issuer::login(&config.bearer, provider)];
        issuers.extend(
            config
                .bearer
                .issuers
                .iter()
                .map(|i| Issuer::extra(i, http.clone())),
        );
        BearerAuth {
            issuers,
            leeway: config.bearer.leeway,
            verified: Cache::new(config.bearer.cache_entries.max(1)),
            clock,
        }
    }

    /// Key sets fetched over HTTP that need background upkeep (the login provider's is kept
    /// by the provider itself).
    pub fn remote_keys(&self) -> Vec<(String, Arc<RemoteKeys>)> {
        self.issuers
            .iter()
            .filter_map(|i| match &i.keys {
                IssuerKeys::Remote(r) => Some((i.issuer.clone(), r.clone())),
                _ => None,
            })
            .collect()
    }

    /// Verifies a bearer token, from memory when it was verified before.
    pub async fn verify(&self, token: &str) -> Result<Arc<Principal>, BearerError> {
        // Size and alphabet first: nothing is hashed or parsed for a junk header.
        if !verify::well_formed(token) {
            return Err(BearerError::Malformed);
        }
        if let Some(hit) = self.remembered(token) {
            return Ok(hit);
        }
        let principal = self.verify_uncached(token).await?;
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
    pub async fn verify_uncached(&self, token: &str) -> Result<Arc<Principal>, BearerError> {
        if !verify::well_formed(token) {
            return Err(BearerError::Malformed);
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
    ) -> Result<(usize, Principal, Arc<KeySet>), BearerError> {
        let unverified = verify::unverified_claims(token)?;
        let iss = unverified
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(BearerError::UnknownIssuer)?;
        let (index, issuer) = self
            .issuers
            .iter()
            .enumerate()
            .find(|(_, i)| i.issuer == iss)
            .ok_or(BearerError::UnknownIssuer)?;
        // An expired token is refused before any key is looked up or signature checked: no
        // signature could make it acceptable, and a flood of expired tokens (or of expired
        // tokens naming unknown keys, which would ask for the JWKS) then costs a parse each.
        // The full verification below checks `exp` again, with the same leeway.
        if let Some(exp) = unverified.get("exp").and_then(Value::as_u64) {
            if exp.saturating_add(self.leeway.as_secs()) < now.secs() {
                return Err(BearerError::Expired);
            }
        }
        let header = verify::header(token)?;
        let keys = issuer
            .keys_for(header.kid.as_deref())
            .await
            .ok_or(BearerError::KeysUnavailable)?;
        let verified = verify::verify(
            token,
            &keys,
            &Expect {
                issuer: &issuer.issuer,
                audiences: &issuer.audiences,
                leeway: self.leeway,
                now,
            },
        )?;
        let token_type = token_type(&verified.header, &verified.claims, issuer, now)?;
        let identity = crate::oidc::identity::from_claims(&verified.claims, &issuer.claims)
            .map_err(|_| BearerError::Invalid)?;
        let expires_at = verified
            .claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(BearerError::Invalid)?;
        let binding = Binding::of(&verified.claims)?;
        if issuer.require_bound && binding.is_none() {
            return Err(BearerError::Unbound);
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

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// RFC 9068 access token, ID token, or another access token; logout tokens never pass.
fn token_type(
    header: &jsonwebtoken::Header,
    claims: &Map<String, Value>,
    issuer: &Issuer,
    now: UnixTime,
) -> Result<TokenType, BearerError> {
    let typ = header.typ.as_deref().map(str::to_ascii_lowercase);
    // Back-channel logout tokens (OIDC Back-Channel Logout §2.4) are not credentials.
    if typ.as_deref() == Some("logout+jwt") || claims.contains_key("events") {
        return Err(BearerError::WrongType);
    }
    if matches!(typ.as_deref(), Some("at+jwt") | Some("application/at+jwt")) {
        // RFC 9068 §2.2: these claims are required.
        for required in ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"] {
            if !claims.contains_key(required) {
                return Err(BearerError::Invalid);
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
                .map_err(|_| BearerError::Invalid)?;
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
