//! The keyless deliverable check (PROTOCOL.md §4), written once for the client (before it acknowledges a
//! download) and the verifier (`sealtune-verify deliverable`), and under [`open`](super::open):
//!
//! * **Tag signer.** The tags are read with one seek per chunk ([`tag_digest`]); the 65 bytes at the
//!   front must be a strict signature over `keccak256(tag₀ ‖ tag₁ ‖ …)`, and an all-zero one (the
//!   sealer's placeholder) is refused as [`OpenError::Unsigned`]: sealed but never signed
//!   ([`recover_tag_signer`]). The recovered address must be the service's TEE signer
//!   ([`TagSigner::expect`]).
//! * **Root kind.** The on-chain `modelRootHash` is `keccak256` of the file when the provider keeps it
//!   in its store, or the file's 0G Storage root when it uploaded it there. keccak is compared first
//!   (the caller has it already: hashed while downloading); the storage root is computed only when
//!   keccak does not match ([`root_kind`], [`file_root_kind`]).
//!
//! [`check_file`] applies both, root first, and returns a [`Checked`].

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use alloy_primitives::{Address, B256, Keccak256};
use serde::Serialize;

use super::format::{Layout, TAG_LEN_U64, read_header};
use super::{ChunkLen, OpenError, TAG_LEN, TAG_SIG_LEN};
use crate::sig::Signature;
use crate::storage::{StorageError, root_hash_file};

/// The tag digest `keccak256(tag₀ ‖ tag₁ ‖ …)` of a sealed stream, read with one seek per chunk (without
/// the key). A TEE signer can recompute what it signs from the file itself instead of trusting the sealer.
pub fn tag_digest<R: Read + Seek>(src: &mut R, chunk_len: ChunkLen) -> Result<B256, OpenError> {
    let file_len = src.seek(SeekFrom::End(0))?;
    let layout = Layout::of(file_len, chunk_len)?;
    tags_digest(src, &layout)
}

/// [`tag_digest`] over a known layout.
pub(crate) fn tags_digest<R: Read + Seek>(src: &mut R, layout: &Layout) -> Result<B256, OpenError> {
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

/// Who signed the tags of a sealed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagSigner {
    /// The address the tag signature recovers to.
    pub signer: Address,
    /// `keccak256(tag₀ ‖ tag₁ ‖ …)`, the digest the tag signature signs.
    pub tag_digest: B256,
}

impl TagSigner {
    /// `self` when the tags were signed by `expected` (the service's `teeSignerAddress`), else
    /// [`OpenError::WrongSigner`].
    pub fn expect(self, expected: Address) -> Result<TagSigner, OpenError> {
        if self.signer == expected {
            Ok(self)
        } else {
            Err(OpenError::WrongSigner {
                expected,
                recovered: self.signer,
            })
        }
    }
}

/// Read the tags and the tag signature of a sealed stream and recover who signed them. No key is
/// needed. Refuses a truncated layout ([`OpenError::Truncated`]), the all-zero placeholder of a file
/// that was sealed but never signed ([`OpenError::Unsigned`]) and a signature that is not strict or
/// recovers no key ([`OpenError::MalformedTagSignature`]).
pub fn recover_tag_signer<R: Read + Seek>(
    src: &mut R,
    chunk_len: ChunkLen,
) -> Result<TagSigner, OpenError> {
    let file_len = src.seek(SeekFrom::End(0))?;
    let layout = Layout::of(file_len, chunk_len)?;
    let (signature, _iv) = read_header(src)?;
    tag_signer_of(src, &layout, &signature)
}

/// The signer of the tags of `src` (laid out as `layout`) under the 65 `signature` bytes read from its
/// front: the rule [`recover_tag_signer`] documents, shared with [`open`](super::open).
pub(crate) fn tag_signer_of<R: Read + Seek>(
    src: &mut R,
    layout: &Layout,
    signature: &[u8; TAG_SIG_LEN],
) -> Result<TagSigner, OpenError> {
    if signature.iter().all(|b| *b == 0) {
        return Err(OpenError::Unsigned);
    }
    let parsed = Signature::from_bytes(signature).map_err(OpenError::MalformedTagSignature)?;
    let tag_digest = tags_digest(src, layout)?;
    let signer = parsed
        .recover_address(&tag_digest)
        .map_err(OpenError::MalformedTagSignature)?;
    Ok(TagSigner { signer, tag_digest })
}

/// Which hash of the file the on-chain `modelRootHash` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RootKind {
    /// keccak256 of the whole file (a deliverable kept in the provider's store).
    Keccak,
    /// The 0G Storage root hash (a deliverable uploaded to 0G Storage).
    StorageRoot,
}

/// Why a file's root hash is not the expected one.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    /// keccak256 did not match and the 0G Storage root could not be computed.
    #[error("computing the 0G storage root of the file: {0}")]
    StorageRoot(#[source] StorageError),
    /// Neither hash of the file is the expected root.
    #[error(
        "neither keccak256 {keccak} nor 0G storage root {storage_root} of the file equals 0x{}",
        hex::encode(expected)
    )]
    Mismatch {
        /// The expected root (the on-chain `modelRootHash`), as given.
        expected: Vec<u8>,
        /// keccak256 of the file.
        keccak: B256,
        /// The 0G Storage root of the file.
        storage_root: B256,
    },
}

/// Which of the file's hashes is `expected`: `keccak` (keccak256 of the file, computed by the caller)
/// first; `storage_root` (the file's 0G Storage root) is called only when keccak does not match.
pub fn root_kind(
    expected: &[u8],
    keccak: B256,
    storage_root: impl FnOnce() -> Result<B256, StorageError>,
) -> Result<RootKind, RootError> {
    if expected == keccak.as_slice() {
        return Ok(RootKind::Keccak);
    }
    let storage_root = storage_root().map_err(RootError::StorageRoot)?;
    if expected == storage_root.as_slice() {
        Ok(RootKind::StorageRoot)
    } else {
        Err(RootError::Mismatch {
            expected: expected.to_vec(),
            keccak,
            storage_root,
        })
    }
}

/// [`root_kind`] of the file at `path`, whose keccak256 the caller has (hashed while downloading, or
/// with [`encrypted_file_keccak`](super::encrypted_file_keccak)); its 0G Storage root is streamed from
/// the file only when needed.
pub fn file_root_kind(path: &Path, expected: &[u8], keccak: B256) -> Result<RootKind, RootError> {
    root_kind(expected, keccak, || root_hash_file(path).map(|t| t.root()))
}

/// What [`check_file`] verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Checked {
    /// keccak256 of the file.
    pub keccak: B256,
    /// Which hash matched the on-chain root.
    pub root_kind: RootKind,
    /// The TEE signer the tag signature recovers to (the expected one).
    pub tag_signer: Address,
    /// keccak256 of the chunk tags, as signed.
    pub tag_digest: B256,
}

/// Why [`check_file`] refused a file.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The file's root hash is not the expected one (or its storage root could not be computed).
    #[error(transparent)]
    Root(#[from] RootError),
    /// The tag signature does not recover to the expected signer, or the file cannot be read.
    #[error(transparent)]
    TagSignature(#[from] OpenError),
}

/// Check a sealed file against the chain before trusting it: `expected_root` (the deliverable's
/// `modelRootHash`) must be its keccak256 (`keccak`, computed by the caller) or its 0G Storage root,
/// and its tag signature must recover to `expected_signer` (the service's `teeSignerAddress`).
pub fn check_file(
    path: &Path,
    keccak: B256,
    expected_root: &[u8],
    expected_signer: Address,
    chunk_len: ChunkLen,
) -> Result<Checked, CheckError> {
    let root_kind = file_root_kind(path, expected_root, keccak)?;
    let mut file = File::open(path).map_err(OpenError::Io)?;
    let tags = recover_tag_signer(&mut file, chunk_len)?.expect(expected_signer)?;
    Ok(Checked {
        keccak,
        root_kind,
        tag_signer: tags.signer,
        tag_digest: tags.tag_digest,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use std::io::Cursor;

    use alloy_primitives::keccak256;
    use k256::ecdsa::SigningKey;

    use super::*;
    use crate::deliverable::{DeliverableKey, OsRng};
    use crate::deliverable::{SealOptions, SealZipWriter, TeeSigningKey, finish_writer, sign_tags};
    use crate::sig::{SigError, address_of};

    fn tee() -> TeeSigningKey {
        SigningKey::from_slice(&[0x5e; 32]).unwrap()
    }

    fn small_chunks() -> ChunkLen {
        ChunkLen::for_tests(100).unwrap()
    }

    /// A model of a few chunks sealed in memory; signed by `signer` unless `None`.
    fn sealed(signer: Option<&TeeSigningKey>) -> Vec<u8> {
        let key = DeliverableKey::from_bytes([3; 32]);
        let options = SealOptions {
            chunk_len: small_chunks(),
            ..SealOptions::default()
        };
        let mut w =
            SealZipWriter::new(Cursor::new(Vec::new()), &key, &mut OsRng, &options).unwrap();
        w.start_file("weights.bin", 500).unwrap();
        std::io::Write::write_all(&mut w, &[7u8; 500]).unwrap();
        let s = w.finish().unwrap();
        assert!(s.chunks > 1);
        let mut out = s.writer;
        if let Some(k) = signer {
            finish_writer(&mut out, &sign_tags(k, &s.tag_digest)).unwrap();
        }
        out.into_inner()
    }

    #[test]
    fn tag_signature_recovers_to_the_sealer() {
        let bytes = sealed(Some(&tee()));
        let got = recover_tag_signer(&mut Cursor::new(&bytes), small_chunks()).unwrap();
        assert_eq!(got.signer, address_of(tee().verifying_key()));
        assert_eq!(
            got.tag_digest,
            tag_digest(&mut Cursor::new(&bytes), small_chunks()).unwrap()
        );
        assert_eq!(got.expect(address_of(tee().verifying_key())).unwrap(), got);
    }

    #[test]
    fn all_zero_tag_signature_is_refused_as_never_signed() {
        let bytes = sealed(None);
        assert!(bytes[..TAG_SIG_LEN].iter().all(|b| *b == 0));
        let err = recover_tag_signer(&mut Cursor::new(&bytes), small_chunks()).unwrap_err();
        assert!(matches!(err, OpenError::Unsigned), "{err}");
        assert_eq!(
            err.to_string(),
            "the tag signature is all zeros: the file was sealed but never signed"
        );
    }

    #[test]
    fn tag_signature_that_is_not_strict_is_malformed() {
        let mut bytes = sealed(Some(&tee()));
        bytes[64] = 5;
        let err = recover_tag_signer(&mut Cursor::new(&bytes), small_chunks()).unwrap_err();
        assert!(
            matches!(err, OpenError::MalformedTagSignature(SigError::BadV(5))),
            "{err}"
        );
    }

    #[test]
    fn tags_signed_by_another_key_are_a_wrong_signer() {
        let impostor = SigningKey::from_slice(&[0x77; 32]).unwrap();
        let bytes = sealed(Some(&impostor));
        let got = recover_tag_signer(&mut Cursor::new(&bytes), small_chunks()).unwrap();
        assert_eq!(got.signer, address_of(impostor.verifying_key()));
        let expected = address_of(tee().verifying_key());
        match got.expect(expected).unwrap_err() {
            OpenError::WrongSigner {
                expected: e,
                recovered,
            } => assert_eq!((e, recovered), (expected, got.signer)),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn truncated_header_is_refused_before_the_signature() {
        let bytes = vec![0u8; 50];
        let err = recover_tag_signer(&mut Cursor::new(&bytes), small_chunks()).unwrap_err();
        assert!(matches!(err, OpenError::Truncated { .. }), "{err}");
    }

    #[test]
    fn keccak_root_is_chosen_without_computing_the_storage_root() {
        let keccak = keccak256(b"file");
        let kind = root_kind(keccak.as_slice(), keccak, || {
            panic!("storage root computed although keccak matched")
        });
        assert_eq!(kind.unwrap(), RootKind::Keccak);
    }

    #[test]
    fn storage_root_is_chosen_when_keccak_does_not_match() {
        let keccak = keccak256(b"file");
        let storage = keccak256(b"tree");
        let kind = root_kind(storage.as_slice(), keccak, || Ok(storage));
        assert_eq!(kind.unwrap(), RootKind::StorageRoot);
    }

    #[test]
    fn root_matching_neither_hash_is_refused() {
        let keccak = keccak256(b"file");
        let storage = keccak256(b"tree");
        let other = keccak256(b"other");
        match root_kind(other.as_slice(), keccak, || Ok(storage)).unwrap_err() {
            RootError::Mismatch {
                expected,
                keccak: k,
                storage_root,
            } => assert_eq!(
                (expected.as_slice(), k, storage_root),
                (other.as_slice(), keccak, storage)
            ),
            other => panic!("{other}"),
        }
        // A root of the wrong length matches nothing either.
        assert!(matches!(
            root_kind(&keccak[..31], keccak, || Ok(storage)),
            Err(RootError::Mismatch { .. })
        ));
        assert!(matches!(
            root_kind(other.as_slice(), keccak, || Err(StorageError::EmptyInput)),
            Err(RootError::StorageRoot(StorageError::EmptyInput))
        ));
    }

    #[test]
    fn check_file_applies_both_rules_root_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.enc");
        let bytes = sealed(Some(&tee()));
        std::fs::write(&path, &bytes).unwrap();
        let keccak = keccak256(&bytes);
        let storage = root_hash_file(&path).unwrap().root();
        let me = address_of(tee().verifying_key());

        let c = check_file(&path, keccak, keccak.as_slice(), me, small_chunks()).unwrap();
        assert_eq!(
            (c.keccak, c.root_kind, c.tag_signer),
            (keccak, RootKind::Keccak, me)
        );
        let c = check_file(&path, keccak, storage.as_slice(), me, small_chunks()).unwrap();
        assert_eq!(c.root_kind, RootKind::StorageRoot);

        let other = Address::repeat_byte(9);
        let err = check_file(&path, keccak, keccak.as_slice(), other, small_chunks()).unwrap_err();
        assert!(
            matches!(err, CheckError::TagSignature(OpenError::WrongSigner { .. })),
            "{err}"
        );
        // A wrong root is reported even when the signer is wrong too: the root is checked first.
        let err = check_file(&path, keccak, &[1; 32], other, small_chunks()).unwrap_err();
        assert!(
            matches!(err, CheckError::Root(RootError::Mismatch { .. })),
            "{err}"
        );
    }
}
