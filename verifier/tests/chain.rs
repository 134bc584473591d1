//! The on-chain links against a real anvil with the contracts deployed by `sealtune_contracts::deploy`:
//! the quote's signer is the registered, acknowledged `teeSignerAddress`; a settlement's EIP-712
//! signature (read back from its transaction, or found by deliverable id) recovers to it; a sealed
//! deliverable's tag signature and root hash match what the chain holds.
mod common;

use alloy::primitives::{Address, B256, Bytes, U256};
use clap::Parser;
use common::*;
use sealtune_e2e::contracts::{Env, Service, register_service};
use sealtune_e2e::trials::{self, Isolation};
use sealtune_e2e::{ether, send};
use sealtune_protocol::deliverable::{self, SealOptions, TeeSigningKey};
use sealtune_protocol::eip712::{self, VerifierMessage};
use sealtune_protocol::sig::address_of;
use sealtune_verifier::cli::{Cli, run_with};

/// One anvil with the contracts for the whole binary; each case starts from the freshly deployed state.
fn main() -> std::process::ExitCode {
    trials::run(
        Env::new(),
        sealtune_e2e::cases![
            settlement_and_deliverable_verify_against_the_chain,
            settlement_signed_by_another_key_and_a_swapped_deliverable_fail,
            quote_signer_must_be_the_registered_acknowledged_tee_signer,
        ],
        Isolation::Snapshot(|env| &env.anvil),
    )
}

/// Register the provider's service with `tee` as its signer (staking only the first time); the owner
/// acknowledges it if asked.
async fn register(env: &Env, tee: Address, acknowledge: bool) {
    let s = env.serving(&env.provider);
    let registered = s
        .getService(env.provider.address())
        .call()
        .await
        .map(|x| x.provider == env.provider.address())
        .unwrap_or(false);
    let stake = if registered { U256::ZERO } else { ether(100) };
    let service = Service {
        models: vec!["SmolLM2-135M-Instruct".into()],
        ..Service::test(tee)
    };
    register_service(&s, &service, stake)
        .await
        .expect("register");
    if acknowledge {
        env.acknowledge_tee_signer().await;
    }
}

/// Fund the user's account, add deliverable `id` with `root`, have the user acknowledge it.
async fn deliver(env: &Env, id: &str, root: &[u8]) {
    env.fund(&env.user, 10, 5).await;
    env.add_deliverable_with_root(env.user.address(), id, root)
        .await
        .expect("addDeliverable");
    send!(
        env.serving(&env.user)
            .acknowledgeDeliverable(env.provider.address(), id.into())
    )
    .expect("acknowledgeDeliverable");
}

fn message(env: &Env, id: &str, root: &[u8]) -> VerifierMessage {
    VerifierMessage {
        id: id.into(),
        encryptedSecret: vec![0x5a; 129].into(),
        modelRootHash: Bytes::copy_from_slice(root),
        nonce: U256::from(17_400_000_000_000_040u64),
        taskFee: ether(1),
        user: env.user.address(),
    }
}

/// Settle `id` with the TEE signature of `tee` made by `sealtune_protocol::eip712`.
async fn settle(env: &Env, tee: &TeeSigningKey, id: &str, root: &[u8]) -> B256 {
    env.settle_message(tee, &message(env, id, root))
        .await
        .expect("settleFees")
}

fn cli(args: &[&str]) -> (i32, String) {
    let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let mut out = Vec::new();
    let code = run_with(&cli, TDX_V4_AT, [0u8; 32], &mut out).unwrap();
    (code, String::from_utf8(out).unwrap())
}

fn tee_key() -> TeeSigningKey {
    TeeSigningKey::from_slice(&[0x42; 32]).unwrap()
}

/// A sealed, signed deliverable in `dir`; returns its path and keccak256.
fn sealed_deliverable(dir: &std::path::Path, tee: &TeeSigningKey) -> (std::path::PathBuf, B256) {
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("adapter.safetensors"), vec![7u8; 10_000]).unwrap();
    let path = dir.join("model.enc");
    let sealed = deliverable::seal_dir_to_file(
        &model,
        &path,
        &mut deliverable::OsRng,
        &SealOptions::default(),
    )
    .unwrap();
    deliverable::finish(&path, &deliverable::sign_tags(tee, &sealed.tag_digest)).unwrap();
    let k = deliverable::encrypted_file_keccak(&path).unwrap();
    (path, k)
}

async fn settlement_and_deliverable_verify_against_the_chain(env: &Env) {
    let tee = tee_key();
    let tee_addr = address_of(tee.verifying_key());
    register(env, tee_addr, true).await;
    let dir = tempfile::tempdir().unwrap();
    let (file, root) = sealed_deliverable(dir.path(), &tee);
    let id = "123e4567-e89b-12d3-a456-426614174000";
    deliver(env, id, root.as_slice()).await;
    let tx = settle(env, &tee, id, root.as_slice()).await;

    let rpc = env.rpc();
    let serving = env.deployment.serving.to_string();
    let provider = env.provider.address().to_string();
    let user = env.user.address().to_string();
    let file_s = file.display().to_string();
    let tx_s = tx.to_string();
    let (code, out, code2, out2, code3, out3) = tokio::task::spawn_blocking(move || {
        // From the transaction hash alone: calldata → input, sender → provider, its signer on chain.
        let (code, out) = cli(&[
            "sealtune-verify",
            "settlement",
            "--rpc",
            &rpc,
            "--tx",
            &tx_s,
        ]);
        // Found by deliverable id through the FeesSettled event.
        let (code2, out2) = cli(&[
            "sealtune-verify",
            "settlement",
            "--rpc",
            &rpc,
            "--serving",
            &serving,
            "--provider",
            &provider,
            "--user",
            &user,
            "--id",
            id,
        ]);
        // The deliverable: tag signature → registered signer, keccak → on-chain modelRootHash.
        let (code3, out3) = cli(&[
            "sealtune-verify",
            "deliverable",
            "--file",
            &file_s,
            "--rpc",
            &rpc,
            "--serving",
            &serving,
            "--provider",
            &provider,
            "--user",
            &user,
            "--id",
            id,
        ]);
        (code, out, code2, out2, code3, out3)
    })
    .await
    .unwrap();
    for l in [
        "✓ EIP-712 signature",
        "✓ TEE signer",
        "✓ signer acknowledged",
        "✓ model root hash",
        "✓ transaction",
    ] {
        assert!(out.contains(l), "{l} missing:\n{out}");
        assert!(out2.contains(l), "{l} missing:\n{out2}");
    }
    assert!(out.contains("acknowledged, full fee"), "{out}");
    assert_eq!((code, code2), (0, 0), "{out}\n{out2}");
    for l in [
        "✓ tag signature",
        "✓ TEE signer",
        "✓ signer acknowledged",
        "✓ root hash",
    ] {
        assert!(out3.contains(l), "{l} missing:\n{out3}");
    }
    assert!(out3.contains("keccak256 of the file"), "{out3}");
    assert_eq!(code3, 0, "{out3}");
}

async fn settlement_signed_by_another_key_and_a_swapped_deliverable_fail(env: &Env) {
    let tee = tee_key();
    register(env, address_of(tee.verifying_key()), true).await;
    let dir = tempfile::tempdir().unwrap();
    let (file, root) = sealed_deliverable(dir.path(), &tee);
    let id = "task-1";
    deliver(env, id, root.as_slice()).await;

    // A settlement JSON signed by a key that is not the registered signer.
    let rogue = TeeSigningKey::from_slice(&[0x24; 32]).unwrap();
    let domain = eip712::domain(env.chain_id, env.deployment.serving);
    let input =
        eip712::sign_verifier_input(&rogue, &domain, &message(env, id, root.as_slice())).unwrap();
    let json = serde_json::json!({
        "id": input.id,
        "encryptedSecret": format!("0x{}", hex::encode(&input.encryptedSecret)),
        "modelRootHash": format!("0x{}", hex::encode(&input.modelRootHash)),
        "nonce": input.nonce.to_string(),
        "signature": format!("0x{}", hex::encode(&input.signature)),
        "taskFee": input.taskFee.to_string(),
        "user": input.user.to_string(),
    });
    let jf = dir.path().join("settlement.json");
    std::fs::write(&jf, json.to_string()).unwrap();

    // Another deliverable file, sealed and signed correctly, but not the one on chain.
    let other_dir = tempfile::tempdir().unwrap();
    let (other, _) = sealed_deliverable(other_dir.path(), &tee);
    // The right file with one tag byte flipped: the signature no longer recovers to the signer.
    let tampered = dir.path().join("tampered.enc");
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&tampered, bytes).unwrap();

    let rpc = env.rpc();
    let serving = env.deployment.serving.to_string();
    let provider = env.provider.address().to_string();
    let user = env.user.address().to_string();
    let args = |file: &std::path::Path| -> Vec<String> {
        [
            "sealtune-verify",
            "deliverable",
            "--file",
            &file.display().to_string(),
            "--rpc",
            &rpc,
            "--serving",
            &serving,
            "--provider",
            &provider,
            "--user",
            &user,
            "--id",
            id,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let (a_other, a_tampered) = (args(&other), args(&tampered));
    let settle_args: Vec<String> = [
        "sealtune-verify",
        "settlement",
        "--input",
        &jf.display().to_string(),
        "--rpc",
        &rpc,
        "--serving",
        &serving,
        "--provider",
        &provider,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let results = tokio::task::spawn_blocking(move || {
        [settle_args, a_other, a_tampered]
            .map(|a| cli(&a.iter().map(String::as_str).collect::<Vec<_>>()))
    })
    .await
    .unwrap();
    let [(c1, o1), (c2, o2), (c3, o3)] = results;
    assert!(o1.contains("✓ EIP-712 signature"), "{o1}");
    assert!(o1.contains("✗ TEE signer"), "{o1}");
    assert!(o1.contains("not by the expected TEE signer"), "{o1}");
    assert!(o1.contains("✓ model root hash"), "{o1}");
    assert_eq!(c1, 1);
    assert!(o2.contains("✓ TEE signer"), "{o2}");
    assert!(o2.contains("✗ root hash"), "{o2}");
    assert!(o2.contains("neither keccak256"), "{o2}");
    assert_eq!(c2, 1);
    assert!(o3.contains("✗ TEE signer"), "{o3}");
    assert!(o3.contains("✗ root hash"), "{o3}");
    assert_eq!(c3, 1);
}

/// bytes 32..52 of `tdx_quote`'s report_data, read as the 0G raw-signer layout (c).
fn v4_quote_raw_signer() -> Address {
    let q = fixture("tdx/tdx_quote");
    Address::from_slice(&q[568 + 32..568 + 52])
}

fn quote_args(env: &Env) -> Vec<String> {
    [
        "sealtune-verify",
        "quote",
        "--file",
        &fixtures_dir().join("tdx/tdx_quote").display().to_string(),
        "--collateral",
        &fixtures_dir()
            .join("tdx/tdx_quote_collateral.json")
            .display()
            .to_string(),
        "--at",
        &TDX_V4_AT.to_string(),
        "--rpc",
        &env.rpc(),
        "--serving",
        &env.deployment.serving.to_string(),
        "--provider",
        &env.provider.address().to_string(),
        // This recorded quote binds its signer in 0G's raw layout, accepted only when asked for.
        "--zg-raw-layout",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn quote_cli(env: &Env) -> (i32, String) {
    let a = quote_args(env);
    tokio::task::spawn_blocking(move || cli(&a.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap()
}

async fn quote_signer_must_be_the_registered_acknowledged_tee_signer(env: &Env) {
    let signer = v4_quote_raw_signer();

    // Registered but not acknowledged by the owner.
    register(env, signer, false).await;
    let (_, out) = quote_cli(env).await;
    assert!(out.contains("✓ signer binding"), "{out}");
    assert!(out.contains("ZgRawSigner"), "{out}");
    assert!(out.contains("✗ on-chain signer"), "{out}");
    assert!(out.contains("not acknowledged"), "{out}");

    // Acknowledged: the on-chain link holds (the bare quote still lacks its event log).
    register(env, signer, true).await;
    let (code, out) = quote_cli(env).await;
    assert!(out.contains("✓ on-chain signer"), "{out}");
    assert!(out.contains("acknowledged"), "{out}");
    assert_eq!(code, 1, "bare quote has no event log: {out}");

    // Another signer registered: the quote does not bind it.
    register(env, Address::repeat_byte(0x77), true).await;
    let (code, out) = quote_cli(env).await;
    assert!(out.contains("✗ signer binding"), "{out}");
    assert!(out.contains("✗ on-chain signer"), "{out}");
    assert_eq!(code, 1);
}
