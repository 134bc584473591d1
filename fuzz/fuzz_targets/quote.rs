//! Fuzz both readings of a quote: the verifier's own parser (then the quote signature, the QE binding,
//! the PCK chain in the certification data and the QE report signature with its leaf key) and
//! dcap-qvl (with the real `tdx_quote` collateral at a time it is valid). Any bytes give a result or a
//! typed error, never a panic.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sealtune_verifier::dcap::{TcbPolicy, parse_collateral, verify_dcap};
use sealtune_verifier::pck::parse_pck_chain;
use sealtune_verifier::quote::ParsedQuote;

/// `tdx_quote`'s collateral verifies at this time (tests/fixtures/README.md).
const AT: u64 = 1_750_332_747;

fn collateral() -> &'static dcap_qvl::QuoteCollateralV3 {
    static C: OnceLock<dcap_qvl::QuoteCollateralV3> = OnceLock::new();
    C.get_or_init(|| {
        parse_collateral(include_bytes!(
            "../../tests/fixtures/tdx/tdx_quote_collateral.json"
        ))
        .expect("fixture collateral parses")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(q) = ParsedQuote::parse(data) {
        let _ = q.verify_signature(data);
        let _ = q.verify_qe_binding();
        if let Ok(pck) = parse_pck_chain(&q.cert_data) {
            let _ = q.verify_qe_report_signature(&pck.leaf_public_key);
        }
    }
    let _ = verify_dcap(data, collateral(), AT, &TcbPolicy::default(), None);
});
