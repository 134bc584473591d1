//! The evaluation report's signing scheme (docs/PROTOCOL.md §10) against a vector made by independent
//! code: `tests/vectors/evaluation_report.json` was generated once with (the input from
//! `print_vector_input`) `NODE_PATH=node_modules node protocol/tests/js/evaluation_sign.cjs < input`
//! (ethers 6's EIP-712 encoder and signer) from the document `EvaluationReport::example()` with the
//! TEE signer of key `0x07…07` (chain 31337, serving contract `0x5e…5e`). Checked without node.

use std::path::Path;

use k256::ecdsa::SigningKey;
use sealtune_protocol::evaluation::{EvaluationReport, SignedEvaluation};
use sealtune_protocol::{Address, B256, eip712, keccak256, sig};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Vector {
    chain_id: u64,
    serving: Address,
    private_key: String,
    document: String,
    report_hash: B256,
    signature: String,
    signer: Address,
}

fn vector() -> Vector {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/evaluation_report.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn example_signed_by(key: &SigningKey) -> EvaluationReport {
    let mut report = EvaluationReport::example();
    report.tee_signer = sig::address_of(key.verifying_key());
    report
}

#[test]
fn the_rust_signer_produces_the_ethers_vector() {
    let v = vector();
    let key = SigningKey::from_slice(&hex::decode(v.private_key.trim_start_matches("0x")).unwrap())
        .unwrap();
    let report = example_signed_by(&key);
    assert_eq!(
        String::from_utf8(report.canonical_bytes()).unwrap(),
        v.document,
        "canonical bytes"
    );
    assert_eq!(keccak256(v.document.as_bytes()), v.report_hash);
    let domain = eip712::domain(v.chain_id, v.serving);
    let signed = SignedEvaluation::sign(&report, &key, &domain);
    assert_eq!(
        signed.signature.to_lowercase(),
        v.signature.to_lowercase(),
        "RFC 6979 signatures are deterministic"
    );
    assert_eq!(signed.verify(&domain).unwrap().1, v.signer);
}

#[test]
fn the_vector_verifies_and_fails_once_edited() {
    let v = vector();
    let domain = eip712::domain(v.chain_id, v.serving);
    let signed = SignedEvaluation {
        document: v.document.clone(),
        signature: v.signature.clone(),
    };
    assert_eq!(signed.verify(&domain).unwrap().1, v.signer);
    let edited = SignedEvaluation {
        document: v
            .document
            .replace("\"is_finetune\":true", "\"is_finetune\":false"),
        signature: v.signature,
    };
    assert_ne!(edited.document, v.document);
    assert!(edited.verify(&domain).is_err());
}

/// Prints the input `evaluation_sign.cjs` reads (regenerate the vector with
/// `cargo test … --test evaluation_vectors -- --ignored --nocapture print_vector_input`).
#[test]
#[ignore = "a generator, not a check"]
fn print_vector_input() {
    let key = SigningKey::from_slice(&[0x07; 32]).unwrap();
    let report = example_signed_by(&key);
    let input = serde_json::json!({
        "chain_id": 31337,
        "serving": Address::repeat_byte(0x5e),
        "private_key": format!("0x{}", hex::encode(key.to_bytes())),
        "document": String::from_utf8(report.canonical_bytes()).unwrap(),
    });
    println!("{input}");
}
