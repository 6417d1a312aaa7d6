//! ID token validation (OpenID Connect Core §3.1.3.7): the shared JWT checks of
//! [`crate::jwt::verify`] (signature by a key the issuer published, with an algorithm that key
//! allows; `iss`, `aud`, `exp`, `nbf`, `iat`), plus `azp`, `nonce` and a required `iat`/`sub`.

use std::time::Duration;

use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::jwt::keys::KeySet;
use crate::jwt::verify::{self, Expect, VerifyError};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdTokenError {
    #[error("{0}")]
    Jwt(#[from] VerifyError),
    #[error("azp does not name this client")]
    Azp,
    #[error("nonce mismatch")]
    Nonce,
}

pub(crate) struct Expectations<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// The nonce sent in the authorization request; `None` for tokens from a refresh.
    pub nonce: Option<&'a str>,
    pub leeway: Duration,
    /// The time token times are compared with.
    pub now: crate::clock::UnixTime,
}

/// Verifies `token` against `keys` and returns its claims.
pub(crate) fn verify(
    token: &str,
    keys: &KeySet,
    expect: &Expectations<'_>,
) -> Result<Map<String, Value>, IdTokenError> {
    let audiences = [expect.client_id.to_string()];
    let verified = verify::verify(
        token,
        keys,
        &Expect {
            issuer: expect.issuer,
            audiences: &audiences,
            leeway: expect.leeway,
            now: expect.now,
        },
    )?;
    check_claims(verified.claims, expect)
}

/// The ID-token rules on top of the shared JWT checks.
pub(crate) fn check_claims(
    claims: Map<String, Value>,
    expect: &Expectations<'_>,
) -> Result<Map<String, Value>, IdTokenError> {
    for required in ["iat", "sub"] {
        if !claims.contains_key(required) {
            return Err(VerifyError::MissingClaim(required.into()).into());
        }
    }
    // azp: required to be us when present; required when there are several audiences.
    let several_audiences = matches!(claims.get("aud"), Some(Value::Array(a)) if a.len() > 1);
    match claims.get("azp") {
        Some(Value::String(azp)) if azp == expect.client_id => {}
        None if !several_audiences => {}
        _ => return Err(IdTokenError::Azp),
    }
    if let Some(expected) = expect.nonce {
        let got = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
        if !bool::from(got.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(IdTokenError::Nonce);
        }
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::json;

    struct Signer {
        enc: EncodingKey,
        jwks: JwkSet,
        x: String,
    }

    fn signer(kid: &str) -> Signer {
        crate::jwt::provider::install();
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let p = pair.public_key().as_ref();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let x = b64(&p[1..33]);
        let jwks = serde_json::from_value(json!({"keys": [{
            "kty": "EC", "crv": "P-256", "x": x, "y": b64(&p[33..]), "kid": kid, "use": "sig"
        }]}))
        .unwrap();
        Signer {
            enc: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwks,
            x,
        }
    }

    fn claims() -> Value {
        let now = jsonwebtoken::get_current_timestamp();
        json!({"iss": "https://idp", "aud": "portcullis", "sub": "alice", "exp": now + 300,
               "iat": now, "nonce": "n-123", "email": "alice@example.com"})
    }

    fn sign(s: &Signer, kid: &str, c: &Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.into());
        encode(&h, c, &s.enc).unwrap()
    }

    fn expect() -> Expectations<'static> {
        Expectations {
            issuer: "https://idp",
            client_id: "portcullis",
            nonce: Some("n-123"),
            leeway: Duration::from_secs(5),
            now: crate::clock::Clock::now(&crate::clock::SystemClock),
        }
    }

    fn check(s: &Signer, token: &str) -> Result<Map<String, Value>, IdTokenError> {
        let (keys, _) = KeySet::from_jwks(&s.jwks);
        verify(token, &keys, &expect())
    }

    /// Token times are compared with the clock the caller passes, never the system's: the
    /// same token is valid, expired or issued in the future by that clock alone.
    #[test]
    fn token_times_are_read_on_the_injected_clock() {
        use crate::clock::UnixTime;
        use crate::jwt::verify::VerifyError;
        let s = signer("k1");
        let issued = jsonwebtoken::get_current_timestamp();
        let mut c = claims();
        c["iat"] = json!(issued);
        c["exp"] = json!(issued + 300);
        let token = sign(&s, "k1", &c);
        let (keys, _) = KeySet::from_jwks(&s.jwks);
        let at = |secs: u64| Expectations {
            now: UnixTime::from_secs(secs),
            ..expect()
        };
        assert!(
            verify(&token, &keys, &at(issued + 305)).is_ok(),
            "within the leeway"
        );
        assert!(matches!(
            verify(&token, &keys, &at(issued + 306)).unwrap_err(),
            IdTokenError::Jwt(VerifyError::Expired { .. })
        ));
        assert!(matches!(
            verify(&token, &keys, &at(issued - 6)).unwrap_err(),
            IdTokenError::Jwt(VerifyError::IssuedInFuture { .. })
        ));
    }

    #[test]
    fn valid_token_passes() {
        let s = signer("k1");
        let c = check(&s, &sign(&s, "k1", &claims())).unwrap();
        assert_eq!(c["email"], "alice@example.com");
    }

    #[test]
    fn each_defect_is_refused() {
        let s = signer("k1");
        let now = jsonwebtoken::get_current_timestamp();
        let mut cases: Vec<(&str, Value)> = Vec::new();
        let mut c = claims();
        c["nonce"] = json!("other");
        cases.push(("wrong nonce", c));
        let mut c = claims();
        c.as_object_mut().unwrap().remove("nonce");
        cases.push(("missing nonce", c));
        let mut c = claims();
        c["aud"] = json!("someone-else");
        cases.push(("wrong aud", c));
        let mut c = claims();
        c["aud"] = json!(["portcullis", "other"]);
        cases.push(("several aud without azp", c));
        let mut c = claims();
        c["azp"] = json!("other");
        cases.push(("azp mismatch", c));
        let mut c = claims();
        c["iss"] = json!("https://idp/");
        cases.push(("iss trailing slash", c));
        let mut c = claims();
        c["exp"] = json!(now - 600);
        cases.push(("expired", c));
        let mut c = claims();
        c["iat"] = json!(now + 3600);
        cases.push(("iat in future", c));
        let mut c = claims();
        c.as_object_mut().unwrap().remove("exp");
        cases.push(("no exp", c));
        for (name, c) in cases {
            assert!(
                check(&s, &sign(&s, "k1", &c)).is_err(),
                "{name} was accepted"
            );
        }
    }

    #[test]
    fn alg_none_and_hmac_with_public_key_are_refused() {
        let s = signer("k1");
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let payload = b64(claims().to_string().as_bytes());
        for alg in ["none", "None", "NONE"] {
            let h = b64(format!(r#"{{"alg":"{alg}","kid":"k1"}}"#).as_bytes());
            let t = format!("{h}.{payload}.");
            assert!(check(&s, &t).is_err(), "alg {alg} accepted");
        }
        // HS256 keyed with the public key material.
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        let forged = encode(&h, &claims(), &EncodingKey::from_secret(s.x.as_bytes())).unwrap();
        assert_eq!(
            check(&s, &forged).unwrap_err(),
            IdTokenError::Jwt(VerifyError::Algorithm(Algorithm::HS256))
        );
    }

    #[test]
    fn other_key_and_unknown_kid() {
        let s = signer("k1");
        let attacker = signer("k1");
        assert_eq!(
            check(&s, &sign(&attacker, "k1", &claims())).unwrap_err(),
            IdTokenError::Jwt(VerifyError::Signature(1))
        );
        assert_eq!(
            check(&s, &sign(&s, "k2", &claims())).unwrap_err(),
            IdTokenError::Jwt(VerifyError::UnknownKey("k2".into()))
        );
        let t = sign(&s, "k1", &claims());
        assert!(check(&s, &t[..t.len() - 2]).is_err());
        assert_eq!(
            check(&s, "a.b").unwrap_err(),
            IdTokenError::Jwt(VerifyError::Malformed)
        );
    }
}
