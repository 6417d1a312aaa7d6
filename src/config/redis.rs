//! `session.store` and `[session.redis]`: where sessions live, and how Redis is reached.
//!
//! The password never stands in the validated model's `Debug` or in an error; a URL is
//! only ever shown without its password.

use std::fmt;
use std::time::Duration;

use url::Url;

use super::check::{Check, Source};
use super::file::{RedisFile, StoreFile};
use super::oidc::Secret;
use super::ConfigError;

/// Environment variable that supplies the Redis password.
pub const ENV_REDIS_PASSWORD: &str = "PORTCULLIS_REDIS_PASSWORD";

/// Where sessions live between requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SessionStorage {
    /// Sealed whole into the browser's cookie (the default).
    #[default]
    Cookie,
    /// In Redis, encrypted with a key only the browser's cookie holds.
    Redis(RedisSettings),
}

/// The validated `[session.redis]`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// Standalone, Sentinel or Cluster.
    pub topology: RedisTopology,
    /// From `password_file` or the environment (a URL may carry its own).
    pub password: Option<Secret>,
    /// Every key portcullis writes starts with this.
    pub key_prefix: String,
    /// The bound on every call.
    pub timeout: Duration,
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("topology", &self.topology)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// How Redis is deployed.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// One server (`redis://` or `rediss://`).
    Standalone(Url),
    /// A master found through its sentinels.
    Sentinel {
        /// The monitored master's name.
        master: String,
        /// The sentinels.
        nodes: Vec<Url>,
        /// The database on the master.
        db: i64,
    },
    /// A Redis Cluster, from any of its nodes.
    Cluster(Vec<Url>),
}

impl fmt::Debug for RedisTopology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisTopology::Standalone(u) => write!(f, "Standalone({})", shown(u)),
            RedisTopology::Sentinel { master, nodes, db } => {
                let nodes: Vec<String> = nodes.iter().map(shown).collect();
                write!(f, "Sentinel({master} via {nodes:?}, db {db})")
            }
            RedisTopology::Cluster(nodes) => {
                let nodes: Vec<String> = nodes.iter().map(shown).collect();
                write!(f, "Cluster({nodes:?})")
            }
        }
    }
}

/// A Redis URL as it may be shown: without its password.
pub fn shown(url: &Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("[redacted]"));
    }
    u.to_string()
}

enum Topology {
    Url(String),
    Sentinel(super::file::SentinelFile),
    Cluster(Vec<String>),
}

/// `[session.revocation]`: a Redis every replica checks for sessions ended elsewhere, for the
/// cookie store (the Redis store ends sessions itself).
pub(super) fn revocation(
    check: &Check,
    storage: &SessionStorage,
    r: Option<RedisFile>,
) -> Result<Option<RedisSettings>, ConfigError> {
    match (storage, r) {
        (_, None) => Ok(None),
        (SessionStorage::Redis(_), Some(_)) => Err(check.err(
            "session.revocation",
            "is for the cookie store: with session.store = \"redis\" sessions are ended in Redis itself",
        )),
        (SessionStorage::Cookie, Some(r)) => settings(check, "session.revocation", r).map(Some),
    }
}

/// `session.store` with its `[session.redis]`.
pub(super) fn validate(
    check: &Check,
    store: Option<StoreFile>,
    redis: Option<RedisFile>,
) -> Result<SessionStorage, ConfigError> {
    match (store.unwrap_or(StoreFile::Cookie), redis) {
        (StoreFile::Cookie, None) => Ok(SessionStorage::Cookie),
        (StoreFile::Cookie, Some(_)) => Err(check.err(
            "session.redis",
            "is only used with session.store = \"redis\"",
        )),
        (StoreFile::Redis, None) => Err(check.err(
            "session.redis",
            "missing: session.store = \"redis\" needs [session.redis] with url, sentinel or cluster",
        )),
        (StoreFile::Redis, Some(r)) => Ok(SessionStorage::Redis(settings(check, "session.redis", r)?)),
    }
}

fn settings(check: &Check, table: &str, r: RedisFile) -> Result<RedisSettings, ConfigError> {
    let sources = vec![
        Source::new("url", r.url.map(Topology::Url)),
        Source::new("sentinel", r.sentinel.map(Topology::Sentinel)),
        Source::new("cluster", r.cluster.map(Topology::Cluster)),
    ];
    let topology = match check.exactly_one(&format!("{table}.url"), sources)? {
        None => {
            return Err(check.err(
                format!("{table}.url"),
                "missing: set url, sentinel or cluster",
            ))
        }
        Some(Topology::Url(u)) => {
            RedisTopology::Standalone(url(check, &format!("{table}.url"), &u)?)
        }
        Some(Topology::Sentinel(s)) => {
            if s.master.trim().is_empty() {
                return Err(check.err(format!("{table}.sentinel.master"), "must not be empty"));
            }
            if s.nodes.is_empty() {
                return Err(check.err(format!("{table}.sentinel.nodes"), "lists no sentinel"));
            }
            let nodes = s
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| url(check, &format!("{table}.sentinel.nodes[{i}]"), n))
                .collect::<Result<_, _>>()?;
            RedisTopology::Sentinel {
                master: s.master,
                nodes,
                db: s.db.unwrap_or(0),
            }
        }
        Some(Topology::Cluster(nodes)) => {
            if nodes.is_empty() {
                return Err(check.err(format!("{table}.cluster"), "lists no node"));
            }
            let nodes = nodes
                .iter()
                .enumerate()
                .map(|(i, n)| url(check, &format!("{table}.cluster[{i}]"), n))
                .collect::<Result<_, _>>()?;
            RedisTopology::Cluster(nodes)
        }
    };
    let in_url = match &topology {
        RedisTopology::Standalone(u) => u.password().is_some(),
        RedisTopology::Sentinel { nodes, .. } | RedisTopology::Cluster(nodes) => {
            nodes.iter().any(|u| u.password().is_some())
        }
    };
    let password = password(check, table, r.password_file, in_url)?;
    let key_prefix = r.key_prefix.unwrap_or_else(|| "portcullis:".to_string());
    if key_prefix.is_empty()
        || key_prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '{' || c == '}')
    {
        return Err(check.err(
            format!("{table}.key_prefix"),
            "must be non-empty, without spaces, control characters or braces",
        ));
    }
    Ok(RedisSettings {
        topology,
        password,
        key_prefix,
        timeout: check.duration(
            &format!("{table}.timeout"),
            r.timeout.as_deref(),
            Duration::from_secs(2),
            Duration::from_secs(30),
        )?,
    })
}

fn url(check: &Check, key: &str, text: &str) -> Result<Url, ConfigError> {
    let u = Url::parse(text).map_err(|e| check.err(key, format!("not a URL ({e})")))?;
    if !matches!(u.scheme(), "redis" | "rediss") || u.host().is_none() {
        return Err(check.err(key, "must be a redis:// or rediss:// URL with a host"));
    }
    Ok(u)
}

/// From `password_file` or [`ENV_REDIS_PASSWORD`], not both, and not beside a password in a URL.
fn password(
    check: &Check,
    table: &str,
    file: Option<String>,
    in_url: bool,
) -> Result<Option<Secret>, ConfigError> {
    let env = (check.env)(ENV_REDIS_PASSWORD);
    let given =
        match (file, env) {
            (Some(_), Some(_)) => {
                return Err(check.err(
                    format!("{table}.password_file"),
                    format!("set both the file and {ENV_REDIS_PASSWORD}; use one"),
                ))
            }
            (Some(path), None) => {
                let bytes = check.secret_file(&format!("{table}.password_file"), &path)?;
                Some(String::from_utf8(bytes).map_err(|_| {
                    check.err(format!("{table}.password_file"), "is not UTF-8 text")
                })?)
            }
            (None, Some(p)) => Some(p),
            (None, None) => None,
        };
    if given.is_some() && in_url {
        return Err(check.err(
            format!("{table}.url"),
            "carries a password, and password_file or the environment gives another; use one",
        ));
    }
    match given {
        Some(p) if p.is_empty() => Err(check.err(format!("{table}.password_file"), "is empty")),
        other => Ok(other.map(Secret::new)),
    }
}
