//! Single-flight token refresh.
//!
//! A page load fires many requests at once with the same cookie; when its tokens have expired
//! they must not each spend the refresh token, because providers that rotate refresh tokens
//! treat the second use as theft and revoke the whole grant. All requests carrying the same
//! refresh token share one refresh, and its result is remembered for a while so requests still
//! in flight with the old cookie get the new session too.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::SessionData;

/// How long a finished refresh is remembered for late requests with the old cookie.
const REMEMBER: Duration = Duration::from_secs(60);
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
    cell: Arc<OnceCell<Outcome>>,
}

#[derive(Default)]
pub struct Refresher {
    // Keyed by SHA-256 of the refresh token: the token itself never sits in this map.
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

impl Refresher {
    /// Runs `refresh` once per refresh token; concurrent and later callers (within
    /// [`REMEMBER`]) get the same outcome.
    pub async fn refresh<F, Fut>(&self, refresh_token: &str, refresh: F) -> Outcome
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Outcome>,
    {
        let key: [u8; 32] = Sha256::digest(refresh_token.as_bytes()).into();
        let cell = {
            let Ok(mut entries) = self.entries.lock() else {
                return refresh().await;
            };
            entries.retain(|_, e| e.started.elapsed() < REMEMBER);
            match entries.get(&key) {
                Some(e) => Some(e.cell.clone()),
                None if entries.len() < MAX_ENTRIES => {
                    let cell = Arc::new(OnceCell::new());
                    entries.insert(
                        key,
                        Entry {
                            started: Instant::now(),
                            cell: cell.clone(),
                        },
                    );
                    Some(cell)
                }
                None => None,
            }
        };
        let Some(cell) = cell else {
            return refresh().await;
        };
        let outcome = cell.get_or_init(refresh).await.clone();
        if matches!(outcome, Outcome::ProviderDown) {
            // Not worth remembering: the next request should try again.
            if let Ok(mut entries) = self.entries.lock() {
                if entries
                    .get(&key)
                    .is_some_and(|e| Arc::ptr_eq(&e.cell, &cell))
                {
                    entries.remove(&key);
                }
            }
        }
        outcome
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
                user: "alice".into(),
                email: None,
                groups: vec![],
                preferred_username: None,
            },
            created_at: 0,
            expires_at: u64::MAX,
            tokens_expire_at: None,
            refresh_token: Some("new".into()),
            id_token: None,
            access_token: None,
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
                r.refresh("old-token", || async {
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
        let other = r.refresh("another", || async { Outcome::Rejected }).await;
        assert!(matches!(other, Outcome::Rejected));
    }
}
