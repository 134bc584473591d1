//! Sealing a model directory (PROTOCOL.md §4): zip it under `output_model/`, encrypt the zip chunk by
//! chunk with a zeroed placeholder for `tagSig` ([`seal_dir`], [`seal_dir_to_file`]), then sign the tag
//! digest with the TEE key ([`sign_tags`]) and patch the signature in ([`finish`]). The chunked
//! encryption under both sealers is `encryptor`; `zip_writer` holds [`SealZipWriter`], which seals
//! entries a producer writes one by one.

mod encryptor;
mod zip_writer;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use alloy_primitives::{B256, Keccak256};
use rand_core::CryptoRngCore;

use super::format::{HEADER_LEN_U64, READ_BUF_LEN, TAG_LEN_U64};
use super::{ChunkLen, DeliverableKey, IV_LEN, TeeSigningKey, ZIP_ROOT};
use crate::sig::Signature;
use encryptor::ChunkEncryptor;

pub use encryptor::{ChunkObserver, SealedChunk};
pub use zip_writer::{SealZipWriter, StreamSealed};

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
