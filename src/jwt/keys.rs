//! An issuer's verification keys, built from its JWKS.
//!
//! Each key remembers which algorithms it may verify: the JWK's own `alg` when it names one,
//! otherwise the asymmetric algorithms of its type. HMAC is never derived from a JWKS, RSA
//! moduli under 2048 bits are dropped, and keys marked for encryption are ignored. A token's
//! `alg` must be allowed by the key that verifies it, so a public key can never be
//! turned into an HMAC secret and an ES256 header cannot select an ES384 key.

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Asymmetric algorithms we verify. `none` and HMAC are absent on purpose.
pub const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];
/// The RSA family: the first six of [`ASYMMETRIC`].
const RSA: &[Algorithm] = ASYMMETRIC.split_at(6).0;

/// The smallest RSA modulus accepted, in bytes.
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// One key an issuer verifies with, and the algorithms it may be used with.
pub struct VerificationKey {
    /// Its key id, if it has one.
    pub kid: Option<String>,
    /// The key itself.
    pub key: DecodingKey,
    /// The algorithms it may verify (never `none`, never HMAC for a public key).
    pub algorithms: Vec<Algorithm>,
}

#[derive(Default)]
/// The usable keys of one issuer.
pub struct KeySet {
    keys: Vec<VerificationKey>,
}

impl KeySet {
    /// Builds the usable keys of `set`; the second value counts keys skipped as unusable.
    pub fn from_jwks(set: &JwkSet) -> (KeySet, usize) {
        let mut keys = Vec::new();
        let mut skipped = 0;
        for jwk in &set.keys {
            match usable(jwk) {
                Some(k) => keys.push(k),
                None => skipped += 1,
            }
        }
        (KeySet { keys }, skipped)
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key has this id.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The keys that may verify a token with this header: allowing `alg`, and with the same
    /// `kid` when both the token and the key name one (configured static keys often have none).
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a VerificationKey> + 'a {
        self.keys.iter().filter(move |k| {
            k.algorithms.contains(&alg)
                && (kid.is_none() || k.kid.is_none() || k.kid.as_deref() == kid)
        })
    }

    /// Keys from files: PEM public keys (RSA, EC P-256/P-384, Ed25519) or JSON (one JWK or a
    /// JWKS). For issuers that publish no discovery document.
    pub fn from_files(paths: &[std::path::PathBuf]) -> Result<KeySet, String> {
        let mut keys = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
            let before = keys.len();
            if text.trim_start().starts_with('{') {
                let value: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| format!("`{}` is not JSON: {e}", path.display()))?;
                let set: JwkSet = if value.get("keys").is_some() {
                    serde_json::from_value(value)
                } else {
                    serde_json::from_value(serde_json::json!({ "keys": [value] }))
                }
                .map_err(|e| format!("`{}` is not a JWK or JWKS: {e}", path.display()))?;
                keys.extend(set.keys.iter().filter_map(usable));
            } else {
                keys.push(
                    from_pem(text.as_bytes()).map_err(|e| format!("`{}`: {e}", path.display()))?,
                );
            }
            if keys.len() == before {
                return Err(format!("`{}` holds no usable public key", path.display()));
            }
        }
        Ok(KeySet { keys })
    }

    /// An HMAC key, for an issuer explicitly configured with a shared secret (never derived
    /// from a JWKS).
    pub fn shared_secret(secret: &[u8]) -> KeySet {
        KeySet {
            keys: vec![VerificationKey {
                kid: None,
                key: DecodingKey::from_secret(secret),
                algorithms: vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
            }],
        }
    }
}

fn from_pem(pem: &[u8]) -> Result<VerificationKey, String> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        let bits = match key.kind() {
            jsonwebtoken::DecodingKeyKind::SecretOrDer(der) => rsa_modulus_bits(der),
            jsonwebtoken::DecodingKeyKind::RsaModulusExponent { n, .. } => {
                Some(n.iter().skip_while(|b| **b == 0).count() * 8)
            }
        };
        return match bits {
            Some(b) if b >= MIN_RSA_MODULUS_BYTES * 8 => Ok(VerificationKey {
                kid: None,
                key,
                algorithms: RSA.to_vec(),
            }),
            Some(b) => Err(format!("RSA key of {b} bits; at least 2048 are required")),
            None => Err("unreadable RSA key".into()),
        };
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        let alg = match key.try_get_as_bytes().map(<[u8]>::len) {
            Ok(65) => Algorithm::ES256,
            Ok(97) => Algorithm::ES384,
            _ => return Err("EC key on an unsupported curve (P-256 and P-384 are)".into()),
        };
        return Ok(VerificationKey {
            kid: None,
            key,
            algorithms: vec![alg],
        });
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Ok(VerificationKey {
            kid: None,
            key,
            algorithms: vec![Algorithm::EdDSA],
        });
    }
    Err("not a PEM public key (RSA, EC or Ed25519)".into())
}

/// Bits of the modulus in a PKCS#1 `RSAPublicKey` (DER: SEQUENCE { INTEGER n, INTEGER e }).
fn rsa_modulus_bits(der: &[u8]) -> Option<usize> {
    fn header(der: &[u8], tag: u8) -> Option<(usize, &[u8])> {
        let (&t, rest) = der.split_first()?;
        if t != tag {
            return None;
        }
        let (&first, rest) = rest.split_first()?;
        if first < 0x80 {
            return Some((first as usize, rest));
        }
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 2 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        Some((len, &rest[n..]))
    }
    let (_, body) = header(der, 0x30)?;
    let (len, rest) = header(body, 0x02)?;
    let n = rest.get(..len)?;
    Some(n.iter().skip_while(|b| **b == 0).count() * 8)
}

fn usable(jwk: &Jwk) -> Option<VerificationKey> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = decode_b64(&p.n)?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return None;
            }
            RSA.to_vec()
        }
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
            _ => return None,
        },
        // Symmetric keys in a public JWKS are a misconfiguration at best.
        _ => return None,
    };
    let algorithms = match jwk.common.key_algorithm {
        None => family,
        Some(named) => {
            let alg = key_algorithm(named)?;
            if !family.contains(&alg) {
                return None;
            }
            vec![alg]
        }
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerificationKey {
        kid: jwk.common.key_id.clone(),
        key,
        algorithms,
    })
}

fn key_algorithm(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(json: &str) -> JwkSet {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn symmetric_and_small_rsa_keys_are_dropped() {
        let jwks = set(r#"{"keys":[
            {"kty":"oct","k":"c2VjcmV0","kid":"hmac"},
            {"kty":"RSA","n":"AQAB","e":"AQAB","kid":"tiny"},
            {"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"ec","use":"enc"}
        ]}"#);
        let (keys, skipped) = KeySet::from_jwks(&jwks);
        assert!(keys.is_empty());
        assert_eq!(skipped, 3);
    }

    #[test]
    fn ec_key_allows_only_its_curve() {
        let jwks = set(r#"{"keys":[
            {"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"ec"}
        ]}"#);
        let (keys, _) = KeySet::from_jwks(&jwks);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys.candidates(Some("ec"), Algorithm::ES256).count(), 1);
        assert_eq!(keys.candidates(Some("ec"), Algorithm::ES384).count(), 0);
        assert_eq!(keys.candidates(Some("ec"), Algorithm::HS256).count(), 0);
        assert_eq!(keys.candidates(Some("other"), Algorithm::ES256).count(), 0);
        assert_eq!(keys.candidates(None, Algorithm::ES256).count(), 1);
    }
}
