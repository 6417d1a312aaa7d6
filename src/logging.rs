//! Structured logs through `tracing`: JSON when stderr is not a terminal (containers, CI),
//! human-readable on a terminal. pingora logs through the `log` facade, bridged in here.
//!
//! No level may log a credential. pingora's own debug and trace lines dump whole request and
//! response headers ("Sending header to upstream" with `Authorization` and the forwarded
//! access token, upstream responses with their `Set-Cookie`) and raw bytes of bodies and of
//! heads it could not parse. So pingora's lines below INFO are dropped whatever the level
//! asks for, `RUST_LOG` included; portcullis' own debug lines never carry a token.

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

/// Whether a line may be written at all: everything but pingora's debug and trace lines.
fn may_log(meta: &Metadata<'_>) -> bool {
    *meta.level() <= Level::INFO || !is_pingora(meta.target())
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
}
