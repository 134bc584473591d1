//! Sealing and opening the encrypted model deliverable (PROTOCOL.md §4).
//!
//! The trained model directory is zipped (entries `output_model/<relative path>`) and the zip is encrypted
//! with AES-256-GCM in chunks of 64 MiB of plaintext, no AAD, the 12-byte IV incremented as a big-endian
//! counter after each chunk. The file is
//!
//! ```text
//! [65-byte tagSig][12-byte IV][chunk₀ ciphertext ‖ 16-byte tag][chunk₁ ciphertext ‖ tag]…
//! ```
//!
//! where `tagSig` is the TEE signer's signature (`r ‖ s ‖ v`, `v` = 0/1) over the raw digest
//! `keccak256(tag₀ ‖ tag₁ ‖ …)`. Every chunk is full except the last (1 to 64 MiB; an empty zip is impossible).
//!
//! Both directions stream with bounded memory (one chunk buffer, whatever the model size):
//!
//! * [`seal_dir_to_file`] zips and encrypts in one pass, writing a zeroed placeholder for `tagSig`, and
//!   returns the key and the tag digest. **Signing is a separate step** ([`sign_tags`] then [`finish`]),
//!   so the process that seals need not hold the TEE key. The key and the IV come from the caller's RNG.
//! * [`open_file`] first reads only the tags (one seek per chunk), checks that `tagSig` recovers to the
//!   expected TEE signer, then decrypts into a temporary file next to the destination, renamed into place
//!   only after every chunk authenticated; on any failure the temporary file is deleted, so no plaintext
//!   is left behind. [`unzip_safely`] then extracts the zip, refusing escaping paths and bounded in size.
//!
//! The `modelRootHash` of a deliverable kept in the local store is `keccak256(encrypted file)`; it covers
//! the signature at the front, so it is computed after [`finish`] by [`encrypted_file_keccak`].
//!
//! ```
//! use k256::ecdsa::SigningKey;
//! use sealtune_protocol::deliverable::{self, SealOptions};
//! use sealtune_protocol::sig::address_of;
//!
//! let work = std::env::temp_dir().join(format!("sealtune-doc-{}", std::process::id()));
//! let model = work.join("model");
//! std::fs::create_dir_all(&model).unwrap();
//! std::fs::write(model.join("adapter.safetensors"), b"weights").unwrap();
//!
//! // Seal (no TEE key needed), then sign the tag digest with the TEE key and patch the file.
//! let sealed_path = work.join("model.enc");
//! let sealed = deliverable::seal_dir_to_file(&model, &sealed_path, &mut rand_core::OsRng, &SealOptions::default()).unwrap();
//! let tee = SigningKey::from_slice(&[0x42; 32]).unwrap();
//! deliverable::finish(&sealed_path, &deliverable::sign_tags(&tee, &sealed.tag_digest)).unwrap();
//! let _model_root_hash = deliverable::encrypted_file_keccak(&sealed_path).unwrap();
//!
//! // Open: the signer must be the service's TEE signer, every chunk must authenticate.
//! let zip_path = work.join("model.zip");
//! deliverable::open_file(&sealed_path, &zip_path, &sealed.key, address_of(tee.verifying_key())).unwrap();
//! deliverable::unzip_safely(&zip_path, &work.join("out"), &Default::default()).unwrap();
//! assert_eq!(std::fs::read(work.join("out/output_model/adapter.safetensors")).unwrap(), b"weights");
//! # std::fs::remove_dir_all(&work).unwrap();
//! ```
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use alloy_primitives::{Address, B256, Keccak256};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::sig::{SigError, Signature};

/// The TEE signing key type [`sign_tags`] takes, and the RNG types [`seal_dir`] takes, re-exported so
/// callers use the exact versions this crate was built with (`rand_core` 0.6, `k256` 0.13).
pub use k256::ecdsa::SigningKey as TeeSigningKey;
pub use rand_core::{CryptoRngCore, OsRng};

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

const HEADER_LEN_U64: u64 = HEADER_LEN as u64;
const TAG_LEN_U64: u64 = TAG_LEN as u64;
/// Read buffer for the model files being zipped.
const READ_BUF_LEN: usize = 1024 * 1024;

/// The 32-byte AES-256 key of one deliverable; zeroized when dropped, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct DeliverableKey([u8; 32]);

impl DeliverableKey {
    /// A fresh key from `rng`.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        let out = DeliverableKey(key);
        key.zeroize();
        out
    }

    /// Wrap known key bytes (e.g. the customer's decrypted `encryptedSecret`).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        DeliverableKey(bytes)
    }

    /// Parse the 64 hex digits (optional `0x`) the official client passes around.
    pub fn from_hex(text: &str) -> Option<Self> {
        let t = text.trim();
        let t = t.strip_prefix("0x").unwrap_or(t);
        let mut key = [0u8; 32];
        hex::decode_to_slice(t, &mut key).ok()?;
        Some(DeliverableKey(key))
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> ChunkCipher {
        // A 32-byte key is always valid for AES-256-GCM.
        let key = UnboundKey::new(&AES_256_GCM, &self.0).unwrap_or_else(|_| unreachable!());
        ChunkCipher(LessSafeKey::new(key))
    }
}

/// AES-256-GCM over one chunk, 12-byte IV, no AAD, 16-byte tag (PROTOCOL.md §4). AWS-LC's
/// assembly implementation (AES-NI/VAES + CLMUL): ~5x the RustCrypto `aes-gcm` crate on the same
/// CPU (BENCHMARKS.md). A unit test below checks it against `aes-gcm` (which ECIES still uses) on
/// chunks of many lengths.
struct ChunkCipher(LessSafeKey);

impl ChunkCipher {
    /// Encrypts `buf` in place and returns the tag.
    fn seal(&self, iv: &[u8; IV_LEN], buf: &mut [u8]) -> io::Result<[u8; TAG_LEN]> {
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*iv), Aad::empty(), buf)
            .map_err(|_| io::Error::other("AES-GCM refused a chunk"))?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypts `ct_and_tag` (the ciphertext followed by its 16-byte tag) in place, leaving the tag
    /// bytes as they were; `false` when it does not authenticate (the ciphertext part's contents
    /// are then unspecified).
    fn open(&self, iv: &[u8; IV_LEN], ct_and_tag: &mut [u8]) -> bool {
        let split = ct_and_tag.len().saturating_sub(TAG_LEN);
        let Some(tag) = ct_and_tag
            .get(split..)
            .and_then(|t| <[u8; TAG_LEN]>::try_from(t).ok())
        else {
            return false;
        };
        let ok = self
            .0
            .open_in_place(Nonce::assume_unique_for_key(*iv), Aad::empty(), ct_and_tag)
            .is_ok();
        if let Some(t) = ct_and_tag.get_mut(split..) {
            t.copy_from_slice(&tag);
        }
        ok
    }
}

impl std::fmt::Debug for DeliverableKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeliverableKey(<redacted>)")
    }
}

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

/// How zip entries are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZipCompression {
    /// No compression (the default): model weights are high-entropy floats that deflate shrinks by a few
    /// percent at a large CPU cost (see BENCHMARKS.md), and adm-zip extracts stored entries fastest.
    #[default]
    Stored,
    /// Deflate at the default level.
    Deflate,
}

/// Options of [`seal_dir`] / [`seal_dir_to_file`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SealOptions {
    /// Zip compression of every entry.
    pub compression: ZipCompression,
    /// Chunk size; leave at the default ([`ChunkLen::WIRE`]) for anything a customer will open.
    pub chunk_len: ChunkLen,
}

/// The result of sealing: the key to wrap for the customer and the digest the TEE signer must sign.
#[derive(Debug)]
pub struct Sealed {
    /// The AES-256 key (zeroized on drop).
    pub key: DeliverableKey,
    /// `keccak256(tag₀ ‖ tag₁ ‖ …)`, to be signed with [`sign_tags`] and written with [`finish`].
    pub tag_digest: B256,
    /// Number of chunks.
    pub chunks: u64,
    /// Length of the zip (plaintext).
    pub zip_len: u64,
    /// Length of the encrypted file.
    pub file_len: u64,
}

/// Why sealing failed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Reading the model or writing the sealed file failed.
    #[error("I/O error while sealing: {0}")]
    Io(#[from] io::Error),
    /// The zip writer refused an entry.
    #[error("zip error while sealing: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// The input is not a directory.
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    /// A symbolic link or special file in the model directory (never followed: it could point outside).
    #[error(
        "{0} is a symbolic link or special file; the model directory must hold only regular files and directories"
    )]
    UnsupportedEntry(PathBuf),
    /// A path that is not valid UTF-8 (zip entry names must be).
    #[error("{0} is not valid UTF-8; zip entry names must be")]
    NonUtf8Path(PathBuf),
}

/// Why a deliverable could not be opened. No plaintext is returned or left on disk with any of these.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file ends before a complete header and chunk, or its last chunk does not authenticate while the
    /// first does.
    #[error("the deliverable is truncated ({len} bytes): {detail}; download it again")]
    Truncated {
        /// Length of the file as read.
        len: u64,
        /// What is missing.
        detail: &'static str,
    },
    /// The 65 bytes at the front are not a valid signature.
    #[error(
        "the tag signature at the front of the file is malformed ({0}): it was altered, or the file was never signed (finish not called)"
    )]
    MalformedTagSignature(SigError),
    /// The tag signature recovers to an address other than the expected TEE signer.
    #[error(
        "the tag signature recovers to {recovered}, not the service's TEE signer {expected}: the deliverable was sealed by another signer, or its tags or tag signature were altered, or it was truncated at a chunk boundary"
    )]
    WrongSigner {
        /// The service's `teeSignerAddress`.
        expected: Address,
        /// What the signature recovers to over the tags in the file.
        recovered: Address,
    },
    /// Chunk 0 does not authenticate with this key although the tags are signed by the TEE signer.
    #[error(
        "the first chunk does not decrypt with this key: wrong key (check the account that decrypted the secret), or the IV or first chunk were altered"
    )]
    WrongKey,
    /// A later chunk does not authenticate (the key opened chunk 0, so the file was altered).
    #[error(
        "chunk {index} does not authenticate: the file was altered (the key is right: earlier chunks decrypted)"
    )]
    CorruptedChunk {
        /// Index of the chunk, from 0.
        index: u64,
    },
    /// The file changed between the signature check and the decryption.
    #[error("the deliverable changed on disk while it was being opened")]
    ChangedWhileOpening,
    /// Reading the deliverable or writing the output failed.
    #[error("I/O error while opening the deliverable: {0}")]
    Io(#[from] io::Error),
}

/// What [`open`] / [`open_file`] verified and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The verified tag digest.
    pub tag_digest: B256,
    /// The TEE signer the tag signature recovered to (the expected one).
    pub signer: Address,
    /// Number of chunks.
    pub chunks: u64,
    /// Bytes of plaintext (the zip) written.
    pub plaintext_len: u64,
}

/// Add `n` to a 12-byte big-endian counter (wrapping, as the official client increments it).
fn iv_add(iv: &mut [u8; IV_LEN], n: u64) {
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

// ---------------------------------------------------------------------------------------------------------
// Sealing

/// A `Write` that encrypts what it receives in chunks and writes the sealed layout to `out`.
struct ChunkEncryptor<W: Write> {
    out: W,
    cipher: ChunkCipher,
    iv: [u8; IV_LEN],
    buf: Zeroizing<Vec<u8>>,
    chunk_len: usize,
    tags: Keccak256,
    chunks: u64,
    plaintext_len: u64,
    observer: Option<ChunkObserver>,
}

impl<W: Write> ChunkEncryptor<W> {
    /// Write the zeroed signature placeholder and the IV, and start buffering.
    fn new(
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
    fn finish(mut self) -> io::Result<(W, B256, u64, u64)> {
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

/// One chunk sealed by a [`SealZipWriter`], reported to its observer as soon as it is written (the
/// executor child turns it into a `chunk_sealed` event for the parent, which signs the tags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedChunk {
    /// 0-based chunk index.
    pub index: u64,
    /// Plaintext bytes in the chunk.
    pub plaintext_len: u64,
    /// The chunk's AES-GCM tag.
    pub tag: [u8; TAG_LEN],
}

/// Called with every chunk a [`SealZipWriter`] seals, in order; an error aborts the sealing.
pub type ChunkObserver = Box<dyn FnMut(&SealedChunk) -> io::Result<()> + Send>;

/// What a [`SealZipWriter`] produced.
#[derive(Debug)]
pub struct StreamSealed<W> {
    /// The underlying writer, flushed.
    pub writer: W,
    /// `keccak256(tag₀ ‖ tag₁ ‖ …)`, to be signed with [`sign_tags`] and written with [`finish`].
    pub tag_digest: B256,
    /// Number of chunks.
    pub chunks: u64,
    /// Length of the zip (plaintext).
    pub zip_len: u64,
    /// Length of the sealed stream.
    pub file_len: u64,
}

fn zip_base_options(compression: ZipCompression) -> zip::write::SimpleFileOptions {
    let method = match compression {
        ZipCompression::Stored => zip::CompressionMethod::Stored,
        ZipCompression::Deflate => zip::CompressionMethod::Deflated,
    };
    zip::write::SimpleFileOptions::default()
        .compression_method(method)
        // A fixed time: the zip depends only on the files and the RNG.
        .last_modified_time(zip::DateTime::default())
}

/// A streaming sealer for producers that hold the model in memory (the executor child's
/// `sealtune.seal_model`): entries written into it are zipped under `output_model/` exactly as
/// [`seal_dir`] zips a directory, and the zip is encrypted chunk by chunk with a key the caller supplies,
/// so no plaintext reaches `out`. Memory is one chunk buffer, whatever the model size.
///
/// Like [`seal_dir`], it writes a zeroed placeholder for `tagSig`: the TEE signer signs
/// [`StreamSealed::tag_digest`] and patches the file with [`finish`], so the sealer need not hold the TEE key.
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
    /// parent directories get their own entries, as [`seal_dir`] writes them.
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

/// One entry to zip: its name inside `output_model/` and, for files, the path and size.
struct Entry {
    name: String,
    file: Option<(PathBuf, u64)>,
}

/// Walk `dir` in sorted order (so the zip is deterministic), refusing symlinks and special files.
fn collect_entries(dir: &Path, prefix: &str, out: &mut Vec<Entry>) -> Result<(), SealError> {
    let mut children: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    children.sort_by_key(|c| c.file_name());
    for child in children {
        let path = child.path();
        let name = child
            .file_name()
            .into_string()
            .map_err(|_| SealError::NonUtf8Path(path.clone()))?;
        let kind = child.file_type()?;
        let full = format!("{prefix}{name}");
        if kind.is_dir() {
            out.push(Entry {
                name: format!("{full}/"),
                file: None,
            });
            collect_entries(&path, &format!("{full}/"), out)?;
        } else if kind.is_file() {
            let size = child.metadata()?.len();
            out.push(Entry {
                name: full,
                file: Some((path, size)),
            });
        } else {
            return Err(SealError::UnsupportedEntry(path));
        }
    }
    Ok(())
}

/// Zip `dir` and seal it into `out` (the layout of this module, `tagSig` zeroed). Streams: memory is one
/// chunk plus a 1 MiB read buffer, whatever the model size.
pub fn seal_dir<W: Write>(
    dir: &Path,
    out: W,
    rng: &mut impl CryptoRngCore,
    options: &SealOptions,
) -> Result<Sealed, SealError> {
    if !dir.is_dir() {
        return Err(SealError::NotADirectory(dir.to_path_buf()));
    }
    let mut entries = vec![Entry {
        name: format!("{ZIP_ROOT}/"),
        file: None,
    }];
    collect_entries(dir, &format!("{ZIP_ROOT}/"), &mut entries)?;

    let key = DeliverableKey::generate(rng);
    let mut iv = [0u8; IV_LEN];
    rng.fill_bytes(&mut iv);
    let encryptor = ChunkEncryptor::new(out, &key, iv, options.chunk_len)?;
    let mut zip = zip::ZipWriter::new_stream(encryptor);
    let base = zip_base_options(options.compression);
    let mut read_buf = vec![0u8; READ_BUF_LEN];
    for entry in &entries {
        match &entry.file {
            None => zip.add_directory(entry.name.as_str(), base.unix_permissions(0o755))?,
            Some((path, size)) => {
                let opts = base
                    .unix_permissions(0o644)
                    .large_file(*size >= u64::from(u32::MAX));
                zip.start_file(entry.name.as_str(), opts)?;
                let mut file = File::open(path)?;
                loop {
                    let n = file.read(&mut read_buf)?;
                    if n == 0 {
                        break;
                    }
                    zip.write_all(read_buf.get(..n).unwrap_or_default())?;
                }
            }
        }
    }
    let encryptor = zip.finish()?.into_inner();
    let (_, tag_digest, chunks, zip_len) = encryptor.finish()?;
    let file_len = chunks
        .saturating_mul(TAG_LEN_U64)
        .saturating_add(zip_len)
        .saturating_add(HEADER_LEN_U64);
    Ok(Sealed {
        key,
        tag_digest,
        chunks,
        zip_len,
        file_len,
    })
}

/// [`seal_dir`] into a new file at `out_path` (replaced if it exists), synced to disk; on failure the
/// partial file is removed. Call [`finish`] with the TEE signature afterwards.
pub fn seal_dir_to_file(
    dir: &Path,
    out_path: &Path,
    rng: &mut impl CryptoRngCore,
    options: &SealOptions,
) -> Result<Sealed, SealError> {
    let result = (|| {
        let file = File::create(out_path)?;
        let sealed = seal_dir(
            dir,
            io::BufWriter::with_capacity(1 << 16, &file),
            rng,
            options,
        )?;
        file.sync_all()?;
        Ok(sealed)
    })();
    if result.is_err() {
        let _ = fs::remove_file(out_path);
    }
    result
}

/// Sign a tag digest with the TEE key (raw digest, RFC 6979, low `s`).
pub fn sign_tags(tee_key: &TeeSigningKey, tag_digest: &B256) -> Signature {
    crate::sig::sign_prehash(tee_key, tag_digest)
}

/// Write `signature` (`v` = 0/1) over the placeholder at the front of a sealed stream.
pub fn finish_writer<W: Write + Seek>(mut sealed: W, signature: &Signature) -> io::Result<()> {
    let len = sealed.seek(SeekFrom::End(0))?;
    if len < HEADER_LEN_U64.saturating_add(TAG_LEN_U64) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a sealed deliverable (too short)",
        ));
    }
    sealed.seek(SeekFrom::Start(0))?;
    sealed.write_all(&signature.to_bytes_v01())?;
    sealed.flush()
}

/// Write `signature` at the front of the sealed file at `path` and sync it.
pub fn finish(path: &Path, signature: &Signature) -> io::Result<()> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    finish_writer(&mut file, signature)?;
    file.sync_all()
}

/// `keccak256` of a whole file, streaming (the `modelRootHash` of a deliverable kept in the local store).
pub fn encrypted_file_keccak(path: &Path) -> io::Result<B256> {
    let mut file = File::open(path)?;
    let mut hasher = Keccak256::new();
    let mut buf = vec![0u8; READ_BUF_LEN];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
}

// ---------------------------------------------------------------------------------------------------------
// Opening

/// Where the chunks of a sealed file of a given length lie.
#[derive(Debug, Clone, Copy)]
struct Layout {
    file_len: u64,
    /// Ciphertext + tag length of a full chunk.
    full: u64,
    chunks: u64,
    /// Ciphertext + tag length of the last chunk.
    last: u64,
}

impl Layout {
    fn of(file_len: u64, chunk_len: ChunkLen) -> Result<Layout, OpenError> {
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

    fn offset(&self, index: u64) -> u64 {
        index
            .saturating_mul(self.full)
            .saturating_add(HEADER_LEN_U64)
    }

    fn len(&self, index: u64) -> u64 {
        if index.saturating_add(1) == self.chunks {
            self.last
        } else {
            self.full
        }
    }

    fn largest(&self) -> u64 {
        if self.chunks > 1 {
            self.full
        } else {
            self.last
        }
    }
}

fn read_header<R: Read + Seek>(src: &mut R) -> io::Result<([u8; TAG_SIG_LEN], [u8; IV_LEN])> {
    let mut sig = [0u8; TAG_SIG_LEN];
    let mut iv = [0u8; IV_LEN];
    src.seek(SeekFrom::Start(0))?;
    src.read_exact(&mut sig)?;
    src.read_exact(&mut iv)?;
    Ok((sig, iv))
}

/// The tag digest `keccak256(tag₀ ‖ tag₁ ‖ …)` of a sealed stream, read with one seek per chunk (without
/// the key). A TEE signer can recompute what it signs from the file itself instead of trusting the sealer.
pub fn tag_digest<R: Read + Seek>(src: &mut R, chunk_len: ChunkLen) -> Result<B256, OpenError> {
    let file_len = src.seek(SeekFrom::End(0))?;
    let layout = Layout::of(file_len, chunk_len)?;
    tags_digest(src, &layout)
}

fn tags_digest<R: Read + Seek>(src: &mut R, layout: &Layout) -> Result<B256, OpenError> {
    let mut hasher = Keccak256::new();
    let mut tag = [0u8; TAG_LEN];
    for index in 0..layout.chunks {
        let end = layout.offset(index).saturating_add(layout.len(index));
        src.seek(SeekFrom::Start(end.saturating_sub(TAG_LEN_U64)))?;
        src.read_exact(&mut tag)?;
        hasher.update(tag);
    }
    Ok(hasher.finalize())
}

/// Decrypt chunk `index` in `buf` (sized to that chunk). `Ok(false)` when it does not authenticate.
fn decrypt_chunk<R: Read + Seek>(
    src: &mut R,
    layout: &Layout,
    cipher: &ChunkCipher,
    first_iv: &[u8; IV_LEN],
    index: u64,
    buf: &mut [u8],
) -> io::Result<bool> {
    src.seek(SeekFrom::Start(layout.offset(index)))?;
    src.read_exact(buf)?;
    let mut iv = *first_iv;
    iv_add(&mut iv, index);
    Ok(cipher.open(&iv, buf))
}

fn chunk_buf(layout: &Layout, index: u64, buf: &mut Zeroizing<Vec<u8>>) -> Result<(), OpenError> {
    let len =
        usize::try_from(layout.len(index)).map_err(|_| io::Error::other("chunk too large"))?;
    buf.resize(len, 0);
    Ok(())
}

/// Open a sealed stream into `out`: check that the tag signature recovers to `expected_signer`, then
/// decrypt every chunk in order. On `Err`, what was written to `out` must be discarded (it is at most the
/// authenticated chunks before the failure); [`open_file`] does that for files.
pub fn open<R: Read + Seek, W: Write>(
    src: &mut R,
    out: &mut W,
    key: &DeliverableKey,
    expected_signer: Address,
    chunk_len: ChunkLen,
) -> Result<Opened, OpenError> {
    let file_len = src.seek(SeekFrom::End(0))?;
    let layout = Layout::of(file_len, chunk_len)?;
    let (sig_bytes, first_iv) = read_header(src)?;
    let signature = Signature::from_bytes(&sig_bytes).map_err(OpenError::MalformedTagSignature)?;
    let digest = tags_digest(src, &layout)?;
    let recovered = signature
        .recover_address(&digest)
        .map_err(OpenError::MalformedTagSignature)?;
    let cipher = key.cipher();
    let mut buf = Zeroizing::new(Vec::new());
    buf.try_reserve_exact(usize::try_from(layout.largest()).unwrap_or(usize::MAX))
        .map_err(|_| io::Error::other("cannot allocate a chunk buffer"))?;

    if recovered != expected_signer {
        // Tell a truncated download from a foreign signer: if chunk 0 opens with this key but the last
        // chunk does not, the file lost its end.
        let last = layout.chunks.saturating_sub(1);
        if last > 0 {
            chunk_buf(&layout, last, &mut buf)?;
            let last_ok = decrypt_chunk(src, &layout, &cipher, &first_iv, last, &mut buf)?;
            chunk_buf(&layout, 0, &mut buf)?;
            let first_ok = decrypt_chunk(src, &layout, &cipher, &first_iv, 0, &mut buf)?;
            if first_ok && !last_ok {
                return Err(OpenError::Truncated {
                    len: layout.file_len,
                    detail: "the first chunk decrypts with this key but the last chunk does not authenticate",
                });
            }
        }
        return Err(OpenError::WrongSigner {
            expected: expected_signer,
            recovered,
        });
    }

    let mut tags = Keccak256::new();
    let mut plaintext_len = 0u64;
    for index in 0..layout.chunks {
        chunk_buf(&layout, index, &mut buf)?;
        if !decrypt_chunk(src, &layout, &cipher, &first_iv, index, &mut buf)? {
            return Err(if index == 0 {
                OpenError::WrongKey
            } else {
                OpenError::CorruptedChunk { index }
            });
        }
        let (pt, tag) = buf.split_at(buf.len().saturating_sub(TAG_LEN));
        tags.update(tag);
        out.write_all(pt)?;
        plaintext_len = plaintext_len.saturating_add(pt.len() as u64);
    }
    if tags.finalize() != digest {
        return Err(OpenError::ChangedWhileOpening);
    }
    out.flush()?;
    Ok(Opened {
        tag_digest: digest,
        signer: recovered,
        chunks: layout.chunks,
        plaintext_len,
    })
}

/// A file created next to its destination, deleted on drop unless persisted.
struct TempOut {
    path: PathBuf,
    file: Option<File>,
}

impl TempOut {
    fn create(dest: &Path) -> io::Result<TempOut> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let stem = dest
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("deliverable");
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!(".{stem}.partial-{}-{n}", std::process::id()));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    return Ok(TempOut {
                        path,
                        file: Some(file),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn persist(mut self, dest: &Path) -> io::Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_all()?;
        }
        fs::rename(&self.path, dest)?;
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for TempOut {
    fn drop(&mut self) {
        self.file.take();
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// [`open_file_with`] at the wire chunk size.
pub fn open_file(
    src: &Path,
    dest: &Path,
    key: &DeliverableKey,
    expected_signer: Address,
) -> Result<Opened, OpenError> {
    open_file_with(src, dest, key, expected_signer, ChunkLen::WIRE)
}

/// Open the sealed file `src` into `dest` (the zip). The plaintext goes to a temporary file in `dest`'s
/// directory, renamed to `dest` (replacing it) only after the signature checked and every chunk
/// authenticated; on any error the temporary file is deleted and `dest` is untouched.
pub fn open_file_with(
    src: &Path,
    dest: &Path,
    key: &DeliverableKey,
    expected_signer: Address,
    chunk_len: ChunkLen,
) -> Result<Opened, OpenError> {
    let mut input = File::open(src)?;
    let mut temp = TempOut::create(dest)?;
    let opened = match temp.file.as_mut() {
        Some(file) => {
            let mut writer = io::BufWriter::with_capacity(1 << 16, file);
            open(&mut input, &mut writer, key, expected_signer, chunk_len)?
        }
        None => return Err(io::Error::other("temporary output closed").into()),
    };
    temp.persist(dest)?;
    Ok(opened)
}

// ---------------------------------------------------------------------------------------------------------
// Unzipping

/// Bounds of [`unzip_safely`] against zip bombs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnzipLimits {
    /// Most entries (files and directories).
    pub max_entries: usize,
    /// Most bytes written in all (counted as extracted, not as declared).
    pub max_total_bytes: u64,
}

impl Default for UnzipLimits {
    /// 100 000 entries and 1 TiB: above any model, below a full disk.
    fn default() -> Self {
        UnzipLimits {
            max_entries: 100_000,
            max_total_bytes: 1 << 40,
        }
    }
}

/// Why a zip could not be extracted. The destination directory is removed on any of these.
#[derive(Debug, thiserror::Error)]
pub enum UnzipError {
    /// The zip is malformed, or an entry's checksum does not match.
    #[error("invalid zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// Reading or writing failed.
    #[error("I/O error while extracting: {0}")]
    Io(#[from] io::Error),
    /// An entry name that is absolute, holds `..`, a backslash, a drive or a NUL.
    #[error(
        "zip entry {0:?} has an unsafe path (absolute, `..`, backslash or drive); refusing to extract"
    )]
    UnsafePath(String),
    /// A symbolic-link entry.
    #[error("zip entry {0:?} is a symbolic link; refusing to extract")]
    Symlink(String),
    /// Two entries with the same path.
    #[error("zip entry {0:?} appears twice")]
    Duplicate(String),
    /// More entries than the limit.
    #[error("zip has {0} entries, more than the limit of {1}")]
    TooManyEntries(usize, usize),
    /// More extracted bytes than the limit.
    #[error("zip extracts to more than {0} bytes (zip bomb?)")]
    TooLarge(u64),
    /// The destination exists already.
    #[error("destination {0} exists already; extract into a new directory")]
    DestinationExists(PathBuf),
}

/// What [`unzip_safely`] extracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unzipped {
    /// Files written.
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// The relative path of a zip entry name, or `None` if it could escape the destination.
fn safe_entry_path(name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains('\\') || name.contains('\0') || name.starts_with('/') {
        return None;
    }
    let mut out = PathBuf::new();
    for part in name.split('/') {
        if part.is_empty() {
            continue;
        }
        if part == "." || part == ".." || part.contains(':') {
            return None;
        }
        out.push(part);
    }
    let normal = out.components().all(|c| matches!(c, Component::Normal(_)));
    (normal && out.components().next().is_some()).then_some(out)
}

/// Extract the zip at `zip_path` into the new directory `dest` (which must not exist), refusing entries
/// that would land outside it, symbolic links and duplicates, and stopping at `limits`. On error `dest` is
/// removed, so a half-extracted model is never left behind.
pub fn unzip_safely(
    zip_path: &Path,
    dest: &Path,
    limits: &UnzipLimits,
) -> Result<Unzipped, UnzipError> {
    if dest.exists() {
        return Err(UnzipError::DestinationExists(dest.to_path_buf()));
    }
    let mut archive = zip::ZipArchive::new(File::open(zip_path)?)?;
    if archive.len() > limits.max_entries {
        return Err(UnzipError::TooManyEntries(
            archive.len(),
            limits.max_entries,
        ));
    }
    fs::create_dir_all(dest)?;
    let result = extract(&mut archive, dest, limits);
    if result.is_err() {
        let _ = fs::remove_dir_all(dest);
    }
    result
}

fn extract(
    archive: &mut zip::ZipArchive<File>,
    dest: &Path,
    limits: &UnzipLimits,
) -> Result<Unzipped, UnzipError> {
    let mut files = 0usize;
    let mut bytes = 0u64;
    let mut buf = vec![0u8; READ_BUF_LEN];
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let name = entry.name().to_string();
        if entry.is_symlink() {
            return Err(UnzipError::Symlink(name));
        }
        let rel = safe_entry_path(&name).ok_or_else(|| UnzipError::UnsafePath(name.clone()))?;
        let path = dest.join(&rel);
        if entry.is_dir() {
            fs::create_dir_all(&path)?;
            continue;
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(UnzipError::Duplicate(name));
            }
            Err(e) => return Err(e.into()),
        };
        loop {
            let n = entry.read(&mut buf)?;
            if n == 0 {
                break;
            }
            bytes = bytes.saturating_add(n as u64);
            if bytes > limits.max_total_bytes {
                return Err(UnzipError::TooLarge(limits.max_total_bytes));
            }
            file.write_all(buf.get(..n).unwrap_or_default())?;
        }
        files = files.saturating_add(1);
    }
    Ok(Unzipped { files, bytes })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;

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

    /// The chunk cipher (AWS-LC) against RustCrypto's `aes-gcm` on the same key, IV and bytes:
    /// same ciphertext and tag, each opens the other's output, a flipped bit is refused and the
    /// tag bytes are left in place.
    #[test]
    fn chunk_cipher_matches_rustcrypto_aes_gcm() {
        use aes_gcm::aead::{AeadInPlace, KeyInit};
        let key = DeliverableKey([0x42; 32]);
        let ours = key.cipher();
        let theirs = aes_gcm::Aes256Gcm::new((&key.0).into());
        let mut iv = [0x17u8; IV_LEN];
        for len in [0usize, 1, 15, 16, 17, 255, 4096, 65_537, 1 << 20] {
            iv_add(&mut iv, 1);
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 253) as u8).collect();
            let mut a = plain.clone();
            let tag_a = ours.seal(&iv, &mut a).unwrap();
            let mut b = plain.clone();
            let tag_b = theirs
                .encrypt_in_place_detached(aes_gcm::Nonce::from_slice(&iv), &[], &mut b)
                .unwrap();
            assert_eq!(a, b, "ciphertext, {len} bytes");
            assert_eq!(tag_a.as_slice(), tag_b.as_slice(), "tag, {len} bytes");

            let mut sealed = [a.as_slice(), tag_a.as_slice()].concat();
            assert!(ours.open(&iv, &mut sealed));
            assert_eq!(&sealed[..len], plain.as_slice());
            assert_eq!(&sealed[len..], tag_a.as_slice(), "tag bytes kept");

            let mut tampered = [b.as_slice(), tag_a.as_slice()].concat();
            let at = tampered.len() / 2;
            tampered[at] ^= 1;
            let tag_before = tampered[len..].to_vec();
            assert!(!ours.open(&iv, &mut tampered), "tampered, {len} bytes");
            assert_eq!(&tampered[len..], tag_before.as_slice(), "tag bytes kept");
            let mut other_iv = iv;
            iv_add(&mut other_iv, 1);
            let mut wrong = [b.as_slice(), tag_a.as_slice()].concat();
            assert!(!ours.open(&other_iv, &mut wrong), "wrong IV");
        }
        assert!(!ours.open(&iv, &mut [0u8; 15]), "shorter than a tag");
    }

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

    #[test]
    fn unsafe_entry_names_are_refused() {
        for bad in [
            "../x",
            "/etc/passwd",
            "a/../../x",
            "a\\..\\x",
            "C:/x",
            "c:x",
            "",
            "./",
            "a/./b",
        ] {
            assert_eq!(safe_entry_path(bad), None, "{bad}");
        }
        assert_eq!(
            safe_entry_path("output_model/a/b.bin"),
            Some(PathBuf::from("output_model/a/b.bin"))
        );
        assert_eq!(
            safe_entry_path("output_model/"),
            Some(PathBuf::from("output_model"))
        );
    }
}
