//! The GPU half of the chain of trust: the `nvidia_payload` of a `/v1/quote` answer, checked
//! offline (docs/verifier.md, "GPU evidence").
//!
//! * [`spdm`] reads each GPU's SPDM GET_MEASUREMENTS request and signed response (bounds-checked,
//!   fuzzed: `fuzz_targets/gpu_evidence.rs`).
//! * [`chain`] checks its certificate chain to NVIDIA's device identity root, pinned in this crate.
//! * [`evidence`] checks one GPU: chain, SPDM signature with the leaf's key, FWID, nonce,
//!   measurements against reference values.
//! * [`rim`] reads NVIDIA's reference integrity manifests (driver and VBIOS RIMs) into reference
//!   values and checks their signing chain to NVIDIA's RIM root.
//! * [`verify_payload`] checks every GPU of a payload, the shared chain parts once, and the
//!   binding of the whole payload into the attestation document v2 (`gpu_evidence_hash`).
//!
//! ```
//! use sealtune_verifier::gpu::{GpuInputs, verify_payload};
//! let outcome = verify_payload(None, &GpuInputs { now: 0, ..Default::default() });
//! assert!(outcome.absent.is_some());
//! ```

pub mod chain;
pub mod evidence;
pub mod links;
pub mod policy;
pub mod rim;
pub mod spdm;

use sealtune_protocol::B256;
use sealtune_protocol::attestation::{AttestationDocument, gpu_nonce};
use sealtune_protocol::gpu::{CcState, NvidiaPayload, Served};
use serde::Serialize;

pub use evidence::{GpuCheck, ReferenceValues, verify_gpu};

/// What the GPU check depends on besides the payload.
#[derive(Debug, Clone, Default)]
pub struct GpuInputs {
    /// Unix time at which certificates are judged.
    pub now: u64,
    /// The attestation document the quote binds, when the answer carries one.
    pub document: Option<AttestationDocument>,
    /// Reference values from RIMs (`--rim`).
    pub reference: Option<ReferenceValues>,
    /// Another trust anchor (DER) than NVIDIA's device identity root (tests).
    pub root_der: Option<Vec<u8>>,
}

/// The outcome for a whole payload.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GpuOutcome {
    /// Why there is no evidence (`nvidia_payload` null, missing or `{"absent": …}`).
    pub absent: Option<String>,
    /// The payload could not be read.
    pub malformed: Option<String>,
    /// `SHA-256` of the payload's canonical bytes.
    pub hash: Option<B256>,
    /// The architecture the payload names.
    pub arch: Option<String>,
    /// The CC / dev-tools state the worker reported (bound by the hash, not signed by the GPU).
    pub cc: Option<CcState>,
    /// The binding into the attestation document: `Ok` when the document's `gpu_evidence_hash`
    /// is this payload's hash and the payload's nonce derives from the document's nonce.
    pub binding: Option<Result<String, String>>,
    /// One entry per GPU.
    pub gpus: Vec<GpuCheck>,
}

impl GpuOutcome {
    /// Evidence is present, every GPU holds and the payload is bound.
    pub fn ok(&self) -> bool {
        self.absent.is_none()
            && self.malformed.is_none()
            && !self.gpus.is_empty()
            && self.gpus.iter().all(GpuCheck::ok)
            && matches!(self.binding, Some(Ok(_)))
    }

    /// The lowest driver version reported by any GPU.
    pub fn min_driver_version(&self) -> Option<&str> {
        self.gpus
            .iter()
            .filter_map(|g| g.driver_version.as_deref())
            .min_by(|a, b| compare_versions(a, b))
    }
}

/// Compares dotted versions numerically (`550.90.07` < `550.127.05`).
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |s: &str| -> Vec<u64> { s.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parts(a).cmp(&parts(b))
}

/// Checks a served `nvidia_payload` (null, `{"absent": …}`, the object, or the object as a string).
pub fn verify_payload(value: Option<&serde_json::Value>, inputs: &GpuInputs) -> GpuOutcome {
    let payload = match NvidiaPayload::read(value) {
        Ok(Served::Missing) => {
            return GpuOutcome {
                absent: Some("the answer has no nvidia_payload".into()),
                ..Default::default()
            };
        }
        Ok(Served::Absent(reason)) => {
            return GpuOutcome {
                absent: Some(format!("the worker says: {reason}")),
                ..Default::default()
            };
        }
        Ok(Served::Present(p)) => p,
        Err(e) => return malformed(e.to_string()),
    };
    let (hash, nonce) = match (payload.hash(), payload.nonce_bytes()) {
        (Ok(h), Ok(n)) => (h, n),
        (Err(e), _) | (_, Err(e)) => return malformed(e.to_string()),
    };
    let (binding, expected_nonce) = binding(&hash, &nonce, inputs.document.as_ref());
    let mut chains = match &inputs.root_der {
        Some(root) => chain::ChainVerifier::with_root(root.clone(), inputs.now),
        None => match chain::ChainVerifier::nvidia(inputs.now) {
            Ok(v) => v,
            Err(e) => return malformed(format!("the pinned root does not parse: {e}")),
        },
    };
    let mut gpus = Vec::with_capacity(payload.evidence_list.len());
    for (i, item) in payload.evidence_list.iter().enumerate() {
        match (item.evidence_bytes(i), item.certificate_bytes(i)) {
            (Ok(ev), Ok(cert)) => gpus.push(verify_gpu(
                i,
                &ev,
                &cert,
                &expected_nonce,
                &mut chains,
                inputs.reference.as_ref(),
            )),
            (Err(e), _) | (_, Err(e)) => return malformed(e.to_string()),
        }
    }
    GpuOutcome {
        absent: None,
        malformed: None,
        hash: Some(hash),
        arch: Some(payload.arch.clone()),
        cc: payload.cc,
        binding: Some(binding),
        gpus,
    }
}

fn malformed(reason: String) -> GpuOutcome {
    GpuOutcome {
        malformed: Some(reason),
        ..Default::default()
    }
}

/// The binding link and the nonce every GPU must have signed: [`gpu_nonce`] of the document's
/// nonce when there is a document, else (unbound) the payload's own nonce.
fn binding(
    hash: &B256,
    payload_nonce: &[u8; 32],
    document: Option<&AttestationDocument>,
) -> (Result<String, String>, [u8; 32]) {
    let Some(doc) = document else {
        return (
            Err(
                "no attestation document: the evidence is not bound to this quote, and its nonce \
                 was chosen by the provider (ask with a nonce)"
                    .into(),
            ),
            *payload_nonce,
        );
    };
    let expected = gpu_nonce(&doc.nonce.0);
    let result = match doc.gpu_evidence_hash {
        None => Err(
            "the attestation document's gpu_evidence_hash slot is empty: the quote does \
                     not bind this evidence"
                .to_string(),
        ),
        Some(h) if &h != hash => Err(format!(
            "the attestation document binds GPU evidence {h}, the payload served hashes to {hash}"
        )),
        Some(_) if payload_nonce != &expected => Err(format!(
            "the payload's nonce {} is not gpu_nonce(document nonce) = {}",
            hex::encode(payload_nonce),
            hex::encode(expected)
        )),
        Some(h) => Ok(format!(
            "gpu_evidence_hash {h} bound in the quote; nonce = gpu_nonce(document nonce)"
        )),
    };
    (result, expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(compare_versions("550.90.07", "550.127.05"), Ordering::Less);
        assert_eq!(compare_versions("560.1", "550.127.05"), Ordering::Greater);
        assert_eq!(compare_versions("550.90.07", "550.90.07"), Ordering::Equal);
    }
}
