//! The attestation document v2 and the measured configuration (docs/PROTOCOL.md §5.1–§5.3).
//!
//! Three things are defined here, once, for the worker that produces them and the verifier that
//! checks them:
//!
//! * [`ConfigDocument`]: the canonical record of everything that decides code or data inside the
//!   TEE (training scripts, tokenizers, usage files and weights by content hash, the limits that
//!   matter, the contracts, the sandbox's walls). Its hash, [`ConfigDocument::hash`], is the
//!   **config hash**: recorded as the RTMR3 runtime event [`CONFIG_EVENT`] where the attestation
//!   source can emit events (dstack), bound in the [`AttestationDocument`] everywhere, and part of
//!   the TEE signer's key path (a changed config means a new signer).
//! * [`AttestationDocument`]: what a quote answered for a verifier's nonce binds. Its report_data is
//!   `SHA-512(DOMAIN ‖ signer ‖ nonce ‖ config_hash ‖ dataset_key_hash ‖ gpu_evidence_hash)`, fixed
//!   lengths, absent slots as 32 zero bytes. Being a hash under a domain tag, no caller-chosen byte
//!   appears in report_data, so no other layout (the 0G ASCII address, the 0G raw-signer layout,
//!   tappd's `app-data:` hash) can read it as a signer.
//! * [`tree_digest`]: the content hash of a directory (model weights).
//!
//! The default `/v1/quote` answer (no nonce) keeps 0G's layout byte for byte: report_data is the
//! ASCII `0x…` signer address, zero-padded (the official SDK compares it with the signer).
//!
//! ```
//! use sealtune_protocol::attestation::AttestationDocument;
//! use sealtune_protocol::{Address, B256};
//! let doc = AttestationDocument::new(Address::repeat_byte(1), B256::repeat_byte(2), B256::repeat_byte(3));
//! let rd = doc.report_data();
//! assert_ne!(&rd[..20], Address::repeat_byte(1).as_slice());
//! ```

use alloy_primitives::{Address, B256, U256};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256, Sha512};

/// Name of the RTMR3 runtime event carrying the config hash (payload: the 32 raw bytes).
pub const CONFIG_EVENT: &str = "sealtune-config";

/// Domain tag of the attestation document v2's report_data (exactly 32 bytes).
pub const DOCUMENT_DOMAIN: &[u8; 32] = b"sealtune/attestation-document/v2";

/// The version number [`AttestationDocument`] carries in JSON.
pub const DOCUMENT_VERSION: u32 = 2;

/// The version number [`ConfigDocument`] carries.
pub const CONFIG_VERSION: u32 = 1;

/// What a quote over a verifier's nonce binds (served as `attestation_document` in `/v1/quote`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationDocument {
    /// Always [`DOCUMENT_VERSION`].
    pub version: u32,
    /// The TEE signer (registered on chain as `teeSignerAddress`).
    pub signer: Address,
    /// The verifier's nonce.
    pub nonce: B256,
    /// The worker's config hash ([`ConfigDocument::hash`]).
    pub config_hash: B256,
    /// Slot: [`TeeKeys::hash`] of the keys the TEE signer publishes (the dataset-encryption key, and
    /// the TLS key when the worker serves HTTPS); `None` is bound as 32 zero bytes.
    #[serde(default)]
    pub dataset_key_hash: Option<B256>,
    /// Slot: hash of the GPU attestation evidence; `None` is bound as 32 zero bytes.
    #[serde(default)]
    pub gpu_evidence_hash: Option<B256>,
}

/// A document that cannot be what it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Another version than [`DOCUMENT_VERSION`].
    #[error("attestation document version {0} is not supported (expected {DOCUMENT_VERSION})")]
    Version(u32),
    /// Not valid JSON for the document.
    #[error("attestation document is malformed: {0}")]
    Malformed(String),
}

impl AttestationDocument {
    /// A version-2 document with empty slots.
    pub fn new(signer: Address, nonce: B256, config_hash: B256) -> Self {
        AttestationDocument {
            version: DOCUMENT_VERSION,
            signer,
            nonce,
            config_hash,
            dataset_key_hash: None,
            gpu_evidence_hash: None,
        }
    }

    /// Parses the JSON form and checks the version.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, DocumentError> {
        let doc: AttestationDocument = serde_json::from_value(value.clone())
            .map_err(|e| DocumentError::Malformed(e.to_string()))?;
        if doc.version != DOCUMENT_VERSION {
            return Err(DocumentError::Version(doc.version));
        }
        Ok(doc)
    }

    /// The 64 report_data bytes a quote carries for this document.
    pub fn report_data(&self) -> [u8; 64] {
        let slot = |s: Option<B256>| s.unwrap_or(B256::ZERO);
        let mut h = Sha512::new();
        h.update(DOCUMENT_DOMAIN);
        h.update(self.signer.as_slice());
        h.update(self.nonce.as_slice());
        h.update(self.config_hash.as_slice());
        h.update(slot(self.dataset_key_hash).as_slice());
        h.update(slot(self.gpu_evidence_hash).as_slice());
        h.finalize().into()
    }
}

/// Domain tag of the TEE keys digest ([`TeeKeys::hash`]).
pub const TEE_KEYS_DOMAIN: &[u8] = b"sealtune/tee-keys/v1";

/// The keys the worker publishes for customers (served as `tee_keys` in `/v1/quote`, docs/PROTOCOL.md
/// §8): the **dataset key** customers seal datasets to ([`crate::envelope`]) and, when the worker
/// serves HTTPS itself, the SHA-256 of its TLS certificate's SubjectPublicKeyInfo. Signed by the TEE
/// signer; its [`TeeKeys::hash`] is the attestation document's `dataset_key_hash` slot, so a nonce
/// quote binds both keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeeKeys {
    /// The dataset public key, SEC1 compressed (33 bytes, `0x…` hex).
    pub dataset_key: alloy_primitives::FixedBytes<33>,
    /// SHA-256 of the DER SubjectPublicKeyInfo of the worker's own TLS key, when it serves HTTPS.
    #[serde(default)]
    pub tls_spki_sha256: Option<B256>,
    /// The TEE signer's signature (`r ‖ s ‖ v`, raw digest) over [`TeeKeys::hash`].
    pub signature: alloy_primitives::Bytes,
}

/// Keys that are not what the TEE signer published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TeeKeysError {
    /// The dataset key is not a secp256k1 public key.
    #[error("the published dataset key is not a secp256k1 public key")]
    DatasetKey,
    /// The signature is malformed or by another key than the TEE signer.
    #[error("the published TEE keys are not signed by the TEE signer {0}")]
    Signature(Address),
    /// The attestation document binds other keys (or none).
    #[error(
        "the attestation document's dataset_key_hash is {bound}, not the hash {served} of the keys served beside it"
    )]
    NotBound {
        /// What the document binds (`none` when the slot is empty).
        bound: String,
        /// The hash of the served keys.
        served: B256,
    },
}

impl TeeKeys {
    /// `SHA-256(TEE_KEYS_DOMAIN ‖ dataset key (33) ‖ TLS SPKI hash (32, zeros when absent))`.
    pub fn hash(&self) -> B256 {
        let mut h = Sha256::new();
        h.update(TEE_KEYS_DOMAIN);
        h.update(self.dataset_key.as_slice());
        h.update(self.tls_spki_sha256.unwrap_or(B256::ZERO).as_slice());
        B256::from(<[u8; 32]>::from(h.finalize()))
    }

    /// The keys signed by the TEE signer `tee`.
    pub fn sign(
        tee: &k256::ecdsa::SigningKey,
        dataset_key: &k256::PublicKey,
        tls_spki_sha256: Option<B256>,
    ) -> Self {
        let mut keys = TeeKeys {
            dataset_key: crate::envelope::compressed(dataset_key).into(),
            tls_spki_sha256,
            signature: Default::default(),
        };
        let signature = crate::sig::sign_prehash(tee, &keys.hash());
        keys.signature = signature.to_bytes_v27().to_vec().into();
        keys
    }

    /// Checks the signature is the TEE `signer`'s and returns the dataset key.
    pub fn verify(&self, signer: Address) -> Result<k256::PublicKey, TeeKeysError> {
        let key = k256::PublicKey::from_sec1_bytes(self.dataset_key.as_slice())
            .map_err(|_| TeeKeysError::DatasetKey)?;
        let recovered = crate::sig::Signature::from_bytes(&self.signature)
            .and_then(|s| s.recover_address(&self.hash()))
            .map_err(|_| TeeKeysError::Signature(signer))?;
        if recovered != signer {
            return Err(TeeKeysError::Signature(signer));
        }
        Ok(key)
    }

    /// [`Self::verify`], and the attestation document binds exactly these keys.
    pub fn verify_bound(
        &self,
        document: &AttestationDocument,
    ) -> Result<k256::PublicKey, TeeKeysError> {
        let key = self.verify(document.signer)?;
        if document.dataset_key_hash != Some(self.hash()) {
            return Err(TeeKeysError::NotBound {
                bound: document
                    .dataset_key_hash
                    .map_or_else(|| "none".to_owned(), |h| h.to_string()),
                served: self.hash(),
            });
        }
        Ok(key)
    }
}

/// Domain tag of the GPU nonce ([`gpu_nonce`]).
pub const GPU_NONCE_DOMAIN: &[u8] = b"sealtune/gpu-nonce/v1";

/// The nonce the worker asks each GPU to sign for a quote over the verifier's `nonce`:
/// `SHA-256("sealtune/gpu-nonce/v1" ‖ nonce)` (docs/PROTOCOL.md §5.1.1). Derived from the same
/// request as the TDX quote, so one verifier nonce makes both fresh; the evidence's hash is then
/// bound in [`AttestationDocument::gpu_evidence_hash`], so another machine's GPU answering the same
/// nonce is not enough.
pub fn gpu_nonce(nonce: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(GPU_NONCE_DOMAIN);
    h.update(nonce);
    h.finalize().into()
}

/// A file's content hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    /// SHA-256 of the bytes.
    pub sha256: B256,
    /// Length in bytes.
    pub len: u64,
}

impl FileDigest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        FileDigest {
            sha256: B256::from(<[u8; 32]>::from(Sha256::digest(bytes))),
            len: bytes.len() as u64,
        }
    }
}

/// One file of a directory, as [`tree_digest`] hashes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Path relative to the directory, `/`-separated, UTF-8.
    pub path: String,
    /// Its content hash.
    pub digest: FileDigest,
}

/// The content hash of a directory: entries sorted by path bytes, then
/// `SHA-256(for each: path ‖ 0x00 ‖ be64(len) ‖ sha256)`. Directories themselves, modes and times
/// are not part of it; symlinks are hashed as the files they point to.
pub fn tree_digest(entries: &mut [TreeEntry]) -> B256 {
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    let mut h = Sha256::new();
    for e in entries.iter() {
        h.update(e.path.as_bytes());
        h.update([0u8]);
        h.update(e.digest.len.to_be_bytes());
        h.update(e.digest.sha256.as_slice());
    }
    B256::from(<[u8; 32]>::from(h.finalize()))
}

/// Where a model's weights are, by content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum WeightsDigest {
    /// A directory, by [`tree_digest`].
    Tree(B256),
    /// A zip in storage by its 0G root hash (checked when fetched).
    Root(B256),
}

/// One offered model, by content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasuredModel {
    /// Its name.
    pub name: String,
    /// `preTrainedModelHash`.
    pub hash: B256,
    /// `text` or `image`.
    pub data_type: String,
    /// The parameter schema (`lora` or `free`).
    pub params: String,
    /// The training script.
    pub script: FileDigest,
    /// The tokenizer used for the fee.
    pub tokenizer: Option<FileDigest>,
    /// The usage file served at `/v1/model/desc/:name`.
    pub usage: Option<FileDigest>,
    /// The weights.
    pub weights: WeightsDigest,
    /// Price coefficient (decimal text).
    pub price_coefficient: String,
    /// Flat storage fee in neuron.
    pub storage_fee: U256,
    /// Processes a task of this model runs as (torchrun's world size). 1 is left out of the
    /// document, so a single-process configuration hashes as it did before ranks existed.
    #[serde(default = "one_rank", skip_serializing_if = "is_one_rank")]
    pub ranks: u32,
    /// The script that evaluates a delivered model (PROTOCOL.md §10); left out when the model
    /// offers no evaluation, so such a configuration hashes as it did before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_script: Option<FileDigest>,
    /// The LoRA options the provider offers for this model (`lora_ranges`); absent when it declares
    /// none ([`crate::params::LoraRanges::default`] applies), so such a configuration hashes as it
    /// did before LoRA options existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_ranges: Option<crate::params::LoraRanges>,
    /// A sealed checkpoint every this many steps (0: none). 0 is left out of the document, so a
    /// configuration without checkpoints hashes as it did before they existed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub checkpoint_steps: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn one_rank() -> u32 {
    1
}

fn is_one_rank(ranks: &u32) -> bool {
    *ranks == 1
}

/// The limits that change what a customer gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasuredLimits {
    /// Tasks queued or running at most.
    pub queue_size: u32,
    /// Longest training run, seconds.
    pub training_timeout_secs: u64,
    /// Executor memory limit in bytes.
    pub executor_memory_bytes: Option<u64>,
    /// Largest dataset upload.
    pub max_upload_bytes: u64,
    /// Acknowledgement wait before the penalty settlement, seconds.
    pub ack_timeout_secs: u64,
    /// Retention of datasets and deliverables, seconds.
    pub retention_secs: u64,
    /// Re-trainings of an interrupted task.
    pub training_restarts: u32,
    /// Longest setup (download and counting), seconds.
    pub setup_timeout_secs: u64,
    /// Balance required before any download when the request signs no fee ceiling.
    pub min_deposit: U256,
    /// Largest unpacked dataset, bytes.
    pub max_dataset_unpacked_bytes: u64,
    /// Most entries in a dataset zip.
    pub max_dataset_entries: u64,
}

/// One wall of the training sandbox and whether it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wall {
    /// Its name (e.g. `task-uid`, `seccomp`, `landlock`).
    pub name: String,
    /// Core walls must stand in production attestation modes.
    pub core: bool,
    /// Whether it stands on this machine.
    pub present: bool,
}

/// The canonical measured configuration. Its JSON (struct field order, no maps) is canonical:
/// [`ConfigDocument::canonical_bytes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigDocument {
    /// Always [`CONFIG_VERSION`].
    pub version: u32,
    /// The attestation source (`dstack`, `tappd`, `configfs-tsm`, `dev`).
    pub attestation_source: String,
    /// FineTuningServing.
    pub serving: Address,
    /// LedgerManager.
    pub ledger: Address,
    /// `pricePerToken`.
    pub price_per_token: U256,
    /// Limits.
    pub limits: MeasuredLimits,
    /// The models, in config order.
    pub models: Vec<MeasuredModel>,
    /// The sandbox walls, in a fixed order.
    pub sandbox: Vec<Wall>,
    /// Whether the worker serves HTTPS itself, with a TLS key derived in the TEE (its SPKI hash in
    /// [`TeeKeys::tls_spki_sha256`]). `false` is left out of the document, so a configuration
    /// without it hashes as it did before the listener existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
}

impl ConfigDocument {
    /// The canonical bytes: compact JSON in struct field order.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Serializing plain structs, vectors and strings cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The config hash: `SHA-256(canonical_bytes)`.
    pub fn hash(&self) -> B256 {
        B256::from(<[u8; 32]>::from(Sha256::digest(self.canonical_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> AttestationDocument {
        AttestationDocument::new(
            Address::repeat_byte(0xaa),
            B256::repeat_byte(0xbb),
            B256::repeat_byte(0xcc),
        )
    }

    #[test]
    fn report_data_is_the_domain_separated_hash_of_fixed_fields() {
        let d = doc();
        let mut pre = Vec::new();
        pre.extend_from_slice(b"sealtune/attestation-document/v2");
        pre.extend_from_slice(&[0xaa; 20]);
        pre.extend_from_slice(&[0xbb; 32]);
        pre.extend_from_slice(&[0xcc; 32]);
        pre.extend_from_slice(&[0u8; 64]);
        let expected: [u8; 64] = Sha512::digest(&pre).into();
        assert_eq!(d.report_data(), expected);
        // Every field is bound.
        let mut other = d;
        other.gpu_evidence_hash = Some(B256::repeat_byte(1));
        assert_ne!(other.report_data(), d.report_data());
        let mut other = d;
        other.config_hash = B256::repeat_byte(1);
        assert_ne!(other.report_data(), d.report_data());
    }

    #[test]
    fn json_round_trips_and_other_versions_are_refused() {
        let d = doc();
        let v = serde_json::to_value(d).unwrap();
        assert_eq!(AttestationDocument::from_json(&v).unwrap(), d);
        let mut bad = v.clone();
        bad["version"] = 3.into();
        assert_eq!(
            AttestationDocument::from_json(&bad).unwrap_err(),
            DocumentError::Version(3)
        );
        let mut extra = v;
        extra["signer_hint"] = "x".into();
        assert!(matches!(
            AttestationDocument::from_json(&extra),
            Err(DocumentError::Malformed(_))
        ));
    }

    #[test]
    fn tee_keys_are_signed_by_the_signer_and_bound_by_the_document() {
        let tee = k256::ecdsa::SigningKey::from_slice(&[5u8; 32]).unwrap();
        let signer = crate::sig::address_of(tee.verifying_key());
        let ds = k256::SecretKey::from_slice(&[6u8; 32])
            .unwrap()
            .public_key();
        let keys = TeeKeys::sign(&tee, &ds, Some(B256::repeat_byte(9)));
        assert_eq!(keys.verify(signer).unwrap(), ds);
        let mut doc = AttestationDocument::new(signer, B256::ZERO, B256::ZERO);
        assert!(matches!(
            keys.verify_bound(&doc),
            Err(TeeKeysError::NotBound { .. })
        ));
        doc.dataset_key_hash = Some(keys.hash());
        assert_eq!(keys.verify_bound(&doc).unwrap(), ds);
        // Another key, or another TLS key, under the same signature.
        let other = k256::SecretKey::from_slice(&[7u8; 32])
            .unwrap()
            .public_key();
        let mut swapped = keys.clone();
        swapped.dataset_key = crate::envelope::compressed(&other).into();
        assert_eq!(swapped.verify(signer), Err(TeeKeysError::Signature(signer)));
        let mut tls = keys.clone();
        tls.tls_spki_sha256 = None;
        assert_eq!(tls.verify(signer), Err(TeeKeysError::Signature(signer)));
        let json = serde_json::to_value(&keys).unwrap();
        assert_eq!(serde_json::from_value::<TeeKeys>(json).unwrap(), keys);
    }

    #[test]
    fn tree_digest_ignores_listing_order_but_not_paths_or_content() {
        let e = |p: &str, b: &[u8]| TreeEntry {
            path: p.into(),
            digest: FileDigest::of(b),
        };
        let a = tree_digest(&mut [e("a", b"1"), e("b/c", b"2")]);
        let b = tree_digest(&mut [e("b/c", b"2"), e("a", b"1")]);
        assert_eq!(a, b);
        assert_ne!(a, tree_digest(&mut [e("a", b"1"), e("b/d", b"2")]));
        assert_ne!(a, tree_digest(&mut [e("a", b"1"), e("b/c", b"3")]));
    }
}
