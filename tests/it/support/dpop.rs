//! A DPoP client (RFC 9449) for the tests: an ES256 key, its public JWK and thumbprint, and
//! proofs signed with it for a method, a URL and an access token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::tokens::{now, random_id};

/// A key a DPoP client holds.
pub struct DpopKey {
    key: EncodingKey,
    jwk: Value,
}

impl DpopKey {
    pub fn new() -> DpopKey {
        portcullis::jwt::provider::install();
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("pair");
        let point = pair.public_key().as_ref();
        DpopKey {
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "EC", "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            }),
        }
    }

    /// The RFC 7638 thumbprint: a bound token's `cnf.jkt`.
    pub fn jkt(&self) -> String {
        let jwk: Jwk = serde_json::from_value(self.jwk.clone()).expect("jwk");
        jwk.thumbprint(ThumbprintHash::SHA256).expect("thumbprint")
    }

    /// A proof for `method` `url` carrying `token`, with `nonce` when given.
    pub fn proof(&self, method: &str, url: &str, token: &str, nonce: Option<&str>) -> String {
        let mut claims = json!({
            "jti": random_id(), "htm": method, "htu": url, "iat": now(),
            "ath": URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes())),
        });
        if let Some(n) = nonce {
            claims["nonce"] = json!(n);
        }
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(serde_json::from_value(self.jwk.clone()).expect("jwk"));
        jsonwebtoken::encode(&header, &claims, &self.key).expect("proof")
    }
}
