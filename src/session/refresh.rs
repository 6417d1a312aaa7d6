//! Single-flight token refresh.
//!
//! A page load fires many requests at once with the same cookie; when its tokens have expired
//! they must not each spend the refresh token, because providers that rotate refresh tokens
//! treat the second use as theft and revoke the whole grant. All requests carrying the same
//! refresh token share one refresh, and its result is remembered for a while so requests still
//! in flight with the old cookie get the new session too.
//!
//! The refresh runs in a task of its own: a client that disconnects mid-refresh cannot leave a
//! spent refresh token without its result. Sharing is per process; replicas behind a load
//! balancer each refresh on their own (sticky sessions avoid a second spend).
//!
//! When the provider cannot be reached, refreshing pauses for [`PROVIDER_DOWN_PAUSE`]: sessions
//! keep working on what they have instead of every request waiting for a timeout.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use super::SessionData;

/// How long a finished refresh is remembered for late requests with the old cookie.
const REMEMBER: Duration = Duration::from_secs(60);
/// How long refreshing pauses after the provider could not be reached.
pub(crate) const PROVIDER_DOWN_PAUSE: Duration = Duration::from_secs(10);
/// Memory bound: beyond this many remembered refreshes, refreshes simply run unshared.
const MAX_ENTRIES: usize = 10_000;

/// How a refresh ended.
#[derive(Clone)]
pub enum Outcome {
    Refreshed(Arc<SessionData>),
    /// The provider refused (revoked, expired or already-spent refresh token): sign out.
    Rejected,
    /// The provider could not be reached: keep the current session and try again later, so an
    /// outage of the provider does not sign everybody out.
    ProviderDown,
}

struct Entry {
    started: Instant,
    result: watch::Receiver<Option<Outcome>>,
}

#[derive(Default)]
pub struct Refresher {
    // Keyed by SHA-256 of the refresh token: the token itself never sits in this map.
    entries: Mutex<HashMap<[u8; 32], Entry>>,
    paused_until: Mutex<Option<Instant>>,
}

impl Refresher {
    /// Runs `refresh` once per refresh token; concurrent and later callers (within
    /// [`REMEMBER`]) get the same outcome.
    pub async fn refresh<Fut>(&self, refresh_token: &str, refresh: Fut) -> Outcome
    where
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        if self.paused() {
            return Outcome::ProviderDown;
        }
        let key: [u8; 32] = Sha256::digest(refresh_token.as_bytes()).into();
        let mut result = {
            let Ok(mut entries) = self.entries.lock() else {
                return Outcome::ProviderDown;
            };
            entries.retain(|_, e| e.started.elapsed() < REMEMBER);
            match entries.get(&key) {
                Some(e) => e.result.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    tokio::spawn(async move {
                        let outcome = refresh.await;
                        let _ = tx.send(Some(outcome));
                    });
                    if entries.len() < MAX_ENTRIES {
                        entries.insert(
                            key,
                            Entry {
                                started: Instant::now(),
                                result: rx.clone(),
                            },
                        );
                    }
                    rx
                }
            }
        };
        let outcome = match result.wait_for(Option::is_some).await {
            Ok(done) => done.clone().unwrap_or(Outcome::ProviderDown),
            // The task ended without an answer (it panicked): treat as a passing failure.
            Err(_) => Outcome::ProviderDown,
        };
        if matches!(outcome, Outcome::ProviderDown) {
            self.pause();
            if let Ok(mut entries) = self.entries.lock() {
                entries.remove(&key);
            }
        }
        outcome
    }

    /// After a sign-out: a request that still carries the signed-out session, or a cookie that
    /// was refreshed into it, gets [`Outcome::Rejected`] when it needs a refresh, for as long
    /// as refreshes are remembered, instead of the remembered new session or a call to the
    /// provider. Only this process knows; other replicas ask the provider, which refuses once
    /// it has ended the login.
    pub fn forget(&self, signed_out: &SessionData) {
        let Some(token) = signed_out.refresh_token.as_deref() else {
            return;
        };
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let rejected = || watch::channel(Some(Outcome::Rejected)).1;
        for entry in entries.values_mut() {
            let refreshed_into_it = matches!(
                &*entry.result.borrow(),
                Some(Outcome::Refreshed(s)) if s.refresh_token.as_deref().is_some_and(|t| {
                    bool::from(t.as_bytes().ct_eq(token.as_bytes()))
                })
            );
            if refreshed_into_it {
                entry.result = rejected();
            }
        }
        if entries.len() < MAX_ENTRIES {
            entries.insert(
                Sha256::digest(token.as_bytes()).into(),
                Entry {
                    started: Instant::now(),
                    result: rejected(),
                },
            );
        }
    }

    fn paused(&self) -> bool {
        self.paused_until
            .lock()
            .map(|p| p.is_some_and(|until| Instant::now() < until))
            .unwrap_or(false)
    }

    fn pause(&self) {
        if let Ok(mut p) = self.paused_until.lock() {
            *p = Some(Instant::now() + PROVIDER_DOWN_PAUSE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Identity;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn data() -> SessionData {
        SessionData {
            identity: Identity {
                user: Some("alice".into()),
                email: None,
                groups: vec![],
                preferred_username: None,
                provider: None,
                issuer: None,
            },
            created_at: 0,
            expires_at: u64::MAX,
            tokens_expire_at: None,
            refresh_token: Some("new".into()),
            id_token: None,
            access_token: None,
            sub: None,
            sid: None,
            id: None,
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_refresh() {
        let r = Arc::new(Refresher::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let r = r.clone();
            let calls = calls.clone();
            tasks.push(tokio::spawn(async move {
                r.refresh("old-token", async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    Outcome::Refreshed(Arc::new(data()))
                })
                .await
            }));
        }
        for t in tasks {
            assert!(matches!(t.await.unwrap(), Outcome::Refreshed(_)));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A different token refreshes on its own.
        let other = r.refresh("another", async { Outcome::Rejected }).await;
        assert!(matches!(other, Outcome::Rejected));
    }

    #[tokio::test]
    async fn after_sign_out_neither_the_session_nor_its_predecessor_refreshes() {
        let r = Refresher::default();
        let refreshed = r
            .refresh("old-token", async { Outcome::Refreshed(Arc::new(data())) })
            .await;
        assert!(matches!(refreshed, Outcome::Refreshed(_)));
        // Signing out the refreshed session (refresh token "new").
        r.forget(&data());
        let calls = Arc::new(AtomicUsize::new(0));
        for token in ["old-token", "new"] {
            let c = calls.clone();
            let outcome = r
                .refresh(token, async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    Outcome::Refreshed(Arc::new(data()))
                })
                .await;
            assert!(matches!(outcome, Outcome::Rejected), "{token}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0, "the provider is not asked");
        // Anybody else's refresh is untouched.
        let other = r
            .refresh("bob", async { Outcome::Refreshed(Arc::new(data())) })
            .await;
        assert!(matches!(other, Outcome::Refreshed(_)));
    }

    #[tokio::test]
    async fn an_unreachable_provider_pauses_refreshing() {
        let r = Refresher::default();
        let down = r.refresh("t1", async { Outcome::ProviderDown }).await;
        assert!(matches!(down, Outcome::ProviderDown));
        // Within the pause nothing is attempted, whatever the token.
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let again = r
            .refresh("t2", async move {
                c.fetch_add(1, Ordering::SeqCst);
                Outcome::Rejected
            })
            .await;
        assert!(matches!(again, Outcome::ProviderDown));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}
