//! SIGHUP: reloads what can change without a restart — the users file, the TLS certificate and key, the metrics
//! token file, and the log level (the config file's `log-level`, unless a flag or `COFFER_LOG_LEVEL` sets it) — and
//! logs one line saying what was reloaded and what was refused. Each part is checked before it replaces the old
//! one: a users file that does not load, a certificate that does not load or does not match its key, an empty or
//! unreadable token file, or an unparsable log level keeps what is in force. Every other setting needs a restart.

use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use crate::config::ServerArgs;
use crate::logging::LogFilter;
use crate::metrics::MetricsToken;
use crate::tls::ServerCertificate;
use crate::users::UserRegistry;

/// What a SIGHUP reloads.
pub struct Reloader {
    /// The flags and environment the server started with; the config file they name is read again.
    pub args: ServerArgs,
    pub users: UserRegistry,
    pub certificate: Option<Arc<ServerCertificate>>,
    pub metrics_token: Option<Arc<MetricsToken>>,
    pub log: LogFilter,
}

impl Reloader {
    /// Reloads on every SIGHUP from now on (the signal no longer ends the process).
    pub fn on_sighup(self) -> std::io::Result<()> {
        let mut hangups = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                self.reload();
            }
        });
        Ok(())
    }

    /// Reloads every part and logs one line.
    pub fn reload(&self) {
        let mut reloaded = Vec::new();
        let mut refused = Vec::new();
        if self.users.has_users_file() {
            match self.users.reload() {
                Ok(count) => reloaded.push(format!("users file ({count} users)")),
                Err(error) => refused.push(error.to_string()), // names the users file
            }
        }
        if let Some(certificate) = &self.certificate {
            match certificate.reload() {
                Ok(()) => reloaded.push("TLS certificate".to_owned()),
                Err(error) => refused.push(format!("TLS certificate: {error}")),
            }
        }
        if let Some(token) = &self.metrics_token {
            match token.reload() {
                Ok(()) => reloaded.push("metrics token".to_owned()),
                Err(error) => refused.push(error.to_string()), // names the token file, not the token
            }
        }
        let log_level = match self.args.current_log_level() {
            Ok(level) => self.log.set(level.as_deref()).map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match log_level {
            Ok(directives) => reloaded.push(format!("log level `{directives}`")),
            Err(error) => refused.push(format!("log level: {error}")),
        }
        let reloaded = reloaded.join(", ");
        if refused.is_empty() {
            info!(%reloaded, "SIGHUP: reloaded");
        } else {
            warn!(%reloaded, refused = %refused.join("; "), "SIGHUP: refused parts keep their previous values");
        }
    }
}
