//! Prometheus metrics, served on `server.metrics_listen` (never on the proxy's own port, so
//! they are not reachable by the users the proxy protects).
//!
//! One process-wide registry. Every series that the hot path touches is resolved once, at
//! first use, into a plain atomic counter or histogram: recording is a few atomic adds, with
//! no label lookup, lock or allocation per request.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::outcome::Outcome;

pub(crate) struct Metrics {
    registry: Registry,
    requests: Vec<IntCounter>,
    forward_auth: [IntCounter; 5],
    upstream_responses: [IntCounter; 6],
    upstream_seconds: Histogram,
    decision_seconds: Histogram,
    idp_requests: IntCounterVec,
    idp_seconds: HistogramVec,
    jwks_refetches: IntCounter,
    refreshes: IntCounterVec,
    logins: IntCounterVec,
    provider_ready: prometheus::IntGaugeVec,
    cookie_bytes: Histogram,
    reloads: [IntCounter; 2],
    last_reload_ok: IntGauge,
    last_reload_success: IntGauge,
}

/// Latency buckets from 50 µs to about 3.3 s (×2 each): authentication decisions are
/// microseconds, upstream and provider calls milliseconds.
fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.000_05, 2.0, 17).unwrap_or_default()
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub(crate) fn get() -> &'static Metrics {
    &METRICS
}

/// Why a provider call ended as it did, for `portcullis_idp_requests_total{result}`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CallResult {
    Ok,
    /// The provider answered with an error (an HTTP error status, an OAuth error).
    Refused,
    /// No usable answer: connection, timeout, or a document that does not parse.
    Failed,
}

impl CallResult {
    fn as_str(self) -> &'static str {
        match self {
            CallResult::Ok => "ok",
            CallResult::Refused => "refused",
            CallResult::Failed => "failed",
        }
    }
}

/// What a session refresh came to, for `portcullis_session_refreshes_total{result}`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RefreshResult {
    Refreshed,
    /// The provider said no: the user is signed out.
    Rejected,
    /// The provider could not be asked: the session is kept as it is.
    ProviderDown,
}

/// How a configuration reload ended, for `portcullis_config_reloads_total{result}`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ReloadResult {
    /// The new configuration serves.
    Applied,
    /// It did not validate (or a provider it names could not be loaded): the old one serves.
    Refused,
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new_custom(Some("portcullis".into()), None)
            .unwrap_or_else(|_| Registry::new());
        // Registration fails only on a duplicate name, which these fixed names rule out; a
        // metric that failed to register still counts, it is just not exported.
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let v = IntCounterVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| unreachable_metric(name, e));
            let _ = registry.register(Box::new(v.clone()));
            v
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .unwrap_or_else(|e| unreachable_metric(name, e));
            let _ = registry.register(Box::new(h.clone()));
            h
        };

        let requests_vec = counter_vec(
            "requests_total",
            "Requests by outcome: endpoint, public, cookie, bearer, login_redirect, \
             unauthenticated, invalid_token, forbidden, insufficient_scope, bad_request.",
            &["outcome"],
        );
        let requests = Outcome::ALL
            .iter()
            .map(|o| requests_vec.with_label_values(&[o.as_str()]))
            .collect();
        let forward_auth_vec = counter_vec(
            "forward_auth_total",
            "Answers of /oauth2/auth by status (202 allow, 401 credentials needed, 403 refused).",
            &["status"],
        );
        let forward_auth =
            ["200", "202", "401", "403", "other"].map(|s| forward_auth_vec.with_label_values(&[s]));
        let upstream_vec = counter_vec(
            "upstream_responses_total",
            "Responses of the upstream by status class; \"error\" when none arrived.",
            &["class"],
        );
        let upstream_responses = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"]
            .map(|c| upstream_vec.with_label_values(&[c]));
        let upstream_seconds = histogram(
            "upstream_response_seconds",
            "Time from sending the request upstream to the upstream's response header.",
            latency_buckets(),
        );
        let decision_seconds = histogram(
            "auth_decision_seconds",
            "Time to decide a request: path checks, route, session or bearer token, rules \
             (includes a session refresh when one is due).",
            latency_buckets(),
        );
        let idp_requests = counter_vec(
            "idp_requests_total",
            "Calls to identity providers by endpoint (discovery, jwks, token) and result.",
            &["endpoint", "result"],
        );
        let idp_seconds = HistogramVec::new(
            HistogramOpts::new(
                "idp_request_seconds",
                "Duration of calls to identity providers by endpoint.",
            )
            .buckets(latency_buckets()),
            &["endpoint"],
        )
        .unwrap_or_else(|e| unreachable_metric("idp_request_seconds", e));
        let _ = registry.register(Box::new(idp_seconds.clone()));
        let jwks_refetches = IntCounter::new(
            "jwks_refetches_total",
            "Key sets fetched again because a token named an unknown key id.",
        )
        .unwrap_or_else(|e| unreachable_metric("jwks_refetches_total", e));
        let _ = registry.register(Box::new(jwks_refetches.clone()));
        let refreshes = counter_vec(
            "session_refreshes_total",
            "Session refreshes at the provider by provider and result (refreshed, rejected, \
             provider_down).",
            &["provider", "result"],
        );
        let logins = counter_vec(
            "logins_total",
            "Browser sign-ins finished at the callback, by provider and result (ok, refused: \
             the provider's answer did not verify or said no, provider_down, store_down).",
            &["provider", "result"],
        );
        let provider_ready = prometheus::IntGaugeVec::new(
            Opts::new(
                "identity_provider_ready",
                "1 while the sign-in provider is loaded and answering, 0 while it is not.",
            ),
            &["provider"],
        )
        .unwrap_or_else(|e| unreachable_metric("identity_provider_ready", e));
        let _ = registry.register(Box::new(provider_ready.clone()));
        let cookie_bytes = histogram(
            "session_cookie_bytes",
            "Size of each session cookie written (all chunks together).",
            exponential_buckets(256.0, 2.0, 8).unwrap_or_default(),
        );
        let reloads_vec = counter_vec(
            "config_reloads_total",
            "Configuration reloads (SIGHUP or a changed file) by result: applied, or refused \
             (the configuration before it keeps serving).",
            &["result"],
        );
        let reloads = ["applied", "refused"].map(|r| reloads_vec.with_label_values(&[r]));
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).unwrap_or_else(|e| unreachable_metric(name, e));
            let _ = registry.register(Box::new(g.clone()));
            g
        };
        let last_reload_ok = gauge(
            "config_last_reload_successful",
            "1 when the last reload was applied (or none was tried), 0 when it was refused.",
        );
        last_reload_ok.set(1);
        let last_reload_success = gauge(
            "config_last_reload_success_timestamp_seconds",
            "When the configuration now serving was loaded (Unix seconds).",
        );
        last_reload_success.set(unix_now());
        Metrics {
            reloads,
            last_reload_ok,
            last_reload_success,
            registry,
            requests,
            forward_auth,
            upstream_responses,
            upstream_seconds,
            decision_seconds,
            idp_requests,
            idp_seconds,
            jwks_refetches,
            refreshes,
            logins,
            provider_ready,
            cookie_bytes,
        }
    }

    pub(crate) fn request(&self, outcome: Outcome) {
        if let Some(c) = self.requests.get(outcome as usize) {
            c.inc();
        }
    }

    pub(crate) fn forward_auth(&self, status: u16) {
        let i = match status {
            200 => 0,
            202 => 1,
            401 => 2,
            403 => 3,
            _ => 4,
        };
        self.forward_auth[i].inc();
    }

    /// An upstream response (`None`: no response arrived) and how long its header took.
    pub(crate) fn upstream(&self, status: Option<u16>, took: Option<Duration>) {
        let class = match status {
            Some(s @ 100..=599) => usize::from(s / 100 - 1),
            _ => 5,
        };
        self.upstream_responses[class].inc();
        if let Some(t) = took {
            self.upstream_seconds.observe(t.as_secs_f64());
        }
    }

    pub(crate) fn decision(&self, took: Duration) {
        self.decision_seconds.observe(took.as_secs_f64());
    }

    /// A call to an identity provider; `endpoint` is one of a fixed few names.
    pub(crate) fn idp_call(&self, endpoint: &'static str, result: CallResult, took: Duration) {
        self.idp_requests
            .with_label_values(&[endpoint, result.as_str()])
            .inc();
        self.idp_seconds
            .with_label_values(&[endpoint])
            .observe(took.as_secs_f64());
    }

    pub(crate) fn jwks_refetch(&self) {
        self.jwks_refetches.inc();
    }

    pub(crate) fn refresh(&self, provider: &str, result: RefreshResult) {
        let label = match result {
            RefreshResult::Refreshed => "refreshed",
            RefreshResult::Rejected => "rejected",
            RefreshResult::ProviderDown => "provider_down",
        };
        self.refreshes.with_label_values(&[provider, label]).inc();
    }

    /// A sign-in finished at the callback; `result` is one of a fixed few words.
    pub(crate) fn login(&self, provider: &str, result: &'static str) {
        self.logins.with_label_values(&[provider, result]).inc();
    }

    /// Whether the sign-in provider `provider` is ready now.
    pub(crate) fn provider_ready(&self, provider: &str, ready: bool) {
        self.provider_ready
            .with_label_values(&[provider])
            .set(i64::from(ready));
    }

    pub(crate) fn reload(&self, result: ReloadResult) {
        match result {
            ReloadResult::Applied => {
                self.reloads[0].inc();
                self.last_reload_ok.set(1);
                self.last_reload_success.set(unix_now());
            }
            ReloadResult::Refused => {
                self.reloads[1].inc();
                self.last_reload_ok.set(0);
            }
        }
    }

    pub(crate) fn session_cookie(&self, bytes: usize) {
        self.cookie_bytes.observe(bytes as f64);
    }

    /// The text exposition format of every metric.
    pub(crate) fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail on I/O; an encoding error leaves what was written.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// The `/metrics` endpoint on `server.metrics_listen`: a pingora HTTP app of its own, so it
/// shares nothing with the proxy's port or its request handling.
pub(crate) struct MetricsApp;

#[async_trait::async_trait]
impl pingora::apps::http_app::ServeHttp for MetricsApp {
    async fn response(
        &self,
        session: &mut pingora::protocols::http::ServerSession,
    ) -> http::Response<Vec<u8>> {
        let (status, content_type, body) = if session.req_header().uri.path() == "/metrics" {
            (200, "text/plain; version=0.0.4", get().render())
        } else {
            (
                404,
                "text/plain",
                b"not found: metrics are at /metrics\n".to_vec(),
            )
        };
        let mut response = http::Response::new(body);
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
        if let Ok(v) = http::HeaderValue::from_str(content_type) {
            response.headers_mut().insert(http::header::CONTENT_TYPE, v);
        }
        response
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The options above are constants that prometheus accepts; reaching this is a programming
/// error caught by the unit test below, never by a request.
/// (The registry is built before the server starts listening, so no request can reach it.)
#[allow(clippy::panic)]
fn unreachable_metric<T>(name: &str, e: prometheus::Error) -> T {
    panic!("metric {name}: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_registers_and_renders() {
        let m = get();
        m.request(Outcome::Cookie);
        m.forward_auth(202);
        m.upstream(Some(204), Some(Duration::from_millis(2)));
        m.upstream(None, None);
        m.decision(Duration::from_micros(80));
        m.idp_call("jwks", CallResult::Ok, Duration::from_millis(3));
        m.jwks_refetch();
        m.refresh("default", RefreshResult::Refreshed);
        m.login("default", "ok");
        m.provider_ready("default", true);
        m.session_cookie(1100);
        m.reload(ReloadResult::Refused);
        let text = String::from_utf8(m.render()).unwrap();
        for line in [
            "portcullis_requests_total{outcome=\"cookie\"}",
            "portcullis_forward_auth_total{status=\"202\"}",
            "portcullis_upstream_responses_total{class=\"2xx\"}",
            "portcullis_upstream_responses_total{class=\"error\"}",
            "portcullis_upstream_response_seconds_count",
            "portcullis_auth_decision_seconds_count",
            "portcullis_idp_requests_total{endpoint=\"jwks\",result=\"ok\"}",
            "portcullis_idp_request_seconds_count{endpoint=\"jwks\"}",
            "portcullis_jwks_refetches_total",
            "portcullis_session_refreshes_total{provider=\"default\",result=\"refreshed\"}",
            "portcullis_logins_total{provider=\"default\",result=\"ok\"}",
            "portcullis_identity_provider_ready{provider=\"default\"} 1",
            "portcullis_session_cookie_bytes_count",
            "portcullis_config_reloads_total{result=\"refused\"} 1",
            "portcullis_config_last_reload_successful 0",
            "portcullis_config_last_reload_success_timestamp_seconds",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        // Every outcome is exported from the start, at zero, so dashboards see the series.
        for o in Outcome::ALL {
            assert!(text.contains(&format!("outcome=\"{}\"", o.as_str())));
        }
    }
}
