//! What the browser holds when sessions live in Redis: a ticket of a random session id and a
//! random per-session key. The cookie carries it sealed with the deployment's secrets; Redis
//! holds the session body encrypted with the per-session key, so neither a Redis dump nor a
//! Redis operator sees a token or an identity, and a stolen dump opens nothing without the
//! browsers' cookies.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;

/// The first byte of a ticket's cookie payload (a cookie-store payload starts with 1).
const TICKET_VERSION: u8 = 2;
const ID_BYTES: usize = 16;
const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;

/// A session's id and key.
#[derive(Clone, PartialEq, Eq)]
pub struct Ticket {
    id: [u8; ID_BYTES],
    key: [u8; KEY_BYTES],
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ticket([redacted])")
    }
}

impl Ticket {
    /// A new session's: both random (the OS's generator).
    pub fn fresh() -> Ticket {
        let mut id = [0u8; ID_BYTES];
        let mut key = [0u8; KEY_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut id);
        rand::rngs::OsRng.fill_bytes(&mut key);
        Ticket { id, key }
    }

    /// A ticket derived from `secret` (HKDF-SHA256, `purpose` as its info): whoever holds
    /// the secret can compute it, nobody else can. A refreshed session handed over to the
    /// replicas is sealed under the one derived from the refresh token it replaced, so only a
    /// request carrying that token (the cookie from before) can open it.
    pub(crate) fn derived(secret: &[u8], purpose: &[u8]) -> Ticket {
        let mut okm = [0u8; ID_BYTES + KEY_BYTES];
        // 48 bytes is far below HKDF-SHA256's limit: `expand` cannot fail here.
        let _ = hkdf::Hkdf::<sha2::Sha256>::new(None, secret).expand(purpose, &mut okm);
        let (id, key) = okm.split_at(ID_BYTES);
        let mut ticket = Ticket {
            id: [0u8; ID_BYTES],
            key: [0u8; KEY_BYTES],
        };
        ticket.id.copy_from_slice(id);
        ticket.key.copy_from_slice(key);
        ticket
    }

    /// The session id as Redis keys name it (hex). Not a secret on its own: without the key
    /// the body does not open, and without the deployment's secrets no cookie can name it.
    pub fn id(&self) -> String {
        self.id.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The payload the cookie seals.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + ID_BYTES + KEY_BYTES);
        out.push(TICKET_VERSION);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.key);
        out
    }

    /// A ticket from an opened cookie payload; `None` for anything else (a cookie-store
    /// payload included).
    pub fn decode(plain: &[u8]) -> Option<Ticket> {
        let (&version, rest) = plain.split_first()?;
        if version != TICKET_VERSION || rest.len() != ID_BYTES + KEY_BYTES {
            return None;
        }
        let (id, key) = rest.split_at(ID_BYTES);
        Some(Ticket {
            id: id.try_into().ok()?,
            key: key.try_into().ok()?,
        })
    }

    /// The session body encrypted for Redis: a random nonce, then AES-256-GCM with the
    /// session id as associated data (a body copied under another id does not open).
    pub fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let cipher = Aes256Gcm::new_from_slice(&self.key).ok()?;
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &self.id,
                },
            )
            .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Some(out)
    }

    /// A body [`Ticket::seal`] made with this ticket, opened.
    pub fn open(&self, body: &[u8]) -> Option<Vec<u8>> {
        if body.len() < NONCE_BYTES {
            return None;
        }
        let (nonce, sealed) = body.split_at(NONCE_BYTES);
        let cipher = Aes256Gcm::new_from_slice(&self.key).ok()?;
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &self.id,
                },
            )
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_opens_only_with_its_own_ticket() {
        let t = Ticket::fresh();
        let body = t.seal(b"alice's tokens").unwrap();
        assert!(!body.windows(5).any(|w| w == b"alice"));
        assert_eq!(t.open(&body).unwrap(), b"alice's tokens");
        assert_eq!(Ticket::fresh().open(&body), None);
        // The same key under another id (a body moved to another session's key) fails.
        let mut moved = t.clone();
        moved.id[0] ^= 1;
        assert_eq!(moved.open(&body), None);
        let mut tampered = body.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(t.open(&tampered), None);
        assert_eq!(Ticket::decode(&t.encode()), Some(t.clone()));
        assert_eq!(Ticket::decode(&[1, 2, 3]), None);
        assert_eq!(t.id().len(), 32);
    }
}
