//! # sealtune-contracts
//!
//! The FineTuningServing and LedgerManager contracts: committed compiler artifacts, alloy
//! bindings and the deploy routine used by tests, the demo and providers.
//!
//! * `sol/` holds the Solidity sources (written for sealtune, ABI-compatible with 0G's contracts:
//!   every entry of the official ABI files exists with the same signature, plus
//!   `abandonDeliverable` and `acknowledgeTEESignerByOwnerFor`; a TEE signer serves one provider,
//!   and the penalty path of `settleFees` needs only the penalty in balance: docs/PROTOCOL.md §1). FineTuningServing is split into an entry point
//!   (`fine-tuning/FineTuningServing.sol`) and account, service and verifier libraries.
//! * `build.cjs` compiles them with the pinned solc-js into `artifacts/` (committed); a test fails
//!   when the committed artifacts differ from a fresh compile.
//! * [`bindings`] are alloy `sol!` bindings generated from those artifacts (with bytecode, so
//!   `FineTuningServing::deploy` works).
//! * [`deploy()`] deploys and wires both contracts; [`ContractError`] turns custom reverts into a
//!   typed error that says what happened and what to do.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sealtune_contracts::ContractError> {
//! use alloy::providers::ProviderBuilder;
//! use alloy::signers::local::PrivateKeySigner;
//! use sealtune_contracts::{DeployConfig, deploy};
//!
//! let owner: PrivateKeySigner = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80".parse().unwrap();
//! let provider = ProviderBuilder::new().wallet(owner).connect_http("http://127.0.0.1:8545".parse().unwrap());
//! let deployment = deploy(&provider, &DeployConfig::default()).await?;
//! println!("serving {} ledger {}", deployment.serving, deployment.ledger);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod bindings;
mod deploy;
mod error;

pub use deploy::{DeployConfig, Deployment, acknowledge_tee_signer, deploy};
pub use error::{ContractError, Revert};

/// Service type under which the fine-tuning contract is registered in the ledger.
pub const FINE_TUNING_SERVICE_TYPE: &str = "fine-tuning";
/// Version under which the fine-tuning contract is registered in the ledger.
pub const FINE_TUNING_SERVICE_VERSION: &str = "v1.0";
/// The ledger's full name of the fine-tuning service (`type-version`): the official client reads it
/// with `getServiceInfo(fineTuningAddress).fullName` and passes it to `transferFund`/`retrieveFund`.
pub const FINE_TUNING_SERVICE_NAME: &str = "fine-tuning-v1.0";
/// Default refund lock time (1 day), as on 0G.
pub const DEFAULT_LOCK_TIME_SECS: u64 = 86_400;
/// Default penalty percentage charged for unacknowledged deliverables.
pub const DEFAULT_PENALTY_PERCENTAGE: u64 = 30;

/// The committed artifact of FineTuningServing (ABI, bytecode, compiler version and settings).
pub const FINE_TUNING_SERVING_ARTIFACT: &str = include_str!("../artifacts/FineTuningServing.json");
/// The committed artifact of LedgerManager (ABI, bytecode, compiler version and settings).
pub const LEDGER_MANAGER_ARTIFACT: &str = include_str!("../artifacts/LedgerManager.json");
