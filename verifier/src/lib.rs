//! # sealtune-verifier
//!
//! Checks a provider's whole chain of trust: TDX quote (DCAP), event log and RTMRs, measurement
//! policy, report_data → TEE signer binding, settlement and deliverable signatures.
#![deny(missing_docs)]
