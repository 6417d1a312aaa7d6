//! Key material for forging and checking tokens: the key fixtures of `tests/fixtures/`, PEM and
//! DER, RSA and EC public keys as JWKs, EC keys made with ring, and the `openssl` command for
//! what ring will not do.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, EcdsaSigningAlgorithm, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};
use serde_json::{json, Value};

use super::jws::b64;

/// The path of `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("test fixture")
}

pub fn pem_to_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    STANDARD.decode(body.trim()).expect("PEM body")
}

pub fn der_to_pem(label: &str, der: &[u8]) -> String {
    let text = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in text.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// One DER element: `(tag, contents, rest)`.
fn der_next(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = input[0];
    let (len, at) = match input[1] {
        l if l < 0x80 => (l as usize, 2),
        l => {
            let n = (l & 0x7f) as usize;
            let len = input[2..2 + n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, 2 + n)
        }
    };
    (tag, &input[at..at + len], &input[at + len..])
}

/// The PKCS#1 `RSAPublicKey` inside a `SubjectPublicKeyInfo`.
pub fn spki_to_pkcs1(spki: &[u8]) -> Vec<u8> {
    let (_, info, _) = der_next(spki);
    let (_, _algorithm, rest) = der_next(info);
    let (tag, bits, _) = der_next(rest);
    assert_eq!(tag, 0x03, "BIT STRING");
    bits[1..].to_vec()
}

/// `(n, e)` of a PKCS#1 `RSAPublicKey`, big-endian without leading zeros.
pub fn rsa_components(pkcs1: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (_, key, _) = der_next(pkcs1);
    let (_, n, rest) = der_next(key);
    let (_, e, _) = der_next(rest);
    let strip = |b: &[u8]| b.iter().skip_while(|x| **x == 0).copied().collect();
    (strip(n), strip(e))
}

/// An RSA public key as a JWK (what `jwk` headers and JWKS documents carry).
pub fn rsa_jwk(pkcs1: &[u8], kid: &str) -> Value {
    let (n, e) = rsa_components(pkcs1);
    json!({"kty": "RSA", "n": b64(&n), "e": b64(&e), "kid": kid, "use": "sig", "alg": "RS256"})
}

/// An EC key pair made here with ring: the ES384 issuer's key, and attackers' keys.
pub struct EcKey {
    pkcs8: Vec<u8>,
    /// Uncompressed SEC1 point.
    point: Vec<u8>,
    alg: Algorithm,
}

impl EcKey {
    fn signing(alg: Algorithm) -> &'static EcdsaSigningAlgorithm {
        match alg {
            Algorithm::ES256 => &ECDSA_P256_SHA256_FIXED_SIGNING,
            Algorithm::ES384 => &ECDSA_P384_SHA384_FIXED_SIGNING,
            other => panic!("not an EC algorithm: {other:?}"),
        }
    }

    pub fn generate(alg: Algorithm) -> EcKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(Self::signing(alg), &rng).expect("EC key");
        let pair = EcdsaKeyPair::from_pkcs8(Self::signing(alg), pkcs8.as_ref(), &rng)
            .expect("EC key pair");
        EcKey {
            pkcs8: pkcs8.as_ref().to_vec(),
            point: pair.public_key().as_ref().to_vec(),
            alg,
        }
    }

    fn encoding(&self) -> EncodingKey {
        EncodingKey::from_ec_der(&self.pkcs8)
    }

    pub fn jwk(&self) -> Value {
        let half = (self.point.len() - 1) / 2;
        let crv = if self.alg == Algorithm::ES256 {
            "P-256"
        } else {
            "P-384"
        };
        json!({
            "kty": "EC", "crv": crv, "use": "sig", "alg": format!("{:?}", self.alg),
            "x": b64(&self.point[1..1 + half]), "y": b64(&self.point[1 + half..]),
        })
    }

    /// A signature (fixed-size `r || s`) over `input`, whatever the token's header claims.
    pub fn sign_raw(&self, input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(Self::signing(self.alg), &self.pkcs8, &rng)
            .expect("EC key pair");
        pair.sign(&rng, input).expect("sign").as_ref().to_vec()
    }

    pub fn token(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding()).expect("EC token")
    }
}

/// The SPKI (DER) of a P-256 public point.
pub fn p256_spki(point: &[u8]) -> Vec<u8> {
    const PREFIX: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    [&PREFIX[..], point].concat()
}

/// Runs the `openssl` command for what ring will not do (sign with a 1024-bit key, make a
/// certificate).
pub fn openssl(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the `openssl` command (needed for the weak-key and x5c cases)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write to openssl");
    let out = child.wait_with_output().expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
