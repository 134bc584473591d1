//! The provider's side of the chain: alloy with the provider wallet over the FineTuningServing
//! contract. Registers or updates the service at start, toggles `occupied`, reads accounts and
//! deliverables, announces deliverables and settles fees. Contract reverts come back as
//! [`ContractError`] with the decoded custom error.
//!
//! Nonces are fetched per transaction (alloy's cached nonce manager leaves a gap after a transaction
//! whose gas estimation reverted); transactions are sent one at a time through a mutex.
use alloy::eips::Encodable2718 as _;
use alloy::network::EthereumWallet;
use alloy::network::TransactionBuilder as _;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use sealtune_contracts::ContractError;
use sealtune_contracts::Revert;
use sealtune_contracts::bindings::FineTuningServing::{
    self, AccountDetails, Deliverable, FineTuningServingInstance, Quota, Service,
};

/// 100 ether: the contract's `MIN_PROVIDER_STAKE`.
pub const DEFAULT_STAKE_WEI: u128 = 100_000_000_000_000_000_000;

/// The service as the worker wants it on chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Public URL.
    pub url: String,
    /// Quota.
    pub quota: QuotaSpec,
    /// Price per token in neuron.
    pub price_per_token: U256,
    /// Model names.
    pub models: Vec<String>,
    /// The TEE signer.
    pub tee_signer: Address,
}

/// The machine's quota.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct QuotaSpec {
    pub cpu_count: u64,
    pub node_memory: u64,
    pub gpu_count: u64,
    pub node_storage: u64,
    pub gpu_type: String,
}

impl QuotaSpec {
    fn to_abi(&self) -> Quota {
        Quota {
            cpuCount: U256::from(self.cpu_count),
            nodeMemory: U256::from(self.node_memory),
            gpuCount: U256::from(self.gpu_count),
            nodeStorage: U256::from(self.node_storage),
            gpuType: self.gpu_type.clone(),
        }
    }
}

/// The provider's chain client.
#[derive(Clone)]
pub struct Chain {
    provider: DynProvider,
    serving: FineTuningServingInstance<DynProvider>,
    /// The provider wallet's address.
    pub address: Address,
    /// The chain id.
    pub chain_id: u64,
    send_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    wallet: EthereumWallet,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("address", &self.address)
            .field("serving", self.serving.address())
            .field("chain_id", &self.chain_id)
            .finish()
    }
}

/// Sends a contract call and waits for a successful receipt.
macro_rules! send {
    ($self:ident, $call:expr) => {{
        let _serial = $self.send_lock.lock().await;
        let pending = $call.send().await.map_err(ContractError::from)?;
        let receipt = pending.get_receipt().await?;
        if !receipt.status() {
            return Err(ContractError::Failed(receipt.transaction_hash));
        }
        Ok::<TransactionReceipt, ContractError>(receipt)
    }};
}

impl Chain {
    /// Connects to `rpc` with `wallet` and reads the chain id.
    pub async fn connect(
        rpc: &str,
        wallet: PrivateKeySigner,
        serving: Address,
    ) -> Result<Chain, ContractError> {
        let address = wallet.address();
        let signing = EthereumWallet::from(wallet.clone());
        let url = rpc.parse().map_err(|e| {
            ContractError::Call(alloy::contract::Error::TransportError(
                alloy::transports::TransportErrorKind::custom_str(&format!(
                    "invalid RPC URL {rpc}: {e}"
                )),
            ))
        })?;
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_gas_estimation()
            .with_simple_nonce_management()
            .fetch_chain_id()
            .wallet(EthereumWallet::from(wallet))
            .connect_http(url)
            .erased();
        let chain_id = provider
            .get_chain_id()
            .await
            .map_err(|e| ContractError::Call(e.into()))?;
        Ok(Chain {
            serving: FineTuningServing::new(serving, provider.clone()),
            provider,
            address,
            chain_id,
            send_lock: Default::default(),
            wallet: signing,
        })
    }

    /// The serving contract's address.
    pub fn serving_address(&self) -> Address {
        *self.serving.address()
    }

    /// The raw provider (for reads the worker does not wrap).
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// This provider's service, if registered.
    pub async fn service(&self) -> Result<Option<Service>, ContractError> {
        match self.serving.getService(self.address).call().await {
            Ok(s) => Ok(Some(s)),
            Err(e) => {
                let e = ContractError::from(e);
                if e.is::<FineTuningServing::ServiceNotExist>() {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Registers the service (with `stake` on first registration) or updates it when it differs.
    /// Returns whether a transaction was sent.
    pub async fn register_service(
        &self,
        spec: &ServiceSpec,
        occupied: bool,
        stake: U256,
    ) -> Result<bool, ContractError> {
        let current = self.service().await?;
        if let Some(s) = &current {
            let same = s.url == spec.url
                && s.quota.cpuCount == U256::from(spec.quota.cpu_count)
                && s.quota.nodeMemory == U256::from(spec.quota.node_memory)
                && s.quota.gpuCount == U256::from(spec.quota.gpu_count)
                && s.quota.nodeStorage == U256::from(spec.quota.node_storage)
                && s.quota.gpuType == spec.quota.gpu_type
                && s.pricePerToken == spec.price_per_token
                && s.occupied == occupied
                && s.models == spec.models
                && s.teeSignerAddress == spec.tee_signer;
            if same {
                return Ok(false);
            }
        }
        let value = if current.is_some() { U256::ZERO } else { stake };
        send!(
            self,
            self.serving
                .addOrUpdateService(
                    spec.url.clone(),
                    spec.quota.to_abi(),
                    spec.price_per_token,
                    occupied,
                    spec.models.clone(),
                    spec.tee_signer,
                )
                .value(value)
        )?;
        Ok(true)
    }

    /// Sets the service's `occupied` flag, keeping everything else.
    pub async fn set_occupied(&self, occupied: bool) -> Result<(), ContractError> {
        let Some(s) = self.service().await? else {
            return Ok(());
        };
        if s.occupied == occupied {
            return Ok(());
        }
        send!(
            self,
            self.serving.addOrUpdateService(
                s.url,
                s.quota,
                s.pricePerToken,
                occupied,
                s.models,
                s.teeSignerAddress,
            )
        )?;
        Ok(())
    }

    /// The user's sub-account with this provider, if it exists.
    pub async fn account(&self, user: Address) -> Result<Option<AccountDetails>, ContractError> {
        match self.serving.getAccount(user, self.address).call().await {
            Ok(a) => Ok(Some(a)),
            Err(e) => {
                let e = ContractError::from(e);
                if e.is::<FineTuningServing::AccountNotExists>() {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// The deliverable `id` of `user`, if announced.
    pub async fn deliverable(
        &self,
        user: Address,
        id: &str,
    ) -> Result<Option<Deliverable>, ContractError> {
        match self
            .serving
            .getDeliverable(user, self.address, id.to_owned())
            .call()
            .await
        {
            Ok(d) if d.id.is_empty() => Ok(None),
            Ok(d) => Ok(Some(d)),
            Err(e) => {
                let e = ContractError::from(e);
                if e.is::<FineTuningServing::DeliverableNotExists>()
                    || e.is::<FineTuningServing::AccountNotExists>()
                {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// `lockTime()` in seconds.
    pub async fn lock_time(&self) -> Result<u64, ContractError> {
        let t = self.serving.lockTime().call().await?;
        Ok(t.try_into().unwrap_or(u64::MAX))
    }

    /// `addDeliverable(user, id, root)`.
    pub async fn add_deliverable(
        &self,
        user: Address,
        id: &str,
        root: B256,
    ) -> Result<TransactionReceipt, ContractError> {
        send!(
            self,
            self.serving.addDeliverable(
                user,
                id.to_owned(),
                Bytes::copy_from_slice(root.as_slice())
            )
        )
    }

    /// `abandonDeliverable(user, id)`: closes an unsettled deliverable without charge, so that it
    /// no longer blocks the account's next one.
    pub async fn abandon_deliverable(
        &self,
        user: Address,
        id: &str,
    ) -> Result<TransactionReceipt, ContractError> {
        send!(self, self.serving.abandonDeliverable(user, id.to_owned()))
    }

    /// `settleFees(input)`.
    pub async fn settle(
        &self,
        input: &sealtune_protocol::eip712::VerifierInput,
    ) -> Result<TransactionReceipt, ContractError> {
        let input = FineTuningServing::VerifierInput {
            id: input.id.clone(),
            encryptedSecret: input.encryptedSecret.clone(),
            modelRootHash: input.modelRootHash.clone(),
            nonce: input.nonce,
            signature: input.signature.clone(),
            taskFee: input.taskFee,
            user: input.user,
        };
        send!(self, self.serving.settleFees(input))
    }
}

/// A settlement as the chain recorded it: the `FeesSettled` event and its transaction.
#[derive(Debug, Clone)]
pub struct SettledFees {
    /// What the contract charged (the fee, or the penalty share of it).
    pub fee: U256,
    /// Whether the customer had acknowledged.
    pub acknowledged: bool,
    /// The `settleFees` transaction.
    pub tx: Option<B256>,
}

impl SettledFees {
    /// The `FeesSettled` event of deliverable `id` with `nonce` among a receipt's logs.
    pub fn from_receipt(
        receipt: &TransactionReceipt,
        serving: Address,
        id: &str,
        nonce: U256,
    ) -> Option<SettledFees> {
        use alloy::sol_types::SolEvent as _;
        receipt
            .inner
            .logs()
            .iter()
            .filter(|l| l.address() == serving)
            .find_map(|l| FineTuningServing::FeesSettled::decode_log(&l.inner).ok())
            .filter(|e| e.deliverableId == id && e.nonce == nonce)
            .map(|e| SettledFees {
                fee: e.fee,
                acknowledged: e.acknowledged,
                tx: Some(receipt.transaction_hash),
            })
    }
}

impl Chain {
    /// The `FeesSettled` event of deliverable `id` of `user` with `nonce`, settled by this provider
    /// (the events are indexed by user and provider), when there is one: what was charged, read
    /// from the chain rather than computed again.
    pub async fn fees_settled(
        &self,
        user: Address,
        id: &str,
        nonce: U256,
    ) -> Result<Option<SettledFees>, ContractError> {
        use alloy::sol_types::SolEvent as _;
        let filter = alloy::rpc::types::Filter::new()
            .address(self.serving_address())
            .event_signature(FineTuningServing::FeesSettled::SIGNATURE_HASH)
            .topic1(user.into_word())
            .topic2(self.address.into_word())
            .from_block(0u64);
        let logs = self
            .provider
            .get_logs(&filter)
            .await
            .map_err(|e| ContractError::Call(e.into()))?;
        Ok(logs.iter().rev().find_map(|l| {
            let e = FineTuningServing::FeesSettled::decode_log(&l.inner).ok()?;
            (e.deliverableId == id && e.nonce == nonce).then_some(SettledFees {
                fee: e.fee,
                acknowledged: e.acknowledged,
                tx: l.transaction_hash,
            })
        }))
    }
}

/// True when `e` is a revert the chain will repeat (no point retrying).
pub fn is_permanent(e: &ContractError) -> bool {
    matches!(
        e,
        ContractError::Reverted(Revert::Serving(_) | Revert::Ledger(_))
    )
}

/// Transactions recorded before they are sent (the 0G Storage Flow submission).
impl Chain {
    /// Signs `tx` from the provider wallet (nonce, gas and fees filled here), hands its hash and
    /// raw bytes to `record`, and only once `record` succeeded broadcasts it and waits for its
    /// receipt. The send lock is held throughout, so no other transaction takes its nonce
    /// meanwhile: after a crash, what `record` kept is sent again with [`Self::rebroadcast`] (same
    /// nonce, same hash), so the transaction's value is paid at most once.
    pub async fn send_recorded<Fut>(
        &self,
        tx: TransactionRequest,
        record: impl FnOnce(B256, Bytes) -> Fut,
    ) -> Result<TransactionReceipt, RecordedSendError>
    where
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let _serial = self.send_lock.lock().await;
        let tx = tx.with_from(self.address).with_chain_id(self.chain_id);
        let nonce = self
            .provider
            .get_transaction_count(self.address)
            .pending()
            .await
            .map_err(transport)?;
        let gas = self
            .provider
            .estimate_gas(tx.clone())
            .await
            .map_err(|e| ContractError::from(alloy::contract::Error::from(e)))?;
        let fees = self
            .provider
            .estimate_eip1559_fees()
            .await
            .map_err(transport)?;
        let tx = tx
            .with_nonce(nonce)
            .with_gas_limit(gas)
            .with_max_fee_per_gas(fees.max_fee_per_gas)
            .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas);
        let envelope = <TransactionRequest as alloy::network::NetworkTransactionBuilder<
            alloy::network::Ethereum,
        >>::build(tx, &self.wallet)
        .await
        .map_err(|e| transport_msg(&format!("signing: {e}")))?;
        let hash = *envelope.tx_hash();
        let raw = Bytes::from(envelope.encoded_2718());
        record(hash, raw.clone())
            .await
            .map_err(RecordedSendError::Record)?;
        Ok(self.broadcast_locked(&raw, hash).await?)
    }

    /// A transaction [`Self::send_recorded`] recorded (`raw`, hash `hash`), after a restart: its
    /// receipt when it was mined (sent again first when the chain does not know it), `None` when it
    /// never can be (its nonce went to another transaction: nothing was paid for it).
    pub async fn rebroadcast(
        &self,
        raw: &Bytes,
        hash: B256,
    ) -> Result<Option<TransactionReceipt>, ContractError> {
        use alloy::consensus::Transaction as _;
        use alloy::eips::Decodable2718 as _;
        if let Some(receipt) = self.receipt(hash).await? {
            return Ok(Some(receipt));
        }
        let nonce = alloy::consensus::TxEnvelope::decode_2718(&mut raw.as_ref())
            .map_err(|e| transport_msg(&format!("recorded transaction {hash}: {e}")))?
            .nonce();
        let _serial = self.send_lock.lock().await;
        let used = self
            .provider
            .get_transaction_count(self.address)
            .latest()
            .await
            .map_err(transport)?;
        if used > nonce {
            // Mined by now (a receipt), or its nonce was taken by another transaction.
            return self.receipt(hash).await;
        }
        self.broadcast_locked(raw, hash).await.map(Some)
    }

    /// The receipt of transaction `hash`, if mined.
    async fn receipt(&self, hash: B256) -> Result<Option<TransactionReceipt>, ContractError> {
        self.provider
            .get_transaction_receipt(hash)
            .await
            .map_err(transport)
    }

    /// Sends the signed `raw` (hash `hash`) and waits for a successful receipt; a node that knows
    /// it already is waited on.
    async fn broadcast_locked(
        &self,
        raw: &Bytes,
        hash: B256,
    ) -> Result<TransactionReceipt, ContractError> {
        let receipt = match self.provider.send_raw_transaction(raw).await {
            Ok(pending) => pending.get_receipt().await?,
            Err(e) if e.to_string().contains("already") => {
                alloy::providers::PendingTransactionBuilder::new(self.provider.root().clone(), hash)
                    .get_receipt()
                    .await?
            }
            Err(e) => return Err(transport(e)),
        };
        if !receipt.status() {
            return Err(ContractError::Failed(receipt.transaction_hash));
        }
        Ok(receipt)
    }
}

/// Why [`Chain::send_recorded`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordedSendError {
    /// The chain refused or failed (nothing was recorded, or what was recorded may be sent again).
    #[error(transparent)]
    Chain(#[from] ContractError),
    /// Recording the signed transaction failed: it was not sent.
    #[error("recording the transaction before sending it: {0}")]
    Record(String),
}

fn transport(e: alloy::transports::TransportError) -> ContractError {
    ContractError::Call(alloy::contract::Error::TransportError(e))
}

fn transport_msg(msg: &str) -> ContractError {
    ContractError::Call(alloy::contract::Error::TransportError(
        alloy::transports::TransportErrorKind::custom_str(msg),
    ))
}
