//! One connection to Redis, whatever its topology: standalone, found through Sentinel, or a
//! Cluster. Connected on first use (portcullis starts while Redis is down), reconnected after
//! a failure, every call bounded by `session.redis.timeout`; the last failure is kept for
//! `/ready`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Cmd, ErrorKind, FromRedisValue, RedisConnectionInfo, RedisError, ServerErrorKind};

use crate::config::{redis_url_shown, RedisSettings, RedisTopology};

/// Why Redis could not answer: shown in `/ready` and the log, never with a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("redis: {0}")]
pub(crate) struct Unavailable(pub String);

#[derive(Clone)]
enum Conn {
    /// Standalone or the Sentinel's master.
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// Redis for one portcullis: a shared connection (multiplexed, so one is enough), made again
/// when a call fails.
pub(crate) struct Redis {
    settings: RedisSettings,
    conn: tokio::sync::Mutex<Option<Conn>>,
    last_error: Mutex<Option<String>>,
    /// After a failure, calls fail at once until then instead of each waiting out a
    /// connection attempt: requests get their 503 fast while Redis is down.
    retry_at: Mutex<Option<Instant>>,
}

/// How long calls fail fast after a failure before one tries to connect again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Whether `e` is Redis' answer about one command (which says nothing about the connection)
/// rather than a sign that this connection or server cannot be used (I/O, a failover's
/// READONLY or MASTERDOWN, a cluster or a server that is loading).
fn answered(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Server(
            ServerErrorKind::ResponseError
                | ServerErrorKind::ExecAbort
                | ServerErrorKind::NoScript
                | ServerErrorKind::NoPerm
                | ServerErrorKind::CrossSlot
        )
    )
}

impl Redis {
    /// Not connected yet: the first call connects.
    pub(crate) fn new(settings: RedisSettings) -> Redis {
        Redis {
            settings,
            conn: tokio::sync::Mutex::new(None),
            last_error: Mutex::new(None),
            retry_at: Mutex::new(None),
        }
    }

    /// Every key portcullis writes starts with this.
    pub(crate) fn prefix(&self) -> &str {
        &self.settings.key_prefix
    }

    /// The last call's failure, if it failed.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Runs `cmd`, within the timeout; a failure drops the connection, so the next call
    /// connects again (to the new master, after a Sentinel failover).
    pub(crate) async fn run<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Unavailable> {
        let waiting = self
            .retry_at
            .lock()
            .ok()
            .and_then(|r| *r)
            .is_some_and(|at| Instant::now() < at);
        if waiting {
            return Err(Unavailable(
                self.last_error().unwrap_or_else(|| "unreachable".into()),
            ));
        }
        let result = tokio::time::timeout(self.settings.timeout, self.run_once(cmd)).await;
        let outcome = match result {
            Ok(Ok(v)) => Ok(v),
            // Redis answered, with an error about this command (a permission, a type): the
            // connection is fine and Redis is up, so neither is given up.
            Ok(Err(e)) if answered(&e) => {
                tracing::warn!(error = %e, "redis refused a command");
                return Err(Unavailable(e.to_string()));
            }
            // redis-rs never prints a password in its errors.
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer within {} ms",
                self.settings.timeout.as_millis()
            )),
        };
        match outcome {
            Ok(v) => {
                if let Ok(mut last) = self.last_error.lock() {
                    *last = None;
                }
                Ok(v)
            }
            Err(reason) => {
                *self.conn.lock().await = None;
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(reason.clone());
                }
                if let Ok(mut retry) = self.retry_at.lock() {
                    *retry = Some(Instant::now() + RETRY_AFTER);
                }
                tracing::warn!(error = %reason, "redis call failed");
                Err(Unavailable(reason))
            }
        }
    }

    async fn run_once<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisError> {
        let conn = {
            let mut slot = self.conn.lock().await;
            match slot.as_ref() {
                Some(c) => c.clone(),
                None => {
                    let c = self.connect().await?;
                    *slot = Some(c.clone());
                    c
                }
            }
        };
        match conn {
            Conn::Single(mut c) => cmd.query_async(&mut c).await,
            Conn::Cluster(mut c) => cmd.query_async(&mut c).await,
        }
    }

    async fn connect(&self) -> Result<Conn, RedisError> {
        let password = self.settings.password.as_ref().map(|p| p.expose());
        match &self.settings.topology {
            RedisTopology::Standalone(url) => {
                let mut url = url.clone();
                if let Some(p) = password {
                    let _ = url.set_password(Some(p));
                }
                let client = redis::Client::open(url.as_str())?;
                Ok(Conn::Single(
                    client.get_multiplexed_async_connection().await?,
                ))
            }
            RedisTopology::Sentinel { master, nodes, db } => {
                let mut info = RedisConnectionInfo::default().set_db(*db);
                if let Some(p) = password {
                    info = info.set_password(p);
                }
                let mut node =
                    SentinelNodeConnectionInfo::default().set_redis_connection_info(info);
                if nodes.iter().any(|u| u.scheme() == "rediss") {
                    node = node.set_tls_mode(redis::TlsMode::Secure);
                }
                let nodes: Vec<&str> = nodes.iter().map(|u| u.as_str()).collect();
                let mut client = SentinelClient::build(
                    nodes,
                    master.as_str(),
                    Some(node),
                    SentinelServerType::Master,
                )?;
                Ok(Conn::Single(client.get_async_connection().await?))
            }
            RedisTopology::Cluster(nodes) => {
                let nodes: Vec<&str> = nodes.iter().map(|u| u.as_str()).collect();
                let mut builder = redis::cluster::ClusterClientBuilder::new(nodes)
                    .connection_timeout(self.settings.timeout)
                    .response_timeout(self.settings.timeout);
                if let Some(p) = password {
                    builder = builder.password(p);
                }
                Ok(Conn::Cluster(
                    builder.build()?.get_async_connection().await?,
                ))
            }
        }
    }

    /// Where Redis is, for the log (no password).
    pub(crate) fn describe(&self) -> String {
        match &self.settings.topology {
            RedisTopology::Standalone(u) => redis_url_shown(u),
            RedisTopology::Sentinel { master, .. } => format!("sentinel master {master}"),
            RedisTopology::Cluster(nodes) => format!("cluster of {} seed node(s)", nodes.len()),
        }
    }

    /// Whether Redis answers (`PING`), past any fail-fast pause: the background probe.
    pub(crate) async fn ping(&self) -> Result<(), Unavailable> {
        if let Ok(mut retry) = self.retry_at.lock() {
            *retry = None;
        }
        let pong: String = self.run(&redis::cmd("PING")).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(Unavailable(format!("PING answered {pong:?}")))
        }
    }
}
