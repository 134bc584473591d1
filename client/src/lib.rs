//! # sealtune-client
//!
//! The customer library behind the `sealtune` CLI: everything a customer of a fine-tuning provider on
//! the 0G Compute Network does, against sealtune providers and official 0G providers alike.
//!
//! | module | what |
//! |---|---|
//! | [`chain`] | ledger, sub-accounts, services, deliverables (alloy, typed reverts) |
//! | [`api`] | the provider's HTTP API (PROTOCOL.md §2) |
//! | [`attest`] | verify a provider's attestation against its on-chain TEE signer |
//! | [`funds`] | the ledger and sub-accounts: balances, deposits, transfers, retrieval |
//! | [`flow`] | create-task, download (checked before acknowledging), decrypt |
//! | [`model`] | hash and tag-signature checks, key unwrap, streaming decryption |
//! | [`estimate`] | token count and fee before paying |
//! | [`storage`] | 0G Storage root hashes of local files |
//! | [`gateway`] | `sealtune gateway`: the OpenAI-compatible fine-tuning API on the customer's side |
//! | [`amount`], [`config`] | amounts of 0G, settings and keys |
//! | [`cli`] | the `sealtune` commands |
//!
//! Every operation returns [`ClientError`], which says what to do next
//! ([`ClientError::hint`]) and maps to a documented exit code ([`error::exit`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), sealtune_client::ClientError> {
//! use sealtune_client::amount::parse_amount;
//! use sealtune_client::chain::{Chain, Contracts};
//! use sealtune_client::config::{parse_address, parse_private_key};
//!
//! let key = parse_private_key("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")?;
//! let contracts = Contracts {
//!     ledger: parse_address("--ledger", "0x5FbDB2315678afecb367f032d93F642f64180aa3")?,
//!     serving: parse_address("--serving", "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512")?,
//! };
//! let chain = Chain::connect("http://127.0.0.1:8545", contracts, Some(key))?;
//! chain.create_account(parse_amount("3")?, "").await?;
//! for service in chain.list_services().await? {
//!     println!("{} {} {:?}", service.provider, service.url, service.models);
//! }
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod amount;
pub mod api;
pub mod attest;
pub mod chain;
pub mod cli;
pub mod confidential;
pub mod config;
pub mod error;
pub mod estimate;
pub mod evaluate;
pub mod flow;
pub mod funds;
pub mod gateway;
pub mod model;
pub mod progress;
pub mod report;
pub mod storage;
pub mod tls;
pub mod zgs;

pub use error::{ClientError, Result};
