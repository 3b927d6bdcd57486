//! Durable filesystem primitives: private files and directories, unique names, atomic JSON replacement, directory
//! fsync, and temp paths that delete themselves unless they were moved into place.
//!
//! Everything here is blocking `std::fs`; the async API runs it on tokio's blocking pool.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Object data can be plaintext: keep it private to the server's user.
const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// A random 128-bit name component (hex), used for temp files, data files and upload ids.
pub(crate) fn unique_id() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(hex::encode(bytes))
}

/// Options that create a new private file for writing, failing if the path exists.
pub(crate) fn new_private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true).mode(FILE_MODE);
    options
}

/// Creates a new private file; fails if `path` exists.
pub(crate) fn create_private_file(path: &Path) -> io::Result<File> {
    new_private_file().open(path)
}

/// Creates one private directory level. `Ok(false)` if it already existed.
pub(crate) fn create_private_dir(path: &Path) -> io::Result<bool> {
    match fs::DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates a private directory and any missing parents.
pub(crate) fn create_private_dir_all(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new().mode(DIR_MODE).recursive(true).create(path)
}

/// Makes the entries of `dir` (creations, renames, removals) durable.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes a file, treating "already gone" as success.
pub(crate) fn remove_file_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Reads a whole file; `Ok(None)` if it does not exist.
pub(crate) fn read_file(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Atomically replaces `dest` with `value` as JSON: temp file in `tmp_dir`, fsync, rename, fsync of `dest`'s
/// directory. Readers see the old or the new file, never a mix; after return the new file survives a crash.
///
/// `durable_first` are directories whose new entries (files renamed or linked in, subdirectories) must survive a
/// crash before `dest` may change: they are fsynced after the temp file and before the rename. Fsyncing them
/// there rather than right after each change lets one journal commit (ext4, xfs) cover the temp file and all of
/// them, where fsyncs in between would each force a commit of their own.
pub(crate) fn write_json_atomic<T: Serialize>(
    tmp_dir: &Path,
    dest: &Path,
    value: &T,
    durable_first: &[&Path],
) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    let temp = TempPath::new(tmp_dir, "json")?;
    let mut file = create_private_file(temp.path())?;
    file.write_all(&json)?;
    file.sync_all()?;
    drop(file);
    for dir in durable_first {
        fsync_dir(dir)?;
    }
    temp.persist(dest)?;
    fsync_dir(parent(dest))
}

/// The directory containing `path` (store paths always have one).
pub(crate) fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("/"))
}

/// A path in the temp directory that is deleted on drop unless [`TempPath::persist`] moved it into place.
#[derive(Debug)]
pub(crate) struct TempPath {
    path: Option<PathBuf>,
}

impl TempPath {
    /// A fresh unique path `tmp_dir/<kind>-<random>` (nothing is created).
    pub(crate) fn new(tmp_dir: &Path, kind: &str) -> io::Result<Self> {
        Ok(TempPath { path: Some(tmp_dir.join(format!("{kind}-{}", unique_id()?))) })
    }

    pub(crate) fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// Renames the temp file or directory to `dest` (same filesystem); on error it stays armed for deletion.
    pub(crate) fn persist(mut self, dest: &Path) -> io::Result<()> {
        fs::rename(self.path(), dest)?;
        self.path = None;
        Ok(())
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            remove_any(&path);
        }
    }
}

/// Best-effort removal of a file or directory tree (cleanup paths, where a failure must not mask the real result).
pub(crate) fn remove_any(path: &Path) {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "could not remove store temp path");
        }
    }
}
