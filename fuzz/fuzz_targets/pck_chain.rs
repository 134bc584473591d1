//! Fuzz the PCK certificate chain reader (the PEM chain of a quote's certification data): any bytes
//! give the leaf's FMSPC / PCE SVN / CPU SVN / PPID and key, or a typed error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sealtune_verifier::pck::parse_pck_chain;

fuzz_target!(|data: &[u8]| {
    let _ = parse_pck_chain(data);
});
