//! The benchmark's "minimal pingora proxy": a few lines of `ProxyHttp` that forward every
//! request to one upstream and do nothing else. Its row separates what pingora itself costs
//! from what portcullis adds on top. It runs pingora the way portcullis does (the same
//! allocator, runtime and connection settings), so that the difference between the two rows is
//! portcullis' own work.
//!
//!   cargo run --release --example minimal_proxy -- LISTEN UPSTREAM [THREADS] [steal|no-steal]

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Minimal {
    upstream: std::net::SocketAddr,
}

#[async_trait]
impl ProxyHttp for Minimal {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: minimal_proxy LISTEN UPSTREAM [THREADS] [steal|no-steal]";
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let upstream = upstream.parse().unwrap_or_else(|_| {
        eprintln!("{usage}: UPSTREAM is an IP address and port");
        std::process::exit(2);
    });
    let threads = match args.get(3).map(|t| t.parse()) {
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("{usage}: THREADS is a number");
            std::process::exit(2);
        }
    };
    let work_stealing = match args.get(4).map(String::as_str) {
        None | Some("steal") => true,
        Some("no-steal") => false,
        Some(_) => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let conf = ServerConf {
        threads,
        work_stealing,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, Minimal { upstream });
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever();
}
