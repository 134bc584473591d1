//! # sealtune-worker
//!
//! The provider service that runs inside a TDX confidential VM: HTTP API, task store, pipeline,
//! executor (embedded CPython), chain client, storage and attestation.
#![deny(missing_docs)]

pub mod attest;
pub mod exec;
pub mod storage;
