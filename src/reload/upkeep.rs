//! The background work of the live `App`'s parts: each identity provider's metadata and keys,
//! each bearer issuer's published keys, the session store's probe. A reload that keeps a part
//! keeps its work running; a part the new `App` no longer has stops being maintained (requests
//! still in flight on the old `App` need no refresh in the moments they have left).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::App;

/// How often the session store (Redis) is probed, so that `/ready` follows it and requests
/// stop failing fast as soon as it answers again, without waiting for traffic.
const STORE_PROBE_EVERY: Duration = Duration::from_secs(2);

type Work = Pin<Box<dyn Future<Output = ()> + Send>>;
/// Starts one part's work, which ends when its receiver says so.
type StartWork = Box<dyn FnOnce(watch::Receiver<bool>) -> Work>;

/// The running work, by the part it maintains.
#[derive(Default)]
pub(super) struct Upkeep {
    /// Keyed by the address of the part (its `Arc`): the same part, the same work.
    running: HashMap<usize, watch::Sender<bool>>,
}

impl Upkeep {
    /// Maintains `app`'s parts: starts the work of new ones, stops that of parts gone.
    pub(super) fn follow(&mut self, app: &App) {
        let mut wanted: Vec<(usize, StartWork)> = Vec::new();
        for provider in app.login.iter().flat_map(|l| l.providers.iter()) {
            let provider = provider.clone();
            wanted.push((
                address(&provider),
                Box::new(move |stop| Box::pin(async move { provider.maintain(stop).await })),
            ));
        }
        for (issuer, keys) in app.bearer.remote_keys() {
            wanted.push((
                address(&keys),
                Box::new(move |stop| Box::pin(async move { keys.maintain(stop, &issuer).await })),
            ));
        }
        if let Some(login) = &app.login {
            let store = login.sessions.clone();
            wanted.push((
                Arc::as_ptr(&store).cast::<()>() as usize,
                Box::new(move |mut stop| {
                    Box::pin(async move {
                        loop {
                            store.probe().await;
                            tokio::select! {
                                _ = tokio::time::sleep(STORE_PROBE_EVERY) => {}
                                _ = stop.changed() => return,
                            }
                        }
                    })
                }),
            ));
        }
        let keep: Vec<usize> = wanted.iter().map(|(at, _)| *at).collect();
        self.running.retain(|at, stop| {
            let kept = keep.contains(at);
            if !kept {
                let _ = stop.send(true);
            }
            kept
        });
        for (at, work) in wanted {
            if self.running.contains_key(&at) {
                continue;
            }
            let (stop, stopped) = watch::channel(false);
            tokio::spawn(work(stopped));
            self.running.insert(at, stop);
        }
    }

    /// Stops all work (at shutdown).
    pub(super) fn stop_all(&mut self) {
        for (_, stop) in self.running.drain() {
            let _ = stop.send(true);
        }
    }
}

fn address<T>(part: &Arc<T>) -> usize {
    Arc::as_ptr(part) as usize
}
