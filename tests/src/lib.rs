//! The one test harness of the sealtune workspace: every crate's integration tests, benches and
//! examples start their chain, sign their transactions, find their fixtures and run the worker through
//! it. Every helper fails with a message that says what to run when a tool is missing, never skips.
//!
//! - [`fixtures`]: the checkout's root (`$SEALTUNE_ROOT` wins) and the real fixtures of `tests/fixtures`.
//! - [`tools`]: the npm tools and the venv `scripts/setup` installs, free ports, running a command.
//! - [`process`]: child processes killed on drop and when the test binary dies.
//! - [`chain`]: anvil (the one launcher), its dev keys and signers, `ether`, the nonce-safe provider,
//!   snapshots and the clock.
//! - [`contracts`]: the real contracts deployed on a chain, their rules driven as dev accounts
//!   (`send!`, `assert_revert`, registering, funding, settling).
//! - [`stack`]: anvil + contracts + the `sealtune-worker` binary with dev attestation, and the customer's
//!   HTTP calls against it.
//! - [`provider_fixture`]: an HTTP stand-in for a provider's byte path, for the customer library's tests.
//! - [`http`]: a loopback HTTP server standing in for a PCCS (and a provider's `/v1/quote`).
//! - [`solidity`]: compiling Solidity stand-ins with the pinned solc-js.
//! - [`trials`]: one shared stack per test binary, its cases run against it (libtest-mimic).
//!
//! Integration tests of a crate this harness depends on (contracts, protocol) may use it (a dev-dependency
//! cycle Cargo allows); that crate's `#[cfg(test)]` unit tests must not (they would see two copies of it).
#![deny(missing_docs)]

pub mod chain;
pub mod contracts;
pub mod fixtures;
pub mod gpu;
pub mod http;
pub mod process;
pub mod provider_fixture;
pub mod solidity;
pub mod stack;
pub mod tools;
pub mod trials;

pub use chain::{Anvil, DEV_CHAIN_ID, DEV_KEYS, ether, k256_key, signer};
pub use fixtures::{fixture, fixture_bytes, fixtures_dir, repo_root};
pub use process::{ChildGuard, spawn_tied};
pub use solidity::{Compiled, compile_solidity};
pub use tools::{free_port, hf_cache, node, node_modules, node_tool, run_ok, venv_python};
