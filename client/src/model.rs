//! Checking and opening the encrypted model (PROTOCOL.md §4), with the formats of
//! `sealtune_protocol::deliverable` and `sealtune_protocol::ecies`.
//!
//! * [`check_download`]: the file must hash to the on-chain `modelRootHash` (keccak256, or the 0G
//!   Storage root when the provider uploaded it there) and its tag signature must recover to the
//!   service's `teeSignerAddress`. Both are checked **before** the customer acknowledges.
//! * [`unwrap_secret`]: the on-chain `encryptedSecret` opened with the customer's key (ECIES).
//! * [`decrypt_file`]: stream-decrypt into the zip, written to a temporary file next to the
//!   destination and renamed into place only after every chunk authenticated (no plaintext is left
//!   behind on failure); [`unzip`] then extracts it safely.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use alloy::primitives::{Address, B256};
use sealtune_protocol::deliverable::{
    self, ChunkLen, DeliverableKey, OpenError, Opened, TAG_SIG_LEN, UnzipLimits, Unzipped,
};
use sealtune_protocol::sig::Signature;
use serde::Serialize;

use crate::error::{ClientError, Result};
use crate::progress::{Progress, ProgressWriter};

/// Which hash of the file the on-chain `modelRootHash` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RootKind {
    /// keccak256 of the whole file (a deliverable kept in the provider's store).
    Keccak,
    /// The 0G Storage root hash (a deliverable uploaded to 0G Storage).
    StorageRoot,
}

/// What [`check_download`] verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DownloadCheck {
    /// keccak256 of the file.
    pub keccak: B256,
    /// Which hash matched the on-chain root.
    pub root_kind: RootKind,
    /// The TEE signer the tag signature recovers to (the service's).
    pub tag_signer: Address,
    /// keccak256 of the chunk tags, as signed.
    pub tag_digest: B256,
}

/// The address the tag signature at the front of a sealed file recovers to.
pub fn tag_signer(path: &Path, chunk_len: ChunkLen) -> Result<(Address, B256)> {
    use std::io::Read;
    let mut file = BufReader::new(File::open(path).map_err(|e| ClientError::io(path, e))?);
    let digest = deliverable::tag_digest(&mut file, chunk_len)?;
    let mut sig = [0u8; TAG_SIG_LEN];
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))
        .map_err(|e| ClientError::io(path, e))?;
    file.read_exact(&mut sig)
        .map_err(|e| ClientError::io(path, e))?;
    let signature = Signature::from_bytes(&sig).map_err(OpenError::MalformedTagSignature)?;
    let signer = signature
        .recover_address(&digest)
        .map_err(OpenError::MalformedTagSignature)?;
    Ok((signer, digest))
}

/// Check a downloaded encrypted model against the chain: `expected_root` (the deliverable's
/// `modelRootHash`) must be its keccak256 (given, computed while downloading) or its 0G Storage
/// root, and the tag signature must recover to `tee_signer`.
pub fn check_download(
    path: &Path,
    keccak: B256,
    expected_root: &[u8],
    tee_signer: Address,
) -> Result<DownloadCheck> {
    check_download_with(path, keccak, expected_root, tee_signer, ChunkLen::WIRE)
}

/// [`check_download`] with another chunk size (tests).
pub fn check_download_with(
    path: &Path,
    keccak: B256,
    expected_root: &[u8],
    tee_signer: Address,
    chunk_len: ChunkLen,
) -> Result<DownloadCheck> {
    let root_kind = if expected_root == keccak.as_slice() {
        RootKind::Keccak
    } else {
        let tree = sealtune_protocol::storage::root_hash_file(path).map_err(|source| {
            ClientError::RootHash {
                path: path.to_path_buf(),
                source,
            }
        })?;
        if expected_root == tree.root().as_slice() {
            RootKind::StorageRoot
        } else {
            return Err(ClientError::RootHashMismatch {
                expected: format!("0x{}", hex::encode(expected_root)),
                keccak,
                storage_root: tree.root().to_string(),
            });
        }
    };
    let (recovered, tag_digest) = tag_signer(path, chunk_len)?;
    if recovered != tee_signer {
        return Err(OpenError::WrongSigner {
            expected: tee_signer,
            recovered,
        }
        .into());
    }
    Ok(DownloadCheck {
        keccak,
        root_kind,
        tag_signer: recovered,
        tag_digest,
    })
}

/// Open the on-chain `encryptedSecret` with the customer's key.
pub fn unwrap_secret(
    customer: &k256::ecdsa::SigningKey,
    encrypted_secret: &[u8],
) -> Result<DeliverableKey> {
    if encrypted_secret.is_empty() {
        return Err(ClientError::NotReady(
            "the deliverable has no encrypted secret yet: the provider settles after the acknowledgement".into(),
        ));
    }
    let secret = k256::SecretKey::from(customer.as_nonzero_scalar());
    Ok(sealtune_protocol::ecies::unwrap_key(
        &secret,
        encrypted_secret,
    )?)
}

/// Stream-decrypt the sealed file `src` into the zip `dest`, checking the tag signature against
/// `tee_signer`. The plaintext goes to a temporary file beside `dest`, renamed to `dest` only after
/// every chunk authenticated; on any failure nothing is left behind and `dest` is untouched.
pub fn decrypt_file(
    src: &Path,
    dest: &Path,
    key: &DeliverableKey,
    tee_signer: Address,
    progress: &dyn Progress,
) -> Result<Opened> {
    decrypt_file_with(src, dest, key, tee_signer, ChunkLen::WIRE, progress)
}

/// [`decrypt_file`] with another chunk size (tests).
pub fn decrypt_file_with(
    src: &Path,
    dest: &Path,
    key: &DeliverableKey,
    tee_signer: Address,
    chunk_len: ChunkLen,
    progress: &dyn Progress,
) -> Result<Opened> {
    let input = File::open(src).map_err(|e| ClientError::io(src, e))?;
    let len = input.metadata().map_err(|e| ClientError::io(src, e))?.len();
    progress.set_total(len.saturating_sub(deliverable::HEADER_LEN as u64));
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let temp = tempfile::Builder::new()
        .prefix(".sealtune-decrypt-")
        .tempfile_in(&dir)
        .map_err(|e| ClientError::io(&dir, e))?;
    let result = (|| {
        let mut reader = BufReader::with_capacity(1 << 16, input);
        let mut writer = ProgressWriter {
            inner: BufWriter::with_capacity(1 << 16, temp.as_file()),
            progress,
        };
        let opened = deliverable::open(&mut reader, &mut writer, key, tee_signer, chunk_len)?;
        let inner = writer
            .inner
            .into_inner()
            .map_err(|e| ClientError::io(dest, e.into_error()))?;
        inner.sync_all().map_err(|e| ClientError::io(dest, e))?;
        Ok::<_, ClientError>(opened)
    })();
    progress.finish();
    let opened = result?; // `temp` is deleted on drop
    temp.persist(dest)
        .map_err(|e| ClientError::io(dest, e.error))?;
    Ok(opened)
}

/// Extract the decrypted zip into the new directory `dest` (refusing escaping paths, links and zip bombs).
pub fn unzip(zip: &Path, dest: &Path) -> Result<Unzipped> {
    Ok(deliverable::unzip_safely(
        zip,
        dest,
        &UnzipLimits::default(),
    )?)
}
