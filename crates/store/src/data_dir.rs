//! Stored bytes under opaque names: the data engine of the SQL metadata engine, on a local directory.
//!
//! Every data file is `DATA/data/<xx>/data-<id>`, `<id>` 128 random bits in hex and `<xx>` its first two digits (256
//! subdirectories keep directories small). Names say nothing of buckets or keys; the metadata engine's records name
//! the files they own. A file is put in place (renamed from the temp directory, or written and fsynced) before the
//! record naming it commits, and removed after the record that stopped naming it committed: a crash in between
//! leaves an unreferenced file, which garbage collection removes once it is older than any write in flight.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::fsio::{create_private_dir_all, fsync_dir, remove_file_if_exists, unique_id};
use crate::names::is_data_file_name;
use crate::staging::StagedFile;

#[derive(Debug)]
pub(crate) struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub(crate) fn open(root: PathBuf) -> io::Result<DataDir> {
        create_private_dir_all(&root)?;
        Ok(DataDir { root })
    }

    fn path(&self, name: &str) -> io::Result<PathBuf> {
        if !is_data_file_name(name) || name.len() < "data-".len() + 2 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("invalid data file name {name:?}")));
        }
        Ok(self.root.join(&name["data-".len().."data-".len() + 2]).join(name))
    }

    /// Puts `data` in place under a new name, durably, and returns the name.
    pub(crate) fn persist(&self, data: StagedFile) -> io::Result<String> {
        let name = format!("data-{}", unique_id()?);
        let path = self.path(&name)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        if !dir.exists() {
            create_private_dir_all(&dir)?;
            fsync_dir(&self.root)?;
        }
        data.persist(&path)?;
        fsync_dir(&dir)?;
        Ok(name)
    }

    /// Gives the file at `from` (same filesystem) the name `name` here too, durably; a name already given is kept.
    pub(crate) fn link(&self, from: &Path, name: &str) -> io::Result<()> {
        let path = self.path(name)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        if !dir.exists() {
            create_private_dir_all(&dir)?;
            fsync_dir(&self.root)?;
        }
        match fs::hard_link(from, &path) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        fsync_dir(&dir)
    }

    pub(crate) fn open_file(&self, name: &str) -> io::Result<File> {
        File::open(self.path(name)?)
    }

    /// Removes the files no record names any more (after that change committed); failures are logged, and the
    /// files are left to garbage collection.
    pub(crate) fn remove(&self, names: &[String]) {
        for name in names {
            if let Err(e) = self.path(name).and_then(|path| remove_file_if_exists(&path)) {
                tracing::warn!(file = name, error = %e, "cannot remove an unreferenced data file; garbage collection will");
            }
        }
    }

    /// Every data file older than `min_age`, by name and path: the candidates for garbage collection (younger files
    /// may belong to writes in flight, whose records have not committed yet). A file in the wrong subdirectory is
    /// one too: no record can name it there.
    pub(crate) fn files_older_than(&self, min_age: Duration) -> io::Result<Vec<(String, PathBuf)>> {
        let now = SystemTime::now();
        let mut names = Vec::new();
        for dir in fs::read_dir(&self.root)? {
            let dir = dir?;
            if !dir.file_type()?.is_dir() {
                continue;
            }
            for entry in fs::read_dir(dir.path())? {
                let entry = entry?;
                let Ok(name) = entry.file_name().into_string() else { continue };
                let modified = entry.metadata()?.modified()?;
                if is_data_file_name(&name) && now.duration_since(modified).unwrap_or_default() >= min_age {
                    let path = entry.path();
                    let name =
                        if self.path(&name).is_ok_and(|expected| expected == path) { name } else { String::new() };
                    names.push((name, path));
                }
            }
        }
        Ok(names)
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }
}
