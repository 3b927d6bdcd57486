//! The object data path: the one place where object bytes move between clients and the store.
//!
//! Write ([`receive`]): a plaintext body — a request body or a copy source — streams through [`BodyDigests`]
//! (MD5 for the ETag and the declared checksum, always over plaintext), then through the part's [`PartEncryptor`]
//! when the object is encrypted, into a store [`StagedWrite`] chunk by chunk; then the length and digests are
//! checked and the staged data is fsynced. Nothing is committed here: the caller commits the returned
//! [`StagedFile`] (`put_object` / `put_part`), and dropping it on any error leaves nothing behind.
//!
//! Read ([`ObjectBody`]): a plaintext byte range of an object streams part by part, each chunk of an unencrypted
//! object checked against its stored checksum before it is sent. For an encrypted object each
//! part's slice is mapped onto the stored packages that cover it, read in chunks of whole packages and decrypted in
//! place by a [`PartDecryptor`] on the blocking pool, right after the read and while the previous chunk is being
//! sent; the body hands out the plaintext inside those chunks without copying it. A package that fails
//! authentication, or stored data that ends early, ends the stream with an error, never with a short body that
//! looks complete.

use std::collections::VecDeque;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use coffer_sse::{NewObject, ObjectCipher, ObjectEncryption, PartEncryption, PartEncryptor, ENCRYPTED_DATA_MARKER};
use coffer_store::{
    ObjectHeaders, ObjectMeta, ObjectReader, PartMeta, RawJson, StagedFile, StagedWrite, Store, READ_CHUNK,
};
use futures::{Stream, StreamExt, TryStreamExt};
use http::Extensions;
use s3s::dto::StreamingBlob;
use s3s::stream::{ByteStream, RemainingLength};
use s3s::{s3_error, S3Result, StdError};

use crate::body_taps::ChunkedBodyEnd;
use crate::checksum::{BodyDigests, ChecksumAlgorithm, ChecksumValue, ComputedDigests, DeclaredIntegrity};
use crate::encryption::{committed_encryption, listed_parts, part_encryptions, single_part_encryptor, sse_error};
use crate::errors::{body_error, internal, io_error, store_error};

/// Largest object a single PutObject, UploadPart or CopyObject may write (S3's limit).
pub const MAX_SINGLE_WRITE: u64 = 5 * 1024 * 1024 * 1024;

/// Staged data that passed its checks, with what was computed over it.
#[derive(Debug)]
pub struct Received {
    pub file: StagedFile,
    /// Plaintext bytes received.
    pub size: u64,
    /// The part's ETag: hex MD5 of the plaintext, or the encryptor's digest for SSE-KMS and SSE-C.
    pub etag: String,
    pub digests: ComputedDigests,
    /// The part-level encryption metadata (`PartMeta::encryption`) when the data was encrypted.
    pub encryption: Option<RawJson>,
}

impl Received {
    /// The metadata of this data stored as part `number` (a single PUT is part 1).
    pub fn part(&self, number: u32) -> PartMeta {
        PartMeta {
            number,
            size: self.size,
            stored_size: self.file.len(),
            etag: self.etag.clone(),
            checksum: self.digests.checksum.as_ref().map(crate::checksum::ChecksumValue::to_stored),
            last_modified: time::OffsetDateTime::now_utc(),
            encryption: self.encryption.clone(),
        }
    }
}

/// A request body as a stream of S3 results (read errors mapped to S3 errors); an absent body is empty. An
/// aws-chunked body that stopped before its final zero-length chunk ends in `IncompleteBody` (s3s passes it as
/// complete; the listener's [`ChunkedBodyEnd`] in the request's `extensions` knows).
pub fn request_body(
    body: Option<StreamingBlob>,
    extensions: &Extensions,
) -> impl Stream<Item = S3Result<Bytes>> + Send {
    let end = extensions.get::<ChunkedBodyEnd>().cloned();
    let unfinished = futures::stream::iter(end).filter_map(|end| futures::future::ready(end.check().err().map(Err)));
    futures::stream::iter(body).flatten().map(|chunk| chunk.map_err(|err| body_error(&err))).chain(unfinished)
}

/// Streams `body` into new staged data, checking `declared_len` (Content-Length) and the declared digests,
/// encrypting it with `encryptor` when the object is encrypted. The caller has checked that the bucket exists.
pub async fn receive(
    store: &Store,
    body: impl Stream<Item = S3Result<Bytes>> + Send,
    declared_len: Option<u64>,
    integrity: DeclaredIntegrity,
    mut encryptor: Option<PartEncryptor>,
) -> S3Result<Received> {
    if declared_len.is_some_and(|len| len > MAX_SINGLE_WRITE) {
        return Err(entity_too_large());
    }
    let etag_md5 = encryptor.as_ref().is_none_or(PartEncryptor::etag_is_plaintext_md5);
    if let Some(encryptor) = &mut encryptor {
        // Every package is bound to the part's size, so it must be known before the first one is sealed.
        let size = declared_len
            .ok_or_else(|| s3_error!(MissingContentLength, "You must provide the Content-Length HTTP header."))?;
        encryptor.declare_size(size).map_err(sse_error)?;
    }
    let mut head = DataHead::default();
    let mut staged: StagedWrite = store.stage();
    let mut digests: BodyDigests = integrity.digests(etag_md5);
    let mut sealed = Vec::new();
    let mut size = 0u64;
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        if size > MAX_SINGLE_WRITE {
            return Err(entity_too_large());
        }
        if declared_len.is_some_and(|len| size > len) {
            return Err(incomplete_body());
        }
        digests.update(&chunk);
        let stored = match &mut encryptor {
            Some(encryptor) => {
                sealed.clear();
                encryptor.push(&chunk, &mut sealed).map_err(sse_error)?;
                &sealed[..]
            }
            None => {
                head.update(&chunk)?;
                &chunk[..]
            }
        };
        staged.write(stored).await.map_err(|err| io_error(&err))?;
    }
    if declared_len.is_some_and(|len| len != size) {
        return Err(incomplete_body());
    }
    let digests = digests.finish();
    integrity.verify(&digests)?;
    let md5_etag = || digests.md5.map(hex::encode).ok_or_else(|| internal(&"the ETag's MD5 was not computed"));
    let (etag, encryption) = match encryptor {
        Some(encryptor) => {
            let metadata: RawJson = encryptor.metadata().to_json().into();
            sealed.clear();
            let part = encryptor.finish(&mut sealed).map_err(sse_error)?;
            staged.write(&sealed).await.map_err(|err| io_error(&err))?;
            (part.etag.map_or_else(md5_etag, Ok)?, Some(metadata))
        }
        None => (md5_etag()?, None),
    };
    let file = staged.finish().await.map_err(store_error)?;
    Ok(Received { file, size, etag, digests, encryption })
}

/// The whole plaintext of the object `reader` pinned (opened with `cipher`), streamed into new staged data as one
/// part encrypted as `new` says, with the metadata to commit it under `key` (CopyObject, and the rewrap job that
/// encrypts a plaintext object). The new checksum uses `algorithm`. Nothing is committed.
pub async fn restage_object(
    store: &Store,
    key: &str,
    reader: ObjectReader,
    cipher: Option<ObjectCipher>,
    new: Option<NewObject>,
    algorithm: Option<ChecksumAlgorithm>,
    headers: ObjectHeaders,
) -> S3Result<(StagedFile, ObjectMeta, Option<ObjectEncryption>)> {
    let size = reader.meta().size;
    let encryptor = single_part_encryptor(new.as_ref());
    let body = ObjectBody::new(reader, 0..size, cipher)?.into_copy_source();
    let received = receive(store, body, Some(size), DeclaredIntegrity::compute(algorithm), encryptor).await?;
    let mut meta = ObjectMeta::new(key, received.size, received.etag.clone());
    meta.headers = headers;
    meta.checksum = received.digests.checksum.as_ref().map(ChecksumValue::to_stored);
    meta.parts = vec![received.part(1)];
    let encryption = committed_encryption(new, &meta.parts)?;
    meta.encryption = encryption.as_ref().map(|e| e.to_json().into());
    Ok((received.file, meta, encryption))
}

fn incomplete_body() -> s3s::S3Error {
    s3_error!(IncompleteBody, "You did not provide the number of bytes specified by the Content-Length HTTP header.")
}

/// The first bytes of unencrypted data being received, to refuse data that starts as encrypted data does
/// ([`ENCRYPTED_DATA_MARKER`]): reads refuse to serve such data as unencrypted, so it could never be read back.
#[derive(Default)]
struct DataHead {
    bytes: Vec<u8>,
}

impl DataHead {
    fn update(&mut self, chunk: &[u8]) -> S3Result<()> {
        let wanted = ENCRYPTED_DATA_MARKER.len().saturating_sub(self.bytes.len());
        if wanted == 0 {
            return Ok(());
        }
        self.bytes.extend_from_slice(&chunk[..wanted.min(chunk.len())]);
        if self.bytes[..] == ENCRYPTED_DATA_MARKER {
            return Err(s3_error!(
                InvalidArgument,
                "Unencrypted object data may not start with the 16 bytes that mark Coffer's encrypted data \
                 (docs/encryption-format.md); store it encrypted instead."
            ));
        }
        Ok(())
    }
}

/// Whether stored bytes that start a part recorded as unencrypted are encrypted data: the record lost its
/// encryption, and the bytes must not be served.
fn is_encrypted_data(head: &[u8]) -> bool {
    head.starts_with(&ENCRYPTED_DATA_MARKER)
}

fn unencrypted_record_of_encrypted_data(number: u32) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("the data of part {number}, recorded as unencrypted, is encrypted: the object's record is damaged"),
    )
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

/// The plaintext pieces of one slice as they are read (s3s wants response bodies `Sync`).
type SliceStream = Pin<Box<dyn Stream<Item = std::io::Result<Vec<Bytes>>> + Send + Sync>>;

/// A slice to stream, with the part's encryption metadata when the object is encrypted.
struct PlannedSlice {
    range: PartSliceRange,
    encryption: Option<PartEncryption>,
}

/// A plaintext byte range of an object, streamed part by part in bounded chunks. Knows its exact length.
pub struct ObjectBody {
    reader: ObjectReader,
    cipher: Option<ObjectCipher>,
    slices: VecDeque<PlannedSlice>,
    /// The plaintext of the slice being streamed, one read at a time: a plaintext chunk, or the plaintext of the
    /// packages a stored chunk held, decrypted in place on the blocking pool.
    current: Option<SliceStream>,
    /// Plaintext pieces read but not yet yielded.
    ready: VecDeque<Bytes>,
    /// Bytes not yet yielded.
    remaining: u64,
}

impl ObjectBody {
    /// Streams `range` (validated by the caller against `reader.meta().size`), decrypting with `cipher` (the
    /// object's, opened by the caller) when the object is encrypted. Fails if the record's sizes disagree with its
    /// parts, or a part's encryption metadata is missing, unreadable or not that of its place in the object.
    pub fn new(reader: ObjectReader, range: Range<u64>, cipher: Option<ObjectCipher>) -> S3Result<Self> {
        let encryptions = check_layout(reader.meta(), cipher.as_ref())?;
        let slices = plan_slices(&reader.meta().parts, &range)
            .into_iter()
            .map(|range| PlannedSlice { range, encryption: encryptions.get(range.index).cloned() })
            .collect();
        Ok(ObjectBody {
            reader,
            cipher,
            slices,
            current: None,
            ready: VecDeque::new(),
            remaining: range.end - range.start,
        })
    }

    /// Reads (and so, for an encrypted object, authenticates) the first chunk before the response starts, so data
    /// that fails at its first package answers with an error status instead of a response cut off after its
    /// headers.
    pub async fn first_chunk_checked(mut self) -> S3Result<Self> {
        match self.next().await {
            Some(Ok(piece)) => {
                self.remaining += piece.len() as u64;
                self.ready.push_front(piece);
                Ok(self)
            }
            Some(Err(err)) => Err(read_error(&err)),
            None => Ok(self),
        }
    }

    /// As an s3s response body.
    pub fn into_blob(self) -> StreamingBlob {
        StreamingBlob::new(self)
    }

    /// As the source of a copy: read and decryption errors are the server's fault.
    pub fn into_copy_source(self) -> impl Stream<Item = S3Result<Bytes>> + Send {
        self.map(|chunk| chunk.map_err(|err| read_error(&err)))
    }

    /// Starts streaming `slice`: its plaintext bytes, or the stored packages covering them, read a few packages at
    /// a time and decrypted in place as they are read.
    fn open_slice(&self, slice: PlannedSlice) -> std::io::Result<SliceStream> {
        let PartSliceRange { index, offset, len } = slice.range;
        let (Some(cipher), Some(encryption)) = (&self.cipher, slice.encryption) else {
            return Ok(self.open_unencrypted_slice(index, offset, len));
        };
        let part_size = self.reader.meta().parts[index].size;
        let decryptor = Arc::new(cipher.decrypt_part(&encryption, part_size, offset..offset + len)?);
        let stored = decryptor.stored_range();
        let total = stored.end - stored.start;
        // The first chunk may also hold the format marker; the others are whole packages.
        let first_len = (decryptor.first_chunk_len(READ_CHUNK) as u64).min(total);
        let chunk_len = decryptor.chunk_len(READ_CHUNK);
        let opener = |shift: u64| {
            let decryptor = decryptor.clone();
            move |offset, mut chunk: BytesMut| {
                let plaintext = decryptor.open_in_place(shift + offset, &mut chunk)?;
                let chunk = chunk.freeze();
                Ok(plaintext.into_iter().map(|range| chunk.slice(range)).collect())
            }
        };
        let first = self.reader.read_part_mapped(index, stored.start, first_len, first_len as usize, opener(0));
        if first_len == total {
            return Ok(Box::pin(first));
        }
        let rest = self.reader.read_part_mapped(
            index,
            stored.start + first_len,
            total - first_len,
            chunk_len,
            opener(first_len),
        );
        Ok(Box::pin(first.chain(rest)))
    }

    /// The stored bytes of an unencrypted part's slice, refused if the part's data is encrypted data (its record
    /// lost its encryption). The marker check rides on the first chunk when the slice starts the part, and costs a
    /// 16-byte read otherwise.
    fn open_unencrypted_slice(&self, index: usize, offset: u64, len: u64) -> SliceStream {
        let part = &self.reader.meta().parts[index];
        let (number, marker_len) = (part.number, ENCRYPTED_DATA_MARKER.len() as u64);
        let data = self.reader.read_part(index, offset, len);
        if part.stored_size < marker_len {
            return Box::pin(data.map_ok(|chunk| vec![chunk]));
        }
        let check = move |head: &[u8]| {
            if is_encrypted_data(head) {
                return Err(unencrypted_record_of_encrypted_data(number));
            }
            Ok(())
        };
        if offset == 0 && len >= marker_len {
            // The first chunk starts the part and is at least as long as the marker.
            let mut first = true;
            return Box::pin(data.map(move |chunk| {
                let chunk = chunk?;
                if std::mem::take(&mut first) {
                    check(&chunk)?;
                }
                Ok(vec![chunk])
            }));
        }
        // Only the marker's bytes, unchecked: damage elsewhere in the part's first chunk must not fail this range.
        let head = self.reader.read_part_mapped(index, 0, marker_len, marker_len as usize, move |_, head| {
            check(&head).map(|()| Vec::new())
        });
        Box::pin(head.chain(data.map_ok(|chunk| vec![chunk])))
    }

    /// Ends the body with `err`: nothing more is streamed.
    fn fail(&mut self, err: std::io::Error) -> Poll<Option<Result<Bytes, StdError>>> {
        self.slices.clear();
        self.current = None;
        self.ready.clear();
        Poll::Ready(Some(Err(Box::new(err))))
    }
}

/// Checks what the record says about how to read the object against itself and returns the parts' encryption
/// metadata (none for a plaintext object): the object's size is the sum of its parts', and for an encrypted object
/// each part's encryption names its own part number, in increasing order, its stored size is what its plaintext
/// size makes in its format, and the part list is the one the object committed to. Part sizes and numbers are bound
/// into the packages (format 2 and 3), the order here and the part list by the commitment (format 3), so an edited
/// record fails instead of yielding a short or reordered body.
fn check_layout(meta: &ObjectMeta, cipher: Option<&ObjectCipher>) -> S3Result<Vec<PartEncryption>> {
    let damaged = |what: &str| internal(&format!("the object's record is inconsistent: {what}"));
    let total = meta.parts.iter().try_fold(0u64, |sum, part| sum.checked_add(part.size));
    if total != Some(meta.size) {
        return Err(damaged("its size is not the sum of its parts' sizes"));
    }
    let Some(cipher) = cipher else {
        return Ok(Vec::new());
    };
    let encryptions = part_encryptions(&meta.parts)?;
    let mut previous = 0;
    for (part, encryption) in meta.parts.iter().zip(&encryptions) {
        if encryption.part_number() != part.number || part.number <= previous {
            return Err(damaged("the part numbers are not those the parts were encrypted as, in order"));
        }
        if encryption.stored_size(part.size) != part.stored_size {
            return Err(damaged("a part's stored size does not match its size"));
        }
        previous = part.number;
    }
    cipher.check_part_list(&listed_parts(&meta.parts, &encryptions)).map_err(sse_error)?;
    Ok(encryptions)
}

/// The S3 error for a failed read of stored data: coffer-sse's answer when decryption failed (e.g. the data failed
/// authentication), else an internal error.
fn read_error(err: &StdError) -> s3s::S3Error {
    let sse = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).and_then(|inner| inner.downcast_ref());
    match sse {
        Some(sse) => sse_error(coffer_sse::SseError::clone(sse)),
        None => internal(err),
    }
}

impl Stream for ObjectBody {
    type Item = Result<Bytes, StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(piece) = this.ready.pop_front() {
                this.remaining = this.remaining.saturating_sub(piece.len() as u64);
                return Poll::Ready(Some(Ok(piece)));
            }
            if this.current.is_none() {
                let Some(slice) = this.slices.pop_front() else {
                    if this.remaining > 0 {
                        let short = std::io::Error::other("the stored object data ended before its recorded size");
                        return this.fail(short);
                    }
                    return Poll::Ready(None);
                };
                match this.open_slice(slice) {
                    Ok(stream) => this.current = Some(stream),
                    Err(err) => return this.fail(err),
                }
            }
            let current = this.current.as_mut().expect("a part stream is current");
            match Pin::new(current).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(pieces))) => {
                    this.ready.extend(pieces.into_iter().filter(|piece| !piece.is_empty()))
                }
                Poll::Ready(Some(Err(err))) => return this.fail(err),
                Poll::Ready(None) => this.current = None,
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
