//! The object data path: the one place where object bytes move between clients and the store.
//!
//! Write ([`receive`]): a plaintext body — a request body or a copy source — streams through [`BodyDigests`]
//! (MD5 for the ETag and the declared checksum) into a store [`StagedWrite`] chunk by chunk; then the length and
//! digests are checked and the staged data is fsynced. Nothing is committed here: the caller commits the returned
//! [`StagedFile`] (`put_object` / `put_part`), and dropping it on any error leaves nothing behind.
//!
//! Read ([`ObjectBody`]): a plaintext byte range of an object streams part by part; [`part_slice`] yields the
//! plaintext bytes of a range of one part.
//!
//! Server-side encryption plugs in at exactly these two points: in [`receive`] between the digests (which always
//! see plaintext) and `StagedWrite::write` (which stores whatever it is given), and in [`part_slice`], which maps a
//! plaintext range of a part onto that part's stored bytes.

use std::collections::VecDeque;
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use coffer_store::{ObjectMeta, ObjectReader, PartMeta, PartStream, StagedFile, StagedWrite, Store};
use futures::{Stream, StreamExt};
use s3s::dto::StreamingBlob;
use s3s::stream::{ByteStream, RemainingLength};
use s3s::{s3_error, S3Result, StdError};

use crate::checksum::{BodyDigests, ComputedDigests, DeclaredIntegrity};
use crate::errors::{body_error, internal, store_error};

/// Largest object a single PutObject, UploadPart or CopyObject may write (S3's limit).
pub const MAX_SINGLE_WRITE: u64 = 5 * 1024 * 1024 * 1024;

/// Staged data that passed its checks, with what was computed over it.
#[derive(Debug)]
pub struct Received {
    pub file: StagedFile,
    /// Plaintext bytes received.
    pub size: u64,
    pub digests: ComputedDigests,
}

impl Received {
    /// The ETag of a single-part write: hex MD5 of the plaintext.
    pub fn etag(&self) -> String {
        hex::encode(self.digests.md5)
    }
}

/// A request body as a stream of S3 results (read errors mapped to S3 errors); an absent body is empty.
pub fn request_body(body: Option<StreamingBlob>) -> impl Stream<Item = S3Result<Bytes>> + Send {
    futures::stream::iter(body).flatten().map(|chunk| chunk.map_err(|err| body_error(&err)))
}

/// Streams `body` into a new staged file of `bucket`, checking `declared_len` (Content-Length) and the
/// declared digests. See the module docs for where encryption goes.
pub async fn receive(
    store: &Store,
    bucket: &str,
    body: impl Stream<Item = S3Result<Bytes>> + Send,
    declared_len: Option<u64>,
    integrity: DeclaredIntegrity,
) -> S3Result<Received> {
    if declared_len.is_some_and(|len| len > MAX_SINGLE_WRITE) {
        return Err(entity_too_large());
    }
    let mut staged: StagedWrite = store.stage(bucket).await.map_err(store_error)?;
    let mut digests: BodyDigests = integrity.digests();
    let mut size = 0u64;
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        if size > MAX_SINGLE_WRITE {
            return Err(entity_too_large());
        }
        digests.update(&chunk);
        staged.write(&chunk).await.map_err(|err| internal(&err))?;
    }
    if declared_len.is_some_and(|len| len != size) {
        return Err(s3_error!(
            IncompleteBody,
            "You did not provide the number of bytes specified by the Content-Length HTTP header."
        ));
    }
    let digests = digests.finish();
    integrity.verify(&digests)?;
    let file = staged.finish().await.map_err(store_error)?;
    Ok(Received { file, size, digests })
}

fn entity_too_large() -> s3s::S3Error {
    s3_error!(EntityTooLarge, "Your proposed upload exceeds the maximum allowed size of 5 GiB.")
}

/// The plaintext byte range of part `part_number` (1-based position in the object's part list), if it exists.
pub fn part_range(meta: &ObjectMeta, part_number: usize) -> Option<Range<u64>> {
    let index = part_number.checked_sub(1)?;
    let start: u64 = meta.parts.iter().take(index).map(|part| part.size).sum();
    meta.parts.get(index).map(|part| start..start + part.size)
}

/// A plaintext range of one stored part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PartSliceRange {
    index: usize,
    offset: u64,
    len: u64,
}

/// The slices of `parts` that cover the plaintext `range` of the object, in order.
fn plan_slices(parts: &[PartMeta], range: &Range<u64>) -> VecDeque<PartSliceRange> {
    let mut slices = VecDeque::new();
    let mut part_start = 0u64;
    for (index, part) in parts.iter().enumerate() {
        let part_end = part_start + part.size;
        let from = range.start.max(part_start);
        let to = range.end.min(part_end);
        if from < to {
            slices.push_back(PartSliceRange { index, offset: from - part_start, len: to - from });
        }
        part_start = part_end;
    }
    slices
}

/// The plaintext bytes `[offset, offset + len)` of part `index`.
fn part_slice(reader: &ObjectReader, slice: PartSliceRange) -> PartStream {
    reader.read_part(slice.index, slice.offset, slice.len)
}

/// A plaintext byte range of an object, streamed part by part in bounded chunks. Knows its exact length.
pub struct ObjectBody {
    reader: ObjectReader,
    slices: VecDeque<PartSliceRange>,
    current: Option<PartStream>,
    remaining: u64,
}

impl ObjectBody {
    /// Streams `range` (validated by the caller against `reader.meta().size`).
    pub fn new(reader: ObjectReader, range: Range<u64>) -> Self {
        let slices = plan_slices(&reader.meta().parts, &range);
        ObjectBody { reader, slices, current: None, remaining: range.end - range.start }
    }

    /// As an s3s response body.
    pub fn into_blob(self) -> StreamingBlob {
        StreamingBlob::new(self)
    }

    /// As the source of a copy: read errors are the server's fault.
    pub fn into_copy_source(self) -> impl Stream<Item = S3Result<Bytes>> + Send {
        self.map(|chunk| chunk.map_err(|err| internal(&err)))
    }
}

impl Stream for ObjectBody {
    type Item = Result<Bytes, StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.current.is_none() {
                match this.slices.pop_front() {
                    Some(slice) => this.current = Some(part_slice(&this.reader, slice)),
                    None => return Poll::Ready(None),
                }
            }
            let current = this.current.as_mut().expect("a part stream is current");
            match Pin::new(current).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => this.current = None,
                Poll::Ready(Some(Ok(chunk))) => {
                    this.remaining = this.remaining.saturating_sub(chunk.len() as u64);
                    return Poll::Ready(Some(Ok(chunk)));
                }
                Poll::Ready(Some(Err(err))) => {
                    this.slices.clear();
                    this.current = None;
                    return Poll::Ready(Some(Err(Box::new(err))));
                }
            }
        }
    }
}

impl ByteStream for ObjectBody {
    fn remaining_length(&self) -> RemainingLength {
        usize::try_from(self.remaining).map_or_else(|_| RemainingLength::unknown(), RemainingLength::new_exact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(sizes: &[u64]) -> Vec<PartMeta> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| PartMeta {
                number: i as u32 + 1,
                size,
                stored_size: size,
                etag: String::new(),
                checksum: None,
                last_modified: time::OffsetDateTime::UNIX_EPOCH,
                encryption: None,
            })
            .collect()
    }

    fn slice(index: usize, offset: u64, len: u64) -> PartSliceRange {
        PartSliceRange { index, offset, len }
    }

    #[test]
    fn slices_cover_ranges_across_parts() {
        let parts = parts(&[10, 10, 5]);
        assert_eq!(Vec::from(plan_slices(&parts, &(0..25))), vec![slice(0, 0, 10), slice(1, 0, 10), slice(2, 0, 5)]);
        assert_eq!(Vec::from(plan_slices(&parts, &(5..15))), vec![slice(0, 5, 5), slice(1, 0, 5)]);
        assert_eq!(Vec::from(plan_slices(&parts, &(10..20))), vec![slice(1, 0, 10)]);
        assert_eq!(Vec::from(plan_slices(&parts, &(24..25))), vec![slice(2, 4, 1)]);
        assert!(plan_slices(&parts, &(3..3)).is_empty());
    }

    #[test]
    fn empty_parts_are_skipped() {
        let parts = parts(&[0, 4]);
        assert_eq!(Vec::from(plan_slices(&parts, &(0..4))), vec![slice(1, 0, 4)]);
    }

    #[test]
    fn part_ranges_follow_part_sizes() {
        let mut meta = ObjectMeta::new("k", 25, "x-3");
        meta.parts = parts(&[10, 10, 5]);
        assert_eq!(part_range(&meta, 1), Some(0..10));
        assert_eq!(part_range(&meta, 3), Some(20..25));
        assert_eq!(part_range(&meta, 4), None);
        assert_eq!(part_range(&meta, 0), None);
    }
}
