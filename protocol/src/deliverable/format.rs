//! The wire layout of a sealed file (PROTOCOL.md §4): the sizes of its parts, the chunk size, the IV
//! counter and where each chunk lies in a file of a given length.

use std::io::{self, Read, Seek, SeekFrom};

use super::OpenError;

/// Length of the tag signature at the front of the file.
pub const TAG_SIG_LEN: usize = 65;
/// Length of the initial AES-GCM IV.
pub const IV_LEN: usize = 12;
/// Length of each chunk's AES-GCM tag.
pub const TAG_LEN: usize = 16;
/// Bytes before the first chunk: tag signature and IV (77).
pub const HEADER_LEN: usize = TAG_SIG_LEN + IV_LEN;
/// Plaintext bytes per chunk on the wire (64 MiB); the official client's decryptor has it fixed.
pub const WIRE_CHUNK_LEN: usize = 64 * 1024 * 1024;
/// The top-level folder of every zip entry.
pub const ZIP_ROOT: &str = "output_model";

pub(crate) const HEADER_LEN_U64: u64 = HEADER_LEN as u64;
pub(crate) const TAG_LEN_U64: u64 = TAG_LEN as u64;
/// Read buffer for the model files being zipped.
pub(crate) const READ_BUF_LEN: usize = 1024 * 1024;

/// Plaintext bytes per chunk. The wire format is [`ChunkLen::WIRE`] (64 MiB, fixed in the official
/// client); other sizes exist so tests and fuzzers can cover many chunks with small files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLen(usize);

impl ChunkLen {
    /// 64 MiB, the only size the official client reads.
    pub const WIRE: ChunkLen = ChunkLen(WIRE_CHUNK_LEN);

    /// A non-standard chunk size between 1 byte and 64 MiB, for tests. Files sealed with it cannot be
    /// opened by the official client.
    pub fn for_tests(len: usize) -> Option<ChunkLen> {
        (1..=WIRE_CHUNK_LEN).contains(&len).then_some(ChunkLen(len))
    }

    /// The size in bytes.
    pub fn get(self) -> usize {
        self.0
    }
}

impl Default for ChunkLen {
    fn default() -> Self {
        Self::WIRE
    }
}

/// Add `n` to a 12-byte big-endian counter (wrapping, as the official client increments it).
pub(crate) fn iv_add(iv: &mut [u8; IV_LEN], n: u64) {
    let mut carry = u128::from(n);
    for byte in iv.iter_mut().rev() {
        if carry == 0 {
            break;
        }
        let sum = u128::from(*byte).wrapping_add(carry & 0xff);
        *byte = (sum & 0xff) as u8;
        carry = (carry >> 8).wrapping_add(sum >> 8);
    }
}

/// Where the chunks of a sealed file of a given length lie.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    /// Length of the whole file.
    pub(crate) file_len: u64,
    /// Ciphertext + tag length of a full chunk.
    full: u64,
    /// Number of chunks.
    pub(crate) chunks: u64,
    /// Ciphertext + tag length of the last chunk.
    last: u64,
}

impl Layout {
    /// The layout of a file of `file_len` bytes, or why no sealed file has that length.
    pub(crate) fn of(file_len: u64, chunk_len: ChunkLen) -> Result<Layout, OpenError> {
        let truncated = |detail| OpenError::Truncated {
            len: file_len,
            detail,
        };
        let body = file_len.checked_sub(HEADER_LEN_U64).ok_or(truncated(
            "shorter than the 77-byte header (tag signature and IV)",
        ))?;
        let full = (chunk_len.get() as u64).saturating_add(TAG_LEN_U64);
        let whole = body.checked_div(full).unwrap_or(0);
        let rem = body.checked_rem(full).unwrap_or(0);
        let (chunks, last) = match (whole, rem) {
            (0, 0) => return Err(truncated("no chunk after the header")),
            (w, 0) => (w, full),
            (_, r) if r < TAG_LEN_U64 => {
                return Err(truncated("the last chunk is shorter than its 16-byte tag"));
            }
            (w, r) => (w.saturating_add(1), r),
        };
        Ok(Layout {
            file_len,
            full,
            chunks,
            last,
        })
    }

    /// Where chunk `index` starts.
    pub(crate) fn offset(&self, index: u64) -> u64 {
        index
            .saturating_mul(self.full)
            .saturating_add(HEADER_LEN_U64)
    }

    /// Ciphertext + tag length of chunk `index`.
    pub(crate) fn len(&self, index: u64) -> u64 {
        if index.saturating_add(1) == self.chunks {
            self.last
        } else {
            self.full
        }
    }

    /// Ciphertext + tag length of the largest chunk (the buffer to allocate).
    pub(crate) fn largest(&self) -> u64 {
        if self.chunks > 1 {
            self.full
        } else {
            self.last
        }
    }
}

/// The 65 tag-signature bytes and the IV at the front of a sealed stream.
pub(crate) fn read_header<R: Read + Seek>(
    src: &mut R,
) -> io::Result<([u8; TAG_SIG_LEN], [u8; IV_LEN])> {
    let mut sig = [0u8; TAG_SIG_LEN];
    let mut iv = [0u8; IV_LEN];
    src.seek(SeekFrom::Start(0))?;
    src.read_exact(&mut sig)?;
    src.read_exact(&mut iv)?;
    Ok((sig, iv))
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;

    #[test]
    fn iv_counter_is_big_endian_with_carry() {
        let mut iv = [0u8; 12];
        iv[11] = 0xff;
        iv[10] = 0xff;
        iv_add(&mut iv, 1);
        assert_eq!(iv[9..], [1, 0, 0]);
        let mut iv = [0xffu8; 12];
        iv_add(&mut iv, 1);
        assert_eq!(iv, [0u8; 12]);
        let mut iv = [0u8; 12];
        iv_add(&mut iv, 0x0102);
        assert_eq!(iv[10..], [1, 2]);
    }

    #[test]
    fn layout_rules() {
        let c = ChunkLen::for_tests(10).unwrap();
        assert!(matches!(
            Layout::of(76, c),
            Err(OpenError::Truncated { .. })
        ));
        assert!(matches!(
            Layout::of(77, c),
            Err(OpenError::Truncated { .. })
        ));
        assert!(matches!(
            Layout::of(77 + 15, c),
            Err(OpenError::Truncated { .. })
        ));
        let l = Layout::of(77 + 16, c).unwrap();
        assert_eq!((l.chunks, l.last), (1, 16));
        let l = Layout::of(77 + 26, c).unwrap();
        assert_eq!((l.chunks, l.last), (1, 26));
        let l = Layout::of(77 + 26 + 17, c).unwrap();
        assert_eq!((l.chunks, l.last), (2, 17));
        assert!(matches!(
            Layout::of(77 + 26 + 5, c),
            Err(OpenError::Truncated { .. })
        ));
    }
}
