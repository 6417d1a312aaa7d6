//! `/oauth2/sign_out`: forget the session here, then at the provider when it supports
//! RP-initiated logout.
//!
//! Only the user's own pages may sign them out. A cross-site request (a link or an image on
//! another site, a form posted from one) would otherwise end the session here and at the
//! provider at an attacker's will, which the RP-Initiated Logout spec warns about. So a GET
//! that the browser does not mark as same-origin gets a page with a button instead, and a
//! cross-site POST is refused. The ID token that goes to the provider as `id_token_hint` is
//! posted in a form by default, so that it never stands in a URL: browser history and the
//! provider's access logs would keep it.

use http::Method;
use pingora::http::RequestHeader;
use sha2::{Digest, Sha256};

use super::{return_target, Facts};
use crate::app::{cookie_headers, App, Login};
use crate::config::EndSessionMethod;
use crate::respond::{escape_html, Reply};

/// Submits the form to the provider as soon as the page loads; allowed by its hash in the CSP.
const SUBMIT_SCRIPT: &str = "document.forms[0].submit();";

pub(super) async fn sign_out(
    app: &App,
    login: &Login,
    req: &RequestHeader,
    facts: &Facts<'_>,
) -> Reply {
    // Any provider's redirect_url names the application's public origin.
    let from_our_pages = login
        .providers
        .iter()
        .map(|p| same_origin(req, facts.host, &p.oidc().redirect_url))
        .reduce(|a, b| match (a, b) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (None, None) => None,
            _ => Some(false),
        })
        .flatten();
    match (&req.method, from_our_pages) {
        (&Method::GET, Some(true)) | (&Method::POST, Some(true) | None) => {}
        (&Method::GET, _) => return confirmation(req),
        (&Method::POST, Some(false)) => {
            tracing::info!("cross-site sign-out refused");
            return Reply::page(
                403,
                "Sign-out refused",
                "The sign-out request came from another site.",
            );
        }
        _ => return Reply::text(405, "method not allowed\n").header("Allow", "GET, POST"),
    }
    let target = return_target(app, req, facts);
    let cookies = cookie_headers(req);
    let loaded = login.sessions.load(&cookies, app.clock.now()).await;
    let mut set_cookies = login.sessions.clear(&loaded, app.clock.now()).await;
    set_cookies.extend(login.flows.clear_all(&cookies));
    if let Some(session) = loaded.session.as_ref() {
        tracing::info!(user = session.identity.user(), "sign-out");
        login.refresher.forget(session);
    }
    // Signing out at the provider is the session's provider's business (the only one's,
    // when the session is already gone here).
    let Some(provider) = loaded
        .session
        .as_ref()
        .and_then(|s| login.providers.of_session(&s.identity))
        .or_else(|| login.providers.only())
    else {
        return Reply::redirect(&target).cookies(set_cookies);
    };
    let oidc = provider.oidc();
    let end_session = provider
        .metadata()
        .and_then(|m| m.end_session_endpoint.clone())
        .and_then(|e| url::Url::parse(&e).ok());
    let Some(url) = end_session else {
        return Reply::redirect(&target).cookies(set_cookies);
    };
    // The provider needs an absolute address to come back to; a relative target is resolved
    // against the application's public origin (that of oidc.redirect_url).
    let back = oidc
        .redirect_url
        .join(&target)
        .map(|u| u.to_string())
        .unwrap_or(target);
    let mut fields: Vec<(&str, &str)> = Vec::with_capacity(3);
    if let Some(hint) = loaded.session.as_ref().and_then(|s| s.id_token.as_deref()) {
        fields.push(("id_token_hint", hint));
    }
    fields.push(("post_logout_redirect_uri", &back));
    fields.push(("client_id", &oidc.client_id));
    let reply = match oidc.end_session_method {
        EndSessionMethod::Post => post_form(&url, &fields),
        EndSessionMethod::Get => {
            let mut url = url;
            url.query_pairs_mut().extend_pairs(&fields);
            Reply::redirect(url.as_str())
        }
    };
    reply.cookies(set_cookies)
}

/// Whether the browser says the request comes from a page of this site: `Sec-Fetch-Site`
/// (`same-origin`, or `none` for an address typed or bookmarked), else `Origin` against the
/// request's host or the application's public origin (that of `oidc.redirect_url`, for a
/// front proxy that sends another `Host`). `None` when the request says neither (a program,
/// or a browser too old to).
fn same_origin(req: &RequestHeader, host: Option<&str>, public: &url::Url) -> Option<bool> {
    if let Some(site) = req.headers.get("sec-fetch-site") {
        return Some(matches!(site.as_bytes(), b"same-origin" | b"none"));
    }
    let origin = req.headers.get(http::header::ORIGIN)?;
    let Some(origin) = origin.to_str().ok().and_then(|o| url::Url::parse(o).ok()) else {
        return Some(false);
    };
    if origin.origin() == public.origin() {
        return Some(true);
    }
    // The origin's authority, its default port spelt out for the comparison when the
    // request's host names one.
    let same = host
        .and_then(|h| crate::host::parse_authority(h).ok())
        .zip(
            origin
                .host_str()
                .and_then(|h| crate::host::parse_authority(h).ok()),
        )
        .is_some_and(|(ours, theirs)| {
            let port = match ours.port {
                Some(_) => origin.port_or_known_default(),
                None => origin.port(),
            };
            ours.same_as(&crate::host::Authority { port, ..theirs })
        });
    Some(same)
}

/// A GET the browser did not mark as coming from our own pages: ask first. The button posts
/// back here (same origin), with the same `rd`.
fn confirmation(req: &RequestHeader) -> Reply {
    let action = match req.uri.query() {
        Some(q) => format!("/oauth2/sign_out?{q}"),
        None => "/oauth2/sign_out".to_string(),
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign out?</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}}\
         h1{{font-size:1.4rem}}</style></head><body><h1>Sign out?</h1>\
         <form method=\"post\" action=\"{}\"><button type=\"submit\">Sign out</button></form>\
         </body></html>",
        escape_html(&action)
    );
    Reply::new(200, "text/html; charset=utf-8", body)
        .header(
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        )
        .header("X-Frame-Options", "DENY")
}

/// A page that posts `fields` to the provider's `url` at once (a button without scripts).
fn post_form(url: &url::Url, fields: &[(&str, &str)]) -> Reply {
    let inputs: String = fields
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape_html(name),
                escape_html(value)
            )
        })
        .collect();
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Signing out</title></head>\
         <body><form method=\"post\" action=\"{action}\">{inputs}\
         <noscript><button type=\"submit\">Continue signing out</button></noscript></form>\
         <script>{SUBMIT_SCRIPT}</script></body></html>",
        action = escape_html(url.as_str()),
    );
    let hash = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        Sha256::digest(SUBMIT_SCRIPT.as_bytes()),
    );
    Reply::new(200, "text/html; charset=utf-8", body)
        .header(
            "Content-Security-Policy",
            format!("default-src 'none'; script-src 'sha256-{hash}'; frame-ancestors 'none'"),
        )
        .header("Referrer-Policy", "no-referrer")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, b"/oauth2/sign_out?rd=/x", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn only_the_sites_own_pages_count_as_same_origin() {
        let host = Some("app.example.com");
        type Headers<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Headers, Option<bool>)] = &[
            (&[("sec-fetch-site", "same-origin")], Some(true)),
            (&[("sec-fetch-site", "none")], Some(true)),
            (&[("sec-fetch-site", "same-site")], Some(false)),
            (&[("sec-fetch-site", "cross-site")], Some(false)),
            (&[("origin", "https://app.example.com")], Some(true)),
            (&[("origin", "http://APP.example.com:80")], Some(true)),
            (&[("origin", "https://app.example.com:8443")], Some(false)),
            (&[("origin", "https://evil.example")], Some(false)),
            (&[("origin", "null")], Some(false)),
            (&[], None),
        ];
        let public = url::Url::parse("https://public.example/oauth2/callback").unwrap();
        for (headers, want) in cases {
            let got = same_origin(&req("GET", headers), host, &public);
            assert_eq!(got, *want, "{headers:?}");
        }
        let with_port = Some("app.example.com:8443");
        let r = req("POST", &[("origin", "https://app.example.com:8443")]);
        assert_eq!(same_origin(&r, with_port, &public), Some(true));
        // A front proxy that sends its own Host: the public origin still counts.
        let r = req("POST", &[("origin", "https://public.example")]);
        assert_eq!(
            same_origin(&r, Some("portcullis:4180"), &public),
            Some(true)
        );
        let r = req("POST", &[("origin", "http://public.example")]);
        assert_eq!(
            same_origin(&r, Some("portcullis:4180"), &public),
            Some(false)
        );
    }
}
