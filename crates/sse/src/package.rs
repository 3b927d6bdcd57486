//! The data format: each part is a marker and a sequence of AES-256-GCM packages of 64 KiB plaintext.
//!
//! A part of `n` plaintext bytes is `max(1, ceil(n / 64 KiB))` packages; all are full except the last, which holds
//! the rest (and is empty only for an empty part). Package `i` is `ciphertext || tag` sealed under the part key with
//! nonce `prefix || u32be(i) || final flag`, so a package read at another position, a dropped, appended or
//! reordered package, or a stream cut at a package boundary fails to authenticate. Parts are independent (their
//! keys come from the object key, a random part salt and the part number), so they can be written in any order.
//!
//! Formats 2 and 3 (written now) bind what a reader takes from the record into every package: the associated data
//! ([`PackageAad`]) holds the part number, part plaintext size, package size, package index and final flag, so a
//! record edited to another size or part number (even with a valid record MAC) makes the packages fail to
//! authenticate instead of yielding a short body. The mode is bound by the seal of the object key (its associated
//! data), not by the packages: re-keying to another mode rewrites only metadata. Their data starts with
//! [`ENCRYPTED_DATA_MARKER`], which a part recorded as unencrypted may not start with, so a record whose encryption
//! was removed does not serve ciphertext. Format 3 differs from format 2 only in the label of its associated data,
//! which says "this part's object commits to its part list" (see `part_list`): SSE-S3 and SSE-KMS parts are format
//! 3; SSE-C parts are format 2, because the server has no key to commit with when an SSE-C upload completes.
//! Format 1 parts (no associated data, no marker) still read.
//!
//! [`PartEncryptor`] takes plaintext in chunks of any size, holds back at most one package and writes into a
//! caller-owned `Vec<u8>`, so a caller that reuses its buffer allocates nothing per package. [`PartDecryptor`] reads
//! only the packages covering a plaintext range, decrypts them in the caller's read buffer and points at the
//! plaintext in it, so a read copies nothing; it never points at bytes that have not been authenticated.

use std::ops::Range;

use aws_lc_rs::digest::{Context, SHA256};

use crate::error::{Result, SseError};
use crate::keys::{random_bytes, ObjectKey, PartKey, TAG_LEN};
use crate::metadata::{PartEncryption, SseMode};
use crate::part_list::PartListTag;

/// Plaintext bytes per package.
pub const PACKAGE_SIZE: usize = 64 * 1024;
const PACKAGE: u64 = PACKAGE_SIZE as u64;
const STORED_PACKAGE: u64 = PACKAGE + TAG_LEN as u64;
/// Package indexes are 32-bit in the nonce: a part holds at most 2^32 packages (256 TiB).
const MAX_PACKAGES: u64 = 1 << 32;
const ETAG_LABEL: &[u8] = b"coffer-sse/v1/etag";
const PACKAGE_AAD_LABEL_V2: &[u8] = b"coffer-sse/v2/package";
const PACKAGE_AAD_LABEL_V3: &[u8] = b"coffer-sse/v3/package";

/// The first 16 bytes of every part stored in format 2 or 3 (PNG-style: a high byte, a name, line ends that a text
/// transfer would mangle, the marker's version). The server refuses unencrypted data that starts with it and refuses
/// to serve data recorded as unencrypted that starts with it, so an encrypted part whose record lost its
/// encryption is never served as plaintext.
pub const ENCRYPTED_DATA_MARKER: [u8; 16] = *b"\x89COFFER-SSE\r\n\x1a\n\x02";
const MARKER_LEN: u64 = ENCRYPTED_DATA_MARKER.len() as u64;

fn package_count(plaintext_size: u64) -> u64 {
    plaintext_size.div_ceil(PACKAGE).max(1)
}

/// How a part's data is laid out and authenticated, by part format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Format 1: the packages alone, sealed without associated data.
    V1,
    /// Format 2: [`ENCRYPTED_DATA_MARKER`], then the packages, sealed with [`PackageAad`].
    V2,
    /// Format 3: as format 2, with the associated data of a part whose object commits to its part list.
    V3,
}

impl Layout {
    /// The layout of a part format this version reads (1 to 3; `PartEncryption` refuses others).
    pub(crate) fn of_format(format: u32) -> Self {
        match format {
            1 => Self::V1,
            2 => Self::V2,
            _ => Self::V3,
        }
    }

    pub(crate) fn format(self) -> u32 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
            Self::V3 => 3,
        }
    }

    /// The layout parts are written in: format 3 where the object's part list is committed when it is completed
    /// (the server holds the key then), format 2 for SSE-C.
    fn written(mode: SseMode) -> Self {
        match mode {
            SseMode::SseC => Self::V2,
            SseMode::SseS3 | SseMode::SseKms => Self::V3,
        }
    }

    fn header_len(self) -> u64 {
        match self {
            Self::V1 => 0,
            Self::V2 | Self::V3 => MARKER_LEN,
        }
    }

    fn aad(self, part_number: u32, plaintext_size: u64) -> PackageAad {
        match self {
            Self::V1 => PackageAad::NONE,
            Self::V2 => PackageAad::new(PACKAGE_AAD_LABEL_V2, part_number, plaintext_size),
            Self::V3 => PackageAad::new(PACKAGE_AAD_LABEL_V3, part_number, plaintext_size),
        }
    }

    /// Bytes on disk for a part of `plaintext_size` bytes: the marker, and one 16-byte tag per package.
    pub(crate) fn stored_size(self, plaintext_size: u64) -> u64 {
        self.header_len() + plaintext_size + TAG_LEN as u64 * package_count(plaintext_size)
    }
}

/// Bytes on disk for a part of `plaintext_size` bytes written now (format 2 or 3: the same layout).
pub fn stored_size(plaintext_size: u64) -> u64 {
    Layout::V3.stored_size(plaintext_size)
}

/// The plaintext size of a part written now (format 2 or 3) stored in `stored_size` bytes, or `None` if no part
/// has that stored size.
pub fn plaintext_size(stored_size: u64) -> Option<u64> {
    let packages_size = stored_size.checked_sub(MARKER_LEN)?;
    let packages = packages_size.div_ceil(STORED_PACKAGE);
    let last = packages_size.checked_sub(packages.checked_sub(1)? * STORED_PACKAGE)?;
    // Only a part's single package may be empty.
    let min_last = if packages == 1 { TAG_LEN as u64 } else { TAG_LEN as u64 + 1 };
    (last >= min_last).then(|| packages_size - TAG_LEN as u64 * packages)
}

/// Stored length of package `index` of a part whose last package is `final_index`.
fn stored_package_len(plaintext_size: u64, final_index: u64, index: u64) -> usize {
    let plaintext = if index < final_index { PACKAGE } else { plaintext_size - index * PACKAGE };
    usize::try_from(plaintext).expect("a package is at most 64 KiB") + TAG_LEN
}

/// Length of the associated data: label, part number, part size, package size, index, final flag.
const AAD_LEN: usize = 21 + 4 + 8 + 4 + 4 + 1;

/// The associated data of the packages of one format-2 or format-3 part, all computable from the record alone:
/// `label || u32be(part number) || u64be(part plaintext size) || u32be(package size) || u32be(package index) ||
/// final flag (1 byte)`, the label `"coffer-sse/v2/package"` or `"coffer-sse/v3/package"` (as long). Format 1
/// packages have none (`len` 0).
#[derive(Clone, Copy)]
struct PackageAad {
    bytes: [u8; AAD_LEN],
    len: usize,
}

impl PackageAad {
    const NONE: Self = Self { bytes: [0; AAD_LEN], len: 0 };

    fn new(label: &[u8], part_number: u32, plaintext_size: u64) -> Self {
        let package_size = u32::try_from(PACKAGE_SIZE).expect("64 KiB fits in 32 bits");
        let fields: [&[u8]; 5] = [
            label,
            &part_number.to_be_bytes(),
            &plaintext_size.to_be_bytes(),
            &package_size.to_be_bytes(),
            // The package index and final flag, set per package.
            &[0; 5],
        ];
        let mut aad = Self::NONE;
        for field in fields {
            aad.bytes[aad.len..aad.len + field.len()].copy_from_slice(field);
            aad.len += field.len();
        }
        debug_assert_eq!(aad.len, AAD_LEN);
        aad
    }

    /// The associated data of package `index` (the final one if `last`).
    fn package(&mut self, index: u32, last: bool) -> &[u8] {
        if self.len > 0 {
            let at = self.len - 5;
            self.bytes[at..at + 4].copy_from_slice(&index.to_be_bytes());
            self.bytes[at + 4] = u8::from(last);
        }
        &self.bytes[..self.len]
    }
}

/// The key of one object, ready to encrypt and decrypt its parts, with the part list the object committed to.
#[derive(Debug)]
pub struct ObjectCipher {
    key: ObjectKey,
    mode: SseMode,
    /// The stored commitment to the part list, checked before a read ([`ObjectCipher::check_part_list`]).
    part_list: Option<PartListTag>,
}

impl ObjectCipher {
    pub(crate) fn new(key: ObjectKey, mode: SseMode, part_list: Option<PartListTag>) -> Self {
        Self { key, mode, part_list }
    }

    pub(crate) fn committed_part_list(&self) -> Option<&PartListTag> {
        self.part_list.as_ref()
    }

    pub(crate) fn object_key(&self) -> &ObjectKey {
        &self.key
    }

    pub fn mode(&self) -> SseMode {
        self.mode
    }

    /// An encryptor for part `part_number` (1 for a single PUT) under a fresh random part salt. Uploading the same
    /// part number again gets a new salt, hence a new key: nonces never repeat. The part's size must be declared
    /// ([`PartEncryptor::declare_size`]) before its data is pushed: every package is bound to it.
    pub fn encrypt_part(&self, part_number: u32) -> PartEncryptor {
        self.encrypt_part_with_salt(part_number, random_bytes())
    }

    fn encrypt_part_with_salt(&self, part_number: u32, salt: [u8; 16]) -> PartEncryptor {
        PartEncryptor {
            key: self.key.part_key(&salt, part_number),
            metadata: PartEncryption::new(Layout::written(self.mode), part_number, salt),
            mode: self.mode,
            declared_size: None,
            aad: PackageAad::NONE,
            pending: Vec::with_capacity(PACKAGE_SIZE),
            packages: 0,
            plaintext_size: 0,
            tags: etag_digest(),
        }
    }

    /// A decryptor for the plaintext `range` of a part of `plaintext_size` bytes described by `part` (format 1 to
    /// 3). Read [`PartDecryptor::stored_range`] of the part's stored bytes and push them through it.
    pub fn decrypt_part(&self, part: &PartEncryption, plaintext_size: u64, range: Range<u64>) -> Result<PartDecryptor> {
        let layout = part.layout();
        let aad = layout.aad(part.part_number(), plaintext_size);
        let key = self.key.part_key(part.salt(), part.part_number());
        PartDecryptor::new(key, layout, aad, plaintext_size, range)
    }
}

fn etag_digest() -> Context {
    let mut digest = Context::new(&SHA256);
    digest.update(ETAG_LABEL);
    digest
}

/// Encrypts one part as a stream: declare its size, push plaintext chunks of any size, then `finish`.
pub struct PartEncryptor {
    key: PartKey,
    metadata: PartEncryption,
    mode: SseMode,
    /// The part's plaintext size, bound into every package; `None` until declared.
    declared_size: Option<u64>,
    aad: PackageAad,
    /// Plaintext held back: the encryptor cannot seal a package before it knows whether it is the last one.
    pending: Vec<u8>,
    packages: u64,
    plaintext_size: u64,
    /// SHA-256 over the package tags: the ETag of SSE-KMS and SSE-C parts.
    tags: Context,
}

/// What a finished part amounts to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedPart {
    pub plaintext_size: u64,
    pub stored_size: u64,
    /// The part's ETag (hex, 32 characters) for SSE-KMS and SSE-C: the first 16 bytes of
    /// `SHA-256("coffer-sse/v1/etag" || tag_0 || tag_1 || …)`. `None` for SSE-S3, whose ETag is the plaintext MD5
    /// the caller computes.
    pub etag: Option<String>,
}

impl PartEncryptor {
    /// The part-level metadata to store with this part (`PartMeta::encryption`).
    pub fn metadata(&self) -> &PartEncryption {
        &self.metadata
    }

    /// Whether the caller must compute the plaintext MD5 for the ETag (see [`SseMode::etag_is_plaintext_md5`]).
    pub fn etag_is_plaintext_md5(&self) -> bool {
        self.mode.etag_is_plaintext_md5()
    }

    /// Declares the part's plaintext size (its Content-Length), which every package is bound to: pushing more
    /// data, or finishing with less, fails.
    pub fn declare_size(&mut self, plaintext_size: u64) -> Result<()> {
        if package_count(plaintext_size) > MAX_PACKAGES {
            return Err(SseError::invalid_argument("The part is too large to encrypt (over 256 TiB)"));
        }
        if self.declared_size.is_some() {
            return Err(SseError::internal("A part's size was declared twice"));
        }
        self.declared_size = Some(plaintext_size);
        self.aad = self.metadata.layout().aad(self.metadata.part_number(), plaintext_size);
        Ok(())
    }

    /// Encrypts `plaintext`, appending the ciphertext of every package completed so far to `out`.
    pub fn push(&mut self, mut plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let sealable = self.pending.len() + plaintext.len();
        out.reserve(sealable + (sealable / PACKAGE_SIZE + 1) * TAG_LEN + MARKER_LEN as usize);
        loop {
            if self.pending.len() == PACKAGE_SIZE && !plaintext.is_empty() {
                self.seal_pending(false, out)?;
            }
            if self.pending.is_empty() {
                // Seal whole packages straight from the input, holding back the last (possibly full) one.
                while plaintext.len() > PACKAGE_SIZE {
                    let (package, rest) = plaintext.split_at(PACKAGE_SIZE);
                    self.seal(package, false, out)?;
                    plaintext = rest;
                }
                self.pending.extend_from_slice(plaintext);
                return Ok(());
            }
            let take = (PACKAGE_SIZE - self.pending.len()).min(plaintext.len());
            self.pending.extend_from_slice(&plaintext[..take]);
            plaintext = &plaintext[take..];
            if plaintext.is_empty() {
                return Ok(());
            }
        }
    }

    /// Seals the held-back plaintext as the final package (an empty one for an empty part) and appends it to `out`.
    /// Fails if the part holds fewer bytes than declared.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<SealedPart> {
        out.reserve(self.pending.len() + TAG_LEN + MARKER_LEN as usize);
        self.seal_pending(true, out)?;
        if self.declared_size != Some(self.plaintext_size) {
            return Err(SseError::internal("An encrypted part ended before its declared size"));
        }
        let etag = (!self.etag_is_plaintext_md5()).then(|| hex::encode(&self.tags.finish().as_ref()[..16]));
        Ok(SealedPart {
            plaintext_size: self.plaintext_size,
            stored_size: self.metadata.stored_size(self.plaintext_size),
            etag,
        })
    }

    fn seal_pending(&mut self, last: bool, out: &mut Vec<u8>) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let sealed = self.seal(&pending, last, out);
        self.pending = pending;
        self.pending.clear();
        sealed
    }

    fn seal(&mut self, plaintext: &[u8], last: bool, out: &mut Vec<u8>) -> Result<()> {
        let declared = self
            .declared_size
            .ok_or_else(|| SseError::internal("An encrypted part's size must be declared before its data"))?;
        if self.plaintext_size + plaintext.len() as u64 > declared {
            return Err(SseError::internal("An encrypted part got more data than its declared size"));
        }
        let index = u32::try_from(self.packages).expect("package count checked against MAX_PACKAGES");
        if index == 0 {
            out.extend_from_slice(&ENCRYPTED_DATA_MARKER);
        }
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self.key.seal(index, last, self.aad.package(index, last), &mut out[start..]);
        out.extend_from_slice(&tag);
        self.tags.update(&tag);
        self.packages += 1;
        self.plaintext_size += plaintext.len() as u64;
        Ok(())
    }
}

/// Decrypts a plaintext range of one part from the stored packages that cover it, in place.
///
/// The caller reads [`PartDecryptor::stored_range`] of the part's stored data — all of it, failing if the data ends
/// early — in chunks of whole packages: a first chunk of [`PartDecryptor::first_chunk_len`] (which also holds the
/// format-2 marker when the range starts with the part), then chunks of [`PartDecryptor::chunk_len`]; it hands
/// each chunk, with its offset in that range, to [`PartDecryptor::open_in_place`], which decrypts it where it lies
/// and says which of its bytes are requested plaintext: no package is copied. Chunks are independent, so they can
/// be opened in any order and on any thread.
pub struct PartDecryptor {
    key: PartKey,
    layout: Layout,
    aad: PackageAad,
    plaintext_size: u64,
    final_index: u64,
    first_index: u64,
    last_index: u64,
    /// The requested plaintext range of the part.
    range: Range<u64>,
}

impl PartDecryptor {
    fn new(key: PartKey, layout: Layout, aad: PackageAad, plaintext_size: u64, range: Range<u64>) -> Result<Self> {
        if range.start > range.end || range.end > plaintext_size {
            return Err(SseError::invalid_range());
        }
        let packages = package_count(plaintext_size);
        if packages > MAX_PACKAGES {
            return Err(SseError::internal("The part's recorded size is larger than the format allows"));
        }
        let final_index = packages - 1;
        // Even an empty range reads (and so authenticates) one package.
        let first_index = (range.start / PACKAGE).min(final_index);
        let last_index = if range.is_empty() { first_index } else { (range.end - 1) / PACKAGE };
        Ok(Self { key, layout, aad, plaintext_size, final_index, first_index, last_index, range })
    }

    fn package_start(&self, index: u64) -> u64 {
        self.layout.header_len() + index * STORED_PACKAGE
    }

    /// The byte range of the part's stored data to read and open with this decryptor: the packages covering the
    /// plaintext range, and the marker before them if they start with the part's first package.
    pub fn stored_range(&self) -> Range<u64> {
        let last_len = stored_package_len(self.plaintext_size, self.final_index, self.last_index) as u64;
        let start = if self.first_index == 0 { 0 } else { self.package_start(self.first_index) };
        start..self.package_start(self.last_index) + last_len
    }

    /// The chunk length to read the stored range in after the first chunk: as many whole stored packages as fit in
    /// `max` bytes (at least one). Every chunk but the first and the last has this length; the last one ends with
    /// the range.
    pub fn chunk_len(&self, max: usize) -> usize {
        let stored_package = STORED_PACKAGE as usize;
        (max / stored_package).max(1) * stored_package
    }

    /// The length of the first chunk: [`PartDecryptor::chunk_len`], plus the marker when the range starts with it.
    pub fn first_chunk_len(&self, max: usize) -> usize {
        let header = if self.first_index == 0 { self.layout.header_len() as usize } else { 0 };
        header + self.chunk_len(max)
    }

    /// Authenticates and decrypts, in place, the whole stored packages in `chunk`, which starts `offset` bytes into
    /// [`PartDecryptor::stored_range`], and returns the byte ranges of `chunk` that are requested plaintext (marker,
    /// tags and bytes outside the range left out). Fails on a package that does not authenticate, a marker that
    /// is not the format's, a chunk that does not start at a package (or the marker) or ends inside one, and bytes
    /// past the range; on failure `chunk` holds nothing the caller may use.
    pub fn open_in_place(&self, offset: u64, chunk: &mut [u8]) -> Result<Vec<Range<usize>>> {
        let misaligned = || SseError::internal("A read of encrypted data did not cover whole packages");
        let header = self.layout.header_len();
        let mut position = self.stored_range().start + offset;
        let mut at = 0;
        if header > 0 && position == 0 {
            let marker = chunk.get(..MARKER_LEN as usize).ok_or_else(misaligned)?;
            if marker != ENCRYPTED_DATA_MARKER {
                return Err(SseError::corrupted_data());
            }
            at = MARKER_LEN as usize;
            position = MARKER_LEN;
        }
        let packages_offset = position.checked_sub(header).ok_or_else(misaligned)?;
        if !packages_offset.is_multiple_of(STORED_PACKAGE) {
            return Err(misaligned());
        }
        let mut index = packages_offset / STORED_PACKAGE;
        let mut aad = self.aad;
        let mut plaintext = Vec::with_capacity(chunk.len().div_ceil(STORED_PACKAGE as usize));
        while at < chunk.len() {
            if index < self.first_index || index > self.last_index {
                return Err(SseError::corrupted_data());
            }
            let package_len = stored_package_len(self.plaintext_size, self.final_index, index);
            let package = chunk.get_mut(at..at + package_len).ok_or_else(misaligned)?;
            let (ciphertext, tag) = package.split_at_mut(package_len - TAG_LEN);
            let nonce_index = u32::try_from(index).expect("package count checked against MAX_PACKAGES");
            let last = index == self.final_index;
            if !self.key.open(nonce_index, last, aad.package(nonce_index, last), tag, ciphertext) {
                return Err(SseError::corrupted_data());
            }
            // The package's plaintext is [index * PACKAGE, + its length) of the part; emit what the range wants.
            let package_start = index * PACKAGE;
            let from = self.range.start.max(package_start);
            let to = self.range.end.min(package_start + ciphertext.len() as u64);
            if from < to {
                let start = at + (from - package_start) as usize;
                plaintext.push(start..start + (to - from) as usize);
            }
            index += 1;
            at += package_len;
        }
        Ok(plaintext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZES: [usize; 9] =
        [0, 1, 13, PACKAGE_SIZE - 1, PACKAGE_SIZE, PACKAGE_SIZE + 1, 3 * PACKAGE_SIZE, 1 << 20, 1 << 20 | 4242];

    fn cipher(mode: SseMode) -> ObjectCipher {
        ObjectCipher::new(ObjectKey::from_bytes(std::array::from_fn(|i| i as u8)), mode, None)
    }

    fn plaintext(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// Encrypts `data` pushed in chunks of `chunk` bytes.
    fn encrypt(cipher: &ObjectCipher, data: &[u8], chunk: usize) -> (PartEncryption, Vec<u8>, SealedPart) {
        let mut encryptor = cipher.encrypt_part(1);
        encryptor.declare_size(data.len() as u64).unwrap();
        let metadata = encryptor.metadata().clone();
        let mut stored = Vec::new();
        for piece in data.chunks(chunk.max(1)) {
            encryptor.push(piece, &mut stored).unwrap();
        }
        let sealed = encryptor.finish(&mut stored).unwrap();
        (metadata, stored, sealed)
    }

    /// Opens `stored` — the decryptor's stored range as read — in chunks of the length it picks for at most
    /// `max_chunk` bytes, collecting the plaintext it points at. Stored data shorter than the range is an error, as
    /// the store's reads make it.
    fn open_chunks(decryptor: &PartDecryptor, stored: &[u8], max_chunk: usize, out: &mut Vec<u8>) -> Result<()> {
        let range = decryptor.stored_range();
        if (stored.len() as u64) < range.end - range.start {
            return Err(SseError::internal("the stored data ended early"));
        }
        let first_len = decryptor.first_chunk_len(max_chunk).min(stored.len());
        let (first, rest) = stored.split_at(first_len);
        let chunk_len = decryptor.chunk_len(max_chunk);
        let chunks = std::iter::once((0, first))
            .chain(rest.chunks(chunk_len).enumerate().map(|(i, piece)| (first_len + i * chunk_len, piece)));
        for (offset, piece) in chunks {
            let mut chunk = piece.to_vec();
            for plaintext in decryptor.open_in_place(offset as u64, &mut chunk)? {
                out.extend_from_slice(&chunk[plaintext]);
            }
        }
        Ok(())
    }

    /// Decrypts `range` reading the stored range the decryptor asks for, in chunks of at most `max_chunk` bytes.
    fn decrypt(
        cipher: &ObjectCipher,
        part: &PartEncryption,
        stored: &[u8],
        size: u64,
        range: Range<u64>,
        max_chunk: usize,
    ) -> Result<Vec<u8>> {
        let decryptor = cipher.decrypt_part(part, size, range)?;
        let r = decryptor.stored_range();
        let wanted = &stored[r.start as usize..(r.end as usize).min(stored.len())];
        let mut out = Vec::new();
        open_chunks(&decryptor, wanted, max_chunk, &mut out)?;
        Ok(out)
    }

    #[test]
    fn size_math() {
        // The marker, then one tag per package.
        assert_eq!(stored_size(0), 32);
        assert_eq!(stored_size(1), 33);
        assert_eq!(stored_size(PACKAGE), PACKAGE + 32);
        assert_eq!(stored_size(PACKAGE + 1), PACKAGE + 1 + 48);
        assert_eq!(Layout::V1.stored_size(PACKAGE + 1), PACKAGE + 1 + 32);
        for size in (0..4 * PACKAGE + 3).step_by(997).chain([PACKAGE - 1, PACKAGE, PACKAGE + 1, 2 * PACKAGE]) {
            assert_eq!(plaintext_size(stored_size(size)), Some(size), "{size}");
        }
        // Sizes no part can have: nothing, the marker alone or with a partial tag, an empty second package.
        for bad in [0, 1, 15, 16, 31, 16 + STORED_PACKAGE + 1, 16 + STORED_PACKAGE + 16, 16 + 2 * STORED_PACKAGE + 16] {
            assert_eq!(plaintext_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn round_trips_at_every_size_and_chunking() {
        let cipher = cipher(SseMode::SseC);
        for size in SIZES {
            let data = plaintext(size);
            for chunk in [1 << 20, PACKAGE_SIZE, PACKAGE_SIZE + 16, 4096, 7] {
                if size > 200_000 && chunk < 4096 {
                    continue;
                }
                let (part, stored, sealed) = encrypt(&cipher, &data, chunk);
                assert_eq!(stored.len() as u64, stored_size(size as u64), "size {size} chunk {chunk}");
                assert_eq!(sealed.stored_size, stored.len() as u64);
                assert_eq!(sealed.plaintext_size, size as u64);
                for read_chunk in [1 << 20, 4 * STORED_PACKAGE as usize, STORED_PACKAGE as usize, 1] {
                    let back = decrypt(&cipher, &part, &stored, size as u64, 0..size as u64, read_chunk).unwrap();
                    assert!(back == data, "size {size} chunk {chunk} read {read_chunk}");
                }
            }
        }
    }

    #[test]
    fn empty_pushes_change_nothing() {
        let cipher = cipher(SseMode::SseKms);
        let mut encryptor = cipher.encrypt_part(1);
        encryptor.declare_size(PACKAGE + 3).unwrap();
        let part = encryptor.metadata().clone();
        let mut stored = Vec::new();
        for piece in [&[][..], &plaintext(PACKAGE_SIZE), &[], &[1, 2, 3], &[]] {
            encryptor.push(piece, &mut stored).unwrap();
        }
        encryptor.finish(&mut stored).unwrap();
        let mut expected = plaintext(PACKAGE_SIZE);
        expected.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            decrypt(&cipher, &part, &stored, expected.len() as u64, 0..expected.len() as u64, 999).unwrap(),
            expected
        );
    }

    #[test]
    fn encryption_buffers_at_most_one_package() {
        let cipher = cipher(SseMode::SseKms);
        let data = plaintext(1 << 20);
        let mut encryptor = cipher.encrypt_part(1);
        encryptor.declare_size(1 << 20).unwrap();
        let mut stored = Vec::new();
        for piece in data.chunks(40_000) {
            encryptor.push(piece, &mut stored).unwrap();
            assert!(encryptor.pending.len() <= PACKAGE_SIZE);
            assert_eq!(encryptor.pending.capacity(), PACKAGE_SIZE);
        }
    }

    #[test]
    fn decryption_points_into_the_chunk_it_was_given() {
        let cipher = cipher(SseMode::SseKms);
        let size = 3 * PACKAGE + 10;
        let data = plaintext(size as usize);
        let (part, stored, _) = encrypt(&cipher, &data, 100_000);
        let decryptor = cipher.decrypt_part(&part, size, 5..size - 3).unwrap();
        assert_eq!(decryptor.chunk_len(0), STORED_PACKAGE as usize);
        assert_eq!(decryptor.chunk_len(2 * STORED_PACKAGE as usize + 1), 2 * STORED_PACKAGE as usize);
        // The range starts in package 0, so the first chunk also holds the marker.
        assert_eq!(decryptor.first_chunk_len(0), 16 + STORED_PACKAGE as usize);
        // Package i's plaintext starts at 16 + i * STORED_PACKAGE; the range skips 5 bytes and stops 3 short.
        let (h, sp, p) = (16, STORED_PACKAGE as usize, PACKAGE_SIZE);
        let mut chunk = stored.clone();
        let ranges = decryptor.open_in_place(0, &mut chunk).unwrap();
        assert_eq!(
            ranges,
            vec![h + 5..h + p, h + sp..h + sp + p, h + 2 * sp..h + 2 * sp + p, h + 3 * sp..h + 3 * sp + 7]
        );
        let joined: Vec<u8> = ranges.into_iter().flat_map(|r| chunk[r].to_vec()).collect();
        assert!(joined == data[5..size as usize - 3]);
        // Chunks are independent: the last two packages first, then the marker and the first two.
        let mut tail = stored[h + 2 * sp..].to_vec();
        assert_eq!(decryptor.open_in_place((h + 2 * sp) as u64, &mut tail).unwrap(), vec![0..p, sp..sp + 7]);
        let mut head = stored[..h + 2 * sp].to_vec();
        assert_eq!(decryptor.open_in_place(0, &mut head).unwrap(), vec![h + 5..h + p, h + sp..h + sp + p]);
        // A chunk that ends inside a package or starts inside one is refused.
        let mut partial = stored[..h + sp + 100].to_vec();
        assert_eq!(decryptor.open_in_place(0, &mut partial).unwrap_err().status(), 500);
        let mut shifted = stored[h + 1..h + sp + 1].to_vec();
        assert_eq!(decryptor.open_in_place(h as u64 + 1, &mut shifted).unwrap_err().status(), 500);
        // A package opened at another position, or without the marker before package 0, does not authenticate.
        let mut moved = stored[h + sp..h + 2 * sp].to_vec();
        assert!(decryptor.open_in_place(h as u64, &mut moved).is_err());
        let mut unmarked = stored[h..h + sp].to_vec();
        assert!(decryptor.open_in_place(0, &mut unmarked).is_err());
    }

    #[test]
    fn ciphers_cross_threads() {
        fn send<T: Send>() {}
        fn shared<T: Send + Sync>() {}
        shared::<ObjectCipher>();
        send::<PartEncryptor>();
        send::<PartDecryptor>();
    }

    #[test]
    fn stored_bytes_do_not_contain_the_plaintext() {
        let cipher = cipher(SseMode::SseS3);
        let data = b"a secret sentence that must never reach the disk in clear".repeat(5000);
        let (_, stored, _) = encrypt(&cipher, &data, 10_000);
        assert!(!stored.windows(32).any(|w| w == &data[..32]));
    }

    #[test]
    fn every_range_at_package_boundaries() {
        let cipher = cipher(SseMode::SseC);
        let size = 3 * PACKAGE + 100;
        let data = plaintext(size as usize);
        let (part, stored, _) = encrypt(&cipher, &data, 50_000);
        let mut points: Vec<u64> = vec![0, 1, size - 1, size];
        for k in 1..=3 {
            points.extend([k * PACKAGE - 1, k * PACKAGE, k * PACKAGE + 1]);
        }
        for &start in &points {
            for &end in &points {
                if start > end {
                    continue;
                }
                let out = decrypt(&cipher, &part, &stored, size, start..end, 40_000).unwrap();
                assert_eq!(out, &data[start as usize..end as usize], "{start}..{end}");
            }
        }
    }

    #[test]
    fn ranges_read_only_the_covering_packages() {
        let cipher = cipher(SseMode::SseC);
        let part = cipher.encrypt_part(1).metadata().clone();
        let size = 10 * PACKAGE + 5;
        let at = |range: Range<u64>| cipher.decrypt_part(&part, size, range).unwrap().stored_range();
        // Package i is at 16 + i * STORED_PACKAGE; a range starting in package 0 also reads the marker.
        let package = |i: u64| 16 + i * STORED_PACKAGE;
        assert_eq!(at(0..1), 0..package(1));
        assert_eq!(at(PACKAGE..PACKAGE + 1), package(1)..package(2));
        assert_eq!(at(PACKAGE - 1..PACKAGE + 1), 0..package(2));
        assert_eq!(at(size - 1..size), package(10)..package(10) + 5 + 16);
        assert_eq!(at(0..size), 0..stored_size(size));
        // An empty range still authenticates one package; the end of a part reads the final one.
        assert_eq!(at(size..size), package(10)..package(10) + 21);
        let empty = cipher.decrypt_part(&part, 0, 0..0).unwrap().stored_range();
        assert_eq!(empty, 0..32);
    }

    #[test]
    fn ranges_outside_the_part_are_refused() {
        let cipher = cipher(SseMode::SseC);
        let part = cipher.encrypt_part(1).metadata().clone();
        for range in [0..11, 5..11, 9..11] {
            let e = cipher.decrypt_part(&part, 10, range).err().unwrap();
            assert_eq!((e.code(), e.status()), ("InvalidRange", 416));
        }
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 5..4;
        assert!(cipher.decrypt_part(&part, 10, backwards).is_err());
    }

    /// Decrypting the whole part from the (tampered) stored bytes must fail, in any chunking, emitting nothing but
    /// a prefix of the true plaintext first; decrypting with the size implied by the stored length must fail too.
    fn assert_rejected(cipher: &ObjectCipher, part: &PartEncryption, stored: &[u8], size: u64, what: &str) {
        for chunk in [stored.len().max(1), STORED_PACKAGE as usize, 2 * STORED_PACKAGE as usize] {
            let decryptor = cipher.decrypt_part(part, size, 0..size).unwrap();
            let mut out = Vec::new();
            let opened = open_chunks(&decryptor, stored, chunk, &mut out);
            assert!(opened.is_err(), "{what}: accepted (chunk {chunk})");
            assert!(out == plaintext(out.len()), "{what}: emitted bytes are not a plaintext prefix");
        }
        if let Some(implied) = plaintext_size(stored.len() as u64) {
            assert!(decrypt(cipher, part, stored, implied, 0..implied, 4096).is_err(), "{what}: implied size");
        }
    }

    #[test]
    fn tampering_is_detected() {
        let cipher = cipher(SseMode::SseKms);
        let size = 3 * PACKAGE_SIZE + 1000;
        let data = plaintext(size);
        let (part, stored, _) = encrypt(&cipher, &data, PACKAGE_SIZE);
        let size = size as u64;
        let sp = STORED_PACKAGE as usize;
        let flip = |at: usize| {
            let mut bad = stored.clone();
            bad[at] ^= 0x80;
            bad
        };
        // Package i starts at h + i * sp, after the marker.
        let h = 16;
        // One flipped byte in the marker, in a ciphertext, in a tag, in the final package.
        assert_rejected(&cipher, &part, &flip(0), size, "first marker byte");
        assert_rejected(&cipher, &part, &flip(h - 1), size, "last marker byte");
        assert_rejected(&cipher, &part, &flip(h), size, "first ciphertext byte");
        assert_rejected(&cipher, &part, &flip(h + sp + 1234), size, "ciphertext in package 1");
        assert_rejected(&cipher, &part, &flip(h + sp - 1), size, "tag of package 0");
        assert_rejected(&cipher, &part, &flip(stored.len() - 1), size, "tag of the final package");
        assert_rejected(&cipher, &part, &flip(h + 3 * sp + 10), size, "final package ciphertext");
        // Drop the marker, the final package, a middle package.
        assert_rejected(&cipher, &part, &stored[h..], size, "marker dropped");
        assert_rejected(&cipher, &part, &stored[..h + 3 * sp], size, "final package dropped");
        let mut dropped_middle = stored[..h + sp].to_vec();
        dropped_middle.extend_from_slice(&stored[h + 2 * sp..]);
        assert_rejected(&cipher, &part, &dropped_middle, size, "middle package dropped");
        // Swap two packages.
        let mut swapped = stored[..h].to_vec();
        swapped.extend_from_slice(&stored[h + sp..h + 2 * sp]);
        swapped.extend_from_slice(&stored[h..h + sp]);
        swapped.extend_from_slice(&stored[h + 2 * sp..]);
        assert_rejected(&cipher, &part, &swapped, size, "packages 0 and 1 swapped");
        // Append a package (a copy of the last one) or a stray byte.
        let mut appended = stored.clone();
        appended.extend_from_slice(&stored[h + 3 * sp..]);
        assert_rejected(&cipher, &part, &appended, size, "package appended");
        let mut extra_byte = stored.clone();
        extra_byte.push(0);
        assert_rejected(&cipher, &part, &extra_byte, size, "byte appended");
        // Truncate mid-package and at a package boundary.
        assert_rejected(&cipher, &part, &stored[..h + sp + 100], size, "truncated mid-package");
        assert_rejected(&cipher, &part, &stored[..h + 2 * sp], size, "truncated at a boundary");
        assert_rejected(&cipher, &part, &stored[..stored.len() - 1], size, "last byte cut");
    }

    #[test]
    fn recorded_size_must_match_the_data() {
        let cipher = cipher(SseMode::SseKms);
        let data = plaintext(2 * PACKAGE_SIZE + 10);
        let (part, stored, _) = encrypt(&cipher, &data, 4096);
        // A size cut to a package boundary makes a non-final package the final one; a size cut inside the last
        // package shortens its ciphertext; a larger size expects bytes that are not there.
        for size in [PACKAGE, 2 * PACKAGE, 2 * PACKAGE + 9, 2 * PACKAGE + 11, 3 * PACKAGE] {
            assert!(decrypt(&cipher, &part, &stored, size, 0..size, 4096).is_err(), "{size}");
        }
    }

    #[test]
    fn an_empty_part_is_one_authenticated_package() {
        let cipher = cipher(SseMode::SseC);
        let (part, stored, _) = encrypt(&cipher, &[], 1);
        assert_eq!(stored.len(), 32);
        assert_eq!(decrypt(&cipher, &part, &stored, 0, 0..0, 16).unwrap(), b"");
        assert!(decrypt(&cipher, &part, &stored[..16], 0, 0..0, 16).is_err(), "missing final package");
        for at in [3, 20] {
            let mut bad = stored.clone();
            bad[at] ^= 1;
            assert!(decrypt(&cipher, &part, &bad, 0, 0..0, 16).is_err(), "byte {at}");
        }
    }

    #[test]
    fn parts_do_not_open_as_other_parts() {
        let cipher = cipher(SseMode::SseC);
        let data = plaintext(1000);
        let (part, stored, _) = encrypt(&cipher, &data, 1000);
        let other_salt = cipher.encrypt_part(1).metadata().clone();
        let other_number = PartEncryption::new(part.layout(), 2, *part.salt());
        for wrong in [other_salt, other_number] {
            assert!(decrypt(&cipher, &wrong, &stored, 1000, 0..1000, 1000).is_err());
        }
        let other_object = ObjectCipher::new(ObjectKey::generate(), SseMode::SseC, None);
        assert!(decrypt(&other_object, &part, &stored, 1000, 0..1000, 1000).is_err());
    }

    #[test]
    fn etags_follow_the_mode() {
        let data = plaintext(70_000);
        let (_, _, s3) = encrypt(&cipher(SseMode::SseS3), &data, 70_000);
        assert_eq!(s3.etag, None);
        let (_, _, kms) = encrypt(&cipher(SseMode::SseKms), &data, 70_000);
        let (_, _, kms_again) = encrypt(&cipher(SseMode::SseKms), &data, 70_000);
        let etag = kms.etag.unwrap();
        assert_eq!(etag.len(), 32);
        assert!(etag.bytes().all(|b| b.is_ascii_hexdigit()));
        // A fresh part salt makes a fresh ETag, and it is never the MD5 of the plaintext.
        assert_ne!(Some(etag.clone()), kms_again.etag);
        use md5::Digest as _;
        assert_ne!(etag, hex::encode(md5::Md5::digest(&data)));
    }

    /// A size near a package boundary (where the off-by-ones live) or anywhere up to ~4.5 packages.
    fn part_size() -> impl proptest::strategy::Strategy<Value = u64> {
        use proptest::prelude::*;
        prop_oneof![(0..=4u64, -2..=2i64).prop_map(|(k, d)| (k * PACKAGE).saturating_add_signed(d)), 0..300_000u64]
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(64))]

        /// Random part layouts, write chunkings, read chunk lengths and object ranges: the decrypted bytes are always
        /// exactly the plaintext slice.
        #[test]
        fn any_layout_and_range_decrypts_to_the_plaintext_slice(
            sizes in proptest::collection::vec(part_size(), 1..5),
            write_chunk in 1..100_000usize,
            read_chunk in 1..400_000usize,
            start_frac in 0.0..=1.0f64,
            len_frac in 0.0..=1.0f64,
        ) {
            let cipher = cipher(SseMode::SseKms);
            let total: u64 = sizes.iter().sum();
            let object: Vec<u8> = (0..total).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
            // Encrypt the parts last to first: parts are independent.
            let mut offsets = vec![0u64];
            for size in &sizes {
                offsets.push(offsets.last().unwrap() + size);
            }
            let mut parts: Vec<_> = (0..sizes.len())
                .rev()
                .map(|i| {
                    let data = &object[offsets[i] as usize..offsets[i + 1] as usize];
                    let mut encryptor = cipher.encrypt_part(i as u32 + 1);
                    encryptor.declare_size(data.len() as u64).unwrap();
                    let metadata = encryptor.metadata().clone();
                    let mut stored = Vec::new();
                    for piece in data.chunks(write_chunk) {
                        encryptor.push(piece, &mut stored).unwrap();
                    }
                    let sealed = encryptor.finish(&mut stored).unwrap();
                    proptest::prop_assert_eq!(sealed.stored_size, stored.len() as u64);
                    proptest::prop_assert_eq!(plaintext_size(stored.len() as u64), Some(data.len() as u64));
                    Ok((metadata, stored))
                })
                .collect::<Result<_, proptest::test_runner::TestCaseError>>()?;
            parts.reverse();

            let start = (start_frac * total as f64) as u64;
            let end = start + (len_frac * (total - start) as f64) as u64;
            let mut out = Vec::new();
            for (i, (metadata, stored)) in parts.iter().enumerate() {
                let (lo, hi) = (start.max(offsets[i]), end.min(offsets[i + 1]));
                if lo >= hi && !(start == end && lo == hi) {
                    continue;
                }
                let range = lo - offsets[i]..hi - offsets[i];
                let decryptor = cipher.decrypt_part(metadata, sizes[i], range).unwrap();
                let r = decryptor.stored_range();
                open_chunks(&decryptor, &stored[r.start as usize..r.end as usize], read_chunk, &mut out).unwrap();
            }
            proptest::prop_assert!(out == object[start as usize..end as usize], "{}..{} of {:?}", start, end, sizes);
        }
    }

    /// Every field a reader takes from the record is bound: decrypting with any one of them changed fails, for
    /// the whole part and for a range of its first package alone (which format 1 did not catch).
    #[test]
    fn the_recorded_layout_is_bound_into_every_package() {
        let key = || ObjectKey::from_bytes(std::array::from_fn(|i| i as u8));
        let cipher = ObjectCipher::new(key(), SseMode::SseKms, None);
        let size = 3 * PACKAGE + 100;
        let data = plaintext(size as usize);
        let (part, stored, _) = encrypt(&cipher, &data, 70_000);
        assert_eq!(decrypt(&cipher, &part, &stored, size, 0..size, 1 << 20).unwrap(), data);
        assert_eq!(decrypt(&cipher, &part, &stored, size, 0..1, 1 << 20).unwrap(), &data[..1]);
        let fails = |cipher: &ObjectCipher, part: &PartEncryption, size: u64, what: &str| {
            for range in [0..size, 0..1, PACKAGE + 1..PACKAGE + 2] {
                assert!(decrypt(cipher, part, &stored, size, range.clone(), 1 << 20).is_err(), "{what}: {range:?}");
            }
        };
        // The part's plaintext size: one byte, or the final package (truncation with the size adjusted), off.
        for wrong in [size - 1, size + 1, 3 * PACKAGE, 2 * PACKAGE + 100, size + PACKAGE] {
            fails(&cipher, &part, wrong, &format!("size {wrong}"));
        }
        // The mode is not (the seal binds it: re-keying to another mode keeps the data).
        for mode in [SseMode::SseS3, SseMode::SseC] {
            let other_mode = ObjectCipher::new(key(), mode, None);
            assert_eq!(decrypt(&other_mode, &part, &stored, size, 0..size, 1 << 20).unwrap(), data);
        }
        // The part number (it also derives the key) and the format (format 1 has no marker nor associated data;
        // format 2 says "no part-list commitment" in its associated data).
        assert_eq!(part.layout(), Layout::V3);
        let renumbered = PartEncryption::new(Layout::V3, 2, *part.salt());
        fails(&cipher, &renumbered, size, "part number");
        fails(&cipher, &PartEncryption::new(Layout::V2, 1, *part.salt()), size, "format 2");
        let salt = base64_simd::STANDARD.encode_to_string(part.salt());
        let format_1 = PartEncryption::from_json(&format!(r#"{{"v":1,"part":1,"salt":"{salt}"}}"#)).unwrap();
        assert!(decrypt(&cipher, &format_1, &stored[16..], size, 0..size, 1 << 20).is_err(), "read as format 1");
        // The package size and each package's index and final flag: a package sealed for one place opens nowhere
        // else (tampering_is_detected moves packages); its associated data names all of them.
        let fields = "00000007000001020304050600010000";
        for (label, name) in [
            (PACKAGE_AAD_LABEL_V2, "636f666665722d7373652f76322f7061636b616765"),
            (PACKAGE_AAD_LABEL_V3, "636f666665722d7373652f76332f7061636b616765"),
        ] {
            let mut aad = PackageAad::new(label, 7, 0x0102_0304_0506);
            assert_eq!(hex::encode(aad.package(9, true)), format!("{name}{fields}0000000901"));
            assert_eq!(hex::encode(aad.package(10, false)), format!("{name}{fields}0000000a00"));
        }
    }

    #[test]
    fn declared_sizes_are_kept() {
        let cipher = cipher(SseMode::SseS3);
        let mut undeclared = cipher.encrypt_part(1);
        assert_eq!(undeclared.push(&plaintext(PACKAGE_SIZE + 1), &mut Vec::new()).unwrap_err().status(), 500);
        let mut short = cipher.encrypt_part(1);
        short.declare_size(10).unwrap();
        short.push(&plaintext(9), &mut Vec::new()).unwrap();
        assert_eq!(short.finish(&mut Vec::new()).unwrap_err().status(), 500);
        let mut long = cipher.encrypt_part(1);
        long.declare_size(10).unwrap();
        long.push(&plaintext(11), &mut Vec::new()).unwrap();
        assert_eq!(long.finish(&mut Vec::new()).unwrap_err().status(), 500);
        let mut twice = cipher.encrypt_part(1);
        twice.declare_size(10).unwrap();
        assert!(twice.declare_size(10).is_err());
    }

    /// Pinned in docs/encryption-format.md ("Package" vectors, format 2: SSE-C parts).
    #[test]
    fn package_test_vectors() {
        let cipher = cipher(SseMode::SseC);
        let run = |part_number: u32, data: &[u8]| {
            let mut encryptor = cipher.encrypt_part_with_salt(part_number, [0x5a; 16]);
            encryptor.declare_size(data.len() as u64).unwrap();
            let mut stored = Vec::new();
            encryptor.push(data, &mut stored).unwrap();
            let sealed = encryptor.finish(&mut stored).unwrap();
            (stored, sealed.etag.unwrap())
        };
        let marker = "89434f464645522d5353450d0a1a0a02";
        assert_eq!(hex::encode(ENCRYPTED_DATA_MARKER), marker);
        let mut aad = Layout::V2.aad(1, 13);
        assert_eq!(
            hex::encode(aad.package(0, true)),
            "636f666665722d7373652f76322f7061636b61676500000001000000000000000d000100000000000001"
        );
        let (empty, empty_etag) = run(1, b"");
        assert_eq!(hex::encode(&empty), format!("{marker}9d187432bf286f9e33150592581aa0d9"));
        assert_eq!(empty_etag, "c12872cdeb7cf89f649b7c587d42e288");
        let (hello, hello_etag) = run(1, b"Hello, world!");
        assert_eq!(hex::encode(&hello), format!("{marker}49c066587a20c0d40bd1cce50cec0eccb1c38e7306df716408825c0206"));
        assert_eq!(hello_etag, "594f1c8fc7477f5ea093374534ad5e27");
        let (big, big_etag) = run(1, &plaintext(PACKAGE_SIZE + 1));
        assert_eq!(big.len(), 16 + PACKAGE_SIZE + 1 + 32);
        assert_eq!(hex::encode(&big[16 + PACKAGE_SIZE..16 + PACKAGE_SIZE + 16]), "b910ff122dcc1dc8b1fab82bcc454895");
        assert_eq!(hex::encode(&big[16 + PACKAGE_SIZE + 16..]), "b0eff5f488d1a01e75d9401a4114def39d");
        assert_eq!(
            hex::encode(aws_lc_rs::digest::digest(&SHA256, &big)),
            "e0451faae0097bc4ceff13a8e395f1e9cc3e6d7e37ecfc3cf39e795356a60ee9"
        );
        assert_eq!(big_etag, "7f35d6985d85be00c43c4b3231f22110");
        // Each vector decrypts back.
        let part = |n| PartEncryption::new(Layout::V2, n, [0x5a; 16]);
        assert_eq!(decrypt(&cipher, &part(1), &hello, 13, 0..13, 1 << 20).unwrap(), b"Hello, world!");
        assert_eq!(
            decrypt(&cipher, &part(1), &big, PACKAGE + 1, 0..PACKAGE + 1, 1 << 20).unwrap(),
            plaintext(PACKAGE_SIZE + 1)
        );
    }

    /// Pinned in docs/encryption-format.md ("Package" vectors, format 3: SSE-S3 and SSE-KMS parts). The same key,
    /// salt and data as format 2: only the associated data's label differs, so the ciphertext stays and the tags
    /// change. (Checked against an independent implementation with Python's `cryptography`.)
    #[test]
    fn format_3_test_vectors() {
        let cipher = cipher(SseMode::SseS3);
        let run = |data: &[u8]| {
            let mut encryptor = cipher.encrypt_part_with_salt(1, [0x5a; 16]);
            assert_eq!(encryptor.metadata().layout(), Layout::V3);
            encryptor.declare_size(data.len() as u64).unwrap();
            let mut stored = Vec::new();
            encryptor.push(data, &mut stored).unwrap();
            encryptor.finish(&mut stored).unwrap();
            stored
        };
        let marker = "89434f464645522d5353450d0a1a0a02";
        assert_eq!(hex::encode(run(b"")), format!("{marker}7bfd106c879aacc866a6d22647cb0d63"));
        let hello = run(b"Hello, world!");
        assert_eq!(hex::encode(&hello), format!("{marker}49c066587a20c0d40bd1cce50c930ba0f279d3b732b09274960b3e7549"));
        assert_eq!(
            hex::encode(aws_lc_rs::digest::digest(&SHA256, &run(&plaintext(PACKAGE_SIZE + 1)))),
            "f601e6c282b30e8239591cbf8b9e77e9c9c0afe6c679d2370a7868404f07d6fb"
        );
        let part = PartEncryption::new(Layout::V3, 1, [0x5a; 16]);
        assert_eq!(decrypt(&cipher, &part, &hello, 13, 0..13, 1 << 20).unwrap(), b"Hello, world!");
        let as_format_2 = PartEncryption::new(Layout::V2, 1, [0x5a; 16]);
        assert!(decrypt(&cipher, &as_format_2, &hello, 13, 0..13, 1 << 20).is_err());
    }

    /// Data written in format 1 (the vectors docs/encryption-format.md keeps for it) still reads, and only as
    /// format 1.
    #[test]
    fn format_1_test_vectors_still_read() {
        let cipher = cipher(SseMode::SseC);
        let part = PartEncryption::from_json(r#"{"v":1,"part":1,"salt":"WlpaWlpaWlpaWlpaWlpaWg=="}"#).unwrap();
        let empty = hex::decode("51602bbe427edc368e350ca12f8e966f").unwrap();
        assert_eq!(decrypt(&cipher, &part, &empty, 0, 0..0, 1 << 20).unwrap(), b"");
        let hello = hex::decode("49c066587a20c0d40bd1cce50cc062884c8c31fab07fe4cdf0a896ad0a").unwrap();
        assert_eq!(decrypt(&cipher, &part, &hello, 13, 0..13, 1 << 20).unwrap(), b"Hello, world!");
        assert_eq!(decrypt(&cipher, &part, &hello, 13, 5..7, 1).unwrap(), b", ");
        // The 65 537-byte vector, sealed as format 1 did (no associated data, no marker), pinned by its digest.
        let key = cipher.key.part_key(&[0x5a; 16], 1);
        let data = plaintext(PACKAGE_SIZE + 1);
        let mut big = Vec::new();
        for (index, package) in data.chunks(PACKAGE_SIZE).enumerate() {
            let start = big.len();
            big.extend_from_slice(package);
            let tag = key.seal(index as u32, index == 1, &[], &mut big[start..]);
            big.extend_from_slice(&tag);
        }
        assert_eq!(
            hex::encode(aws_lc_rs::digest::digest(&SHA256, &big)),
            "bd9ccf4643793aaf0cef03c81fdc88c97833a46bc7212c0aee19cc085ac2f815"
        );
        let size = PACKAGE + 1;
        assert!(decrypt(&cipher, &part, &big, size, 0..size, 1 << 20).unwrap() == data);
        assert!(decrypt(&cipher, &part, &big, size, PACKAGE..size, 1 << 20).unwrap() == data[PACKAGE_SIZE..]);
        assert_eq!(part.stored_size(size), big.len() as u64);
        // Format-1 data read as format 2 fails: no marker, and packages without associated data.
        let as_format_2 = PartEncryption::new(Layout::V2, 1, [0x5a; 16]);
        assert!(decrypt(&cipher, &as_format_2, &hello, 13, 0..13, 1 << 20).is_err());
    }
}
