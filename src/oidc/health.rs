//! Whether the identity provider answers right now, as last observed.
//!
//! Only portcullis' own calls decide it: the periodic probe of the discovery document and the
//! key refreshes. A token request made for one browser (a login's code exchange, a refresh) is
//! that browser's request: its `code` is whatever the browser sent, and a crafted one can make
//! the provider, or a WAF in front of it, answer with a 403 or 413 page. Such an answer fails
//! that request only. A token request that could not reach the provider at all only asks the
//! probe to look now ([`Health::suspect`]), so a real outage still shows within moments. It
//! decides two things: `/ready` says "degraded" (still 200: signed-in users and
//! verified bearer tokens keep working, so taking the pod out of service would only turn a
//! partial outage into a full one), and `/oauth2/start` shows a 503 page instead of sending the
//! browser to a provider that will not answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

use super::discovery::FetchError;

#[derive(Debug)]
pub struct Health {
    up: AtomicBool,
    /// Why the provider was last seen down; kept for `/ready` (never holds secrets: it is
    /// built from URLs and transport errors).
    reason: Mutex<Option<FetchError>>,
    /// Wakes the probe early: a request could not reach the provider.
    recheck: Notify,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            up: AtomicBool::new(true),
            reason: Mutex::new(None),
            recheck: Notify::new(),
        }
    }
}

impl Health {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn up(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            tracing::info!("identity provider reachable again");
        }
    }

    pub fn down(&self, reason: &FetchError) {
        if let Ok(mut r) = self.reason.lock() {
            *r = Some(reason.clone());
        }
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                reason = %reason,
                "identity provider unreachable: new sign-ins wait for it"
            );
        }
    }

    /// A request on a user's behalf could not reach the provider: the probe looks now rather
    /// than at its next interval. Many of these at once make one probe.
    pub fn suspect(&self) {
        self.recheck.notify_one();
    }

    /// Resolves when [`Health::suspect`] was called since the last time.
    pub async fn suspected(&self) {
        self.recheck.notified().await
    }

    /// Why the provider was last seen down, if it ever was.
    pub fn reason(&self) -> Option<FetchError> {
        self.reason.lock().ok().and_then(|r| r.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_keeps_the_reason_and_up_clears_the_state() {
        let h = Health::default();
        assert!(h.is_up());
        h.down(&FetchError::Http {
            url: "http://idp/.well-known/openid-configuration".into(),
            reason: "connection refused".into(),
        });
        assert!(!h.is_up());
        assert!(h
            .reason()
            .unwrap()
            .to_string()
            .contains("connection refused"));
        h.up();
        assert!(h.is_up());
    }
}
