//! # sealtune-contracts
//!
//! The FineTuningServing and LedgerManager contracts: committed compiler artifacts, alloy
//! bindings and the deploy routine used by tests, the demo and providers.
#![deny(missing_docs)]
