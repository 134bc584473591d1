//! The real contracts on a local chain: [`Env`] deploys them with `sealtune_contracts::deploy` (on its
//! own anvil or on a shared one), signs as anvil's dev accounts, and drives the rules every crate's
//! tests need (register a service, acknowledge its TEE signer, fund, add a deliverable, settle).
//! [`send!`](crate::send) and [`assert_revert`] turn a contract call into a typed result.

use std::sync::Arc;

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::DynProvider;
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

use crate::chain::{Anvil, ether, signer};

/// Sends a contract call and waits for a successful receipt, as `Result<receipt, ContractError>`
/// (a revert, at estimation or on chain, is an `Err` whose `revert_name` names it).
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

/// The ledger's name for the fine-tuning service.
pub const SERVICE: &str = sealtune_contracts::FINE_TUNING_SERVICE_NAME;
/// The model root hash [`Env::add_deliverable`] and [`Env::input`] use.
pub const ROOT: [u8; 32] = [0xab; 32];

/// A provider's service as `addOrUpdateService` takes it.
#[derive(Debug, Clone)]
pub struct Service {
    /// The provider's URL.
    pub url: String,
    /// Price per token, in wei.
    pub price: U256,
    /// The model names it serves.
    pub models: Vec<String>,
    /// The TEE signer settlements must be signed by.
    pub tee: Address,
}

impl Service {
    /// The service the contract tests register: `http://127.0.0.1:3080`, 1,000 wei a token, one model.
    pub fn test(tee: Address) -> Service {
        Service {
            url: "http://127.0.0.1:3080".into(),
            price: U256::from(1_000u64),
            models: vec!["Qwen2.5-0.5B-Instruct".into()],
            tee,
        }
    }
}

/// The quota every test service announces (8 CPUs, 32 GB, one H100, 100 GB).
pub fn quota() -> Quota {
    Quota {
        cpuCount: U256::from(8u64),
        nodeMemory: U256::from(32u64),
        gpuCount: U256::from(1u64),
        nodeStorage: U256::from(100u64),
        gpuType: "H100".into(),
    }
}

/// Registers (or updates, with `stake` 0) `service` as the caller of `serving`.
pub async fn register_service(
    serving: &FineTuningServingInstance<DynProvider>,
    service: &Service,
    stake: U256,
) -> Result<(), ContractError> {
    crate::send!(
        serving
            .addOrUpdateService(
                service.url.clone(),
                quota(),
                service.price,
                false,
                service.models.clone(),
                service.tee,
            )
            .value(stake)
    )
    .map(|_| ())
}

/// Registers [`Service::test`] with TEE signer `tee` as the caller of `serving`.
pub async fn register(
    serving: &FineTuningServingInstance<DynProvider>,
    tee: Address,
    stake: U256,
) -> Result<(), ContractError> {
    register_service(serving, &Service::test(tee), stake).await
}

/// A settlement input for deliverable `id` signed by `signer` in the domain of `serving` on `chain_id`.
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
    let signature = signer
        .sign_hash_sync(&digest)
        .unwrap_or_else(|e| panic!("sign: {e}"));
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

/// A settlement input made by `sealtune_protocol::eip712` (what the worker signs) as the contract
/// binding takes it.
pub fn binding_input(input: sealtune_protocol::eip712::VerifierInput) -> VerifierInput {
    VerifierInput {
        id: input.id,
        encryptedSecret: input.encryptedSecret,
        modelRootHash: input.modelRootHash,
        nonce: input.nonce,
        signature: input.signature,
        taskFee: input.taskFee,
        user: input.user,
    }
}

/// A chain with both contracts deployed and wired by `deploy()`, and the dev accounts in their roles:
/// owner (0), provider (1), user (2), user2 (3); `tee` is a fresh key for the provider's TEE signer.
pub struct Env {
    /// The chain (shared between the `Env`s of one test binary where they deploy on one anvil).
    pub anvil: Arc<Anvil>,
    /// Its chain id.
    pub chain_id: u64,
    /// Where the contracts are.
    pub deployment: Deployment,
    /// Dev account 0: deploys and owns the contracts.
    pub owner: PrivateKeySigner,
    /// Dev account 1: the provider.
    pub provider: PrivateKeySigner,
    /// Dev account 2: a customer.
    pub user: PrivateKeySigner,
    /// Dev account 3: another customer.
    pub user2: PrivateKeySigner,
    /// A random key standing in for the provider's TEE signer.
    pub tee: PrivateKeySigner,
}

impl Env {
    /// A fresh anvil with the contracts deployed with the default configuration.
    pub async fn new() -> Self {
        Self::with_config(DeployConfig::default()).await
    }

    /// A fresh anvil with the contracts deployed with `config`.
    pub async fn with_config(config: DeployConfig) -> Self {
        Self::on(Arc::new(Anvil::dev()), config).await
    }

    /// The contracts deployed with `config` on an existing chain (new addresses on each call).
    pub async fn on(anvil: Arc<Anvil>, config: DeployConfig) -> Self {
        let owner = signer(0);
        let deployment = deploy(&anvil.signing(&owner), &config)
            .await
            .unwrap_or_else(|e| panic!("deploy: {e}"));
        Self {
            chain_id: anvil.chain_id,
            anvil,
            deployment,
            owner,
            provider: signer(1),
            user: signer(2),
            user2: signer(3),
            tee: PrivateKeySigner::random(),
        }
    }

    /// The JSON-RPC endpoint.
    pub fn rpc(&self) -> String {
        self.anvil.endpoint.clone()
    }

    /// A nonce-safe provider signing as `who` (see [`crate::chain::wallet`]).
    pub fn client(&self, who: &PrivateKeySigner) -> DynProvider {
        self.anvil.wallet(who)
    }

    /// FineTuningServing, called as `who`.
    pub fn serving(&self, who: &PrivateKeySigner) -> FineTuningServingInstance<DynProvider> {
        FineTuningServing::new(self.deployment.serving, self.client(who))
    }

    /// LedgerManager, called as `who`.
    pub fn ledger(&self, who: &PrivateKeySigner) -> LedgerManagerInstance<DynProvider> {
        LedgerManager::new(self.deployment.ledger, self.client(who))
    }

    /// Registers the provider's [`Service::test`] with the TEE signer (100 ether stake) and has the
    /// owner acknowledge it.
    pub async fn register_provider(&self) {
        self.register_provider_as(&Service::test(self.tee.address()))
            .await;
    }

    /// Registers `service` as the provider (100 ether stake) and has the owner acknowledge its signer.
    pub async fn register_provider_as(&self, service: &Service) {
        register_service(&self.serving(&self.provider), service, ether(100))
            .await
            .unwrap_or_else(|e| panic!("register: {e}"));
        self.acknowledge_tee_signer().await;
    }

    /// The owner acknowledges the provider's TEE signer (stands in for verifying its quote).
    pub async fn acknowledge_tee_signer(&self) {
        crate::send!(
            self.serving(&self.owner)
                .acknowledgeTEESignerByOwner(self.provider.address())
        )
        .unwrap_or_else(|e| panic!("acknowledgeTEESignerByOwner: {e}"));
    }

    /// Opens `user`'s ledger with `ledger_eth` and transfers `sub_eth` to the provider's sub-account.
    pub async fn fund(&self, user: &PrivateKeySigner, ledger_eth: u64, sub_eth: u64) {
        let ledger = self.ledger(user);
        crate::send!(ledger.addLedger(String::new()).value(ether(ledger_eth)))
            .unwrap_or_else(|e| panic!("addLedger: {e}"));
        crate::send!(ledger.transferFund(self.provider.address(), SERVICE.into(), ether(sub_eth)))
            .unwrap_or_else(|e| panic!("transferFund: {e}"));
    }

    /// As the provider: announce deliverable `id` for `user` with root [`ROOT`].
    pub async fn add_deliverable(&self, user: Address, id: &str) -> Result<(), ContractError> {
        self.add_deliverable_with_root(user, id, &ROOT).await
    }

    /// As the provider: announce deliverable `id` for `user` with `root`.
    pub async fn add_deliverable_with_root(
        &self,
        user: Address,
        id: &str,
        root: &[u8],
    ) -> Result<(), ContractError> {
        crate::send!(self.serving(&self.provider).addDeliverable(
            user,
            id.into(),
            Bytes::copy_from_slice(root)
        ))
        .map(|_| ())
    }

    /// A settlement input for `id` (root [`ROOT`]) signed by `signer`.
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

    /// As the provider: settle with `input`; returns the transaction hash.
    pub async fn settle(&self, input: VerifierInput) -> Result<B256, ContractError> {
        crate::send!(self.serving(&self.provider).settleFees(input)).map(|r| r.transaction_hash)
    }

    /// As the provider: settle `message` with the signature `tee` makes through
    /// `sealtune_protocol::eip712::sign_verifier_input` (what the worker does); returns the transaction hash.
    pub async fn settle_message(
        &self,
        tee: &k256::ecdsa::SigningKey,
        message: &sealtune_protocol::eip712::VerifierMessage,
    ) -> Result<B256, ContractError> {
        let domain = sealtune_protocol::eip712::domain(self.chain_id, self.deployment.serving);
        let input = sealtune_protocol::eip712::sign_verifier_input(tee, &domain, message)
            .unwrap_or_else(|e| panic!("sign_verifier_input: {e}"));
        self.settle(binding_input(input)).await
    }

    /// The ether balance of `who`.
    pub async fn balance(&self, who: Address) -> U256 {
        self.anvil.balance(who).await
    }

    /// Moves the chain's clock forward by `secs` and mines a block.
    pub async fn increase_time(&self, secs: u64) {
        self.anvil.increase_time(secs).await;
    }
}

/// A FineTuningServing whose "ledger" is a plain account (`ledger`, dev account 5), deployed beside
/// `env`'s contracts, so tests can drive the ledger-only functions directly (for rules the real ledger
/// cannot reach, e.g. 6 refunds). The provider's service is registered and owner-acknowledged.
pub struct DirectEnv<'a> {
    /// The chain and roles.
    pub env: &'a Env,
    /// The directly driven FineTuningServing.
    pub serving: Address,
    /// The account acting as its ledger.
    pub ledger: PrivateKeySigner,
}

impl<'a> DirectEnv<'a> {
    /// Deploys and initializes the directly driven FineTuningServing on `env`'s chain.
    pub async fn new(env: &'a Env) -> Self {
        let ledger = signer(5);
        let serving = FineTuningServing::deploy(env.client(&env.owner))
            .await
            .unwrap_or_else(|e| panic!("deploy serving: {e}"));
        crate::send!(serving.initialize(
            U256::from(3600u64),
            ledger.address(),
            env.owner.address(),
            U256::from(30u64)
        ))
        .unwrap_or_else(|e| panic!("initialize: {e}"));
        let this = Self {
            env,
            serving: *serving.address(),
            ledger,
        };
        register(&this.as_(&env.provider), env.tee.address(), ether(100))
            .await
            .unwrap_or_else(|e| panic!("register: {e}"));
        crate::send!(
            this.as_(&env.owner)
                .acknowledgeTEESignerByOwner(env.provider.address())
        )
        .unwrap_or_else(|e| panic!("acknowledge: {e}"));
        this
    }

    /// The directly driven FineTuningServing, called as `who`.
    pub fn as_(&self, who: &PrivateKeySigner) -> FineTuningServingInstance<DynProvider> {
        FineTuningServing::new(self.serving, self.env.client(who))
    }
}
