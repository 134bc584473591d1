//! # sealtune-protocol
//!
//! Every wire format sealtune shares with the 0G fine-tuning network, implemented once and free of
//! frameworks (no tokio, axum, sqlx, pyo3 or network code). The worker, the client, the verifier,
//! the Python module and the contract tests all call these functions; none re-implements a digest.
//!
//! | module | PROTOCOL.md | what |
//! |---|---|---|
//! | [`sig`] | §2, §4 | strict secp256k1 signature parsing, recovery, EIP-191 |
//! | [`request`] | §2 | customer request digests and signer recovery, timestamp window |
//! | [`request_v2`] | §2.1 | sealtune's create-task request v2 (EIP-712, binds model, params, options, fee ceiling) |
//! | [`api`] | §2 | the JSON bodies of the signed API requests |
//! | [`eip712`] | §1 | the EIP-712 `VerifierMessage` settled on chain |
//! | [`fee`] | §3 | the task fee formula |
//! | [`params`] | §3 | the stock LoRA `trainingParams` and their ranges |
//! | [`deliverable`] | §4 | sealing and opening the encrypted model, tag signature |
//! | [`ecies`] | §4 | the eciesjs-compatible wrap of the model key |
//! | [`envelope`] | §9 | confidential datasets: the envelope a customer seals a dataset in to the worker's dataset key |
//! | [`storage`] | §6 | 0G Storage root hash, submission nodes, segment proofs |
//! | [`dstack`] | §5 | dstack runtime events: their digest and how they extend RTMR3 |
//! | [`attestation`] | §5.1–5.3 | the attestation document v2, the measured config document, tree digests |
//! | [`dataset`] | §3 | dataset record shapes and the `messages` conversion |
//! | [`tokens`] | §3 | the token-counting rule behind the fee (feature `tokenizer`) |
//! | [`events`] | — | the events the executor streams to the worker |
//! | [`task`] | §2 | the task states and the rules on them |
//! | [`report`] | §9 | the signed training report |
//! | [`evaluation`] | §10 | evaluating a delivered model: its parameters, the re-wrapped model key, the signed evaluation report |
#![deny(missing_docs)]
// Everything here parses or computes over untrusted bytes (requests, datasets, sealed files, quotes,
// storage proofs): no unwrap/expect/panic, no unchecked indexing or arithmetic in library code.
// Unit tests (`cfg(test)`) and the integration tests (their own crates) are exempt. Set here rather
// than in Cargo.toml's `[lints]`, which cannot add to `workspace = true` and would cover the tests.
// An `allow` on one expression must say why it cannot panic.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::arithmetic_side_effects
    )
)]

pub mod api;
pub mod attestation;
pub mod dataset;
pub mod dataset_type;
pub mod deliverable;
pub mod dstack;
pub mod ecies;
pub mod eip712;
pub mod envelope;
pub mod evaluation;
pub mod events;
pub mod fee;
pub mod gpu;
pub mod params;
pub mod report;
pub mod request;
pub mod request_v2;
pub mod sig;
pub mod storage;
pub mod task;
#[cfg(feature = "tokenizer")]
pub mod tokens;

pub use alloy_primitives::{Address, B256, U256, keccak256};
