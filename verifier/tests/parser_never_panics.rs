//! The quote parser reads untrusted bytes: random and mutated inputs give errors, never panics.
mod common;

use proptest::prelude::*;
use sealtune_verifier::event_log::parse_event_log;
use sealtune_verifier::pck::parse_pck_chain;
use sealtune_verifier::quote::ParsedQuote;

fn samples() -> Vec<Vec<u8>> {
    ["tdx/tdx_quote", "tdx/tdx_quote_outdated", "tdx/sgx_quote"]
        .iter()
        .map(|p| common::fixture(p))
        .collect()
}

fn exercise(bytes: &[u8]) {
    if let Ok(q) = ParsedQuote::parse(bytes) {
        let _ = q.verify_signature(bytes);
        let _ = q.verify_qe_binding();
        let _ = parse_pck_chain(&q.cert_data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..6000)) {
        exercise(&bytes);
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in 0usize..3,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut q = samples()[which].clone();
        for (at, v) in flips {
            let i = at.index(q.len());
            q[i] = v;
        }
        if truncate {
            q.truncate(cut.index(q.len()));
        }
        exercise(&q);
    }

    #[test]
    fn mutated_length_fields_never_panic(which in 0usize..3, field in 0usize..6, value in any::<u32>()) {
        let mut q = samples()[which].clone();
        let parsed = ParsedQuote::parse(&q).unwrap();
        // signature data length, certification data length, QE auth length, PCK data length, v5 body size.
        let sig_len_at = parsed.signed_len;
        let offsets = [sig_len_at, sig_len_at + 4 + 128 + 2, sig_len_at + 4 + 128 + 6 + 384 + 64, 48 + 2, 0, 4];
        let at = offsets[field];
        q[at..at + 4].copy_from_slice(&value.to_le_bytes());
        exercise(&q);
    }

    #[test]
    fn random_event_logs_never_panic(s in ".{0,400}") {
        let _ = parse_event_log(&s);
    }
}
