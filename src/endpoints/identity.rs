//! `/oauth2/userinfo` (who am I, as JSON; never tokens) and `/oauth2/auth` (forward
//! authentication for nginx `auth_request` and Traefik).

use http::Method;
use pingora::http::RequestHeader;
use serde_json::json;

use super::allowed::Narrowed;
use super::{Answer, Facts};
use crate::access::Target;
use crate::answer::{self, Asker, Then};
use crate::app::App;
use crate::host::HostKey;
use crate::respond::{self, unauthorized_api, Reply};
use crate::session::SessionData;

pub(super) async fn userinfo(app: &App, req: &RequestHeader) -> Answer {
    with_session(app, req, |session| {
        let id = &session.identity;
        Reply::json(
            200,
            &json!({
                "user": id.user,
                "email": id.email,
                "groups": id.groups,
                "preferred_username": id.preferred_username,
                "provider": id.provider,
                "issuer": id.issuer,
                "expires_at": session.expires_at,
            }),
        )
    })
    .await
}

/// Answers with `build(session)` for a valid session, with 401 otherwise; either way with the
/// cookies authentication wants set (a refreshed or a cleared session).
async fn with_session(
    app: &App,
    req: &RequestHeader,
    build: impl FnOnce(&SessionData) -> Reply,
) -> Answer {
    let auth = app.authenticate(req).await;
    if auth.unavailable.is_some() {
        return respond::session_store_unavailable(false).into();
    }
    match auth.session {
        None => unauthorized_api("no valid session")
            .cookies(auth.set_cookies)
            .into(),
        Some(session) => Answer {
            reply: build(&session).cookies(auth.set_cookies),
            user: session.identity.user.clone(),
            reason: None,
        },
    }
}

/// Forward authentication for nginx `auth_request` and Traefik: the same decision the proxy
/// makes, applied to the original request a trusted front proxy reports (method, host, URI).
/// 202 with `X-Auth-Request-*` to let it through, 401 to ask for credentials, 403 to refuse.
/// (nginx treats any other status as an error, so an ambiguous path is a 403 here.)
pub(super) async fn forward_auth(app: &App, req: &RequestHeader, facts: &Facts<'_>) -> Answer {
    // Each fact about the original request must be reported once, or with one value: two
    // readings (say X-Forwarded-Uri next to X-Original-URI) are refused like an ambiguous path.
    let (Ok(original), Ok(method), Ok(forwarded_host)) = (
        original_uri(req, facts),
        reported(req, facts, &["x-forwarded-method", "x-original-method"]),
        original_host(req, facts),
    ) else {
        return respond::forbidden(false).into();
    };
    // With routes configured, a decision needs the original request; without it the default
    // rule would answer for every path (fail open), so refuse and say why.
    if original.is_none() && !app.config.routes.routes().is_empty() {
        tracing::warn!(
            trusted_proxy = facts.trusted_proxy,
            "forward-auth without the original URI from a trusted proxy; refused (set X-Original-URI and server.trusted_proxies)"
        );
        return respond::forbidden(false).into();
    }
    let method = match method {
        Some(m) => match Method::from_bytes(m.as_bytes()) {
            Ok(m) => Some(m),
            Err(_) => return respond::forbidden(false).into(),
        },
        None => None,
    };
    // The auth subrequest's own Host names portcullis, not the application: only a reported
    // host counts.
    let target = Target {
        method: method.as_ref(),
        host: forwarded_host.as_deref(),
        path: original
            .as_deref()
            .map(|u| u.split('?').next().unwrap_or(u).as_bytes()),
        client_cert: facts.client_cert,
        scheme: facts.scheme,
    };
    // oauth2-proxy's per-Ingress restrictions, read before anything is decided.
    let allowed = match super::allowed::Allowed::of_query(req) {
        Ok(allowed) => allowed,
        Err(reason) => return refused(reason),
    };
    let decided = app.decide(req, &target).await;
    let verdict =
        match allowed.narrow(decided.verdict) {
            Narrowed::Verdict(v) => v,
            Narrowed::PublicRoute => return refused(
                "allowed_groups, allowed_emails or allowed_email_domains on a public route: no \
                 one is identified there to check them against"
                    .to_string(),
            ),
        };
    // The access token goes to a forward-auth subrequest only: from a trusted proxy that
    // reports an original request for the application. A page's own `fetch('/oauth2/auth')`
    // that a front proxy passes on reports no original request, or reports itself (nginx's
    // `location /oauth2/` sets `X-Original-URI` to the request's own URI), and gets the
    // identity without the token.
    // The path is compared decoded (`/%6Fauth2/auth` is nginx's `/oauth2/auth` too).
    let subrequest = facts.trusted_proxy
        && target
            .path
            .and_then(|p| crate::policy::normalise(p).ok())
            .is_some_and(|p| {
                crate::classify::classify(p.as_str(), |p| app.is_callback(p))
                    == crate::classify::Route::Protected
            });
    let asker = Asker::FrontProxy {
        names: &app.config.headers.forward_auth,
        pass_access_token: app.config.headers.pass_access_token && subrequest,
    };
    let challenges = app.challenges(&verdict, facts.scheme, target.host.or(facts.host));
    let settled = answer::settle(verdict, &asker, &challenges);
    let reply = match settled.then {
        Then::Answer(reply) => reply,
        // A front proxy is always answered; it forwards the request itself.
        Then::Forward(_) => Reply::text(202, ""),
    };
    Answer {
        reply: reply.cookies(decided.set_cookies),
        user: settled.user,
        reason: settled.reason,
    }
}

/// A forward-auth refusal (403) that names its reason in the access log.
fn refused(reason: String) -> Answer {
    Answer {
        reply: respond::forbidden(false),
        user: None,
        reason: Some(reason),
    }
}

/// Two different values for one fact about the original request.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Ambiguous;

/// One header that reports a fact, and how its value states the fact: `None` when the value
/// is malformed (which is refused like two readings).
type Reading = (&'static str, fn(&str) -> Option<String>);

/// The fact as the header states it.
fn as_is(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// ingress-nginx's `X-Original-URL` is absolute (`https://host/path?query`); the URI is its
/// path and query.
fn url_path_and_query(v: &str) -> Option<String> {
    let uri: http::Uri = v.parse().ok()?;
    uri.scheme()?;
    uri.authority()?;
    Some(uri.path_and_query()?.as_str().to_string())
}

/// ... and the host is its authority, a plain host like any other ([`crate::host`]).
fn url_authority(v: &str) -> Option<String> {
    let uri: http::Uri = v.parse().ok()?;
    uri.scheme()?;
    as_host(uri.authority()?.as_str())
}

/// A reported host: only a plain `host[:port]`; anything else is no reading at all.
fn as_host(v: &str) -> Option<String> {
    crate::host::parse_authority(v).ok()?;
    Some(v.to_string())
}

/// A host as compared between readings: case-insensitive, port ignored (route matching
/// ignores the port too). Readings were checked by [`as_host`].
fn host_key(h: &str) -> Option<HostKey> {
    crate::host::parse_authority(h).ok().map(|a| a.host.key())
}

/// What a trusted front proxy reports about one fact through any of `readings`: nothing, one
/// value (possibly reported identically by several headers), or — several different values,
/// or a malformed one — ambiguity. `key` decides which values are the same. From anyone else
/// these headers mean nothing.
fn reported_by<K: PartialEq>(
    req: &RequestHeader,
    facts: &Facts,
    readings: &[Reading],
    key: fn(&str) -> K,
) -> Result<Option<String>, Ambiguous> {
    if !facts.trusted_proxy {
        return Ok(None);
    }
    let mut found: Option<String> = None;
    for (name, read) in readings {
        for value in req.headers.get_all(*name) {
            let text = std::str::from_utf8(value.as_bytes()).map_err(|_| Ambiguous)?;
            let fact = read(text).ok_or(Ambiguous)?;
            match &found {
                Some(f) if key(f) != key(&fact) => return Err(Ambiguous),
                Some(_) => {}
                None => found = Some(fact),
            }
        }
    }
    Ok(found)
}

fn reported(
    req: &RequestHeader,
    facts: &Facts,
    names: &[&'static str],
) -> Result<Option<String>, Ambiguous> {
    let readings: Vec<Reading> = names.iter().map(|n| (*n, as_is as fn(&str) -> _)).collect();
    reported_by(req, facts, &readings, str::to_string)
}

/// The URI the user asked the front proxy for: believed only from a trusted proxy. nginx
/// recipes set `X-Original-URI`, Traefik `X-Forwarded-Uri`, ingress-nginx `X-Original-URL`;
/// whichever arrive must agree, so a client's own copy of a name the proxy does not set
/// cannot steer the decision.
pub(super) fn original_uri(
    req: &RequestHeader,
    facts: &Facts<'_>,
) -> Result<Option<String>, Ambiguous> {
    reported_by(
        req,
        facts,
        &[
            ("x-forwarded-uri", as_is),
            ("x-original-uri", as_is),
            ("x-original-url", url_path_and_query),
        ],
        str::to_string,
    )
}

/// The host the user asked the front proxy for, from `X-Forwarded-Host` or the authority of
/// `X-Original-URL`, which must agree.
fn original_host(req: &RequestHeader, facts: &Facts<'_>) -> Result<Option<String>, Ambiguous> {
    reported_by(
        req,
        facts,
        &[
            ("x-forwarded-host", as_host),
            ("x-original-url", url_authority),
        ],
        host_key,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/oauth2/auth", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn the_original_uri_is_believed_only_from_trusted_proxies() {
        let trusted = Facts {
            trusted_proxy: true,
            host: None,
            client_cert: None,
            scheme: "http",
        };
        let stranger = Facts {
            trusted_proxy: false,
            host: None,
            client_cert: None,
            scheme: "http",
        };
        let r = req(&[("x-original-uri", "/admin?x=1")]);
        assert_eq!(original_uri(&r, &trusted), Ok(Some("/admin?x=1".into())));
        assert_eq!(original_uri(&r, &stranger), Ok(None));
        // The same value under both names is one reading; different values are two.
        let r = req(&[("x-forwarded-uri", "/a"), ("x-original-uri", "/a")]);
        assert_eq!(original_uri(&r, &trusted), Ok(Some("/a".into())));
        let r = req(&[("x-forwarded-uri", "/a"), ("x-original-uri", "/b")]);
        assert_eq!(original_uri(&r, &trusted), Err(Ambiguous));
        let r = req(&[("x-forwarded-uri", "/a"), ("x-forwarded-uri", "/b")]);
        assert_eq!(original_uri(&r, &trusted), Err(Ambiguous));
    }

    #[test]
    fn ingress_nginx_original_url_is_one_more_reading_that_must_agree() {
        let trusted = Facts {
            trusted_proxy: true,
            host: None,
            client_cert: None,
            scheme: "http",
        };
        let url = ("x-original-url", "https://App.example.com:443/admin?x=1");
        let r = req(&[url]);
        assert_eq!(original_uri(&r, &trusted), Ok(Some("/admin?x=1".into())));
        assert_eq!(
            original_host(&r, &trusted),
            Ok(Some("App.example.com:443".into()))
        );
        // A client's own X-Forwarded-Uri that ingress-nginx passes along disagrees: refused.
        let r = req(&[url, ("x-forwarded-uri", "/public")]);
        assert_eq!(original_uri(&r, &trusted), Err(Ambiguous));
        // The same for the host; case and port do not make two hosts.
        let r = req(&[url, ("x-forwarded-host", "public.example.com")]);
        assert_eq!(original_host(&r, &trusted), Err(Ambiguous));
        let r = req(&[url, ("x-forwarded-host", "app.example.com")]);
        assert_eq!(
            original_host(&r, &trusted),
            Ok(Some("app.example.com".into()))
        );
        // A relative or malformed X-Original-URL is no reading at all: refused.
        for bad in ["/admin", "https://", "not a url"] {
            let r = req(&[("x-original-url", bad)]);
            assert_eq!(original_uri(&r, &trusted), Err(Ambiguous), "{bad}");
        }
        assert_eq!(host_key("[::1]:8443"), host_key("[0::1]"));
        // A reported host is held to the grammar of Host.
        for bad in ["app.example.com/", "app.example.com,x", "a b", "user@app"] {
            let r = req(&[("x-forwarded-host", bad)]);
            assert_eq!(original_host(&r, &trusted), Err(Ambiguous), "{bad}");
        }
        let r = req(&[("x-original-url", "https://user@app.example.com/x")]);
        assert_eq!(original_host(&r, &trusted), Err(Ambiguous));
    }
}
