//! 0G Flow contract submission: the on-chain half of an upload.
//!
//! Two `submit` ABIs are live (PROTOCOL.md §6): the older `submit((uint256,bytes,(bytes32,uint256)[]))`
//! (selector `0xef3e12dc`) and the newer `submit(((uint256,bytes,(bytes32,uint256)[]),address))`
//! (`0xbc8c11f8`, with the submitter, what the official SDK 1.2 sends). [`SubmitAbi::Auto`] asks
//! the node to estimate the newer call and falls back to the older one when it reverts. The fee
//! is `market.pricePerSector() × Σ 2^height` over the submission nodes.

use alloy::network::TransactionBuilder as _;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::sol;
use alloy::sol_types::SolCall as _;
use sealtune_protocol::storage::FileTree;
use serde::{Deserialize, Serialize};

use super::StorageError;

sol! {
    /// One submission node: a complete subtree of `2^height` chunks.
    struct SubmissionNode { bytes32 root; uint256 height; }
    /// The file's length, tags and submission nodes.
    struct SubmissionData { uint256 length; bytes tags; SubmissionNode[] nodes; }
    /// The newer submission: data plus the submitter.
    struct Submission { SubmissionData data; address submitter; }

    /// The Flow contract, newer ABI.
    #[sol(rpc)]
    interface FlowWithSubmitter {
        /// Submit a file (newer ABI).
        function submit(Submission submission) external payable returns (uint256 index, bytes32 digest, uint256 startIndex, uint256 length);
        /// The market contract holding the price.
        function market() external view returns (address);
    }
    /// The Flow contract, older ABI.
    interface FlowLegacy {
        /// Submit a file (older ABI).
        function submit(SubmissionData submission) external payable returns (uint256 index, bytes32 digest, uint256 startIndex, uint256 length);
    }
    /// The storage market.
    #[sol(rpc)]
    interface FixedPriceMarket {
        /// Price of one 256-byte sector.
        function pricePerSector() external view returns (uint256);
    }
}

/// Which `submit` ABI to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubmitAbi {
    /// Estimate the newer ABI; fall back to the legacy one if it reverts (default).
    #[default]
    Auto,
    /// `submit(((uint256,bytes,(bytes32,uint256)[]),address))`, selector `0xbc8c11f8`.
    WithSubmitter,
    /// `submit((uint256,bytes,(bytes32,uint256)[]))`, selector `0xef3e12dc`.
    Legacy,
}

/// The submission data of a file tree (no tags).
pub fn submission_data(tree: &FileTree) -> SubmissionData {
    SubmissionData {
        length: U256::from(tree.size()),
        tags: Bytes::new(),
        nodes: tree
            .submission_nodes()
            .iter()
            .map(|n| SubmissionNode {
                root: n.root,
                height: U256::from(n.height),
            })
            .collect(),
    }
}

/// The calldata of `submit` for `tree` in the given ABI (`Auto` encodes the newer one).
pub fn submit_calldata(tree: &FileTree, abi: SubmitAbi, submitter: Address) -> Bytes {
    let data = submission_data(tree);
    match abi {
        SubmitAbi::Legacy => FlowLegacy::submitCall { submission: data }.abi_encode(),
        SubmitAbi::Auto | SubmitAbi::WithSubmitter => FlowWithSubmitter::submitCall {
            submission: Submission { data, submitter },
        }
        .abi_encode(),
    }
    .into()
}

/// The storage fee of `tree`: `pricePerSector × sectors`.
pub fn storage_fee(tree: &FileTree, price_per_sector: U256) -> U256 {
    price_per_sector.saturating_mul(U256::from(tree.sectors()))
}

/// Submits `tree` to the Flow contract at `flow` from `submitter` (the provider's wallet, which
/// `provider` signs for) and returns the transaction hash once it is mined.
pub async fn submit<P: Provider>(
    provider: &P,
    flow: Address,
    tree: &FileTree,
    abi: SubmitAbi,
    submitter: Address,
) -> Result<B256, StorageError> {
    let chain = |what: &str, e: &dyn std::fmt::Display| StorageError::Chain(format!("{what}: {e}"));
    let receipt = provider
        .send_transaction(submit_request(provider, flow, tree, abi, submitter).await?)
        .await
        .map_err(|e| chain("Flow.submit", &e))?
        .get_receipt()
        .await
        .map_err(|e| chain("Flow.submit receipt", &e))?;
    if !receipt.status() {
        return Err(StorageError::Chain(format!(
            "Flow.submit {} reverted",
            receipt.transaction_hash
        )));
    }
    Ok(receipt.transaction_hash)
}

/// The `submit` transaction of `tree` to the Flow contract at `flow` from `submitter`, unsigned:
/// the storage fee (read from the market) as its value, in the ABI `abi` (`Auto`: the newer one
/// when the node estimates it, else the legacy one).
pub async fn submit_request<P: Provider>(
    provider: &P,
    flow: Address,
    tree: &FileTree,
    abi: SubmitAbi,
    submitter: Address,
) -> Result<TransactionRequest, StorageError> {
    let chain = |what: &str, e: &dyn std::fmt::Display| StorageError::Chain(format!("{what}: {e}"));
    let market = FlowWithSubmitter::new(flow, provider)
        .market()
        .call()
        .await
        .map_err(|e| chain("Flow.market()", &e))?;
    let price = FixedPriceMarket::new(market, provider)
        .pricePerSector()
        .call()
        .await
        .map_err(|e| chain("market.pricePerSector()", &e))?;
    let fee = storage_fee(tree, price);
    let request = |abi| {
        TransactionRequest::default()
            .with_from(submitter)
            .with_to(flow)
            .with_value(fee)
            .with_input(submit_calldata(tree, abi, submitter))
    };
    let chosen = match abi {
        SubmitAbi::Auto => match provider
            .estimate_gas(request(SubmitAbi::WithSubmitter))
            .await
        {
            Ok(_) => SubmitAbi::WithSubmitter,
            Err(e) => {
                tracing::info!(error = %e, "Flow rejects the newer submit ABI; using the legacy one");
                SubmitAbi::Legacy
            }
        },
        other => other,
    };
    Ok(request(chosen))
}
