//! Where the SQL metadata engine keeps stored bytes: in the data directory ([`DataDir`], the default) or in a bucket
//! of an S3-compatible cluster ([`S3Data`]). Both keep files under the same opaque names (`data-<id>`), put in place
//! before the record naming them commits.
//!
//! They differ in what happens to a file no record names any more once that change committed: a local file is
//! removed at once (readers hold it open), a remote one is only released, and deleted after a grace period by
//! garbage collection (see `s3_data.rs`). A file whose record never committed is removed at once by both.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::data_dir::DataDir;
use crate::error::{Result, StoreError};
use crate::meta::PartMeta;
use crate::reader::StoredPart;
use crate::s3_data::{DataLocation, S3Data};
use crate::staging::StagedFile;

#[derive(Debug)]
pub(crate) enum DataEngine {
    Directory(Arc<DataDir>),
    S3(S3Data),
}

impl DataEngine {
    /// Opens the engine of `location`; the directory engine's files are under `data_root`.
    pub(crate) async fn open(data_root: &Path, location: &DataLocation) -> Result<DataEngine> {
        Ok(match location {
            DataLocation::Directory => DataEngine::Directory(Arc::new(DataDir::open(data_root.to_path_buf())?)),
            DataLocation::S3(s3) => DataEngine::S3(S3Data::open(s3).await?),
        })
    }

    /// Puts `data` in place under a new name, durably, and returns the name.
    pub(crate) async fn persist(&self, data: StagedFile) -> Result<String> {
        match self {
            DataEngine::Directory(dir) => {
                let dir = dir.clone();
                blocking(move || dir.persist(data)).await
            }
            DataEngine::S3(s3) => Ok(s3.persist(data).await?),
        }
    }

    /// The stored parts named `names`, for reading `parts` (of the same order); `checksums` are the parts' chunk
    /// checksums, when their records keep them. A missing local file is a `NotFound` error; remote files are not
    /// looked at before they are read.
    pub(crate) async fn open_parts(
        &self,
        names: Vec<String>,
        parts: &[PartMeta],
        checksums: Vec<Option<Arc<[u32]>>>,
    ) -> Result<Vec<StoredPart>> {
        match self {
            DataEngine::Directory(dir) => {
                let dir = dir.clone();
                let files: Vec<_> = blocking(move || names.iter().map(|name| dir.open_file(name)).collect()).await?;
                Ok(std::iter::zip(files, checksums)
                    .map(|(file, checksums)| StoredPart::File { file: Arc::new(file), checksums })
                    .collect())
            }
            DataEngine::S3(s3) => std::iter::zip(std::iter::zip(names, parts), checksums)
                .map(|((name, part), checksums)| {
                    let checksums = checksums.ok_or(StoreError::InvalidMeta("a remote data file has no checksums"))?;
                    Ok(StoredPart::Remote { file: s3.file(&name), len: part.stored_size, checksums })
                })
                .collect(),
        }
    }

    /// Removes files whose records never committed: nothing can be reading them.
    pub(crate) async fn discard(&self, names: &[String]) {
        match self {
            DataEngine::Directory(dir) => dir.remove(names),
            DataEngine::S3(s3) => s3.discard(names).await,
        }
    }

    /// Called once the change that stopped naming `names` committed: local files are removed now; remote files
    /// were recorded as released in that change and are left to garbage collection.
    pub(crate) fn unreferenced(&self, names: &[String]) {
        match self {
            DataEngine::Directory(dir) => dir.remove(names),
            DataEngine::S3(_) => {}
        }
    }

    /// How long released files stay, for an engine that defers their deletion.
    pub(crate) fn release_grace(&self) -> Option<Duration> {
        match self {
            DataEngine::Directory(_) => None,
            DataEngine::S3(s3) => Some(s3.release_grace()),
        }
    }
}

/// Runs blocking file work on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(op: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(op)
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(format!("store task failed: {e}"))))?
        .map_err(StoreError::Io)
}
