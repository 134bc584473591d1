//! alloy bindings generated from the committed artifacts in `contracts/artifacts/`.
//!
//! Each module (`FineTuningServing`, `LedgerManager`) carries the contract's structs, events,
//! errors (`FineTuningServingErrors`, `LedgerManagerErrors`), call types, an RPC instance type and
//! `deploy`. [`VerifierMessage`] (re-exported from `sealtune_protocol::eip712`) is the EIP-712
//! struct the TEE signer signs for `settleFees`.
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

/// The EIP-712 message the TEE signer signs for `settleFees`, and its domain: one implementation,
/// in `sealtune_protocol::eip712`, re-exported here for the contract tests and deploy tooling.
pub use sealtune_protocol::eip712::{VerifierMessage, domain as verifier_domain};
