//! Shared helpers: real fixtures are read from `$SEALTUNE_FIXTURES` (default `<repo>/../shared/fixtures`),
//! never copied into the repository.
#![allow(dead_code)]

use std::path::PathBuf;

/// Where the fixtures live.
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("SEALTUNE_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
    }
}

/// Read a fixture, failing the test with a message saying where to put it.
pub fn fixture(rel: &str) -> Vec<u8> {
    let path = fixtures_dir().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "fixture {rel} missing at {} ({e}): put the shared fixtures (see shared/fixtures/tdx/README.md) \
             there or point SEALTUNE_FIXTURES at their directory",
            path.display()
        )
    })
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
