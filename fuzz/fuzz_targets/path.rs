//! `policy::path::normalise` on arbitrary raw request paths.
//!
//! Besides "never panics", checks the invariants `NormalPath` documents: the result starts with
//! `/`, has no empty segment except the last, no segment of dots only, no segment ending in a dot,
//! no `%` (every escape is decoded exactly once and an escaped `%` is refused), and reading it
//! again (its non-ASCII bytes re-escaped, since only escapes may produce them) gives the same path.
//! A path without escapes is accepted unchanged or not at all.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::policy::path::normalise;

fuzz_target!(|raw: &[u8]| {
    let Ok(normal) = normalise(raw) else {
        return;
    };
    let path = normal.as_str();
    assert!(path.starts_with('/'), "{path:?}");
    assert!(!path.contains('%'), "escape survived: {path:?}");
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        assert!(last || !segment.is_empty(), "empty segment in {path:?}");
        if !segment.is_empty() {
            assert!(
                !segment.bytes().all(|b| b == b'.'),
                "dot segment in {path:?}"
            );
            assert!(!segment.ends_with('.'), "trailing dot in {path:?}");
        }
    }
    if !raw.contains(&b'%') {
        assert_eq!(path.as_bytes(), raw, "unescaped path changed");
    }

    // Idempotence: the decoded path, with what only an escape can carry escaped again, reads
    // the same.
    let mut again = Vec::with_capacity(path.len() * 3);
    for &b in path.as_bytes() {
        if b.is_ascii() {
            again.push(b);
        } else {
            again.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    match normalise(&again) {
        Ok(second) => assert_eq!(second.as_str(), path, "not idempotent"),
        Err(e) => panic!("{path:?} accepted once, refused on re-reading: {e}"),
    }
});
