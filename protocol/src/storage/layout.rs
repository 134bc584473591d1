//! Chunk, segment and flow-padding arithmetic (PROTOCOL.md §6).

use super::{CHUNK_SIZE, SEGMENT_CHUNKS, StorageError};

const CHUNK: u64 = CHUNK_SIZE as u64;
const SEG_CHUNKS: u64 = SEGMENT_CHUNKS as u64;

/// How a file of a given size is laid out in the 0G flow: chunk count and flow padding.
///
/// ```
/// use sealtune_protocol::storage::Layout;
///
/// // 17 chunks: the next power of two is 32, so pad to a multiple of 32 / 16 = 2 chunks.
/// let layout = Layout::new(17 * 256)?;
/// assert_eq!((layout.chunks(), layout.padded_chunks()), (17, 18));
/// # Ok::<(), sealtune_protocol::storage::StorageError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    size: u64,
    chunks: u64,
    padded_chunks: u64,
}

impl Layout {
    /// The layout of a file of `size` bytes; empty files and sizes whose padded chunk count
    /// overflows 64 bits are errors.
    pub fn new(size: u64) -> Result<Self, StorageError> {
        if size == 0 {
            return Err(StorageError::EmptyInput);
        }
        let chunks = size.div_ceil(CHUNK);
        let pow2 = chunks
            .checked_next_power_of_two()
            .ok_or(StorageError::TooLarge { size })?;
        let padded_chunks = if pow2 == chunks {
            chunks
        } else {
            let unit = if pow2 >= 16 { pow2 / 16 } else { 1 };
            // ≤ pow2, so no overflow.
            chunks.div_ceil(unit).saturating_mul(unit)
        };
        Ok(Self {
            size,
            chunks,
            padded_chunks,
        })
    }

    /// The file size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of 256-byte chunks holding data (the last one zero-padded).
    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    /// Number of chunks after flow padding with all-zero chunks.
    pub fn padded_chunks(&self) -> u64 {
        self.padded_chunks
    }

    /// Number of segments holding data: the segments a storage node serves.
    pub fn segments(&self) -> u64 {
        self.chunks.div_ceil(SEG_CHUNKS)
    }

    /// Number of segments after flow padding: the leaves of the tree over segment roots.
    pub fn padded_segments(&self) -> u64 {
        self.padded_chunks.div_ceil(SEG_CHUNKS)
    }

    /// Chunks of segment `index` after flow padding (1024 except maybe for the last), or
    /// `None` past the padded end.
    pub fn padded_segment_chunks(&self, index: u64) -> Option<u64> {
        let start = index.checked_mul(SEG_CHUNKS)?;
        let left = self.padded_chunks.checked_sub(start).filter(|&n| n > 0)?;
        Some(left.min(SEG_CHUNKS))
    }

    /// Data bytes of segment `index` (without any padding), or `None` past the data.
    pub fn segment_data_len(&self, index: u64) -> Option<u64> {
        let start = index.checked_mul(SEG_CHUNKS)?.checked_mul(CHUNK)?;
        let left = self.size.checked_sub(start).filter(|&n| n > 0)?;
        Some(left.min(SEG_CHUNKS * CHUNK))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn padded(chunks: u64) -> u64 {
        Layout::new(chunks * CHUNK).unwrap().padded_chunks()
    }

    #[test]
    fn powers_of_two_are_not_padded() {
        for k in 0..40 {
            assert_eq!(padded(1 << k), 1 << k);
        }
    }

    #[test]
    fn fewer_than_16_chunks_are_not_padded() {
        for c in 1..=16 {
            assert_eq!(padded(c), c);
        }
    }

    #[test]
    fn above_16_chunks_pad_to_a_sixteenth_of_the_next_power_of_two() {
        assert_eq!(padded(17), 18);
        assert_eq!(padded(33), 36);
        assert_eq!(padded(1025), 1152);
        // 4 MiB + 1 chunk: padding adds whole segments.
        assert_eq!(padded(16385), 18432);
    }

    #[test]
    fn empty_input_is_an_error_and_the_largest_size_is_not() {
        assert!(matches!(Layout::new(0), Err(StorageError::EmptyInput)));
        // The largest size still has a layout: 2^56 chunks, a power of two.
        let max = Layout::new(u64::MAX).unwrap();
        assert_eq!(max.padded_chunks(), 1 << 56);
    }

    #[test]
    fn segment_lengths() {
        let l = Layout::new(2 * 262_144 + 1).unwrap();
        assert_eq!(l.segments(), 3);
        assert_eq!(l.segment_data_len(2), Some(1));
        assert_eq!(l.segment_data_len(3), None);
        // 2049 chunks -> P = 4096, unit 256 -> 2304 chunks = 2.25 segments.
        assert_eq!(l.padded_chunks(), 2304);
        assert_eq!(l.padded_segments(), 3);
        assert_eq!(l.padded_segment_chunks(2), Some(256));
        assert_eq!(l.padded_segment_chunks(3), None);
    }
}
