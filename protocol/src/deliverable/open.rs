//! Opening a sealed file (PROTOCOL.md §4): check the tag signature against the expected TEE signer
//! (reading only the tags: [`recover_tag_signer`](super::recover_tag_signer)), then decrypt chunk by
//! chunk, into a temporary file renamed into place only after every chunk authenticated.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use alloy_primitives::{Address, B256, Keccak256};
use zeroize::Zeroizing;

use super::check::{TagSigner, tag_signer_of};
use super::format::{Layout, iv_add, read_header};
use super::key::ChunkCipher;
use super::{ChunkLen, DeliverableKey, IV_LEN, TAG_LEN};
use crate::sig::SigError;

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
    /// The 65 bytes at the front are all zeros: the placeholder the sealer writes, never replaced by the
    /// TEE signer's signature ([`finish`](super::finish) not called).
    #[error("the tag signature is all zeros: the file was sealed but never signed")]
    Unsigned,
    /// The 65 bytes at the front are not a valid signature, or no key recovers from them.
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
    let (signature, first_iv) = read_header(src)?;
    let TagSigner {
        signer: recovered,
        tag_digest: digest,
    } = tag_signer_of(src, &layout, &signature)?;
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
