//! `/oauth2/start` sends the browser to the provider; the callback brings it back with a code.

use pingora::http::RequestHeader;

use super::{query_param, return_target, Answer, Facts};
use crate::app::{cookie_headers, App, Login};
use std::sync::Arc;

use crate::oidc::{client, flow, Provider};
use crate::respond::Reply;

fn provider_unavailable() -> Reply {
    Reply::page(
        503,
        "Sign-in is unavailable",
        "The identity provider cannot be reached right now. Please try again in a moment.",
    )
    .header("Retry-After", "5")
}

/// Which provider a login uses: the one `?provider=` names; else the one the route of the
/// return target names (a route, or a host's route, chooses its provider); else the only
/// one. With several and nothing to choose by, the person picks.
enum Choice<'a> {
    Provider(&'a Arc<Provider>),
    Ask,
    Unknown,
}

fn choose<'a>(
    app: &App,
    login: &'a Login,
    req: &RequestHeader,
    return_to: &str,
    facts: &Facts<'_>,
) -> Choice<'a> {
    match query_param(req, "provider") {
        Ok(Some(id)) => {
            return login
                .providers
                .get(&id)
                .map_or(Choice::Unknown, Choice::Provider)
        }
        Ok(None) => {}
        Err(_) => return Choice::Unknown,
    }
    if let Some(p) = login.providers.only() {
        return Choice::Provider(p);
    }
    match route_provider(app, return_to, facts).and_then(|id| login.providers.get(id)) {
        Some(p) => Choice::Provider(p),
        None => Choice::Ask,
    }
}

/// The provider the route of `return_to` names, as a browser will request it (a GET).
fn route_provider<'a>(app: &'a App, return_to: &str, facts: &Facts<'_>) -> Option<&'a str> {
    let (host, path) = match return_to.strip_prefix('/') {
        Some(_) => (facts.host.map(str::to_string), return_to.to_string()),
        None => {
            let url = url::Url::parse(return_to).ok()?;
            let host = match url.port() {
                Some(port) => format!("{}:{port}", url.host_str()?),
                None => url.host_str()?.to_string(),
            };
            (Some(host), url.path().to_string())
        }
    };
    let path = path.split(['?', '#']).next().unwrap_or("/");
    let normal = crate::policy::normalise(path.as_bytes()).ok()?;
    let route = app
        .config
        .routes
        .lookup(Some(&http::Method::GET), host.as_deref(), &normal)
        .ok()??;
    route.provider()
}

/// The chooser: one link per provider, each carrying the return target on.
fn chooser(login: &Login, return_to: &str) -> Reply {
    let rd: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
    let links: Vec<(&str, String)> = login
        .providers
        .iter()
        .map(|p| {
            let href = format!("/oauth2/start?provider={}&rd={rd}", p.id());
            (p.oidc().name.as_str(), href)
        })
        .collect();
    Reply::choices("Sign in", "Choose how to sign in:", &links)
}

pub(super) fn start(app: &App, login: &Login, req: &RequestHeader, facts: &Facts<'_>) -> Reply {
    let return_to = return_target(app, req, facts);
    let provider =
        match choose(app, login, req, &return_to, facts) {
            Choice::Provider(p) => p,
            Choice::Ask => return chooser(login, &return_to),
            Choice::Unknown => return Reply::page(
                400,
                "Sign-in failed",
                "There is no such identity provider. Go back to the application to sign in again.",
            ),
        };
    // A provider known to be down would leave the browser on a connection error page.
    if !provider.health().is_up() {
        return provider_unavailable();
    }
    let Some(meta) = provider.metadata() else {
        return provider_unavailable();
    };
    let auth = match client::authorization(provider.oidc(), &meta) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the authorization request");
            return provider_unavailable();
        }
    };
    let state = flow::FlowState {
        provider: provider.id().to_string(),
        state: auth.state,
        nonce: auth.nonce,
        pkce_verifier: auth.pkce_verifier,
        return_to,
        created_us: app.clock.now().micros(),
    };
    let cookies = login.flows.begin(&state, &cookie_headers(req));
    Reply::redirect(auth.url.as_str()).cookies(cookies)
}

/// oauth2-proxy's `/oauth2/sign_in`, which its nginx example reaches through `error_page 401`:
/// a browser gets a page that moves on to `/oauth2/start` with the same return target (a
/// redirect would not survive `error_page 401 =403`); a program gets the 401 it can act on.
pub(super) fn sign_in(app: &App, req: &RequestHeader, facts: &Facts<'_>) -> Reply {
    if !crate::classify::is_browser_navigation(&req.method, &req.headers) {
        return crate::respond::unauthorized_api("sign in first, or send a bearer token");
    }
    let target = return_target(app, req, facts);
    let rd: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
    // A page rather than a redirect: it survives `error_page 401 =403`.
    Reply::moving_on(
        "Sign in",
        "",
        "Sign in to continue",
        &format!("/oauth2/start?rd={rd}"),
    )
    .header("Cache-Control", "no-store")
}

fn store_unavailable() -> Reply {
    Reply::page(
        503,
        "Sign-in is unavailable",
        "Sessions cannot be stored right now. Please try again in a moment.",
    )
    .header("Retry-After", "5")
}

fn login_failed(status: u16, detail: &str) -> Reply {
    Reply::page(
        status,
        "Sign-in failed",
        &format!("{detail} Go back to the application to sign in again."),
    )
}

pub(super) async fn callback(app: &App, login: &Login, req: &RequestHeader) -> Answer {
    // The provider sends the browser back with a GET (response_mode=query). Anything else,
    // a HEAD from a link checker or a prefetch included, must not spend the login flow.
    if req.method != http::Method::GET {
        return Reply::text(405, "method not allowed\n")
            .header("Allow", "GET")
            .into();
    }
    let (Ok(state), Ok(code), Ok(error), Ok(iss)) = (
        query_param(req, "state"),
        query_param(req, "code"),
        query_param(req, "error"),
        query_param(req, "iss"),
    ) else {
        return login_failed(400, "The sign-in response is ambiguous.").into();
    };
    let cookies = cookie_headers(req);
    let Some(state) = state else {
        return login_failed(400, "The sign-in response has no state.").into();
    };
    let (flow, mut set_cookies) = match login.flows.finish(&cookies, &state, app.clock.now()) {
        Ok(found) => found,
        Err(e) => {
            tracing::info!(reason = %e, "callback without a matching login");
            return login_failed(400, &format!("{}.", capitalise(&e.to_string()))).into();
        }
    };
    if let Some(error) = error {
        let description = query_param(req, "error_description")
            .ok()
            .flatten()
            .unwrap_or_default();
        let detail: String = format!("The identity provider answered: {error} {description}")
            .chars()
            .take(300)
            .collect();
        tracing::info!(error = %error, "the identity provider refused the login");
        return login_failed(403, &format!("{}.", detail.trim_end()))
            .cookies(set_cookies)
            .into();
    }
    // The flow says which provider the browser was sent to; only that provider's answer, at
    // that provider's callback address, finishes it (no mix-up between providers).
    let Some(provider) = flow_provider(login, &flow.provider) else {
        return login_failed(
            400,
            "The sign-in began with a provider that is no longer configured.",
        )
        .cookies(set_cookies)
        .into();
    };
    if req.uri.path() != provider.oidc().callback_path {
        tracing::info!(
            provider = provider.id(),
            "callback at another provider's address: refused"
        );
        return login_failed(
            400,
            "The sign-in response came back to another provider's address.",
        )
        .cookies(set_cookies)
        .into();
    }
    // RFC 9207: when the provider names itself, it must be the one we sent the browser to; a
    // provider that promises to always name itself must have done so.
    let iss_promised = provider
        .metadata()
        .is_some_and(|m| m.authorization_response_iss_parameter_supported);
    let iss_ok = match &iss {
        Some(iss) => *iss == provider.oidc().issuer,
        None => !iss_promised,
    };
    let metrics = crate::metrics::get();
    if !iss_ok {
        metrics.login(provider.id(), "refused");
        return login_failed(400, "The sign-in response came from another issuer.")
            .cookies(set_cookies)
            .into();
    }
    let Some(code) = code else {
        return login_failed(400, "The sign-in response has no code.")
            .cookies(set_cookies)
            .into();
    };
    match provider
        .complete_login(&code, &flow.pkce_verifier, &flow.nonce, app.clock.now())
        .await
    {
        Ok(session) => {
            // Always a brand-new session: whatever cookie came in before login is replaced.
            let now = app.clock.now();
            let replacing = login.sessions.load(&cookies, now).await;
            match login.sessions.create(&session, &replacing, now).await {
                Ok(cookies) => set_cookies.extend(cookies),
                Err(e) => {
                    metrics.login(provider.id(), "store_down");
                    tracing::warn!(error = %e, "login failed: the session cannot be kept");
                    return store_unavailable().cookies(set_cookies).into();
                }
            }
            metrics.login(provider.id(), "ok");
            tracing::info!(
                user = session.identity.user(),
                provider = provider.id(),
                "login"
            );
            let reply = if login.same_site == cookie::SameSite::Strict {
                Reply::continue_to(&flow.return_to)
            } else {
                Reply::redirect(&flow.return_to)
            };
            Answer {
                reply: reply.cookies(set_cookies),
                user: session.identity.user,
                reason: None,
            }
        }
        Err(e) if e.is_provider_down() => {
            metrics.login(provider.id(), "provider_down");
            tracing::warn!(error = %e, provider = provider.id(), "login failed: provider unavailable");
            provider_unavailable().cookies(set_cookies).into()
        }
        Err(e) => {
            metrics.login(provider.id(), "refused");
            tracing::warn!(error = %e, provider = provider.id(), "login failed");
            login_failed(400, "The identity provider's answer could not be verified.")
                .cookies(set_cookies)
                .into()
        }
    }
}

/// The provider a login flow began with. A flow from before several providers names none
/// and belongs to the only one.
fn flow_provider<'a>(login: &'a Login, id: &str) -> Option<&'a Arc<Provider>> {
    match id {
        "" => login.providers.only(),
        id => login.providers.get(id),
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
