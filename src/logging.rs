//! Structured logs through `tracing`: JSON when stderr is not a terminal (containers, CI),
//! human-readable on a terminal. pingora logs through the `log` facade, bridged in here.
//!
//! No level may log a credential. pingora's own debug and trace lines dump whole request and
//! response headers ("Sending header to upstream" with `Authorization` and the forwarded
//! access token, upstream responses with their `Set-Cookie`) and raw bytes of bodies and of
//! heads it could not parse. So pingora's lines below INFO are dropped whatever the level
//! asks for, `RUST_LOG` included; portcullis' own debug lines never carry a token.
//!
//! Nor may a client write WARN or ERROR lines at will. rustls warns about what a peer sent
//! (an IP address as SNI, which wrk and other clients send on every connection), so its
//! lines below ERROR are dropped too; the listener logs a failed handshake itself, at debug.

use std::io::IsTerminal;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` overrides the configured level.
pub(crate) fn init(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let output = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let output = if json {
        output.json().flatten_event(true).boxed()
    } else {
        output.boxed()
    };
    let result = tracing_subscriber::registry()
        .with(filter)
        .with(output.with_filter(filter_fn(may_log)))
        .try_init();
    // A second initialisation (tests) keeps the first subscriber.
    let _ = result;
}

/// Whether a line may be written at all: everything but pingora's debug and trace lines and
/// rustls' lines below ERROR.
fn may_log(meta: &Metadata<'_>) -> bool {
    may_log_at(*meta.level(), meta.target())
}

fn may_log_at(level: Level, target: &str) -> bool {
    if is_rustls(target) {
        return level <= Level::ERROR;
    }
    level <= Level::INFO || !is_pingora(target)
}

fn is_rustls(target: &str) -> bool {
    target == "rustls" || target.starts_with("rustls::")
}

fn is_pingora(target: &str) -> bool {
    target == "pingora" || target.starts_with("pingora_") || target.starts_with("pingora::")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pingora_targets_are_recognised() {
        for t in [
            "pingora_proxy::proxy_h1",
            "pingora_core",
            "pingora::x",
            "pingora",
        ] {
            assert!(is_pingora(t), "{t}");
        }
        for t in ["portcullis::proxy", "access", "pingoration", "hyper"] {
            assert!(!is_pingora(t), "{t}");
        }
    }

    #[test]
    fn what_a_peer_makes_rustls_warn_about_is_not_logged() {
        assert!(!may_log_at(Level::WARN, "rustls::msgs::handshake"));
        assert!(!may_log_at(Level::INFO, "rustls::server::hs"));
        assert!(may_log_at(Level::ERROR, "rustls::server::hs"));
        assert!(!may_log_at(Level::DEBUG, "pingora_core::protocols"));
        assert!(may_log_at(Level::WARN, "pingora_core::server"));
        assert!(may_log_at(Level::DEBUG, "portcullis::listener"));
        assert!(may_log_at(Level::WARN, "rustlsx"));
    }
}
