//! The original request, as Envoy describes it in a `CheckRequest`: read into the same
//! `RequestHeader` the inline proxy decides on, or refused when it cannot be read one way.

use envoy_types::ext_authz::v3::pb::CheckRequest;
use pingora::http::RequestHeader;

use crate::client_cert::ClientCert;
use crate::config::ClientCertHeader;

/// The request Envoy asks about.
pub(crate) struct Original {
    /// Method, target (path and query) and headers, `Host` among them.
    pub req: RequestHeader,
    /// `http` or `https`, as the client reached Envoy.
    pub scheme: &'static str,
    /// The client's certificate, when Envoy verified one and sends it
    /// (`include_peer_certificate: true`).
    pub client_cert: Option<ClientCert>,
    /// The client's address as Envoy saw it, for the access log.
    pub client: Option<std::net::IpAddr>,
}

/// Why a check request cannot be decided on. The wording goes to the access log and to
/// Envoy; it never repeats a header's value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum Malformed {
    #[error("the check request has no HTTP request attributes")]
    NoHttp,
    #[error("the method is not an HTTP method")]
    Method,
    #[error("the path is not an origin-form request target")]
    Path,
    #[error("the scheme is neither http nor https")]
    Scheme,
    #[error("a header name or value is not valid")]
    Header,
    #[error("the host is missing")]
    NoHost,
    #[error("the host is given twice and the two differ")]
    Hosts,
    #[error("the peer certificate could not be read")]
    Certificate,
}

impl Original {
    /// Reads the request. Headers come from `header_map` (each header as sent, when Envoy
    /// has `encode_raw_headers`) or else from `headers` (Envoy joins repeated ones with
    /// commas, so a header sent twice stays visibly ambiguous either way). Pseudo-headers
    /// are Envoy's restatement of method, path and authority, which have fields of their own.
    pub(super) fn of(check: &CheckRequest) -> Result<Original, Malformed> {
        let attributes = check.attributes.as_ref().ok_or(Malformed::NoHttp)?;
        let http = attributes
            .request
            .as_ref()
            .and_then(|r| r.http.as_ref())
            .ok_or(Malformed::NoHttp)?;
        let method =
            http::Method::from_bytes(http.method.as_bytes()).map_err(|_| Malformed::Method)?;
        if !http.path.starts_with('/') {
            return Err(Malformed::Path);
        }
        let mut req = RequestHeader::build(method, http.path.as_bytes(), None)
            .map_err(|_| Malformed::Path)?;
        let raw: Vec<(&str, &[u8])> = match &http.header_map {
            Some(map) if !map.headers.is_empty() => map
                .headers
                .iter()
                .map(|h| {
                    let value = match h.raw_value.is_empty() {
                        true => h.value.as_bytes(),
                        false => h.raw_value.as_slice(),
                    };
                    (h.key.as_str(), value)
                })
                .collect(),
            _ => http
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_bytes()))
                .collect(),
        };
        let mut host_header = None;
        for (name, value) in raw {
            if name.starts_with(':') {
                continue;
            }
            if name.eq_ignore_ascii_case("host") {
                host_header = Some(value);
                continue;
            }
            let name =
                http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| Malformed::Header)?;
            let value = http::HeaderValue::from_bytes(value).map_err(|_| Malformed::Header)?;
            req.append_header(name, value)
                .map_err(|_| Malformed::Header)?;
        }
        // The host: the attribute, which Envoy fills from `:authority` or `Host`; a `Host` in
        // the headers must say the same.
        let host = match (http.host.as_str(), host_header) {
            ("", None) => return Err(Malformed::NoHost),
            ("", Some(h)) => std::str::from_utf8(h).map_err(|_| Malformed::Header)?,
            (h, Some(other)) if h.as_bytes() != other => return Err(Malformed::Hosts),
            (h, _) => h,
        };
        req.insert_header(http::header::HOST, host)
            .map_err(|_| Malformed::Header)?;
        let scheme = match http.scheme.as_str() {
            "https" => "https",
            "http" | "" => "http",
            _ => return Err(Malformed::Scheme),
        };
        let source = attributes.source.as_ref();
        let client_cert = match source.map(|s| s.certificate.as_str()) {
            None | Some("") => None,
            Some(pem) => {
                crate::client_cert::from_header(ClientCertHeader::EscapedPem, &[pem.as_bytes()])
                    .map_err(|_| Malformed::Certificate)?
            }
        };
        let client =
            source
                .and_then(|s| s.address.as_ref())
                .and_then(|a| match a.address.as_ref()? {
                    envoy_types::ext_authz::v3::pb::Address::SocketAddress(s) => {
                        s.address.parse().ok()
                    }
                    _ => None,
                });
        Ok(Original {
            req,
            scheme,
            client_cert,
            client,
        })
    }

    /// Envoy's HTTP ext_authz form: `req` is Envoy's request to `path_prefix` + the original
    /// target, with the original method and headers; `target` is what follows the prefix.
    pub(crate) fn of_prefixed(
        req: &RequestHeader,
        target: &str,
        scheme: &'static str,
        client_cert: Option<ClientCert>,
        client: Option<std::net::IpAddr>,
    ) -> Result<Original, Malformed> {
        if !target.starts_with('/') {
            return Err(Malformed::Path);
        }
        let mut original = RequestHeader::build(req.method.clone(), target.as_bytes(), None)
            .map_err(|_| Malformed::Path)?;
        for (name, value) in &req.headers {
            original
                .append_header(name.clone(), value.clone())
                .map_err(|_| Malformed::Header)?;
        }
        Ok(Original {
            req: original,
            scheme,
            client_cert,
            client,
        })
    }

    /// The path, without the query: what routes match.
    pub(crate) fn path(&self) -> &[u8] {
        let raw = self.req.raw_path();
        raw.split(|b| *b == b'?').next().unwrap_or(raw)
    }
}
