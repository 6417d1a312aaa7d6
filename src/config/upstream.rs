//! `[upstream]`: the application portcullis stands in front of.

use std::net::SocketAddr;
use std::time::Duration;

use url::Url;

use super::check::Check;
use super::file::UpstreamFile;
use super::ConfigError;

/// `upstream.protocol`: the HTTP version spoken to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1.
    #[default]
    Http1,
    /// HTTP/2 only: prior knowledge (h2c) on `http://`, ALPN `h2` on `https://`. What gRPC
    /// upstreams need.
    H2,
    /// `https://` only: ALPN offers `h2` and `http/1.1`, the upstream picks.
    Auto,
}

/// The validated `[upstream]`.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `scheme://host[:port]` of the application.
    pub url: Url,
    /// `host:port` to connect to.
    pub address: String,
    /// The address itself when the host is an IP literal: no lookup per request.
    pub ip: Option<SocketAddr>,
    /// Whether the upstream speaks TLS (`https`).
    pub tls: bool,
    /// Server name for TLS.
    pub sni: String,
    /// The bound on connecting.
    pub connect_timeout: Duration,
    /// The bound on each read of the response.
    pub read_timeout: Duration,
    /// The HTTP version spoken to it.
    pub protocol: UpstreamProtocol,
}

pub(super) fn validate(check: &Check, u: UpstreamFile) -> Result<Upstream, ConfigError> {
    let url =
        Url::parse(&u.url).map_err(|e| check.err("upstream.url", format!("not a URL ({e})")))?;
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err(check.err(
                "upstream.url",
                format!("scheme `{other}` is not supported; use http or https"),
            ))
        }
    };
    let host = url
        .host_str()
        .ok_or_else(|| check.err("upstream.url", "has no host"))?
        .to_string();
    if !url.username().is_empty() || url.password().is_some() {
        return Err(check.err("upstream.url", "must not carry credentials"));
    }
    if url.path() != "/" || url.query().is_some() {
        return Err(check.err(
            "upstream.url",
            "must be scheme://host[:port] only; paths are forwarded as requested",
        ));
    }
    let protocol = u.protocol.unwrap_or_default();
    if protocol == UpstreamProtocol::Auto && !tls {
        return Err(check.err(
            "upstream.protocol",
            "\"auto\" needs an https:// upstream (ALPN); for h2c say \"h2\"",
        ));
    }
    let port = url
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    let address = format!("{host}:{port}");
    let sni = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok(Upstream {
        connect_timeout: check.duration(
            "upstream.connect_timeout",
            u.connect_timeout.as_deref(),
            Duration::from_secs(5),
            Duration::from_secs(300),
        )?,
        read_timeout: check.duration(
            "upstream.read_timeout",
            u.read_timeout.as_deref(),
            Duration::from_secs(60),
            Duration::from_secs(3600),
        )?,
        protocol,
        url,
        ip: address.parse().ok(),
        address,
        tls,
        sni,
    })
}
