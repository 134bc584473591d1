//! The chunked AES-256-GCM writer under every sealer: buffers one chunk of plaintext, encrypts it with
//! the IV counter, writes ciphertext and tag, and hashes the tags for the signature.

use std::io::{self, Write};

use alloy_primitives::{B256, Keccak256};
use zeroize::Zeroizing;

use crate::deliverable::format::iv_add;
use crate::deliverable::key::ChunkCipher;
use crate::deliverable::{ChunkLen, DeliverableKey, IV_LEN, TAG_LEN, TAG_SIG_LEN};

/// A `Write` that encrypts what it receives in chunks and writes the sealed layout to `out`.
pub(super) struct ChunkEncryptor<W: Write> {
    out: W,
    cipher: ChunkCipher,
    iv: [u8; IV_LEN],
    buf: Zeroizing<Vec<u8>>,
    chunk_len: usize,
    tags: Keccak256,
    chunks: u64,
    plaintext_len: u64,
    pub(super) observer: Option<ChunkObserver>,
}

impl<W: Write> ChunkEncryptor<W> {
    /// Write the zeroed signature placeholder and the IV, and start buffering.
    pub(super) fn new(
        mut out: W,
        key: &DeliverableKey,
        iv: [u8; IV_LEN],
        chunk_len: ChunkLen,
    ) -> io::Result<Self> {
        out.write_all(&[0u8; TAG_SIG_LEN])?;
        out.write_all(&iv)?;
        Ok(ChunkEncryptor {
            out,
            cipher: key.cipher(),
            iv,
            buf: Zeroizing::new(Vec::with_capacity(chunk_len.get())),
            chunk_len: chunk_len.get(),
            tags: Keccak256::new(),
            chunks: 0,
            plaintext_len: 0,
            observer: None,
        })
    }

    fn seal_chunk(&mut self) -> io::Result<()> {
        let tag = self.cipher.seal(&self.iv, self.buf.as_mut_slice())?;
        self.out.write_all(&self.buf)?;
        self.out.write_all(&tag)?;
        self.tags.update(tag);
        if let Some(observer) = self.observer.as_mut() {
            observer(&SealedChunk {
                index: self.chunks,
                plaintext_len: self.buf.len() as u64,
                tag,
            })?;
        }
        self.plaintext_len = self.plaintext_len.saturating_add(self.buf.len() as u64);
        self.chunks = self.chunks.saturating_add(1);
        iv_add(&mut self.iv, 1);
        self.buf.clear();
        Ok(())
    }

    /// Seal the last (partial) chunk and return the writer, tag digest, chunk count and plaintext length.
    pub(super) fn finish(mut self) -> io::Result<(W, B256, u64, u64)> {
        if !self.buf.is_empty() || self.chunks == 0 {
            self.seal_chunk()?;
        }
        self.out.flush()?;
        let ChunkEncryptor {
            out,
            tags,
            chunks,
            plaintext_len,
            ..
        } = self;
        Ok((out, tags.finalize(), chunks, plaintext_len))
    }
}

impl<W: Write> Write for ChunkEncryptor<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.chunk_len.saturating_sub(self.buf.len());
        let take = room.min(data.len());
        self.buf
            .extend_from_slice(data.get(..take).unwrap_or_default());
        if self.buf.len() >= self.chunk_len {
            self.seal_chunk()?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One chunk sealed by a [`SealZipWriter`](super::SealZipWriter), reported to its observer as soon as
/// it is written (the executor child turns it into a `chunk_sealed` event for the parent, which signs
/// the tags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedChunk {
    /// 0-based chunk index.
    pub index: u64,
    /// Plaintext bytes in the chunk.
    pub plaintext_len: u64,
    /// The chunk's AES-GCM tag.
    pub tag: [u8; TAG_LEN],
}

/// Called with every chunk a [`SealZipWriter`](super::SealZipWriter) seals, in order; an error aborts
/// the sealing.
pub type ChunkObserver = Box<dyn FnMut(&SealedChunk) -> io::Result<()> + Send>;
