//! # sealtune-client
//!
//! The customer library behind the `sealtune` CLI.
#![deny(missing_docs)]
