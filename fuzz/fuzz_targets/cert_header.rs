//! `client_cert::from_header` on arbitrary values of a trusted proxy's certificate header, in
//! both forms (Envoy's XFCC, nginx's escaped PEM).
//!
//! Nothing may panic; a header is read one way or refused; and what was read, written back as
//! the XFCC element portcullis sends upstream, reads back as the same certificate facts (hash,
//! subject, URIs, DNS names): the upstream can never be told something else than was believed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::client_cert::from_header;
use portcullis::config::ClientCertHeader;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let kind = if mode % 2 == 0 {
        ClientCertHeader::Xfcc
    } else {
        ClientCertHeader::EscapedPem
    };
    let values: Vec<&[u8]> = if mode & 2 == 0 {
        vec![rest]
    } else {
        rest.split(|b| *b == b'\n').collect()
    };
    let Ok(Some(cert)) = from_header(kind, &values) else {
        return;
    };
    let written = cert.xfcc();
    let again = from_header(ClientCertHeader::Xfcc, &[written.as_bytes()])
        .expect("our own XFCC reads back")
        .expect("a certificate");
    assert_eq!(again.hash, cert.hash, "{written}");
    assert_eq!(again.uris, cert.uris, "{written}");
    assert_eq!(again.dns, cert.dns, "{written}");
    assert_eq!(again.subject, cert.subject, "{written}");
});
