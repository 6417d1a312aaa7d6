//! The ES256 keys portcullis signs identity with (ALB's `x-amzn-oidc-data`, the
//! `X-Portcullis-Assertion`), derived rather than stored.
//!
//! Each key is derived (HKDF-SHA256) from a session secret and a rotation period: every
//! replica with the same secrets signs with the same key and publishes the same set, without
//! sharing anything else, and keys rotate every [`ROTATION`] by themselves. The set published
//! holds the keys of the period before, this one and the next, for every secret, so a key is
//! published a whole period before it signs and stays published a whole period after: a
//! verifier's cache or a replica's clock a little off never meets an unknown key. Rotating
//! the session secrets rotates these keys the same way (the first secret signs, all are
//! published). Without session secrets the keys come from a random secret of this process.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hkdf::Hkdf;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::clock::UnixTime;

/// How long one key signs.
pub(crate) const ROTATION: Duration = Duration::from_secs(24 * 3600);

/// What the derivation is for: no other use of the session secrets can meet these keys.
const INFO: &[u8] = b"portcullis signed identity key";

/// One key pair and how it is published.
pub(crate) struct Key {
    /// UUID-shaped (ALB's form, which its verifiers check): from the public key's hash.
    pub kid: String,
    pair: EcdsaKeyPair,
    /// SubjectPublicKeyInfo PEM: what ALB's key endpoint serves.
    pub pem: String,
    /// The public JWK.
    pub jwk: Value,
}

/// The keys of one rotation period.
pub(crate) struct KeyRing {
    period: u64,
    /// Signs now: the first secret's key of this period.
    signing: Arc<Key>,
    /// Every key a verifier may meet: before, now and next, for every secret.
    published: Vec<Arc<Key>>,
}

impl KeyRing {
    /// The key of `kid`, if published.
    pub(crate) fn get(&self, kid: &str) -> Option<&Arc<Key>> {
        self.published.iter().find(|k| k.kid == kid)
    }

    /// The published keys as a JWKS.
    pub(crate) fn jwks(&self) -> Value {
        json!({ "keys": self.published.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
    }
}

/// The signing keys, derived from secrets.
pub(crate) struct SigningKeys {
    secrets: Vec<Vec<u8>>,
    /// The ring of the current period: read on every signed request, without a lock.
    current: ArcSwapOption<KeyRing>,
}

/// A key could not be made (a derivation that never gave a valid scalar; not met in practice).
#[derive(Debug, thiserror::Error)]
#[error("an identity-signing key could not be derived")]
pub(crate) struct KeyError;

impl SigningKeys {
    /// Keys from `secrets` (the session secrets, the first signs); a random secret of this
    /// process when there are none.
    pub(crate) fn new(secrets: Vec<Vec<u8>>) -> SigningKeys {
        let secrets = if secrets.is_empty() {
            use rand::RngCore;
            let mut own = vec![0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut own);
            vec![own]
        } else {
            secrets
        };
        SigningKeys {
            secrets,
            current: ArcSwapOption::empty(),
        }
    }

    /// The keys of the period `now` is in (derived once per period).
    pub(crate) fn ring(&self, now: UnixTime) -> Result<Arc<KeyRing>, KeyError> {
        let period = now.secs() / ROTATION.as_secs();
        if let Some(ring) = self.current.load_full().filter(|r| r.period == period) {
            return Ok(ring);
        }
        let mut published = Vec::new();
        let mut signing = None;
        for (i, secret) in self.secrets.iter().enumerate() {
            for p in [period, period.saturating_sub(1), period + 1] {
                let key = Arc::new(derive(secret, p)?);
                if i == 0 && p == period {
                    signing = Some(key.clone());
                }
                published.push(key);
            }
        }
        let ring = Arc::new(KeyRing {
            period,
            signing: signing.ok_or(KeyError)?,
            published,
        });
        // Two requests at a period's start may both derive it: the same keys either way.
        self.current.store(Some(ring.clone()));
        Ok(ring)
    }

    /// A compact JWS of `header` (to which `alg` and `kid` are added) and `payload`, signed
    /// with the key of the moment. `padded`: base64url with `=` padding, as ALB writes its
    /// tokens; standard JWTs have none.
    pub(crate) fn sign(
        &self,
        now: UnixTime,
        mut header: serde_json::Map<String, Value>,
        payload: &Value,
        padded: bool,
    ) -> Result<String, KeyError> {
        let ring = self.ring(now)?;
        let key = &ring.signing;
        header.insert("alg".into(), json!("ES256"));
        header.insert("kid".into(), json!(key.kid));
        let encode = |bytes: &[u8]| {
            let mut s = URL_SAFE_NO_PAD.encode(bytes);
            if padded {
                while s.len() % 4 != 0 {
                    s.push('=');
                }
            }
            s
        };
        let input = format!(
            "{}.{}",
            encode(Value::Object(header).to_string().as_bytes()),
            encode(payload.to_string().as_bytes())
        );
        let rng = ring::rand::SystemRandom::new();
        let signature = key
            .pair
            .sign(&rng, input.as_bytes())
            .map_err(|_| KeyError)?;
        Ok(format!("{input}.{}", encode(signature.as_ref())))
    }
}

/// The key of `secret` for rotation period `period`.
fn derive(secret: &[u8], period: u64) -> Result<Key, KeyError> {
    let hk = Hkdf::<Sha256>::new(Some(&period.to_be_bytes()), secret);
    // A 32-byte string is a valid P-256 scalar but for a chance of about 2^-32; try again with
    // the next counter then.
    for counter in 0u8..=16 {
        let mut okm = [0u8; 32];
        hk.expand_multi_info(&[INFO, &[counter]], &mut okm)
            .map_err(|_| KeyError)?;
        let Ok(secret) = p256::SecretKey::from_slice(&okm) else {
            continue;
        };
        let pkcs8 = secret.to_pkcs8_der().map_err(|_| KeyError)?;
        let rng = ring::rand::SystemRandom::new();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_bytes(), &rng)
                .map_err(|_| KeyError)?;
        let public = secret.public_key();
        let spki = public.to_public_key_der().map_err(|_| KeyError)?;
        let pem = public
            .to_public_key_pem(LineEnding::LF)
            .map_err(|_| KeyError)?;
        let hash = Sha256::digest(spki.as_bytes());
        let hex: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
        let kid = format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        );
        // The uncompressed point: 0x04, x, y.
        let point = pair.public_key().as_ref();
        let (x, y) = (&point[1..33], &point[33..65]);
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
            "kid": kid,
            "alg": "ES256",
            "use": "sig",
        });
        return Ok(Key {
            kid,
            pair,
            pem,
            jwk,
        });
    }
    Err(KeyError)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days: u64) -> UnixTime {
        UnixTime::from_secs(days * ROTATION.as_secs() + 5)
    }

    #[test]
    fn replicas_with_the_same_secrets_agree_and_keys_rotate_with_overlap() {
        let a = SigningKeys::new(vec![b"first secret of thirty-two bytes".to_vec()]);
        let b = SigningKeys::new(vec![b"first secret of thirty-two bytes".to_vec()]);
        let (ra, rb) = (a.ring(at(100)).unwrap(), b.ring(at(100)).unwrap());
        assert_eq!(ra.signing.kid, rb.signing.kid);
        assert_eq!(ra.jwks(), rb.jwks());
        // Tomorrow's key is published today; today's is still published tomorrow.
        let tomorrow = a.ring(at(101)).unwrap();
        assert!(ra.get(&tomorrow.signing.kid).is_some());
        assert!(tomorrow.get(&ra.signing.kid).is_some());
        assert_ne!(tomorrow.signing.kid, ra.signing.kid);
        // Another secret: other keys; a rotated secret list publishes both.
        let other = SigningKeys::new(vec![b"another secret, thirty-two bytes".to_vec()]);
        assert!(ra.get(&other.ring(at(100)).unwrap().signing.kid).is_none());
        let rotated = SigningKeys::new(vec![
            b"another secret, thirty-two bytes".to_vec(),
            b"first secret of thirty-two bytes".to_vec(),
        ]);
        let rr = rotated.ring(at(100)).unwrap();
        assert!(rr.get(&ra.signing.kid).is_some());
        assert_eq!(rr.published.len(), 6);
        let uuid = regex_like_uuid(&ra.signing.kid);
        assert!(uuid, "{}", ra.signing.kid);
    }

    fn regex_like_uuid(s: &str) -> bool {
        let parts: Vec<&str> = s.split('-').collect();
        parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
            && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
    }

    #[test]
    fn a_signature_verifies_with_the_published_key() {
        let keys = SigningKeys::new(Vec::new());
        let now = at(3);
        let token = keys
            .sign(now, serde_json::Map::new(), &json!({"sub": "alice"}), false)
            .unwrap();
        let ring = keys.ring(now).unwrap();
        let header = crate::jwt::verify::header(&token).unwrap();
        let key = ring.get(header.kid.as_deref().unwrap()).unwrap();
        let (input, sig) = token.rsplit_once('.').unwrap();
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            key.pair.public_key().as_ref(),
        );
        public
            .verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
            .unwrap();
        // Padded, as ALB writes: every segment a multiple of four.
        let padded = keys
            .sign(now, serde_json::Map::new(), &json!({"sub": "al"}), true)
            .unwrap();
        assert!(padded.split('.').all(|s| s.len() % 4 == 0), "{padded}");
    }
}
