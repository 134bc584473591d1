//! Deliverable checks (PROTOCOL.md §4): the tag signature at the front of an encrypted model file
//! recovers to the provider's TEE signer, and the file's root hash (`keccak256` of the file, or its
//! 0G Storage root) equals the deliverable's on-chain `modelRootHash`. No key is needed: the tags are
//! read with one seek per chunk, hashing streams. The rules are the protocol's
//! (`sealtune_protocol::deliverable::{recover_tag_signer, file_root_kind}`, the same the client runs
//! before acknowledging); this module words each as a link of the report.

use std::fs::File;
use std::path::Path;

use alloy::primitives::{B256, Bytes};
use sealtune_protocol::deliverable::{
    self, ChunkLen, OpenError, RootError, RootKind, TagSigner, encrypted_file_keccak,
};
use sealtune_protocol::sig::SigError;
use sealtune_protocol::storage::root_hash_file;

use crate::settlement::ExpectedSigner;
use crate::verify::VerificationReport;

/// Where the expected root hash comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedRoot {
    /// Given by the user (`--root`).
    Given(Bytes),
    /// The deliverable's `modelRootHash` on chain (described, e.g. "deliverable `<id>` of `<user>`").
    OnChain(Bytes, String),
}

impl ExpectedRoot {
    fn bytes(&self) -> &Bytes {
        match self {
            ExpectedRoot::Given(b) | ExpectedRoot::OnChain(b, _) => b,
        }
    }
    fn describe(&self) -> String {
        match self {
            ExpectedRoot::Given(b) => format!("0x{} (given)", hex::encode(b)),
            ExpectedRoot::OnChain(b, what) => {
                format!("0x{} (on-chain modelRootHash of {what})", hex::encode(b))
            }
        }
    }
}

/// What a deliverable check uses.
#[derive(Debug, Clone)]
pub struct DeliverableCheck {
    /// The signer the tag signature must recover to; `None` fails that link.
    pub expected_signer: Option<ExpectedSigner>,
    /// The root hash the file must have; `None` only reports the file's hashes.
    pub expected_root: Option<ExpectedRoot>,
    /// Plaintext chunk size ([`ChunkLen::WIRE`] for every real deliverable).
    pub chunk_len: ChunkLen,
}

impl Default for DeliverableCheck {
    fn default() -> Self {
        Self {
            expected_signer: None,
            expected_root: None,
            chunk_len: ChunkLen::WIRE,
        }
    }
}

/// The tag signer of the file (the protocol's rule, all-zero placeholder refused), worded for the report.
fn recover_tag_signer(path: &Path, chunk_len: ChunkLen) -> Result<TagSigner, String> {
    let mut f = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    deliverable::recover_tag_signer(&mut f, chunk_len).map_err(|e| match e {
        OpenError::Io(e) => format!("cannot read the tag signature: {e}"),
        OpenError::MalformedTagSignature(e @ SigError::Unrecoverable) => {
            format!("tag signature does not recover: {e}")
        }
        OpenError::MalformedTagSignature(e) => format!("tag signature: {e}"),
        other => other.to_string(),
    })
}

/// The TEE-signer link: the recovered signer is the expected one.
fn signer_link(
    recovered: &Result<TagSigner, String>,
    expected: Option<&ExpectedSigner>,
) -> Result<String, String> {
    let Some(expected) = expected.map(ExpectedSigner::address) else {
        return Err(
            "no expected TEE signer: give --signer, or --rpc with the serving contract and provider"
                .to_owned(),
        );
    };
    let Ok(tags) = recovered else {
        return Err("no signer recovered".to_owned());
    };
    match tags.expect(expected) {
        Ok(_) => Ok(format!("sealed by the TEE signer {expected}")),
        Err(_) => Err(format!(
            "signed by {}, not by the expected TEE signer {expected}",
            tags.signer
        )),
    }
}

/// The root-hash link: which hash of the file (keccak256 `keccak`, else its 0G storage root) is `expected`.
fn root_link(path: &Path, keccak: B256, expected: &ExpectedRoot) -> Result<String, String> {
    match deliverable::file_root_kind(path, expected.bytes(), keccak) {
        Ok(RootKind::Keccak) => Ok(format!("keccak256 of the file = {}", expected.describe())),
        Ok(RootKind::StorageRoot) => Ok(format!(
            "0G storage root of the file = {}",
            expected.describe()
        )),
        Err(RootError::StorageRoot(e)) => Err(e.to_string()),
        Err(RootError::Mismatch {
            keccak,
            storage_root,
            ..
        }) => Err(format!(
            "neither keccak256 {keccak} nor 0G storage root {storage_root} equals {}",
            expected.describe()
        )),
    }
}

/// Both hashes of the file, reported when no root is expected.
fn root_info(path: &Path, keccak: &Result<B256, String>) -> Result<String, String> {
    let storage = root_hash_file(path).map_err(|e| e.to_string());
    let k = keccak.as_ref().map_err(Clone::clone)?;
    let s = storage?.root();
    Ok(format!(
        "keccak256 {k}, 0G storage root {s} (no expected root given)"
    ))
}

/// Check an encrypted deliverable file: tag signature → TEE signer, root hash → on-chain value.
pub fn check_deliverable(path: &Path, c: &DeliverableCheck, now: u64) -> VerificationReport {
    let mut rep = VerificationReport::new(now);
    let recovered = recover_tag_signer(path, c.chunk_len);
    rep.push_link(
        "tag signature",
        recovered
            .as_ref()
            .map(|t| {
                format!(
                    "keccak256(tags) 0x{} recovers to {}",
                    hex::encode(t.tag_digest),
                    t.signer
                )
            })
            .map_err(Clone::clone),
    );
    rep.push_link(
        "TEE signer",
        signer_link(&recovered, c.expected_signer.as_ref()),
    );
    if let Some(ExpectedSigner::OnChain(r)) = &c.expected_signer {
        rep.push_link(
            "signer acknowledged",
            if r.acknowledged {
                Ok("the contract owner acknowledged this TEE signer".into())
            } else {
                Err("the service's TEE signer is not acknowledged by the contract owner".into())
            },
        );
    }

    let keccak = encrypted_file_keccak(path).map_err(|e| e.to_string());
    match &c.expected_root {
        None => rep.push_info("root hash", root_info(path, &keccak)),
        Some(expected) => rep.push_link(
            "root hash",
            keccak.and_then(|k| root_link(path, k, expected)),
        ),
    }
    rep.finish();
    rep
}
