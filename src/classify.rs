//! The first decision about a request: is it one of our built-in endpoints, or traffic for the
//! protected application? And if it is unauthenticated, is it a person's browser (send it to log
//! in) or a program (answer 401)?
//!
//! Endpoint paths match exactly, byte for byte: `/ping/` or `/PING` are application paths, so a
//! health check can never be used to skip authentication (and nothing here looks at User-Agent).

use http::header::{HeaderMap, ACCEPT};
use http::Method;

/// Everything below this prefix belongs to portcullis.
pub(crate) const RESERVED_PREFIX: &str = "/oauth2/";
/// Where ALB's form of the signing keys is published: this, then the key id.
pub(crate) const ALB_KEYS_PREFIX: &str = "/oauth2/alb-keys/";
/// What Envoy's HTTP ext_authz puts before the original target (`path_prefix: /oauth2/auth`).
pub(crate) const ENVOY_AUTH_PREFIX: &str = "/oauth2/auth/";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Start,
    /// oauth2-proxy's `/oauth2/sign_in`: a page that moves on to [`Endpoint::Start`].
    SignIn,
    Callback,
    SignOut,
    UserInfo,
    Auth,
    /// Envoy's HTTP ext_authz (`path_prefix: /oauth2/auth`): `/oauth2/auth` followed by the
    /// original request's target.
    EnvoyAuth,
    /// The public keys of the signed identity headers: ALB's key endpoint form
    /// (`/oauth2/alb-keys/<kid>`, a PEM) and a JWKS (`/.well-known/portcullis/jwks.json`).
    AlbKey,
    Jwks,
    /// RFC 9728's protected resource metadata (`/.well-known/oauth-protected-resource`, and
    /// it followed by a resource's path).
    ResourceMetadata,
    /// RFC 8628 for `portcullis login`: start a device sign-in, then poll it.
    DeviceAuthorize,
    DeviceToken,
    /// OpenID Connect Back-Channel Logout: the provider ends logins.
    BackchannelLogout,
    Ping,
    Ready,
    /// Under `/oauth2/` but not an endpoint: 404, never forwarded.
    UnknownReserved,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Endpoint(Endpoint),
    /// Application traffic: authentication required.
    Protected,
}

/// The endpoints at fixed paths (the callback's path comes from the configuration).
const FIXED: &[(&str, Endpoint)] = &[
    ("/ping", Endpoint::Ping),
    ("/ready", Endpoint::Ready),
    ("/oauth2/start", Endpoint::Start),
    ("/oauth2/sign_in", Endpoint::SignIn),
    ("/oauth2/sign_out", Endpoint::SignOut),
    ("/oauth2/userinfo", Endpoint::UserInfo),
    ("/oauth2/auth", Endpoint::Auth),
    ("/oauth2/backchannel_logout", Endpoint::BackchannelLogout),
    ("/oauth2/device/authorize", Endpoint::DeviceAuthorize),
    ("/oauth2/device/token", Endpoint::DeviceToken),
    ("/.well-known/portcullis/jwks.json", Endpoint::Jwks),
];

/// Classifies a request by its path (the part before `?`). `is_callback` says whether a path
/// is a provider's callback (the path of an `oidc.redirect_url`, which may live outside
/// `/oauth2/`); none is without browser sign-in.
pub(crate) fn classify(path: &str, is_callback: impl Fn(&str) -> bool) -> Route {
    if is_callback(path) {
        return Route::Endpoint(Endpoint::Callback);
    }
    if let Some((_, endpoint)) = FIXED.iter().find(|(p, _)| *p == path) {
        return Route::Endpoint(*endpoint);
    }
    if path
        .strip_prefix(crate::resource_metadata::WELL_KNOWN)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    {
        return Route::Endpoint(Endpoint::ResourceMetadata);
    }
    if path.starts_with(ALB_KEYS_PREFIX) {
        return Route::Endpoint(Endpoint::AlbKey);
    }
    if path.starts_with(ENVOY_AUTH_PREFIX) {
        return Route::Endpoint(Endpoint::EnvoyAuth);
    }
    if path.starts_with(RESERVED_PREFIX) {
        return Route::Endpoint(Endpoint::UnknownReserved);
    }
    Route::Protected
}

/// Health checks answer without a `Host` (load balancers' HTTP/1.0 probes often send none);
/// everything else depends on the host, or may send the browser somewhere by it.
pub(crate) fn needs_no_host(route: Route) -> bool {
    matches!(route, Route::Endpoint(Endpoint::Ping | Endpoint::Ready))
}

/// A callback path must not shadow another built-in endpoint.
pub(crate) fn is_reserved_non_callback(path: &str) -> bool {
    FIXED.iter().any(|(p, _)| *p == path)
}

/// Whether an unauthenticated request should be redirected to the login page rather than
/// refused with 401: only page navigations of a browser. `fetch()`/XHR calls, scripts and
/// anything that is not GET/HEAD get a 401 they can act on.
pub(crate) fn is_browser_navigation(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    if headers.contains_key(http::header::AUTHORIZATION) {
        return false;
    }
    let header_is = |name: &str, value: &str| {
        headers
            .get_all(name)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
    };
    if header_is("x-requested-with", "XMLHttpRequest") {
        return false;
    }
    if header_is("sec-fetch-mode", "navigate") {
        return true;
    }
    if headers.contains_key("sec-fetch-mode") {
        // cors, no-cors, same-origin, websocket: a script or a subresource, never a page load.
        return false;
    }
    accept_prefers_html(headers)
}

/// `text/html` has the highest quality of everything listed in `Accept` and is not tied with
/// `application/json` (a client that asks for both equally is treated as an API client).
fn accept_prefers_html(headers: &HeaderMap) -> bool {
    let mut html = 0.0f32;
    let mut json = 0.0f32;
    let mut best_other = 0.0f32;
    for value in headers.get_all(ACCEPT) {
        let Ok(value) = value.to_str() else {
            return false;
        };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let mut q = 1.0f32;
            for p in parts {
                if let Some(v) = p.trim().strip_prefix("q=") {
                    q = v.trim().parse::<f32>().unwrap_or(0.0).clamp(0.0, 1.0);
                }
            }
            match media.as_str() {
                "text/html" | "application/xhtml+xml" => html = html.max(q),
                "application/json" => json = json.max(q),
                "*/*" | "" => {}
                _ => best_other = best_other.max(q),
            }
        }
    }
    html > 0.0 && html >= best_other && html > json
}

/// Why a request's body framing could be read two ways (RFC 9112 §6.1, §6.3), if it could:
/// `Transfer-Encoding` beside `Content-Length`, a transfer coding other than a lone `chunked`,
/// or a `Content-Length` that is repeated (even with equal values) or not a number. This is how requests are
/// smuggled: a proxy and an upstream that pick different readings see different requests in
/// one byte stream. `None` when the framing is unambiguous.
///
/// `raw_head` gives the header block as the client sent it, for the one case the parsed
/// headers hide: pingora drops `Content-Length` beside `Transfer-Encoding` (RFC 9112 §6.3) and
/// goes on. It is only called when `Transfer-Encoding` is present.
pub(crate) fn ambiguous_framing<R: AsRef<[u8]>>(
    headers: &HeaderMap,
    raw_head: impl FnOnce() -> Option<R>,
) -> Option<&'static str> {
    use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
    let has_length = headers.contains_key(CONTENT_LENGTH);
    if headers.contains_key(TRANSFER_ENCODING) {
        if has_length
            || raw_head().is_some_and(|raw| raw_has_header(raw.as_ref(), "content-length"))
        {
            return Some("both Content-Length and Transfer-Encoding");
        }
        let mut codings = Vec::new();
        for value in headers.get_all(TRANSFER_ENCODING) {
            let Ok(value) = value.to_str() else {
                return Some("an unreadable Transfer-Encoding");
            };
            codings.extend(value.split(',').map(|c| c.trim().to_ascii_lowercase()));
        }
        if codings != ["chunked"] {
            return Some("a transfer coding other than chunked");
        }
        return None;
    }
    // One Content-Length with one value. RFC 9110 §8.6 lets a recipient fold `41, 41` or two
    // equal headers into one; an upstream that does not would read the list differently, so
    // it is refused rather than forwarded verbatim.
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    let (Some(value), more) = (lengths.next(), lengths.next()) else {
        return None;
    };
    if more.is_some() || value.as_bytes().contains(&b',') {
        return Some("a repeated Content-Length");
    }
    if value.is_empty() || !value.as_bytes().iter().all(u8::is_ascii_digit) {
        return Some("a Content-Length that is not a number");
    }
    None
}

/// Whether a raw HTTP/1 header block (request line first) has a header line named `name`,
/// ignoring case. For headers the HTTP parser drops before we see them: pingora removes
/// `Content-Length` when `Transfer-Encoding` is present.
fn raw_has_header(raw: &[u8], name: &str) -> bool {
    raw.split(|&b| b == b'\n').skip(1).any(|line| {
        line.iter()
            .position(|&b| b == b':')
            .is_some_and(|colon| line[..colon].eq_ignore_ascii_case(name.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn framing_that_reads_two_ways_is_named() {
        let ok: &[&[(&str, &str)]] = &[
            &[],
            &[("content-length", "3")],
            &[("content-length", "0")],
            &[("transfer-encoding", "Chunked")],
        ];
        for h in ok {
            assert_eq!(ambiguous_framing(&headers(h), no_raw), None, "{h:?}");
        }
        let bad: &[&[(&str, &str)]] = &[
            &[("content-length", "3"), ("transfer-encoding", "chunked")],
            &[("content-length", "3"), ("content-length", "4")],
            &[("content-length", "3"), ("content-length", "3")],
            &[("content-length", "41,41")],
            &[("content-length", "3, 4")],
            &[("content-length", "")],
            &[("content-length", "+3")],
            &[("transfer-encoding", "xchunked")],
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            &[("transfer-encoding", "gzip, chunked")],
        ];
        for h in bad {
            assert!(ambiguous_framing(&headers(h), no_raw).is_some(), "{h:?}");
        }
        // The parser dropped Content-Length beside Transfer-Encoding; the raw head has it.
        let te = headers(&[("transfer-encoding", "chunked")]);
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(ambiguous_framing(&te, || Some(&raw[..])).is_some());
        let raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(ambiguous_framing(&te, || Some(&raw[..])), None);
        // Without Transfer-Encoding the raw head is not even looked at.
        let cl = headers(&[("content-length", "3")]);
        assert_eq!(
            ambiguous_framing(&cl, || -> Option<&[u8]> { panic!("read") }),
            None
        );
    }

    fn no_raw() -> Option<&'static [u8]> {
        None
    }

    #[test]
    fn raw_header_names_are_found_ignoring_case() {
        let raw = b"POST /content-length: HTTP/1.1\r\nHost: a\r\ncontent-LENGTH: 4\r\n\r\n";
        assert!(raw_has_header(raw, "Content-Length"));
        assert!(!raw_has_header(raw, "Transfer-Encoding"));
        assert!(!raw_has_header(
            b"POST /content-length: HTTP/1.1\r\n\r\n",
            "Content-Length"
        ));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    const CHROME_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7";

    #[test]
    fn endpoints_match_exactly() {
        let cb = |p: &str| p == "/oauth2/callback";
        assert_eq!(classify("/ping", cb), Route::Endpoint(Endpoint::Ping));
        assert_eq!(classify("/ping/", cb), Route::Protected);
        assert_eq!(classify("/PING", cb), Route::Protected);
        assert_eq!(classify("/pingx", cb), Route::Protected);
        assert_eq!(classify("/ready", cb), Route::Endpoint(Endpoint::Ready));
        assert_eq!(
            classify("/oauth2/callback", cb),
            Route::Endpoint(Endpoint::Callback)
        );
        assert_eq!(
            classify("/oauth2/auth", cb),
            Route::Endpoint(Endpoint::Auth)
        );
        assert_eq!(
            classify("/oauth2/other", cb),
            Route::Endpoint(Endpoint::UnknownReserved)
        );
        assert_eq!(classify("/app/oauth2/start", cb), Route::Protected);
        assert_eq!(
            classify("/oauth2/auth/app/x", cb),
            Route::Endpoint(Endpoint::EnvoyAuth)
        );
        assert_eq!(
            classify("/sso/cb", |p: &str| p == "/sso/cb"),
            Route::Endpoint(Endpoint::Callback)
        );
        assert!(is_reserved_non_callback("/ping"));
        assert!(!is_reserved_non_callback("/oauth2/callback"));
    }

    #[test]
    fn browser_navigation() {
        let get = Method::GET;
        assert!(is_browser_navigation(
            &get,
            &headers(&[("accept", CHROME_ACCEPT)])
        ));
        assert!(is_browser_navigation(
            &get,
            &headers(&[("sec-fetch-mode", "navigate"), ("accept", "*/*")])
        ));
        // fetch() from a page
        assert!(!is_browser_navigation(
            &get,
            &headers(&[("sec-fetch-mode", "cors"), ("accept", "*/*")])
        ));
        // XHR even with text/html
        assert!(!is_browser_navigation(
            &get,
            &headers(&[
                ("accept", CHROME_ACCEPT),
                ("x-requested-with", "XMLHttpRequest")
            ])
        ));
        // curl, python requests
        assert!(!is_browser_navigation(&get, &headers(&[("accept", "*/*")])));
        assert!(!is_browser_navigation(&get, &headers(&[])));
        assert!(!is_browser_navigation(
            &get,
            &headers(&[("accept", "application/json, text/html")])
        ));
        assert!(!is_browser_navigation(
            &get,
            &headers(&[("accept", "text/html;q=0.1, application/json")])
        ));
        // a POST is never redirected
        assert!(!is_browser_navigation(
            &Method::POST,
            &headers(&[("accept", CHROME_ACCEPT)])
        ));
        // a bearer caller is never redirected
        assert!(!is_browser_navigation(
            &get,
            &headers(&[("accept", CHROME_ACCEPT), ("authorization", "Bearer x")])
        ));
    }
}
