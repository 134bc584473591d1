//! Fuzz the 0G segment-proof parser and verifier: any bytes give Ok or a typed error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sealtune_protocol::{
    B256,
    storage::{SegmentProof, SegmentWithProof},
};

fuzz_target!(|data: &[u8]| {
    // As JSON from a storage node.
    if let Ok(segment) = SegmentWithProof::from_json(data) {
        let _ = segment.verify(segment.root);
    }
    // As raw proof parts: 32-byte hashes, then path flags, index and leaf count from the tail.
    let (head, tail) = data.split_at(data.len() - data.len() % 32);
    let lemma: Vec<B256> = head.chunks_exact(32).map(B256::from_slice).collect();
    let path: Vec<bool> = tail.iter().map(|b| b & 1 == 1).collect();
    let index = tail.first().copied().unwrap_or(0) as u64;
    let leaves = tail.last().copied().unwrap_or(0) as u64;
    if let (Some(leaf), Some(root)) = (lemma.first().copied(), lemma.last().copied()) {
        if let Ok(proof) = SegmentProof::new(lemma, path) {
            let _ = proof.verify(root, leaf, index, leaves);
        }
    }
});
