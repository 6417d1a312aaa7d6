//! `config::Config::parse` on arbitrary TOML text: a bad file gets an error naming the key,
//! never a panic. A parsed configuration must also describe itself (`summary`) without panicking.
//!
//! Inputs that could name a file to read (`*_file`, `public_keys`, or any `\u` escape that could
//! spell one) are skipped: reading `/dev/zero` or a FIFO would hang the fuzzer, not find a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if ["_file", "public_keys", "\\u", "\\U"]
        .iter()
        .any(|s| text.contains(s))
    {
        return;
    }
    if let Ok(config) = Config::parse(text, "<fuzz>", &|_| None) {
        let _ = config.summary();
    }
});
