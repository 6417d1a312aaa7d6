//! Per-login state: `state`, `nonce`, the PKCE verifier and where to return, sealed into a
//! short-lived cookie of its own for each login.
//!
//! The cookie's name carries a prefix of `state`, so several tabs can log in at once without
//! overwriting each other; the callback finds its cookie by the `state` it receives and then
//! compares the whole value in constant time. At most [`MAX_FLOWS`] are kept: starting another
//! expires the oldest.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::clock::UnixTime;
use crate::config;
use crate::session::chunks::{self, CookieAttrs, SetCookie};
use crate::session::seal::{SealKeyError, SealKeys};

/// How long a login may take between leaving for the provider and coming back.
pub const FLOW_TTL: Duration = Duration::from_secs(600);
/// What a sealed device code is sealed under, apart from every cookie.
const DEVICE_AAD: &str = "portcullis device sign-in";
/// Logins in flight per browser.
pub const MAX_FLOWS: usize = 4;
/// Characters of `state` carried in the cookie name.
const NAME_STATE_CHARS: usize = 12;
/// Flow cookies looked at in one request. A browser holds at most [`MAX_FLOWS`]; more are
/// someone's invention, and each would cost an unsealing and a `Set-Cookie` line.
const MAX_FLOWS_READ: usize = 2 * MAX_FLOWS;

#[derive(Serialize, Deserialize)]
/// One login in progress, sealed into its cookie.
pub struct FlowState {
    /// The id of the provider the browser was sent to: only its answer finishes the flow.
    /// Empty in a flow from before several providers.
    #[serde(default)]
    pub provider: String,
    /// The `state` sent to the provider, compared in full on the way back.
    pub state: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier of the challenge sent.
    pub pkce_verifier: String,
    /// Already validated by the redirect policy when the flow started.
    pub return_to: String,
    /// Unix microseconds: fine enough to tell which of several quick logins is oldest.
    pub created_us: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
/// Why a callback matches no login in progress.
pub enum FlowError {
    #[error("the login state is missing or malformed")]
    /// `state` is absent, repeated or not one portcullis makes.
    BadState,
    #[error("no login in progress matches this callback (expired, or started in another browser)")]
    /// No flow cookie for this `state`, or one that does not open or match it in full.
    NoFlow,
    #[error("the login took longer than 10 minutes")]
    /// Older than [`FLOW_TTL`].
    Expired,
}

/// The login flows of browsers: one sealed cookie per login in progress, named
/// `<session.cookie_name>_flow_<start of state>`. Sealed with keys of its own, derived from
/// the session secrets, so it does not depend on how sessions are stored.
pub struct LoginFlows {
    keys: SealKeys,
    prefix: String,
    attrs: CookieAttrs,
}

impl LoginFlows {
    /// Flows under `[session]`'s name and secrets.
    pub fn new(cfg: &config::Session) -> Result<LoginFlows, SealKeyError> {
        let mut attrs = CookieAttrs::from_config(cfg);
        // The callback is a top-level cross-site navigation from the provider: Lax is the
        // strictest setting under which the browser still sends the cookie there.
        attrs.same_site = cookie::SameSite::Lax;
        Ok(LoginFlows {
            keys: SealKeys::from_config(cfg)?,
            prefix: format!("{}_flow_", cfg.cookie_name),
            attrs,
        })
    }

    /// Seals a device sign-in (its provider and the provider's answer) into the code the
    /// program polls with: only this portcullis (and its replicas) can open it.
    pub(crate) fn seal_device(&self, plaintext: &[u8]) -> Option<String> {
        self.keys.seal(DEVICE_AAD, plaintext).ok()
    }

    /// Opens a code [`LoginFlows::seal_device`] made.
    pub(crate) fn open_device(&self, sealed: &str) -> Option<Vec<u8>> {
        self.keys.open(DEVICE_AAD, sealed)
    }

    /// What every flow cookie's name starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether a cookie of this name is a login flow's (never forwarded upstream).
    pub fn is_ours(&self, cookie_name: &str) -> bool {
        cookie_name.starts_with(&self.prefix)
    }

    fn cookie_name(&self, state: &str) -> Option<String> {
        let part = state.get(..NAME_STATE_CHARS)?;
        if !part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        Some(format!("{}{part}", self.prefix))
    }

    /// The request's flow cookies in names portcullis could have set (the prefix, then
    /// [`NAME_STATE_CHARS`] state characters), the first [`MAX_FLOWS_READ`] of them.
    fn cookies<'a>(
        &'a self,
        cookie_headers: &'a [&'a [u8]],
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        chunks::cookie_pairs(cookie_headers)
            .filter(|(n, _)| {
                n.strip_prefix(self.prefix.as_str()).is_some_and(|part| {
                    part.len() == NAME_STATE_CHARS
                        && part
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
            })
            .take(MAX_FLOWS_READ)
    }

    /// `Set-Cookie` values that start `flow`, expiring the oldest flows beyond the cap.
    pub fn begin(&self, flow: &FlowState, cookie_headers: &[&[u8]]) -> Vec<SetCookie> {
        let Some(name) = self.cookie_name(&flow.state) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        // Existing flows, oldest first; unreadable ones count as oldest.
        let mut existing: Vec<(u64, String)> = self
            .cookies(cookie_headers)
            .filter(|(n, _)| *n != name)
            .map(|(n, v)| {
                let created = self.open(n, v).map_or(0, |f| f.created_us);
                (created, n.to_string())
            })
            .collect();
        existing.sort();
        let excess = (existing.len() + 1).saturating_sub(MAX_FLOWS);
        for (_, old) in existing.into_iter().take(excess) {
            out.extend(chunks::clear_cookies(&old, &self.attrs, &[]).unwrap_or_default());
        }
        let sealed = serde_json::to_vec(flow)
            .ok()
            .and_then(|plain| self.keys.seal(&name, &plain).ok());
        match sealed.and_then(|s| chunks::set_cookies(&name, &s, &self.attrs, FLOW_TTL, &[]).ok()) {
            Some(set) => out.extend(set),
            None => tracing::error!("cannot seal the login state cookie"),
        }
        out
    }

    fn open(&self, name: &str, value: &str) -> Option<FlowState> {
        let plain = self.keys.open(name, value)?;
        serde_json::from_slice(&plain).ok()
    }

    /// Finds and checks the flow for the `state` of a callback. Returns it with the
    /// `Set-Cookie` value that ends it (a flow is used once, whatever the outcome).
    pub fn finish(
        &self,
        cookie_headers: &[&[u8]],
        state: &str,
        now: UnixTime,
    ) -> Result<(FlowState, Vec<SetCookie>), FlowError> {
        let name = self.cookie_name(state).ok_or(FlowError::BadState)?;
        let clear = chunks::clear_cookies(&name, &self.attrs, &[]).unwrap_or_default();
        let mut found = chunks::cookie_pairs(cookie_headers).filter(|(n, _)| *n == name);
        let (first, second) = (found.next(), found.next());
        let value = match (first, second) {
            (Some((_, v)), None) => v,
            _ => return Err(FlowError::NoFlow),
        };
        let flow = self.open(&name, value).ok_or(FlowError::NoFlow)?;
        if !bool::from(flow.state.as_bytes().ct_eq(state.as_bytes())) {
            return Err(FlowError::NoFlow);
        }
        let ttl = u64::try_from(FLOW_TTL.as_micros()).unwrap_or(u64::MAX);
        if now.micros() > flow.created_us.saturating_add(ttl) {
            return Err(FlowError::Expired);
        }
        Ok((flow, clear))
    }

    /// `Set-Cookie` values expiring every flow cookie the request carried (sign-out).
    pub fn clear_all(&self, cookie_headers: &[&[u8]]) -> Vec<SetCookie> {
        self.cookies(cookie_headers)
            .flat_map(|(n, _)| chunks::clear_cookies(n, &self.attrs, &[]).unwrap_or_default())
            .collect()
    }
}
