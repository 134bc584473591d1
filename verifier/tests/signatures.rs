//! Settlement and deliverable signatures without a chain: the expected signer and root are given.

use alloy::primitives::{Address, U256};
use clap::Parser;
use sealtune_protocol::deliverable::{self, SealOptions, TeeSigningKey};
use sealtune_protocol::eip712::{self, VerifierMessage};
use sealtune_protocol::sig::address_of;
use sealtune_protocol::storage::root_hash_file;
use sealtune_verifier::cli::{Cli, run_with};
use sealtune_verifier::settlement::{SettlementInputError, parse_verifier_input_json};

const SERVING: &str = "0x5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

fn cli(args: &[&str]) -> (i32, String) {
    let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let mut out = Vec::new();
    let code = run_with(&cli, 1_750_000_000, [0; 32], &mut out).unwrap();
    (code, String::from_utf8(out).unwrap())
}

fn cli_err(args: &[&str]) -> String {
    let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    run_with(&cli, 1_750_000_000, [0; 32], &mut Vec::new())
        .unwrap_err()
        .to_string()
}

fn tee() -> TeeSigningKey {
    TeeSigningKey::from_slice(&[0x42; 32]).unwrap()
}

fn settlement_json(key: &TeeSigningKey, fee: u64, chain_id: u64) -> serde_json::Value {
    let domain = eip712::domain(chain_id, SERVING.parse().unwrap());
    let msg = VerifierMessage {
        id: "123e4567-e89b-12d3-a456-426614174000".into(),
        encryptedSecret: vec![0xab; 129].into(),
        modelRootHash: vec![0xcd; 32].into(),
        nonce: U256::from(17_400_000_000_000_040u64),
        taskFee: U256::from(fee),
        user: Address::repeat_byte(0x11),
    };
    let input = eip712::sign_verifier_input(key, &domain, &msg).unwrap();
    serde_json::json!({
        "chainId": chain_id,
        "serving": SERVING,
        "verifierInput": {
            "id": input.id,
            "encryptedSecret": format!("0x{}", hex::encode(&input.encryptedSecret)),
            "modelRootHash": format!("0x{}", hex::encode(&input.modelRootHash)),
            "nonce": input.nonce.to_string(),
            "signature": format!("0x{}", hex::encode(&input.signature)),
            "taskFee": fee,
            "user": input.user.to_string(),
        }
    })
}

#[test]
fn settlement_file_signed_by_the_tee_signer_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("s.json");
    std::fs::write(&f, settlement_json(&tee(), 1_000_000, 16602).to_string()).unwrap();
    let signer = address_of(tee().verifying_key()).to_string();
    let (code, out) = cli(&[
        "sealtune-verify",
        "settlement",
        "--input",
        &f.display().to_string(),
        "--signer",
        &signer,
    ]);
    assert!(out.contains("✓ settlement message"), "{out}");
    assert!(out.contains("✓ EIP-712 signature"), "{out}");
    assert!(out.contains("✓ TEE signer"), "{out}");
    assert!(out.contains("(chain 16602"), "{out}");
    assert_eq!(code, 0, "{out}");
    // JSON output.
    let (_, json) = cli(&[
        "sealtune-verify",
        "settlement",
        "--input",
        &f.display().to_string(),
        "--signer",
        &signer,
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["verified"], true);
}

#[test]
fn tampered_or_misdirected_settlements_fail() {
    let dir = tempfile::tempdir().unwrap();
    let signer = address_of(tee().verifying_key()).to_string();
    let run = |v: &serde_json::Value, extra: &[&str]| {
        let f = dir.path().join("s.json");
        std::fs::write(&f, v.to_string()).unwrap();
        let fs = f.display().to_string();
        let mut args = vec![
            "sealtune-verify",
            "settlement",
            "--input",
            &fs,
            "--signer",
            &signer,
        ];
        args.extend_from_slice(extra);
        cli(&args)
    };
    // The fee raised after signing: the signature recovers to some other address.
    let mut v = settlement_json(&tee(), 1_000_000, 16602);
    v["verifierInput"]["taskFee"] = 2_000_000.into();
    let (code, out) = run(&v, &[]);
    assert!(out.contains("✗ TEE signer"), "{out}");
    assert_eq!(code, 1);
    // Signed for another chain: checked under the domain of chain 16602 it does not recover to the signer.
    let v = settlement_json(&tee(), 1_000_000, 1);
    let (code, out) = run(&v, &["--chain-id", "16602"]);
    assert!(out.contains("(chain 16602"), "{out}");
    assert!(out.contains("✗ TEE signer"), "{out}");
    assert_eq!(code, 1);
    // Another key.
    let other = TeeSigningKey::from_slice(&[0x43; 32]).unwrap();
    let (code, out) = run(&settlement_json(&other, 1, 16602), &[]);
    assert!(out.contains("not by the expected TEE signer"), "{out}");
    assert_eq!(code, 1);
    // A malformed signature.
    let mut v = settlement_json(&tee(), 1, 16602);
    v["verifierInput"]["signature"] = "0x1234".into();
    let (code, out) = run(&v, &[]);
    assert!(out.contains("✗ EIP-712 signature"), "{out}");
    assert_eq!(code, 1);
    // An id the contract refuses.
    let mut v = settlement_json(&tee(), 1, 16602);
    v["verifierInput"]["id"] = "".into();
    let (_, out) = run(&v, &[]);
    assert!(out.contains("✗ settlement message"), "{out}");
}

#[test]
fn settlement_inputs_are_validated() {
    assert!(matches!(
        parse_verifier_input_json(b"[1]"),
        Err(SettlementInputError::Json(_))
    ));
    let mut v = settlement_json(&tee(), 1, 16602);
    v["verifierInput"]["user"] = "0x12".into();
    assert!(matches!(
        parse_verifier_input_json(v.to_string().as_bytes()),
        Err(SettlementInputError::Field { field: "user", .. })
    ));
    let mut v = settlement_json(&tee(), 1, 16602);
    v["verifierInput"]["nonce"] = "12x".into();
    assert!(matches!(
        parse_verifier_input_json(v.to_string().as_bytes()),
        Err(SettlementInputError::Field { field: "nonce", .. })
    ));
    // Without chain id and contract, the domain is unknown: a clear error.
    let mut v = settlement_json(&tee(), 1, 16602);
    v.as_object_mut().unwrap().remove("chainId");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("s.json");
    std::fs::write(&f, v.to_string()).unwrap();
    let e = cli_err(&[
        "sealtune-verify",
        "settlement",
        "--input",
        &f.display().to_string(),
    ]);
    assert!(e.contains("chain id"), "{e}");
    // No expected signer: the signer link fails (exit 1), it does not pass silently.
    let (code, out) = cli(&[
        "sealtune-verify",
        "settlement",
        "--input",
        &f.display().to_string(),
        "--chain-id",
        "16602",
    ]);
    assert!(out.contains("✗ TEE signer"), "{out}");
    assert!(out.contains("no expected TEE signer"), "{out}");
    assert_eq!(code, 1);
}

fn sealed(dir: &std::path::Path, key: Option<&TeeSigningKey>) -> std::path::PathBuf {
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("adapter_config.json"), b"{\"r\": 8}").unwrap();
    std::fs::write(model.join("adapter.safetensors"), vec![3u8; 70_000]).unwrap();
    let path = dir.join("model.enc");
    let s = deliverable::seal_dir_to_file(
        &model,
        &path,
        &mut deliverable::OsRng,
        &SealOptions::default(),
    )
    .unwrap();
    if let Some(k) = key {
        deliverable::finish(&path, &deliverable::sign_tags(k, &s.tag_digest)).unwrap();
    }
    path
}

#[test]
fn deliverable_tag_signature_and_both_root_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let path = sealed(dir.path(), Some(&tee()));
    let file = path.display().to_string();
    let signer = address_of(tee().verifying_key()).to_string();
    let keccak = deliverable::encrypted_file_keccak(&path)
        .unwrap()
        .to_string();
    let storage = root_hash_file(&path).unwrap().root().to_string();

    let (code, out) = cli(&[
        "sealtune-verify",
        "deliverable",
        "--file",
        &file,
        "--signer",
        &signer,
        "--root",
        &keccak,
    ]);
    assert!(out.contains("✓ tag signature"), "{out}");
    assert!(out.contains("✓ TEE signer"), "{out}");
    assert!(
        out.contains("✓ root hash") && out.contains("keccak256 of the file"),
        "{out}"
    );
    assert_eq!(code, 0, "{out}");

    let (code, out) = cli(&[
        "sealtune-verify",
        "deliverable",
        "--file",
        &file,
        "--signer",
        &signer,
        "--root",
        &storage,
    ]);
    assert!(out.contains("0G storage root of the file"), "{out}");
    assert_eq!(code, 0, "{out}");

    // No root given: both hashes are reported, the verdict rests on the signature.
    let (code, out) = cli(&[
        "sealtune-verify",
        "deliverable",
        "--file",
        &file,
        "--signer",
        &signer,
    ]);
    assert!(out.contains(&keccak) && out.contains(&storage), "{out}");
    assert_eq!(code, 0, "{out}");

    // Wrong signer, wrong root.
    let (code, out) = cli(&[
        "sealtune-verify",
        "deliverable",
        "--file",
        &file,
        "--signer",
        "0x1111111111111111111111111111111111111111",
        "--root",
        &format!("0x{}", "00".repeat(32)),
    ]);
    assert!(
        out.contains("✗ TEE signer") && out.contains("✗ root hash"),
        "{out}"
    );
    assert_eq!(code, 1);
}

#[test]
fn unsigned_truncated_or_missing_deliverables_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = sealed(dir.path(), None);
    let signer = address_of(tee().verifying_key()).to_string();
    let (code, out) = cli(&[
        "sealtune-verify",
        "deliverable",
        "--file",
        &path.display().to_string(),
        "--signer",
        &signer,
    ]);
    assert!(
        out.contains("✗ tag signature") && out.contains("never signed"),
        "{out}"
    );
    assert_eq!(code, 1);

    let short = dir.path().join("short.enc");
    std::fs::write(&short, [1u8; 80]).unwrap();
    let (code, out) = cli(&[
        "sealtune-verify",
        "deliverable",
        "--file",
        &short.display().to_string(),
        "--signer",
        &signer,
    ]);
    assert!(out.contains("✗ tag signature"), "{out}");
    assert_eq!(code, 1);

    let e = cli_err(&[
        "sealtune-verify",
        "deliverable",
        "--file",
        &dir.path().join("nope").display().to_string(),
    ]);
    assert!(e.contains("not a readable file"), "{e}");
    let e = cli_err(&[
        "sealtune-verify",
        "deliverable",
        "--file",
        &path.display().to_string(),
        "--root",
        "xyz",
    ]);
    assert!(e.contains("--root"), "{e}");
}
