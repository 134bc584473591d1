//! # sealtune-verifier
//!
//! Checks a provider's whole chain of trust: TDX quote (DCAP), event log and RTMRs, measurement
//! policy, report_data → TEE signer binding, settlement and deliverable signatures.
//!
//! Every quote is read twice: by `dcap-qvl` ([`dcap`]: signatures, PCK chain to Intel's root, CRLs,
//! TCB level under a [`dcap::TcbPolicy`]) and by this crate's own parser ([`quote`], [`pck`]), which
//! also checks the quote signature with `p256`; [`crosscheck`] compares the two readings field by
//! field. [`report_data`] checks the signer binding (PROTOCOL.md §5), [`event_log`] replays the dstack
//! event log into RTMR0–3. [`verify::verify_document`] runs them all and reports link by link.
//! Time is always an input.
//!
//! ```no_run
//! use sealtune_verifier::dcap::parse_collateral;
//! use sealtune_verifier::verify::{QuoteDocument, VerifyOptions, verify_document};
//!
//! let doc = QuoteDocument::from_bytes(&std::fs::read("getquote.json")?)?;
//! let opts = VerifyOptions {
//!     now: 1_750_332_747,
//!     collateral: Some(parse_collateral(&std::fs::read("collateral.json")?)?),
//!     ..Default::default()
//! };
//! let report = verify_document(&doc, &opts);
//! print!("{}", report.render_human());
//! assert!(report.verified);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
// Everything here reads untrusted bytes: no panicking shortcuts (unwrap, expect, indexing, panics,
// unchecked arithmetic, string slicing) outside tests. Crate attributes rather than a `[lints]` table:
// `[lints]` cannot exempt the `#[cfg(test)]` modules, and the integration tests use them freely.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::unreachable,
        clippy::arithmetic_side_effects,
        clippy::string_slice,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod chain;
pub mod cli;
pub mod collateral;
pub mod crosscheck;
pub mod dcap;
pub mod deliverable;
pub mod evaluation_report;
pub mod event_log;
pub mod gpu;
pub mod pck;
pub mod policy;
pub mod quote;
pub mod report_data;
pub mod settlement;
pub mod tls_key;
pub mod training_report;
pub mod verify;
