//! The access log: one line per request (target `access`) and its count in
//! `portcullis_requests_total`, written here and nowhere else, for requests the proxy answered
//! and for connections the listener turned away before pingora saw a request.
//!
//! A line never carries a query, a header value or a body: only the path, whose query may
//! hold an authorization code or state, is left out with the rest.

use std::net::IpAddr;
use std::time::Duration;

use crate::metrics;
use crate::outcome::Outcome;

/// What one line says.
pub(crate) struct Entry<'a> {
    /// `-` when no request could be read.
    pub method: &'a str,
    /// The path only, never the query; `-` when no request could be read.
    pub path: &'a str,
    /// `None` when nothing was written (the client was gone).
    pub status: Option<u16>,
    pub outcome: Outcome,
    pub user: Option<&'a str>,
    pub client: Option<IpAddr>,
    /// `None` when the request never started (a connection refused at accept).
    pub duration: Option<Duration>,
    /// The kind of error that ended the request, if one did.
    pub error: Option<&'a str>,
    /// Why the request was refused, exactly (never a token, a signature or a secret).
    pub reason: Option<&'a str>,
}

/// Writes `entry`'s line and counts its outcome.
pub(crate) fn record(entry: &Entry<'_>) {
    metrics::get().request(entry.outcome);
    tracing::info!(
        target: "access",
        method = entry.method,
        path = entry.path,
        status = entry.status.unwrap_or(0),
        outcome = entry.outcome.as_str(),
        user = entry.user.unwrap_or("-"),
        client = %entry.client.map_or_else(|| "-".to_string(), |ip| ip.to_string()),
        duration_us = entry.duration.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        error = entry.error,
        reason = entry.reason,
    );
}
