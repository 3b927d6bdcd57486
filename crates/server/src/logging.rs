//! Logging setup: `tracing` to stderr as text or as one JSON object per line ([`LogFormat`]), filtered by
//! `--log-level` (flag, `COFFER_LOG_LEVEL` or the config file's `log-level`) or else `RUST_LOG`, both with per-crate
//! directives (default `info`). The filter can be replaced while the server runs ([`LogFilter::set`], on SIGHUP);
//! the format is fixed at start.
//!
//! The protocol crates underneath (s3s, hyper, h2) print request headers, computed signatures and chunk signatures
//! in their debug/trace events, so those crates are capped at `info` whatever the filter says. s3s is off by
//! default: it reports every client error (a 404 included) at `error` level, and Coffer's own request line already
//! carries the status. vaultrs is silenced: it reports every Vault error answer at `error` level, including the
//! 404s Coffer expects when it probes for a key, and Coffer logs the failures it acts on in its own words.

use std::io::IsTerminal;

use clap::ValueEnum;
use serde::Deserialize;
use tracing::{Level, Metadata};

use crate::audit_log::{is_audit_event, AuditLayer};
use tracing_subscriber::filter::{EnvFilter, FilterFn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, Layer, Registry};

/// Directives used when neither `--log-level` nor `RUST_LOG` says anything.
pub const DEFAULT_FILTER: &str = "info,s3s=off";

/// Crates whose verbose events may contain signatures or headers.
const CAPPED_CRATES: [&str; 3] = ["s3s", "hyper", "h2"];

/// Crates never heard from, whatever `RUST_LOG` says: their events repeat Vault's answers (which may quote request
/// paths and, at trace level, bodies) and are not what an operator can act on.
const SILENCED_CRATES: [&str; 2] = ["vaultrs", "rustify"];

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2026-01-01T00:00:00.000000Z  INFO coffer_server::request: request request_id=… status=200`.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and the event's fields.
    Json,
}

/// Changes the filter of the installed subscriber; holds its audit layer, to attach the audit file to.
#[derive(Clone)]
pub struct LogFilter {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG`, or [`DEFAULT_FILTER`]: what applies without `--log-level`.
    fallback: String,
    audit: AuditLayer,
}

impl std::fmt::Debug for LogFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFilter").field("fallback", &self.fallback).finish_non_exhaustive()
    }
}

/// `--log-level` holds directives `tracing` cannot parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid log level `{directives}`: {message}")]
pub struct InvalidLogLevel {
    directives: String,
    message: String,
}

impl LogFilter {
    /// Filters by `directives` (`--log-level`), or by `RUST_LOG` / the default when `None`. Returns the directives
    /// now in force; on an error the filter stays as it was.
    pub fn set(&self, directives: Option<&str>) -> Result<String, InvalidLogLevel> {
        let directives = directives.unwrap_or(&self.fallback);
        let filter = EnvFilter::try_new(directives)
            .map_err(|error| InvalidLogLevel { directives: directives.to_owned(), message: error.to_string() })?;
        self.handle
            .reload(filter)
            .map_err(|error| InvalidLogLevel { directives: directives.to_owned(), message: error.to_string() })?;
        Ok(directives.to_owned())
    }

    /// The layer audit events reach, whatever the filter (see [`crate::audit_log`]).
    pub fn audit(&self) -> &AuditLayer {
        &self.audit
    }
}

/// Installs the global subscriber writing `format`, filtered by `RUST_LOG` until [`LogFilter::set`] says
/// otherwise. Call once, before anything logs.
pub fn init(format: LogFormat) -> LogFilter {
    let fallback = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => directives,
        _ => DEFAULT_FILTER.to_owned(),
    };
    let (filter, handle) = reload::Layer::new(EnvFilter::new(&fallback));
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => lines.with_ansi(std::io::stderr().is_terminal()).boxed(),
        // Fields at the top level, beside `message`: what log shippers index without a nested path.
        LogFormat::Json => lines.json().flatten_event(true).with_current_span(false).with_span_list(false).boxed(),
    }
    .with_filter(filter);
    let audit = AuditLayer::new();
    tracing_subscriber::registry()
        .with(fmt.with_filter(FilterFn::new(is_safe_to_emit)))
        .with(audit.clone().with_filter(FilterFn::new(is_audit_event)))
        .init();
    LogFilter { handle, fallback, audit }
}

/// False for debug/trace events of the crates in [`CAPPED_CRATES`] and every event of [`SILENCED_CRATES`].
fn is_safe_to_emit(metadata: &Metadata<'_>) -> bool {
    let target = metadata.target();
    let of = |krate: &&str| target.strip_prefix(*krate).is_some_and(|rest| rest.is_empty() || rest.starts_with("::"));
    if SILENCED_CRATES.iter().any(of) {
        return false;
    }
    !CAPPED_CRATES.iter().any(of) || *metadata.level() <= Level::INFO
}
