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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Settlement files, policy files, quote documents and collateral come from users and servers.
    #[test]
    fn other_untrusted_inputs_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = sealtune_verifier::settlement::parse_verifier_input_json(&bytes);
        let _ = sealtune_verifier::verify::QuoteDocument::from_bytes(&bytes);
        let _ = sealtune_verifier::dcap::parse_collateral(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = sealtune_verifier::policy::Policy::from_toml("fuzz.toml", &text);
        let _ = sealtune_verifier::policy::compose_images(&text);
    }

    /// Policy-shaped TOML with arbitrary values.
    #[test]
    fn policy_values_never_panic(key in "(mrtd|rtmr0|rtmr1|rtmr2)", value in ".{0,120}") {
        let text = format!("[measurements]\n{key} = [{value:?}]\n[tcb]\naccepted_statuses = [{value:?}]\n");
        let _ = sealtune_verifier::policy::Policy::from_toml("fuzz.toml", &text);
    }
}
