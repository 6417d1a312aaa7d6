//! Compact JWS by hand: base64url segments, and tokens assembled from exactly the segment
//! strings a test wrote, for the forgeries `jsonwebtoken` will not produce.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).expect("base64url")
}

/// `(header, payload, signature)` segments of a compact JWS.
pub fn segments(token: &str) -> (&str, &str, &str) {
    let mut it = token.splitn(3, '.');
    (
        it.next().expect("header"),
        it.next().expect("payload"),
        it.next().expect("signature"),
    )
}

pub fn claims_of(token: &str) -> Value {
    serde_json::from_slice(&unb64(segments(token).1)).expect("payload JSON")
}

/// `header.payload.signature` over exactly these segment strings, signed by `sign` over exactly
/// the bytes `header.payload`: for tokens `jsonwebtoken` cannot produce (duplicate claims,
/// padding, foreign characters, a header that lies about the algorithm).
pub fn compact(header: &str, payload: &str, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!("{header}.{payload}");
    let signature = sign(input.as_bytes());
    format!("{input}.{}", b64(&signature))
}
