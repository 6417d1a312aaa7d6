//! An upstream that answers every request with its own name, so that a test can tell which
//! upstream a request reached; a request for `/hold…` waits until the test lets it go, so
//! that a test can keep a request in flight.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub struct NamedUpstream {
    pub addr: SocketAddr,
    /// Notified when a `/hold` request has arrived.
    pub holding: Arc<Notify>,
    release: Arc<Notify>,
    task: JoinHandle<()>,
}

impl NamedUpstream {
    pub async fn start(name: &'static str) -> NamedUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let holding = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let (h, r) = (holding.clone(), release.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, name, h.clone(), r.clone()));
            }
        });
        NamedUpstream {
            addr,
            holding,
            release,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Lets the `/hold` request waiting now (or the next one) be answered.
    pub fn release(&self) {
        self.release.notify_one();
    }
}

impl Drop for NamedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers each request head on the connection (no bodies: the tests send GETs).
async fn serve(mut stream: TcpStream, name: &str, holding: Arc<Notify>, release: Arc<Notify>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head: Vec<u8> = buf.drain(..end).collect();
        if head
            .split(|b| *b == b' ')
            .nth(1)
            .is_some_and(|p| p.starts_with(b"/hold"))
        {
            holding.notify_one();
            release.notified().await;
        }
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{name}",
            name.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}
