//! Property tests of the 0G Storage module: untrusted proofs never panic, streaming equals one-shot.

use proptest::prelude::*;
use sealtune_protocol::{
    B256,
    storage::{
        RootHasher, SEGMENT_SIZE, SegmentProof, SegmentWithProof, root_hash, root_hash_reader,
    },
};

/// A reader that hands out its bytes in the given piece sizes (cycled), like a slow socket.
struct Pieces<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    next: usize,
}

impl std::io::Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = self.sizes[self.next % self.sizes.len()].max(1);
        self.next += 1;
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let hash = prop_oneof![
        any::<[u8; 32]>().prop_map(|b| B256::from(b).to_string()),
        "(0x)?[0-9a-fA-Fg]{0,70}",
    ];
    (
        hash.clone(),
        prop_oneof![
            "[A-Za-z0-9+/=]{0,400}",
            proptest::collection::vec(any::<u8>(), 0..600).prop_map(|d| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode(d)
            })
        ],
        any::<u64>(),
        proptest::collection::vec(hash, 0..8),
        proptest::collection::vec(any::<bool>(), 0..8),
        prop_oneof![0u64..2_000_000, any::<u64>()],
    )
        .prop_map(|(root, data, index, lemma, path, size)| {
            serde_json::json!({
                "root": root, "data": data, "index": index % 16,
                "proof": {"lemma": lemma, "path": path}, "fileSize": size,
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_bytes_never_panic_the_segment_parser(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(segment) = SegmentWithProof::from_json(&bytes) {
            let _ = segment.verify(segment.root);
        }
    }

    #[test]
    fn random_segment_answers_never_panic_and_never_verify(value in json_value()) {
        let json = value.to_string();
        if let Ok(segment) = SegmentWithProof::from_json(json.as_bytes()) {
            // A random proof of random data cannot verify (that would be a keccak collision)
            // unless it is the trivial one-leaf proof of the data's own root.
            if let Ok(bytes) = segment.verify(segment.root) {
                prop_assert!(segment.proof.path().is_empty());
                prop_assert!(bytes.len() as u64 <= segment.file_size);
            }
        }
    }

    #[test]
    fn random_proofs_never_panic_the_verifier(
        lemma in proptest::collection::vec(any::<[u8; 32]>(), 0..70),
        path in proptest::collection::vec(any::<bool>(), 0..70),
        index in any::<u64>(),
        leaves in prop_oneof![0u64..64, any::<u64>()],
        leaf in any::<[u8; 32]>(),
        root in any::<[u8; 32]>(),
    ) {
        let lemma: Vec<B256> = lemma.into_iter().map(B256::from).collect();
        if let Ok(proof) = SegmentProof::new(lemma, path) {
            let _ = proof.verify(B256::from(root), B256::from(leaf), index, leaves);
        }
    }

    #[test]
    fn streaming_equals_one_shot(
        size in prop_oneof![1usize..5_000, 1usize..(3 * SEGMENT_SIZE + 4_000)],
        pieces in proptest::collection::vec(1usize..300_000, 1..6),
        batch in 1usize..4,
        seed in any::<u8>(),
    ) {
        let data: Vec<u8> = (0..size).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
        let one_shot = root_hash(&data).unwrap();

        let reader = Pieces { data: &data, sizes: pieces.clone(), next: 0 };
        prop_assert_eq!(&root_hash_reader(reader).unwrap(), &one_shot);

        let mut hasher = RootHasher::with_batch_segments(batch);
        let mut rest = &data[..];
        for want in pieces.iter().cycle() {
            if rest.is_empty() { break; }
            let (head, tail) = rest.split_at((*want).min(rest.len()));
            hasher.update(head);
            rest = tail;
        }
        prop_assert_eq!(hasher.len(), size as u64);
        prop_assert_eq!(&hasher.finalize().unwrap(), &one_shot);
    }
}
