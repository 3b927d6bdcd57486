//! Staged writes: incoming object or part data held back until it is committed.
//!
//! A [`StagedWrite`] keeps the first [`WRITE_BUFFER`] bytes in memory and only creates a private temp file once
//! more arrive; finishing it flushes and fsyncs that file. Small bodies never touch the disk before the commit:
//! `put_object` keeps up to [`INLINE_MAX`] bytes in the object's record, and `put_part` writes the buffer straight
//! to its data file. Dropping a [`StagedWrite`] or [`StagedFile`] without committing deletes any temp file, so a
//! client that disconnects mid-upload, or a request rejected after its body was read (bad digest, failed
//! condition), leaves nothing behind. The checksums of the data are computed as it arrives (see
//! `chunk_checksums.rs`).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use crate::chunk_checksums::{ChunkChecksums, ChunkSummer};
use crate::error::Result;
use crate::fsio::{create_private_file, new_private_file, TempPath};

/// Bytes are written to disk in blocks of this size; a body up to this size stays in memory until committed.
const WRITE_BUFFER: usize = 256 * 1024;

/// Stored bytes of a single-part object up to this size are kept in its record (`meta.json`) instead of a data
/// file: one file, one fsync and one rename fewer per small PUT, and no file to open per GET.
pub(crate) const INLINE_MAX: usize = 64 * 1024;

/// Data being received. Dropping it removes any temp file.
pub struct StagedWrite {
    tmp_dir: PathBuf,
    /// Bytes not yet written to `file`.
    pending: Vec<u8>,
    /// Created once more than [`WRITE_BUFFER`] bytes arrived.
    file: Option<(tokio::fs::File, TempPath)>,
    len: u64,
    checksums: ChunkSummer,
}

impl StagedWrite {
    pub(crate) fn new(tmp_dir: PathBuf) -> Self {
        StagedWrite { tmp_dir, pending: Vec::new(), file: None, len: 0, checksums: ChunkSummer::new() }
    }

    /// Appends `data` (buffered).
    pub async fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        self.len += data.len() as u64;
        self.checksums.update(data);
        while !data.is_empty() {
            let taken = (WRITE_BUFFER - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..taken]);
            data = &data[taken..];
            if self.pending.len() == WRITE_BUFFER && !data.is_empty() {
                self.write_pending().await?;
            }
        }
        Ok(())
    }

    /// Writes the pending bytes to the temp file, creating it first if needed.
    async fn write_pending(&mut self) -> io::Result<()> {
        let file = match &mut self.file {
            Some((file, _)) => file,
            None => {
                let temp = TempPath::new(&self.tmp_dir, "stage")?;
                let file = tokio::fs::OpenOptions::from(new_private_file()).open(temp.path()).await?;
                &mut self.file.insert((file, temp)).0
            }
        };
        file.write_all(&self.pending).await?;
        self.pending.clear();
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True if nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Ends the data: a body that fit the buffer stays in memory; a longer one is flushed and fsynced.
    pub async fn finish(self) -> Result<StagedFile> {
        let StagedWrite { pending, file, len, checksums, .. } = self;
        let data = match file {
            None => Staged::InMemory(pending),
            Some((mut file, temp)) => {
                file.write_all(&pending).await?;
                file.flush().await?;
                file.sync_all().await?;
                Staged::OnDisk(temp)
            }
        };
        Ok(StagedFile { data, len, checksums: checksums.finish() })
    }
}

/// Complete staged data waiting to be committed by `put_object` or `put_part`. Dropping it removes any temp file.
pub struct StagedFile {
    data: Staged,
    len: u64,
    checksums: ChunkChecksums,
}

/// Where staged bytes are.
pub(crate) enum Staged {
    InMemory(Vec<u8>),
    /// Fsynced in the temp directory.
    OnDisk(TempPath),
}

// Object bytes (possibly plaintext) never reach a debug print: only sizes and where the data is.
impl std::fmt::Debug for StagedWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedWrite").field("len", &self.len).field("on_disk", &self.file.is_some()).finish()
    }
}

impl std::fmt::Debug for StagedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on_disk = matches!(self.data, Staged::OnDisk(_));
        f.debug_struct("StagedFile").field("len", &self.len).field("on_disk", &on_disk).finish()
    }
}

impl StagedFile {
    /// Bytes staged.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty body.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes, if they are few enough to be kept in an object's record.
    pub(crate) fn inline(&self) -> Option<&[u8]> {
        match &self.data {
            Staged::InMemory(bytes) if bytes.len() <= INLINE_MAX => Some(bytes),
            _ => None,
        }
    }

    /// The checksums of the data, for the record that will name its file.
    pub(crate) fn checksums(&self) -> ChunkChecksums {
        self.checksums.clone()
    }

    /// The staged bytes, for a copy that is not a rename (a remote data engine); a temp file is removed when the
    /// returned value is dropped.
    pub(crate) fn into_staged(self) -> Staged {
        self.data
    }

    /// Puts the data at `dest` (same filesystem): the temp file is renamed, bytes in memory are written and
    /// fsynced. The new name is durable once `dest`'s directory is fsynced.
    pub(crate) fn persist(self, dest: &Path) -> io::Result<()> {
        match self.data {
            Staged::OnDisk(temp) => temp.persist(dest),
            Staged::InMemory(bytes) => {
                let mut file = create_private_file(dest)?;
                file.write_all(&bytes)?;
                file.sync_all()
            }
        }
    }
}
