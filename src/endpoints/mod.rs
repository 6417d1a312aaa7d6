//! Built-in endpoints: health, login, sign-out and identity. Each handler computes a [`Reply`];
//! this module only dispatches and sends.

mod allowed;
mod backchannel;
mod device;
mod envoy;
mod health;
mod identity;
mod login;
mod sign_out;

use pingora::http::RequestHeader;

use crate::app::App;
use crate::classify::Endpoint;
use crate::respond::Reply;

/// Request facts an endpoint may need besides the header.
pub(crate) struct Facts<'a> {
    /// The peer is a configured trusted proxy.
    pub trusted_proxy: bool,
    /// The request's host, as [`crate::host::of_request`] read it.
    pub host: Option<&'a str>,
    /// The verified client certificate, if any (see `Portcullis::client_cert`).
    pub client_cert: Option<&'a crate::client_cert::ClientCert>,
    /// `http` or `https`, as the client (or a trusted front proxy) reached us.
    pub scheme: &'static str,
}

/// What an endpoint answered, and who it was about (for the access log).
pub(crate) struct Answer {
    pub reply: Reply,
    pub user: Option<String>,
    /// Why forward auth refused, for the access log.
    pub reason: Option<String>,
}

impl From<Reply> for Answer {
    fn from(reply: Reply) -> Answer {
        Answer {
            reply,
            user: None,
            reason: None,
        }
    }
}

pub(crate) use backchannel::MAX_BODY_BYTES;

pub(crate) async fn handle(
    app: &App,
    endpoint: Endpoint,
    req: &RequestHeader,
    body: &[u8],
    facts: &Facts<'_>,
) -> Answer {
    let not_found = || Reply::text(404, "not found\n").into();
    match (endpoint, &app.login) {
        (Endpoint::Ping, _) => health::ping().into(),
        (Endpoint::Ready, _) => health::ready(app).into(),
        (Endpoint::Start, Some(login)) => login::start(app, login, req, facts).into(),
        (Endpoint::SignIn, Some(_)) => login::sign_in(app, req, facts).into(),
        (Endpoint::Callback, Some(login)) => login::callback(app, login, req).await,
        (Endpoint::SignOut, Some(login)) => sign_out::sign_out(app, login, req, facts).await.into(),
        (Endpoint::UserInfo, Some(_)) => identity::userinfo(app, req).await,
        (Endpoint::DeviceAuthorize, Some(login)) => {
            device::authorize(app, login, req, body).await.into()
        }
        (Endpoint::DeviceToken, Some(login)) => device::token(app, login, req, body).await,
        (Endpoint::BackchannelLogout, Some(login)) => {
            backchannel::logout(app, login, req, body).await.into()
        }
        // Without browser sign-in (no `[oidc]`) there is no one to sign in or out.
        (
            Endpoint::Start
            | Endpoint::SignIn
            | Endpoint::Callback
            | Endpoint::SignOut
            | Endpoint::UserInfo
            | Endpoint::DeviceAuthorize
            | Endpoint::DeviceToken
            | Endpoint::BackchannelLogout,
            None,
        ) => not_found(),
        (Endpoint::Auth, _) => {
            let answer = identity::forward_auth(app, req, facts).await;
            crate::metrics::get().forward_auth(answer.reply.status());
            answer
        }
        (Endpoint::EnvoyAuth, _) => {
            let answer = envoy::http_ext_authz(app, req, facts).await;
            crate::metrics::get().forward_auth(answer.reply.status());
            answer
        }
        (Endpoint::ResourceMetadata, _) => {
            let doc = app
                .resource_metadata
                .as_ref()
                .and_then(|m| m.document(req.uri.path(), facts.scheme, facts.host));
            match doc {
                // Public, and fetched by browser-based clients from other origins.
                Some(doc) => Reply::json(200, &doc)
                    .header("Access-Control-Allow-Origin", "*")
                    .into(),
                None => not_found(),
            }
        }
        (Endpoint::AlbKey, _) => {
            let kid = req
                .uri
                .path()
                .strip_prefix(crate::classify::ALB_KEYS_PREFIX)
                .unwrap_or("");
            match signing_keys(app).and_then(|ring| Some(ring.get(kid)?.pem.clone())) {
                // As ALB's key endpoint answers: the public key, PEM.
                Some(pem) => Reply::new(200, "application/x-pem-file", pem).into(),
                None => not_found(),
            }
        }
        (Endpoint::Jwks, _) => match signing_keys(app) {
            Some(ring) => Reply::json(200, &ring.jwks())
                .header("Access-Control-Allow-Origin", "*")
                .into(),
            None => not_found(),
        },
        (Endpoint::UnknownReserved, _) => not_found(),
    }
}

/// The signed identity's keys of the moment, when it is configured.
fn signing_keys(app: &App) -> Option<std::sync::Arc<crate::signed_identity::keys::KeyRing>> {
    let signed = app.signed_identity.as_ref()?;
    match signed.keys().ring(app.clock.now()) {
        Ok(ring) => Some(ring),
        Err(e) => {
            tracing::error!(error = %e, "the signing keys cannot be published");
            None
        }
    }
}

/// A query parameter given more than once: which one was meant is ambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Repeated;

/// The single value of a query parameter. A parameter given twice is ambiguous and refused.
fn query_param(req: &RequestHeader, name: &str) -> Result<Option<String>, Repeated> {
    let Some(query) = req.uri.query() else {
        return Ok(None);
    };
    let mut found = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if k == name {
            if found.is_some() {
                return Err(Repeated);
            }
            found = Some(v.into_owned());
        }
    }
    Ok(found)
}

/// Where to send the browser afterwards: `rd`; else `X-Auth-Request-Redirect` (oauth2-proxy's
/// header, which its nginx example sets to `$request_uri`); else the original URI a trusted
/// front proxy reports (nginx `error_page 401 = /oauth2/start` cannot URL-encode
/// `$request_uri` into `rd` itself). Whichever it is passes the redirect policy like `rd`.
/// Falls back to `/` when absent, ambiguous or refused.
fn return_target(app: &App, req: &RequestHeader, facts: &Facts<'_>) -> String {
    let original = identity::original_uri(req, facts).ok().flatten();
    // nginx's `error_page 401 = /oauth2/start?rd=$request_uri` cannot URL-encode the URI: its
    // query arrives cut at the first `&`, and a `+` or `%xx` in it would be decoded once too
    // often. When the raw query is exactly `rd=` followed by the original URI the same trusted
    // proxy reports, that original URI is what the user asked for, byte for byte.
    let raw_rd = req.uri.query().and_then(|q| q.strip_prefix("rd="));
    let candidate = match (&original, query_param(req, "rd")) {
        (Some(full), _) if raw_rd == Some(full.as_str()) => original,
        (_, Ok(Some(rd))) => Some(rd),
        (_, Ok(None)) => match auth_request_redirect(req) {
            Ok(Some(header)) => Some(header),
            Ok(None) => original,
            Err(Repeated) => None,
        },
        (_, Err(Repeated)) => None,
    };
    candidate
        .and_then(|target| app.config.redirects.validate(&target))
        // Returning to one of our own endpoints (say `/oauth2/start`) would loop.
        .filter(|target| {
            let path = target.split(['?', '#']).next().unwrap_or("");
            !(path.starts_with(crate::classify::RESERVED_PREFIX) || app.is_callback(path))
        })
        .unwrap_or_else(|| "/".to_string())
}

/// `X-Auth-Request-Redirect`, when sent once (from anyone: like `rd`, it is only a wish that
/// the redirect policy checks).
fn auth_request_redirect(req: &RequestHeader) -> Result<Option<String>, Repeated> {
    let mut values = req.headers.get_all("x-auth-request-redirect").iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => Ok(v.to_str().ok().map(str::to_string)),
        (Some(_), Some(_)) => Err(Repeated),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn start_request(uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn test_app() -> App {
        App::new(Arc::new(crate::config::for_tests(
            "\"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY\"",
        )))
        .unwrap()
    }

    fn facts(trusted_proxy: bool) -> Facts<'static> {
        Facts {
            trusted_proxy,
            host: None,
            client_cert: None,
            scheme: "http",
        }
    }

    #[test]
    fn an_rd_cut_at_its_first_ampersand_is_completed_from_the_trusted_original_uri() {
        let app = test_app();
        let trusted = facts(true);
        let stranger = facts(false);
        // What nginx sends for `error_page 401 = /oauth2/start?rd=$request_uri`.
        let cut = start_request(
            "/oauth2/start?rd=/r/q3?year=2026&tab=cost",
            &[("x-original-uri", "/r/q3?year=2026&tab=cost")],
        );
        assert_eq!(
            return_target(&app, &cut, &trusted),
            "/r/q3?year=2026&tab=cost"
        );
        // From anyone else the header means nothing: rd as it came.
        assert_eq!(return_target(&app, &cut, &stranger), "/r/q3?year=2026");
        // An original URI that is not rd's continuation does not override rd.
        let other = start_request(
            "/oauth2/start?rd=/r/q3?year=2026&tab=cost",
            &[("x-original-uri", "/admin?x=1")],
        );
        assert_eq!(return_target(&app, &other, &trusted), "/r/q3?year=2026");
        let longer = start_request("/oauth2/start?rd=/r", &[("x-original-uri", "/r/../admin")]);
        assert_eq!(return_target(&app, &longer, &trusted), "/r");
        // `+` and `%xx` arrive raw in both: the original is taken byte for byte.
        for uri in [
            "/search?q=a+b&page=2",
            "/r?from=2026-01-01T00%3A00&to=x",
            "/e?name=J%C3%BCrgen",
        ] {
            let r = start_request(
                &format!("/oauth2/start?rd={uri}"),
                &[("x-original-uri", uri)],
            );
            assert_eq!(return_target(&app, &r, &trusted), uri);
            // Not from a trusted proxy: rd as decoded, never the header.
            assert_ne!(return_target(&app, &r, &stranger), uri);
        }
        // Without rd, the trusted original URI is the target.
        let none = start_request("/oauth2/start", &[("x-original-uri", "/deep?a=1&b=2")]);
        assert_eq!(return_target(&app, &none, &trusted), "/deep?a=1&b=2");
    }

    #[test]
    fn oauth2_proxys_redirect_header_is_a_wish_like_rd() {
        let app = test_app();
        let stranger = facts(false);
        let wish = |uri: &str, headers: &[(&str, &str)]| {
            return_target(&app, &start_request(uri, headers), &stranger)
        };
        let header = "x-auth-request-redirect";
        assert_eq!(
            wish("/oauth2/sign_in", &[(header, "/deep?a=1")]),
            "/deep?a=1"
        );
        // rd comes first; the policy applies to the header as to rd.
        assert_eq!(wish("/oauth2/sign_in?rd=/r", &[(header, "/deep")]), "/r");
        assert_eq!(
            wish("/oauth2/sign_in", &[(header, "https://evil.example/")]),
            "/"
        );
        assert_eq!(wish("/oauth2/sign_in", &[(header, "//evil.example/")]), "/");
        // Sent twice: which one was meant is unknown.
        assert_eq!(
            wish("/oauth2/sign_in", &[(header, "/a"), (header, "/b")]),
            "/"
        );
    }
}
