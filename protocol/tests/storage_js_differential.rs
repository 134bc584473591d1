//! Differential test: our 0G Storage root hash, submission nodes and segment-proof verification
//! against the official JS SDK (`@0gfoundation/0g-ts-sdk`) on the same files.
//!
//! Needs `node` and the SDK in `<repo>/node_modules` (installed by `scripts/setup`); without them
//! this test fails (it never skips).

use std::path::PathBuf;

use base64::Engine as _;
use sealtune_protocol::{
    B256,
    storage::{ProofError, SEGMENT_SIZE, SegmentWithProof, root_hash, root_hash_file},
};
use serde::Deserialize;

const CHUNK: usize = 256;
const MIB: usize = 1024 * 1024;

#[derive(Debug, Deserialize)]
struct JsFile {
    path: String,
    size: u64,
    root: String,
    nodes: Vec<JsNode>,
    proofs: Vec<JsProof>,
}

#[derive(Debug, Deserialize)]
struct JsNode {
    root: String,
    height: u32,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
struct JsProof {
    lemma: Vec<String>,
    path: Vec<bool>,
}

/// Runs the SDK on `files`; panics with a setup hint when node or the SDK is missing.
fn sdk_describe(files: &[PathBuf]) -> Vec<JsFile> {
    let root = sealtune_e2e::repo_root();
    let node_modules = sealtune_e2e::node_modules();
    let sdk = node_modules.join("@0gfoundation/0g-ts-sdk/package.json");
    assert!(
        sdk.is_file(),
        "the official 0G storage SDK is missing ({}): run scripts/setup",
        sdk.display()
    );
    let script = root.join("protocol/tests/js/storage_root.cjs");
    let output = sealtune_e2e::node(&script)
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `node` ({e}): install it with scripts/setup"));
    assert!(
        output.status.success(),
        "the SDK script failed (run scripts/setup if a module is missing):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the SDK script prints JSON")
}

/// Deterministic non-trivial content (xorshift), so no two chunks are alike.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Sizes covering the rules of PROTOCOL.md §6.
fn sizes() -> Vec<usize> {
    vec![
        1,
        255,
        256,              // one chunk
        257,              // two chunks
        3 * CHUNK + 1,    // 4 chunks: power of two
        5 * CHUNK,        // fewer than 16 chunks, not a power of two
        11 * CHUNK + 17,  // 12 chunks: ditto
        15 * CHUNK,       // 15 chunks
        16 * CHUNK,       // 16 chunks: power of two
        17 * CHUNK,       // 17 chunks: pad to 18
        33 * CHUNK - 3,   // 33 chunks: pad to 36
        1000 * CHUNK,     // pad to 1024
        1023 * CHUNK + 1, // 1024 chunks, last one partial
        SEGMENT_SIZE - 1, // one segment less one byte
        SEGMENT_SIZE,     // one segment
        SEGMENT_SIZE + 1, // pad to 1152 chunks: partial padded segment
        2 * SEGMENT_SIZE, // power of two segments
        3 * SEGMENT_SIZE + 5,
        4 * MIB,       // 16 segments
        4 * MIB + 1,   // padding adds whole segments (16385 -> 18432 chunks)
        5 * MIB + 123, // a few MiB
        7 * MIB + 12 * CHUNK + 9,
    ]
}

fn b256(hex: &str) -> B256 {
    hex.parse().expect("the SDK prints 32-byte hex")
}

struct Fixture {
    _dir: tempfile::TempDir,
    files: Vec<(PathBuf, Vec<u8>)>,
    sdk: Vec<JsFile>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let files: Vec<(PathBuf, Vec<u8>)> = sizes()
        .into_iter()
        .enumerate()
        .map(|(i, size)| {
            let path = dir.path().join(format!("f{i}-{size}.bin"));
            let data = content(size, i as u64 + 1);
            std::fs::write(&path, &data).expect("write fixture");
            (path, data)
        })
        .collect();
    let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    let sdk = sdk_describe(&paths);
    assert_eq!(sdk.len(), files.len());
    Fixture {
        _dir: dir,
        files,
        sdk,
    }
}

fn segment_json(root: &str, data: &[u8], index: u64, proof: &JsProof, file_size: u64) -> String {
    serde_json::json!({
        "root": root,
        "data": base64::engine::general_purpose::STANDARD.encode(data),
        "index": index,
        "proof": proof,
        "fileSize": file_size,
    })
    .to_string()
}

/// The chunk-aligned bytes a storage node serves for segment `index`.
fn served_segment(data: &[u8], index: usize) -> Vec<u8> {
    let start = index * SEGMENT_SIZE;
    let end = (start + SEGMENT_SIZE).min(data.len());
    let mut seg = data[start..end].to_vec();
    seg.resize(seg.len().div_ceil(CHUNK) * CHUNK, 0);
    seg
}

#[test]
fn root_hash_and_submission_nodes_match_the_official_sdk() {
    let fx = fixture();
    for ((path, data), js) in fx.files.iter().zip(&fx.sdk) {
        assert_eq!(js.path, path.to_string_lossy());
        assert_eq!(js.size, data.len() as u64);
        let ours = root_hash_file(path).expect("hash file");
        assert_eq!(
            ours.root().to_string(),
            js.root,
            "root of {} bytes",
            data.len()
        );
        assert_eq!(ours, root_hash(data).expect("hash bytes"));
        let nodes: Vec<(String, u32)> = ours
            .submission_nodes()
            .iter()
            .map(|n| (n.root.to_string(), n.height))
            .collect();
        let js_nodes: Vec<(String, u32)> = js
            .nodes
            .iter()
            .map(|n| (n.root.clone(), n.height))
            .collect();
        assert_eq!(nodes, js_nodes, "submission nodes of {} bytes", data.len());
        assert_eq!(
            js.proofs.len() as u64,
            ours.layout().padded_segments(),
            "SDK leaves of {} bytes",
            data.len()
        );
    }
}

#[test]
fn sdk_segment_proofs_verify() {
    let fx = fixture();
    for ((_, data), js) in fx.files.iter().zip(&fx.sdk) {
        let segments = data.len().div_ceil(SEGMENT_SIZE);
        for index in 0..segments {
            let served = served_segment(data, index);
            let json = segment_json(&js.root, &served, index as u64, &js.proofs[index], js.size);
            let segment = SegmentWithProof::from_json(json.as_bytes()).expect("parse SDK proof");
            let file_bytes = segment
                .verify(b256(&js.root))
                .unwrap_or_else(|e| panic!("segment {index} of {} bytes: {e}", data.len()));
            let end = ((index + 1) * SEGMENT_SIZE).min(data.len());
            assert_eq!(file_bytes, &data[index * SEGMENT_SIZE..end]);
        }
    }
}

#[test]
fn tampered_sdk_proofs_are_rejected() {
    let fx = fixture();
    let mut checked_siblings = 0;
    for ((_, data), js) in fx.files.iter().zip(&fx.sdk) {
        let root = b256(&js.root);
        let segments = data.len().div_ceil(SEGMENT_SIZE);
        for index in 0..segments {
            let served = served_segment(data, index);
            let proof = &js.proofs[index];
            let check = |data: &[u8], index: u64, proof: &JsProof, size: u64| {
                let json = segment_json(&js.root, data, index, proof, size);
                SegmentWithProof::from_json(json.as_bytes())
                    .and_then(|s| s.verify(root).map(|_| ()))
            };

            // A flipped data bit changes the segment root.
            let mut bad = served.clone();
            bad[served.len() / 2] ^= 1;
            assert!(matches!(
                check(&bad, index as u64, proof, js.size),
                Err(ProofError::ContentMismatch)
            ));

            // Data past the end of the file must be zeros too.
            if !served.len().is_multiple_of(SEGMENT_SIZE) || !data.len().is_multiple_of(CHUNK) {
                let mut bad = served.clone();
                if let Some(last) = bad.last_mut() {
                    if !data.len().is_multiple_of(CHUNK) {
                        *last ^= 1;
                    } else {
                        bad.extend_from_slice(&[1; CHUNK]);
                    }
                }
                assert!(check(&bad, index as u64, proof, js.size).is_err());
            }

            // Data shorter than the file's bytes in the segment is rejected.
            let file_bytes = ((index + 1) * SEGMENT_SIZE).min(data.len()) - index * SEGMENT_SIZE;
            assert!(matches!(
                check(&served[..file_bytes - 1], index as u64, proof, js.size),
                Err(ProofError::DataLength { .. })
            ));

            // Another root.
            let json = segment_json(&js.root, &served, index as u64, proof, js.size);
            let seg = SegmentWithProof::from_json(json.as_bytes()).unwrap();
            assert!(matches!(
                seg.verify(B256::repeat_byte(0xee)),
                Err(ProofError::RootMismatch { .. })
            ));

            if proof.path.is_empty() {
                continue;
            }
            // Each sibling tampered.
            for i in 1..proof.lemma.len() - 1 {
                let mut bad = proof.clone();
                bad.lemma[i] = B256::repeat_byte(0x11).to_string();
                assert!(matches!(
                    check(&served, index as u64, &bad, js.size),
                    Err(ProofError::HashMismatch)
                ));
                checked_siblings += 1;
            }
            // A flipped path flag.
            let mut bad = proof.clone();
            bad.path[0] = !bad.path[0];
            assert!(matches!(
                check(&served, index as u64, &bad, js.size),
                Err(ProofError::PositionMismatch { .. })
            ));
            // The right proof for another index.
            let other = (index + 1) % segments;
            if other != index {
                assert!(check(&served, other as u64, proof, js.size).is_err());
            }
            // A dropped level (a one-level proof then has the wrong shape).
            let mut bad = proof.clone();
            bad.path.pop();
            bad.lemma.remove(1);
            assert!(matches!(
                check(&served, index as u64, &bad, js.size),
                Err(ProofError::PositionMismatch { .. } | ProofError::Format { .. })
            ));
            // A malformed shape.
            let mut bad = proof.clone();
            bad.lemma.pop();
            assert!(matches!(
                check(&served, index as u64, &bad, js.size),
                Err(ProofError::Format { .. })
            ));
        }
    }
    assert!(checked_siblings > 50);
}
