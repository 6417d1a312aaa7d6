//! Where a browser may be sent after login or sign-out.
//!
//! The target arrives in a query parameter (`rd=`), so anyone can craft a link to our login page
//! that bounces a freshly authenticated user to a site of their choosing. The defence is an allow
//! list, and the difficulty is that browsers are lenient: under WHATWG URL parsing `\` counts as
//! `/`, tabs and newlines vanish and leading spaces and controls are stripped, so `/\evil.com` or
//! `/<TAB>/evil.com` are links to another host. Applications behind us may also percent-decode
//! a path once more before redirecting on their own.
//!
//! Rather than modelling each of those behaviours, [`RedirectPolicy::validate`] accepts only two
//! narrow shapes and refuses everything that is not plainly one of them:
//!
//! * a same-origin absolute path (`/…`) whose raw form and once- and twice-percent-decoded forms
//!   contain no `//`, no backslash, no dot segment, no control or whitespace character;
//! * an absolute `http`/`https` URL without userinfo whose host is on the allow list, with the same
//!   checks on everything after the authority.
//!
//! Nothing is repaired: a target that needs fixing is refused, and the caller falls back to `/`.

use std::borrow::Cow;

use percent_encoding::percent_decode;
use url::{Host, Url};

/// The longest target accepted. The target travels through a cookie and a `Location` header;
/// anything longer is not a link a person follows.
pub const MAX_TARGET_LEN: usize = 2048;

/// Where redirects may lead besides our own origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectPolicy {
    allowed: Vec<AllowedHost>,
}

/// One allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedHost {
    host: HostPattern,
    /// `None`: any port.
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// This host exactly, in the `url` crate's serialisation (lowercase; IPv6 in brackets).
    Exact(String),
    /// Hosts ending in `.` + this domain, with at least one label before it; never the domain
    /// itself.
    SubdomainsOf(String),
}

impl RedirectPolicy {
    /// Builds the policy from configured entries: each an exact host (`app.example.com`, optionally
    /// with `:port`) or `.example.com` for strict subdomains of `example.com` (the domain itself is
    /// not included, and `evilexample.com` never is). Entries are lowercased.
    ///
    /// `Err(reason)` for malformed entries: wildcards, schemes, paths, userinfo, empty entries,
    /// non-ASCII (write IDNs in their `xn--` form), anything the URL parser would rewrite.
    pub fn new(allowed_domains: &[String]) -> Result<RedirectPolicy, String> {
        let allowed = allowed_domains
            .iter()
            .map(|entry| {
                parse_entry(entry)
                    .map_err(|why| format!("allowed redirect domain {entry:?}: {why}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RedirectPolicy { allowed })
    }

    /// Checks a redirect target, `target` being the parameter's value after one query-decoding.
    ///
    /// Returns what to put in `Location` (the path as given, or the URL as re-serialised by the
    /// `url` crate), or `None`, in which case the caller uses its default (`/`).
    pub fn validate(&self, target: &str) -> Option<String> {
        if target.is_empty() || target.len() > MAX_TARGET_LEN {
            return None;
        }
        if target.starts_with('/') {
            // `target` is the whole path; `tail_is_clean` also refuses the `//` prefix.
            return (raw_chars_ok(target, false) && tail_is_clean(target))
                .then(|| target.to_owned());
        }
        self.validate_absolute(target)
    }

    fn validate_absolute(&self, target: &str) -> Option<String> {
        if !raw_chars_ok(target, true) {
            return None;
        }
        let after_scheme = strip_http_scheme(target)?;
        let authority_end = after_scheme
            .find(['/', '?', '#'])
            .unwrap_or(after_scheme.len());
        let (authority, tail) = after_scheme.split_at(authority_end);
        if !authority_is_plain(authority) || !tail_is_clean(tail) {
            return None;
        }

        let url = Url::parse(target).ok()?;
        if !matches!(url.scheme(), "http" | "https")
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return None;
        }
        let host = url.host()?;
        let host_str = url.host_str()?;

        // What the browser will connect to must be exactly what was written: no IPv4 shorthand,
        // no IDNA mapping, no `:0443`, no empty `:`.
        let (raw_host, raw_port) = split_host_port(authority)?;
        if !raw_host.eq_ignore_ascii_case(host_str) {
            return None;
        }
        let port = url.port_or_known_default()?;
        if let Some(raw_port) = raw_port {
            if raw_port != port.to_string() {
                return None;
            }
        }

        self.allowed
            .iter()
            .any(|entry| entry.matches(&host, host_str, port))
            .then(|| url.as_str().to_owned())
    }
}

impl AllowedHost {
    fn matches(&self, host: &Host<&str>, host_str: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match &self.host {
            HostPattern::Exact(exact) => exact == host_str,
            HostPattern::SubdomainsOf(parent) => {
                let Host::Domain(domain) = host else {
                    return false;
                };
                domain
                    .strip_suffix(parent.as_str())
                    .and_then(|prefix| prefix.strip_suffix('.'))
                    .is_some_and(|labels| {
                        !labels.is_empty() && labels.split('.').all(|l| !l.is_empty())
                    })
            }
        }
    }
}

fn parse_entry(entry: &str) -> Result<AllowedHost, &'static str> {
    if entry.is_empty() {
        return Err("empty");
    }
    if !entry
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']'))
    {
        return Err("only a host name, optionally with :port, is allowed (no scheme, path, userinfo, wildcard, whitespace or non-ASCII)");
    }
    let entry = entry.to_ascii_lowercase();
    let (subdomains, rest) = match entry.strip_prefix('.') {
        Some(rest) => (true, rest),
        None => (false, entry.as_str()),
    };
    let (host, port) = split_host_port(rest).ok_or("malformed host or port")?;
    let port = port
        .map(|p| match p.parse::<u16>() {
            Ok(n) if n != 0 && !p.starts_with('0') => Ok(n),
            _ => Err("port must be a number from 1 to 65535"),
        })
        .transpose()?;
    if host.is_empty() || host.starts_with('.') || host.ends_with('.') || host.contains("..") {
        return Err("empty label in host name");
    }
    let parsed = Host::parse(host).map_err(|_| "not a valid host")?;
    let canonical = parsed.to_string();
    if canonical != host {
        return Err("host is not in canonical form");
    }
    let host = match parsed {
        Host::Domain(_) if subdomains => HostPattern::SubdomainsOf(canonical),
        _ if subdomains => return Err("a leading '.' needs a domain name, not an IP address"),
        _ => HostPattern::Exact(canonical),
    };
    Ok(AllowedHost { host, port })
}

/// `"http://"` or `"https://"` (any letter case) stripped, or `None`.
///
/// Only the `://` form counts: `http:evil.com` and `http:/evil.com` are URLs to `evil.com` for a
/// WHATWG parser and are refused here.
fn strip_http_scheme(target: &str) -> Option<&str> {
    ["https://", "http://"].iter().find_map(|scheme| {
        let head = target.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme)
            .then(|| &target[scheme.len()..])
    })
}

/// The authority of an absolute target: a host (name, IPv4 or bracketed IPv6) and optional port,
/// nothing else: no userinfo, no percent-encoding, no sub-delimiters a parser might reinterpret.
fn authority_is_plain(authority: &str) -> bool {
    !authority.is_empty()
        && authority.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
        })
}

/// Splits `host[:port]` / `[v6][:port]`. `None` if brackets are unbalanced or stray.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']')?;
        let (host, rest) = authority.split_at(close + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let host_brackets = host.bytes().filter(|b| matches!(b, b'[' | b']')).count();
    let bracketed = host.starts_with('[') && host.ends_with(']') && host_brackets == 2;
    if host_brackets != 0 && !bracketed {
        return None;
    }
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    Some((host, port))
}

/// Every byte is one RFC 3986 allows in a URI reference: unreserved, reserved or `%` starting a
/// valid escape. `[` `]` only in absolute URLs (IPv6 literals; the authority check narrows them
/// further). This alone refuses controls, spaces, backslashes, non-ASCII, `<>"{}|^` and backticks.
fn raw_chars_ok(target: &str, absolute: bool) -> bool {
    let bytes = target.as_bytes();
    bytes.iter().enumerate().all(|(i, &b)| match b {
        b'%' => bytes
            .get(i + 1..i + 3)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)),
        b'[' | b']' => absolute,
        b if b.is_ascii_alphanumeric() => true,
        _ => b"-._~:/?#@!$&'()*+,;=".contains(&b),
    })
}

/// Checks the path-query-fragment part (for a relative target: all of it) as given and after
/// percent-decoding once and twice, so that whoever decodes it later finds nothing new. A third
/// layer of escapes is refused outright rather than checked.
fn tail_is_clean(tail: &str) -> bool {
    let raw = tail.as_bytes();
    let once: Cow<[u8]> = percent_decode(raw).into();
    let twice: Cow<[u8]> = percent_decode(&once).into();
    [raw, &once, &twice].into_iter().all(layer_is_clean) && !has_escape(&twice)
}

/// One (possibly decoded) form of the tail: valid UTF-8, no control, whitespace, invisible
/// formatting character or backslash, no `//`, no `.`/`..` path segment.
fn layer_is_clean(layer: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(layer) else {
        return false;
    };
    if text
        .chars()
        .any(|c| c == '\\' || c.is_control() || c.is_whitespace() || is_invisible(c))
    {
        return false;
    }
    if text.contains("//") {
        return false;
    }
    let path = text.split(['?', '#']).next().unwrap_or("");
    !path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
}

/// Zero-width and bidirectional formatting characters: invisible in an address bar or a log, so
/// a target containing them is not what it appears to be.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Whether a `%XX` escape remains.
fn has_escape(bytes: &[u8]) -> bool {
    bytes
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn policy() -> RedirectPolicy {
        RedirectPolicy::new(&[
            "foo.bar".to_owned(),
            ".bar.foo".to_owned(),
            "www.whitelisteddomain.tld".to_owned(),
        ])
        .unwrap()
    }

    /// The project's copy of the security corpora (`tests/corpus/`, see its README).
    fn corpus(file: &str) -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus")).join(file)
    }

    /// Decodes a query value the way a form-urlencoded parser does: `+` is a space, then one
    /// round of percent-decoding, invalid UTF-8 replaced.
    fn query_decode(raw: &str) -> String {
        let spaced = raw.replace('+', " ");
        percent_decode(spaced.as_bytes())
            .decode_utf8_lossy()
            .into_owned()
    }

    /// The browser's view: resolve `location` against our origin and return the host it reaches.
    fn resolved_host(location: &str) -> Option<String> {
        let base = Url::parse("https://proxy.test/some/page").unwrap();
        base.join(location)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
    }

    fn host_is_safe(host: &str) -> bool {
        host == "proxy.test"
            || host == "foo.bar"
            || host == "www.whitelisteddomain.tld"
            || host.ends_with(".bar.foo")
    }

    #[test]
    fn corpus_is_refused() {
        let path = corpus("open-redirects.txt");
        let text = std::fs::read_to_string(&path).unwrap();
        let p = policy();
        let mut lines = 0;
        let mut payloads = 0;
        for line in text.lines() {
            lines += 1;
            if !line.is_empty() {
                payloads += 1;
            }
            let decoded = query_decode(line);
            assert_eq!(
                p.validate(&decoded),
                None,
                "line {lines}: {line:?} -> {decoded:?}"
            );
            // As the proxy would see it in `?rd=<line>`: split at `&`, up to any `#`.
            let query = line.split('#').next().unwrap_or("");
            let rd = url::form_urlencoded::parse(format!("rd={query}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap();
            assert_eq!(p.validate(&rd), None, "line {lines} as rd: {rd:?}");
            // Without any decoding as well.
            assert_eq!(p.validate(line), None, "line {lines} raw: {line:?}");
        }
        assert_eq!(lines, 559);
        assert_eq!(payloads, 558);
    }

    /// Mutations of corpus lines: whatever is accepted must resolve, in a browser, to our own host
    /// or an allowed one.
    #[test]
    fn anything_accepted_resolves_to_a_safe_host() {
        let text = std::fs::read_to_string(corpus("open-redirects.txt")).unwrap();
        let p = policy();
        let mut accepted = 0;
        for line in text.lines() {
            let decoded = query_decode(line);
            let candidates = [
                decoded.clone(),
                format!("/{decoded}"),
                format!("https://foo.bar/{decoded}"),
                format!("https://foo.bar{decoded}"),
                decoded.trim_start_matches('/').to_owned(),
                decoded
                    .replace("example.com", "foo.bar")
                    .replace("google.com", "x.bar.foo"),
                query_decode(&decoded),
            ];
            for candidate in candidates {
                if let Some(location) = p.validate(&candidate) {
                    accepted += 1;
                    let host = resolved_host(&location).unwrap();
                    assert!(
                        host_is_safe(&host),
                        "{candidate:?} -> {location:?} -> {host}"
                    );
                }
            }
        }
        // The mutations do produce accepted targets, so the property is not vacuous.
        assert!(accepted > 50, "{accepted}");
    }

    #[test]
    fn positives() {
        let p = policy();
        for (target, location) in [
            ("/", "/"),
            ("/deep/link?x=1&y=%2F", "/deep/link?x=1&y=%2F"),
            ("/a/b#frag", "/a/b#frag"),
            ("/a/b/", "/a/b/"),
            (
                "/user@host:x/;p?a=b,c*'!$()~",
                "/user@host:x/;p?a=b,c*'!$()~",
            ),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("https://foo.bar/x", "https://foo.bar/x"),
            ("https://foo.bar", "https://foo.bar/"),
            ("HTTPS://FOO.BAR/X", "https://foo.bar/X"),
            ("http://foo.bar:8080/x", "http://foo.bar:8080/x"),
            ("https://sub.bar.foo/", "https://sub.bar.foo/"),
            ("https://a.b.bar.foo/", "https://a.b.bar.foo/"),
            (
                "https://www.whitelisteddomain.tld/p?q=1",
                "https://www.whitelisteddomain.tld/p?q=1",
            ),
            ("https://foo.bar?q=1#f", "https://foo.bar/?q=1#f"),
        ] {
            assert_eq!(p.validate(target).as_deref(), Some(location), "{target}");
        }
    }

    #[test]
    fn negatives() {
        let p = policy();
        for target in [
            "",
            "https://bar.foo/",
            "https://evilfoo.bar",
            "https://evilbar.foo",
            "https://foo.bar.evil.com",
            "https://foo.bar@evil.com",
            "https://@foo.bar/",
            "https://user:pw@foo.bar/",
            "//foo.bar",
            "ftp://foo.bar",
            "javascript:alert(1)",
            "data:text/html,x",
            "foo.bar",
            "relative/path",
            "./x",
            "../x",
            "?x=1",
            "#x",
            " /x",
            "/x ",
            "/\tx",
            "\t/x",
            "/x\n",
            "/x\r",
            "/x\0",
            "/\\evil.com",
            "/\u{ff0f}evil.com",
            "/caf\u{e9}",
            "/%2f%2fevil.com",
            "/%2F/evil.com",
            "/%5cevil.com",
            "/%09/evil.com",
            "/%252f%252fevil.com",
            "/%25252f%25252fevil.com",
            "/x?next=%0d%0aSet-Cookie:x",
            "/a%20b",
            "/a%C2%A0b",
            "/a%E2%80%AEb",
            "/a%ffb",
            "/a%zz",
            "/a%2",
            "/a/../b",
            "/a/./b",
            "/%2e%2e/b",
            "/.%2e/b",
            "/a<b",
            "/a\"b",
            "/a`b",
            "/a{b}",
            "/a|b",
            "/a^b",
            "/[x]",
            "http:foo.bar",
            "http:/foo.bar",
            "https:///foo.bar",
            "https:\\\\foo.bar",
            "https://foo.bar:/",
            "https://foo.bar:0443/",
            "https://foo.bar:99999/",
            "https://foo.bar./",
            "https://foo%2ebar/",
            "https://xn--fo-bar/",
            "https://foo.bar//evil.com",
            "https://foo.bar/%2f%2fevil.com",
            "https://foo.bar/a/../b",
            "https://.bar.foo/",
            "https://a..bar.foo/",
            "https://[::1]/",
            "http://0x7f.1/",
        ] {
            assert_eq!(p.validate(target), None, "{target:?}");
        }
        let long = format!("/{}", "a".repeat(MAX_TARGET_LEN));
        assert_eq!(p.validate(&long), None);
    }

    #[test]
    fn ports() {
        let p = RedirectPolicy::new(&["app.example.com:8443".to_owned(), "[::1]:9000".to_owned()])
            .unwrap();
        assert!(p.validate("https://app.example.com:8443/").is_some());
        assert!(p.validate("https://app.example.com/").is_none());
        assert!(p.validate("https://app.example.com:443/").is_none());
        assert!(p.validate("http://[::1]:9000/x").is_some());
        assert!(p.validate("http://[::1]/x").is_none());
        let default = RedirectPolicy::new(&["app.example.com:443".to_owned()]).unwrap();
        assert_eq!(
            default.validate("https://app.example.com/").as_deref(),
            Some("https://app.example.com/")
        );
        assert!(default.validate("http://app.example.com/").is_none());
    }

    #[test]
    fn empty_policy_allows_only_paths() {
        let p = RedirectPolicy::new(&[]).unwrap();
        assert!(p.validate("/x").is_some());
        assert!(p.validate("https://foo.bar/").is_none());
    }

    #[test]
    fn entries_are_lowercased() {
        let p = RedirectPolicy::new(&["App.Example.COM".to_owned(), ".Corp.Example".to_owned()])
            .unwrap();
        assert!(p.validate("https://app.example.com/").is_some());
        assert!(p.validate("https://x.corp.example/").is_some());
    }

    #[test]
    fn malformed_entries_are_refused() {
        for entry in [
            "",
            ".",
            "..example.com",
            "*.example.com",
            "https://example.com",
            "example.com/path",
            "user@example.com",
            "example.com:",
            "example.com:0",
            "example.com:080",
            "example.com:65536",
            "example.com:x",
            " example.com",
            "example.com.",
            "exa mple.com",
            "ex\u{e4}mple.com",
            "a..b",
            "0x7f.1",
            ".127.0.0.1",
            "[::1",
            "::1",
            "[::1]x",
            "example.com?x",
            "example.com#x",
            "%65xample.com",
        ] {
            assert!(
                RedirectPolicy::new(&[entry.to_owned()]).is_err(),
                "{entry:?} accepted"
            );
        }
        for entry in [
            "localhost",
            "127.0.0.1",
            "127.0.0.1:8080",
            "[::1]",
            ".example.com",
            "xn--bcher-kva.example",
        ] {
            assert!(
                RedirectPolicy::new(&[entry.to_owned()]).is_ok(),
                "{entry:?} refused"
            );
        }
    }

    #[test]
    fn error_names_the_entry() {
        let err = RedirectPolicy::new(&["ok.example".to_owned(), "*.bad".to_owned()]).unwrap_err();
        assert!(err.contains("\"*.bad\""), "{err}");
    }
}
