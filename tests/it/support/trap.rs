//! [`Trap`]: the attacker's key server a forged token points to, which the proxy must never ask.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::tokens::random_id;

/// A listener where an attacker would serve keys or certificates (`jku`, `x5u`). It records
/// the request line of every connection; only requests for its own unguessable path count as
/// fetches, since a test running in parallel may poll a port it was handed by mistake.
pub struct Trap {
    pub url: String,
    marker: String,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Trap {
    pub async fn start() -> Trap {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind trap");
        let marker = format!("/trap-{}", random_id());
        let url = format!("http://{}{marker}", listener.local_addr().expect("addr"));
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let record = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 2048];
                    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or(0);
                    let text = String::from_utf8_lossy(&buf[..n]);
                    let line = text.lines().next().unwrap_or("").to_string();
                    record.lock().expect("trap log").push(line);
                });
            }
        });
        Trap {
            url,
            marker,
            seen,
            task,
        }
    }

    /// Request lines that asked for the trap's own path.
    pub fn fetches(&self) -> Vec<String> {
        let seen = self.seen.lock().expect("trap log");
        seen.iter()
            .filter(|l| l.contains(&self.marker))
            .cloned()
            .collect()
    }
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.task.abort();
    }
}
