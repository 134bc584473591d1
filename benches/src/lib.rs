//! Benchmark harnesses for sealtune (criterion benches live in `benches/benches/`).
#![deny(missing_docs)]

pub mod dataset_gen;
