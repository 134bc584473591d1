//! Evaluating a delivered model (sealtune; PROTOCOL.md §10): the request's parameters, the model key
//! re-wrapped to the TEE, the seed's `is_finetune` rule, and the signed [`EvaluationReport`].
//!
//! An evaluation is an ordinary task (create-task request v2, fee = tokens × price, settled with
//! `settleFees`) whose `trainingParams` are an [`EvaluationParams`] object:
//!
//! ```json
//! {"evaluate":"<the evaluated task's id>","model_key":"0x<ECIES ciphertext>"}
//! ```
//!
//! `model_key` is the evaluated model's 32-byte key (the customer unwrapped it from the settled
//! `encryptedSecret`), ECIES-encrypted to the worker's attested dataset key with the customer and
//! the evaluated task named inside ([`seal_model_key`] / [`open_model_key`]): only that worker can
//! open it, only for that customer's request about that task.
//!
//! The report: a canonical JSON document (compact serialisation of the struct in field order),
//! signed by the TEE signer as a raw EIP-712 digest (`v` = 27/28) in the serving contract's domain:
//!
//! ```text
//! EvaluationReport(string taskId,address user,string evaluatedTaskId,bytes evaluatedRootHash,bytes32 reportHash)
//! ```
//!
//! with `reportHash = keccak256(document bytes)`, as for the training report ([`crate::report`]).
//!
//! ```
//! use k256::ecdsa::SigningKey;
//! use sealtune_protocol::evaluation::{EvaluationReport, SignedEvaluation};
//! use sealtune_protocol::{eip712, sig, Address};
//!
//! let tee = SigningKey::from_slice(&[0x07; 32]).unwrap();
//! let domain = eip712::domain(31337, Address::repeat_byte(0x5e));
//! let mut report = EvaluationReport::example();
//! report.tee_signer = sig::address_of(tee.verifying_key());
//! let signed = SignedEvaluation::sign(&report, &tee, &domain);
//! assert_eq!(signed.verify(&domain).unwrap().0, report);
//! let forged = SignedEvaluation {
//!     document: signed.document.replace("\"eval_loss\":1.5", "\"eval_loss\":1.25"),
//!     ..signed
//! };
//! assert!(forged.verify(&domain).is_err());
//! ```

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, keccak256};
use alloy_sol_types::{Eip712Domain, SolStruct};
use k256::ecdsa::SigningKey;
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::deliverable::DeliverableKey;
use crate::ecies::{self, EciesError, PublicKey};
use crate::report::{MAX_DOCUMENT_LEN, ReportError};
use crate::sig;

/// The evaluation report format version written in every document.
pub const EVALUATION_VERSION: u32 = 1;

/// Longest task id accepted inside the model-key envelope.
const MAX_TASK_ID: usize = 64;

/// The EIP-712 type (its own module: its name is the type name, `EvaluationReport`).
pub mod typed {
    use alloy_sol_types::sol;

    sol! {
    /// `EvaluationReport(string taskId,address user,string evaluatedTaskId,bytes evaluatedRootHash,bytes32 reportHash)`.
    #[derive(Debug, PartialEq, Eq)]
    struct EvaluationReport {
        /// The evaluation task's id.
        string taskId;
        /// The customer.
        address user;
        /// The evaluated (delivered) task's id.
        string evaluatedTaskId;
        /// The evaluated deliverable's root hash (32 raw bytes), as announced on chain.
        bytes evaluatedRootHash;
        /// `keccak256` of the canonical document bytes.
        bytes32 reportHash;
    }
    }
}
use typed::EvaluationReport as EvaluationMessage;

/// The `trainingParams` of an evaluation task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationParams {
    /// The evaluated task's id (one of the customer's delivered tasks at this provider).
    pub evaluate: String,
    /// The evaluated model's key, ECIES-encrypted to the worker's dataset key ([`seal_model_key`]),
    /// `0x` hex.
    pub model_key: String,
}

impl EvaluationParams {
    /// Reads `trainingParams`: `None` when they are not an evaluation (no `evaluate` key), else the
    /// parameters or why they are malformed.
    pub fn parse(text: &str) -> Option<Result<EvaluationParams, String>> {
        let value: Value = serde_json::from_str(text).ok()?;
        value.get("evaluate")?;
        Some(
            serde_json::from_value(value)
                .map_err(|e| format!("evaluation parameters: {e} (expected {{\"evaluate\":\"<task id>\",\"model_key\":\"0x…\"}})")),
        )
    }

    /// The `trainingParams` text for these parameters (compact JSON).
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The model-key ciphertext.
    pub fn model_key_bytes(&self) -> Result<Vec<u8>, String> {
        hex::decode(self.model_key.trim_start_matches("0x"))
            .map_err(|e| format!("model_key is not hex: {e}"))
    }
}

/// Why a model key could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ModelKeyError {
    /// Not encrypted to this worker's dataset key, or altered.
    #[error(
        "the model key is not encrypted to this provider's attested dataset key (or was altered): {0}"
    )]
    Ecies(#[from] EciesError),
    /// Sealed for another customer or another task.
    #[error("the model key was sealed for {user} and task {task}, not for this request")]
    OtherRequest {
        /// The customer named inside.
        user: Address,
        /// The task named inside.
        task: String,
    },
    /// The plaintext is not `key ‖ user ‖ task id`.
    #[error("the model key envelope is malformed")]
    Malformed,
}

/// The plaintext inside the envelope: the key, the customer, the evaluated task's id.
fn model_key_plaintext(key: &DeliverableKey, user: Address, task: &str) -> Vec<u8> {
    let mut plain = Vec::with_capacity(task.len().saturating_add(52));
    plain.extend_from_slice(key.as_bytes());
    plain.extend_from_slice(user.as_slice());
    plain.extend_from_slice(task.as_bytes());
    plain
}

/// The customer's side: `key`, for `user`'s evaluation of `task`, encrypted to the worker's
/// attested dataset key (`tee_keys.dataset_key`).
pub fn seal_model_key(
    rng: &mut impl CryptoRngCore,
    dataset_key: &PublicKey,
    key: &DeliverableKey,
    user: Address,
    task: &str,
) -> Vec<u8> {
    ecies::encrypt(rng, dataset_key, &model_key_plaintext(key, user, task))
}

/// The worker's side: opens `sealed` with its dataset key; the customer and task named inside must
/// be `user` and `task`.
pub fn open_model_key(
    dataset_key: &k256::SecretKey,
    sealed: &[u8],
    user: Address,
    task: &str,
) -> Result<DeliverableKey, ModelKeyError> {
    let plain = ecies::decrypt(dataset_key, sealed)?;
    let (key, rest) = plain
        .split_first_chunk::<32>()
        .ok_or(ModelKeyError::Malformed)?;
    let (named, id) = rest
        .split_first_chunk::<20>()
        .ok_or(ModelKeyError::Malformed)?;
    let named = Address::from(*named);
    let id = std::str::from_utf8(id).map_err(|_| ModelKeyError::Malformed)?;
    if id.len() > MAX_TASK_ID {
        return Err(ModelKeyError::Malformed);
    }
    if named != user || id != task {
        return Err(ModelKeyError::OtherRequest {
            user: named,
            task: id.to_owned(),
        });
    }
    Ok(DeliverableKey::from_bytes(*key))
}

/// The architecture fields compared by [`is_finetune`] (a model's `config.json`).
pub const ARCHITECTURE_FIELDS: &[&str] = &[
    "model_type",
    "architectures",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "vocab_size",
];

/// Seed 003's check that a delivered model is a fine-tune of the base: it is a PEFT adapter
/// (`adapter_config`, the parsed `adapter_config.json`, present: it loads only onto the base's
/// shapes, which the evaluation itself does), or its `config.json` (`tuned`) has the base's
/// architecture fields ([`ARCHITECTURE_FIELDS`], every one the base names), or names the same
/// `_name_or_path`.
pub fn is_finetune(base: &Value, tuned: Option<&Value>, adapter_config: Option<&Value>) -> bool {
    if adapter_config.is_some_and(Value::is_object) {
        return true;
    }
    let Some(tuned) = tuned else {
        return false;
    };
    let named = |v: &Value| {
        v.get("_name_or_path")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if named(base).is_some() && named(base) == named(tuned) {
        return true;
    }
    let mut compared = false;
    for field in ARCHITECTURE_FIELDS {
        if let Some(b) = base.get(field) {
            if tuned.get(field) != Some(b) {
                return false;
            }
            compared = true;
        }
    }
    compared
}

/// What the TEE computed evaluating a delivered model (PROTOCOL.md §10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationReport {
    /// [`EVALUATION_VERSION`].
    pub version: u32,
    /// The evaluation task's id (its deliverable is this report, sealed).
    pub task_id: String,
    /// The evaluated task's id.
    pub evaluated_task_id: String,
    /// The customer (owner of both tasks).
    pub user: Address,
    /// The provider.
    pub provider: Address,
    /// The TEE signer that signed this document.
    pub tee_signer: Address,
    /// The serving contract.
    pub serving_contract: Address,
    /// The chain.
    pub chain_id: u64,
    /// The base model's name.
    pub base_model: String,
    /// The base model's hash (`preTrainedModelHash`).
    pub base_model_hash: B256,
    /// The evaluated deliverable's root hash, as announced on chain for `evaluated_task_id`.
    pub evaluated_root_hash: B256,
    /// The evaluation dataset's hash (`datasetHash`).
    pub dataset_hash: B256,
    /// sha256 of the measured evaluation script that ran.
    pub script_sha256: B256,
    /// The measured config's hash (PROTOCOL.md §5.2).
    pub config_hash: B256,
    /// Tokens billed (the evaluation dataset counted once by the model's rule).
    pub tokens_billed: u64,
    /// The fee (neuron, decimal).
    pub fee: String,
    /// Unix seconds when the evaluation started.
    pub started_at: i64,
    /// Wall time of the evaluation run.
    pub wall_time_ms: u64,
    /// Seed 003's check ([`is_finetune`]), made by the worker on the opened deliverable.
    pub is_finetune: bool,
    /// Every metric the script reported (last value each): `base_eval_loss`, `base_perplexity`,
    /// `eval_loss`, `perplexity` from the stock script. Absent ones are absent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
}

/// A report and the TEE signer's signature over it (the file inside the evaluation's deliverable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedEvaluation {
    /// The canonical JSON document (the exact bytes signed).
    pub document: String,
    /// `r ‖ s ‖ v` (v = 27/28) over the EIP-712 digest, `0x` hex.
    pub signature: String,
}

/// The file name of the signed report inside an evaluation's deliverable.
pub const REPORT_FILE: &str = "evaluation_report.json";

impl EvaluationReport {
    /// The canonical bytes: compact JSON in field order.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    fn message(&self, document: &[u8]) -> EvaluationMessage {
        EvaluationMessage {
            taskId: self.task_id.clone(),
            user: self.user,
            evaluatedTaskId: self.evaluated_task_id.clone(),
            evaluatedRootHash: self.evaluated_root_hash.to_vec().into(),
            reportHash: keccak256(document),
        }
    }

    /// An example report (documentation and tests).
    pub fn example() -> EvaluationReport {
        EvaluationReport {
            version: EVALUATION_VERSION,
            task_id: "223e4567-e89b-12d3-a456-426614174000".into(),
            evaluated_task_id: "123e4567-e89b-12d3-a456-426614174000".into(),
            user: Address::repeat_byte(0x11),
            provider: Address::repeat_byte(0x22),
            tee_signer: Address::repeat_byte(0x33),
            serving_contract: Address::repeat_byte(0x5e),
            chain_id: 31337,
            base_model: "SmolLM2-135M-Instruct".into(),
            base_model_hash: B256::repeat_byte(0x44),
            evaluated_root_hash: B256::repeat_byte(0x66),
            dataset_hash: B256::repeat_byte(0x55),
            script_sha256: B256::repeat_byte(0x77),
            config_hash: B256::repeat_byte(0x88),
            tokens_billed: 321,
            fee: "321000".into(),
            started_at: 1_780_000_000,
            wall_time_ms: 2_500,
            is_finetune: true,
            metrics: [
                ("base_eval_loss".to_owned(), 3.25),
                ("eval_loss".to_owned(), 1.5),
            ]
            .into(),
        }
    }
}

impl SignedEvaluation {
    /// Sign `report` with the TEE key in `domain`.
    pub fn sign(report: &EvaluationReport, key: &SigningKey, domain: &Eip712Domain) -> Self {
        let bytes = report.canonical_bytes();
        let digest = report.message(&bytes).eip712_signing_hash(domain);
        SignedEvaluation {
            document: String::from_utf8(bytes).unwrap_or_default(),
            signature: sig::sign_prehash(key, &digest).to_hex_v27(),
        }
    }

    /// The report, parsed from the exact signed bytes (unknown fields refused).
    pub fn report(&self) -> Result<EvaluationReport, ReportError> {
        if self.document.len() > MAX_DOCUMENT_LEN {
            return Err(ReportError::TooLong(self.document.len()));
        }
        let report: EvaluationReport = serde_json::from_str(&self.document)
            .map_err(|e| ReportError::Malformed(format!("not an evaluation report: {e}")))?;
        if report.version != EVALUATION_VERSION {
            return Err(ReportError::Version(report.version));
        }
        Ok(report)
    }

    /// Parse the report and check its signature recovers to the document's `tee_signer`. Returns the
    /// report and the signer; the caller checks the signer and the roots against the chain.
    pub fn verify(
        &self,
        domain: &Eip712Domain,
    ) -> Result<(EvaluationReport, Address), ReportError> {
        let report = self.report()?;
        let digest = report
            .message(self.document.as_bytes())
            .eip712_signing_hash(domain);
        let recovered =
            crate::report::recover_claimed_signer(&self.signature, &digest, report.tee_signer)?;
        Ok((report, recovered))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliverable::OsRng;
    use serde_json::json;

    #[test]
    fn type_string_is_the_documented_one() {
        assert_eq!(
            EvaluationMessage::eip712_encode_type(),
            "EvaluationReport(string taskId,address user,string evaluatedTaskId,bytes evaluatedRootHash,bytes32 reportHash)"
        );
    }

    #[test]
    fn every_field_is_bound_and_another_domain_fails() {
        let tee = SigningKey::from_slice(&[0x07; 32]).unwrap();
        let domain = crate::eip712::domain(31337, Address::repeat_byte(0x5e));
        let mut report = EvaluationReport::example();
        report.tee_signer = sig::address_of(tee.verifying_key());
        let signed = SignedEvaluation::sign(&report, &tee, &domain);
        assert_eq!(signed.verify(&domain).unwrap().0, report);
        for (from, to) in [
            ("\"is_finetune\":true", "\"is_finetune\":false"),
            ("\"tokens_billed\":321", "\"tokens_billed\":320"),
            ("\"evaluated_task_id\":\"1", "\"evaluated_task_id\":\"2"),
        ] {
            assert!(signed.document.contains(from), "{from}");
            let forged = SignedEvaluation {
                document: signed.document.replacen(from, to, 1),
                ..signed.clone()
            };
            assert!(
                matches!(
                    forged.verify(&domain),
                    Err(ReportError::WrongSigner { .. } | ReportError::Signature(_))
                ),
                "{from}"
            );
        }
        let other = crate::eip712::domain(1, Address::repeat_byte(0x5e));
        assert!(signed.verify(&other).is_err());
        // A training report's signature does not pass as an evaluation's (another type).
        assert!(
            crate::report::SignedReport {
                document: signed.document.clone(),
                signature: signed.signature.clone()
            }
            .verify(&domain)
            .is_err()
        );
    }

    #[test]
    fn the_model_key_opens_only_for_its_user_and_task() {
        let worker = k256::SecretKey::from_slice(&[0x09; 32]).unwrap();
        let key = DeliverableKey::from_bytes([0x42; 32]);
        let user = Address::repeat_byte(0x11);
        let sealed = seal_model_key(&mut OsRng, &worker.public_key(), &key, user, "task-1");
        let opened = open_model_key(&worker, &sealed, user, "task-1").unwrap();
        assert_eq!(opened.as_bytes(), key.as_bytes());
        assert!(matches!(
            open_model_key(&worker, &sealed, Address::repeat_byte(0x12), "task-1"),
            Err(ModelKeyError::OtherRequest { .. })
        ));
        assert!(matches!(
            open_model_key(&worker, &sealed, user, "task-2"),
            Err(ModelKeyError::OtherRequest { .. })
        ));
        let other = k256::SecretKey::from_slice(&[0x0a; 32]).unwrap();
        assert!(matches!(
            open_model_key(&other, &sealed, user, "task-1"),
            Err(ModelKeyError::Ecies(_))
        ));
    }

    #[test]
    fn params_are_recognised_by_their_evaluate_key() {
        assert!(EvaluationParams::parse(r#"{"num_train_epochs":1}"#).is_none());
        assert!(EvaluationParams::parse("not json").is_none());
        let p = EvaluationParams {
            evaluate: "t".into(),
            model_key: "0xab".into(),
        };
        assert_eq!(EvaluationParams::parse(&p.to_text()), Some(Ok(p.clone())));
        assert_eq!(p.model_key_bytes().unwrap(), vec![0xab]);
        assert!(matches!(
            EvaluationParams::parse(r#"{"evaluate":"t","model_key":"0x","extra":1}"#),
            Some(Err(_))
        ));
    }

    #[test]
    fn is_finetune_follows_the_seed() {
        let base = json!({"_name_or_path": "base", "model_type": "llama", "hidden_size": 576});
        assert!(is_finetune(&base, None, Some(&json!({"r": 8}))));
        assert!(is_finetune(
            &base,
            Some(&json!({"model_type": "llama", "hidden_size": 576})),
            None
        ));
        assert!(is_finetune(
            &base,
            Some(&json!({"_name_or_path": "base"})),
            None
        ));
        assert!(!is_finetune(
            &base,
            Some(&json!({"model_type": "llama", "hidden_size": 1024})),
            None
        ));
        assert!(!is_finetune(&base, None, None));
        assert!(!is_finetune(&json!({}), Some(&json!({})), None));
    }
}
