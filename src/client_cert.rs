//! The client certificate as a credential: what a verified certificate says (its SHA-256, its
//! subject, its URI and DNS names), the route rules that match it, and how the upstream is told
//! (`X-Forwarded-Client-Cert`, Envoy's XFCC format).
//!
//! A certificate reaches a request two ways: from the TLS handshake of one of portcullis' own
//! listeners (verified there against `client_ca`), or, behind a TLS-terminating proxy that
//! verified it, from the header `server.client_cert_header` names, believed only from
//! `server.trusted_proxies`.

use std::fmt::Write as _;

use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::config::ClientCertHeader;

/// A verified client certificate, as far as portcullis reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// SHA-256 of the leaf certificate's DER (RFC 8705's `x5t#S256`, before base64url).
    pub hash: [u8; 32],
    /// The subject's attributes, in the certificate's order, with upper-case short names
    /// (`CN`, `O`, `EMAILADDRESS`) or dotted OIDs.
    pub subject: Vec<(String, String)>,
    /// `uniformResourceIdentifier` names (SPIFFE IDs, say).
    pub uris: Vec<String>,
    /// `dNSName` names, lower case.
    pub dns: Vec<String>,
}

impl ClientCert {
    /// Reads a DER certificate; `None` when it does not parse.
    pub fn from_der(der: &[u8]) -> Option<ClientCert> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let registry = x509_parser::objects::oid_registry();
        let mut subject = Vec::new();
        for rdn in cert.subject().iter_rdn() {
            for attr in rdn.iter() {
                // Upper case, as subjects are written in configuration and compared.
                let name = x509_parser::objects::oid2abbrev(attr.attr_type(), registry)
                    .map(str::to_ascii_uppercase)
                    .unwrap_or_else(|_| attr.attr_type().to_id_string());
                let value = attr.as_str().ok()?.to_string();
                subject.push((name, value));
            }
        }
        let (mut uris, mut dns) = (Vec::new(), Vec::new());
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(u) => uris.push(u.to_string()),
                    GeneralName::DNSName(d) => dns.push(d.to_ascii_lowercase()),
                    _ => {}
                }
            }
        }
        Some(ClientCert {
            hash: Sha256::digest(der).into(),
            subject,
            uris,
            dns,
        })
    }

    /// The subject as text, in the certificate's own order (`CN=ci-runner,O=acme`), with
    /// RFC 4514's escapes in values.
    pub fn subject_text(&self) -> String {
        let mut out = String::new();
        for (i, (k, v)) in self.subject.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push('=');
            let last = v.chars().count().saturating_sub(1);
            for (j, c) in v.chars().enumerate() {
                let edge_space = c == ' ' && (j == 0 || j == last);
                if edge_space || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
                    out.push('\\');
                }
                out.push(c);
            }
        }
        out
    }

    /// Who a request authenticated by this certificate alone is: its first URI name, else its
    /// first DNS name, else its subject.
    pub fn user(&self) -> String {
        self.uris
            .first()
            .or_else(|| self.dns.first())
            .cloned()
            .unwrap_or_else(|| self.subject_text())
    }

    /// The certificate's SHA-256 in lower-case hex.
    pub fn hash_hex(&self) -> String {
        self.hash
            .iter()
            .fold(String::with_capacity(64), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
    }

    /// The `X-Forwarded-Client-Cert` element the upstream receives, in Envoy's format:
    /// `Hash=<hex>;Subject="…";URI=…;DNS=…` (one `URI`/`DNS` pair per name).
    pub fn xfcc(&self) -> String {
        let mut out = format!("Hash={};Subject=\"{}\"", self.hash_hex(), {
            let s = self.subject_text();
            s.replace('\\', "\\\\").replace('"', "\\\"")
        });
        for u in &self.uris {
            let _ = write!(out, ";URI={}", xfcc_value(u));
        }
        for d in &self.dns {
            let _ = write!(out, ";DNS={}", xfcc_value(d));
        }
        out
    }
}

/// A value in an XFCC element: quoted when it holds a separator or starts or ends with a space.
fn xfcc_value(v: &str) -> String {
    if v.contains([',', ';', '=', '"']) || v.starts_with(' ') || v.ends_with(' ') {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        v.to_string()
    }
}

/// `client_cert_subjects[]`: a subject as `CN=ci-runner,O=acme`. It matches a certificate
/// whose subject has exactly these attributes, in any order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectPattern(Vec<(String, String)>);

impl SubjectPattern {
    /// Parses `K=V,K=V` (`\,` for a comma in a value). Keys are upper-cased.
    pub fn parse(text: &str) -> Result<SubjectPattern, String> {
        let mut pairs = subject_pairs(text)?;
        pairs.sort();
        if pairs.windows(2).any(|w| w[0] == w[1]) {
            return Err("names an attribute twice".into());
        }
        Ok(SubjectPattern(pairs))
    }

    fn matches(&self, cert: &ClientCert) -> bool {
        let mut have: Vec<(String, String)> = cert
            .subject
            .iter()
            .map(|(k, v)| (k.to_ascii_uppercase(), v.clone()))
            .collect();
        have.sort();
        have == self.0
    }
}

/// The attributes of a subject written `K=V,K=V` (`\\,` for a comma in a value), in their
/// written order, keys upper-cased.
fn subject_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    // Each part as characters, each marked when it was escaped (an escaped space is kept).
    let mut parts: Vec<Vec<(char, bool)>> = vec![Vec::new()];
    let mut escaped = false;
    for c in text.chars() {
        let current = parts.last_mut().ok_or("empty")?;
        match (escaped, c) {
            (true, c) => {
                current.push((c, true));
                escaped = false;
            }
            (false, '\\') => escaped = true,
            (false, ',') => parts.push(Vec::new()),
            (false, c) => current.push((c, false)),
        }
    }
    if escaped {
        return Err("ends in a lone backslash".into());
    }
    parts
        .iter()
        .map(|part| {
            let at = part
                .iter()
                .position(|(c, esc)| *c == '=' && !esc)
                .ok_or_else(|| format!("`{}` is not KEY=value", plain(part)))?;
            let key = plain(&part[..at]);
            let key = key.trim();
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
                return Err(format!("`{key}` is not an attribute name like CN or O"));
            }
            let mut value = &part[at + 1..];
            while let [(c, false), rest @ ..] = value {
                if !c.is_whitespace() {
                    break;
                }
                value = rest;
            }
            while let [rest @ .., (c, false)] = value {
                if !c.is_whitespace() {
                    break;
                }
                value = rest;
            }
            Ok((key.to_ascii_uppercase(), plain(value)))
        })
        .collect()
}

/// The characters of a parsed part, escapes resolved.
fn plain(part: &[(char, bool)]) -> String {
    part.iter().map(|(c, _)| c).collect()
}

/// `client_cert_sans[]`: `dns:<name>`, or a URI (`spiffe://…`, or `uri:<uri>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SanPattern {
    /// A DNS name, compared case-insensitively.
    Dns(String),
    /// A URI, compared exactly.
    Uri(String),
}

impl SanPattern {
    /// Parses one configured name.
    pub fn parse(text: &str) -> Result<SanPattern, String> {
        if let Some(d) = text.strip_prefix("dns:") {
            if d.is_empty() || d.contains(char::is_whitespace) {
                return Err("is not a DNS name".into());
            }
            return Ok(SanPattern::Dns(d.to_ascii_lowercase()));
        }
        let uri = text.strip_prefix("uri:").unwrap_or(text);
        if uri.contains("://") && !uri.contains(char::is_whitespace) {
            return Ok(SanPattern::Uri(uri.to_string()));
        }
        Err("is neither dns:<name> nor a URI like spiffe://domain/path".into())
    }

    fn matches(&self, cert: &ClientCert) -> bool {
        match self {
            SanPattern::Dns(d) => cert.dns.iter().any(|n| n == d),
            SanPattern::Uri(u) => cert.uris.iter().any(|n| n == u),
        }
    }
}

/// What a route asks of the client certificate. Each list given must be met (one entry of it
/// suffices); `required` alone asks for any certificate the listener (or trusted proxy)
/// verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertRequirements {
    /// `client_cert = true`, or implied by either list.
    pub required: bool,
    /// `client_cert_subjects`
    pub subjects: Vec<SubjectPattern>,
    /// `client_cert_sans`
    pub sans: Vec<SanPattern>,
}

/// Why a request does not meet a route's certificate rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CertRefusal {
    /// None was presented (or believed).
    #[error("this route needs a client certificate")]
    Missing,
    /// One was, but not one the route names.
    #[error("the client certificate is not one this route accepts")]
    NotAccepted,
}

impl CertRequirements {
    /// Whether the route says anything about certificates.
    pub fn is_empty(&self) -> bool {
        !self.required
    }

    /// Whether `cert` meets the rules.
    pub fn check(&self, cert: Option<&ClientCert>) -> Result<(), CertRefusal> {
        if !self.required {
            return Ok(());
        }
        let cert = cert.ok_or(CertRefusal::Missing)?;
        let subject_ok = self.subjects.is_empty() || self.subjects.iter().any(|s| s.matches(cert));
        let san_ok = self.sans.is_empty() || self.sans.iter().any(|s| s.matches(cert));
        if subject_ok && san_ok {
            Ok(())
        } else {
            Err(CertRefusal::NotAccepted)
        }
    }
}

/// A trusted proxy's client-certificate header that cannot be read one way: refused (400),
/// never guessed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client certificate header could not be read")]
pub struct UnreadableCertHeader;

/// The certificate a trusted proxy reports in `values` (every value of its header), read as
/// `kind` says. `Ok(None)` when it reports none.
pub fn from_header(
    kind: ClientCertHeader,
    values: &[&[u8]],
) -> Result<Option<ClientCert>, UnreadableCertHeader> {
    let value = match values {
        [] => return Ok(None),
        [one] => std::str::from_utf8(one).map_err(|_| UnreadableCertHeader)?,
        _ => return Err(UnreadableCertHeader),
    };
    match kind {
        ClientCertHeader::EscapedPem => from_escaped_pem(value).map(Some),
        ClientCertHeader::Xfcc => from_xfcc(value).map(Some),
    }
}

/// nginx's `$ssl_client_escaped_cert`: a URL-encoded PEM certificate.
fn from_escaped_pem(value: &str) -> Result<ClientCert, UnreadableCertHeader> {
    let pem = percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .map_err(|_| UnreadableCertHeader)?;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| UnreadableCertHeader)?;
    ClientCert::from_der(&der).ok_or(UnreadableCertHeader)
}

/// One XFCC element. Several elements (a chain of proxies each adding one) are refused: which
/// one is the client's would be a guess.
fn from_xfcc(value: &str) -> Result<ClientCert, UnreadableCertHeader> {
    let elements = split_outside_quotes(value, ',')?;
    let [element] = elements.as_slice() else {
        return Err(UnreadableCertHeader);
    };
    let (mut hash, mut cert, mut subject) = (None, None, None);
    let (mut uris, mut dns) = (Vec::new(), Vec::new());
    for pair in split_outside_quotes(element, ';')? {
        let (key, raw) = pair.split_once('=').ok_or(UnreadableCertHeader)?;
        let value = unquote(raw.trim())?;
        // A name with control characters in it is no name a CA issued.
        if value.chars().any(char::is_control) {
            return Err(UnreadableCertHeader);
        }
        let once = |slot: &mut Option<String>| match slot.replace(value.clone()) {
            Some(_) => Err(UnreadableCertHeader),
            None => Ok(()),
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "hash" => once(&mut hash)?,
            "cert" => once(&mut cert)?,
            "subject" => once(&mut subject)?,
            "uri" => uris.push(value),
            "dns" => dns.push(value.to_ascii_lowercase()),
            // Who added it, and the chain: nothing portcullis decides on.
            "by" | "chain" => {}
            _ => return Err(UnreadableCertHeader),
        }
    }
    if let Some(cert) = cert {
        let read = from_escaped_pem(&cert)?;
        if hash.is_some_and(|h| !h.eq_ignore_ascii_case(&read.hash_hex())) {
            return Err(UnreadableCertHeader);
        }
        return Ok(read);
    }
    let hash = hash.ok_or(UnreadableCertHeader)?;
    let mut bytes = [0u8; 32];
    if hash.len() != 64 {
        return Err(UnreadableCertHeader);
    }
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(hash.get(2 * i..2 * i + 2).ok_or(UnreadableCertHeader)?, 16)
            .map_err(|_| UnreadableCertHeader)?;
    }
    let subject = match subject {
        Some(s) if !s.is_empty() => subject_pairs(&s).map_err(|_| UnreadableCertHeader)?,
        _ => Vec::new(),
    };
    Ok(ClientCert {
        hash: bytes,
        subject,
        uris,
        dns,
    })
}

/// Splits at `sep` outside double quotes (a `\"` inside quotes does not end them).
fn split_outside_quotes(text: &str, sep: char) -> Result<Vec<String>, UnreadableCertHeader> {
    let (mut parts, mut current) = (Vec::new(), String::new());
    let (mut quoted, mut escaped) = (false, false);
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if quoted || escaped {
        return Err(UnreadableCertHeader);
    }
    parts.push(current);
    Ok(parts)
}

/// A value, without its quotes and escapes when quoted.
fn unquote(raw: &str) -> Result<String, UnreadableCertHeader> {
    let Some(inner) = raw.strip_prefix('"') else {
        return Ok(raw.to_string());
    };
    let inner = inner.strip_suffix('"').ok_or(UnreadableCertHeader)?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next().ok_or(UnreadableCertHeader)?);
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert() -> ClientCert {
        ClientCert {
            hash: [0xab; 32],
            subject: vec![
                ("CN".into(), "ci-runner".into()),
                ("O".into(), "acme".into()),
            ],
            uris: vec!["spiffe://cluster.local/ns/ci/sa/runner".into()],
            dns: vec!["runner.ci.svc".into()],
        }
    }

    #[test]
    fn subjects_match_as_sets_of_attributes() {
        let c = cert();
        for (pattern, ok) in [
            ("CN=ci-runner,O=acme", true),
            ("O=acme,CN=ci-runner", true),
            ("cn=ci-runner, o=acme", true),
            ("CN=ci-runner", false),
            ("CN=ci-runner,O=acme,OU=x", false),
            ("CN=CI-RUNNER,O=acme", false),
        ] {
            assert_eq!(
                SubjectPattern::parse(pattern).unwrap().matches(&c),
                ok,
                "{pattern}"
            );
        }
        for bad in ["CN", "=x", "CN=a,CN=a", "C N=x", "CN=x\\"] {
            assert!(SubjectPattern::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            SubjectPattern::parse("CN=a\\,b").unwrap(),
            SubjectPattern(vec![("CN".into(), "a,b".into())])
        );
    }

    #[test]
    fn sans_and_requirements() {
        let c = cert();
        let dns = SanPattern::parse("dns:Runner.CI.svc").unwrap();
        let uri = SanPattern::parse("spiffe://cluster.local/ns/ci/sa/runner").unwrap();
        assert!(dns.matches(&c) && uri.matches(&c));
        assert!(!SanPattern::parse("spiffe://cluster.local/ns/ci/sa/other")
            .unwrap()
            .matches(&c));
        for bad in ["runner.ci.svc", "dns:", "uri:nope", "spiffe:// x"] {
            assert!(SanPattern::parse(bad).is_err(), "{bad}");
        }
        let any = CertRequirements {
            required: true,
            ..CertRequirements::default()
        };
        assert_eq!(any.check(None), Err(CertRefusal::Missing));
        assert_eq!(any.check(Some(&c)), Ok(()));
        let named = CertRequirements {
            required: true,
            subjects: vec![SubjectPattern::parse("CN=other").unwrap()],
            sans: vec![dns],
        };
        assert_eq!(named.check(Some(&c)), Err(CertRefusal::NotAccepted));
        assert_eq!(CertRequirements::default().check(None), Ok(()));
    }

    #[test]
    fn a_trusted_proxys_xfcc_is_read_one_way_or_refused() {
        let hash = "ab".repeat(32);
        let read = |v: &str| from_header(ClientCertHeader::Xfcc, &[v.as_bytes()]);
        let ok = read(&format!(
            "By=spiffe://ingress;Hash={hash};Subject=\"CN=ci-runner,O=acme\";URI=spiffe://cluster.local/ns/ci/sa/runner;DNS=Runner.CI.svc"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(ok, cert());
        for bad in [
            format!("Hash={hash},Hash={hash}"),              // two elements
            format!("Hash={hash};Hash={hash}"),              // a fact twice
            format!("Hash={hash};URI=\"spiffe://x\u{1}y\""), // a control character
            format!("Hash={hash};Subject=\"CN=x"),           // an open quote
            format!("Hash={hash};Nope=1"),                   // an unknown key
            "Hash=zz".to_string(),
            "URI=spiffe://x/y".to_string(), // no hash, no certificate
        ] {
            assert_eq!(read(&bad), Err(UnreadableCertHeader), "{bad}");
        }
        assert_eq!(from_header(ClientCertHeader::Xfcc, &[]), Ok(None));
        let two = format!("Hash={hash}");
        assert_eq!(
            from_header(ClientCertHeader::Xfcc, &[two.as_bytes(), two.as_bytes()]),
            Err(UnreadableCertHeader)
        );
        // What portcullis writes reads back the same, edge spaces and separators included.
        let odd = ClientCert {
            subject: vec![("CN".into(), " a, b=\"c\" ".into())],
            uris: vec!["spiffe://x/y;z".into()],
            ..cert()
        };
        assert_eq!(read(&odd.xfcc()).unwrap().unwrap(), odd);
    }

    #[test]
    fn the_user_and_the_xfcc_element() {
        let c = cert();
        assert_eq!(c.user(), "spiffe://cluster.local/ns/ci/sa/runner");
        let no_uri = ClientCert {
            uris: vec![],
            ..cert()
        };
        assert_eq!(no_uri.user(), "runner.ci.svc");
        let bare = ClientCert {
            uris: vec![],
            dns: vec![],
            ..cert()
        };
        assert_eq!(bare.user(), "CN=ci-runner,O=acme");
        assert_eq!(
            c.xfcc(),
            format!(
                "Hash={};Subject=\"CN=ci-runner,O=acme\";URI=spiffe://cluster.local/ns/ci/sa/runner;DNS=runner.ci.svc",
                "ab".repeat(32)
            )
        );
    }
}
