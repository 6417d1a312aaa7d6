//! Authenticated encryption of cookie values.
//!
//! A sealed value is `base64url(VERSION || nonce || AES-256-GCM(ciphertext || tag))`, with
//! `VERSION || cookie name` as associated data. Binding the cookie name means a value lifted from
//! one of our cookies (say, the OAuth state cookie) and replayed under another (the session cookie)
//! fails to open instead of being trusted in a context it was never issued for.
//!
//! Keys are derived once, at start-up, from the configured secrets; the request path only runs
//! AES-GCM. The first secret seals; every secret opens, so a secret can be rotated by prepending the
//! new one and dropping the old one after the session lifetime has passed.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hkdf::Hkdf;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::Sha256;

/// Format version, the first byte of every sealed value and of its associated data.
///
/// Bumping it (say, for a new cipher) makes every old value fail to open rather than be
/// misinterpreted.
const VERSION: u8 = 1;

/// HKDF salt: domain-separates these keys from anything else derived from the same secret.
const HKDF_SALT: &[u8] = b"portcullis session cookie v1";

/// HKDF info: names the one use the derived key is put to.
const HKDF_INFO: &[u8] = b"aes-256-gcm";

/// The shortest secret accepted. Config enforces the same bound; repeating it here keeps a short
/// secret from ever becoming a key, whoever builds a `SealKeys`.
pub const MIN_SECRET_LEN: usize = 32;

/// The longest sealed value (in base64url characters) `open` will look at.
///
/// Checked before decoding so an oversized cookie costs nothing but a length comparison. Far above
/// anything we emit: browsers drop cookies beyond a few KiB each.
pub const MAX_SEALED_LEN: usize = 64 * 1024;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// The shortest well-formed sealed value once decoded: version, nonce and tag around an empty
/// plaintext.
const MIN_DECODED_LEN: usize = 1 + NONCE_LEN + TAG_LEN;

/// Why keys could not be built from the configured secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealKeyError {
    /// No secret at all: there would be nothing to seal with.
    #[error("no session secret configured")]
    NoSecrets,
    /// The secret at `index` (0-based, in configuration order) is shorter than [`MIN_SECRET_LEN`].
    #[error("session secret #{index} is shorter than {MIN_SECRET_LEN} bytes")]
    SecretTooShort {
        /// Position of the offending secret.
        index: usize,
    },
    /// HKDF refused to expand. Cannot happen for a 32-byte output; reported rather than unwrapped.
    #[error("session key derivation failed")]
    Derivation,
}

/// Why a value could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The operating system's random number generator failed; no nonce could be drawn.
    #[error("no randomness available for a nonce")]
    Randomness,
    /// AES-GCM refused the input (only possible for plaintexts of many GiB).
    #[error("encryption failed")]
    Encryption,
}

/// Keys derived from the configured session secrets: the first seals, all open (rotation).
///
/// Holding a `SealKeys` means at least one key exists: the constructor refuses an empty list, so
/// `seal` never has to decide what to do without a key.
pub struct SealKeys {
    /// Seals and opens.
    current: Aes256Gcm,
    /// Open only: older secrets still accepted while their sessions run out.
    previous: Vec<Aes256Gcm>,
}

impl fmt::Debug for SealKeys {
    /// Redacted: key material must never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealKeys")
            .field("keys", &(1 + self.previous.len()))
            .finish_non_exhaustive()
    }
}

impl SealKeys {
    /// The keys of `session.secrets`: the session cookie and the login-flow cookies each
    /// derive their own from the same secrets (and seal under their own names).
    pub fn from_config(cfg: &crate::config::Session) -> Result<SealKeys, SealKeyError> {
        let secrets: Vec<Vec<u8>> = cfg.secrets.iter().map(|s| s.0.clone()).collect();
        SealKeys::new(&secrets)
    }

    /// Derives one AES-256-GCM key per secret (HKDF-SHA256), in order.
    ///
    /// `secrets`: raw secret bytes, each at least [`MIN_SECRET_LEN`] bytes; at least one. The first
    /// seals, all of them open.
    pub fn new(secrets: &[Vec<u8>]) -> Result<SealKeys, SealKeyError> {
        let (first, rest) = secrets.split_first().ok_or(SealKeyError::NoSecrets)?;
        let current = derive(0, first)?;
        let previous = rest
            .iter()
            .enumerate()
            .map(|(i, secret)| derive(i + 1, secret))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SealKeys { current, previous })
    }

    /// Encrypts and authenticates `plaintext` for storage in the cookie named `aad`.
    ///
    /// Returns base64url (no padding) of `VERSION || nonce || ciphertext || tag`. The nonce is 12
    /// fresh bytes from the OS for every call: with random 96-bit nonces one key stays safe for far
    /// more seals than a proxy will ever perform (NIST's 2^32 bound).
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng
            .try_fill_bytes(&mut nonce)
            .map_err(|_| SealError::Randomness)?;
        let ciphertext = self
            .current
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &associated_data(aad),
                },
            )
            .map_err(|_| SealError::Encryption)?;

        let mut raw = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        raw.push(VERSION);
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ciphertext);
        Ok(URL_SAFE_NO_PAD.encode(raw))
    }

    /// Decrypts a value produced by [`SealKeys::seal`] for the cookie named `aad`.
    ///
    /// `None` for anything wrong (bad base64, wrong version, too short, longer than
    /// [`MAX_SEALED_LEN`], no key opens it): callers treat every failure the same way, as "no
    /// session", so there is nothing to gain from telling the reasons apart.
    pub fn open(&self, aad: &str, sealed: &str) -> Option<Vec<u8>> {
        if sealed.len() > MAX_SEALED_LEN {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if raw.len() < MIN_DECODED_LEN {
            return None;
        }
        let (&version, rest) = raw.split_first()?;
        if version != VERSION {
            return None;
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::from_slice(nonce);
        let aad = associated_data(aad);
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find_map(|key| {
                key.decrypt(
                    nonce,
                    Payload {
                        msg: ciphertext,
                        aad: &aad,
                    },
                )
                .ok()
            })
    }
}

/// HKDF-SHA256(salt, secret) expanded to one AES-256 key.
fn derive(index: usize, secret: &[u8]) -> Result<Aes256Gcm, SealKeyError> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(SealKeyError::SecretTooShort { index });
    }
    let mut okm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(HKDF_SALT), secret)
        .expand(HKDF_INFO, &mut okm)
        .map_err(|_| SealKeyError::Derivation)?;
    Ok(Aes256Gcm::new(&Key::<Aes256Gcm>::from(okm)))
}

/// `VERSION || cookie name`: the version is authenticated too, so it cannot be swapped.
fn associated_data(aad: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + aad.len());
    out.push(VERSION);
    out.extend_from_slice(aad.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> Vec<u8> {
        vec![byte; 32]
    }

    fn keys(secrets: &[Vec<u8>]) -> SealKeys {
        SealKeys::new(secrets).unwrap()
    }

    fn decode(sealed: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(sealed).unwrap()
    }

    #[test]
    fn round_trip() {
        let k = keys(&[secret(1)]);
        for plaintext in [&b""[..], b"x", &[0u8; 1000], b"hello session"] {
            let sealed = k.seal("_portcullis", plaintext).unwrap();
            assert_eq!(k.open("_portcullis", &sealed).as_deref(), Some(plaintext));
        }
    }

    #[test]
    fn layout_is_version_nonce_ciphertext_tag() {
        let k = keys(&[secret(1)]);
        let raw = decode(&k.seal("c", b"abc").unwrap());
        assert_eq!(raw.len(), 1 + NONCE_LEN + 3 + TAG_LEN);
        assert_eq!(raw[0], VERSION);
    }

    #[test]
    fn wrong_aad_fails() {
        let k = keys(&[secret(1)]);
        let sealed = k.seal("_portcullis", b"payload").unwrap();
        assert_eq!(k.open("_portcullis_csrf", &sealed), None);
        assert_eq!(k.open("", &sealed), None);
        assert_eq!(k.open("_Portcullis", &sealed), None);
    }

    #[test]
    fn every_bit_flip_fails() {
        let k = keys(&[secret(1)]);
        let raw = decode(&k.seal("c", b"some session payload").unwrap());
        for i in 0..raw.len() {
            for bit in 0..8 {
                let mut tampered = raw.clone();
                tampered[i] ^= 1 << bit;
                let sealed = URL_SAFE_NO_PAD.encode(&tampered);
                assert_eq!(k.open("c", &sealed), None, "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn every_truncation_fails() {
        let k = keys(&[secret(1)]);
        let sealed = k.seal("c", b"some session payload").unwrap();
        let raw = decode(&sealed);
        for len in 0..raw.len() {
            let truncated = URL_SAFE_NO_PAD.encode(&raw[..len]);
            assert_eq!(k.open("c", &truncated), None, "decoded length {len}");
        }
        for len in 0..sealed.len() {
            assert_eq!(k.open("c", &sealed[..len]), None, "encoded length {len}");
        }
    }

    #[test]
    fn appended_bytes_fail() {
        let k = keys(&[secret(1)]);
        let mut raw = decode(&k.seal("c", b"payload").unwrap());
        raw.push(0);
        assert_eq!(k.open("c", &URL_SAFE_NO_PAD.encode(&raw)), None);
    }

    #[test]
    fn rotation() {
        let old = keys(&[secret(1)]);
        let sealed = old.seal("c", b"payload").unwrap();

        let rotated = keys(&[secret(2), secret(1)]);
        assert_eq!(rotated.open("c", &sealed).as_deref(), Some(&b"payload"[..]));

        // New values are sealed with the new secret, which the old configuration cannot open.
        let resealed = rotated.seal("c", b"payload").unwrap();
        assert_eq!(old.open("c", &resealed), None);
        assert_eq!(
            keys(&[secret(2)]).open("c", &resealed).as_deref(),
            Some(&b"payload"[..])
        );

        // Once the old secret is dropped, its values no longer open.
        assert_eq!(keys(&[secret(2)]).open("c", &sealed), None);
    }

    #[test]
    fn nonce_is_fresh() {
        let k = keys(&[secret(1)]);
        let a = k.seal("c", b"same").unwrap();
        let b = k.seal("c", b"same").unwrap();
        assert_ne!(a, b);
        assert_ne!(decode(&a)[1..1 + NONCE_LEN], decode(&b)[1..1 + NONCE_LEN]);
    }

    #[test]
    fn wrong_version_fails() {
        let k = keys(&[secret(1)]);
        let mut raw = decode(&k.seal("c", b"payload").unwrap());
        raw[0] = 2;
        assert_eq!(k.open("c", &URL_SAFE_NO_PAD.encode(&raw)), None);
    }

    #[test]
    fn garbage_fails() {
        let k = keys(&[secret(1)]);
        let sealed = k.seal("c", b"payload").unwrap();
        for input in [
            "",
            "A",
            "not base64!",
            "====",
            "AQ==",
            &"A".repeat(MAX_SEALED_LEN + 4),
            &format!("{sealed}="),
            &format!(" {sealed}"),
            &sealed.replace('-', "+").replace('_', "/"),
        ] {
            if input == sealed {
                continue;
            }
            assert_eq!(k.open("c", input), None, "{input:.40}");
        }
    }

    #[test]
    fn oversized_input_is_refused_before_decoding() {
        let k = keys(&[secret(1)]);
        // A well-formed value just over the bound is still refused.
        let sealed = k.seal("c", &vec![7u8; MAX_SEALED_LEN]).unwrap();
        assert!(sealed.len() > MAX_SEALED_LEN);
        assert_eq!(k.open("c", &sealed), None);
    }

    #[test]
    fn constructor_refuses_bad_secrets() {
        assert_eq!(SealKeys::new(&[]).err(), Some(SealKeyError::NoSecrets));
        assert_eq!(
            SealKeys::new(&[secret(1), vec![0; 31]]).err(),
            Some(SealKeyError::SecretTooShort { index: 1 })
        );
    }

    #[test]
    fn different_secrets_give_different_keys() {
        let a = keys(&[secret(1)]);
        let b = keys(&[secret(2)]);
        let sealed = a.seal("c", b"payload").unwrap();
        assert_eq!(b.open("c", &sealed), None);
    }

    #[test]
    fn debug_is_redacted() {
        let k = keys(&[secret(0xAB), secret(0xCD)]);
        let shown = format!("{k:?}");
        assert_eq!(shown, "SealKeys { keys: 2, .. }");
    }
}
