//! JWT parsing and verification: `jwt::verify::header`, `unverified_claims` and `verify` with a
//! fixed key set (an HS256/384/512 shared secret).
//!
//! The first byte picks the mode:
//! * 0: the rest is a token as received. Nothing may panic, and nothing verifies (the fuzzer
//!   does not know the secret).
//! * 1: the rest is `header JSON 0xFF claims JSON`, signed here with the secret (HS256), so the
//!   claim and header checks behind the signature are reached. Whatever verifies has the
//!   expected issuer, one of the expected audiences, an unexpired numeric `exp`, an HMAC `alg`
//!   and no `crit` header.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use portcullis::clock::{Clock, SystemClock};
use portcullis::jwt::keys::KeySet;
use portcullis::jwt::verify::{header, unverified_claims, verify, well_formed, Expect};
use serde_json::Value;
use std::sync::OnceLock;
use std::time::Duration;

const SECRET: &[u8] = b"fuzzing-shared-secret-of-at-least-32-bytes";
const ISSUER: &str = "https://issuer.test";
const LEEWAY: Duration = Duration::from_secs(60);

fn keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        portcullis::jwt::provider::install();
        KeySet::shared_secret(SECRET)
    })
}

fn audiences() -> &'static [String] {
    static AUD: OnceLock<Vec<String>> = OnceLock::new();
    AUD.get_or_init(|| vec!["api".to_owned(), "other-api".to_owned()])
}

fn sign(header_json: &[u8], claims_json: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header_json),
        URL_SAFE_NO_PAD.encode(claims_json)
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET);
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let keys = keys();
    let expect = Expect {
        issuer: ISSUER,
        audiences: audiences(),
        leeway: LEEWAY,
        now: SystemClock.now(),
    };
    let token = if mode % 2 == 0 {
        let Ok(token) = std::str::from_utf8(rest) else {
            return;
        };
        token.to_owned()
    } else {
        let split = rest.iter().position(|&b| b == 0xFF).unwrap_or(rest.len());
        let (head, claims) = rest.split_at(split);
        sign(head, claims.get(1..).unwrap_or_default())
    };

    let parsed_header = header(&token);
    let claims = unverified_claims(&token);
    if parsed_header.is_ok() || claims.is_ok() {
        assert!(well_formed(&token));
    }
    let result = verify(&token, keys, &expect);
    if mode % 2 == 0 {
        assert!(result.is_err(), "an unsigned token verified: {token}");
        return;
    }
    let Ok(verified) = result else {
        return;
    };
    assert!(parsed_header.is_ok() && claims.is_ok());
    let alg = format!("{:?}", verified.header.alg);
    assert!(alg.starts_with("HS"), "{alg}");
    let c = &verified.claims;
    assert_eq!(c.get("iss").and_then(Value::as_str), Some(ISSUER));
    let aud_ok = match c.get("aud") {
        Some(Value::String(a)) => audiences().contains(a),
        Some(Value::Array(list)) => list.iter().any(|a| {
            a.as_str()
                .is_some_and(|a| audiences().iter().any(|x| x == a))
        }),
        _ => false,
    };
    assert!(aud_ok, "audience {:?}", c.get("aud"));
    let exp = c.get("exp").and_then(Value::as_f64).expect("numeric exp");
    let now = SystemClock.now().secs() as f64;
    assert!(exp + LEEWAY.as_secs_f64() >= now, "expired: {exp}");
    let raw_header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap_or_default())
            .expect("header decoded once already"),
    )
    .expect("header parsed once already");
    assert!(raw_header.get("crit").is_none(), "crit header accepted");
});
