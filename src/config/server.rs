//! `[server]`: where portcullis listens, whom it trusts to forward, and its bounds.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use std::path::PathBuf;

use super::check::Check;
use super::file::{ClientCertsFile, ListenerFile, ServerFile};
use super::ConfigError;
use crate::listener::{ConnectionLimits, Limits};

/// `server.header_timeout` by default: longer than a slow client needs for a head, and longer
/// than the 10 s Chromium keeps a preconnected socket unused (a shorter bound could close one
/// just as the browser starts sending on it).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// `server.max_connections` by default: about 100 MiB of idle connections (25 KiB each), well
/// inside the Helm chart's 256 MiB limit.
const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// `server.max_connections_per_client` by default: a browser opens 6 per host, so this leaves
/// room for some 80 people behind one NAT address. Trusted proxies are not bound per address.
const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 512;

/// `server.tls_handshake_timeout` by default: a handshake takes a few round trips; a client
/// that needs longer is stalling.
const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `server.max_header_bytes` by default: about twice the largest session cookie portcullis
/// writes.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 128 * 1024;
/// The largest session (16 cookies of 4000 bytes) plus 16 KiB for everything else: a smaller
/// limit would lock out users whose session grew large.
pub const MIN_HEADER_BYTES: usize =
    crate::session::chunks::MAX_CHUNKS * crate::session::chunks::MAX_COOKIE_BYTES + 16 * 1024;
/// pingora refuses larger heads itself.
pub const MAX_HEADER_BYTES: usize = 1024 * 1024 - 1;

/// The validated `[server]`.
#[derive(Debug)]
pub struct Server {
    /// Where requests are accepted, each with how it speaks.
    pub listeners: Vec<Listener>,
    /// Peers whose forwarding headers (`X-Forwarded-*`, `X-Original-URI`) are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// How long a stopping server keeps serving after it stops listening.
    pub shutdown_grace: Duration,
    /// Where `/metrics` is served: its own address, so that the users the proxy protects
    /// cannot read it through the proxy's port.
    pub metrics_listen: Option<SocketAddr>,
    /// Where Envoy's external authorization (gRPC) is served, if anywhere.
    pub ext_authz_listen: Option<SocketAddr>,
    /// Bounds on each request head, enforced before pingora parses it.
    pub head_limits: Limits,
    /// Bounds on open connections, enforced at accept.
    pub connection_limits: ConnectionLimits,
    /// How long a TLS handshake may take (`server.tls_handshake_timeout`).
    pub tls_handshake_timeout: Duration,
    /// Where a trusted proxy puts the client certificate it verified; `None`: no proxy does.
    pub client_cert_header: Option<ClientCertHeader>,
}

/// One address portcullis accepts connections on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Where it accepts connections.
    pub address: SocketAddr,
    /// How it speaks.
    pub kind: ListenerKind,
}

/// How a listener speaks to its clients. A closed set: the server stage matches on it, so a
/// new kind cannot be configured without being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerKind {
    /// Plain HTTP/1.x (`server.listen`, or `[[server.listeners]]` without a certificate).
    Plain,
    /// TLS, with HTTP/2 when offered, and client certificates when asked for.
    Tls(TlsListener),
}

/// `server.client_cert_header`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum ClientCertHeader {
    /// Envoy's `X-Forwarded-Client-Cert` (`Hash=…;Cert="…";Subject="…";URI=…;DNS=…`).
    #[serde(rename = "x-forwarded-client-cert")]
    Xfcc,
    /// nginx's `$ssl_client_escaped_cert`: the URL-encoded PEM certificate.
    #[serde(rename = "ssl-client-cert")]
    EscapedPem,
}

impl ClientCertHeader {
    /// The header's name.
    pub fn name(self) -> &'static str {
        match self {
            ClientCertHeader::Xfcc => "x-forwarded-client-cert",
            ClientCertHeader::EscapedPem => "ssl-client-cert",
        }
    }
}

/// A TLS listener's files and settings (`[[server.listeners]]` with `tls_cert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListener {
    /// The PEM certificate chain (`tls_cert`).
    pub cert: PathBuf,
    /// The PEM private key (`tls_key`).
    pub key: PathBuf,
    /// ALPN offers `h2` besides `http/1.1`.
    pub http2: bool,
    /// Whether clients present certificates, and who issues them.
    pub client_certs: ClientCerts,
}

/// `client_certs`, with the CA file it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCerts {
    /// None asked for.
    Off,
    /// Asked for; a client without one is served too (a route may still require one).
    Optional(PathBuf),
    /// A client without a certificate from this CA fails the handshake.
    Required(PathBuf),
}

impl Server {
    /// Whether some caller could present a client certificate: a listener asks for one, or
    /// a trusted front proxy passes it on.
    pub(super) fn takes_client_certs(&self) -> bool {
        self.client_cert_header.is_some()
            || self.listeners.iter().any(
                |l| matches!(&l.kind, ListenerKind::Tls(t) if t.client_certs != ClientCerts::Off),
            )
    }

    /// Whether a peer's forwarding headers (`X-Forwarded-*`, `X-Original-URI`) may be believed.
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        let peer = canonical_ip(peer);
        self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }
}

/// `::ffff:10.0.0.1` and `10.0.0.1` are one peer.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

pub(super) fn validate(check: &Check, s: ServerFile) -> Result<Server, ConfigError> {
    let listeners = listeners(check, s.listen.as_ref(), &s.listeners)?;
    let trusted_proxies = trusted_proxies(check, &s.trusted_proxies)?;
    let threads = match s.threads {
        Some(0) => return Err(check.err("server.threads", "must be at least 1")),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let shutdown_grace = check.duration(
        "server.shutdown_grace",
        s.shutdown_grace.as_deref(),
        Duration::from_secs(5),
        Duration::from_secs(3600),
    )?;
    if s.client_cert_header.is_some() && trusted_proxies.is_empty() {
        return Err(check.err(
            "server.client_cert_header",
            "is only believed from server.trusted_proxies, and none is set",
        ));
    }
    let metrics_listen = match s.metrics_listen.as_deref() {
        None => None,
        Some(a) => Some(own_port(
            check,
            "server.metrics_listen",
            a,
            &listeners,
            &[],
        )?),
    };
    let ext_authz_listen = match s.ext_authz_listen.as_deref() {
        None => None,
        Some(a) => Some(own_port(
            check,
            "server.ext_authz_listen",
            a,
            &listeners,
            &metrics_listen.into_iter().collect::<Vec<_>>(),
        )?),
    };
    Ok(Server {
        listeners,
        trusted_proxies,
        threads,
        shutdown_grace,
        metrics_listen,
        ext_authz_listen,
        head_limits: head_limits(check, &s)?,
        connection_limits: connection_limits(check, &s)?,
        tls_handshake_timeout: check.duration(
            "server.tls_handshake_timeout",
            s.tls_handshake_timeout.as_deref(),
            DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            Duration::from_secs(120),
        )?,
        client_cert_header: s.client_cert_header,
    })
}

/// `server.listen` (plain) and `[[server.listeners]]`; the default plain listener when
/// neither is given. Two listeners on one port must be of the same kind: the listener stage
/// tells TLS from plain by the port a connection arrived on.
fn listeners(
    check: &Check,
    listen: Option<&super::file::OneOrMany>,
    tables: &[ListenerFile],
) -> Result<Vec<Listener>, ConfigError> {
    let addresses: Vec<&str> = match (listen, tables.is_empty()) {
        (Some(l), _) => l.as_slice().iter().map(String::as_str).collect(),
        (None, true) => vec![DEFAULT_LISTEN],
        (None, false) => Vec::new(),
    };
    if addresses.is_empty() && tables.is_empty() {
        return Err(check.err("server.listen", "needs at least one address"));
    }
    let mut out = Vec::new();
    for (i, a) in addresses.iter().enumerate() {
        let address = socket_address(check, &format!("server.listen[{i}]"), a)?;
        out.push(Listener {
            address,
            kind: ListenerKind::Plain,
        });
    }
    for (i, table) in tables.iter().enumerate() {
        out.push(listener(check, &format!("server.listeners[{i}]"), table)?);
    }
    for (i, l) in out.iter().enumerate() {
        if let Some(other) = out[..i]
            .iter()
            .find(|o| o.address.port() == l.address.port())
        {
            let same_kind = std::mem::discriminant(&other.kind) == std::mem::discriminant(&l.kind);
            if other.address == l.address || !same_kind {
                return Err(check.err(
                    "server.listeners",
                    format!(
                        "port {} is given twice{}",
                        l.address.port(),
                        if same_kind {
                            ""
                        } else {
                            " (once with TLS, once without)"
                        }
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// Where the examples and the demo expect portcullis.
const DEFAULT_LISTEN: &str = "127.0.0.1:4180";

fn socket_address(check: &Check, key: &str, a: &str) -> Result<SocketAddr, ConfigError> {
    a.parse().map_err(|_| {
        check.err(
            key,
            format!("`{a}` is not an address like 127.0.0.1:4180 or [::1]:4180"),
        )
    })
}

fn listener(check: &Check, table: &str, l: &ListenerFile) -> Result<Listener, ConfigError> {
    let at = |k: &str| format!("{table}.{k}");
    let address = socket_address(check, &at("address"), &l.address)?;
    let client_certs = l.client_certs.unwrap_or(ClientCertsFile::Off);
    let (cert, key) = match (&l.tls_cert, &l.tls_key) {
        (Some(cert), Some(key)) => (PathBuf::from(cert), PathBuf::from(key)),
        (Some(_), None) => return Err(check.err(at("tls_key"), "is needed with tls_cert")),
        (None, Some(_)) => return Err(check.err(at("tls_cert"), "is needed with tls_key")),
        (None, None) => {
            // A plain listener: none of the TLS settings mean anything there.
            if l.http2 == Some(true) {
                return Err(check.err(
                    at("http2"),
                    "needs TLS (tls_cert and tls_key): HTTP/2 is offered by ALPN, not in clear text",
                ));
            }
            if client_certs != ClientCertsFile::Off || l.client_ca.is_some() {
                return Err(check.err(at("client_certs"), "needs TLS (tls_cert and tls_key)"));
            }
            return Ok(Listener {
                address,
                kind: ListenerKind::Plain,
            });
        }
    };
    let ca = l.client_ca.as_ref().map(PathBuf::from);
    let client_certs = match (client_certs, ca) {
        (ClientCertsFile::Off, None) => ClientCerts::Off,
        (ClientCertsFile::Off, Some(_)) => return Err(check.err(
            at("client_ca"),
            "is set but client_certs is \"off\": say \"optional\" or \"required\", or remove it",
        )),
        (_, None) => {
            return Err(check.err(at("client_ca"), "is needed unless client_certs is \"off\""))
        }
        (ClientCertsFile::Optional, Some(ca)) => ClientCerts::Optional(ca),
        (ClientCertsFile::Required, Some(ca)) => ClientCerts::Required(ca),
    };
    check.names(&cert);
    check.names(&key);
    if let ClientCerts::Optional(ca) | ClientCerts::Required(ca) = &client_certs {
        check.names(ca);
    }
    let spec = TlsListener {
        cert,
        key,
        http2: l.http2.unwrap_or(true),
        client_certs,
    };
    crate::listener::tls::check(&spec).map_err(|e| check.err(at(e.file.key()), e.to_string()))?;
    Ok(Listener {
        address,
        kind: ListenerKind::Tls(spec),
    })
}

fn trusted_proxies(check: &Check, list: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            let net = p
                .parse::<IpNet>()
                .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    check.err(
                        format!("server.trusted_proxies[{i}]"),
                        format!("`{p}` is not a CIDR like 10.0.0.0/8 or an IP address"),
                    )
                })?;
            Ok(net.trunc())
        })
        .collect()
}

/// An address for a service of its own (`key`): it may share no port with the proxy's
/// listeners or the `others` already given.
fn own_port(
    check: &Check,
    key: &str,
    a: &str,
    listeners: &[Listener],
    others: &[SocketAddr],
) -> Result<SocketAddr, ConfigError> {
    let addr: SocketAddr = a.parse().map_err(|_| {
        check.err(
            key,
            format!("`{a}` is not an address like 127.0.0.1:9180 or [::1]:9180"),
        )
    })?;
    let overlaps = |l: &SocketAddr| {
        l.port() == addr.port()
            && (l.ip() == addr.ip() || l.ip().is_unspecified() || addr.ip().is_unspecified())
    };
    if listeners.iter().any(|l| overlaps(&l.address)) || others.iter().any(overlaps) {
        return Err(check.err(
            key,
            format!("`{a}` overlaps another listener: it needs a port of its own"),
        ));
    }
    Ok(addr)
}

fn head_limits(check: &Check, s: &ServerFile) -> Result<Limits, ConfigError> {
    let header_timeout = check.duration(
        "server.header_timeout",
        s.header_timeout.as_deref(),
        DEFAULT_HEADER_TIMEOUT,
        Duration::from_secs(600),
    )?;
    let max_header_bytes = s.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES);
    if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&max_header_bytes) {
        return Err(check.err(
            "server.max_header_bytes",
            format!(
                "must be between {MIN_HEADER_BYTES} (the largest session cookie portcullis \
                 writes, with room for other headers) and {MAX_HEADER_BYTES} (pingora's limit)"
            ),
        ));
    }
    Ok(Limits {
        header_timeout,
        max_header_bytes,
    })
}

fn connection_limits(check: &Check, s: &ServerFile) -> Result<ConnectionLimits, ConfigError> {
    let total = s.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if !(1..=1_000_000).contains(&total) {
        return Err(check.err("server.max_connections", "must be between 1 and 1000000"));
    }
    let per_client = s
        .max_connections_per_client
        .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_CLIENT);
    if per_client > total {
        return Err(check.err(
            "server.max_connections_per_client",
            "must be at most server.max_connections (0 for no bound per address)",
        ));
    }
    Ok(ConnectionLimits {
        total,
        per_client: per_client.min(total),
    })
}
