//! Reading what the chain says: a service's registered TEE signer, a settlement transaction, a
//! deliverable's `modelRootHash`. Read-only JSON-RPC calls through the `sealtune_contracts` bindings.

use alloy::primitives::{Address, B256, Bytes};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::sol_types::{SolCall, SolEvent};
use sealtune_contracts::bindings::FineTuningServing;
use sealtune_protocol::eip712::VerifierInput;
use serde::Serialize;

/// Why the chain could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The RPC URL is not a URL.
    #[error("--rpc {0:?} is not a URL")]
    Url(String),
    /// A JSON-RPC call failed (node unreachable, call reverted, …).
    #[error("{what}: {message}")]
    Rpc {
        /// What was being read.
        what: String,
        /// The transport's or contract's error.
        message: String,
    },
    /// The transaction does not exist (yet).
    #[error("transaction {0} not found on this chain")]
    TxNotFound(B256),
    /// The transaction is not a `settleFees` call.
    #[error("transaction {tx} is not a settleFees call to a FineTuningServing contract: {reason}")]
    NotSettlement {
        /// The transaction hash.
        tx: B256,
        /// Why.
        reason: String,
    },
}

fn rpc_err(what: impl Into<String>) -> impl FnOnce(alloy::contract::Error) -> ChainError {
    let what = what.into();
    move |e| ChainError::Rpc {
        what,
        message: e.to_string(),
    }
}

/// A read-only connection to a chain.
#[derive(Clone, Debug)]
pub struct Chain {
    provider: DynProvider,
}

/// What the serving contract records about a provider's TEE signer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegisteredSigner {
    /// The serving contract.
    pub serving: Address,
    /// The provider.
    pub provider: Address,
    /// `service.teeSignerAddress`.
    pub tee_signer: Address,
    /// `service.teeSignerAcknowledged` (by the contract owner).
    pub acknowledged: bool,
    /// `service.url`.
    pub url: String,
    /// Block the state was read at (`None`: latest).
    pub block: Option<u64>,
}

/// A settlement read back from its transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementTx {
    /// The transaction hash.
    pub tx: B256,
    /// The `settleFees` argument.
    pub input: VerifierInput,
    /// The chain id.
    pub chain_id: u64,
    /// The serving contract called.
    pub serving: Address,
    /// The sender (the provider).
    pub provider: Address,
    /// Block number.
    pub block: u64,
    /// Whether the transaction succeeded.
    pub success: bool,
    /// The `FeesSettled` event of the receipt: (fee, acknowledged, nonce).
    pub fees_settled: Option<FeesSettledEvent>,
}

/// The fields of a `FeesSettled` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeesSettledEvent {
    /// The customer.
    pub user: Address,
    /// The provider.
    pub provider: Address,
    /// The deliverable id.
    pub id: String,
    /// The fee charged (wei, decimal).
    pub fee: String,
    /// Whether the customer had acknowledged the deliverable.
    pub acknowledged: bool,
    /// The nonce written.
    pub nonce: String,
}

/// A deliverable as stored on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OnchainDeliverable {
    /// The id.
    pub id: String,
    /// `modelRootHash`.
    pub model_root_hash: Bytes,
    /// Acknowledged by the customer.
    pub acknowledged: bool,
    /// Settled.
    pub settled: bool,
}

impl Chain {
    /// Connect to the JSON-RPC endpoint at `rpc` (no request is made yet).
    pub fn connect(rpc: &str) -> Result<Self, ChainError> {
        let url = rpc.parse().map_err(|_| ChainError::Url(rpc.to_owned()))?;
        Ok(Self {
            provider: ProviderBuilder::new()
                .disable_recommended_fillers()
                .connect_http(url)
                .erased(),
        })
    }

    /// The chain id.
    pub async fn chain_id(&self) -> Result<u64, ChainError> {
        self.provider
            .get_chain_id()
            .await
            .map_err(|e| ChainError::Rpc {
                what: "eth_chainId".into(),
                message: e.to_string(),
            })
    }

    /// `getService(provider)` at `block` (`None`: latest).
    pub async fn registered_signer(
        &self,
        serving: Address,
        provider: Address,
        block: Option<u64>,
    ) -> Result<RegisteredSigner, ChainError> {
        let c = FineTuningServing::new(serving, &self.provider);
        let mut call = c.getService(provider);
        if let Some(b) = block {
            call = call.block(b.into());
        }
        let s = call.call().await.map_err(rpc_err(format!(
            "getService({provider}) on serving contract {serving}"
        )))?;
        Ok(RegisteredSigner {
            serving,
            provider,
            tee_signer: s.teeSignerAddress,
            acknowledged: s.teeSignerAcknowledged,
            url: s.url,
            block,
        })
    }

    /// `getDeliverable(user, provider, id)`.
    pub async fn deliverable(
        &self,
        serving: Address,
        user: Address,
        provider: Address,
        id: &str,
    ) -> Result<OnchainDeliverable, ChainError> {
        let c = FineTuningServing::new(serving, &self.provider);
        let d = c
            .getDeliverable(user, provider, id.to_owned())
            .call()
            .await
            .map_err(rpc_err(format!(
                "getDeliverable({user}, {provider}, {id:?}) on {serving}"
            )))?;
        Ok(OnchainDeliverable {
            id: d.id,
            model_root_hash: d.modelRootHash,
            acknowledged: d.acknowledged,
            settled: d.settled,
        })
    }

    /// Read a `settleFees` transaction: its argument (decoded from the calldata), sender, target,
    /// block, status and `FeesSettled` event.
    pub async fn settlement(&self, tx: B256) -> Result<SettlementTx, ChainError> {
        let rpc = |what: &str| {
            let what = what.to_owned();
            move |e: alloy::transports::TransportError| ChainError::Rpc {
                what,
                message: e.to_string(),
            }
        };
        let t = self
            .provider
            .get_transaction_by_hash(tx)
            .await
            .map_err(rpc("eth_getTransactionByHash"))?
            .ok_or(ChainError::TxNotFound(tx))?;
        let receipt = self
            .provider
            .get_transaction_receipt(tx)
            .await
            .map_err(rpc("eth_getTransactionReceipt"))?
            .ok_or(ChainError::TxNotFound(tx))?;
        let not = |reason: String| ChainError::NotSettlement { tx, reason };
        use alloy::consensus::Transaction as _;
        let serving = t
            .inner
            .to()
            .ok_or_else(|| not("a contract creation".into()))?;
        let call = FineTuningServing::settleFeesCall::abi_decode(t.inner.input())
            .map_err(|e| not(format!("calldata does not decode: {e}")))?;
        let i = call.verifierInput;
        let input = VerifierInput {
            id: i.id,
            encryptedSecret: i.encryptedSecret,
            modelRootHash: i.modelRootHash,
            nonce: i.nonce,
            signature: i.signature,
            taskFee: i.taskFee,
            user: i.user,
        };
        let fees_settled = receipt
            .inner
            .logs()
            .iter()
            .filter(|l| l.address() == serving)
            .find_map(|l| FineTuningServing::FeesSettled::decode_log(&l.inner).ok())
            .map(|e| FeesSettledEvent {
                user: e.user,
                provider: e.provider,
                id: e.deliverableId.clone(),
                fee: e.fee.to_string(),
                acknowledged: e.acknowledged,
                nonce: e.nonce.to_string(),
            });
        let chain_id = match t.inner.chain_id() {
            Some(c) => c,
            None => self.chain_id().await?,
        };
        Ok(SettlementTx {
            tx,
            input,
            chain_id,
            serving,
            provider: t.inner.signer(),
            block: receipt.block_number.unwrap_or_default(),
            success: receipt.status(),
            fees_settled,
        })
    }
}

impl Chain {
    /// Find the `settleFees` transaction of deliverable `id` between `user` and `provider` through
    /// the `FeesSettled` events of `serving` (indexed by user and provider), then read it.
    pub async fn find_settlement(
        &self,
        serving: Address,
        user: Address,
        provider: Address,
        id: &str,
    ) -> Result<SettlementTx, ChainError> {
        use alloy::rpc::types::Filter;
        let filter = Filter::new()
            .address(serving)
            .event_signature(FineTuningServing::FeesSettled::SIGNATURE_HASH)
            .topic1(user.into_word())
            .topic2(provider.into_word())
            .from_block(0u64);
        let logs = self
            .provider
            .get_logs(&filter)
            .await
            .map_err(|e| ChainError::Rpc {
                what: "eth_getLogs(FeesSettled)".into(),
                message: e.to_string(),
            })?;
        let tx = logs
            .iter()
            .rev()
            .find_map(|l| {
                let e = FineTuningServing::FeesSettled::decode_log(&l.inner).ok()?;
                (e.deliverableId == id)
                    .then_some(l.transaction_hash)
                    .flatten()
            })
            .ok_or_else(|| ChainError::Rpc {
                what: format!("FeesSettled({user}, {provider}, {id:?}) on {serving}"),
                message: "no such event: the deliverable is not settled on this contract".into(),
            })?;
        self.settlement(tx).await
    }
}
