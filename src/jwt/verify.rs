//! Signature and registered-claim checks shared by ID tokens and bearer tokens.
//!
//! Only keys from the issuer's own key set are used: `jwk`, `jku`, `x5u` and `x5c` header
//! parameters are never read. The token's `alg` must be one the selected key allows (see
//! [`super::keys`]); `none` does not parse. Claims are parsed strictly: a duplicated claim is an
//! error rather than "last one wins".

use std::fmt;
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Algorithm, Header, Validation};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::keys::KeySet;
use crate::clock::UnixTime;

/// Tokens over this size are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The most keys one signature is tried with. A token without `kid` (a token dealer's) is
/// tried against every key of its issuer that allows its algorithm; this bounds what a
/// flood of such tokens can cost when an issuer publishes many keys.
pub const MAX_CANDIDATE_KEYS: usize = 4;

/// Why a token did not verify. The text is the exact reason, for the operator's log (the
/// access log's `reason`): it may quote a claim's value or a key id, never the token or its
/// signature. Quoted values are escaped (`{:?}`), so a claim cannot forge a log line. What a
/// client is told is fixed wording chosen elsewhere (`BearerError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("not a compact JWS (three base64url parts, JSON header and claims)")]
    /// Not a compact JWS.
    Malformed,
    #[error("no key of the issuer allows alg {0:?}")]
    /// An algorithm no selected key allows.
    Algorithm(Algorithm),
    #[error("no key with kid {0:?}")]
    /// A `kid` the issuer does not publish.
    UnknownKey(String),
    #[error("signature does not verify with the {0} key(s) that allow its alg")]
    /// No key verifies the signature; how many were tried.
    Signature(usize),
    #[error("expired: exp {exp} is {}s before now (leeway {leeway}s)", .now.saturating_sub(*.exp))]
    /// Past its `exp`.
    Expired {
        /// Its `exp`.
        exp: u64,
        /// The time compared with.
        now: u64,
        /// The leeway, in seconds.
        leeway: u64,
    },
    #[error("not valid yet: nbf {nbf} is {}s after now (leeway {leeway}s)", .nbf.saturating_sub(*.now))]
    /// Before its `nbf`.
    NotYetValid {
        /// Its `nbf`.
        nbf: u64,
        /// The time compared with.
        now: u64,
        /// The leeway, in seconds.
        leeway: u64,
    },
    #[error("issued in the future: iat {iat} is {}s after now (leeway {leeway}s)", .iat.saturating_sub(*.now))]
    /// An `iat` in the future.
    IssuedInFuture {
        /// Its `iat`.
        iat: u64,
        /// The time compared with.
        now: u64,
        /// The leeway, in seconds.
        leeway: u64,
    },
    #[error("iss {found} is not {expected:?}")]
    /// Another `iss`.
    Issuer {
        /// What the token says, as JSON.
        found: String,
        /// The issuer expected.
        expected: String,
    },
    #[error("aud {found} not in {expected:?}")]
    /// None of the expected audiences.
    Audience {
        /// What the token says, as JSON.
        found: String,
        /// The audiences accepted.
        expected: Vec<String>,
    },
    #[error("missing claim {0}")]
    /// A required claim is absent.
    MissingClaim(String),
    #[error("duplicate claim or header parameter")]
    /// A claim or header parameter appears twice.
    DuplicateClaim,
    #[error("{0}")]
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
    let (_, claims) = signature(token, &header, keys)?;
    for (_, result) in claim_checks(&claims, expect) {
        result?;
    }
    Ok(Verified { header, claims })
}

/// The signature: which of the keys that may verify it (see [`MAX_CANDIDATE_KEYS`]) does,
/// by its index among them, and the claims it vouches for. jsonwebtoken checks the signature
/// and the algorithm only; every claim is checked by [`claim_checks`], so that a refusal names
/// the claim and its value.
fn signature(
    token: &str,
    header: &Header,
    keys: &KeySet,
) -> Result<(usize, Map<String, Value>), VerifyError> {
    let kid = header.kid.as_deref();
    let mut validation = Validation::new(header.alg);
    validation.algorithms = vec![header.alg];
    validation.set_required_spec_claims::<&str>(&[]);
    validation.validate_aud = false;
    validation.validate_exp = false;
    validation.validate_nbf = false;

    let candidates: Vec<_> = keys
        .candidates(kid, header.alg)
        .take(MAX_CANDIDATE_KEYS)
        .collect();
    if candidates.is_empty() {
        return Err(match kid {
            Some(k) if !keys.has_kid(k) => VerifyError::UnknownKey(k.to_string()),
            // A key we know, but not for this algorithm (or no key allows it at all).
            _ => VerifyError::Algorithm(header.alg),
        });
    }
    let mut result = Err(VerifyError::Signature(candidates.len()));
    for (i, candidate) in candidates.iter().enumerate() {
        match decode::<Map<String, Value>>(token, &candidate.key, &validation) {
            Ok(data) => return Ok((i, data.claims)),
            Err(e) => match map_error(e.kind()) {
                VerifyError::Signature(_) => {}
                other => result = Err(other),
            },
        }
    }
    result
}

/// Each registered-claim check by name: `iss` (exactly), `aud` (one of the expected), `exp`
/// (required), `nbf` and `iat` (when present). All of them run, so that an explanation can
/// show every one; [`verify`] stops at the first failure.
fn claim_checks(
    claims: &Map<String, Value>,
    expect: &Expect<'_>,
) -> [(&'static str, Result<(), VerifyError>); 3] {
    [
        ("iss", check_issuer(claims, expect.issuer)),
        ("aud", check_audience(claims, expect.audiences)),
        (
            "exp, nbf, iat",
            check_times(claims, expect.now, expect.leeway),
        ),
    ]
}

fn check_issuer(claims: &Map<String, Value>, expected: &str) -> Result<(), VerifyError> {
    match claims.get("iss") {
        None => Err(VerifyError::MissingClaim("iss".into())),
        Some(Value::String(iss)) if iss == expected => Ok(()),
        Some(other) => Err(VerifyError::Issuer {
            found: other.to_string(),
            expected: expected.to_string(),
        }),
    }
}

fn check_audience(claims: &Map<String, Value>, expected: &[String]) -> Result<(), VerifyError> {
    let aud = claims
        .get("aud")
        .ok_or_else(|| VerifyError::MissingClaim("aud".into()))?;
    let accepted = |a: &Value| a.as_str().is_some_and(|a| expected.iter().any(|e| e == a));
    let ok = match aud {
        Value::Array(list) => list.iter().any(accepted),
        single => accepted(single),
    };
    if ok {
        Ok(())
    } else {
        Err(VerifyError::Audience {
            found: aud.to_string(),
            expected: expected.to_vec(),
        })
    }
}

/// Every step of [`verify`] and how it went, each run even when an earlier one failed: the
/// offline answer to "why is my token refused" (`portcullis explain-token`).
pub fn explain(token: &str, keys: &KeySet, expect: &Expect<'_>) -> Vec<Step> {
    let mut steps = Vec::new();
    let header = match header(token).and_then(|h| unverified_claims(token).map(|_| h)) {
        Ok(h) => h,
        Err(e) => {
            steps.push(Step::failed("structure", e));
            return steps;
        }
    };
    let claims = match signature(token, &header, keys) {
        Ok((i, claims)) => {
            let kid = keys
                .candidates(header.kid.as_deref(), header.alg)
                .nth(i)
                .and_then(|k| k.kid.clone())
                .map_or_else(|| "a key without kid".to_string(), |k| format!("kid {k:?}"));
            steps.push(Step::passed(
                "signature",
                format!(
                    "{:?} verified by {kid} (of {} key(s))",
                    header.alg,
                    keys.len()
                ),
            ));
            claims
        }
        Err(e) => {
            steps.push(Step::failed("signature", e));
            // The claims are shown unverified, so that every other check can still be judged.
            match unverified_claims(token) {
                Ok(c) => c,
                Err(_) => return steps,
            }
        }
    };
    for (name, result) in claim_checks(&claims, expect) {
        steps.push(match result {
            Ok(()) => Step::passed(name, "ok"),
            Err(e) => Step::failed(name, e),
        });
    }
    steps
}

/// One step of an explanation: what was checked, whether it held, and what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What was checked.
    pub name: &'static str,
    /// Whether it held.
    pub passed: bool,
    /// What was seen (a failure's exact reason).
    pub detail: String,
}

impl Step {
    /// A check that held.
    pub fn passed(name: &'static str, detail: impl Into<String>) -> Step {
        Step {
            name,
            passed: true,
            detail: detail.into(),
        }
    }

    /// A check that did not, and why.
    pub fn failed(name: &'static str, why: impl fmt::Display) -> Step {
        Step {
            name,
            passed: false,
            detail: why.to_string(),
        }
    }
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
                .ok_or_else(|| VerifyError::Invalid(format!("{name} is not a whole number"))),
        }
    };
    let exp = time("exp")?.ok_or_else(|| VerifyError::MissingClaim("exp".into()))?;
    if exp.saturating_add(leeway) < now {
        return Err(VerifyError::Expired { exp, now, leeway });
    }
    if let Some(nbf) = time("nbf")?.filter(|nbf| *nbf > now.saturating_add(leeway)) {
        return Err(VerifyError::NotYetValid { nbf, now, leeway });
    }
    if let Some(iat) = time("iat")?.filter(|iat| *iat > now.saturating_add(leeway)) {
        return Err(VerifyError::IssuedInFuture { iat, now, leeway });
    }
    Ok(())
}

/// jsonwebtoken's error for one key (claims are not checked by it, see [`verify`]).
fn map_error(kind: &ErrorKind) -> VerifyError {
    match kind {
        ErrorKind::InvalidSignature => VerifyError::Signature(1),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => {
            VerifyError::Invalid("the key cannot verify this algorithm".into())
        }
        ErrorKind::Json(_) => VerifyError::Invalid("the claims are not a JSON object".into()),
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
