//! Assembling the pingora server: the proxy service on every listen address, and the
//! background service that keeps the identity provider's metadata and keys loaded.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::http_app::HttpServer;
use pingora::listeners::{L4BufferSettings, ListenerConfig, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use crate::app::App;
use crate::config::{Config, ListenerKind};
use crate::jwt::remote::RemoteKeys;
use crate::listener::tls::{TlsEndpoint, TlsPorts};
use crate::listener::{Admission, Listener};
use crate::oidc::Provider;
use crate::proxy::Portcullis;

/// Keeps one identity provider's metadata and keys loaded.
struct MaintainProvider(Arc<Provider>);

#[async_trait]
impl BackgroundService for MaintainProvider {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.0.maintain(shutdown).await;
    }
}

/// Keeps one bearer issuer's published keys fresh.
struct MaintainKeys(String, Arc<RemoteKeys>);

#[async_trait]
impl BackgroundService for MaintainKeys {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.1.maintain(shutdown, &self.0).await;
    }
}

/// Pings the session store (Redis) every [`STORE_PROBE_EVERY`], so `/ready` follows it and
/// requests stop failing fast as soon as it answers again, without waiting for traffic.
struct ProbeSessionStore(Arc<App>);

/// How often the session store is probed.
const STORE_PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

#[async_trait]
impl BackgroundService for ProbeSessionStore {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(login) = &self.0.login else {
            return;
        };
        loop {
            login.sessions.probe().await;
            tokio::select! {
                _ = tokio::time::sleep(STORE_PROBE_EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Streams one HTTP/2 connection may carry at once (pingora's default too).
const H2_MAX_STREAMS: u32 = 100;

/// Reloads the TLS listeners' certificates, keys and client CAs on SIGHUP and when their
/// files change: new handshakes get the new material, open connections keep theirs, and a
/// file that does not load keeps the old material (the log says why).
struct ReloadTls(TlsPorts);

#[async_trait]
impl BackgroundService for ReloadTls {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        crate::listener::reload::run(&self.0, &mut shutdown).await;
    }
}

/// Builds the server for `config`. The caller runs it.
pub(crate) fn build(config: Config) -> anyhow::Result<Server> {
    crate::jwt::provider::install();
    let config = Arc::new(config);
    let app = Arc::new(App::new(config.clone())?);

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
        pingora::proxy::http_proxy(&server.configuration, Portcullis { app: app.clone() });
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
    let trusting = config.clone();
    let counts_per_address = Arc::new(move |ip| !trusting.server.is_trusted_proxy(ip));
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
    let reload = ReloadTls(tls.clone());
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
    server.add_service(background_service("TLS reload", reload));
    server.add_service(proxy);
    for (issuer, keys) in app.bearer.remote_keys() {
        server.add_service(background_service(
            &format!("keys of {issuer}"),
            MaintainKeys(issuer, keys),
        ));
    }
    server.add_service(background_service(
        "session store probe",
        ProbeSessionStore(app.clone()),
    ));
    for provider in app.login.iter().flat_map(|l| l.providers.iter()) {
        server.add_service(background_service(
            &format!("identity provider {}", provider.oidc().issuer),
            MaintainProvider(provider.clone()),
        ));
    }
    // Built now, so that a metric definition could only ever fail at start, not on a request.
    let _ = crate::metrics::get();
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
