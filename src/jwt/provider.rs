//! A `jsonwebtoken` crypto provider backed by `ring`.
//!
//! Why: pingora's rustls feature already links `ring`; jsonwebtoken's own backends would add either
//! a second complete crypto library (aws-lc-rs) or pure-Rust RSA/ECDSA that is 4–8× slower
//! (see `shared/notes/hot-path-costs.md`). A cold RS256 check on ring costs ~26 µs.
//!
//! Policy lives here too, as a second line behind the key set: a verifier is only built when the
//! key's family matches the algorithm's, so an RSA public key can never be used as an HMAC secret,
//! and ring's RSA parameters refuse moduli under 2048 bits.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind, Result};
use jsonwebtoken::jwk::ThumbprintHash;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature as sig;

/// Installs the provider process-wide. Idempotent: a second call (tests start many servers in one
/// process) keeps the first installation, which is this same provider.
pub fn install() {
    let _ = PROVIDER.install_default();
}

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: |_| Err(ErrorKind::InvalidKeyFormat.into()),
        rsa_pub_components_from_public_key: |_| Err(ErrorKind::InvalidKeyFormat.into()),
        ec_pub_components_from_private_key: |_, _| Err(ErrorKind::InvalidKeyFormat.into()),
        ed_pub_components_from_private_key: |_, _| Err(ErrorKind::InvalidKeyFormat.into()),
        compute_digest,
    },
};

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    let alg = match hash {
        ThumbprintHash::SHA256 => &ring::digest::SHA256,
        ThumbprintHash::SHA384 => &ring::digest::SHA384,
        ThumbprintHash::SHA512 => &ring::digest::SHA512,
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(ring::digest::digest(alg, data).as_ref().to_vec())
}

fn family_mismatch() -> Error {
    ErrorKind::InvalidKeyFormat.into()
}

/// What a verifier checks with: ring parameters plus the public key material.
enum VerifyKey {
    Rsa {
        params: &'static sig::RsaParameters,
        key: RsaKey,
    },
    Unparsed {
        alg: &'static dyn sig::VerificationAlgorithm,
        bytes: Vec<u8>,
    },
    Hmac(ring::hmac::Key),
}

enum RsaKey {
    Components { n: Vec<u8>, e: Vec<u8> },
    Der(Vec<u8>),
}

struct RingVerifier {
    alg: Algorithm,
    key: VerifyKey,
}

impl signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let ok = match &self.key {
            VerifyKey::Rsa {
                params,
                key: RsaKey::Components { n, e },
            } => sig::RsaPublicKeyComponents { n, e }
                .verify(params, msg, signature)
                .is_ok(),
            VerifyKey::Rsa {
                params,
                key: RsaKey::Der(der),
            } => sig::UnparsedPublicKey::new(*params, der)
                .verify(msg, signature)
                .is_ok(),
            VerifyKey::Unparsed { alg, bytes } => sig::UnparsedPublicKey::new(*alg, bytes)
                .verify(msg, signature)
                .is_ok(),
            // ring compares the tag in constant time.
            VerifyKey::Hmac(key) => ring::hmac::verify(key, msg, signature).is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(signature::Error::new())
        }
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn rsa_params(alg: Algorithm) -> Option<&'static sig::RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

fn hmac_alg(alg: Algorithm) -> Option<ring::hmac::Algorithm> {
    Some(match alg {
        Algorithm::HS256 => ring::hmac::HMAC_SHA256,
        Algorithm::HS384 => ring::hmac::HMAC_SHA384,
        Algorithm::HS512 => ring::hmac::HMAC_SHA512,
        _ => return None,
    })
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    let alg = *alg;
    if !key.family().algorithms().contains(&alg) {
        return Err(family_mismatch());
    }
    let verify_key = if let Some(params) = rsa_params(alg) {
        let key = match key.kind() {
            DecodingKeyKind::RsaModulusExponent { n, e } => RsaKey::Components {
                n: n.clone(),
                e: e.clone(),
            },
            DecodingKeyKind::SecretOrDer(der) => RsaKey::Der(der.clone()),
        };
        VerifyKey::Rsa { params, key }
    } else if let Some(hmac) = hmac_alg(alg) {
        VerifyKey::Hmac(ring::hmac::Key::new(hmac, key.try_get_as_bytes()?))
    } else {
        let ring_alg: &'static dyn sig::VerificationAlgorithm = match alg {
            Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
            Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
            Algorithm::EdDSA => &sig::ED25519,
            _ => return Err(ErrorKind::InvalidAlgorithm.into()),
        };
        VerifyKey::Unparsed {
            alg: ring_alg,
            bytes: key.try_get_as_bytes()?.to_vec(),
        }
    };
    Ok(Box::new(RingVerifier {
        alg,
        key: verify_key,
    }))
}

enum SignKey {
    Rsa(&'static dyn sig::RsaEncoding, sig::RsaKeyPair),
    Ecdsa(sig::EcdsaKeyPair),
    Ed(sig::Ed25519KeyPair),
    Hmac(ring::hmac::Key),
}

struct RingSigner {
    alg: Algorithm,
    key: SignKey,
}

impl signature::Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let rng = ring::rand::SystemRandom::new();
        match &self.key {
            SignKey::Rsa(encoding, pair) => {
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(*encoding, &rng, msg, &mut out)
                    .map_err(|_| signature::Error::new())?;
                Ok(out)
            }
            SignKey::Ecdsa(pair) => pair
                .sign(&rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| signature::Error::new()),
            SignKey::Ed(pair) => Ok(pair.sign(msg).as_ref().to_vec()),
            SignKey::Hmac(key) => Ok(ring::hmac::sign(key, msg).as_ref().to_vec()),
        }
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    let alg = *alg;
    if !key.family().algorithms().contains(&alg) {
        return Err(family_mismatch());
    }
    let bytes = key.as_bytes();
    let sign_key = match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => {
            let encoding: &'static dyn sig::RsaEncoding = match alg {
                Algorithm::RS256 => &sig::RSA_PKCS1_SHA256,
                Algorithm::RS384 => &sig::RSA_PKCS1_SHA384,
                Algorithm::RS512 => &sig::RSA_PKCS1_SHA512,
                Algorithm::PS256 => &sig::RSA_PSS_SHA256,
                Algorithm::PS384 => &sig::RSA_PSS_SHA384,
                _ => &sig::RSA_PSS_SHA512,
            };
            let pair = sig::RsaKeyPair::from_der(bytes)
                .or_else(|_| sig::RsaKeyPair::from_pkcs8(bytes))
                .map_err(|e| Error::from(ErrorKind::InvalidRsaKey(e.to_string())))?;
            SignKey::Rsa(encoding, pair)
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            let signing = if alg == Algorithm::ES256 {
                &sig::ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &sig::ECDSA_P384_SHA384_FIXED_SIGNING
            };
            let rng = ring::rand::SystemRandom::new();
            SignKey::Ecdsa(
                sig::EcdsaKeyPair::from_pkcs8(signing, bytes, &rng)
                    .map_err(|_| Error::from(ErrorKind::InvalidEcdsaKey))?,
            )
        }
        Algorithm::EdDSA => SignKey::Ed(
            sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes)
                .map_err(|_| Error::from(ErrorKind::InvalidEddsaKey))?,
        ),
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            let hmac = hmac_alg(alg).ok_or_else(|| Error::from(ErrorKind::InvalidAlgorithm))?;
            SignKey::Hmac(ring::hmac::Key::new(hmac, bytes))
        }
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(Box::new(RingSigner { alg, key: sign_key }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, encode, Header, Validation};
    use ring::signature::KeyPair;
    use serde_json::{json, Value};

    fn es256_pair() -> (EncodingKey, DecodingKey) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = sig::EcdsaKeyPair::from_pkcs8(
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        let public = pair.public_key().as_ref().to_vec();
        let enc = EncodingKey::from_ec_der(pkcs8.as_ref());
        let b64 =
            |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b);
        let dec =
            DecodingKey::from_ec_components(&b64(&public[1..33]), &b64(&public[33..])).unwrap();
        (enc, dec)
    }

    #[test]
    fn es256_round_trip_and_tamper() {
        install();
        let (enc, dec) = es256_pair();
        let claims = json!({"sub": "alice", "exp": 4_000_000_000u64});
        let token = encode(&Header::new(Algorithm::ES256), &claims, &enc).unwrap();
        let v = Validation::new(Algorithm::ES256);
        let got = decode::<Value>(&token, &dec, &v).unwrap();
        assert_eq!(got.claims["sub"], "alice");
        let mut tampered = token.clone();
        tampered.push('A');
        assert!(decode::<Value>(&tampered, &dec, &v).is_err());
    }

    #[test]
    fn hmac_with_an_ec_public_key_is_refused() {
        install();
        let (_, dec) = es256_pair();
        assert!(new_verifier(&Algorithm::HS256, &dec).is_err());
        assert!(new_verifier(&Algorithm::RS256, &dec).is_err());
    }
}
