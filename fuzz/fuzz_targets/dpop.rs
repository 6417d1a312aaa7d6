//! `dpop::Dpop::check` on arbitrary `DPoP` header values.
//!
//! Nothing may panic, and nothing is ever accepted: a proof must be signed by the key whose
//! thumbprint the token is bound to, and the fuzzer holds no key (the expected `jkt` is a
//! fixed thumbprint of a key nobody has). The first byte splits the input into one or two
//! header values (two must always be refused).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::clock::{Clock, SystemClock};
use portcullis::dpop::{Dpop, Expected, Replays};
use std::sync::OnceLock;
use std::time::Duration;

fn dpop() -> &'static Dpop {
    static DPOP: OnceLock<Dpop> = OnceLock::new();
    DPOP.get_or_init(|| {
        portcullis::jwt::provider::install();
        Dpop::new(
            vec![
                jsonwebtoken::Algorithm::ES256,
                jsonwebtoken::Algorithm::RS256,
                jsonwebtoken::Algorithm::EdDSA,
            ],
            Duration::from_secs(60),
            Duration::from_secs(5),
            std::sync::Arc::new(Replays::new(10_000)),
            Some(b"0123456789abcdef0123456789abcdef".as_slice()),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let expected = Expected {
        method: "GET",
        url: "https://api.example.com/reports",
        access_token: "the.access.token",
        jkt: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
    };
    let now = SystemClock.now();
    let result = if mode % 2 == 0 {
        dpop().check(&[rest], &expected, now)
    } else {
        let (a, b) = rest.split_at(rest.len() / 2);
        let two = dpop().check(&[a, b], &expected, now);
        assert!(two.is_err(), "two proofs accepted");
        two
    };
    assert!(result.is_err(), "a proof nobody could sign was accepted");
});
