//! alloy bindings generated from the committed artifacts in `contracts/artifacts/`.
//!
//! Each module (`FineTuningServing`, `LedgerManager`) carries the contract's structs, events,
//! errors (`FineTuningServingErrors`, `LedgerManagerErrors`), call types, an RPC instance type and
//! `deploy`. [`VerifierMessage`] is the EIP-712 struct the TEE signer signs for `settleFees`.
#![allow(missing_docs)]

use alloy::sol;

sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    FineTuningServing,
    "artifacts/FineTuningServing.json"
);

sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    LedgerManager,
    "artifacts/LedgerManager.json"
);

sol! {
    /// EIP-712 message signed by the provider's TEE signer (domain "0G Fine-Tuning Serving", version "1").
    #[derive(Debug, PartialEq, Eq)]
    struct VerifierMessage {
        string id;
        bytes encryptedSecret;
        bytes modelRootHash;
        uint256 nonce;
        uint256 taskFee;
        address user;
    }
}

/// The EIP-712 domain of a FineTuningServing deployment.
pub fn verifier_domain(
    chain_id: u64,
    serving: alloy::primitives::Address,
) -> alloy::sol_types::Eip712Domain {
    alloy::sol_types::eip712_domain! {
        name: "0G Fine-Tuning Serving",
        version: "1",
        chain_id: chain_id,
        verifying_contract: serving,
    }
}
