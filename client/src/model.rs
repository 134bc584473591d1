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
    self, CheckError, ChunkLen, DeliverableKey, OpenError, Opened, RootError, UnzipLimits, Unzipped,
};

use crate::error::{ClientError, Result};
use crate::progress::{Progress, ProgressWriter};

/// Which hash of the file the on-chain `modelRootHash` is (the protocol's rule).
pub use sealtune_protocol::deliverable::RootKind;

/// What [`check_download`] verified.
pub type DownloadCheck = deliverable::Checked;

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

/// [`check_download`] with another chunk size (tests). The rule is
/// [`sealtune_protocol::deliverable::check_file`]; this maps its refusals to the client's errors.
pub fn check_download_with(
    path: &Path,
    keccak: B256,
    expected_root: &[u8],
    tee_signer: Address,
    chunk_len: ChunkLen,
) -> Result<DownloadCheck> {
    deliverable::check_file(path, keccak, expected_root, tee_signer, chunk_len)
        .map_err(|e| check_error(path, e))
}

/// A refusal of the deliverable check as the client's error: a root mismatch, a storage root that
/// cannot be computed, a local I/O error, or the tag signature's [`OpenError`].
fn check_error(path: &Path, e: CheckError) -> ClientError {
    match e {
        CheckError::Root(RootError::StorageRoot(source)) => ClientError::RootHash {
            path: path.to_path_buf(),
            source,
        },
        CheckError::Root(RootError::Mismatch {
            expected,
            keccak,
            storage_root,
        }) => ClientError::RootHashMismatch {
            expected: format!("0x{}", hex::encode(expected)),
            keccak,
            storage_root: storage_root.to_string(),
        },
        CheckError::TagSignature(OpenError::Io(e)) => ClientError::io(path, e),
        CheckError::TagSignature(e) => ClientError::Deliverable(e),
    }
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
