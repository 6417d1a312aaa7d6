//! Signature and registered-claim checks shared by ID tokens and bearer tokens.
//!
//! Only keys from the issuer's own key set are used: `jwk`, `jku`, `x5u` and `x5c` header
//! parameters are never read. The token's `alg` must be one the selected key allows (see
//! [`super::keys`]); `none` does not parse. Claims are parsed strictly: a duplicated claim is an
//! error rather than "last one wins".

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Header, Validation};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::keys::KeySet;
use crate::clock::UnixTime;

/// Tokens over this size are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
/// Why a token did not verify.
pub enum VerifyError {
    #[error("malformed token")]
    /// Not a compact JWS.
    Malformed,
    #[error("algorithm not allowed")]
    /// An algorithm no selected key allows.
    Algorithm,
    #[error("unknown signing key")]
    /// A `kid` the issuer does not publish.
    UnknownKey,
    #[error("invalid signature")]
    /// No key verifies the signature.
    Signature,
    #[error("token expired")]
    /// Past its `exp`.
    Expired,
    #[error("token not yet valid")]
    /// Before its `nbf`.
    NotYetValid,
    #[error("token issued in the future")]
    /// An `iat` in the future.
    IssuedInFuture,
    #[error("wrong issuer")]
    /// Another `iss`.
    Issuer,
    #[error("wrong audience")]
    /// None of the expected audiences.
    Audience,
    #[error("missing claim `{0}`")]
    /// A required claim is absent (or not of its type).
    MissingClaim(String),
    #[error("duplicate claim")]
    /// A claim or header parameter appears twice.
    DuplicateClaim,
    #[error("invalid token: {0}")]
    /// Another defect, named.
    Invalid(String),
}

/// What a token must say about itself.
pub struct Expect<'a> {
    /// The `iss` it must have, byte for byte.
    pub issuer: &'a str,
    /// At least one of these must be in `aud`.
    pub audiences: &'a [String],
    /// Clock skew tolerated on its times.
    pub leeway: Duration,
    /// The time `exp`, `nbf` and `iat` are compared with (the injected clock's, not
    /// jsonwebtoken's own reading of the system clock).
    pub now: UnixTime,
}

/// A token that verified.
pub struct Verified {
    /// Its header.
    pub header: Header,
    /// Its claims.
    pub claims: Map<String, Value>,
}

/// Quick structural checks: size, three non-empty base64url segments (a JWE has five).
pub fn well_formed(token: &str) -> bool {
    token.len() <= MAX_TOKEN_BYTES
        && token.split('.').count() == 3
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// The header of a well-formed token, unverified (to choose keys). Parsed strictly (no
/// duplicate parameters), and a token that lists critical extensions (`crit`, RFC 7515
/// §4.1.11) is refused: portcullis implements none, so it cannot honour them.
pub fn header(token: &str) -> Result<Header, VerifyError> {
    if !well_formed(token) {
        return Err(VerifyError::Malformed);
    }
    let segment = token.split('.').next().ok_or(VerifyError::Malformed)?;
    let strict = parse_object(segment)?;
    if strict.contains_key("crit") {
        return Err(VerifyError::Invalid("unsupported critical header".into()));
    }
    decode_header(token).map_err(|_| VerifyError::Malformed)
}

/// The header of a well-formed token as a JSON object, parsed strictly (unique members), for
/// checks on members `Header` does not keep (a DPoP proof's `jwk` may carry no private
/// key member).
pub fn header_object(token: &str) -> Result<Map<String, Value>, VerifyError> {
    if !well_formed(token) {
        return Err(VerifyError::Malformed);
    }
    parse_object(token.split('.').next().ok_or(VerifyError::Malformed)?)
}

/// A base64url JSON object with unique keys.
fn parse_object(segment: &str) -> Result<Map<String, Value>, VerifyError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| VerifyError::Malformed)?;
    let strict: StrictObject = serde_json::from_slice(&bytes).map_err(|e| {
        if e.to_string().contains(DUPLICATE) {
            VerifyError::DuplicateClaim
        } else {
            VerifyError::Malformed
        }
    })?;
    Ok(strict.0)
}

/// The claims of a well-formed token, unverified: only to find which issuer to verify it with.
pub fn unverified_claims(token: &str) -> Result<Map<String, Value>, VerifyError> {
    if !well_formed(token) {
        return Err(VerifyError::Malformed);
    }
    let payload = token.split('.').nth(1).ok_or(VerifyError::Malformed)?;
    parse_object(payload)
}

/// Verifies `token` with `keys` and returns its header and claims.
pub fn verify(token: &str, keys: &KeySet, expect: &Expect<'_>) -> Result<Verified, VerifyError> {
    let header = header(token)?;
    // Parsing strictly first also rejects duplicate claims before any key is tried.
    unverified_claims(token)?;
    let kid = header.kid.as_deref();
    let mut validation = Validation::new(header.alg);
    validation.algorithms = vec![header.alg];
    validation.set_issuer(&[expect.issuer]);
    validation.aud = Some(expect.audiences.iter().cloned().collect::<HashSet<_>>());
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    // Times are checked below against the injected clock; `exp` stays a required claim,
    // which jsonwebtoken only counts as present when it is a whole number of seconds.
    validation.validate_exp = false;
    validation.validate_nbf = false;

    let mut candidates = keys.candidates(kid, header.alg).peekable();
    if candidates.peek().is_none() {
        return Err(match kid {
            Some(k) if !keys.has_kid(k) => VerifyError::UnknownKey,
            // A key we know, but not for this algorithm (or no key allows it at all).
            _ => VerifyError::Algorithm,
        });
    }
    let mut result = Err(VerifyError::Signature);
    for candidate in candidates {
        match decode::<Map<String, Value>>(token, &candidate.key, &validation) {
            Ok(data) => {
                result = Ok(data.claims);
                break;
            }
            Err(e) => result = Err(map_error(e.kind())),
        }
    }
    let claims = result?;
    check_times(&claims, expect.now, expect.leeway)?;
    Ok(Verified { header, claims })
}

/// `exp` (required), `nbf` and `iat` (when present), each a whole number of seconds, against
/// `now` with `leeway` either way.
fn check_times(
    claims: &Map<String, Value>,
    now: UnixTime,
    leeway: Duration,
) -> Result<(), VerifyError> {
    let now = now.secs();
    let leeway = leeway.as_secs();
    let time = |name: &str| -> Result<Option<u64>, VerifyError> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| VerifyError::Invalid(format!("{name} is not a number"))),
        }
    };
    let exp = time("exp")?.ok_or_else(|| VerifyError::MissingClaim("exp".into()))?;
    if exp.saturating_add(leeway) < now {
        return Err(VerifyError::Expired);
    }
    if time("nbf")?.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(VerifyError::NotYetValid);
    }
    if time("iat")?.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(VerifyError::IssuedInFuture);
    }
    Ok(())
}

fn map_error(kind: &ErrorKind) -> VerifyError {
    match kind {
        ErrorKind::InvalidSignature => VerifyError::Signature,
        ErrorKind::ExpiredSignature => VerifyError::Expired,
        ErrorKind::ImmatureSignature => VerifyError::NotYetValid,
        ErrorKind::InvalidIssuer => VerifyError::Issuer,
        ErrorKind::InvalidAudience => VerifyError::Audience,
        ErrorKind::MissingRequiredClaim(c) => VerifyError::MissingClaim(c.clone()),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => VerifyError::Algorithm,
        other => VerifyError::Invalid(format!("{other:?}")),
    }
}

const DUPLICATE: &str = "duplicate claim";

/// A JSON object whose keys are unique.
struct StrictObject(Map<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<StrictObject, A::Error> {
                let mut map = Map::new();
                while let Some((k, v)) = access.next_entry::<String, Value>()? {
                    if map.insert(k, v).is_some() {
                        return Err(de::Error::custom(DUPLICATE));
                    }
                }
                Ok(StrictObject(map))
            }
        }
        d.deserialize_map(V)
    }
}
