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
//! the signature at the front, so it is computed after [`finish`] by [`encrypted_file_keccak`]. A
//! deliverable uploaded to 0G Storage has its storage root as `modelRootHash` instead.
//!
//! [`check_file`] is the keyless check the client runs before acknowledging a download and the
//! verifier reports link by link: the tag signature recovers to the TEE signer ([`recover_tag_signer`],
//! refusing the all-zero placeholder as [`OpenError::Unsigned`]) and the on-chain root is the file's
//! keccak256 or its 0G Storage root ([`RootKind`]).
//!
//! The code is split by concern: `format` (sizes, [`ChunkLen`], where each chunk lies), `key` (the
//! AES-256 key and the chunk cipher), `seal` (the directory sealer, the chunked encryptor and the
//! streaming [`SealZipWriter`], signing and [`finish`]), `check` (tags, tag signer, root kind),
//! `open` (decryption) and `unzip` ([`unzip_safely`]); everything public is re-exported here.
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

mod check;
mod format;
mod key;
mod open;
mod seal;
mod unzip;

/// The TEE signing key type [`sign_tags`] takes, and the RNG types [`seal_dir`] takes, re-exported so
/// callers use the exact versions this crate was built with (`rand_core` 0.6, `k256` 0.13).
pub use k256::ecdsa::SigningKey as TeeSigningKey;
pub use rand_core::{CryptoRngCore, OsRng};

pub use check::{
    CheckError, Checked, RootError, RootKind, TagSigner, check_file, file_root_kind,
    recover_tag_signer, root_kind, tag_digest,
};
pub use format::{ChunkLen, HEADER_LEN, IV_LEN, TAG_LEN, TAG_SIG_LEN, WIRE_CHUNK_LEN, ZIP_ROOT};
pub use key::DeliverableKey;
pub use open::{OpenError, Opened, open, open_file, open_file_with};
pub use seal::{
    ChunkObserver, SealError, SealOptions, SealZipWriter, Sealed, SealedChunk, StreamSealed,
    ZipCompression, encrypted_file_keccak, finish, finish_writer, seal_dir, seal_dir_to_file,
    sign_tags,
};
pub use unzip::{UnzipError, UnzipLimits, Unzipped, unzip_safely};
