//! Reloading the TLS listeners' files while serving: on SIGHUP, and when a file changes.
//!
//! Files are watched through their directories, since a Kubernetes Secret update replaces a
//! symlink beside them rather than writing the file. Changes that come together (a
//! certificate and its key) are read as one: the reload waits for [`SETTLE`] of quiet first.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use tokio::sync::mpsc;

use super::tls::TlsPorts;

/// How long the files must stay quiet before a change is read.
const SETTLE: Duration = Duration::from_millis(200);

/// Reloads `tls` on SIGHUP and file changes until shutdown.
pub(crate) async fn run(tls: &TlsPorts, shutdown: &mut ShutdownWatch) {
    if tls.endpoints().next().is_none() {
        return;
    }
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: TLS files reload on change only");
            None
        }
    };
    let (changed, mut changes) = mpsc::channel::<()>(1);
    let _watcher = watch(tls, changed);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            Some(()) = async { hangup.as_mut()?.recv().await } => {
                reload(tls, "SIGHUP");
            }
            Some(()) = changes.recv() => {
                // Let the rest of the change land (a key written after its certificate).
                while tokio::time::timeout(SETTLE, changes.recv()).await.is_ok_and(|c| c.is_some()) {}
                reload(tls, "a file changed");
            }
        }
    }
}

fn reload(tls: &TlsPorts, why: &str) {
    for endpoint in tls.endpoints() {
        match endpoint.reload() {
            Ok(()) => tracing::info!(trigger = why, listener = ?endpoint, "TLS files reloaded"),
            Err(e) => tracing::warn!(
                trigger = why,
                error = %e,
                "TLS files not reloaded: the ones loaded before stay in use"
            ),
        }
    }
}

/// Watches the directories of every TLS file; `None` (and a warning) when the platform
/// cannot, in which case SIGHUP still works.
fn watch(tls: &TlsPorts, changed: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let dirs: BTreeSet<PathBuf> = tls
        .endpoints()
        .flat_map(|e| e.files())
        .filter_map(|f| {
            let dir = f.parent()?.to_path_buf();
            Some(if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir
            })
        })
        .collect();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            // A full channel already holds a change to read: nothing is lost.
            let _ = changed.try_send(());
        }
    });
    let result = watcher.as_mut().map_err(|e| e.to_string()).and_then(|w| {
        dirs.iter()
            .try_for_each(|d| w.watch(d, RecursiveMode::NonRecursive))
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => watcher.ok(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the TLS files: they reload on SIGHUP only");
            None
        }
    }
}
