//! Benchmark `seal` (see BENCHMARKS.md). To be written with the protocol issue.
fn main() {}
