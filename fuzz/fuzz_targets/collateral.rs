//! Fuzz collateral JSON (what a PCCS, a cache file or `--collateral` supplies): parsing, then DCAP
//! verification of the real `tdx_quote` with it, which walks dcap-qvl through the TCB info, QE
//! identity, CRLs and certificate chains the fuzzed JSON carries. Never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sealtune_verifier::dcap::{TcbPolicy, parse_collateral, verify_dcap};

const QUOTE: &[u8] = include_bytes!("../../tests/fixtures/tdx/tdx_quote");
/// `tdx_quote`'s collateral verifies at this time (tests/fixtures/README.md).
const AT: u64 = 1_750_332_747;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = parse_collateral(data) {
        let _ = verify_dcap(QUOTE, &c, AT, &TcbPolicy::default(), None);
    }
});
