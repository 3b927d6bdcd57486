//! Record MACs: every record the store writes carries an HMAC-SHA256 under a key of the data directory, over the
//! record's place (its path under `buckets/`) and its contents, so a record that was edited, damaged, or copied to
//! another object, upload, part or bucket fails its check when read.
//!
//! The key is 32 random bytes in `.coffer/record-mac.key` (0600), created when a data directory is first opened by
//! a version that signs records. Records written before (format versions 1 to 3) carry no MAC: a data directory
//! that already held buckets when its key was created is marked by `.coffer/unsigned-records-accepted`, and only
//! then are unsigned records read. See docs/operations.md, "Integrity".

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use aws_lc_rs::{constant_time, hmac};
use zeroize::Zeroizing;

use crate::fsio::{create_private_file, fsync_dir, parent, read_file, TempPath};

/// The key file, in `.coffer/`.
const KEY_FILE: &str = "record-mac.key";
/// Present when records without a MAC are read: the key was created in a data directory that already had buckets.
const UNSIGNED_ACCEPTED_FILE: &str = "unsigned-records-accepted";
const KEY_LEN: usize = 32;
/// Separates these MACs from any other use of the key.
const DOMAIN: &[u8] = b"coffer record mac v1\0";

/// Signs and checks records. The raw key bytes are zeroized once the HMAC key is set up; aws-lc cleanses its own
/// copy when the key is dropped.
pub(crate) struct RecordMac {
    key: hmac::Key,
    accepts_unsigned: bool,
}

// The key never reaches a debug print.
impl std::fmt::Debug for RecordMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordMac").field("accepts_unsigned", &self.accepts_unsigned).finish_non_exhaustive()
    }
}

impl RecordMac {
    /// Loads the key from `coffer_dir`, creating it (and, if `buckets_dir` already holds buckets, the marker that
    /// accepts unsigned records) when there is none. `tmp_dir` stages the new key file.
    pub(crate) fn open(coffer_dir: &Path, buckets_dir: &Path, tmp_dir: &Path) -> io::Result<RecordMac> {
        let key_path = coffer_dir.join(KEY_FILE);
        let marker = coffer_dir.join(UNSIGNED_ACCEPTED_FILE);
        let bytes = match read_file(&key_path)?.map(Zeroizing::new) {
            Some(bytes) => bytes,
            None => {
                if fs::read_dir(buckets_dir)?.next().is_some() {
                    // Before the key: a crash in between must not leave older records unreadable.
                    create_marker(&marker)?;
                }
                create_key(&key_path, tmp_dir)?
            }
        };
        if bytes.len() != KEY_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: a record MAC key is {KEY_LEN} bytes, found {}", key_path.display(), bytes.len()),
            ));
        }
        let accepts_unsigned = marker.exists();
        if accepts_unsigned {
            tracing::warn!(
                marker = %marker.display(),
                "records written before record MACs (format versions 1-3) are accepted without a MAC check"
            );
        }
        Ok(RecordMac { key: hmac::Key::new(hmac::HMAC_SHA256, &bytes), accepts_unsigned })
    }

    /// Signs and checks with the cluster key of a cluster's nodes instead of a key of this data directory (see
    /// `cluster.rs`); unsigned records are read as [`RecordMac::open`] decides, by this directory's marker.
    pub(crate) fn from_cluster(key: &crate::cluster::ClusterKey, coffer_dir: &Path) -> RecordMac {
        let accepts_unsigned = coffer_dir.join(UNSIGNED_ACCEPTED_FILE).exists();
        RecordMac { key: hmac::Key::new(hmac::HMAC_SHA256, key.record_mac_key()), accepts_unsigned }
    }

    /// True if records without a MAC (format versions 1 to 3) may be read.
    pub(crate) fn accepts_unsigned(&self) -> bool {
        self.accepts_unsigned
    }

    /// The MAC of `payload` at `place`, in lowercase hex.
    pub(crate) fn sign(&self, place: &str, payload: &[u8]) -> String {
        hex::encode(self.tag(place, payload))
    }

    /// True if `mac` is the MAC of `payload` at `place` exactly as [`RecordMac::sign`] writes it (lowercase hex);
    /// compared in constant time.
    pub(crate) fn verify(&self, place: &str, payload: &[u8], mac: &str) -> bool {
        constant_time::verify_slices_are_equal(self.sign(place, payload).as_bytes(), mac.as_bytes()).is_ok()
    }

    fn tag(&self, place: &str, payload: &[u8]) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(DOMAIN);
        context.update(place.as_bytes());
        context.update(&[0]);
        context.update(payload);
        context.sign()
    }
}

/// Writes a new random key to `path` (0600) through a temp file, durably, and returns it.
fn create_key(path: &Path, tmp_dir: &Path) -> io::Result<Zeroizing<Vec<u8>>> {
    let mut key = Zeroizing::new(vec![0u8; KEY_LEN]);
    getrandom::fill(&mut key[..]).map_err(|e| io::Error::other(e.to_string()))?;
    let temp = TempPath::new(tmp_dir, "key")?;
    let mut file = create_private_file(temp.path())?;
    file.write_all(&key)?;
    file.sync_all()?;
    drop(file);
    temp.persist(path)?;
    fsync_dir(parent(path))?;
    tracing::info!(path = %path.display(), "created the record MAC key");
    Ok(key)
}

fn create_marker(path: &Path) -> io::Result<()> {
    let mut file = match create_private_file(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        other => other?,
    };
    file.write_all(b"records without a MAC, written before record MACs, are read\n")?;
    file.sync_all()?;
    fsync_dir(parent(path))
}
