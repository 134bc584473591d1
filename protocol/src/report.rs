//! The signed training report (sealtune; PROTOCOL.md §9): what the TEE saw while it trained a task.
//!
//! A [`TrainingReport`] is a canonical JSON document: the compact serialisation of the struct in its
//! field order (no maps with caller-chosen order except [`TrainingReport::metrics`], a sorted map).
//! Absent numbers are absent (the field is left out), never invented: a script that computes no eval
//! loss gets a report without one.
//!
//! Signing (one scheme): the TEE signer signs, as a raw EIP-712 digest with `v` = 27/28, the struct
//!
//! ```text
//! TrainingReport(string taskId,address user,bytes modelRootHash,bytes32 reportHash)
//! ```
//!
//! in the serving contract's domain ([`crate::eip712::domain`]: name `"0G Fine-Tuning Serving"`,
//! version `"1"`, the chain id, the serving contract), where `reportHash = keccak256(document bytes)`.
//! The task id, user and deliverable root are typed fields (a wallet shows them; a verifier compares
//! them with the chain), the hash binds every other field. The signature is over the exact bytes
//! served ([`SignedReport::document`], a JSON string), so a reader never re-serialises floats.
//!
//! ```
//! use k256::ecdsa::SigningKey;
//! use sealtune_protocol::report::{SignedReport, TrainingReport};
//! use sealtune_protocol::{eip712, sig, Address, B256};
//!
//! let tee = SigningKey::from_slice(&[0x07; 32]).unwrap();
//! let domain = eip712::domain(31337, Address::repeat_byte(0x5e));
//! let mut report = TrainingReport::example();
//! report.tee_signer = sig::address_of(tee.verifying_key());
//! let signed = SignedReport::sign(&report, &tee, &domain);
//! let (checked, signer) = signed.verify(&domain).unwrap();
//! assert_eq!(signer, report.tee_signer);
//! assert_eq!(checked, report);
//!
//! let edited = signed.document.replace("\"steps\":8", "\"steps\":9");
//! let forged = SignedReport { document: edited, ..signed };
//! assert!(forged.verify(&domain).is_err());
//! ```

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, keccak256};
use alloy_sol_types::{Eip712Domain, SolStruct};
use k256::ecdsa::SigningKey;
use serde::{Deserialize, Serialize};

use crate::sig::{self, SigError, Signature};

/// The report format version written in every document.
pub const REPORT_VERSION: u32 = 1;

/// At most this many points of the loss curve are kept ([`sample_curve`]).
pub const MAX_CURVE_POINTS: usize = 64;

/// Longest accepted document in bytes (256 KiB).
pub const MAX_DOCUMENT_LEN: usize = 256 << 10;

/// The metric names the stock scripts report (and the client's thresholds read).
pub mod metric {
    /// Mean cross-entropy over the validation set's shifted labels, padding excluded, after training.
    pub const EVAL_LOSS: &str = "eval_loss";
    /// `exp(eval_loss)`.
    pub const PERPLEXITY: &str = "perplexity";
    /// The same loss of the base model (before training) on the same data.
    pub const BASE_EVAL_LOSS: &str = "base_eval_loss";
    /// `exp(base_eval_loss)`.
    pub const BASE_PERPLEXITY: &str = "base_perplexity";
}

/// The EIP-712 type (its own module: its name is the type name, `TrainingReport`).
pub mod typed {
    use alloy_sol_types::sol;

    sol! {
    /// The EIP-712 struct the TEE signer signs for a report:
    /// `TrainingReport(string taskId,address user,bytes modelRootHash,bytes32 reportHash)`.
    #[derive(Debug, PartialEq, Eq)]
    struct TrainingReport {
        /// The task id (UUID text).
        string taskId;
        /// The customer.
        address user;
        /// The deliverable's root hash (32 raw bytes), as announced with `addDeliverable`.
        bytes modelRootHash;
        /// `keccak256` of the canonical document bytes.
        bytes32 reportHash;
    }
    }
}
use typed::TrainingReport as TrainingReportMessage;

/// One point of the loss curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossPoint {
    /// The training step.
    pub step: u64,
    /// The training loss the script reported at that step.
    pub loss: f64,
}

/// The training report: what the worker saw, signed by the TEE signer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingReport {
    /// [`REPORT_VERSION`].
    pub version: u32,
    /// The task id (UUID text).
    pub task_id: String,
    /// The customer.
    pub user: Address,
    /// The provider (its on-chain service address).
    pub provider: Address,
    /// The TEE signer that signs this report.
    pub tee_signer: Address,
    /// The serving contract.
    pub serving_contract: Address,
    /// The chain id.
    pub chain_id: u64,
    /// The base model's name.
    pub base_model: String,
    /// `preTrainedModelHash`.
    pub base_model_hash: B256,
    /// The dataset's hash (its keccak256 or 0G root); the validation set travels inside it
    /// (`validation*.jsonl` entries of the zip).
    pub dataset_hash: B256,
    /// The deliverable's root hash, as announced on chain.
    pub model_root_hash: B256,
    /// SHA-256 of the training script that ran (the measured copy).
    pub script_sha256: B256,
    /// The measured configuration's hash (PROTOCOL.md §5.2).
    pub config_hash: B256,
    /// `trainingParams` as the customer signed them (JSON text).
    pub training_params: String,
    /// The tokens the fee was computed from.
    pub tokens_billed: u64,
    /// The fee (decimal neuron).
    pub fee: String,
    /// Training steps the script reported (absent when it reported none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    /// Unix seconds when the training process started.
    pub started_at: i64,
    /// Wall time of the training process in milliseconds.
    pub wall_time_ms: u64,
    /// The training loss curve (at most [`MAX_CURVE_POINTS`], sampled evenly, last point kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loss_curve: Vec<LossPoint>,
    /// Every named metric the script reported (its last value), e.g. [`metric::EVAL_LOSS`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
}

/// A report and the TEE signer's signature over it, as the worker serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedReport {
    /// The canonical JSON document (the exact bytes signed).
    pub document: String,
    /// `r ‖ s ‖ v` (v = 27/28) over the EIP-712 digest, `0x` hex.
    pub signature: String,
}

/// Why a report did not verify.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The document is too long.
    #[error("report document longer than {MAX_DOCUMENT_LEN} bytes ({0})")]
    TooLong(usize),
    /// The document is not a report of this version.
    #[error("report document is not a training report: {0}")]
    Malformed(String),
    /// The document names another version.
    #[error("unsupported report version {0} (this build reads {REPORT_VERSION})")]
    Version(u32),
    /// The signature is malformed or does not recover.
    #[error("report signature: {0}")]
    Signature(#[from] SigError),
    /// The signature recovers to another address than the document's `tee_signer`.
    #[error("report signed by {recovered}, but the document names TEE signer {claimed}")]
    WrongSigner {
        /// Recovered from the signature.
        recovered: Address,
        /// The document's `tee_signer`.
        claimed: Address,
    },
}

impl TrainingReport {
    /// The canonical bytes: compact JSON in field order.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Serialising a struct of plain fields (finite floats: see `finite_metrics`) cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The EIP-712 message for a document whose canonical bytes are `document`.
    fn message(&self, document: &[u8]) -> TrainingReportMessage {
        TrainingReportMessage {
            taskId: self.task_id.clone(),
            user: self.user,
            modelRootHash: self.model_root_hash.to_vec().into(),
            reportHash: keccak256(document),
        }
    }

    /// An example report (documentation and tests).
    pub fn example() -> TrainingReport {
        TrainingReport {
            version: REPORT_VERSION,
            task_id: "123e4567-e89b-12d3-a456-426614174000".into(),
            user: Address::repeat_byte(0x11),
            provider: Address::repeat_byte(0x22),
            tee_signer: Address::repeat_byte(0x33),
            serving_contract: Address::repeat_byte(0x5e),
            chain_id: 31337,
            base_model: "SmolLM2-135M-Instruct".into(),
            base_model_hash: B256::repeat_byte(0x44),
            dataset_hash: B256::repeat_byte(0x55),
            model_root_hash: B256::repeat_byte(0x66),
            script_sha256: B256::repeat_byte(0x77),
            config_hash: B256::repeat_byte(0x88),
            training_params: r#"{"num_train_epochs":2}"#.into(),
            tokens_billed: 1234,
            fee: "2468000".into(),
            steps: Some(8),
            started_at: 1_780_000_000,
            wall_time_ms: 11_500,
            loss_curve: vec![
                LossPoint { step: 1, loss: 3.5 },
                LossPoint {
                    step: 8,
                    loss: 0.75,
                },
            ],
            metrics: [
                (metric::BASE_EVAL_LOSS.to_owned(), 3.25),
                (metric::EVAL_LOSS.to_owned(), 1.5),
            ]
            .into(),
        }
    }
}

/// Keeps at most [`MAX_CURVE_POINTS`] points of `curve`, evenly spaced, always the last one.
pub fn sample_curve(curve: &[LossPoint]) -> Vec<LossPoint> {
    let n = curve.len();
    if n <= MAX_CURVE_POINTS {
        return curve.to_vec();
    }
    let stride = n.div_ceil(MAX_CURVE_POINTS);
    let mut out: Vec<LossPoint> = curve.iter().step_by(stride.max(1)).copied().collect();
    if let (Some(last), Some(kept)) = (curve.last(), out.last())
        && kept.step != last.step
    {
        if out.len() >= MAX_CURVE_POINTS {
            out.pop();
        }
        out.push(*last);
    }
    out
}

impl SignedReport {
    /// Sign `report` with the TEE key in `domain`.
    pub fn sign(report: &TrainingReport, key: &SigningKey, domain: &Eip712Domain) -> SignedReport {
        let bytes = report.canonical_bytes();
        let digest = report.message(&bytes).eip712_signing_hash(domain);
        SignedReport {
            document: String::from_utf8(bytes).unwrap_or_default(),
            signature: sig::sign_prehash(key, &digest).to_hex_v27(),
        }
    }

    /// The report, parsed from the exact signed bytes (unknown fields refused).
    pub fn report(&self) -> Result<TrainingReport, ReportError> {
        if self.document.len() > MAX_DOCUMENT_LEN {
            return Err(ReportError::TooLong(self.document.len()));
        }
        let report: TrainingReport = serde_json::from_str(&self.document)
            .map_err(|e| ReportError::Malformed(e.to_string()))?;
        if report.version != REPORT_VERSION {
            return Err(ReportError::Version(report.version));
        }
        Ok(report)
    }

    /// The EIP-712 digest the signature is over.
    pub fn digest(&self, domain: &Eip712Domain) -> Result<B256, ReportError> {
        let report = self.report()?;
        Ok(report
            .message(self.document.as_bytes())
            .eip712_signing_hash(domain))
    }

    /// Parse the report and check its signature recovers to the document's `tee_signer`. Returns the
    /// report and the signer; the caller checks the signer and the root against the chain.
    pub fn verify(&self, domain: &Eip712Domain) -> Result<(TrainingReport, Address), ReportError> {
        let report = self.report()?;
        let digest = report
            .message(self.document.as_bytes())
            .eip712_signing_hash(domain);
        let recovered = recover_claimed_signer(&self.signature, &digest, report.tee_signer)?;
        Ok((report, recovered))
    }
}

/// The signer of `digest` by the hex `signature`, which must be the `claimed` TEE signer (the rule of
/// every signed report: training and evaluation).
pub(crate) fn recover_claimed_signer(
    signature: &str,
    digest: &B256,
    claimed: Address,
) -> Result<Address, ReportError> {
    let recovered = Signature::from_hex(signature)?.recover_address(digest)?;
    if recovered != claimed {
        return Err(ReportError::WrongSigner { recovered, claimed });
    }
    Ok(recovered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_string_is_the_documented_one() {
        assert_eq!(
            TrainingReportMessage::eip712_encode_type(),
            "TrainingReport(string taskId,address user,bytes modelRootHash,bytes32 reportHash)"
        );
    }

    #[test]
    fn absent_numbers_are_left_out() {
        let mut r = TrainingReport::example();
        r.steps = None;
        r.loss_curve.clear();
        r.metrics.clear();
        let text = String::from_utf8(r.canonical_bytes()).unwrap();
        for absent in ["steps", "loss_curve", "metrics", "eval_loss"] {
            assert!(!text.contains(absent), "{absent} in {text}");
        }
    }

    #[test]
    fn curve_is_sampled_keeping_the_last_point() {
        let curve: Vec<_> = (1..=1000)
            .map(|s| LossPoint {
                step: s,
                loss: 1.0 / s as f64,
            })
            .collect();
        let s = sample_curve(&curve);
        assert!(s.len() <= MAX_CURVE_POINTS);
        assert_eq!(s.first().unwrap().step, 1);
        assert_eq!(s.last().unwrap().step, 1000);
        assert_eq!(sample_curve(&curve[..3]), curve[..3].to_vec());
    }

    #[test]
    fn another_domain_or_signer_fails() {
        let tee = SigningKey::from_slice(&[0x07; 32]).unwrap();
        let domain = crate::eip712::domain(31337, Address::repeat_byte(0x5e));
        let mut report = TrainingReport::example();
        report.tee_signer = sig::address_of(tee.verifying_key());
        let signed = SignedReport::sign(&report, &tee, &domain);
        let other = crate::eip712::domain(1, Address::repeat_byte(0x5e));
        assert!(matches!(
            signed.verify(&other),
            Err(ReportError::WrongSigner { .. })
        ));
        let mut claims_other = report.clone();
        claims_other.tee_signer = Address::repeat_byte(0x99);
        let lying = SignedReport::sign(&claims_other, &tee, &domain);
        assert!(matches!(
            lying.verify(&domain),
            Err(ReportError::WrongSigner { .. })
        ));
    }
}
