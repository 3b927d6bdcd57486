//! Process resources: every connection holds a file descriptor, and the usual soft limit of 1,024 open files would
//! let a thousand idle connections starve everyone else, so the soft limit is raised to the hard limit at start.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use tracing::{info, warn};

/// Descriptors kept for everything but connections: data files, the KMS, logs.
const RESERVED_DESCRIPTORS: u64 = 256;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, and warns when the result cannot hold `max_connections`.
pub fn raise_open_file_limit(max_connections: usize) {
    let limit = getrlimit(Resource::Nofile);
    // `None` is unlimited: nothing to raise, nothing to warn about.
    let Some(soft) = limit.current else { return };
    let raised = match limit.maximum {
        Some(hard) if hard > soft => {
            match setrlimit(Resource::Nofile, Rlimit { current: Some(hard), maximum: Some(hard) }) {
                Ok(()) => {
                    info!(from = soft, to = hard, "raised the open-file limit");
                    hard
                }
                Err(error) => {
                    warn!(%error, soft, hard, "cannot raise the open-file limit");
                    soft
                }
            }
        }
        _ => soft,
    };
    let needed = u64::try_from(max_connections).unwrap_or(u64::MAX).saturating_add(RESERVED_DESCRIPTORS);
    if raised < needed {
        warn!(
            limit = raised,
            max_connections,
            "the open-file limit is below --max-connections plus {RESERVED_DESCRIPTORS}: connections beyond it \
             cannot be accepted; raise the hard limit (LimitNOFILE=, ulimit -Hn) or lower --max-connections"
        );
    }
}
