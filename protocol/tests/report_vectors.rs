//! The training report's signing scheme (docs/PROTOCOL.md §9) against a vector made by independent
//! code: `tests/vectors/training_report.json` was generated once with (the input from `print_vector_input`)
//! `NODE_PATH=node_modules node protocol/tests/js/report_sign.cjs < input` (ethers 6's EIP-712
//! encoder and signer) from the document `TrainingReport::example()` with the TEE signer of key
//! `0x07…07` (chain 31337, serving contract `0x5e…5e`). Checked without node.

use std::path::Path;

use k256::ecdsa::SigningKey;
use sealtune_protocol::report::{SignedReport, TrainingReport};
use sealtune_protocol::{Address, B256, eip712, keccak256, sig};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Vector {
    chain_id: u64,
    serving: Address,
    private_key: String,
    document: String,
    report_hash: B256,
    digest: B256,
    signature: String,
    signer: Address,
}

fn vector() -> Vector {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/training_report.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn example_signed_by(key: &SigningKey) -> TrainingReport {
    let mut report = TrainingReport::example();
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
    let signed = SignedReport::sign(&report, &key, &domain);
    assert_eq!(signed.digest(&domain).unwrap(), v.digest);
    assert_eq!(
        signed.signature.to_lowercase(),
        v.signature.to_lowercase(),
        "RFC 6979 signatures are deterministic"
    );
    let (_, signer) = signed.verify(&domain).unwrap();
    assert_eq!(signer, v.signer);
}

#[test]
fn the_vector_verifies_and_fails_once_edited() {
    let v = vector();
    let domain = eip712::domain(v.chain_id, v.serving);
    let signed = SignedReport {
        document: v.document.clone(),
        signature: v.signature.clone(),
    };
    assert_eq!(signed.verify(&domain).unwrap().1, v.signer);
    let edited = SignedReport {
        document: v
            .document
            .replace("\"eval_loss\":1.5", "\"eval_loss\":1.25"),
        signature: v.signature,
    };
    assert_ne!(edited.document, v.document);
    assert!(edited.verify(&domain).is_err());
}

/// Prints the input `report_sign.cjs` reads (regenerate the vector with
/// `cargo test … --test report_vectors -- --ignored --nocapture print_vector_input`).
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
