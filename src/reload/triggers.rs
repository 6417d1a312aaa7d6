//! What starts a reload: SIGHUP, or a change to a file the configuration was read from.
//!
//! Files are watched through their directories, since a Kubernetes Secret or ConfigMap
//! update replaces a symlink beside them rather than writing the file. Changes that come
//! together (a certificate and its key) are read as one: a reload waits for [`SETTLE`] of
//! quiet first.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

/// How long the files must stay quiet before a change is read.
const SETTLE: Duration = Duration::from_millis(200);

/// Why a reload happens, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// An operator (or a config reloader sidecar) sent SIGHUP: reload whatever changed.
    Hangup,
    /// A watched file changed.
    FileChanged,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trigger::Hangup => "SIGHUP",
            Trigger::FileChanged => "a file changed",
        })
    }
}

/// SIGHUP and the watched files, as one stream of [`Trigger`]s.
pub(super) struct Triggers {
    hangup: Option<Signal>,
    changed: mpsc::Sender<()>,
    changes: mpsc::Receiver<()>,
    watcher: Option<notify::RecommendedWatcher>,
}

impl Triggers {
    /// Listens for SIGHUP and watches `files`.
    pub(super) fn new(files: &[PathBuf]) -> Triggers {
        let hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: reloads follow file changes only");
                None
            }
        };
        let (changed, changes) = mpsc::channel(1);
        let mut triggers = Triggers {
            hangup,
            changed,
            changes,
            watcher: None,
        };
        triggers.watch(files);
        triggers
    }

    /// Watches `files` (the directories they are in) instead of what was watched before.
    pub(super) fn watch(&mut self, files: &[PathBuf]) {
        self.watcher = None;
        if files.is_empty() {
            return;
        }
        let dirs: BTreeSet<PathBuf> = files.iter().map(|f| directory_of(f)).collect();
        let changed = self.changed.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
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
            Ok(()) => self.watcher = watcher.ok(),
            Err(e) => tracing::warn!(
                error = %e,
                "cannot watch the configuration's files: they reload on SIGHUP only"
            ),
        }
    }

    /// The next reason to reload.
    pub(super) async fn next(&mut self) -> Trigger {
        let hangup = &mut self.hangup;
        let changes = &mut self.changes;
        tokio::select! {
            Some(()) = async { hangup.as_mut()?.recv().await } => Trigger::Hangup,
            Some(()) = changes.recv() => {
                // Let the rest of the change land (a key written after its certificate).
                while tokio::time::timeout(SETTLE, changes.recv())
                    .await
                    .is_ok_and(|c| c.is_some())
                {}
                Trigger::FileChanged
            }
        }
    }
}

fn directory_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// What a set of files holds, as one digest: a file that cannot be read counts as such, so
/// that one appearing or vanishing is a change too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub(super) fn of(files: &[PathBuf]) -> Fingerprint {
        let mut digest = Sha256::new();
        for file in files {
            let path = file.as_os_str().as_encoded_bytes();
            digest.update((path.len() as u64).to_be_bytes());
            digest.update(path);
            match std::fs::read(file) {
                Ok(bytes) => {
                    digest.update([1]);
                    digest.update((bytes.len() as u64).to_be_bytes());
                    digest.update(&bytes);
                }
                Err(_) => digest.update([0]),
            }
        }
        Fingerprint(digest.finalize().into())
    }
}
