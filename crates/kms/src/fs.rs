//! Durable file writes for the KMS's own state (key files, the persisted configuration, the master key file).
//!
//! Every write goes to a private temp file in the target's directory, is fsynced, renamed over the target and the
//! directory is fsynced: a reader (or a crash) sees the old file or the new one, never a torn one.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::error::{KmsError, Result};

/// Marks temp files so a restart can sweep the ones a crash left behind.
const TEMP_MARKER: &str = ".tmp-";

/// Creates `dir` (and its parents) with mode 0700 if missing.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|err| KmsError::io(format!("creating directory {}", dir.display()), err))
}

/// Whether group or others have any access to `path` (keys and secrets must be owner-only).
pub(crate) fn is_shared(path: &Path) -> Result<bool> {
    let metadata = std::fs::metadata(path)
        .map_err(|err| KmsError::io(format!("reading permissions of {}", path.display()), err))?;
    Ok(metadata.permissions().mode() & 0o077 != 0)
}

/// Replaces `path` with `bytes` atomically and durably; the file is created with mode 0600.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().ok_or_else(|| KmsError::io(path.display().to_string(), no_parent()))?;
    create_private_dir(dir)?;
    let temp = temp_path(path);
    let written = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    })();
    written.map_err(|err| {
        // The temp file may or may not exist depending on where the write failed.
        let _ = std::fs::remove_file(&temp);
        KmsError::io(format!("writing {}", path.display()), err)
    })
}

/// Removes `path` and makes the removal durable; a missing file is not an error.
pub(crate) fn remove_durably(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(KmsError::io(format!("removing {}", path.display()), err)),
    }
    let dir = path.parent().ok_or_else(|| KmsError::io(path.display().to_string(), no_parent()))?;
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|err| KmsError::io(format!("syncing directory {}", dir.display()), err))
}

/// Deletes temp files left in `dir` by writes a crash interrupted.
pub(crate) fn sweep_temp_files(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|err| KmsError::io(format!("reading {}", dir.display()), err))?;
    for entry in entries {
        let entry = entry.map_err(|err| KmsError::io(format!("reading {}", dir.display()), err))?;
        let name = entry.file_name();
        if name.to_str().is_some_and(|name| name.starts_with('.') && name.contains(TEMP_MARKER)) {
            remove_durably(&entry.path())?;
        }
    }
    Ok(())
}

/// Checks that `dir` can be listed and written by creating and removing a probe file in it.
pub(crate) fn probe_writable(dir: &Path) -> Result<()> {
    std::fs::read_dir(dir).map_err(|err| KmsError::io(format!("directory {} is not readable", dir.display()), err))?;
    let probe = temp_path(&dir.join("probe"));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe)
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|err| KmsError::io(format!("directory {} is not writable", dir.display()), err))
}

/// `dir/.name.tmp-<random>`: hidden, unique, and never mistaken for a key file.
fn temp_path(path: &Path) -> PathBuf {
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).expect("the OS random number generator failed");
    let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}{TEMP_MARKER}{}", hex::encode(suffix)))
}

fn no_parent() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no parent directory")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_replace_the_file_with_private_modes_and_leave_no_temp_files() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        let path = dir.join("state.json");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        assert!(!is_shared(&path).unwrap());
    }

    #[test]
    fn leftover_temp_files_are_swept_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let keep = dir.path().join("k.key");
        std::fs::write(&keep, b"x").unwrap();
        std::fs::write(temp_path(&keep), b"partial").unwrap();
        sweep_temp_files(dir.path()).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["k.key"]);
    }

    #[test]
    fn removal_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone");
        std::fs::write(&path, b"x").unwrap();
        remove_durably(&path).unwrap();
        remove_durably(&path).unwrap();
        assert!(!path.exists());
    }
}
