//! The on-chain links against a real anvil with the contracts deployed by `sealtune_contracts::deploy`:
//! the quote's signer is the registered, acknowledged `teeSignerAddress`; a settlement's EIP-712
//! signature (read back from its transaction, or found by deliverable id) recovers to it; a sealed
//! deliverable's tag signature and root hash match what the chain holds.
mod common;

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use clap::Parser;
use common::*;
use sealtune_contracts::bindings::FineTuningServing::{self, Quota};
use sealtune_contracts::bindings::LedgerManager;
use sealtune_contracts::{DeployConfig, Deployment, deploy};
use sealtune_protocol::deliverable::{self, SealOptions, TeeSigningKey};
use sealtune_protocol::eip712::{self, VerifierMessage};
use sealtune_protocol::sig::address_of;
use sealtune_verifier::cli::{Cli, run_with};

fn anvil() -> AnvilInstance {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../node_modules/.bin/anvil");
    assert!(
        path.exists(),
        "anvil not found at {}: run scripts/setup (it installs the pinned anvil from npm)",
        path.display()
    );
    Anvil::at(path).try_spawn().expect("anvil starts")
}

fn ether(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18))
}

struct Env {
    anvil: AnvilInstance,
    deployment: Deployment,
    chain_id: u64,
    owner: PrivateKeySigner,
    provider: PrivateKeySigner,
    user: PrivateKeySigner,
}

impl Env {
    async fn new() -> Self {
        let anvil = anvil();
        let key = |i: usize| PrivateKeySigner::from(anvil.keys()[i].clone());
        let owner = key(0);
        let client = ProviderBuilder::new()
            .wallet(owner.clone())
            .connect_http(anvil.endpoint_url());
        let deployment = deploy(&client, &DeployConfig::default())
            .await
            .expect("deploy");
        Self {
            chain_id: anvil.chain_id(),
            deployment,
            owner,
            provider: key(1),
            user: key(2),
            anvil,
        }
    }

    fn client(&self, who: &PrivateKeySigner) -> DynProvider {
        ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_gas_estimation()
            .with_simple_nonce_management()
            .fetch_chain_id()
            .wallet(who.clone())
            .connect_http(self.anvil.endpoint_url())
            .erased()
    }

    fn rpc(&self) -> String {
        self.anvil.endpoint()
    }

    async fn send(
        &self,
        tx: alloy::providers::PendingTransactionBuilder<alloy::network::Ethereum>,
    ) -> B256 {
        let r = tx.get_receipt().await.expect("receipt");
        assert!(r.status(), "transaction reverted");
        r.transaction_hash
    }

    /// Register the provider's service with `tee` as its signer; the owner acknowledges it if asked.
    async fn register(&self, tee: Address, acknowledge: bool) {
        let s = FineTuningServing::new(self.deployment.serving, self.client(&self.provider));
        let quota = Quota {
            cpuCount: U256::from(8u64),
            nodeMemory: U256::from(32u64),
            gpuCount: U256::from(1u64),
            nodeStorage: U256::from(100u64),
            gpuType: "H100".into(),
        };
        let stake = if s
            .getService(self.provider.address())
            .call()
            .await
            .map(|x| x.provider == self.provider.address())
            .unwrap_or(false)
        {
            U256::ZERO
        } else {
            ether(100)
        };
        self.send(
            s.addOrUpdateService(
                "http://127.0.0.1:3080".into(),
                quota,
                U256::from(1_000u64),
                false,
                vec!["SmolLM2-135M-Instruct".into()],
                tee,
            )
            .value(stake)
            .send()
            .await
            .expect("register"),
        )
        .await;
        if acknowledge {
            let o = FineTuningServing::new(self.deployment.serving, self.client(&self.owner));
            self.send(
                o.acknowledgeTEESignerByOwner(self.provider.address())
                    .send()
                    .await
                    .expect("ack"),
            )
            .await;
        }
    }

    /// Fund the user's account, add deliverable `id` with `root`, have the user acknowledge it.
    async fn deliver(&self, id: &str, root: &[u8]) {
        let l = LedgerManager::new(self.deployment.ledger, self.client(&self.user));
        self.send(
            l.addLedger(String::new())
                .value(ether(10))
                .send()
                .await
                .expect("addLedger"),
        )
        .await;
        self.send(
            l.transferFund(self.provider.address(), "fine-tuning-v1.0".into(), ether(5))
                .send()
                .await
                .expect("transferFund"),
        )
        .await;
        let p = FineTuningServing::new(self.deployment.serving, self.client(&self.provider));
        self.send(
            p.addDeliverable(self.user.address(), id.into(), Bytes::copy_from_slice(root))
                .send()
                .await
                .expect("addDeliverable"),
        )
        .await;
        let u = FineTuningServing::new(self.deployment.serving, self.client(&self.user));
        self.send(
            u.acknowledgeDeliverable(self.provider.address(), id.into())
                .send()
                .await
                .expect("acknowledgeDeliverable"),
        )
        .await;
    }

    fn message(&self, id: &str, root: &[u8]) -> VerifierMessage {
        VerifierMessage {
            id: id.into(),
            encryptedSecret: vec![0x5a; 129].into(),
            modelRootHash: Bytes::copy_from_slice(root),
            nonce: U256::from(17_400_000_000_000_040u64),
            taskFee: ether(1),
            user: self.user.address(),
        }
    }

    async fn settle(&self, tee: &TeeSigningKey, id: &str, root: &[u8]) -> B256 {
        let domain = eip712::domain(self.chain_id, self.deployment.serving);
        let input = eip712::sign_verifier_input(tee, &domain, &self.message(id, root)).unwrap();
        let p = FineTuningServing::new(self.deployment.serving, self.client(&self.provider));
        let call = FineTuningServing::VerifierInput {
            id: input.id,
            encryptedSecret: input.encryptedSecret,
            modelRootHash: input.modelRootHash,
            nonce: input.nonce,
            signature: input.signature,
            taskFee: input.taskFee,
            user: input.user,
        };
        self.send(p.settleFees(call).send().await.expect("settleFees"))
            .await
    }
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

#[tokio::test(flavor = "multi_thread")]
async fn settlement_and_deliverable_verify_against_the_chain() {
    let env = Env::new().await;
    let tee = tee_key();
    let tee_addr = address_of(tee.verifying_key());
    env.register(tee_addr, true).await;
    let dir = tempfile::tempdir().unwrap();
    let (file, root) = sealed_deliverable(dir.path(), &tee);
    let id = "123e4567-e89b-12d3-a456-426614174000";
    env.deliver(id, root.as_slice()).await;
    let tx = env.settle(&tee, id, root.as_slice()).await;

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

#[tokio::test(flavor = "multi_thread")]
async fn settlement_signed_by_another_key_and_a_swapped_deliverable_fail() {
    let env = Env::new().await;
    let tee = tee_key();
    env.register(address_of(tee.verifying_key()), true).await;
    let dir = tempfile::tempdir().unwrap();
    let (file, root) = sealed_deliverable(dir.path(), &tee);
    let id = "task-1";
    env.deliver(id, root.as_slice()).await;

    // A settlement JSON signed by a key that is not the registered signer.
    let rogue = TeeSigningKey::from_slice(&[0x24; 32]).unwrap();
    let domain = eip712::domain(env.chain_id, env.deployment.serving);
    let input =
        eip712::sign_verifier_input(&rogue, &domain, &env.message(id, root.as_slice())).unwrap();
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

#[tokio::test(flavor = "multi_thread")]
async fn quote_signer_must_be_the_registered_acknowledged_tee_signer() {
    let env = Env::new().await;
    let signer = v4_quote_raw_signer();

    // Registered but not acknowledged by the owner.
    env.register(signer, false).await;
    let (_, out) = quote_cli(&env).await;
    assert!(out.contains("✓ signer binding"), "{out}");
    assert!(out.contains("ZgRawSigner"), "{out}");
    assert!(out.contains("✗ on-chain signer"), "{out}");
    assert!(out.contains("not acknowledged"), "{out}");

    // Acknowledged: the on-chain link holds (the bare quote still lacks its event log).
    env.register(signer, true).await;
    let (code, out) = quote_cli(&env).await;
    assert!(out.contains("✓ on-chain signer"), "{out}");
    assert!(out.contains("acknowledged"), "{out}");
    assert_eq!(code, 1, "bare quote has no event log: {out}");

    // Another signer registered: the quote does not bind it.
    env.register(Address::repeat_byte(0x77), true).await;
    let (code, out) = quote_cli(&env).await;
    assert!(out.contains("✗ signer binding"), "{out}");
    assert!(out.contains("✗ on-chain signer"), "{out}");
    assert_eq!(code, 1);
}
