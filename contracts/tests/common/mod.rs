//! Shared test harness: a real anvil started per test, funded clients and helpers.
#![allow(dead_code)]

use std::path::PathBuf;

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolStruct;
use sealtune_contracts::bindings::FineTuningServing::{
    FineTuningServingInstance, Quota, VerifierInput,
};
use sealtune_contracts::bindings::LedgerManager::LedgerManagerInstance;
use sealtune_contracts::bindings::{
    FineTuningServing, LedgerManager, VerifierMessage, verifier_domain,
};
use sealtune_contracts::{ContractError, DeployConfig, Deployment, deploy};

/// Sends a contract call and waits for a successful receipt, as `Result<receipt, ContractError>`.
#[macro_export]
macro_rules! send {
    ($call:expr) => {
        async {
            let pending = $call
                .send()
                .await
                .map_err(sealtune_contracts::ContractError::from)?;
            let receipt = pending.get_receipt().await?;
            if !receipt.status() {
                return Err(sealtune_contracts::ContractError::Failed(
                    receipt.transaction_hash,
                ));
            }
            Ok::<_, sealtune_contracts::ContractError>(receipt)
        }
        .await
    };
}

/// Asserts that `result` is a revert named `name` and returns the error's message.
#[track_caller]
pub fn assert_revert<T: std::fmt::Debug>(result: Result<T, ContractError>, name: &str) -> String {
    match result {
        Ok(v) => panic!("expected revert {name}, got success: {v:?}"),
        Err(e) => {
            assert_eq!(
                e.revert_name(),
                Some(name),
                "expected revert {name}, got: {e}"
            );
            e.to_string()
        }
    }
}

pub fn ether(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18))
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn start_anvil() -> AnvilInstance {
    let path = repo_root().join("node_modules/.bin/anvil");
    assert!(
        path.exists(),
        "anvil not found at {}: run scripts/setup (it installs the pinned anvil from npm)",
        path.display()
    );
    Anvil::at(path)
        .try_spawn()
        .unwrap_or_else(|e| panic!("starting anvil failed: {e}"))
}

pub const SERVICE: &str = "fine-tuning-v1.0";
pub const ROOT: [u8; 32] = [0xab; 32];

/// A chain with both contracts deployed and wired by `deploy()`.
pub struct Env {
    pub anvil: AnvilInstance,
    pub chain_id: u64,
    pub deployment: Deployment,
    pub owner: PrivateKeySigner,
    pub provider: PrivateKeySigner,
    pub user: PrivateKeySigner,
    pub user2: PrivateKeySigner,
    pub tee: PrivateKeySigner,
}

impl Env {
    pub async fn new() -> Self {
        Self::with_config(DeployConfig::default()).await
    }

    pub async fn with_config(config: DeployConfig) -> Self {
        let anvil = start_anvil();
        let key = |i: usize| PrivateKeySigner::from(anvil.keys()[i].clone());
        let (owner, provider, user, user2) = (key(0), key(1), key(2), key(3));
        let client = ProviderBuilder::new()
            .wallet(owner.clone())
            .connect_http(anvil.endpoint_url());
        let deployment = deploy(&client, &config).await.expect("deploy");
        let chain_id = anvil.chain_id();
        Self {
            anvil,
            chain_id,
            deployment,
            owner,
            provider,
            user,
            user2,
            tee: PrivateKeySigner::random(),
        }
    }

    /// A client signing as `who`. Nonces are fetched per transaction (alloy's default cached nonce
    /// manager leaves a gap after a transaction whose gas estimation reverted, and the next one then
    /// waits forever in anvil's queue).
    pub fn client(&self, who: &PrivateKeySigner) -> DynProvider {
        ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_gas_estimation()
            .with_simple_nonce_management()
            .fetch_chain_id()
            .wallet(who.clone())
            .connect_http(self.anvil.endpoint_url())
            .erased()
    }

    pub fn serving(&self, who: &PrivateKeySigner) -> FineTuningServingInstance<DynProvider> {
        FineTuningServing::new(self.deployment.serving, self.client(who))
    }

    pub fn ledger(&self, who: &PrivateKeySigner) -> LedgerManagerInstance<DynProvider> {
        LedgerManager::new(self.deployment.ledger, self.client(who))
    }

    /// Registers the provider's service with the TEE signer and has the owner acknowledge it.
    pub async fn register_provider(&self) {
        register(
            &self.serving(&self.provider),
            self.tee.address(),
            ether(100),
        )
        .await
        .expect("register");
        send!(
            self.serving(&self.owner)
                .acknowledgeTEESignerByOwner(self.provider.address())
        )
        .expect("ack by owner");
    }

    /// Opens `user`'s ledger with `ledger_eth` and transfers `sub_eth` to the provider's sub-account.
    pub async fn fund(&self, user: &PrivateKeySigner, ledger_eth: u64, sub_eth: u64) {
        let ledger = self.ledger(user);
        send!(ledger.addLedger(String::new()).value(ether(ledger_eth))).expect("addLedger");
        send!(ledger.transferFund(self.provider.address(), SERVICE.into(), ether(sub_eth)))
            .expect("transferFund");
    }

    pub async fn add_deliverable(&self, user: Address, id: &str) -> Result<(), ContractError> {
        send!(
            self.serving(&self.provider)
                .addDeliverable(user, id.into(), Bytes::from(ROOT))
        )
        .map(|_| ())
    }

    /// A settlement input for `id` signed by `signer`.
    pub fn input(
        &self,
        signer: &PrivateKeySigner,
        id: &str,
        secret: &[u8],
        nonce: u64,
        fee: U256,
        user: Address,
    ) -> VerifierInput {
        sign_input(
            signer,
            self.chain_id,
            self.deployment.serving,
            id,
            secret,
            &ROOT,
            nonce,
            fee,
            user,
        )
    }

    pub async fn settle(&self, input: VerifierInput) -> Result<(), ContractError> {
        send!(self.serving(&self.provider).settleFees(input)).map(|_| ())
    }

    pub async fn balance(&self, who: Address) -> U256 {
        self.client(&self.owner)
            .get_balance(who)
            .await
            .expect("balance")
    }

    pub async fn increase_time(&self, secs: u64) {
        let p = self.client(&self.owner);
        let _: serde_json::Value = p
            .raw_request("evm_increaseTime".into(), (secs,))
            .await
            .expect("evm_increaseTime");
        let _: serde_json::Value = p
            .raw_request("evm_mine".into(), ())
            .await
            .expect("evm_mine");
    }
}

pub async fn register(
    serving: &FineTuningServingInstance<DynProvider>,
    tee: Address,
    stake: U256,
) -> Result<(), ContractError> {
    send!(
        serving
            .addOrUpdateService(
                "http://127.0.0.1:3080".into(),
                quota(),
                U256::from(1_000u64),
                false,
                vec!["Qwen2.5-0.5B-Instruct".into()],
                tee,
            )
            .value(stake)
    )
    .map(|_| ())
}

pub fn quota() -> Quota {
    Quota {
        cpuCount: U256::from(8u64),
        nodeMemory: U256::from(32u64),
        gpuCount: U256::from(1u64),
        nodeStorage: U256::from(100u64),
        gpuType: "H100".into(),
    }
}

#[allow(clippy::too_many_arguments)]
pub fn sign_input(
    signer: &PrivateKeySigner,
    chain_id: u64,
    serving: Address,
    id: &str,
    secret: &[u8],
    root: &[u8],
    nonce: u64,
    fee: U256,
    user: Address,
) -> VerifierInput {
    let message = VerifierMessage {
        id: id.into(),
        encryptedSecret: Bytes::copy_from_slice(secret),
        modelRootHash: Bytes::copy_from_slice(root),
        nonce: U256::from(nonce),
        taskFee: fee,
        user,
    };
    let digest = message.eip712_signing_hash(&verifier_domain(chain_id, serving));
    let signature = signer.sign_hash_sync(&digest).expect("sign");
    VerifierInput {
        id: message.id,
        encryptedSecret: message.encryptedSecret,
        modelRootHash: message.modelRootHash,
        nonce: message.nonce,
        signature: Bytes::copy_from_slice(&signature.as_bytes()),
        taskFee: fee,
        user,
    }
}

/// A FineTuningServing whose "ledger" is a plain account (`ledger`), so tests can drive the
/// ledger-only functions directly (for rules the real ledger cannot reach, e.g. 6 refunds).
pub struct DirectEnv {
    pub env: Env,
    pub serving: Address,
    pub ledger: PrivateKeySigner,
}

impl DirectEnv {
    pub async fn new() -> Self {
        let env = Env::new().await;
        let ledger = PrivateKeySigner::from(env.anvil.keys()[5].clone());
        let owner = env.client(&env.owner);
        let serving = FineTuningServing::deploy(owner)
            .await
            .expect("deploy serving");
        send!(serving.initialize(
            U256::from(3600u64),
            ledger.address(),
            env.owner.address(),
            U256::from(30u64)
        ))
        .expect("initialize");
        let serving = *serving.address();
        let this = Self {
            env,
            serving,
            ledger,
        };
        register(
            &this.as_(&this.env.provider),
            this.env.tee.address(),
            ether(100),
        )
        .await
        .expect("register");
        send!(
            this.as_(&this.env.owner)
                .acknowledgeTEESignerByOwner(this.env.provider.address())
        )
        .expect("ack");
        this
    }

    pub fn as_(&self, who: &PrivateKeySigner) -> FineTuningServingInstance<DynProvider> {
        FineTuningServing::new(self.serving, self.env.client(who))
    }
}
