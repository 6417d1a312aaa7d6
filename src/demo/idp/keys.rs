//! The dev IdP's signing keys: ES256 keys made at start, rotatable at run time.
//!
//! Why rotation: a relying party must refetch the JWKS when a token names a key it has not seen,
//! and must stop trusting keys that left the set. Tests drive both through
//! [`KeyRing::rotate`] and [`KeyRing::retire_old`].

use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::lock;

/// Why a key could not be made or used.
#[derive(Debug, thiserror::Error)]
pub(super) enum KeyError {
    /// The system random source failed, or ring refused the key it produced.
    #[error("could not generate an ES256 signing key")]
    Generate,
    /// jsonwebtoken refused to sign or to load the public key.
    #[error("JWT signing failed: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    /// A caller-built header asked for an algorithm the P-256 keys cannot produce. Refused here
    /// rather than left to the crypto provider, so the error names the cause.
    #[error("the dev IdP signs only ES256; the header asks for {0:?}")]
    Algorithm(Algorithm),
}

/// One P-256 key pair, with everything needed to sign and to publish it.
pub(super) struct SigningKey {
    kid: String,
    x: String,
    y: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl SigningKey {
    fn generate() -> Result<SigningKey, KeyError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| KeyError::Generate)?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| KeyError::Generate)?;
        // Uncompressed SEC1 point: 0x04 || x (32 bytes) || y (32 bytes).
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 0x04 {
            return Err(KeyError::Generate);
        }
        let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&point[33..]);
        let decoding = DecodingKey::from_ec_components(&x, &y)?;
        Ok(SigningKey {
            kid: thumbprint(&x, &y),
            x,
            y,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            decoding,
        })
    }

    pub(super) fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    fn jwk(&self) -> Value {
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": self.x,
            "y": self.y,
            "kid": self.kid,
            "use": "sig",
            "alg": "ES256",
        })
    }

    /// Signs `claims` with header `typ` (`JWT` for ID tokens, `at+jwt` for access tokens).
    fn sign(&self, typ: &str, claims: &Value) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(typ.to_owned());
        header.kid = Some(self.kid.clone());
        self.sign_with_header(&header, claims)
    }

    /// Signs under `header` exactly as given (`kid`, `typ` and the rest untouched), as long as
    /// it asks for ES256, the only thing this key can produce.
    fn sign_with_header(&self, header: &Header, claims: &Value) -> Result<String, KeyError> {
        if header.alg != Algorithm::ES256 {
            return Err(KeyError::Algorithm(header.alg));
        }
        Ok(jsonwebtoken::encode(header, claims, &self.encoding)?)
    }
}

/// The RFC 7638 JWK thumbprint: a stable, collision-free `kid` without a counter.
fn thumbprint(x: &str, y: &str) -> String {
    // Members in lexicographic order, no whitespace, as RFC 7638 §3.2 requires.
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The published keys; the last one signs. Keys are behind `Arc` so signing happens outside
/// the lock.
pub(super) struct KeyRing {
    keys: Mutex<Vec<Arc<SigningKey>>>,
}

impl KeyRing {
    pub(super) fn new() -> Result<KeyRing, KeyError> {
        Ok(KeyRing {
            keys: Mutex::new(vec![Arc::new(SigningKey::generate()?)]),
        })
    }

    /// Adds a fresh key and signs with it from now on; the old keys stay published.
    pub(super) fn rotate(&self) -> Result<(), KeyError> {
        let key = Arc::new(SigningKey::generate()?);
        lock(&self.keys).push(key);
        Ok(())
    }

    /// Unpublishes every key but the current one.
    pub(super) fn retire_old(&self) {
        let mut keys = lock(&self.keys);
        let keep = keys.len().saturating_sub(1);
        keys.drain(..keep);
    }

    fn current(&self) -> Option<Arc<SigningKey>> {
        lock(&self.keys).last().cloned()
    }

    /// A published key by `kid`.
    pub(super) fn find(&self, kid: &str) -> Option<Arc<SigningKey>> {
        lock(&self.keys).iter().find(|k| k.kid == kid).cloned()
    }

    pub(super) fn sign(&self, typ: &str, claims: &Value) -> Result<String, KeyError> {
        // The ring always holds one key: `retire_old` keeps the last, and nothing else removes.
        let key = self.current().ok_or(KeyError::Generate)?;
        key.sign(typ, claims)
    }

    /// Signs with the current key under a caller-built header; see [`SigningKey::sign_with_header`].
    pub(super) fn sign_with_header(
        &self,
        header: &Header,
        claims: &Value,
    ) -> Result<String, KeyError> {
        let key = self.current().ok_or(KeyError::Generate)?;
        key.sign_with_header(header, claims)
    }

    /// The `kid` of the key that signs now.
    pub(super) fn current_kid(&self) -> Option<String> {
        self.current().map(|key| key.kid.clone())
    }

    /// The JWK Set document.
    pub(super) fn jwks(&self) -> Value {
        let keys: Vec<Value> = lock(&self.keys).iter().map(|k| k.jwk()).collect();
        json!({ "keys": keys })
    }
}
