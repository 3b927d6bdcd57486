//! The data format: each part is a sequence of AES-256-GCM packages of 64 KiB plaintext.
//!
//! A part of `n` plaintext bytes is `max(1, ceil(n / 64 KiB))` packages; all are full except the last, which holds
//! the rest (and is empty only for an empty part). Package `i` is `ciphertext || tag` sealed under the part key with
//! nonce `prefix || u32be(i) || final flag`, so a package read at another position, a dropped, appended or
//! reordered package, or a stream cut at a package boundary fails to authenticate. Parts are independent (their
//! keys come from the object key, a random part salt and the part number), so they can be written in any order.
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

/// Plaintext bytes per package.
pub const PACKAGE_SIZE: usize = 64 * 1024;
const PACKAGE: u64 = PACKAGE_SIZE as u64;
const STORED_PACKAGE: u64 = PACKAGE + TAG_LEN as u64;
/// Package indexes are 32-bit in the nonce: a part holds at most 2^32 packages (256 TiB).
const MAX_PACKAGES: u64 = 1 << 32;
const ETAG_LABEL: &[u8] = b"coffer-sse/v1/etag";

fn package_count(plaintext_size: u64) -> u64 {
    plaintext_size.div_ceil(PACKAGE).max(1)
}

/// Bytes on disk for a part of `plaintext_size` bytes: one 16-byte tag per package.
pub fn stored_size(plaintext_size: u64) -> u64 {
    plaintext_size + TAG_LEN as u64 * package_count(plaintext_size)
}

/// The plaintext size of a part stored in `stored_size` bytes, or `None` if no part has that stored size.
pub fn plaintext_size(stored_size: u64) -> Option<u64> {
    let packages = stored_size.div_ceil(STORED_PACKAGE);
    let last = stored_size.checked_sub(packages.checked_sub(1)? * STORED_PACKAGE)?;
    // Only a part's single package may be empty.
    let min_last = if packages == 1 { TAG_LEN as u64 } else { TAG_LEN as u64 + 1 };
    (last >= min_last).then(|| stored_size - TAG_LEN as u64 * packages)
}

/// Stored length of package `index` of a part whose last package is `final_index`.
fn stored_package_len(plaintext_size: u64, final_index: u64, index: u64) -> usize {
    let plaintext = if index < final_index { PACKAGE } else { plaintext_size - index * PACKAGE };
    usize::try_from(plaintext).expect("a package is at most 64 KiB") + TAG_LEN
}

/// The key of one object, ready to encrypt and decrypt its parts.
#[derive(Debug)]
pub struct ObjectCipher {
    key: ObjectKey,
    mode: SseMode,
}

impl ObjectCipher {
    pub(crate) fn new(key: ObjectKey, mode: SseMode) -> Self {
        Self { key, mode }
    }

    pub(crate) fn object_key(&self) -> &ObjectKey {
        &self.key
    }

    pub fn mode(&self) -> SseMode {
        self.mode
    }

    /// An encryptor for part `part_number` (1 for a single PUT) under a fresh random part salt. Uploading the same
    /// part number again gets a new salt, hence a new key: nonces never repeat.
    pub fn encrypt_part(&self, part_number: u32) -> PartEncryptor {
        self.encrypt_part_with_salt(part_number, random_bytes())
    }

    fn encrypt_part_with_salt(&self, part_number: u32, salt: [u8; 16]) -> PartEncryptor {
        PartEncryptor {
            key: self.key.part_key(&salt, part_number),
            metadata: PartEncryption::new(part_number, salt),
            mode: self.mode,
            pending: Vec::with_capacity(PACKAGE_SIZE),
            packages: 0,
            plaintext_size: 0,
            tags: etag_digest(),
        }
    }

    /// A decryptor for the plaintext `range` of a part of `plaintext_size` bytes described by `part`.
    /// Read [`PartDecryptor::stored_range`] of the part's stored bytes and push them through it.
    pub fn decrypt_part(&self, part: &PartEncryption, plaintext_size: u64, range: Range<u64>) -> Result<PartDecryptor> {
        PartDecryptor::new(self.key.part_key(part.salt(), part.part_number()), plaintext_size, range)
    }
}

fn etag_digest() -> Context {
    let mut digest = Context::new(&SHA256);
    digest.update(ETAG_LABEL);
    digest
}

/// Encrypts one part as a stream: push plaintext chunks of any size, then `finish`.
pub struct PartEncryptor {
    key: PartKey,
    metadata: PartEncryption,
    mode: SseMode,
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

    /// Encrypts `plaintext`, appending the ciphertext of every package completed so far to `out`.
    pub fn push(&mut self, mut plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let sealable = self.pending.len() + plaintext.len();
        out.reserve(sealable + (sealable / PACKAGE_SIZE + 1) * TAG_LEN);
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
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<SealedPart> {
        out.reserve(self.pending.len() + TAG_LEN);
        self.seal_pending(true, out)?;
        let etag = (!self.etag_is_plaintext_md5()).then(|| hex::encode(&self.tags.finish().as_ref()[..16]));
        Ok(SealedPart {
            plaintext_size: self.plaintext_size,
            stored_size: self.plaintext_size + TAG_LEN as u64 * self.packages,
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
        let index = u32::try_from(self.packages)
            .map_err(|_| SseError::invalid_argument("The part is too large to encrypt (over 256 TiB)"))?;
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self.key.seal(index, last, &mut out[start..]);
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
/// early — in chunks of whole packages ([`PartDecryptor::chunk_len`]) and hands each chunk, with its offset in that
/// range, to [`PartDecryptor::open_in_place`], which decrypts it where it lies and says which of its bytes are
/// requested plaintext: no package is copied. Chunks are independent, so they can be opened in any order and on
/// any thread.
pub struct PartDecryptor {
    key: PartKey,
    plaintext_size: u64,
    final_index: u64,
    first_index: u64,
    last_index: u64,
    /// The requested plaintext range of the part.
    range: Range<u64>,
}

impl PartDecryptor {
    fn new(key: PartKey, plaintext_size: u64, range: Range<u64>) -> Result<Self> {
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
        Ok(Self { key, plaintext_size, final_index, first_index, last_index, range })
    }

    /// The byte range of the part's stored data to read and open with this decryptor.
    pub fn stored_range(&self) -> Range<u64> {
        let last_len = stored_package_len(self.plaintext_size, self.final_index, self.last_index) as u64;
        self.first_index * STORED_PACKAGE..self.last_index * STORED_PACKAGE + last_len
    }

    /// The chunk length to read the stored range in: as many whole stored packages as fit in `max` bytes (at least
    /// one). Every chunk but the last has this length; the last one ends with the range.
    pub fn chunk_len(&self, max: usize) -> usize {
        let stored_package = STORED_PACKAGE as usize;
        (max / stored_package).max(1) * stored_package
    }

    /// Authenticates and decrypts, in place, the whole stored packages in `chunk`, which starts `offset` bytes into
    /// [`PartDecryptor::stored_range`], and returns the byte ranges of `chunk` that are requested plaintext (tags
    /// and bytes outside the range left out). Fails on a package that does not authenticate, a chunk that does not
    /// start at a package or ends inside one, and bytes past the range; on failure `chunk` holds nothing the caller
    /// may use.
    pub fn open_in_place(&self, offset: u64, chunk: &mut [u8]) -> Result<Vec<Range<usize>>> {
        let misaligned = || SseError::internal("A read of encrypted data did not cover whole packages");
        if !offset.is_multiple_of(STORED_PACKAGE) {
            return Err(misaligned());
        }
        let mut index = self.first_index + offset / STORED_PACKAGE;
        let mut plaintext = Vec::with_capacity(chunk.len().div_ceil(STORED_PACKAGE as usize));
        let mut at = 0;
        while at < chunk.len() {
            if index > self.last_index {
                return Err(SseError::corrupted_data());
            }
            let package_len = stored_package_len(self.plaintext_size, self.final_index, index);
            let package = chunk.get_mut(at..at + package_len).ok_or_else(misaligned)?;
            let (ciphertext, tag) = package.split_at_mut(package_len - TAG_LEN);
            let nonce_index = u32::try_from(index).expect("package count checked against MAX_PACKAGES");
            if !self.key.open(nonce_index, index == self.final_index, tag, ciphertext) {
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
        ObjectCipher::new(ObjectKey::from_bytes(std::array::from_fn(|i| i as u8)), mode)
    }

    fn plaintext(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// Encrypts `data` pushed in chunks of `chunk` bytes.
    fn encrypt(cipher: &ObjectCipher, data: &[u8], chunk: usize) -> (PartEncryption, Vec<u8>, SealedPart) {
        let mut encryptor = cipher.encrypt_part(1);
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
        let chunk_len = decryptor.chunk_len(max_chunk);
        for (i, piece) in stored.chunks(chunk_len).enumerate() {
            let mut chunk = piece.to_vec();
            for plaintext in decryptor.open_in_place((i * chunk_len) as u64, &mut chunk)? {
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
        assert_eq!(stored_size(0), 16);
        assert_eq!(stored_size(1), 17);
        assert_eq!(stored_size(PACKAGE), PACKAGE + 16);
        assert_eq!(stored_size(PACKAGE + 1), PACKAGE + 1 + 32);
        for size in (0..4 * PACKAGE + 3).step_by(997).chain([PACKAGE - 1, PACKAGE, PACKAGE + 1, 2 * PACKAGE]) {
            assert_eq!(plaintext_size(stored_size(size)), Some(size), "{size}");
        }
        // Sizes no part can have: nothing, a bare partial tag, an empty second package.
        for bad in [0, 1, 15, STORED_PACKAGE + 1, STORED_PACKAGE + 16, 2 * STORED_PACKAGE + 16] {
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
        // Package i's plaintext starts at i * STORED_PACKAGE; the range skips 5 bytes and stops 3 short.
        let (sp, p) = (STORED_PACKAGE as usize, PACKAGE_SIZE);
        let mut chunk = stored.clone();
        let ranges = decryptor.open_in_place(0, &mut chunk).unwrap();
        assert_eq!(ranges, vec![5..p, sp..sp + p, 2 * sp..2 * sp + p, 3 * sp..3 * sp + 7]);
        let joined: Vec<u8> = ranges.into_iter().flat_map(|r| chunk[r].to_vec()).collect();
        assert!(joined == data[5..size as usize - 3]);
        // Chunks are independent: the last two packages first, then the first two.
        let mut tail = stored[2 * sp..].to_vec();
        assert_eq!(decryptor.open_in_place(2 * sp as u64, &mut tail).unwrap(), vec![0..p, sp..sp + 7]);
        let mut head = stored[..2 * sp].to_vec();
        assert_eq!(decryptor.open_in_place(0, &mut head).unwrap(), vec![5..p, sp..sp + p]);
        // A chunk that ends inside a package or starts inside one is refused.
        let mut partial = stored[..sp + 100].to_vec();
        assert_eq!(decryptor.open_in_place(0, &mut partial).unwrap_err().status(), 500);
        let mut shifted = stored[1..sp + 1].to_vec();
        assert_eq!(decryptor.open_in_place(1, &mut shifted).unwrap_err().status(), 500);
        // A package opened at another position does not authenticate.
        let mut moved = stored[sp..2 * sp].to_vec();
        assert!(decryptor.open_in_place(0, &mut moved).is_err());
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
        assert_eq!(at(0..1), 0..STORED_PACKAGE);
        assert_eq!(at(PACKAGE..PACKAGE + 1), STORED_PACKAGE..2 * STORED_PACKAGE);
        assert_eq!(at(PACKAGE - 1..PACKAGE + 1), 0..2 * STORED_PACKAGE);
        assert_eq!(at(size - 1..size), 10 * STORED_PACKAGE..10 * STORED_PACKAGE + 5 + 16);
        assert_eq!(at(0..size), 0..stored_size(size));
        // An empty range still authenticates one package; the end of a part reads the final one.
        assert_eq!(at(size..size), 10 * STORED_PACKAGE..10 * STORED_PACKAGE + 21);
        let empty = cipher.decrypt_part(&part, 0, 0..0).unwrap().stored_range();
        assert_eq!(empty, 0..16);
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
        // One flipped byte in a ciphertext, in a tag, in the final package.
        assert_rejected(&cipher, &part, &flip(0), size, "first ciphertext byte");
        assert_rejected(&cipher, &part, &flip(sp + 1234), size, "ciphertext in package 1");
        assert_rejected(&cipher, &part, &flip(sp - 1), size, "tag of package 0");
        assert_rejected(&cipher, &part, &flip(stored.len() - 1), size, "tag of the final package");
        assert_rejected(&cipher, &part, &flip(3 * sp + 10), size, "final package ciphertext");
        // Drop the final package, drop a middle package.
        assert_rejected(&cipher, &part, &stored[..3 * sp], size, "final package dropped");
        let mut dropped_middle = stored[..sp].to_vec();
        dropped_middle.extend_from_slice(&stored[2 * sp..]);
        assert_rejected(&cipher, &part, &dropped_middle, size, "middle package dropped");
        // Swap two packages.
        let mut swapped = stored[sp..2 * sp].to_vec();
        swapped.extend_from_slice(&stored[..sp]);
        swapped.extend_from_slice(&stored[2 * sp..]);
        assert_rejected(&cipher, &part, &swapped, size, "packages 0 and 1 swapped");
        // Append a package (a copy of the last one) or a stray byte.
        let mut appended = stored.clone();
        appended.extend_from_slice(&stored[3 * sp..]);
        assert_rejected(&cipher, &part, &appended, size, "package appended");
        let mut extra_byte = stored.clone();
        extra_byte.push(0);
        assert_rejected(&cipher, &part, &extra_byte, size, "byte appended");
        // Truncate mid-package and at a package boundary.
        assert_rejected(&cipher, &part, &stored[..sp + 100], size, "truncated mid-package");
        assert_rejected(&cipher, &part, &stored[..2 * sp], size, "truncated at a boundary");
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
        assert_eq!(stored.len(), 16);
        assert_eq!(decrypt(&cipher, &part, &stored, 0, 0..0, 16).unwrap(), b"");
        assert!(decrypt(&cipher, &part, &[], 0, 0..0, 16).is_err(), "missing final package");
        let mut bad = stored.clone();
        bad[3] ^= 1;
        assert!(decrypt(&cipher, &part, &bad, 0, 0..0, 16).is_err());
    }

    #[test]
    fn parts_do_not_open_as_other_parts() {
        let cipher = cipher(SseMode::SseC);
        let data = plaintext(1000);
        let (part, stored, _) = encrypt(&cipher, &data, 1000);
        let other_salt = cipher.encrypt_part(1).metadata().clone();
        let other_number = PartEncryption::new(2, *part.salt());
        for wrong in [other_salt, other_number] {
            assert!(decrypt(&cipher, &wrong, &stored, 1000, 0..1000, 1000).is_err());
        }
        let other_object = ObjectCipher::new(ObjectKey::generate(), SseMode::SseC);
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

    /// Pinned in docs/encryption-format.md ("Package" vectors).
    #[test]
    fn package_test_vectors() {
        let cipher = cipher(SseMode::SseC);
        let run = |data: &[u8]| {
            let mut encryptor = cipher.encrypt_part_with_salt(1, [0x5a; 16]);
            let mut stored = Vec::new();
            encryptor.push(data, &mut stored).unwrap();
            let sealed = encryptor.finish(&mut stored).unwrap();
            (stored, sealed.etag.unwrap())
        };
        let (empty, empty_etag) = run(b"");
        assert_eq!(hex::encode(&empty), "51602bbe427edc368e350ca12f8e966f");
        assert_eq!(empty_etag, "95ec2932d5a3c7fd67a054f44bd68233");
        let (hello, hello_etag) = run(b"Hello, world!");
        assert_eq!(hello_etag, "4f76602e52a01a949d16677ae1a730a4");
        assert_eq!(hex::encode(&hello), "49c066587a20c0d40bd1cce50cc062884c8c31fab07fe4cdf0a896ad0a");
        let (big, big_etag) = run(&plaintext(PACKAGE_SIZE + 1));
        assert_eq!(big.len(), PACKAGE_SIZE + 1 + 32);
        assert_eq!(hex::encode(&big[PACKAGE_SIZE..PACKAGE_SIZE + 16]), "819d1c86a480abddcc7475140c169abb");
        assert_eq!(hex::encode(&big[PACKAGE_SIZE + 16..]), "b0d420fdc73effc9e04114a44e2138c8d8");
        assert_eq!(
            hex::encode(aws_lc_rs::digest::digest(&SHA256, &big)),
            "bd9ccf4643793aaf0cef03c81fdc88c97833a46bc7212c0aee19cc085ac2f815"
        );
        assert_eq!(big_etag, "e37fafadbfe3f5ef48b42f415024912a");
    }
}
