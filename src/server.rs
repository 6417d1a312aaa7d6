//! Assembling the pingora server: the proxy service on every listen address, and the
//! background service that reloads the configuration and keeps the live one's providers, key
//! sets and session store up ([`crate::reload`]).

use std::path::PathBuf;
use std::sync::Arc;

use pingora::apps::http_app::HttpServer;
use pingora::listeners::{L4BufferSettings, ListenerConfig, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::app::{App, Live};
use crate::config::{Config, ListenerKind};
use crate::listener::tls::{TlsEndpoint, TlsPorts};
use crate::listener::{Admission, Listener};
use crate::proxy::Portcullis;
use crate::reload::Reloader;

/// Streams one HTTP/2 connection may carry at once (pingora's default too).
const H2_MAX_STREAMS: u32 = 100;

/// Builds the server for `config`, read from `config_path` (which a reload reads again;
/// `None` when it was not read from a file). The caller runs it.
pub(crate) fn build(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<Server> {
    crate::jwt::provider::install();
    let config = Arc::new(config);
    let live = Arc::new(Live::new(Arc::new(App::new(config.clone())?)));

    // pingora counts whole seconds; round up so "500ms" does not become no grace at all.
    let grace = config.server.shutdown_grace.as_millis().div_ceil(1000) as u64;
    let conf = ServerConf {
        threads: config.server.threads,
        work_stealing: true,
        // pingora's defaults wait 300 s after SIGTERM; a Kubernetes pod gets 30 s in all.
        grace_period_seconds: Some(grace),
        graceful_shutdown_timeout_seconds: Some(grace.max(1)),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut proxy =
        pingora::proxy::http_proxy(&server.configuration, Portcullis { live: live.clone() });
    // HTTP/2 (on TLS listeners): the same bound on a request's headers as HTTP/1 heads, a
    // bound on streams per connection, and idle connections closed like HTTP/1 keep-alive.
    let mut h2 = pingora::protocols::http::v2::server::default_h2_options();
    h2.max_header_list_size(
        u32::try_from(config.server.head_limits.max_header_bytes).unwrap_or(u32::MAX),
    );
    h2.max_concurrent_streams(H2_MAX_STREAMS);
    proxy.h2_options = Some(h2);
    let mut options = proxy.server_options.take().unwrap_or_default();
    options.h2_idle_timeout = Some(crate::listener::IDLE);
    proxy.server_options = Some(options);
    // Every request head is read by the listener first, within the configured bounds.
    let admission = Admission::new(config.server.connection_limits);
    // Trusted proxies are the live configuration's: a reload may change them.
    let trusting = live.clone();
    let counts_per_address = Arc::new(move |ip| !trusting.app().config.server.is_trusted_proxy(ip));
    let mut tls = TlsPorts::new(config.server.tls_handshake_timeout);
    for listener in &config.server.listeners {
        match &listener.kind {
            ListenerKind::Plain => {}
            // The listener stage runs the handshake itself; pingora accepts plain TCP.
            ListenerKind::Tls(spec) => {
                tls.add(listener.address.port(), Arc::new(TlsEndpoint::new(spec)?));
            }
        }
    }
    let reload = Reloader::new(live.clone(), config_path, tls.clone());
    let mut proxy = Service::new(
        "portcullis".to_string(),
        Listener::new(
            proxy,
            config.server.head_limits,
            admission,
            counts_per_address,
            tls,
        ),
    );
    for listener in &config.server.listeners {
        // No L4 read buffer: the listener reads each head into its own buffer and pingora
        // reads bodies into its own, so pingora's default 64 KiB per connection would only
        // sit there, for every idle connection, and be copied through on every read.
        let buffers = L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE);
        let address = listener.address.to_string();
        proxy.add_listener(ListenerConfig::tcp(address).l4_buffer(buffers));
    }
    // Also keeps the providers, key sets and session store of the live configuration up.
    server.add_service(background_service("reload and upkeep", reload));
    server.add_service(proxy);
    // Built now, so that a metric definition could only ever fail at start, not on a request.
    let _ = crate::metrics::get();
    if let Some(addr) = config.server.ext_authz_listen {
        let ext_authz = crate::ext_authz::ExtAuthz::new(addr, live.clone());
        server.add_service(background_service("ext_authz", ext_authz));
    }
    if let Some(addr) = config.server.metrics_listen {
        let mut metrics = Service::new(
            "metrics".to_string(),
            HttpServer::new_app(crate::metrics::MetricsApp),
        );
        metrics.add_tcp(&addr.to_string());
        server.add_service(metrics);
    }
    Ok(server)
}
