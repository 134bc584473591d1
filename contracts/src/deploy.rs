//! Deploying and wiring FineTuningServing + LedgerManager.

use alloy::network::{Ethereum, TransactionBuilder};
use alloy::primitives::{Address, U256};
use alloy::providers::{Provider, WalletProvider};
use alloy::rpc::types::TransactionReceipt;

use crate::bindings::{FineTuningServing, LedgerManager};
use crate::{
    ContractError, DEFAULT_LOCK_TIME_SECS, DEFAULT_PENALTY_PERCENTAGE, FINE_TUNING_SERVICE_TYPE,
    FINE_TUNING_SERVICE_VERSION,
};

/// Settings of a fresh deployment.
#[derive(Debug, Clone)]
pub struct DeployConfig {
    /// Final owner of both contracts; `None` keeps the deployer (the provider's default signer).
    pub owner: Option<Address>,
    /// Refund lock time in seconds (1 hour ..= 7 days).
    pub lock_time_secs: u64,
    /// Share of the task fee charged for unacknowledged deliverables (0 ..= 100).
    pub penalty_percentage: u64,
    /// Description recorded with the service in the ledger's registry.
    pub description: String,
}

impl Default for DeployConfig {
    fn default() -> Self {
        Self {
            owner: None,
            lock_time_secs: DEFAULT_LOCK_TIME_SECS,
            penalty_percentage: DEFAULT_PENALTY_PERCENTAGE,
            description: "sealtune confidential fine-tuning".to_owned(),
        }
    }
}

/// Addresses of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deployment {
    /// The FineTuningServing contract.
    pub serving: Address,
    /// The LedgerManager contract.
    pub ledger: Address,
}

async fn confirm<P: Provider>(
    pending: alloy::providers::PendingTransactionBuilder<Ethereum>,
    _provider: &P,
) -> Result<TransactionReceipt, ContractError> {
    let receipt = pending.get_receipt().await?;
    if !receipt.status() {
        return Err(ContractError::Failed(receipt.transaction_hash));
    }
    Ok(receipt)
}

/// Deploys LedgerManager and FineTuningServing, initialises both (lock time, penalty, ledger link),
/// registers the serving contract in the ledger as `fine-tuning`/`v1.0` (full name
/// [`crate::FINE_TUNING_SERVICE_NAME`], which the official client resolves through
/// `getServiceInfo(...).fullName`), and finally hands ownership to `config.owner` if set.
///
/// Initialisation happens right after deployment; a front-runner calling `initialize` first would
/// make this function fail (`AlreadyInitialized`), never silently succeed.
pub async fn deploy<P>(provider: &P, config: &DeployConfig) -> Result<Deployment, ContractError>
where
    P: Provider + WalletProvider,
{
    let deployer = provider.default_signer_address();

    let ledger_tx = provider
        .send_transaction(LedgerManager::deploy_builder(provider).into_transaction_request())
        .await
        .map_err(alloy::contract::Error::from)?;
    let ledger = confirm(ledger_tx, provider)
        .await?
        .contract_address
        .ok_or(ContractError::NoAddress("LedgerManager"))?;
    let serving_tx = provider
        .send_transaction(
            FineTuningServing::deploy_builder(provider)
                .into_transaction_request()
                .with_from(deployer),
        )
        .await
        .map_err(alloy::contract::Error::from)?;
    let serving = confirm(serving_tx, provider)
        .await?
        .contract_address
        .ok_or(ContractError::NoAddress("FineTuningServing"))?;

    let ledger_c = LedgerManager::new(ledger, provider);
    let serving_c = FineTuningServing::new(serving, provider);
    confirm(ledger_c.initialize(deployer).send().await?, provider).await?;
    confirm(
        serving_c
            .initialize(
                U256::from(config.lock_time_secs),
                ledger,
                deployer,
                U256::from(config.penalty_percentage),
            )
            .send()
            .await?,
        provider,
    )
    .await?;
    confirm(
        ledger_c
            .registerService(
                FINE_TUNING_SERVICE_TYPE.to_owned(),
                FINE_TUNING_SERVICE_VERSION.to_owned(),
                serving,
                config.description.clone(),
            )
            .send()
            .await?,
        provider,
    )
    .await?;
    if let Some(owner) = config.owner.filter(|o| *o != deployer) {
        confirm(ledger_c.transferOwnership(owner).send().await?, provider).await?;
        confirm(serving_c.transferOwnership(owner).send().await?, provider).await?;
    }
    Ok(Deployment { serving, ledger })
}

/// As the contract owner (the provider's default signer), acknowledges `signer` as the TEE signer
/// of `provider_address`'s service, through `acknowledgeTEESignerByOwnerFor`: it reverts
/// `TEESignerMismatch` when the service names another signer, so a provider cannot swap in a signer
/// in front of the acknowledgement (the official `acknowledgeTEESignerByOwner(provider)`
/// acknowledges whatever signer is current). Only do this after verifying `signer`'s attestation;
/// on local chains it stands in for that verification.
pub async fn acknowledge_tee_signer<P>(
    provider: &P,
    deployment: &Deployment,
    provider_address: Address,
    signer: Address,
) -> Result<TransactionReceipt, ContractError>
where
    P: Provider,
{
    let serving = FineTuningServing::new(deployment.serving, provider);
    confirm(
        serving
            .acknowledgeTEESignerByOwnerFor(provider_address, signer)
            .send()
            .await?,
        provider,
    )
    .await
}
