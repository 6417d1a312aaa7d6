//! Sessions the cookie store opened recently, remembered by their sealed cookie value.
//!
//! A browser sends the same session cookie with every request until the session is refreshed,
//! and opening it (base64, AES-GCM, decoding the payload into a dozen strings) is most of what
//! a session cookie costs per request. What was opened is remembered, so the next request with
//! the same value skips all three.
//!
//! Why this is safe:
//! - A value is opened by the keys of one [`super::CookieStore`], and each store remembers its
//!   own: a reload with other secrets builds a new store and starts empty, so nothing is
//!   trusted past the keys that opened it.
//! - Only what opening decides is remembered: the same bytes always open to the same session.
//!   Expiry and revocation depend on the time and on what ended since, so the caller checks them
//!   on every request, remembered or not.
//! - The lookup key is the value's last characters, its GCM tag, which nobody can choose for a
//!   value of their own without the key. A hit counts only when the whole value is equal,
//!   compared in constant time: how long a lookup takes says nothing about a remembered value.
//!
//! Memory is bounded by weight, about the bytes an entry holds (2 MiB in all). The bound is
//! small on purpose: only the sessions browsers are sending right now pay off, and a session
//! that is not remembered is simply opened again.

use std::sync::Arc;

use quick_cache::sync::Cache;
use quick_cache::Weighter;

use super::SessionData;

/// The lookup key: the last characters of the sealed value (the GCM tag, base64url).
const KEY_CHARS: usize = 22;

/// Room for the values remembered, in weight (about bytes; see [`ByLength`]): about two
/// thousand sessions of the usual size.
const CAPACITY: u64 = 2 * 1024 * 1024;

/// How many sessions the capacity holds, for the cache's sizing (about 1 KiB each).
const EXPECTED_SESSIONS: usize = 2048;

/// Longer values are opened every time: memory stays bounded by entries of a sane size, and a
/// session that large (long tokens kept in it) is rare.
const MAX_REMEMBERED_CHARS: usize = 8 * 1024;

type Key = [u8; KEY_CHARS];

/// One opened value and what it opened to.
struct Entry {
    sealed: Box<str>,
    session: Arc<SessionData>,
}

/// What an entry holds besides its strings: the session's own fields, the two `Arc`s and the
/// cache's slot (under 512 bytes: a test holds it to that).
const ENTRY_OVERHEAD: u64 = 512;

/// Each entry weighs about the bytes it holds: its sealed characters twice (once for the value
/// kept, once for the decoded session, whose strings are about as long) and the overhead.
#[derive(Clone)]
struct ByLength;

impl Weighter<Key, Arc<Entry>> for ByLength {
    fn weight(&self, _key: &Key, entry: &Arc<Entry>) -> u64 {
        (entry.sealed.len() as u64)
            .saturating_mul(2)
            .saturating_add(ENTRY_OVERHEAD)
    }
}

/// Sessions opened recently, by sealed value.
pub(super) struct Opened {
    cache: Cache<Key, Arc<Entry>, ByLength>,
}

impl Opened {
    pub(super) fn new() -> Opened {
        Opened {
            cache: Cache::with_weighter(EXPECTED_SESSIONS, CAPACITY, ByLength),
        }
    }

    /// The session `sealed` opens to: remembered, or from `open` (which is remembered when it
    /// opens to a session). `open` sees exactly `sealed`.
    pub(super) fn get_or_open(
        &self,
        sealed: &str,
        open: impl FnOnce(&str) -> Option<SessionData>,
    ) -> Option<Arc<SessionData>> {
        let Some(key) = key_of(sealed) else {
            return open(sealed).map(Arc::new);
        };
        if let Some(entry) = self.cache.get(&key) {
            if constant_time_eq::constant_time_eq(entry.sealed.as_bytes(), sealed.as_bytes()) {
                return Some(entry.session.clone());
            }
        }
        let session = Arc::new(open(sealed)?);
        self.cache.insert(
            key,
            Arc::new(Entry {
                sealed: sealed.into(),
                session: session.clone(),
            }),
        );
        Some(session)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.cache.len()
    }
}

/// The key of a value worth remembering: `None` for one too short to carry a tag, or too long.
fn key_of(sealed: &str) -> Option<Key> {
    if sealed.len() > MAX_REMEMBERED_CHARS {
        return None;
    }
    let tail = sealed.len().checked_sub(KEY_CHARS)?;
    sealed.as_bytes()[tail..].try_into().ok()
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// The user of what `get_or_open` answered.
    fn user(got: Option<Arc<SessionData>>) -> Option<String> {
        got.and_then(|s| s.identity.user.clone())
    }

    /// Counts the calls to `open`, which opens anything to a session of `user`.
    fn opener<'a>(
        calls: &'a Cell<usize>,
        user: &'a str,
    ) -> impl FnOnce(&str) -> Option<SessionData> + 'a {
        move |_| {
            calls.set(calls.get() + 1);
            Some(SessionData::of_user(user))
        }
    }

    const VALUE: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8w";

    #[test]
    fn the_same_value_is_opened_once() {
        let opened = Opened::new();
        let calls = Cell::new(0);
        for _ in 0..3 {
            let got = opened.get_or_open(VALUE, opener(&calls, "alice"));
            assert_eq!(user(got).as_deref(), Some("alice"));
        }
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn a_value_with_the_same_tag_but_other_bytes_is_opened_not_served_from_memory() {
        let opened = Opened::new();
        let calls = Cell::new(0);
        opened.get_or_open(VALUE, opener(&calls, "alice"));
        // The same last characters (the key) in front of other bytes: must not be alice.
        let forged = format!("X{}", &VALUE[1..]);
        let got = opened.get_or_open(&forged, opener(&calls, "mallory"));
        assert_eq!(user(got).as_deref(), Some("mallory"));
        assert_eq!(calls.get(), 2);
        // Nor is a value that ends the same but is longer or shorter.
        for other in [format!("Y{VALUE}"), VALUE[1..].to_string()] {
            let got = opened.get_or_open(&other, opener(&calls, "mallory"));
            assert_eq!(user(got).as_deref(), Some("mallory"));
        }
        assert_eq!(calls.get(), 4);
    }

    #[test]
    fn what_does_not_open_is_not_remembered() {
        let opened = Opened::new();
        let calls = Cell::new(0);
        for _ in 0..2 {
            let got = opened.get_or_open(VALUE, |_| {
                calls.set(calls.get() + 1);
                None
            });
            assert!(got.is_none());
        }
        assert_eq!(calls.get(), 2);
        assert_eq!(opened.len(), 0);
    }

    #[test]
    fn short_and_oversized_values_are_opened_every_time() {
        let opened = Opened::new();
        let calls = Cell::new(0);
        let huge = "A".repeat(MAX_REMEMBERED_CHARS + 1);
        for value in ["short", huge.as_str(), "short", huge.as_str()] {
            assert!(opened.get_or_open(value, opener(&calls, "alice")).is_some());
        }
        assert_eq!(calls.get(), 4);
        assert_eq!(opened.len(), 0);
    }

    #[test]
    fn the_overhead_covers_what_an_entry_holds_besides_its_strings() {
        use std::mem::size_of;
        // Each `Arc` allocation carries two counters; the cache's slot holds the key, the
        // value and about four words of its own.
        let counters = 2 * size_of::<usize>();
        let held = size_of::<SessionData>()
            + counters
            + size_of::<Entry>()
            + counters
            + size_of::<Key>()
            + size_of::<Arc<Entry>>()
            + 4 * size_of::<usize>();
        assert!(held as u64 <= ENTRY_OVERHEAD, "{held} bytes");
    }

    #[test]
    fn memory_stays_within_the_capacity() {
        let opened = Opened::new();
        let calls = Cell::new(0);
        let mut remembered_weight = 0u64;
        for i in 0..(2 * CAPACITY as usize / 2048) {
            let value = format!("{i:0>2048}");
            opened.get_or_open(&value, opener(&calls, "alice"));
            remembered_weight = opened.cache.weight();
        }
        assert!(
            remembered_weight <= CAPACITY,
            "{remembered_weight} > {CAPACITY}"
        );
        assert!(opened.len() < 2 * CAPACITY as usize / 2048);
    }
}
