//! Fuzz the deliverable opener: any bytes give a typed error (or, for a genuine file, the plaintext),
//! never a panic, and nothing is written unless every chunk authenticated.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sealtune_protocol::Address;
use sealtune_protocol::deliverable::{self, ChunkLen, DeliverableKey};
use std::io::Cursor;

fuzz_target!(|data: &[u8]| {
    // First byte picks a small chunk size so inputs can span many chunks.
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let Some(chunk_len) = ChunkLen::for_tests(usize::from(chunk) + 1) else {
        return;
    };
    let mut out = Vec::new();
    let key = DeliverableKey::from_bytes([7; 32]);
    let _ = deliverable::tag_digest(&mut Cursor::new(rest), chunk_len);
    let result = deliverable::open(
        &mut Cursor::new(rest),
        &mut out,
        &key,
        Address::ZERO,
        chunk_len,
    );
    assert!(result.is_err(), "a forged deliverable opened");
});
