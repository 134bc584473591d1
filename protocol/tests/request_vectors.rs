//! Known-answer vectors produced by the official client's code (`tests/js/request_sign.cjs`: the 0G
//! SDK 0.9.0's own signing helpers and ethers 6's EIP-712 encoder), checked without node.
//!
//! `tests/vectors/requests.json` was generated once with
//! `NODE_PATH=node_modules node protocol/tests/js/request_sign.cjs <seed> 8`; the differential test
//! (`request_js_differential.rs`) runs the same checks on fresh vectors for a random seed.

use std::path::Path;

use k256::ecdsa::SigningKey;
use sealtune_protocol::eip712::{self, VerifierMessage};
use sealtune_protocol::request::{self, CreateTask, CreateTaskForm, MessageForm, RecoveredSigner};
use sealtune_protocol::sig::Signature;
use sealtune_protocol::{Address, B256, U256};
use serde::Deserialize;

/// The JSON document `request_sign.cjs` prints.
#[derive(Debug, Deserialize)]
pub(crate) struct Vectors {
    pub(crate) sdk_version: String,
    pub(crate) create_task: Vec<CreateTaskCase>,
    pub(crate) cancel: Vec<CancelCase>,
    pub(crate) lora_download: Vec<LoraCase>,
    pub(crate) dataset_upload: Vec<DatasetCase>,
    pub(crate) verifier_message: Vec<VerifierCase>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Key {
    pub(crate) private_key: String,
    pub(crate) address: String,
    pub(crate) public_key: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CreateTaskCase {
    #[serde(flatten)]
    pub(crate) key: Key,
    pub(crate) user_address: String,
    pub(crate) nonce: String,
    pub(crate) dataset_hash: String,
    pub(crate) fee: String,
    pub(crate) with_fee: bool,
    pub(crate) digest: B256,
    pub(crate) signature: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CancelCase {
    #[serde(flatten)]
    pub(crate) key: Key,
    pub(crate) task_id: String,
    pub(crate) digest: B256,
    pub(crate) signature: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoraCase {
    #[serde(flatten)]
    pub(crate) key: Key,
    pub(crate) task_id: String,
    pub(crate) timestamp: u64,
    pub(crate) digest: B256,
    pub(crate) signature: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DatasetCase {
    #[serde(flatten)]
    pub(crate) key: Key,
    pub(crate) user_in_url: String,
    pub(crate) timestamp: u64,
    pub(crate) digest: B256,
    pub(crate) signature: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VerifierCase {
    #[serde(flatten)]
    pub(crate) key: Key,
    #[serde(rename = "chain_id")]
    pub(crate) chain_id: u64,
    #[serde(rename = "verifying_contract")]
    pub(crate) verifying_contract: Address,
    pub(crate) id: String,
    pub(crate) encrypted_secret: String,
    pub(crate) model_root_hash: String,
    pub(crate) nonce: String,
    pub(crate) task_fee: String,
    pub(crate) user: Address,
    #[serde(rename = "domain_separator")]
    pub(crate) domain_separator: B256,
    pub(crate) digest: B256,
    pub(crate) signature: String,
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.trim_start_matches("0x")).unwrap()
}

impl Key {
    fn signing_key(&self) -> SigningKey {
        SigningKey::from_slice(&unhex(&self.private_key)).unwrap()
    }
    fn address(&self) -> Address {
        request::parse_address("address", &self.address).unwrap()
    }
    /// The recovered signer is this key, and the message form is the one the SDK used.
    fn check(&self, signer: &RecoveredSigner, digest: &B256, what: &str) {
        assert_eq!(signer.address, self.address(), "{what}: address");
        assert_eq!(
            signer.uncompressed_public_key().to_vec(),
            unhex(&self.public_key),
            "{what}: recovered public key"
        );
        let expected_form = if digest[0] == 0 {
            MessageForm::TrimmedLeadingZeros
        } else {
            MessageForm::Full32
        };
        assert_eq!(signer.message_form, expected_form, "{what}: message form");
    }
    /// Where the SDK's message is the full 32 bytes, our signature is byte-identical (RFC 6979 on both sides).
    fn check_same_signature(
        &self,
        ours: &Signature,
        theirs: &Signature,
        digest: &B256,
        what: &str,
    ) {
        if digest[0] != 0 {
            assert_eq!(
                ours.to_bytes_v27(),
                theirs.to_bytes_v27(),
                "{what}: signature bytes"
            );
        }
    }
}

/// How many cases of each kind had a digest starting with 0x00 (the SDK's trimmed message form).
#[derive(Debug, Default)]
pub(crate) struct Coverage {
    pub(crate) cases: usize,
    pub(crate) leading_zero_digests: usize,
}

/// Check every vector against this crate; panics with the case on the first disagreement.
pub(crate) fn check_vectors(v: &Vectors) -> Coverage {
    let mut cov = Coverage::default();
    let mut note = |d: &B256| {
        cov.cases += 1;
        if d[0] == 0 {
            cov.leading_zero_digests += 1;
        }
    };
    assert_eq!(v.sdk_version, "0.9.0", "vectors from the pinned SDK");

    for (i, c) in v.create_task.iter().enumerate() {
        let what = format!("create_task[{i}]");
        let task =
            CreateTask::from_wire(&c.user_address, &c.nonce, &c.dataset_hash, &c.fee).unwrap();
        let form = if c.with_fee {
            CreateTaskForm::WithFee
        } else {
            CreateTaskForm::WithoutFee
        };
        assert_eq!(task.digest(form), c.digest, "{what}: digest");
        let sig = request::parse_signature(&c.signature).unwrap();
        let verified = task.verify(&sig).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(verified.form, form, "{what}: form");
        let ceiling = (c.with_fee && task.fee != U256::ZERO).then_some(task.fee);
        assert_eq!(verified.fee_ceiling, ceiling, "{what}: fee ceiling");
        c.key.check(&verified.signer, &c.digest, &what);
        c.key.check_same_signature(
            &task.sign(&c.key.signing_key(), form),
            &sig,
            &c.digest,
            &what,
        );
        note(&c.digest);
    }

    for (i, c) in v.cancel.iter().enumerate() {
        let what = format!("cancel[{i}]");
        let id = request::parse_task_id(&c.task_id).unwrap();
        assert_eq!(request::cancel_digest(&id), c.digest, "{what}: digest");
        let sig = request::parse_signature(&c.signature).unwrap();
        let signer = request::verify_cancel(c.key.address(), &id, &sig)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        c.key.check(&signer, &c.digest, &what);
        c.key.check_same_signature(
            &request::sign_cancel(&c.key.signing_key(), &id),
            &sig,
            &c.digest,
            &what,
        );
        note(&c.digest);
    }

    for (i, c) in v.lora_download.iter().enumerate() {
        let what = format!("lora_download[{i}]");
        let id = request::parse_task_id(&c.task_id).unwrap();
        assert_eq!(
            request::lora_download_digest(&id, c.timestamp),
            c.digest,
            "{what}: digest"
        );
        let sig = request::parse_signature(&c.signature).unwrap();
        let signer =
            request::verify_lora_download(c.key.address(), &id, c.timestamp, c.timestamp, &sig)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        c.key.check(&signer, &c.digest, &what);
        let ours = request::sign_lora_download(&c.key.signing_key(), &id, c.timestamp);
        c.key.check_same_signature(&ours, &sig, &c.digest, &what);
        note(&c.digest);
    }

    for (i, c) in v.dataset_upload.iter().enumerate() {
        let what = format!("dataset_upload[{i}]");
        assert_eq!(
            request::dataset_upload_digest(&c.user_in_url, c.timestamp),
            c.digest,
            "{what}: digest"
        );
        let sig = request::parse_signature(&c.signature).unwrap();
        let signer =
            request::verify_dataset_upload(&c.user_in_url, c.timestamp, c.timestamp + 1, &sig)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        c.key.check(&signer, &c.digest, &what);
        let ours = request::sign_dataset_upload(&c.key.signing_key(), &c.user_in_url, c.timestamp);
        c.key.check_same_signature(&ours, &sig, &c.digest, &what);
        note(&c.digest);
    }

    for (i, c) in v.verifier_message.iter().enumerate() {
        let what = format!("verifier_message[{i}]");
        let domain = eip712::domain(c.chain_id, c.verifying_contract);
        assert_eq!(
            domain.separator(),
            c.domain_separator,
            "{what}: domain separator"
        );
        let message = VerifierMessage {
            id: c.id.clone(),
            encryptedSecret: unhex(&c.encrypted_secret).into(),
            modelRootHash: unhex(&c.model_root_hash).into(),
            nonce: c.nonce.parse().unwrap(),
            taskFee: c.task_fee.parse().unwrap(),
            user: c.user,
        };
        assert_eq!(message.digest(&domain), c.digest, "{what}: EIP-712 digest");
        let sig = Signature::from_hex(&c.signature).unwrap();
        assert_eq!(
            message.recover_signer(&domain, &sig).unwrap(),
            c.key.address(),
            "{what}: signer"
        );
        // ethers signs the raw digest with v = 27/28, as the contract expects; so do we, byte for byte.
        let input = eip712::sign_verifier_input(&c.key.signing_key(), &domain, &message).unwrap();
        assert_eq!(
            input.signature.to_vec(),
            unhex(&c.signature),
            "{what}: signature bytes"
        );
        assert_eq!(
            eip712::recover_verifier_signer(&domain, &input).unwrap(),
            c.key.address(),
            "{what}"
        );
    }
    cov
}

pub(crate) fn vector_file() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/requests.json")
}

#[test]
fn committed_js_vectors_agree_with_rust() {
    let text = std::fs::read_to_string(vector_file()).unwrap();
    let v: Vectors = serde_json::from_str(&text).unwrap();
    let cov = check_vectors(&v);
    assert!(cov.cases >= 32, "{cov:?}");
    assert!(
        cov.leading_zero_digests >= 8,
        "the SDK's trimmed-message form must be covered: {cov:?}"
    );
}
