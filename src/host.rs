//! The one grammar for hosts: the `Host` header, `X-Forwarded-Host` from trusted proxies, the
//! hosts forward-auth reports, and the hosts routes name.
//!
//! A host is accepted only in its plain forms: a DNS-style name or IPv4 address (letters,
//! digits, `-`, `_`, `.`; at most one trailing dot), or an IPv6 address in brackets, each with
//! an optional port of 1 to 5 digits. Everything else, such as `app/admin?`, `a,b`, `a b`,
//! `user@host`, `host:`, `[::1%25eth0]` or an empty value, is refused rather than cleaned up.
//! An upstream that pastes the `Host` value into a URL (`new URL("http://" + host + path)`)
//! would otherwise see a different host, or a different path, than the one portcullis decided
//! on.

use std::net::Ipv6Addr;

use http::header::HOST;
use pingora::http::RequestHeader;

/// Why a value is not a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HostError {
    #[error("an empty host")]
    Empty,
    #[error("a host with characters other than letters, digits, '-', '_' and '.'")]
    Characters,
    #[error("a host with an empty label")]
    EmptyLabel,
    #[error("a host longer than 253 characters")]
    TooLong,
    #[error("a port that is not 1 to 65535")]
    Port,
    #[error("an IPv6 address that is not one")]
    Ipv6,
}

/// A host as it is compared: names lowercase without a trailing dot, IPv6 as an address (so
/// `[::1]` and `[0::1]` are one host).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum HostKey {
    Name(String),
    Ip6(Ipv6Addr),
}

/// A parsed `host[:port]`, borrowing the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Authority<'a> {
    pub host: Host<'a>,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Host<'a> {
    /// As written, without a trailing dot; compare ignoring ASCII case.
    Name(&'a str),
    Ip6(Ipv6Addr),
}

impl Host<'_> {
    pub(crate) fn key(&self) -> HostKey {
        match self {
            Host::Name(n) => HostKey::Name(n.to_ascii_lowercase()),
            Host::Ip6(a) => HostKey::Ip6(*a),
        }
    }

    /// Whether this is the host `key` names.
    pub(crate) fn is(&self, key: &HostKey) -> bool {
        match (self, key) {
            (Host::Name(n), HostKey::Name(k)) => n.eq_ignore_ascii_case(k),
            (Host::Ip6(a), HostKey::Ip6(k)) => a == k,
            _ => false,
        }
    }
}

impl Authority<'_> {
    /// The same host (letter case aside) and the same port, or both without one.
    pub(crate) fn same_as(&self, other: &Authority<'_>) -> bool {
        let host = match (self.host, other.host) {
            (Host::Name(a), Host::Name(b)) => a.eq_ignore_ascii_case(b),
            (Host::Ip6(a), Host::Ip6(b)) => a == b,
            _ => false,
        };
        host && self.port == other.port
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`, as a `Host` header or `X-Forwarded-Host` holds it.
pub(crate) fn parse_authority(raw: &str) -> Result<Authority<'_>, HostError> {
    if let Some(rest) = raw.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or(HostError::Ipv6)?;
        let port = match after {
            "" => None,
            _ => Some(parse_port(after.strip_prefix(':').ok_or(HostError::Port)?)?),
        };
        let addr = addr.parse().map_err(|_| HostError::Ipv6)?;
        return Ok(Authority {
            host: Host::Ip6(addr),
            port,
        });
    }
    let (name, port) = match raw.split_once(':') {
        Some((name, port)) => (name, Some(parse_port(port)?)),
        None => (raw, None),
    };
    Ok(Authority {
        host: Host::Name(parse_name(name)?),
        port,
    })
}

/// A host without a port, as routes name it: `Err` says why not.
pub(crate) fn parse_host(raw: &str) -> Result<Host<'_>, HostError> {
    let a = parse_authority(raw)?;
    if a.port.is_some() {
        return Err(HostError::Port);
    }
    Ok(a.host)
}

/// A name or IPv4 address; a single trailing dot (the DNS root) is dropped.
fn parse_name(name: &str) -> Result<&str, HostError> {
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.len() > 253 {
        return Err(HostError::TooLong);
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(HostError::Characters);
    }
    if name.split('.').any(str::is_empty) {
        return Err(HostError::EmptyLabel);
    }
    Ok(name)
}

/// 1 to 5 digits, 1 to 65535. An empty port (`host:`), which RFC 3986 allows, is refused as
/// one more spelling of the same host.
fn parse_port(port: &str) -> Result<u16, HostError> {
    if !(1..=5).contains(&port.len()) || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostError::Port);
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(HostError::Port),
    }
}

/// Why a request's host cannot be told, for the 400 answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RequestHostError {
    #[error("several Host headers")]
    SeveralHosts,
    #[error("the Host header is not a host: {0}")]
    Host(HostError),
    #[error("the Host header and the request target name different hosts")]
    TargetDisagrees,
    #[error("X-Forwarded-Host is not one host")]
    ForwardedHost,
}

/// The host a request is for, checked: from a trusted proxy the `X-Forwarded-Host` it sets
/// (the host the user asked that proxy for), otherwise `Host`, or the authority of the target
/// when there is no `Host` (HTTP/2's `:authority`). Every one of these that is present must be
/// a single, plain host; `Host` and an absolute-form target must agree. `Ok(None)`: the
/// request names no host at all (an HTTP/1.0 request without `Host`).
///
/// This is the one place that decides which host a request is for: route matching, the
/// forwarded `X-Forwarded-Host` and forward-auth all take this value.
pub(crate) fn of_request(
    req: &RequestHeader,
    trusted_proxy: bool,
) -> Result<Option<&str>, RequestHostError> {
    let mut hosts = req.headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(RequestHostError::SeveralHosts);
    }
    // Each value is parsed once; only the raw text is handed on.
    let host = match host {
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| RequestHostError::Host(HostError::Characters))?;
            Some((s, parse_authority(s).map_err(RequestHostError::Host)?))
        }
        None => None,
    };
    let target = match req.uri.authority() {
        Some(a) => {
            let s = a.as_str();
            let parsed = parse_authority(s).map_err(RequestHostError::Host)?;
            if host.is_some_and(|(_, h)| !h.same_as(&parsed)) {
                return Err(RequestHostError::TargetDisagrees);
            }
            Some(s)
        }
        None => None,
    };
    let own = host.map(|(s, _)| s).or(target);
    if !trusted_proxy {
        return Ok(own);
    }
    let mut forwarded = req.headers.get_all("x-forwarded-host").iter();
    let Some(first) = forwarded.next() else {
        return Ok(own);
    };
    if forwarded.next().is_some() {
        return Err(RequestHostError::ForwardedHost);
    }
    let s = first
        .to_str()
        .map_err(|_| RequestHostError::ForwardedHost)?;
    parse_authority(s).map_err(|_| RequestHostError::ForwardedHost)?;
    Ok(Some(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_hosts_are_accepted() {
        for (raw, key, port) in [
            (
                "app.example.com",
                HostKey::Name("app.example.com".into()),
                None,
            ),
            (
                "App.Example.COM:8443",
                HostKey::Name("app.example.com".into()),
                Some(8443),
            ),
            (
                "app.example.com.",
                HostKey::Name("app.example.com".into()),
                None,
            ),
            (
                "127.0.0.1:4180",
                HostKey::Name("127.0.0.1".into()),
                Some(4180),
            ),
            ("localhost", HostKey::Name("localhost".into()), None),
            ("my_host", HostKey::Name("my_host".into()), None),
            ("[::1]", HostKey::Ip6(Ipv6Addr::LOCALHOST), None),
            ("[0:0::1]:443", HostKey::Ip6(Ipv6Addr::LOCALHOST), Some(443)),
        ] {
            let a = parse_authority(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(a.host.key(), key, "{raw}");
            assert!(a.host.is(&key), "{raw}");
            assert_eq!(a.port, port, "{raw}");
        }
    }

    #[test]
    fn everything_else_is_refused() {
        for raw in [
            "",
            ".",
            ":80",
            "app/admin/secret?",
            "admin.local/",
            "admin.local?",
            "admin.local#",
            "admin.local\\",
            "admin.local,x",
            "admin.local;x",
            "admin.local x",
            "\"admin.local\"",
            "<admin.local>",
            "user@admin.local",
            "admin.local:",
            "admin.local:0",
            "admin.local:65536",
            "admin.local:+80",
            "admin.local:80:80",
            "admin..local",
            ".admin.local",
            "admin.local..",
            "::1",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[::1%25eth0]",
            "[v1.x]",
            "[127.0.0.1]",
            "ädmin.local",
            "admin.local\t",
        ] {
            assert!(parse_authority(raw).is_err(), "{raw:?} accepted");
        }
        let long = format!("{}.com", "a".repeat(250));
        assert_eq!(parse_authority(&long), Err(HostError::TooLong));
        assert_eq!(parse_host("a.example:80"), Err(HostError::Port));
    }
}
