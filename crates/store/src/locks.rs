//! Striped in-process locks serializing commits to the same object or upload.
//!
//! A commit reads the current metadata, swaps in the new one and deletes the data files the old one referenced;
//! two interleaved commits to one key would delete each other's files. Locks are held only around that short
//! section (renames and fsyncs), never while data streams in, so they bound concurrency, not throughput.

use std::sync::{Mutex, MutexGuard};

const STRIPES: usize = 64;

/// A fixed set of mutexes; a name always maps to the same one. Unrelated names may share a stripe, which only
/// serializes them.
#[derive(Debug)]
pub(crate) struct LockStripes {
    stripes: Vec<Mutex<()>>,
}

impl LockStripes {
    pub(crate) fn new() -> Self {
        LockStripes { stripes: (0..STRIPES).map(|_| Mutex::new(())).collect() }
    }

    /// Locks the stripe of `name`, blocking the thread (callers run on the blocking pool).
    pub(crate) fn lock(&self, name: &str) -> MutexGuard<'_, ()> {
        // FNV-1a: stable and cheap; the names are already hashes or random ids.
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        // The mutex guards no data, so a panic while holding it leaves nothing inconsistent to poison.
        self.stripes[(hash % STRIPES as u64) as usize].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
