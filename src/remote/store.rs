//! Where `portcullis login` keeps sessions: one file under the user's configuration directory
//! (`$XDG_CONFIG_HOME/portcullis/sessions.json`, else `~/.config/portcullis/…`), readable by
//! the user alone (0600 in a 0700 directory), one entry per application origin. A session
//! never appears in the process list or a shell's history: it is read from here.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One application's session, as portcullis handed it over.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Saved {
    /// Portcullis' cookies, `name=value; name2=value2`: what the `Cookie` header carries.
    pub cookie: String,
    /// When the session ends whatever happens (Unix seconds).
    pub expires_at: u64,
}

/// The file of sessions.
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// The user's store (`XDG_CONFIG_HOME`, else `HOME/.config`).
    pub fn for_user() -> Result<Store, String> {
        let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => {
                let home = std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .ok_or("neither XDG_CONFIG_HOME nor HOME is set")?;
                PathBuf::from(home).join(".config")
            }
        };
        Ok(Store {
            path: base.join("portcullis").join("sessions.json"),
        })
    }

    /// Where the file is.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn read_all(&self) -> Result<BTreeMap<String, Saved>, String> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not a session file ({e})", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }

    /// The session saved for `origin`.
    pub fn get(&self, origin: &str) -> Result<Option<Saved>, String> {
        Ok(self.read_all()?.remove(origin))
    }

    /// Saves (or, with `None`, forgets) the session of `origin`: written to a new file of mode
    /// 0600 first and renamed over the old one, so no reader ever sees half a file and no
    /// moment leaves the sessions readable by others.
    pub fn put(&self, origin: &str, saved: Option<&Saved>) -> Result<(), String> {
        let mut all = self.read_all()?;
        match saved {
            Some(s) => {
                all.insert(origin.to_string(), s.clone());
            }
            None => {
                all.remove(origin);
            }
        }
        let dir = self
            .path
            .parent()
            .ok_or("the session file has no directory")?;
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let text = serde_json::to_vec_pretty(&all).map_err(|e| e.to_string())?;
        let tmp = self
            .path
            .with_extension(format!("tmp.{}", std::process::id()));
        let written = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&text).and_then(|()| f.sync_all()));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(format!("{}: {e}", tmp.display()));
        }
        fs::rename(&tmp, &self.path).map_err(|e| format!("{}: {e}", self.path.display()))
    }
}
