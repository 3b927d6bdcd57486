//! Reading objects: an [`ObjectReader`] pins one committed version by holding its data files open (or its
//! inline bytes, or the names of its remote data files), and streams byte ranges of a part in bounded chunks.
//!
//! Because the files are opened before the reader is returned, an overwrite or delete that commits afterwards only
//! unlinks names; the open handles keep reading the version the reader saw. Remote data files (`s3_data.rs`) stay
//! readable for the release grace period after an overwrite or delete.
//!
//! Chunks are read with positional reads on the blocking pool, ahead of the consumer: while the caller sends chunk
//! `n`, chunk `n + 1` is being read. A caller that transforms every chunk (decryption) does it in the same blocking
//! call ([`ObjectReader::read_part_mapped`]), so that work overlaps the sending too. Inline bytes (at most 64 KiB)
//! need no read: they are mapped on the spot, without a trip to the blocking pool. A remote range is one ranged GET
//! whose body a task cuts into chunks, maps on the blocking pool and hands over through a channel of one chunk:
//! again one chunk ahead of the consumer, and memory bounded by the chunk size.
//!
//! [`ObjectReader::read_part`] checks every chunk of a data file against the file's recorded checksums before
//! yielding any of its bytes (see `chunk_checksums.rs`), reading whole checksum chunks around the range asked for.
//! [`ObjectReader::read_part_mapped`] does not: its callers authenticate what they read themselves (decryption).

use std::fs::File;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::future::Either;
use futures::Stream;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};

use crate::chunk_checksums::chunk_checksum;
use crate::meta::ObjectMeta;
use crate::s3_data::RemoteFile;

/// Largest chunk [`ObjectReader::read_part`] yields; bounds memory per read.
pub const READ_CHUNK: usize = 1024 * 1024;

/// One committed version of an object, with its stored parts at hand. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ObjectReader {
    meta: ObjectMeta,
    parts: Arc<[StoredPart]>,
}

/// Where the stored bytes of one part are.
#[derive(Clone)]
pub(crate) enum StoredPart {
    /// A data file, with the CRC32C of each [`READ_CHUNK`] if its record has them (it was written by a version
    /// that keeps them).
    File { file: Arc<File>, checksums: Option<Arc<[u32]>> },
    /// A data file in a remote bucket, of the committed length, with the CRC32C of each [`READ_CHUNK`].
    Remote { file: RemoteFile, len: u64, checksums: Arc<[u32]> },
    /// Bytes kept in the signed record itself.
    Inline(Bytes),
}

// Object bytes (possibly plaintext) never reach a debug print.
impl std::fmt::Debug for StoredPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoredPart::File { file, checksums } => f
                .debug_struct("File")
                .field("file", file)
                .field("chunks", &checksums.as_ref().map(|sums| sums.len()))
                .finish(),
            StoredPart::Remote { file, len, .. } => {
                f.debug_struct("Remote").field("file", file).field("len", len).finish()
            }
            StoredPart::Inline(bytes) => write!(f, "Inline({} bytes)", bytes.len()),
        }
    }
}

impl StoredPart {
    pub(crate) fn len(&self) -> io::Result<u64> {
        match self {
            StoredPart::File { file, .. } => Ok(file.metadata()?.len()),
            StoredPart::Remote { len, .. } => Ok(*len),
            StoredPart::Inline(bytes) => Ok(bytes.len() as u64),
        }
    }
}

impl ObjectReader {
    pub(crate) fn new(meta: ObjectMeta, parts: Vec<StoredPart>) -> Self {
        ObjectReader { meta, parts: parts.into() }
    }

    /// The metadata of the pinned version.
    pub fn meta(&self) -> &ObjectMeta {
        &self.meta
    }

    /// Where the stored bytes of `meta().parts[index]` are.
    pub(crate) fn stored_part(&self, index: usize) -> Option<&StoredPart> {
        self.parts.get(index)
    }

    /// Streams stored bytes `[offset, offset + len)` of `meta().parts[part_index]` in chunks of at most
    /// [`READ_CHUNK`] bytes, each checked against the data file's checksums before it is yielded. A range outside
    /// the part yields one `InvalidInput` error; a data file shorter than recorded yields `UnexpectedEof`; a chunk
    /// that fails its checksum yields `InvalidData`, and nothing of it is yielded.
    pub fn read_part(&self, part_index: usize, offset: u64, len: u64) -> PartStream<Bytes> {
        let checksums = match self.parts.get(part_index) {
            Some(StoredPart::File { checksums: Some(checksums), .. } | StoredPart::Remote { checksums, .. }) => {
                checksums.clone()
            }
            _ => return self.read_part_mapped(part_index, offset, len, READ_CHUNK, |_, chunk| Ok(chunk.freeze())),
        };
        let (stored_size, end) = match (self.meta.parts.get(part_index), offset.checked_add(len)) {
            (Some(part), Some(end)) if end <= part.stored_size && len > 0 => (part.stored_size, end),
            // Out of range (the error) or empty: nothing to check.
            _ => return self.read_part_mapped(part_index, offset, len, READ_CHUNK, |_, chunk| Ok(chunk.freeze())),
        };
        // Whole checksum chunks covering the range, each cut down to its part of the range once checked.
        let chunk = READ_CHUNK as u64;
        let first = offset / chunk * chunk;
        let last = end.div_ceil(chunk).saturating_mul(chunk).min(stored_size);
        let number = self.meta.parts[part_index].number;
        self.read_part_mapped(part_index, first, last - first, READ_CHUNK, move |at, data| {
            let start = first + at;
            if checksums.get((start / chunk) as usize) != Some(&chunk_checksum(&data)) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("stored data of part {number} fails its checksum in the chunk at byte {start}"),
                ));
            }
            let from = offset.saturating_sub(start) as usize;
            let to = (end - start).min(data.len() as u64) as usize;
            Ok(data.freeze().slice(from..to))
        })
    }

    /// As [`ObjectReader::read_part`], in chunks of `chunk_len` bytes (the last one shorter), each handed to `map`
    /// on the blocking pool right after it is read, with its offset from `offset`; the stream yields what `map`
    /// returns, in order. An error from `map` ends the stream.
    pub fn read_part_mapped<T, F>(
        &self,
        part_index: usize,
        offset: u64,
        len: u64,
        chunk_len: usize,
        map: F,
    ) -> PartStream<T>
    where
        T: Send + 'static,
        F: Fn(u64, BytesMut) -> io::Result<T> + Send + Sync + 'static,
    {
        let end = offset.checked_add(len);
        let chunk_len = chunk_len.max(1) as u64;
        match (self.parts.get(part_index), self.meta.parts.get(part_index), end) {
            (Some(stored), Some(part), Some(end)) if end <= part.stored_size => PartStream {
                source: Some((stored.clone(), Arc::new(map))),
                start: offset,
                pos: offset,
                end,
                chunk_len,
                next: None,
                remote: None,
                failed: None,
            },
            _ => PartStream::failed(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("range {offset}+{len} of part index {part_index} is outside the stored object"),
            )),
        }
    }
}

type ChunkMap<T> = Arc<dyn Fn(u64, BytesMut) -> io::Result<T> + Send + Sync>;

/// A chunk being read on the blocking pool, or an inline chunk already mapped.
type NextChunk<T> = Either<JoinHandle<io::Result<T>>, std::future::Ready<Result<io::Result<T>, JoinError>>>;

/// The stream returned by [`ObjectReader::read_part`] and [`ObjectReader::read_part_mapped`].
///
/// It keeps one read in flight: measured with 256 KiB to 1 MiB chunks and one or two reads in flight
/// (docs/benchmarks.md), one 1 MiB read ahead was fastest for plaintext and decrypted reads alike; more in flight
/// only added memory and cache misses.
pub struct PartStream<T> {
    /// The part's stored bytes and the map; `None` once finished or failed.
    source: Option<(StoredPart, ChunkMap<T>)>,
    /// Offset of the range in the part's stored data.
    start: u64,
    /// Start of the next chunk to read.
    pos: u64,
    end: u64,
    chunk_len: u64,
    /// The next chunk.
    next: Option<NextChunk<T>>,
    /// The mapped chunks of a remote part's range, from the task reading it.
    remote: Option<mpsc::Receiver<io::Result<T>>>,
    /// An error to yield before anything else (a range outside the part).
    failed: Option<io::Error>,
}

impl<T> std::fmt::Debug for PartStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartStream").field("pos", &self.pos).field("end", &self.end).finish_non_exhaustive()
    }
}

impl<T: Send + 'static> PartStream<T> {
    fn failed(error: io::Error) -> Self {
        PartStream {
            source: None,
            start: 0,
            pos: 0,
            end: 0,
            chunk_len: 1,
            next: None,
            remote: None,
            failed: Some(error),
        }
    }

    /// Starts reading the next chunk, unless a read is in flight or the range is covered.
    fn read_ahead(&mut self) {
        let Some((stored, map)) = &self.source else {
            return;
        };
        if self.next.is_some() || self.pos >= self.end {
            return;
        }
        if let StoredPart::Remote { file, len, .. } = stored {
            // The whole range at once: the reading task keeps one chunk ahead on its own.
            let (sender, receiver) = mpsc::channel(1);
            let read = RemoteRead { start: self.start, end: self.end, chunk_len: self.chunk_len, part_len: *len };
            tokio::spawn(read.run(file.clone(), self.pos, map.clone(), sender));
            self.pos = self.end;
            self.remote = Some(receiver);
            return;
        }
        let (pos, offset) = (self.pos, self.pos - self.start);
        let len = (self.end - pos).min(self.chunk_len);
        self.pos += len;
        self.next = Some(match stored {
            StoredPart::File { file, .. } => {
                let (file, map) = (file.clone(), map.clone());
                Either::Left(tokio::task::spawn_blocking(move || map(offset, read_chunk(&file, pos, len as usize)?)))
            }
            StoredPart::Remote { .. } => unreachable!("remote ranges are read by their own task"),
            StoredPart::Inline(bytes) => {
                let chunk = BytesMut::from(&bytes[pos as usize..(pos + len) as usize]);
                Either::Right(std::future::ready(Ok(map(offset, chunk))))
            }
        });
    }

    fn fail(&mut self, error: io::Error) -> Poll<Option<io::Result<T>>> {
        self.source = None;
        self.next = None;
        self.remote = None;
        Poll::Ready(Some(Err(error)))
    }
}

/// Reads `len` bytes at `pos` of `file` into a new buffer. The buffer is not zeroed first: filling 1 MiB with
/// zeros before the read overwrites it was a quarter of the server's CPU time in a large GET (perf).
fn read_chunk(file: &File, pos: u64, len: usize) -> io::Result<BytesMut> {
    let mut chunk = Vec::with_capacity(len);
    while chunk.len() < len {
        let at = pos + chunk.len() as u64;
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut chunk), at) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(err) => return Err(err.into()),
        }
    }
    // `spare_capacity` fills whatever capacity the allocator gave, which may exceed `len`.
    chunk.truncate(len);
    // Vec -> Bytes -> BytesMut hands the one allocation over without copying it.
    Ok(Bytes::from(chunk).into())
}

/// The range of a remote part a [`PartStream`] reads: `[start, end)` of the part, in chunks of `chunk_len`.
struct RemoteRead {
    start: u64,
    end: u64,
    chunk_len: u64,
    /// The committed length of the part's data.
    part_len: u64,
}

impl RemoteRead {
    /// Reads `[from, end)` with one ranged GET and sends each chunk, mapped on the blocking pool, to `sender`;
    /// stops at the first error (sent too) or when the receiver is gone. A range that ends the part asks for the
    /// rest of the file, and a file found longer than committed is an `InvalidData` error before its last chunk
    /// is sent (as a local file of the wrong length is refused when opened).
    async fn run<T: Send + 'static>(
        self,
        file: RemoteFile,
        from: u64,
        map: ChunkMap<T>,
        sender: mpsc::Sender<io::Result<T>>,
    ) {
        let to_end = self.end == self.part_len;
        let mut body = match file.read(from..self.end, to_end).await {
            Ok(body) => body,
            Err(error) => {
                let _ = sender.send(Err(error)).await;
                return;
            }
        };
        let mut pending = BytesMut::new();
        let mut pos = from;
        while pos < self.end {
            let len = (self.end - pos).min(self.chunk_len) as usize;
            while pending.len() < len {
                let piece = match body.next().await {
                    Some(Ok(piece)) => piece,
                    Some(Err(error)) => {
                        let _ = sender.send(Err(error)).await;
                        return;
                    }
                    None => {
                        let _ = sender.send(Err(io::ErrorKind::UnexpectedEof.into())).await;
                        return;
                    }
                };
                pending.extend_from_slice(&piece);
            }
            if to_end && pos + len as u64 == self.end {
                let more = match body.next().await {
                    Some(Ok(piece)) => !piece.is_empty(),
                    Some(Err(error)) => {
                        let _ = sender.send(Err(error)).await;
                        return;
                    }
                    None => false,
                };
                if more || pending.len() > len {
                    let error = format!("stored data holds more than the {} bytes committed", self.part_len);
                    let _ = sender.send(Err(io::Error::new(io::ErrorKind::InvalidData, error))).await;
                    return;
                }
            }
            let chunk = pending.split_to(len);
            let (offset, map) = (pos - self.start, map.clone());
            pos += len as u64;
            let mapped = tokio::task::spawn_blocking(move || map(offset, chunk))
                .await
                .map_err(io::Error::other)
                .and_then(|mapped| mapped);
            let failed = mapped.is_err();
            if sender.send(mapped).await.is_err() || failed {
                return;
            }
        }
    }
}

impl<T: Send + 'static> Stream for PartStream<T> {
    type Item = io::Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(error) = this.failed.take() {
            return this.fail(error);
        }
        this.read_ahead();
        if let Some(remote) = this.remote.as_mut() {
            return match remote.poll_recv(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => Poll::Ready(Some(Ok(chunk))),
                Poll::Ready(Some(Err(error))) => this.fail(error),
                Poll::Ready(None) => {
                    this.remote = None;
                    this.source = None;
                    Poll::Ready(None)
                }
            };
        }
        let Some(read) = this.next.as_mut() else {
            this.source = None;
            return Poll::Ready(None);
        };
        let result = match Pin::new(read).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(joined) => joined.map_err(io::Error::other).and_then(|mapped| mapped),
        };
        this.next = None;
        match result {
            Ok(chunk) => {
                this.read_ahead();
                Poll::Ready(Some(Ok(chunk)))
            }
            Err(error) => this.fail(error),
        }
    }
}
