//! Confidential datasets and the v2 request, the customer's side (docs/PROTOCOL.md §2.1, §8).
//!
//! * [`tee_keys_of`]: the keys a verified sealtune provider publishes beside its quote (`tee_keys`),
//!   accepted only when the on-chain TEE signer signed them and the attestation document for this
//!   client's nonce binds them (`dataset_key_hash`).
//! * [`seal_dataset`]: the dataset file sealed to the provider's dataset key in an envelope named
//!   and signed by the customer (`sealtune_protocol::envelope`), streamed into a temporary file:
//!   what is uploaded (to the TEE or to 0G Storage) is ciphertext only.
//!
//! The v2 request itself is `sealtune_protocol::request_v2::TaskRequest::for_body`, the rule the
//! worker checks with.

use std::path::Path;

use alloy::primitives::{Address, B256};
use k256::ecdsa::SigningKey;
use sealtune_protocol::attestation::{AttestationDocument, TeeKeys};

use crate::error::{ClientError, Result};

/// The keys a provider's TEE published and its attestation bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderKeys {
    /// The dataset key datasets are sealed to.
    pub dataset_key: k256::PublicKey,
    /// The SHA-256 of the provider's own TLS key (SubjectPublicKeyInfo), when it serves HTTPS.
    pub tls_spki_sha256: Option<B256>,
}

/// The provider's published keys in the `/v1/quote` body `raw`, checked against the on-chain
/// `signer` and the attestation document for `nonce`. `Ok(None)` when the provider publishes none
/// (an official 0G broker, an older sealtune worker).
pub fn tee_keys_of(raw: &[u8], signer: Address, nonce: &[u8; 32]) -> Result<Option<ProviderKeys>> {
    let bad = |detail: String| ClientError::Attestation(format!("published TEE keys: {detail}"));
    let body: serde_json::Value =
        serde_json::from_slice(raw).map_err(|e| bad(format!("the quote is not JSON: {e}")))?;
    let Some(keys) = body.get("tee_keys").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let keys: TeeKeys = serde_json::from_value(keys.clone()).map_err(|e| bad(e.to_string()))?;
    let document = body
        .get("attestation_document")
        .ok_or_else(|| bad("no attestation document binds them".into()))
        .and_then(|d| AttestationDocument::from_json(d).map_err(|e| bad(e.to_string())))?;
    if document.nonce.as_slice() != nonce || document.signer != signer {
        return Err(bad(
            "the attestation document is not for this nonce and the on-chain signer".into(),
        ));
    }
    let dataset_key = keys
        .verify_bound(&document)
        .map_err(|e| bad(e.to_string()))?;
    Ok(Some(ProviderKeys {
        dataset_key,
        tls_spki_sha256: keys.tls_spki_sha256,
    }))
}

/// Seals the dataset at `path` to `recipient`, owned and signed by `owner`, into a temporary file
/// (streaming, one chunk in memory).
pub fn seal_dataset(
    path: &Path,
    owner: &SigningKey,
    recipient: &k256::PublicKey,
) -> Result<tempfile::NamedTempFile> {
    let mut input = std::io::BufReader::with_capacity(
        1 << 20,
        std::fs::File::open(path).map_err(|e| ClientError::io(path, e))?,
    );
    let sealed = tempfile::Builder::new()
        .prefix("sealtune-dataset-")
        .suffix(".sealed")
        .tempfile()
        .map_err(|e| ClientError::io(Path::new("temporary file"), e))?;
    let out = std::io::BufWriter::with_capacity(1 << 20, sealed.as_file());
    sealtune_protocol::envelope::seal(&mut input, out, owner, recipient, &mut rand_core::OsRng)
        .map_err(|e| ClientError::InvalidInput(format!("sealing {}: {e}", path.display())))?;
    Ok(sealed)
}
