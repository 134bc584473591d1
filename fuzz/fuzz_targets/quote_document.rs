//! Fuzz the whole quote check from its input document: `QuoteDocument::from_bytes` (a GetQuote /
//! `GET /v1/quote` JSON answer, hex or raw quote), then `verify_document` with the real `tdx_quote`
//! collateral, in the provider, SGX-enclave and hardware-only modes, and the report rendered as text
//! and JSON. Never a panic.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sealtune_verifier::dcap::parse_collateral;
use sealtune_verifier::verify::{QuoteDocument, VerifyOptions, verify_document};

fn options() -> &'static VerifyOptions {
    static O: OnceLock<VerifyOptions> = OnceLock::new();
    O.get_or_init(|| VerifyOptions {
        now: 1_750_332_747,
        collateral: Some(
            parse_collateral(include_bytes!(
                "../../tests/fixtures/tdx/tdx_quote_collateral.json"
            ))
            .expect("fixture collateral parses"),
        ),
        ..Default::default()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = QuoteDocument::from_bytes(data) else {
        return;
    };
    let report = verify_document(&doc, options());
    let _ = report.render_human();
    let _ = serde_json::to_string(&report);
});
