//! Reading objects: an [`ObjectReader`] pins one committed version by holding its data files open, and streams
//! byte ranges of a part in bounded chunks.
//!
//! Because the files are opened before the reader is returned, an overwrite or delete that commits afterwards only
//! unlinks names; the open handles keep reading the version the reader saw.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::task::JoinHandle;

use crate::meta::ObjectMeta;

/// Largest chunk a [`PartStream`] yields; bounds memory per read.
pub const READ_CHUNK: usize = 256 * 1024;

/// One committed version of an object, with its data files open. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ObjectReader {
    meta: ObjectMeta,
    files: Arc<[Arc<File>]>,
}

impl ObjectReader {
    pub(crate) fn new(meta: ObjectMeta, files: Vec<Arc<File>>) -> Self {
        ObjectReader { meta, files: files.into() }
    }

    /// The metadata of the pinned version.
    pub fn meta(&self) -> &ObjectMeta {
        &self.meta
    }

    /// Streams stored bytes `[offset, offset + len)` of `meta().parts[part_index]`. A range outside the part yields
    /// one `InvalidInput` error; a data file shorter than recorded yields `UnexpectedEof`.
    pub fn read_part(&self, part_index: usize, offset: u64, len: u64) -> PartStream {
        let end = offset.checked_add(len);
        match (self.files.get(part_index), self.meta.parts.get(part_index), end) {
            (Some(file), Some(part), Some(end)) if end <= part.stored_size => {
                PartStream { file: Some(file.clone()), pos: offset, end, pending: None }
            }
            _ => PartStream::failed(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("range {offset}+{len} of part index {part_index} is outside the stored object"),
            )),
        }
    }
}

/// The stream returned by [`ObjectReader::read_part`]: `Bytes` chunks of at most [`READ_CHUNK`], read with
/// positional reads on the blocking pool (one chunk in flight at a time).
#[derive(Debug)]
pub struct PartStream {
    /// `None` once finished or failed.
    file: Option<Arc<File>>,
    pos: u64,
    end: u64,
    pending: Option<Pending>,
}

#[derive(Debug)]
enum Pending {
    Read(JoinHandle<io::Result<Bytes>>),
    Failed(io::Error),
}

impl PartStream {
    fn failed(error: io::Error) -> Self {
        PartStream { file: None, pos: 0, end: 0, pending: Some(Pending::Failed(error)) }
    }

    fn start_read(&mut self, file: Arc<File>) -> JoinHandle<io::Result<Bytes>> {
        let pos = self.pos;
        let len = (self.end - pos).min(READ_CHUNK as u64) as usize;
        tokio::task::spawn_blocking(move || {
            let mut buf = BytesMut::zeroed(len);
            file.read_exact_at(&mut buf, pos)?;
            Ok(buf.freeze())
        })
    }
}

impl Stream for PartStream {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let handle = match this.pending.take() {
            Some(Pending::Failed(error)) => {
                this.file = None;
                return Poll::Ready(Some(Err(error)));
            }
            Some(Pending::Read(handle)) => handle,
            None => match &this.file {
                Some(file) if this.pos < this.end => this.start_read(file.clone()),
                _ => {
                    this.file = None;
                    return Poll::Ready(None);
                }
            },
        };
        let mut handle = handle;
        match Pin::new(&mut handle).poll(cx) {
            Poll::Pending => {
                this.pending = Some(Pending::Read(handle));
                Poll::Pending
            }
            Poll::Ready(joined) => {
                let result = joined.map_err(io::Error::other).and_then(|read| read);
                match &result {
                    Ok(chunk) => this.pos += chunk.len() as u64,
                    Err(_) => this.file = None,
                }
                Poll::Ready(Some(result))
            }
        }
    }
}
