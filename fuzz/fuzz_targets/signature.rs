//! Fuzz the strict signature parser: any bytes give Ok or a typed error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sealtune_protocol::{keccak256, sig::Signature};

fuzz_target!(|data: &[u8]| {
    if let Ok(sig) = Signature::from_bytes(data) {
        let _ = sig.recover_address(&keccak256(data));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Signature::from_hex(text);
    }
});
