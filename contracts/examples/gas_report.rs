//! Gas used by the provider's and customer's main calls on a fresh anvil chain, for BENCHMARKS.md.
//!
//!     . scripts/env && cargo run -p sealtune-contracts --example gas_report
use alloy::network::TransactionBuilder;
use alloy::primitives::{Bytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use sealtune_contracts::bindings::FineTuningServing::{self, Quota};
use sealtune_contracts::bindings::LedgerManager;
use sealtune_contracts::{DeployConfig, FINE_TUNING_SERVICE_NAME, deploy};
use sealtune_e2e::{Anvil, ether, signer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let anvil = Anvil::dev();
    let (owner, provider, user) = (signer(0), signer(1), signer(2));
    let tee = PrivateKeySigner::random();
    let connect = |who: &PrivateKeySigner| anvil.wallet(who);
    let d = deploy(&anvil.signing(&owner), &DeployConfig::default()).await?;
    let serving = |who: &PrivateKeySigner| FineTuningServing::new(d.serving, connect(who));
    let ledger = |who: &PrivateKeySigner| LedgerManager::new(d.ledger, connect(who));
    let mut rows: Vec<(&str, u64)> = Vec::new();
    let gas = |r: TransactionReceipt| {
        assert!(r.status(), "transaction reverted");
        r.gas_used
    };
    let quota = Quota {
        cpuCount: U256::from(16u64),
        nodeMemory: U256::from(128u64),
        gpuCount: U256::from(1u64),
        nodeStorage: U256::from(1000u64),
        gpuType: "H100".into(),
    };
    let r = serving(&provider)
        .addOrUpdateService(
            "http://127.0.0.1:3080".into(),
            quota.clone(),
            U256::from(1000u64),
            false,
            vec!["SmolLM2-135M-Instruct".into()],
            tee.address(),
        )
        .value(ether(100))
        .send()
        .await?
        .get_receipt()
        .await?;
    rows.push(("addOrUpdateService (first, with stake)", gas(r)));
    let r = serving(&provider)
        .addOrUpdateService(
            "http://127.0.0.1:3080".into(),
            quota,
            U256::from(1000u64),
            true,
            vec!["SmolLM2-135M-Instruct".into()],
            tee.address(),
        )
        .send()
        .await?
        .get_receipt()
        .await?;
    rows.push(("addOrUpdateService (update: occupied)", gas(r)));
    serving(&owner)
        .acknowledgeTEESignerByOwner(provider.address())
        .send()
        .await?
        .get_receipt()
        .await?;
    ledger(&user)
        .addLedger(String::new())
        .value(ether(10))
        .send()
        .await?
        .get_receipt()
        .await?;
    let r = ledger(&user)
        .transferFund(
            provider.address(),
            FINE_TUNING_SERVICE_NAME.into(),
            ether(2),
        )
        .send()
        .await?
        .get_receipt()
        .await?;
    rows.push(("transferFund (creates the sub-account)", gas(r)));
    let r = ledger(&user)
        .transferFund(
            provider.address(),
            FINE_TUNING_SERVICE_NAME.into(),
            ether(1),
        )
        .send()
        .await?
        .get_receipt()
        .await?;
    rows.push(("transferFund (top-up)", gas(r)));
    let id = "6f1c2a7e-54a1-4a2b-9d3e-2f7a1b0c9d8e";
    let root_hash = Bytes::from(vec![0xab; 32]);
    let r = serving(&provider)
        .addDeliverable(user.address(), id.into(), root_hash.clone())
        .send()
        .await?
        .get_receipt()
        .await?;
    rows.push(("addDeliverable", gas(r)));
    let r = serving(&user)
        .acknowledgeDeliverable(provider.address(), id.into())
        .send()
        .await?
        .get_receipt()
        .await?;
    rows.push(("acknowledgeDeliverable", gas(r)));
    let chain_id = connect(&owner).get_chain_id().await?;
    let message = sealtune_protocol::eip712::VerifierMessage {
        id: id.into(),
        encryptedSecret: Bytes::from(vec![7u8; 129]),
        modelRootHash: root_hash,
        nonce: U256::from(1u64),
        taskFee: ether(1) / U256::from(10u64),
        user: user.address(),
    };
    let tee_key =
        sealtune_protocol::deliverable::TeeSigningKey::from_slice(&tee.credential().to_bytes())?;
    let input = sealtune_protocol::eip712::sign_verifier_input(
        &tee_key,
        &sealtune_protocol::eip712::domain(chain_id, d.serving),
        &message,
    )?;
    let input = sealtune_e2e::contracts::binding_input(input);
    let tx = serving(&provider)
        .settleFees(input)
        .into_transaction_request()
        .with_from(provider.address());
    let r = connect(&provider)
        .send_transaction(tx)
        .await?
        .get_receipt()
        .await?;
    rows.push(("settleFees (acknowledged, 129-byte secret)", gas(r)));
    println!("| call | gas used |\n|---|---|");
    for (name, g) in rows {
        println!("| `{name}` | {g} |");
    }
    Ok(())
}
