//! Shared helpers: the real fixtures of `tests/fixtures` (through the one harness, `sealtune_e2e`).
// Each test binary uses a part of this module (the re-export included).
#![allow(dead_code, unused_imports)]

#[allow(unused_imports)] // not every test file of the crate uses it
pub use sealtune_e2e::fixtures_dir;

/// Read a fixture (a path relative to `tests/fixtures`), failing the test with where it was looked for.
pub fn fixture(rel: &str) -> Vec<u8> {
    sealtune_e2e::fixture_bytes(rel)
}

/// Collateral fixture, parsed.
pub fn collateral(rel: &str) -> dcap_qvl::QuoteCollateralV3 {
    sealtune_verifier::dcap::parse_collateral(&fixture(rel)).expect("collateral fixture parses")
}

/// `tdx_quote` (v4, TD1.0) verifies UpToDate at this time.
pub const TDX_V4_AT: u64 = 1_750_332_747;
/// Last second of `tdx_quote`'s collateral (the PCK CRL's nextUpdate).
pub const TDX_V4_EXPIRES: u64 = 1_752_919_235;
/// `sgx_quote` is verified at this time.
pub const SGX_AT: u64 = 1_750_334_171;

/// The dstack GetQuote response and its fields.
pub fn dstack_report() -> serde_json::Value {
    serde_json::from_slice(&fixture("tdx/dstack/quote-report.json"))
        .expect("dstack fixture is JSON")
}
/// Inside `tdx_quote_outdated`'s collateral window (one hour after its TCB info was issued).
pub const TDX_V5_OUTDATED_AT: u64 = 1_771_415_931;
