//! DPoP (RFC 9449): an access token bound to a key (`cnf.jkt`) is accepted only with a proof,
//! signed by that key, that was made for this very request.
//!
//! The proof (`DPoP` header) is a JWT: `typ` `dpop+jwt`, an asymmetric algorithm of
//! `bearer.dpop.algorithms`, a public `jwk` (no private member), and claims `jti` (not seen
//! before within the proof lifetime: a bounded replay cache), `htm` (the method), `htu` (the URL
//! the client used, without query or fragment), `iat` (within the lifetime), `ath` (SHA-256 of
//! the access token), and, with `use_dpop_nonce`, the `nonce` portcullis handed out. The
//! JWK's RFC 7638 thumbprint must be the token's `cnf.jkt`.
//!
//! Nonces are derived from the session secrets and the time, so every replica accepts every
//! other's; they change every [`NONCE_PERIOD`], and the previous one stays good.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hkdf::Hkdf;
use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, Validation};
use quick_cache::sync::Cache;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::UnixTime;
use crate::jwt::keys::KeySet;

/// Proofs over this size are refused before any parsing.
const MAX_PROOF_BYTES: usize = 8 * 1024;
/// How long a server nonce is handed out before the next one.
pub const NONCE_PERIOD: Duration = Duration::from_secs(60);
/// JWK members that only a private key has.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a proof is refused. Fixed wording (it goes into `error_description`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// No `DPoP` header, or several.
    #[error("one DPoP proof is required")]
    Missing,
    /// Not a JWT, or not the right `typ`.
    #[error("the DPoP proof is malformed")]
    Malformed,
    /// An algorithm not allowed (symmetric, `none`, or not configured).
    #[error("the DPoP proof's algorithm is not accepted")]
    Algorithm,
    /// No public `jwk`, a private one, or a key too weak.
    #[error("the DPoP proof's key is not acceptable")]
    Key,
    /// The signature does not verify with its `jwk`.
    #[error("the DPoP proof's signature is not valid")]
    Signature,
    /// `htm` or `htu` name another request.
    #[error("the DPoP proof was made for another request")]
    Request,
    /// `iat` outside the accepted window.
    #[error("the DPoP proof is too old or from the future")]
    Time,
    /// A `jti` already seen.
    #[error("the DPoP proof was already used")]
    Replay,
    /// `ath` is not the hash of the access token.
    #[error("the DPoP proof was made for another access token")]
    AccessToken,
    /// The key is not the one the token is bound to.
    #[error("the DPoP proof's key is not the token's")]
    KeyMismatch,
    /// A nonce is required and the proof carries none, or an old one.
    #[error("a fresh DPoP nonce is required")]
    UseNonce,
}

/// What the proof must be about.
pub struct Expected<'a> {
    /// The request's method.
    pub method: &'a str,
    /// `scheme://host[:port]/path` the client used (no query).
    pub url: &'a str,
    /// The access token the proof accompanies.
    pub access_token: &'a str,
    /// The token's `cnf.jkt`.
    pub jkt: &'a str,
}

/// The proofs already used (their `jti` hashed with their key, until their lifetime ends),
/// bounded. It outlives a configuration reload, so that no proof is accepted twice across one.
pub struct Replays(Cache<[u8; 32], u64>);

impl Replays {
    /// Remembers up to `entries` proofs.
    pub fn new(entries: usize) -> Replays {
        Replays(Cache::new(entries.max(1)))
    }
}

/// The DPoP settings and the state proofs are checked against.
pub struct Dpop {
    algorithms: Vec<Algorithm>,
    /// `algorithms` as a challenge's `algs`, written once.
    algs: String,
    lifetime: Duration,
    leeway: Duration,
    /// `jti`s seen (hashed with their key), until their proof's lifetime ends.
    seen: Arc<Replays>,
    nonce_key: Option<[u8; 32]>,
}

impl Dpop {
    /// Proofs signed with `algorithms`, at most `lifetime` old (with `leeway` either way),
    /// each used once (`seen`); with `nonce_secret`, nonces are required.
    pub fn new(
        algorithms: Vec<Algorithm>,
        lifetime: Duration,
        leeway: Duration,
        seen: Arc<Replays>,
        nonce_secret: Option<&[u8]>,
    ) -> Dpop {
        let nonce_key = nonce_secret.map(|secret| {
            let mut key = [0u8; 32];
            // 32 bytes is far below HKDF-SHA256's limit: `expand` cannot fail here.
            let _ = Hkdf::<Sha256>::new(None, secret).expand(b"portcullis dpop nonce", &mut key);
            key
        });
        let algs = algorithms
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(" ");
        Dpop {
            algorithms,
            algs,
            lifetime,
            leeway,
            seen,
            nonce_key,
        }
    }

    /// The `algs` of a `WWW-Authenticate: DPoP` challenge.
    pub fn algs(&self) -> &str {
        &self.algs
    }

    /// The nonce to hand out now, when nonces are required.
    pub fn nonce(&self, now: UnixTime) -> Option<String> {
        let key = self.nonce_key?;
        Some(nonce_for(&key, now.secs() / NONCE_PERIOD.as_secs()))
    }

    /// Checks `proof` (every `DPoP` header value) against what it must be about.
    pub fn check(
        &self,
        proofs: &[&[u8]],
        expected: &Expected<'_>,
        now: UnixTime,
    ) -> Result<(), ProofError> {
        let [proof] = proofs else {
            return Err(ProofError::Missing);
        };
        let proof = std::str::from_utf8(proof).map_err(|_| ProofError::Malformed)?;
        if proof.len() > MAX_PROOF_BYTES {
            return Err(ProofError::Malformed);
        }
        let mut header =
            crate::jwt::verify::header_object(proof).map_err(|_| ProofError::Malformed)?;
        if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt")
            || header.contains_key("crit")
        {
            return Err(ProofError::Malformed);
        }
        let alg: Algorithm = header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(|a| a.parse().ok())
            .ok_or(ProofError::Algorithm)?;
        if !self.algorithms.contains(&alg) {
            return Err(ProofError::Algorithm);
        }
        let Some(Value::Object(jwk)) = header.remove("jwk") else {
            return Err(ProofError::Key);
        };
        if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
            return Err(ProofError::Key);
        }
        let jwk: Jwk = serde_json::from_value(Value::Object(jwk)).map_err(|_| ProofError::Key)?;
        let thumbprint = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|_| ProofError::Key)?;
        // The key checks of an issuer's keys apply: its algorithms, RSA of 2048 bits or more.
        let (keys, _) = KeySet::from_jwks(&JwkSet { keys: vec![jwk] });
        let key = keys.candidates(None, alg).next().ok_or(ProofError::Key)?;
        // Parsed strictly (jsonwebtoken would keep the last of duplicated members), then
        // trusted once the signature holds.
        let claims =
            crate::jwt::verify::unverified_claims(proof).map_err(|_| ProofError::Malformed)?;
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        jsonwebtoken::decode::<serde::de::IgnoredAny>(proof, &key.key, &validation)
            .map_err(|_| ProofError::Signature)?;
        self.check_claims(&claims, expected, now)?;
        if !bool::from(thumbprint.as_bytes().ct_eq(expected.jkt.as_bytes())) {
            return Err(ProofError::KeyMismatch);
        }
        self.remember(&thumbprint, &claims, now)
    }

    fn check_claims(
        &self,
        claims: &Map<String, Value>,
        expected: &Expected<'_>,
        now: UnixTime,
    ) -> Result<(), ProofError> {
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        let jti = text("jti").ok_or(ProofError::Malformed)?;
        if jti.is_empty() || jti.len() > 256 {
            return Err(ProofError::Malformed);
        }
        if text("htm") != Some(expected.method) {
            return Err(ProofError::Request);
        }
        if !same_url(text("htu").ok_or(ProofError::Request)?, expected.url) {
            return Err(ProofError::Request);
        }
        let iat = claims
            .get("iat")
            .and_then(Value::as_u64)
            .ok_or(ProofError::Time)?;
        let now_s = now.secs();
        let oldest = now_s.saturating_sub(self.lifetime.as_secs() + self.leeway.as_secs());
        if iat < oldest || iat > now_s + self.leeway.as_secs() {
            return Err(ProofError::Time);
        }
        let ath = URL_SAFE_NO_PAD.encode(Sha256::digest(expected.access_token.as_bytes()));
        let ath_ok = text("ath").is_some_and(|a| bool::from(a.as_bytes().ct_eq(ath.as_bytes())));
        if !ath_ok {
            return Err(ProofError::AccessToken);
        }
        if let Some(key) = &self.nonce_key {
            let period = now_s / NONCE_PERIOD.as_secs();
            let fresh = text("nonce").is_some_and(|n| {
                [period, period.saturating_sub(1)]
                    .iter()
                    .any(|p| bool::from(n.as_bytes().ct_eq(nonce_for(key, *p).as_bytes())))
            });
            if !fresh {
                return Err(ProofError::UseNonce);
            }
        }
        Ok(())
    }

    /// Remembers the proof's `jti` for its lifetime; a second use within it is a replay.
    fn remember(
        &self,
        thumbprint: &str,
        claims: &Map<String, Value>,
        now: UnixTime,
    ) -> Result<(), ProofError> {
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut hasher = Sha256::new();
        hasher.update(thumbprint.as_bytes());
        hasher.update([0]);
        hasher.update(jti.as_bytes());
        let id: [u8; 32] = hasher.finalize().into();
        let until = now.secs() + self.lifetime.as_secs() + 2 * self.leeway.as_secs();
        // One atomic step: of two uses at once, only one inserts.
        let mut fresh = false;
        let stored = self.seen.0.get_or_insert_with(&id, || {
            fresh = true;
            Ok::<u64, std::convert::Infallible>(until)
        });
        match stored {
            Ok(_) if fresh => Ok(()),
            Ok(expires) if expires > now.secs() => Err(ProofError::Replay),
            _ => {
                // A proof of the same key and jti whose lifetime ended long ago.
                self.seen.0.insert(id, until);
                Ok(())
            }
        }
    }
}

/// The nonce of one period: HMAC-SHA256 (HKDF-Expand) of the period under the nonce key.
fn nonce_for(key: &[u8; 32], period: u64) -> String {
    let mut out = [0u8; 18];
    if let Ok(prk) = Hkdf::<Sha256>::from_prk(key) {
        // 18 bytes is far below the limit: `expand` cannot fail.
        let _ = prk.expand(&period.to_be_bytes(), &mut out);
    }
    URL_SAFE_NO_PAD.encode(out)
}

/// Whether `htu` names `expected` (RFC 9449 §4.3: the URI without query and fragment, after
/// syntax-based normalisation: case of scheme and host, default ports, dot segments).
fn same_url(htu: &str, expected: &str) -> bool {
    let (Ok(a), Ok(b)) = (url::Url::parse(htu), url::Url::parse(expected)) else {
        return false;
    };
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
        && a.path() == b.path()
        && a.username().is_empty()
        && a.password().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::json;

    struct Holder {
        key: EncodingKey,
        jwk: Value,
    }

    fn holder() -> Holder {
        crate::jwt::provider::install();
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        Holder {
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "EC", "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            }),
        }
    }

    impl Holder {
        fn jkt(&self) -> String {
            let jwk: Jwk = serde_json::from_value(self.jwk.clone()).unwrap();
            jwk.thumbprint(ThumbprintHash::SHA256).unwrap()
        }

        fn proof(&self, claims: &Value, edit: impl FnOnce(&mut Header)) -> String {
            let mut header = Header::new(Algorithm::ES256);
            header.typ = Some("dpop+jwt".into());
            header.jwk = Some(serde_json::from_value(self.jwk.clone()).unwrap());
            edit(&mut header);
            jsonwebtoken::encode(&header, claims, &self.key).unwrap()
        }
    }

    const TOKEN: &str = "the.access.token";
    const URL: &str = "https://api.example.com/reports/1";

    fn claims(now: u64) -> Value {
        json!({
            "jti": format!("{:x}", rand::random::<u64>()), "htm": "GET", "htu": URL, "iat": now,
            "ath": URL_SAFE_NO_PAD.encode(Sha256::digest(TOKEN.as_bytes())),
        })
    }

    fn dpop(nonce: bool) -> Dpop {
        Dpop::new(
            vec![Algorithm::ES256, Algorithm::RS256],
            Duration::from_secs(60),
            Duration::from_secs(5),
            Arc::new(Replays::new(1000)),
            nonce.then_some(b"0123456789abcdef0123456789abcdef".as_slice()),
        )
    }

    fn check(d: &Dpop, h: &Holder, proof: &str, now: UnixTime) -> Result<(), ProofError> {
        let jkt = h.jkt();
        let expected = Expected {
            method: "GET",
            url: URL,
            access_token: TOKEN,
            jkt: &jkt,
        };
        d.check(&[proof.as_bytes()], &expected, now)
    }

    #[test]
    fn a_proof_for_this_request_by_the_bound_key_holds_once() {
        let (d, h) = (dpop(false), holder());
        let now = UnixTime::from_secs(jsonwebtoken::get_current_timestamp());
        let proof = h.proof(&claims(now.secs()), |_| {});
        assert_eq!(check(&d, &h, &proof, now), Ok(()));
        assert_eq!(check(&d, &h, &proof, now), Err(ProofError::Replay));
        // The query and fragment of htu do not count; scheme and host case do not either.
        let mut c = claims(now.secs());
        c["htu"] = json!("HTTPS://API.example.com:443/reports/1?x=1#y");
        assert_eq!(check(&d, &h, &h.proof(&c, |_| {}), now), Ok(()));
    }

    #[test]
    fn each_defect_of_a_proof_is_refused() {
        let (d, h) = (dpop(false), holder());
        let other = holder();
        let now = UnixTime::from_secs(jsonwebtoken::get_current_timestamp());
        let t = now.secs();
        type Edit = Box<dyn Fn(&mut Value)>;
        let edits: Vec<(&str, Edit, ProofError)> = vec![
            (
                "another method",
                Box::new(|c| c["htm"] = json!("POST")),
                ProofError::Request,
            ),
            (
                "another path",
                Box::new(|c| c["htu"] = json!("https://api.example.com/reports/2")),
                ProofError::Request,
            ),
            (
                "another host",
                Box::new(|c| c["htu"] = json!("https://evil.example.com/reports/1")),
                ProofError::Request,
            ),
            (
                "http for https",
                Box::new(|c| c["htu"] = json!("http://api.example.com/reports/1")),
                ProofError::Request,
            ),
            (
                "too old",
                Box::new(move |c| c["iat"] = json!(t - 120)),
                ProofError::Time,
            ),
            (
                "from the future",
                Box::new(move |c| c["iat"] = json!(t + 60)),
                ProofError::Time,
            ),
            (
                "no iat",
                Box::new(|c| {
                    c.as_object_mut().unwrap().remove("iat");
                }),
                ProofError::Time,
            ),
            (
                "another token",
                Box::new(|c| c["ath"] = json!("x")),
                ProofError::AccessToken,
            ),
            (
                "no ath",
                Box::new(|c| {
                    c.as_object_mut().unwrap().remove("ath");
                }),
                ProofError::AccessToken,
            ),
            (
                "no jti",
                Box::new(|c| {
                    c.as_object_mut().unwrap().remove("jti");
                }),
                ProofError::Malformed,
            ),
        ];
        for (case, edit, want) in edits {
            let mut c = claims(t);
            edit(&mut c);
            assert_eq!(
                check(&d, &h, &h.proof(&c, |_| {}), now),
                Err(want),
                "{case}"
            );
        }
        let typ = h.proof(&claims(t), |hd| hd.typ = Some("JWT".into()));
        assert_eq!(check(&d, &h, &typ, now), Err(ProofError::Malformed));
        let no_jwk = h.proof(&claims(t), |hd| hd.jwk = None);
        assert_eq!(check(&d, &h, &no_jwk, now), Err(ProofError::Key));
        // Signed by another key than its jwk says: the signature fails.
        let swapped = other.proof(&claims(t), |hd| {
            hd.jwk = Some(serde_json::from_value(h.jwk.clone()).unwrap())
        });
        assert_eq!(check(&d, &h, &swapped, now), Err(ProofError::Signature));
        // A good proof by a key the token is not bound to.
        let foreign = other.proof(&claims(t), |_| {});
        assert_eq!(check(&d, &h, &foreign, now), Err(ProofError::KeyMismatch));
        // Symmetric algorithms never; none does not parse.
        let hs = jsonwebtoken::encode(
            &{
                let mut hd = Header::new(Algorithm::HS256);
                hd.typ = Some("dpop+jwt".into());
                hd
            },
            &claims(t),
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert_eq!(check(&d, &h, &hs, now), Err(ProofError::Algorithm));
        // A private key member in the jwk is refused even with a good signature.
        let mut private = h.jwk.clone();
        private["d"] = json!("AAAA");
        let header = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private}))
                .unwrap(),
        );
        let good = h.proof(&claims(t), |_| {});
        let mut parts = good.splitn(2, '.');
        let (_, rest) = (parts.next(), parts.next().unwrap());
        assert_eq!(
            check(&d, &h, &format!("{header}.{rest}"), now),
            Err(ProofError::Key)
        );
        // No proof, or two.
        let jkt = h.jkt();
        let expected = Expected {
            method: "GET",
            url: URL,
            access_token: TOKEN,
            jkt: &jkt,
        };
        assert_eq!(d.check(&[], &expected, now), Err(ProofError::Missing));
        let p = good.as_bytes();
        assert_eq!(d.check(&[p, p], &expected, now), Err(ProofError::Missing));
    }

    #[test]
    fn nonces_are_required_when_asked_for_and_last_two_periods() {
        let (d, h) = (dpop(true), holder());
        let now = UnixTime::from_secs(jsonwebtoken::get_current_timestamp());
        let without = h.proof(&claims(now.secs()), |_| {});
        assert_eq!(check(&d, &h, &without, now), Err(ProofError::UseNonce));
        let nonce = d.nonce(now).unwrap();
        // A proof made at `at` with the nonce handed out at `now`.
        let with_nonce_at = |at: UnixTime| {
            let mut c = claims(at.secs());
            c["nonce"] = json!(nonce);
            check(&d, &h, &h.proof(&c, |_| {}), at)
        };
        assert_eq!(with_nonce_at(now), Ok(()));
        // The same nonce is still good a period later, not two.
        assert_eq!(with_nonce_at(now.plus(NONCE_PERIOD)), Ok(()));
        assert_eq!(
            with_nonce_at(now.plus(NONCE_PERIOD * 2)),
            Err(ProofError::UseNonce)
        );
        assert!(dpop(false).nonce(now).is_none());
    }
}
