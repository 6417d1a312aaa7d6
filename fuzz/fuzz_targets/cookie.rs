//! Session cookies: `session::chunks::read_cookie`, `CookieStore::load` and
//! `session::seal::SealKeys::open` on arbitrary Cookie headers, and the seal/chunk round trip on
//! arbitrary plaintexts (which also feeds arbitrary bytes to the session payload decoder, the
//! part an attacker reaches only with the key).
//!
//! The first byte picks the mode:
//! * 0: the rest is Cookie header lines (split at `\n`). Nothing may panic, and nothing that we
//!   did not seal opens as a session.
//! * 1: the rest is a plaintext. Sealed, chunked into Set-Cookie values and sent back as a
//!   Cookie header, it reads back as the same sealed value and opens to the same plaintext;
//!   under another cookie name it does not open.
//! * 2: like 1, but one character of the sealed value (chosen by the next byte) is replaced:
//!   the result never opens.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::clock::{Clock, SystemClock};
use portcullis::config::Config;
use portcullis::session::chunks::{read_cookie, set_cookies, CookieAttrs, SetCookie};
use portcullis::session::seal::SealKeys;
use portcullis::session::CookieStore;
use std::sync::OnceLock;
use std::time::Duration;

const NAME: &str = "_portcullis";

/// The session store under test, with the keys and cookie attributes it was built from.
struct Fixture {
    store: CookieStore,
    keys: SealKeys,
    attrs: CookieAttrs,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // Two secrets (32 bytes each, base64): the current one seals, both open.
        let text = r#"
[upstream]
url = "http://127.0.0.1:1"
[oidc]
issuer = "https://idp.test"
client_id = "c"
client_secret = "s"
redirect_url = "https://app.test/oauth2/callback"
[session]
secrets = ["MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY", "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA"]
"#;
        let config = Config::parse(text, "<fuzz>", &|_| None).expect("fixed config");
        let session = config.session.as_ref().expect("[session]");
        Fixture {
            store: CookieStore::new(session).expect("fixed secrets"),
            keys: SealKeys::from_config(session).expect("fixed secrets"),
            attrs: CookieAttrs::from_config(session),
        }
    })
}

/// The Cookie header a browser sends back for these Set-Cookie values (`name=value` of each
/// one that is not an expiry).
fn cookie_header(set_cookies: &[SetCookie]) -> String {
    set_cookies
        .iter()
        .filter(|c| !c.contains("Max-Age=0"))
        .filter_map(|c| c.split(';').next())
        .collect::<Vec<_>>()
        .join("; ")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Fixture { store, keys, attrs } = fixture();
    let now = SystemClock.now();
    match mode % 3 {
        0 => {
            let headers: Vec<&[u8]> = rest.split(|&b| b == b'\n').collect();
            if let Ok(read) = read_cookie(&headers, NAME) {
                if let Some(value) = &read.value {
                    assert!(!value.is_empty());
                    assert!(keys.open(NAME, value).is_none(), "forged: {value:?}");
                }
            }
            let loaded = store.load(&headers, now);
            assert!(loaded.session.is_none(), "a cookie we never sealed opened");
            for header in &headers {
                let text = String::from_utf8_lossy(header);
                assert!(keys.open(NAME, &text).is_none());
            }
        }
        mode => {
            let (flip, plaintext) = match (mode, rest.split_first()) {
                (2, Some((&at, plaintext))) => (Some(at), plaintext),
                (2, None) => return,
                _ => (None, rest),
            };
            let sealed = keys.seal(NAME, plaintext).expect("sealing");
            assert_eq!(keys.open(NAME, &sealed).as_deref(), Some(plaintext));
            assert!(
                keys.open("other", &sealed).is_none(),
                "opened under another name"
            );

            if let Some(at) = flip {
                let i = usize::from(at) % sealed.len();
                let old = sealed.as_bytes()[i];
                let new = if old == b'A' { b'B' } else { b'A' };
                let mut tampered = sealed.clone().into_bytes();
                tampered[i] = new;
                let tampered = String::from_utf8(tampered).expect("base64 is ASCII");
                assert!(
                    keys.open(NAME, &tampered).is_none(),
                    "tampered value opened"
                );
                return;
            }

            let Ok(cookies) = set_cookies(NAME, &sealed, attrs, Duration::from_secs(3600), &[])
            else {
                return; // too large for the chunk limit: refused, not truncated
            };
            let header = cookie_header(&cookies);
            let read =
                read_cookie(&[header.as_bytes()], NAME).expect("our own cookies are unambiguous");
            assert_eq!(read.value.as_deref(), Some(sealed.as_str()), "{header}");
            // The payload decoder sees arbitrary (authenticated) bytes here.
            let _ = store.load(&[header.as_bytes()], now);
        }
    }
});
