//! `redirect::RedirectPolicy::validate` on arbitrary `rd` values.
//!
//! Property: whatever is accepted, resolved by the `url` crate (WHATWG rules, as a browser
//! resolves a `Location`) against our own page, reaches our own origin or an allowed host and
//! port; and so does it after an application behind us percent-decodes it once or twice more.
//! A relative target is returned unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode;
use portcullis::redirect::RedirectPolicy;
use std::sync::OnceLock;
use url::Url;

const OWN: &str = "https://proxy.test/some/page";

fn policy() -> &'static RedirectPolicy {
    static POLICY: OnceLock<RedirectPolicy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let entries = [
            "foo.bar",
            ".bar.foo",
            "www.whitelisteddomain.tld",
            "app.example.com:8443",
            "[::1]:9000",
            "127.0.0.1",
        ];
        let entries: Vec<String> = entries.iter().map(|e| (*e).to_owned()).collect();
        RedirectPolicy::new(&entries).expect("fixed allow list")
    })
}

/// Whether a browser on `OWN` that follows `location` stays on a permitted origin.
fn lands_safely(location: &str) -> Result<(), String> {
    let base = Url::parse(OWN).expect("base URL");
    let url = base
        .join(location)
        .map_err(|e| format!("does not resolve: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme {}", url.scheme()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("userinfo".into());
    }
    let host = url.host_str().unwrap_or("");
    let port = url.port_or_known_default();
    let ok = match host {
        "proxy.test" => url.origin() == base.origin(),
        "foo.bar" | "www.whitelisteddomain.tld" | "127.0.0.1" => true,
        "app.example.com" => port == Some(8443),
        "[::1]" => port == Some(9000),
        h => h
            .strip_suffix(".bar.foo")
            .is_some_and(|labels| !labels.is_empty() && labels.split('.').all(|l| !l.is_empty())),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("reaches {url}"))
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    let Some(location) = policy().validate(target) else {
        return;
    };
    if target.starts_with('/') {
        assert_eq!(location, target, "a path is returned as given");
    }
    if let Err(why) = lands_safely(&location) {
        panic!("{target:?} accepted as {location:?}: {why}");
    }
    // An application that decodes the target again before redirecting must land safely too.
    let once: Vec<u8> = percent_decode(location.as_bytes()).collect();
    let twice: Vec<u8> = percent_decode(&once).collect();
    for decoded in [once, twice] {
        if let Ok(decoded) = std::str::from_utf8(&decoded) {
            if let Err(why) = lands_safely(decoded) {
                panic!("{target:?} accepted as {location:?}, decoded to {decoded:?}: {why}");
            }
        }
    }
});
