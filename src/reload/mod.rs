//! Reloading while serving: on SIGHUP, and when the configuration file or any file it names
//! (secrets, keys, certificates) changes.
//!
//! A reload reads and validates the file again and builds a new [`App`] beside the running
//! one ([`App::reloaded`]); only when all of that succeeds does it become the `App` new
//! requests get ([`Live`]). A request holds the `App` it started with to its end, so requests
//! in flight finish on the old configuration and no connection is dropped. A file that does
//! not validate, or names a provider that cannot be reached, is refused: the log says which
//! file and key, `/metrics` counts it, and the running configuration stays.
//!
//! What pingora binds and sizes once (listen addresses, threads, connection bounds) and the
//! log set-up cannot change while running: a reload names each such key that changed in the
//! log and keeps the running value ([`Config::keep_restart_only`]).
//!
//! Beside the configuration, a reload reads the TLS listeners' certificates again (new
//! handshakes get them, open connections keep theirs), and [`upkeep`] moves the background
//! work (provider and key refreshes, the session store's probe) to the new `App`'s parts.

mod triggers;
mod upkeep;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::app::{App, Live};
use crate::config::Config;
use crate::listener::tls::TlsPorts;
use crate::metrics::ReloadResult;
use triggers::{Fingerprint, Trigger, Triggers};
use upkeep::Upkeep;

/// The background service that reloads, and keeps the live `App`'s parts maintained.
pub(crate) struct Reloader {
    live: Arc<Live>,
    /// The configuration file; `None` when the configuration was not read from one (the
    /// demo), which then only reloads its TLS files.
    config_path: Option<PathBuf>,
    tls: TlsPorts,
}

impl Reloader {
    pub(crate) fn new(live: Arc<Live>, config_path: Option<PathBuf>, tls: TlsPorts) -> Reloader {
        Reloader {
            live,
            config_path,
            tls,
        }
    }

    /// Loads the configuration again and, if it is good, makes it the live one. Returns the
    /// new `App`, or `None` when the running one stays.
    async fn reload_config(&self, path: &std::path::Path, why: Trigger) -> Option<Arc<App>> {
        let metrics = crate::metrics::get();
        let current = self.live.app();
        let mut next = match Config::load(path) {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(
                    trigger = %why,
                    file = %e.file,
                    key = %e.key,
                    error = %e,
                    "configuration not reloaded: the running one stays"
                );
                metrics.reload(ReloadResult::Refused);
                return None;
            }
        };
        for key in next.keep_restart_only(&current.config) {
            tracing::warn!(
                trigger = %why,
                key,
                "changed, but takes effect only at the next start: the running value stays"
            );
        }
        match current.reloaded(Arc::new(next)).await {
            Ok(app) => {
                let app = Arc::new(app);
                self.live.set(app.clone());
                metrics.reload(ReloadResult::Applied);
                tracing::info!(
                    trigger = %why,
                    config = %app.config.source,
                    summary = %app.config.summary(),
                    "configuration reloaded"
                );
                Some(app)
            }
            Err(e) => {
                tracing::error!(
                    trigger = %why,
                    file = %path.display(),
                    error = %e,
                    "configuration not reloaded: the running one stays"
                );
                metrics.reload(ReloadResult::Refused);
                None
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut app = self.live.app();
        let mut upkeep = Upkeep::default();
        upkeep.follow(&app);
        let mut triggers = Triggers::new(&app.config.files);
        // What the files held when last read: a change that leaves them as they were (an
        // editor's swap file in the same directory) reloads nothing.
        let mut read = Some(Fingerprint::of(&app.config.files));
        loop {
            let why = tokio::select! {
                _ = shutdown.changed() => break,
                why = triggers.next() => why,
            };
            let before = Fingerprint::of(&app.config.files);
            if why == Trigger::FileChanged && read.as_ref() == Some(&before) {
                continue;
            }
            self.tls.reload(why);
            let Some(path) = &self.config_path else {
                read = Some(before);
                continue;
            };
            match self.reload_config(path, why).await {
                Some(next) => {
                    // Taken before reading: a file written while it was read reloads again.
                    read = Some(if next.config.files == app.config.files {
                        before
                    } else {
                        Fingerprint::of(&next.config.files)
                    });
                    app = next;
                    upkeep.follow(&app);
                    triggers.watch(&app.config.files);
                }
                // The fix may be in a file the running configuration does not name (a new
                // secret file): every change is tried until one is applied.
                None => read = None,
            }
        }
        upkeep.stop_all();
    }
}
