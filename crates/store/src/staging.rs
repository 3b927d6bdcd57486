//! Staged writes: incoming object or part data streamed into a private temp file before it is committed.
//!
//! A [`StagedWrite`] becomes a [`StagedFile`] once flushed and fsynced; `put_object` / `put_part` then rename it into
//! place. Dropping either one without committing deletes the temp file, so a client that disconnects mid-upload, or
//! a request rejected after its body was read (bad digest, failed condition), leaves nothing behind.

use std::io;
use std::path::Path;

use tokio::io::{AsyncWriteExt, BufWriter};

use crate::error::Result;
use crate::fsio::{create_private_file, TempPath};

/// Bytes are written to disk in blocks of this size.
const WRITE_BUFFER: usize = 256 * 1024;

/// Data being received into a temp file. Dropping it removes the file.
#[derive(Debug)]
pub struct StagedWrite {
    file: BufWriter<tokio::fs::File>,
    len: u64,
    temp: TempPath,
}

impl StagedWrite {
    pub(crate) fn create(tmp_dir: &Path) -> io::Result<Self> {
        let temp = TempPath::new(tmp_dir, "stage")?;
        let file = create_private_file(temp.path())?;
        Ok(StagedWrite { file: BufWriter::with_capacity(WRITE_BUFFER, tokio::fs::File::from_std(file)), len: 0, temp })
    }

    /// Appends `data` (buffered).
    pub async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data).await?;
        self.len += data.len() as u64;
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

    /// Flushes and fsyncs the data, ready to be committed.
    pub async fn finish(self) -> Result<StagedFile> {
        let StagedWrite { mut file, len, temp } = self;
        file.flush().await?;
        file.get_mut().sync_all().await?;
        Ok(StagedFile { temp, len })
    }
}

/// Durable staged data waiting to be committed by `put_object` or `put_part`. Dropping it removes the file.
#[derive(Debug)]
pub struct StagedFile {
    temp: TempPath,
    len: u64,
}

impl StagedFile {
    /// Bytes on disk.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty body.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Moves the data to `dest` (same filesystem, not yet fsynced in its new directory).
    pub(crate) fn persist(self, dest: &Path) -> io::Result<()> {
        self.temp.persist(dest)
    }
}
