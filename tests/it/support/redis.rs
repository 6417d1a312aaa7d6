//! A real `redis-server` (Debian's package) for one test: its own port and directory on
//! loopback, no persistence unless asked, ended by PID when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, scratch_file, wait_until};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING`.
    pub async fn start() -> RedisServer {
        RedisServer::start_with(&[]).await
    }

    /// Starts a server with `extra` arguments (cluster mode, say) and waits for `PING`. A
    /// cluster node also listens on its port + 10000 (the cluster bus): both must be free. A
    /// port another test took in the meantime makes the server exit: then another port.
    pub async fn start_with(extra: &[&str]) -> RedisServer {
        let cluster = extra.contains(&"--cluster-enabled");
        let dir = scratch_file("redis-dir", b"").with_extension("d");
        std::fs::create_dir_all(&dir).expect("redis dir");
        for _ in 0..10 {
            let port = loop {
                let p = free_port();
                if !cluster || std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
                    break p;
                }
            };
            let mut server = RedisServer {
                child: None,
                port,
                dir: dir.clone(),
            };
            if server.spawn_with(extra).await {
                return server;
            }
        }
        panic!("redis-server would not start on any free port");
    }

    async fn spawn(&mut self) {
        assert!(self.spawn_with(&[]).await, "redis-server exited at start");
    }

    /// Starts the process and waits until it answers `PING` (true) or exits (false).
    async fn spawn_with(&mut self, extra: &[&str]) -> bool {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--dir", &self.dir.display().to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let url = self.url();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            let probe = url.clone();
            let answers = tokio::task::spawn_blocking(move || {
                redis::Client::open(probe.as_str())
                    .and_then(|c| c.get_connection())
                    .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                    .is_ok()
            })
            .await
            .unwrap_or(false);
            if answers {
                self.child = Some(child);
                return true;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server on {} does not answer PING",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// A synchronous connection for the test's own looks into Redis.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url().as_str())
            .and_then(|c| c.get_connection())
            .expect("redis connection")
    }

    /// Freezes the server (it keeps its connections but answers nothing).
    pub fn pause(&self) {
        signal("STOP", self.pid());
    }

    pub fn resume(&self) {
        signal("CONT", self.pid());
    }

    /// Runs `redis-cli` against this server with `args`; its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Ends the server (its data is gone: no persistence) and starts a new one on the same port.
    pub async fn restart_empty(&mut self) {
        self.kill();
        self.spawn().await;
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn signal(name: &str, pid: u32) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{name} {pid}");
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A paused server would not die of SIGKILL's delivery until continued on some kernels.
        if let Some(c) = &self.child {
            signal_quietly("CONT", c.id());
        }
        self.kill();
    }
}

fn signal_quietly(name: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status();
}

/// A Redis Cluster of three masters (no replicas) on loopback, its slots assigned with
/// `redis-cli --cluster create`, ready when every node says `cluster_state:ok`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub async fn start() -> RedisCluster {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "5000",
                ])
                .await,
            );
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let urls: Vec<String> = nodes.iter().map(RedisServer::url).collect();
        wait_until("the cluster to be ok", Duration::from_secs(20), || {
            let urls = urls.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    urls.iter().all(|u| {
                        redis::Client::open(u.as_str())
                            .and_then(|c| c.get_connection())
                            .and_then(|mut c| {
                                redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c)
                            })
                            .is_ok_and(|info| info.contains("cluster_state:ok"))
                    })
                })
                .await
                .unwrap_or(false)
            }
        })
        .await;
        RedisCluster { nodes }
    }

    /// `cluster = [...]` for `[session.redis]`.
    pub fn toml_list(&self) -> String {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("\"redis://127.0.0.1:{}\"", n.port))
            .collect();
        format!("[{}]", urls.join(", "))
    }
}

/// A master and one Sentinel watching it (`mymaster`), ready when the Sentinel names it.
pub struct RedisSentinel {
    pub master: RedisServer,
    sentinel: Option<Child>,
    pub port: u16,
}

impl RedisSentinel {
    pub async fn start() -> RedisSentinel {
        let master = RedisServer::start().await;
        let port = free_port();
        let conf = scratch_file(
            "sentinel.conf",
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {} 1\n",
                master.dir.display(),
                master.port
            )
            .as_bytes(),
        );
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel");
        let url = format!("redis://127.0.0.1:{port}");
        let want = master.port.to_string();
        wait_until(
            "the sentinel to name its master",
            Duration::from_secs(20),
            || {
                let (url, want) = (url.clone(), want.clone());
                async move {
                    tokio::task::spawn_blocking(move || {
                        redis::Client::open(url.as_str())
                            .and_then(|c| c.get_connection())
                            .and_then(|mut c| {
                                redis::cmd("SENTINEL")
                                    .arg("get-master-addr-by-name")
                                    .arg("mymaster")
                                    .query::<Vec<String>>(&mut c)
                            })
                            .is_ok_and(|addr| addr.get(1) == Some(&want))
                    })
                    .await
                    .unwrap_or(false)
                }
            },
        )
        .await;
        RedisSentinel {
            master,
            sentinel: Some(child),
            port,
        }
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        if let Some(mut c) = self.sentinel.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
