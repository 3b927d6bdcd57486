//! Checksums of stored data files: a CRC32C of every [`READ_CHUNK`] of a file's bytes (the last chunk shorter),
//! computed while the data is staged and kept in the signed record that names the file. Reads check each chunk
//! before handing it on, so a flipped or lost byte ends a read with an error instead of reaching a client.
//!
//! They catch damage (bad disks, bad copies, edits); a deliberate forger with write access to the data directory
//! can make a file with the same CRCs. Encrypted data is authenticated by its own AEAD besides.

use std::io;
use std::sync::Arc;

use base64_simd::STANDARD as BASE64;
use crc_fast::{CrcAlgorithm, Digest};
use serde::{Deserialize, Serialize};

use crate::reader::READ_CHUNK;

/// The CRC32Cs of a data file's chunks as a record keeps them: base64 of the 4-byte big-endian values in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct ChunkChecksums(String);

impl ChunkChecksums {
    /// The CRCs, checked to be exactly one per chunk of a file of `len` bytes.
    pub(crate) fn decode(&self, len: u64) -> io::Result<Arc<[u32]>> {
        let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_owned());
        let bytes = BASE64.decode_to_vec(&self.0).map_err(|_| invalid("chunk checksums are not base64"))?;
        let sums: Arc<[u32]> =
            bytes.chunks_exact(4).map(|crc| u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]])).collect();
        if bytes.len() % 4 != 0 || sums.len() as u64 != len.div_ceil(READ_CHUNK as u64) {
            return Err(invalid("the chunk checksums do not match the data's recorded size"));
        }
        Ok(sums)
    }
}

/// The CRC32C of one chunk.
pub(crate) fn chunk_checksum(chunk: &[u8]) -> u32 {
    crc_fast::checksum(CrcAlgorithm::Crc32Iscsi, chunk) as u32
}

/// Computes [`ChunkChecksums`] over data arriving in pieces of any size.
#[derive(Debug)]
pub(crate) struct ChunkSummer {
    sums: Vec<u8>,
    digest: Digest,
    /// Bytes of the current chunk seen so far.
    filled: usize,
}

impl ChunkSummer {
    pub(crate) fn new() -> Self {
        ChunkSummer { sums: Vec::new(), digest: Digest::new(CrcAlgorithm::Crc32Iscsi), filled: 0 }
    }

    pub(crate) fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let taken = (READ_CHUNK - self.filled).min(data.len());
            self.digest.update(&data[..taken]);
            self.filled += taken;
            data = &data[taken..];
            if self.filled == READ_CHUNK {
                self.end_chunk();
            }
        }
    }

    fn end_chunk(&mut self) {
        let crc = self.digest.finalize_reset() as u32;
        self.sums.extend_from_slice(&crc.to_be_bytes());
        self.filled = 0;
    }

    pub(crate) fn finish(mut self) -> ChunkChecksums {
        if self.filled > 0 {
            self.end_chunk();
        }
        ChunkChecksums(BASE64.encode_to_string(&self.sums))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_of_any_size_give_one_crc_per_chunk() {
        let data: Vec<u8> = (0..READ_CHUNK * 2 + 5).map(|i| (i * 7 % 251) as u8).collect();
        for piece in [1, 1000, READ_CHUNK - 1, READ_CHUNK, READ_CHUNK + 3] {
            let mut summer = ChunkSummer::new();
            data.chunks(piece).for_each(|p| summer.update(p));
            let sums = summer.finish().decode(data.len() as u64).unwrap();
            let expected: Vec<u32> = data.chunks(READ_CHUNK).map(chunk_checksum).collect();
            assert_eq!(&sums[..], &expected[..], "pieces of {piece}");
        }
        assert_eq!(ChunkSummer::new().finish().decode(0).unwrap().len(), 0);
        assert!(ChunkSummer::new().finish().decode(1).is_err(), "a count that does not match the size");
    }
}
