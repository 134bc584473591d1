//! [`SealZipWriter`]: a sealer for producers that write the model entry by entry.

use std::io::{self, Write};

use alloy_primitives::B256;
use rand_core::CryptoRngCore;

use super::encryptor::{ChunkEncryptor, ChunkObserver};
use super::{SealError, SealOptions, zip_base_options};
use crate::deliverable::format::{HEADER_LEN_U64, TAG_LEN_U64};
use crate::deliverable::unzip::safe_entry_path;
use crate::deliverable::{DeliverableKey, IV_LEN, ZIP_ROOT};

/// What a [`SealZipWriter`] produced.
#[derive(Debug)]
pub struct StreamSealed<W> {
    /// The underlying writer, flushed.
    pub writer: W,
    /// `keccak256(tag₀ ‖ tag₁ ‖ …)`, to be signed with [`sign_tags`](super::sign_tags) and written
    /// with [`finish`](super::finish).
    pub tag_digest: B256,
    /// Number of chunks.
    pub chunks: u64,
    /// Length of the zip (plaintext).
    pub zip_len: u64,
    /// Length of the sealed stream.
    pub file_len: u64,
}

/// A streaming sealer for producers that hold the model in memory (the executor child's
/// `sealtune.seal_model`): entries written into it are zipped under `output_model/` exactly as
/// [`seal_dir`](super::seal_dir) zips a directory, and the zip is encrypted chunk by chunk with a key
/// the caller supplies, so no plaintext reaches `out`. Memory is one chunk buffer, whatever the model
/// size.
///
/// Like [`seal_dir`](super::seal_dir), it writes a zeroed placeholder for `tagSig`: the TEE signer
/// signs [`StreamSealed::tag_digest`] and patches the file with [`finish`](super::finish), so the
/// sealer need not hold the TEE key.
///
/// ```
/// use std::io::Write;
/// use sealtune_protocol::deliverable::{self, DeliverableKey, SealOptions, SealZipWriter};
///
/// let key = DeliverableKey::from_bytes([7; 32]);
/// let mut w = SealZipWriter::new(Vec::new(), &key, &mut deliverable::OsRng, &SealOptions::default())?;
/// w.start_file("adapter_config.json", 2)?;
/// w.write_all(b"{}")?;
/// let sealed = w.finish()?;
/// assert_eq!(sealed.chunks, 1);
/// assert_eq!(sealed.file_len, sealed.writer.len() as u64);
/// # Ok::<(), deliverable::SealError>(())
/// ```
pub struct SealZipWriter<W: Write> {
    zip: zip::ZipWriter<zip::write::StreamWriter<ChunkEncryptor<W>>>,
    base: zip::write::SimpleFileOptions,
    dirs: std::collections::BTreeSet<String>,
    names: std::collections::BTreeSet<String>,
}

impl<W: Write> std::fmt::Debug for SealZipWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealZipWriter")
            .field("entries", &self.names.len())
            .finish_non_exhaustive()
    }
}

impl<W: Write> SealZipWriter<W> {
    /// Start a sealed zip in `out` with `key`; the IV comes from `rng`. Writes the header and the
    /// `output_model/` directory entry.
    pub fn new(
        out: W,
        key: &DeliverableKey,
        rng: &mut impl CryptoRngCore,
        options: &SealOptions,
    ) -> Result<Self, SealError> {
        Self::build(out, key, rng, options, None)
    }

    /// [`SealZipWriter::new`], calling `observer` with every chunk as it is sealed.
    pub fn with_observer(
        out: W,
        key: &DeliverableKey,
        rng: &mut impl CryptoRngCore,
        options: &SealOptions,
        observer: ChunkObserver,
    ) -> Result<Self, SealError> {
        Self::build(out, key, rng, options, Some(observer))
    }

    fn build(
        out: W,
        key: &DeliverableKey,
        rng: &mut impl CryptoRngCore,
        options: &SealOptions,
        observer: Option<ChunkObserver>,
    ) -> Result<Self, SealError> {
        let mut iv = [0u8; IV_LEN];
        rng.fill_bytes(&mut iv);
        let mut encryptor = ChunkEncryptor::new(out, key, iv, options.chunk_len)?;
        encryptor.observer = observer;
        let base = zip_base_options(options.compression);
        let mut zip = zip::ZipWriter::new_stream(encryptor);
        zip.add_directory(format!("{ZIP_ROOT}/"), base.unix_permissions(0o755))?;
        Ok(SealZipWriter {
            zip,
            base,
            dirs: std::collections::BTreeSet::new(),
            names: std::collections::BTreeSet::new(),
        })
    }

    /// Start the file `relative` (a `/`-separated path inside `output_model/`) of `size` bytes (a hint
    /// that only decides whether the entry needs zip64); write its bytes with `Write` afterwards. Missing
    /// parent directories get their own entries, as [`seal_dir`](super::seal_dir) writes them.
    pub fn start_file(&mut self, relative: &str, size: u64) -> Result<(), SealError> {
        let rel = safe_entry_path(relative).ok_or_else(|| {
            SealError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unsafe entry name {relative:?} (absolute, `..`, backslash or drive)"),
            ))
        })?;
        let parts: Vec<&str> = rel.iter().filter_map(|p| p.to_str()).collect();
        let mut prefix = format!("{ZIP_ROOT}/");
        if let Some((_, parents)) = parts.split_last() {
            for part in parents {
                prefix.push_str(part);
                prefix.push('/');
                if self.dirs.insert(prefix.clone()) {
                    self.zip
                        .add_directory(prefix.as_str(), self.base.unix_permissions(0o755))?;
                }
            }
        }
        let name = format!("{ZIP_ROOT}/{}", parts.join("/"));
        if !self.names.insert(name.clone()) {
            return Err(SealError::Io(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("entry {name:?} written twice"),
            )));
        }
        let opts = self
            .base
            .unix_permissions(0o644)
            .large_file(size >= u64::from(u32::MAX));
        self.zip.start_file(name, opts)?;
        Ok(())
    }

    /// Write the zip's central directory, seal the last chunk and return the digest to sign.
    pub fn finish(self) -> Result<StreamSealed<W>, SealError> {
        let encryptor = self.zip.finish()?.into_inner();
        let (writer, tag_digest, chunks, zip_len) = encryptor.finish()?;
        let file_len = chunks
            .saturating_mul(TAG_LEN_U64)
            .saturating_add(zip_len)
            .saturating_add(HEADER_LEN_U64);
        Ok(StreamSealed {
            writer,
            tag_digest,
            chunks,
            zip_len,
            file_len,
        })
    }
}

impl<W: Write> Write for SealZipWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.zip.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.zip.flush()
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use std::fs;

    use super::super::encryptor::SealedChunk;
    use super::super::{ChunkLen, seal_dir};

    /// An RNG that fills every byte with one value, so two sealers draw the same key and IV.
    struct ConstRng(u8);
    impl rand_core::RngCore for ConstRng {
        fn next_u32(&mut self) -> u32 {
            u32::from_ne_bytes([self.0; 4])
        }
        fn next_u64(&mut self) -> u64 {
            u64::from_ne_bytes([self.0; 8])
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.fill(self.0);
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            dest.fill(self.0);
            Ok(())
        }
    }
    impl rand_core::CryptoRng for ConstRng {}

    #[test]
    fn stream_sealer_matches_seal_dir_byte_for_byte() {
        let dir = std::env::temp_dir().join(format!("sealtune-stream-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sub")).unwrap();
        let weights: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        fs::write(dir.join("config.json"), b"{}").unwrap();
        fs::write(dir.join("sub/w.bin"), &weights).unwrap();
        let options = SealOptions {
            chunk_len: ChunkLen::for_tests(1000).unwrap(),
            ..SealOptions::default()
        };
        let mut from_dir = Vec::new();
        let sealed = seal_dir(&dir, &mut from_dir, &mut ConstRng(7), &options).unwrap();
        fs::remove_dir_all(&dir).unwrap();

        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        let mut w = SealZipWriter::with_observer(
            Vec::new(),
            &sealed.key,
            &mut ConstRng(7),
            &options,
            Box::new(move |c: &SealedChunk| {
                sink.lock().unwrap().push(*c);
                Ok(())
            }),
        )
        .unwrap();
        w.start_file("config.json", 2).unwrap();
        w.write_all(b"{}").unwrap();
        w.start_file("sub/w.bin", weights.len() as u64).unwrap();
        w.write_all(&weights).unwrap();
        assert!(w.start_file("sub/w.bin", 1).is_err(), "duplicate entry");
        assert!(w.start_file("../x", 1).is_err(), "escaping entry");
        let streamed = w.finish().unwrap();
        assert_eq!(streamed.writer, from_dir);
        assert_eq!(streamed.tag_digest, sealed.tag_digest);
        assert_eq!(
            (streamed.chunks, streamed.file_len),
            (sealed.chunks, sealed.file_len)
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len() as u64, sealed.chunks);
        let mut tags = Vec::new();
        for (i, c) in seen.iter().enumerate() {
            assert_eq!(c.index, i as u64);
            tags.extend_from_slice(&c.tag);
        }
        assert_eq!(alloy_primitives::keccak256(&tags), sealed.tag_digest);
        assert_eq!(
            seen.iter().map(|c| c.plaintext_len).sum::<u64>(),
            sealed.zip_len
        );
    }
}
