//! # sealtune-worker
//!
//! The provider service that runs inside a TDX confidential VM: HTTP API ([`api`]), task store
//! ([`store`], SQLite), pipeline ([`pipeline`]: setup → execute → finalize → settle → retention),
//! executor ([`exec`], embedded CPython in a sandboxed child process: per-task uid, seccomp, ...),
//! chain client ([`chain`]), storage ([`storage`]) and attestation ([`attest`]). [`cli`] is the
//! command line; [`config`] the file.
#![deny(missing_docs)]

pub mod api;
pub mod app;
pub mod attest;
pub mod chain;
pub mod cli;
pub mod confidential;
pub mod config;
pub mod config_import;
pub mod exec;
pub mod formats;
pub mod intake;
pub mod measured;
pub mod metrics;
pub mod models;
pub mod parquet_pages;
pub mod pipeline;
pub mod storage;
pub mod store;
pub mod tls;
