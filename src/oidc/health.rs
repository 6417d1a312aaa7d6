//! Whether the identity provider answers right now, as last observed.
//!
//! Every outbound call reports here (the periodic probe, key refreshes, token requests), so an
//! outage is noticed by whichever call meets it first, and its end by the next call that
//! succeeds. It decides two things: `/ready` says "degraded" (still 200: signed-in users and
//! verified bearer tokens keep working, so taking the pod out of service would only turn a
//! partial outage into a full one), and `/oauth2/start` shows a 503 page instead of sending the
//! browser to a provider that will not answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[derive(Debug)]
pub struct Health {
    up: AtomicBool,
    /// Why the provider was last seen down; kept for `/ready` (never holds secrets: it is
    /// built from URLs and transport errors).
    reason: Mutex<String>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            up: AtomicBool::new(true),
            reason: Mutex::new(String::new()),
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

    pub fn down(&self, reason: &str) {
        if let Ok(mut r) = self.reason.lock() {
            reason.clone_into(&mut r);
        }
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                reason,
                "identity provider unreachable: new sign-ins wait for it"
            );
        }
    }

    pub fn reason(&self) -> String {
        self.reason
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|_| "unknown".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_keeps_the_reason_and_up_clears_the_state() {
        let h = Health::default();
        assert!(h.is_up());
        h.down("http://idp/.well-known/openid-configuration: connection refused");
        assert!(!h.is_up());
        assert!(h.reason().contains("connection refused"));
        h.up();
        assert!(h.is_up());
    }
}
