//! `[logging]`: how much is logged, and in which form.

use super::check::Check;
use super::file::LoggingFile;
use super::ConfigError;

/// `logging.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON unless stderr is a terminal.
    #[default]
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// The validated `[logging]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logging {
    /// A `tracing` filter (`info`, `portcullis=debug,info`).
    pub level: String,
    /// How lines are written.
    pub format: LogFormat,
}

pub(super) fn validate(check: &Check, l: LoggingFile) -> Result<Logging, ConfigError> {
    let level = l.level.unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        return Err(check.err("logging.level", format!("`{level}` is not a log filter")));
    }
    Ok(Logging {
        level,
        format: l.format.unwrap_or_default(),
    })
}
