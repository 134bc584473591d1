//! The customer's side of the contracts: the ledger (parent account), the fine-tuning
//! sub-accounts, services and deliverables.
//!
//! [`Chain`] wraps an alloy provider for one RPC URL and, for transactions, the customer's local
//! signer. Nonces are fetched from the node for every transaction (alloy's default cached nonce
//! filler can leave a gap after a transaction whose gas estimation reverted, and the next one then
//! waits forever). Reverts are decoded into [`sealtune_contracts::Revert`] and surface as
//! [`ClientError::Contract`], whose [`ClientError::hint`] names the `sealtune` command to run next.

use std::time::Duration;

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::http::reqwest::Url;
use sealtune_contracts::ContractError;
use sealtune_contracts::bindings::FineTuningServing::{
    self, AccountDetails, Deliverable, FineTuningServingInstance, Service,
};
use sealtune_contracts::bindings::LedgerManager::{self, Ledger, LedgerManagerInstance};
use serde::Serialize;

use crate::amount::ser_dec;
use crate::error::{ClientError, Result};

/// How long to wait for a transaction's receipt.
const TX_TIMEOUT: Duration = Duration::from_secs(180);

/// The two contract addresses of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Contracts {
    /// LedgerManager.
    pub ledger: Address,
    /// FineTuningServing.
    pub serving: Address,
}

/// A mined transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TxOutcome {
    /// Its hash.
    pub tx_hash: B256,
    /// The block it was mined in.
    pub block: Option<u64>,
    /// Gas used.
    pub gas_used: u64,
}

impl From<&TransactionReceipt> for TxOutcome {
    fn from(r: &TransactionReceipt) -> Self {
        TxOutcome {
            tx_hash: r.transaction_hash,
            block: r.block_number,
            gas_used: r.gas_used,
        }
    }
}

/// A provider's resources as registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuotaView {
    /// CPU cores.
    #[serde(serialize_with = "ser_dec")]
    pub cpu_count: U256,
    /// Memory.
    #[serde(serialize_with = "ser_dec")]
    pub node_memory: U256,
    /// GPUs.
    #[serde(serialize_with = "ser_dec")]
    pub gpu_count: U256,
    /// Storage.
    #[serde(serialize_with = "ser_dec")]
    pub node_storage: U256,
    /// GPU model.
    pub gpu_type: String,
}

/// A fine-tuning service (`getService` / `getAllServices`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceView {
    /// The provider's address.
    pub provider: Address,
    /// Its HTTP API base URL.
    pub url: String,
    /// Its resources.
    pub quota: QuotaView,
    /// Price per token, in neuron.
    #[serde(serialize_with = "ser_dec")]
    pub price_per_token: U256,
    /// Whether it says it is busy.
    pub occupied: bool,
    /// Model names it offers.
    pub models: Vec<String>,
    /// The TEE signer address (bound by its attestation).
    pub tee_signer: Address,
    /// Whether the contract owner acknowledged that TEE signer.
    pub tee_signer_acknowledged: bool,
}

impl ServiceView {
    /// Whether the URL, the GPU type or a model name contains `text` (case-insensitive): the
    /// `list-service --filter`.
    pub fn matches(&self, text: &str) -> bool {
        let text = text.to_lowercase();
        self.url.to_lowercase().contains(&text)
            || self.quota.gpu_type.to_lowercase().contains(&text)
            || self.models.iter().any(|m| m.to_lowercase().contains(&text))
    }
}

impl From<Service> for ServiceView {
    fn from(s: Service) -> Self {
        ServiceView {
            provider: s.provider,
            url: s.url,
            quota: QuotaView {
                cpu_count: s.quota.cpuCount,
                node_memory: s.quota.nodeMemory,
                gpu_count: s.quota.gpuCount,
                node_storage: s.quota.nodeStorage,
                gpu_type: s.quota.gpuType,
            },
            price_per_token: s.pricePerToken,
            occupied: s.occupied,
            models: s.models,
            tee_signer: s.teeSignerAddress,
            tee_signer_acknowledged: s.teeSignerAcknowledged,
        }
    }
}

/// The customer's ledger (parent account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerView {
    /// The customer.
    pub user: Address,
    /// Not locked in any sub-account, in neuron.
    #[serde(serialize_with = "ser_dec")]
    pub available_balance: U256,
    /// Available plus locked in sub-accounts, in neuron.
    #[serde(serialize_with = "ser_dec")]
    pub total_balance: U256,
    /// Free text.
    pub additional_info: String,
}

impl From<Ledger> for LedgerView {
    fn from(l: Ledger) -> Self {
        LedgerView {
            user: l.user,
            available_balance: l.availableBalance,
            total_balance: l.totalBalance,
            additional_info: l.additionalInfo,
        }
    }
}

/// A refund request of a sub-account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefundView {
    /// Its index.
    #[serde(serialize_with = "ser_dec")]
    pub index: U256,
    /// Amount, in neuron.
    #[serde(serialize_with = "ser_dec")]
    pub amount: U256,
    /// Unix time it was requested; it matures `lockTime` later.
    pub created_at: u64,
}

/// A deliverable (an encrypted model announced by the provider).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliverableView {
    /// The task id.
    pub id: String,
    /// keccak256 (or 0G storage root) of the encrypted model file.
    pub model_root_hash: Bytes,
    /// The model key, ECIES-encrypted to the customer; empty until settled with acknowledgement.
    pub encrypted_secret: Bytes,
    /// Whether the customer acknowledged the download.
    pub acknowledged: bool,
    /// Unix time it was announced.
    pub timestamp: u64,
    /// Whether the provider settled it.
    pub settled: bool,
}

impl From<Deliverable> for DeliverableView {
    fn from(d: Deliverable) -> Self {
        DeliverableView {
            id: d.id,
            model_root_hash: d.modelRootHash,
            encrypted_secret: d.encryptedSecret,
            acknowledged: d.acknowledged,
            timestamp: d.timestamp.saturating_to::<u64>(),
            settled: d.settled,
        }
    }
}

/// A fine-tuning sub-account (customer × provider).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountView {
    /// The customer.
    pub user: Address,
    /// The provider.
    pub provider: Address,
    /// Highest settled task nonce.
    #[serde(serialize_with = "ser_dec")]
    pub nonce: U256,
    /// Locked balance, in neuron.
    #[serde(serialize_with = "ser_dec")]
    pub balance: U256,
    /// Part of the balance requested back, in neuron.
    #[serde(serialize_with = "ser_dec")]
    pub pending_refund: U256,
    /// Valid refund requests.
    pub refunds: Vec<RefundView>,
    /// Deliverables, oldest first.
    pub deliverables: Vec<DeliverableView>,
    /// Whether the customer accepts the provider's current TEE signer.
    pub acknowledged: bool,
}

impl AccountView {
    /// Balance minus pending refunds: what a task may be charged.
    pub fn spendable(&self) -> U256 {
        self.balance.saturating_sub(self.pending_refund)
    }
}

impl From<AccountDetails> for AccountView {
    fn from(a: AccountDetails) -> Self {
        let valid = a.validRefundsLength.saturating_to::<usize>();
        AccountView {
            user: a.user,
            provider: a.provider,
            nonce: a.nonce,
            balance: a.balance,
            pending_refund: a.pendingRefund,
            refunds: a
                .refunds
                .into_iter()
                .take(valid)
                .map(|r| RefundView {
                    index: r.index,
                    amount: r.amount,
                    created_at: r.createdAt.saturating_to::<u64>(),
                })
                .collect(),
            deliverables: a.deliverables.into_iter().map(Into::into).collect(),
            acknowledged: a.acknowledged,
        }
    }
}

/// Sends a contract call, waits for its receipt and returns a [`TxOutcome`].
macro_rules! send_tx {
    ($action:expr, $call:expr) => {{
        let pending = $call
            .send()
            .await
            .map_err(|e| ClientError::contract($action, e))?;
        let receipt = pending
            .with_timeout(Some(TX_TIMEOUT))
            .get_receipt()
            .await
            .map_err(|e| ClientError::contract($action, e))?;
        if !receipt.status() {
            return Err(ClientError::contract(
                $action,
                ContractError::Failed(receipt.transaction_hash),
            ));
        }
        TxOutcome::from(&receipt)
    }};
}

/// A read failed: a revert becomes [`ClientError::Contract`], an address without code a config error.
fn read_err(
    action: &'static str,
    at: Address,
) -> impl FnOnce(alloy::contract::Error) -> ClientError {
    move |e| match e {
        alloy::contract::Error::ZeroData(..) => ClientError::Config(format!(
            "{action}: no contract answers at {at} on this chain: check --rpc, --ledger and --serving"
        )),
        e => ClientError::contract(action, e),
    }
}

/// One chain connection: the contracts, and the customer's signer when transactions are needed.
#[derive(Clone)]
pub struct Chain {
    provider: DynProvider,
    signer: Option<PrivateKeySigner>,
    contracts: Contracts,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("contracts", &self.contracts)
            .field("user", &self.signer.as_ref().map(|s| s.address()))
            .finish()
    }
}

impl Chain {
    /// Connect to `rpc`. With a `signer` the chain can send the customer's transactions; without one
    /// it only reads.
    pub fn connect(
        rpc: &str,
        contracts: Contracts,
        signer: Option<PrivateKeySigner>,
    ) -> Result<Self> {
        let url: Url = rpc
            .parse()
            .map_err(|e| ClientError::Config(format!("--rpc {rpc:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ClientError::Config(format!(
                "--rpc {rpc:?}: only http:// and https:// RPC URLs are supported"
            )));
        }
        let base = ProviderBuilder::new().disable_recommended_fillers();
        let provider = match &signer {
            Some(s) => base
                .with_gas_estimation()
                .with_simple_nonce_management()
                .fetch_chain_id()
                .wallet(EthereumWallet::from(s.clone()))
                .connect_http(url)
                .erased(),
            None => base.connect_http(url).erased(),
        };
        Ok(Chain {
            provider,
            signer,
            contracts,
        })
    }

    /// The contract addresses.
    pub fn contracts(&self) -> Contracts {
        self.contracts
    }

    /// The underlying alloy provider.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The customer's signer, or a config error saying how to give one.
    pub fn signer(&self) -> Result<&PrivateKeySigner> {
        self.signer.as_ref().ok_or_else(|| {
            ClientError::Config(
                "this command needs the customer key: pass --key, set SEALTUNE_KEY, or pass --keystore".into(),
            )
        })
    }

    /// The customer's address.
    pub fn user(&self) -> Result<Address> {
        self.signer().map(|s| s.address())
    }

    /// The serving contract's address (the EIP-712 domain of TEE signatures).
    pub fn serving_address(&self) -> Address {
        self.contracts.serving
    }

    fn serving(&self) -> FineTuningServingInstance<DynProvider> {
        FineTuningServing::new(self.contracts.serving, self.provider.clone())
    }

    fn ledger(&self) -> LedgerManagerInstance<DynProvider> {
        LedgerManager::new(self.contracts.ledger, self.provider.clone())
    }

    /// The chain id.
    pub async fn chain_id(&self) -> Result<u64> {
        self.provider
            .get_chain_id()
            .await
            .map_err(|e| ClientError::Rpc {
                action: "eth_chainId",
                message: e.to_string(),
            })
    }

    /// The native balance of `who`, in neuron.
    pub async fn wallet_balance(&self, who: Address) -> Result<U256> {
        self.provider
            .get_balance(who)
            .await
            .map_err(|e| ClientError::Rpc {
                action: "eth_getBalance",
                message: e.to_string(),
            })
    }

    /// The customer's ledger, `None` when it has none.
    pub async fn ledger_of(&self, user: Address) -> Result<Option<LedgerView>> {
        match self.ledger().getLedger(user).call().await {
            Ok(l) => Ok(Some(l.into())),
            Err(e) => {
                let e = read_err("getLedger", self.contracts.ledger)(e);
                if e.is_revert::<LedgerManager::LedgerNotExists>() {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// `addLedger`: open the customer's ledger with `amount` (at least 3 0G).
    pub async fn create_account(&self, amount: U256, info: &str) -> Result<TxOutcome> {
        self.signer()?;
        Ok(send_tx!(
            "create-account",
            self.ledger().addLedger(info.to_owned()).value(amount)
        ))
    }

    /// `depositFund`: add `amount` to the customer's ledger (opening it if missing, then at least 3 0G).
    pub async fn deposit_fund(&self, amount: U256) -> Result<TxOutcome> {
        self.signer()?;
        if amount.is_zero() {
            return Err(ClientError::InvalidInput(
                "deposit amount must be above 0".into(),
            ));
        }
        Ok(send_tx!(
            "deposit-fund",
            self.ledger().depositFund().value(amount)
        ))
    }

    /// `refund`: withdraw `amount` of the ledger's available balance to the wallet.
    pub async fn refund(&self, amount: U256) -> Result<TxOutcome> {
        self.signer()?;
        Ok(send_tx!("refund", self.ledger().refund(amount)))
    }

    /// The ledger's full name of the fine-tuning service (`getServiceInfo(serving).fullName`,
    /// `"fine-tuning-v1.0"` on sealtune and 0G deployments), as the official client resolves it.
    pub async fn service_name(&self) -> Result<String> {
        self.ledger()
            .getServiceInfo(self.contracts.serving)
            .call()
            .await
            .map(|i| i.fullName)
            .map_err(read_err("getServiceInfo", self.contracts.ledger))
    }

    /// `transferFund`: move `amount` from the ledger into the sub-account with `provider` (creating
    /// it: at least 1 0G), after checking the provider exists and the customer has a ledger.
    /// `service_name` defaults to what the ledger's registry says ([`Chain::service_name`]).
    pub async fn transfer_fund(
        &self,
        provider: Address,
        amount: U256,
        service_name: Option<&str>,
    ) -> Result<TxOutcome> {
        let user = self.user()?;
        self.service(provider).await?;
        if self.ledger_of(user).await?.is_none() {
            return Err(ClientError::NoLedger(user));
        }
        let name = match service_name {
            Some(n) => n.to_owned(),
            None => self.service_name().await?,
        };
        Ok(send_tx!(
            "transfer-fund",
            self.ledger().transferFund(provider, name, amount)
        ))
    }

    /// Providers with which the customer holds a fine-tuning sub-account.
    pub async fn sub_account_providers(&self, user: Address) -> Result<Vec<Address>> {
        let name = self.service_name().await?;
        self.ledger()
            .getLedgerProviders(user, name)
            .call()
            .await
            .map_err(read_err("getLedgerProviders", self.contracts.ledger))
    }

    /// `retrieveFund`: bring matured refunds of the sub-accounts with `providers` (all of them when
    /// empty) back to the ledger's available balance, and request a refund of the rest (it matures
    /// after the lock time: run again later to collect it).
    pub async fn retrieve_fund(&self, providers: &[Address]) -> Result<(Vec<Address>, TxOutcome)> {
        let user = self.user()?;
        if self.ledger_of(user).await?.is_none() {
            return Err(ClientError::NoLedger(user));
        }
        let providers = if providers.is_empty() {
            self.sub_account_providers(user).await?
        } else {
            providers.to_vec()
        };
        if providers.is_empty() {
            return Err(ClientError::InvalidInput(
                "no fine-tuning sub-accounts to retrieve from".into(),
            ));
        }
        let name = self.service_name().await?;
        let tx = send_tx!(
            "retrieve-fund",
            self.ledger().retrieveFund(providers.clone(), name)
        );
        Ok((providers, tx))
    }

    /// Every registered fine-tuning service.
    pub async fn list_services(&self) -> Result<Vec<ServiceView>> {
        self.serving()
            .getAllServices()
            .call()
            .await
            .map(|v| v.into_iter().map(Into::into).collect())
            .map_err(read_err("getAllServices", self.contracts.serving))
    }

    /// One provider's service, or [`ClientError::UnknownProvider`].
    pub async fn service(&self, provider: Address) -> Result<ServiceView> {
        match self.serving().getService(provider).call().await {
            Ok(s) => Ok(s.into()),
            Err(e) => {
                let e = read_err("getService", self.contracts.serving)(e);
                if e.is_revert::<FineTuningServing::ServiceNotExist>() {
                    Err(ClientError::UnknownProvider(provider))
                } else {
                    Err(e)
                }
            }
        }
    }

    /// The sub-account of `user` with `provider`, `None` when it does not exist.
    pub async fn account(&self, user: Address, provider: Address) -> Result<Option<AccountView>> {
        let exists = self
            .serving()
            .accountExists(user, provider)
            .call()
            .await
            .map_err(read_err("accountExists", self.contracts.serving))?;
        if !exists {
            return Ok(None);
        }
        self.serving()
            .getAccount(user, provider)
            .call()
            .await
            .map(|a| Some(a.into()))
            .map_err(read_err("getAccount", self.contracts.serving))
    }

    /// The deliverable `id` of `user` with `provider`.
    pub async fn deliverable(
        &self,
        user: Address,
        provider: Address,
        id: &str,
    ) -> Result<DeliverableView> {
        self.serving()
            .getDeliverable(user, provider, id.to_owned())
            .call()
            .await
            .map(Into::into)
            .map_err(read_err("getDeliverable", self.contracts.serving))
    }

    /// `acknowledgeDeliverable`: confirm on chain that the model of task `id` was downloaded and checked.
    pub async fn acknowledge_deliverable(&self, provider: Address, id: &str) -> Result<TxOutcome> {
        self.signer()?;
        Ok(send_tx!(
            "acknowledge-model",
            self.serving()
                .acknowledgeDeliverable(provider, id.to_owned())
        ))
    }

    /// `acknowledgeTEESigner(provider, true)`: accept the provider's current TEE signer for this
    /// sub-account (the official client does this before creating a task when it is not yet set;
    /// funding a sub-account sets it too).
    pub async fn acknowledge_tee_signer(&self, provider: Address) -> Result<TxOutcome> {
        self.signer()?;
        Ok(send_tx!(
            "acknowledge-tee-signer",
            self.serving().acknowledgeTEESigner(provider, true)
        ))
    }

    /// The refund lock time in seconds.
    pub async fn lock_time(&self) -> Result<u64> {
        self.serving()
            .lockTime()
            .call()
            .await
            .map(|t| t.saturating_to::<u64>())
            .map_err(read_err("lockTime", self.contracts.serving))
    }
}
