//! Logging setup: `tracing` to stderr, filtered by `RUST_LOG` (per-crate directives, default `info`).
//!
//! The protocol crates underneath (s3s, hyper, h2) print request headers, computed signatures and chunk signatures
//! in their debug/trace events, so those crates are capped at `info` whatever `RUST_LOG` says. s3s is off by
//! default: it reports every client error (a 404 included) at `error` level, and Coffer's own request line already
//! carries the status. vaultrs is silenced: it reports every Vault error answer at `error` level, including the
//! 404s Coffer expects when it probes for a key, and Coffer logs the failures it acts on in its own words.

use std::io::IsTerminal;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{EnvFilter, FilterFn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Directives used when `RUST_LOG` is unset or empty.
pub const DEFAULT_FILTER: &str = "info,s3s=off";

/// Crates whose verbose events may contain signatures or headers.
const CAPPED_CRATES: [&str; 3] = ["s3s", "hyper", "h2"];

/// Crates never heard from, whatever `RUST_LOG` says: their events repeat Vault's answers (which may quote request
/// paths and, at trace level, bodies) and are not what an operator can act on.
const SILENCED_CRATES: [&str; 2] = ["vaultrs", "rustify"];

/// Installs the global subscriber. Call once, before anything logs.
pub fn init() {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::new(directives),
        _ => EnvFilter::new(DEFAULT_FILTER),
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(filter);
    tracing_subscriber::registry().with(fmt.with_filter(FilterFn::new(is_safe_to_emit))).init();
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
