//! portcullis as a client of an application it protects: `portcullis login`, `portcullis
//! curl` and `portcullis token`, for scripts that need a person's session without copying
//! cookies out of a browser.
//!
//! `login` runs the device sign-in (RFC 8628) through portcullis' own endpoints
//! (`/oauth2/device/*`): the person approves at the provider in any browser, portcullis makes
//! the session, and the session's cookie is saved for the application's origin ([`store`]).
//! `curl` and `token` send it; when portcullis refreshed the session on the way (the
//! provider's tokens ran out), the new cookie it sets replaces the saved one, so a script
//! keeps working for the session's whole lifetime. When the session has ended they say so and
//! how to sign in again.

pub mod store;

use std::time::Duration;

use serde_json::Value;
use url::Url;

use store::{Saved, Store};

/// What ends a command, with the words for the person running it.
#[derive(Debug)]
pub enum Failure {
    /// No session, or one that ended: sign in again.
    LoginNeeded(String),
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::LoginNeeded(origin) => write!(
                f,
                "no usable session for {origin}: it has ended or was never made; run `portcullis login {origin}`"
            ),
            Failure::Other(why) => f.write_str(why),
        }
    }
}

fn other(e: impl std::fmt::Display) -> Failure {
    Failure::Other(e.to_string())
}

/// The origin a URL belongs to: sessions are kept per origin.
pub fn origin(url: &Url) -> Result<String, Failure> {
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(Failure::Other(format!("{url}: not an http(s) URL")));
    }
    Ok(url.origin().ascii_serialization())
}

fn client() -> Result<reqwest::Client, Failure> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(other)
}

/// `portcullis login URL`: the device sign-in; `show` tells the person where to go.
pub async fn login(
    url: &Url,
    provider: Option<&str>,
    show: impl Fn(&str),
) -> Result<Saved, Failure> {
    let origin = origin(url)?;
    let http = client()?;
    let mut form: Vec<(&str, &str)> = Vec::new();
    if let Some(p) = provider {
        form.push(("provider", p));
    }
    let started = http
        .post(format!("{origin}/oauth2/device/authorize"))
        .form(&form)
        .send()
        .await
        .map_err(other)?;
    let status = started.status();
    let body: Value = started.json().await.map_err(|_| {
        Failure::Other(format!(
            "{origin} answered {status} without JSON: is it portcullis, with browser sign-in?"
        ))
    })?;
    if !status.is_success() {
        return Err(Failure::Other(format!(
            "{origin} cannot start a sign-in: {}",
            body["error_description"]
                .as_str()
                .unwrap_or("(no reason given)")
        )));
    }
    let field = |name: &str| body[name].as_str().map(str::to_string);
    let (Some(device_code), Some(user_code), Some(page)) = (
        field("device_code"),
        field("user_code"),
        field("verification_uri"),
    ) else {
        return Err(Failure::Other(format!(
            "{origin}: the sign-in answer is incomplete"
        )));
    };
    match field("verification_uri_complete") {
        Some(direct) => show(&format!(
            "To sign in to {origin}, open {direct}\n(or open {page} and enter the code {user_code})"
        )),
        None => show(&format!(
            "To sign in to {origin}, open {page} and enter the code {user_code}"
        )),
    }
    let mut interval = Duration::from_secs(body["interval"].as_u64().unwrap_or(5).max(1));
    let deadline = tokio::time::Instant::now()
        + Duration::from_secs(body["expires_in"].as_u64().unwrap_or(600));
    loop {
        tokio::time::sleep(interval).await;
        if tokio::time::Instant::now() >= deadline {
            return Err(Failure::Other(
                "the sign-in was not approved in time".into(),
            ));
        }
        let r = http
            .post(format!("{origin}/oauth2/device/token"))
            .form(&[("device_code", device_code.as_str())])
            .send()
            .await;
        let Ok(r) = r else {
            // A network hiccup: RFC 8628 §3.5 says back off and try again.
            interval = (interval * 2).min(Duration::from_secs(30));
            continue;
        };
        let status = r.status();
        let answer: Value = r.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            let (Some(cookie), Some(expires_at)) =
                (answer["cookie"].as_str(), answer["expires_at"].as_u64())
            else {
                return Err(Failure::Other("the session answer is incomplete".into()));
            };
            let saved = Saved {
                cookie: cookie.to_string(),
                expires_at,
            };
            Store::for_user()
                .map_err(Failure::Other)?
                .put(&origin, Some(&saved))
                .map_err(Failure::Other)?;
            return Ok(saved);
        }
        match answer["error"].as_str() {
            Some("authorization_pending") => {}
            Some("slow_down") => interval += Duration::from_secs(5),
            Some("temporarily_unavailable") => {
                interval = (interval * 2).min(Duration::from_secs(30))
            }
            Some(code) => {
                return Err(Failure::Other(format!(
                    "the sign-in did not succeed: {code} ({})",
                    answer["error_description"].as_str().unwrap_or("")
                )))
            }
            None => return Err(Failure::Other(format!("{origin} answered {status}"))),
        }
    }
}

/// A request for `portcullis curl`.
pub struct Request {
    /// The method.
    pub method: http::Method,
    /// The URL; its origin names the saved session.
    pub url: Url,
    /// More headers, as given.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
}

/// Sends `request` with the saved session of its origin, and saves the session again when
/// portcullis refreshed it on the way. 401 is a login needed.
pub async fn send(request: Request) -> Result<reqwest::Response, Failure> {
    let origin = origin(&request.url)?;
    let store = Store::for_user().map_err(Failure::Other)?;
    let saved = store
        .get(&origin)
        .map_err(Failure::Other)?
        .ok_or_else(|| Failure::LoginNeeded(origin.clone()))?;
    let mut builder = client()?
        .request(request.method, request.url.clone())
        .header(http::header::COOKIE, &saved.cookie);
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    if let Some(body) = request.body {
        builder = builder.body(body);
    }
    let response = builder.send().await.map_err(other)?;
    let cookie = updated(&saved.cookie, response.headers());
    if response.status() == reqwest::StatusCode::UNAUTHORIZED {
        // Not signed in any more: the saved session is of no use.
        store.put(&origin, None).map_err(Failure::Other)?;
        return Err(Failure::LoginNeeded(origin));
    }
    if cookie != saved.cookie {
        let again = Saved {
            cookie,
            expires_at: saved.expires_at,
        };
        store.put(&origin, Some(&again)).map_err(Failure::Other)?;
    }
    Ok(response)
}

/// `portcullis token URL`: the `Cookie` header of a session known to be usable now (asked at
/// `/oauth2/userinfo`, which refreshes it when due).
pub async fn token(url: &Url) -> Result<String, Failure> {
    let origin = origin(url)?;
    let info = Url::parse(&format!("{origin}/oauth2/userinfo")).map_err(other)?;
    send(Request {
        method: http::Method::GET,
        url: info,
        headers: vec![("accept".into(), "application/json".into())],
        body: None,
    })
    .await?;
    let saved = Store::for_user()
        .map_err(Failure::Other)?
        .get(&origin)
        .map_err(Failure::Other)?
        .ok_or(Failure::LoginNeeded(origin))?;
    Ok(saved.cookie)
}

/// `cookie` after the response's `Set-Cookie` values: a cookie set anew replaces its value, a
/// cookie cleared (empty, or already expired) goes, cookies of others are ignored.
fn updated(cookie: &str, headers: &reqwest::header::HeaderMap) -> String {
    let mut jar: Vec<(String, String)> = cookie
        .split("; ")
        .filter_map(|p| p.split_once('='))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    for value in headers.get_all(reqwest::header::SET_COOKIE) {
        let Some(set) = value
            .to_str()
            .ok()
            .and_then(|v| cookie::Cookie::parse(v).ok())
        else {
            continue;
        };
        let cleared = set.value().is_empty()
            || set
                .max_age()
                .is_some_and(|a| a.is_zero() || a.is_negative());
        jar.retain(|(n, _)| n != set.name());
        if !cleared {
            jar.push((set.name().to_string(), set.value().to_string()));
        }
    }
    jar.iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refreshed_session_replaces_the_saved_cookie_and_a_cleared_one_goes() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.append(
            reqwest::header::SET_COOKIE,
            "_portcullis=new; Path=/; HttpOnly; Max-Age=3600"
                .parse()
                .unwrap(),
        );
        headers.append(
            reqwest::header::SET_COOKIE,
            "_portcullis_1=; Path=/; Max-Age=0".parse().unwrap(),
        );
        assert_eq!(
            updated("_portcullis=old; _portcullis_1=chunk", &headers),
            "_portcullis=new"
        );
        assert_eq!(updated("a=1", &reqwest::header::HeaderMap::new()), "a=1");
    }
}
