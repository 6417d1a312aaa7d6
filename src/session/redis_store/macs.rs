//! Names in Redis that must not show who they are about: a provider's `sub` or `sid` becomes
//! an HMAC keyed from the session secrets (HKDF-SHA256), one per secret so that entries filed
//! before a secret rotation are still found; the first secret's is used for new entries.

use hmac::Mac;

/// One MAC key per session secret, in the order of `session.secrets`.
pub(crate) struct Macs(Vec<[u8; 32]>);

impl Macs {
    pub(crate) fn from_secrets(secrets: &[crate::config::SessionSecret]) -> Macs {
        Macs(secrets.iter().filter_map(|s| key(&s.0)).collect())
    }

    /// The MAC of `value` (a `sub` or a `sid`, named by `kind`) under each key, first key
    /// first, as hex.
    pub(crate) fn tags(&self, kind: &str, value: &str) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|key| {
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).ok()?;
                mac.update(kind.as_bytes());
                mac.update(b"\0");
                mac.update(value.as_bytes());
                Some(
                    mac.finalize()
                        .into_bytes()
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect(),
                )
            })
            .collect()
    }
}

/// The MAC key a session secret gives.
fn key(secret: &[u8]) -> Option<[u8; 32]> {
    let mut key = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(Some(b"portcullis redis"), secret)
        .expand(b"session index v1", &mut key)
        .ok()?;
    Some(key)
}
