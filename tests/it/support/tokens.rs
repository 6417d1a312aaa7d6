//! Tokens of the issuers the tests know: the development provider's (minted, or signed with its
//! real current key over claims a test chose), the static RS512 "dealer" of `tests/fixtures/`,
//! and an attacker's RSA key that no issuer publishes.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis::demo::DevIdp;
use ring::signature::RsaKeyPair;
use serde_json::{json, Value};

use super::jws::{b64, claims_of, unb64};
use super::keys::{pem_to_der, read_fixture};

/// The dev provider's service client, and the API audience its tokens carry.
pub const CLIENT: &str = "ci-runner";
pub const API_AUDIENCE: &str = "portcullis-api";
/// The static RS512 issuer (`tests/fixtures/dealer-rs512.*`).
pub const DEALER: &str = "https://dealer.internal";
/// The audience of both static issuers.
pub const STATIC_AUDIENCE: &str = "reports-api";

/// Seconds since the epoch, the clock `exp`, `iat` and `nbf` are checked against.
pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// 16 random hex digits: a `jti`, a made-up `kid`, an unguessable path.
pub fn random_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

// ----- the static dealer issuer (RS512) and the attacker's RSA key -----

/// The dealer's private key (`tests/fixtures/dealer-rs512.key.pem`).
pub fn dealer_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&read_fixture("dealer-rs512.key.pem")).expect("dealer key")
}

pub fn dealer_claims(sub: &str) -> Value {
    json!({
        "iss": DEALER, "sub": sub, "aud": STATIC_AUDIENCE, "iat": now(), "exp": now() + 300,
        "jti": random_id(), "scp": ["reports:read"],
    })
}

pub fn dealer_token(claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::RS512), claims, &dealer_key()).expect("RS512")
}

/// An RS512 signature by the dealer's real key over exactly `input`.
pub fn dealer_sign(input: &[u8]) -> Vec<u8> {
    let sig = jsonwebtoken::crypto::sign(input, &dealer_key(), Algorithm::RS512).expect("sign");
    unb64(&sig)
}

pub fn dealer_header_segment() -> String {
    b64(br#"{"alg":"RS512","typ":"JWT"}"#)
}

pub fn attacker_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&read_fixture("attacker-rs256.key.pem")).expect("attacker key")
}

/// The attacker's RSA public key as PKCS#1 DER.
pub fn attacker_pkcs1() -> Vec<u8> {
    let der =
        pem_to_der(std::str::from_utf8(&read_fixture("attacker-rs256.key.pem")).expect("PEM text"));
    let pair = RsaKeyPair::from_pkcs8(&der).expect("attacker key pair");
    pair.public().as_ref().to_vec()
}

// ----- the dev provider's tokens -----

pub fn access_token(idp: &DevIdp) -> String {
    idp.mint_access_token(CLIENT, &["test_api_access", "reports:read"])
        .expect("ci-runner access token")
}

/// The header of the provider's access tokens: ES256, `at+jwt`, the current `kid`.
pub fn at_header(idp: &DevIdp) -> Header {
    let mut h = Header::new(Algorithm::ES256);
    h.typ = Some("at+jwt".into());
    h.kid = Some(idp.current_kid());
    h
}

/// Signs `claims` with the provider's real current key as one of its access tokens.
pub fn sign_at(idp: &DevIdp, claims: &Value) -> String {
    idp.sign_with_header(&at_header(idp), claims)
        .expect("sign with the dev provider's key")
}

pub fn sign_with(idp: &DevIdp, header: &Header, claims: &Value) -> String {
    idp.sign_with_header(header, claims)
        .expect("sign with the dev provider's key")
}

/// Genuine access-token claims, for tweaking.
pub fn access_claims(idp: &DevIdp) -> Value {
    claims_of(&access_token(idp))
}

/// The provider's current public key as its JWKS publishes it.
pub fn current_jwk(idp: &DevIdp) -> Value {
    let kid = idp.current_kid();
    idp.jwks()["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .cloned()
        .expect("the current key is published")
}

pub fn id_token_claims(idp: &DevIdp) -> Value {
    idp.id_token_claims_for("alice", None).expect("alice")
}

/// A back-channel logout token of `idp` for alice (`sub`), with `extra` merged over its
/// claims (a `null` removes one), signed with the provider's real current key.
pub fn logout_token(idp: &DevIdp, extra: Value) -> String {
    let now = now();
    let mut claims = json!({
        "iss": idp.issuer(),
        "aud": portcullis::demo::DevIdpConfig::default().client_id,
        "iat": now,
        "exp": now + 120,
        "jti": random_id(),
        "sub": "alice",
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    });
    for (k, v) in extra.as_object().expect("an object of claims") {
        match v {
            Value::Null => {
                claims.as_object_mut().map(|c| c.remove(k));
            }
            v => claims[k] = v.clone(),
        }
    }
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("logout+jwt".into());
    header.kid = Some(idp.current_kid());
    idp.sign_with_header(&header, &claims).expect("signed")
}
