//! The 0G Storage network client against the fake storage node of `zgs_fake` (an in-process
//! server speaking the node's JSON-RPC: no real storage node can run here). Uploads submit to
//! stand-ins of the Flow and market contracts on a real anvil (`solidity/FlowStandIn.sol`, both
//! `submit` ABIs, the storage fee checked on chain), then send every segment to the fake node.

mod zgs_fake;

use std::path::Path;

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::sol_types::SolCall as _;
use sealtune_protocol::storage::{SEGMENT_SIZE, SegmentWithProof, root_hash};
use sealtune_worker::storage::{
    SegmentTree, StorageConfig, StorageError, Store, SubmitAbi, ZgStorageConfig, ZgsClient,
    storage_fee, submit_calldata,
};
use zgs_fake::{Fault, FlowStandIn, PRICE_PER_SECTOR, deploy_flow, watch_flow, zgs_fixture_node};

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn zg(nodes: Vec<String>) -> ZgStorageConfig {
    let mut z: ZgStorageConfig = toml::from_str("").unwrap();
    z.nodes = nodes;
    z
}

fn store_with(dir: &Path, zg: ZgStorageConfig) -> Store {
    let cfg = StorageConfig {
        zg: Some(zg),
        ..StorageConfig::default()
    };
    Store::open(&cfg, dir).unwrap()
}

fn objects(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("store/objects"))
        .unwrap()
        .count()
}

#[test]
fn segment_tree_matches_the_protocol_root_and_its_proofs_verify() {
    let dir = tempfile::tempdir().unwrap();
    for len in [
        1usize,
        256,
        257,
        17 * 256,
        262_144,
        262_145,
        1_000_000,
        4 * 1024 * 1024 + 1,
        5_000_000,
    ] {
        let data = pattern(len);
        let p = dir.path().join(format!("f{len}"));
        std::fs::write(&p, &data).unwrap();
        let tree = SegmentTree::from_file(&p).unwrap();
        assert_eq!(tree.root(), root_hash(&data).unwrap().root(), "{len} bytes");
        let mut f = std::fs::File::open(&p).unwrap();
        for i in 0..tree.layout().segments() {
            // `segment` checks its own proof with protocol's verifier; check the JSON too.
            let json = tree.segment(&mut f, &p, i).unwrap();
            let seg = SegmentWithProof::from_json(json.to_string().as_bytes()).unwrap();
            let start = i as usize * SEGMENT_SIZE;
            let end = (start + SEGMENT_SIZE).min(len);
            assert_eq!(
                seg.verify(tree.root()).unwrap(),
                &data[start..end],
                "{len} bytes, segment {i}"
            );
        }
    }
}

#[tokio::test]
async fn fetch_downloads_verifies_and_indexes_a_network_file() {
    let (node, url) = zgs_fixture_node().await;
    let data = pattern(1_000_000);
    let root = node.serve(&data);
    let dir = tempfile::tempdir().unwrap();
    let s = store_with(dir.path(), zg(vec![url]));
    let work = dir.path().join("work");
    let path = s.fetch(&root, &work).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert_eq!(s.path_of(&root), Some(path.clone()));
    assert_eq!(s.path_of(&keccak256(&data)), Some(path.clone()));
    assert_eq!(node.segment_calls(), 4);
    // Now local: no second download, and nothing left in the staging directory.
    assert_eq!(s.fetch(&root, &work).await.unwrap(), path);
    assert_eq!(node.segment_calls(), 4);
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
}

#[tokio::test]
async fn a_tampered_segment_is_rejected_and_nothing_is_kept() {
    let (node, url) = zgs_fixture_node().await;
    let root = node.serve(&pattern(700_000));
    node.set_fault(Fault::TamperData(1));
    let dir = tempfile::tempdir().unwrap();
    let s = store_with(dir.path(), zg(vec![url]));
    let work = dir.path().join("work");
    let err = s.fetch(&root, &work).await.unwrap_err();
    assert!(matches!(err, StorageError::Verification(_)), "{err}");
    assert!(err.to_string().contains("segment 1"), "{err}");
    assert_eq!(objects(dir.path()), 0);
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
    assert_eq!(s.path_of(&root), None);
}

#[tokio::test]
async fn a_tampering_node_is_skipped_for_an_honest_one() {
    let (bad, bad_url) = zgs_fixture_node().await;
    let (good, good_url) = zgs_fixture_node().await;
    let data = pattern(600_000);
    let root = bad.serve(&data);
    assert_eq!(good.serve(&data), root);
    bad.set_fault(Fault::TamperData(2));
    let dir = tempfile::tempdir().unwrap();
    let s = store_with(dir.path(), zg(vec![bad_url, good_url]));
    let path = s.fetch(&root, &dir.path().join("work")).await.unwrap();
    assert_eq!(std::fs::read(path).unwrap(), data);
    assert_eq!(bad.segment_calls(), 3);
    assert_eq!(
        good.segment_calls(),
        1,
        "only the tampered segment came from the honest node"
    );
}

#[tokio::test]
async fn wrong_index_or_file_size_is_rejected() {
    for fault in [Fault::WrongIndex, Fault::WrongSize] {
        let (node, url) = zgs_fixture_node().await;
        let root = node.serve(&pattern(300_000));
        node.set_fault(fault);
        let dir = tempfile::tempdir().unwrap();
        let s = store_with(dir.path(), zg(vec![url]));
        let err = s.fetch(&root, &dir.path().join("w")).await.unwrap_err();
        assert!(matches!(err, StorageError::Verification(_)), "{err}");
        assert_eq!(objects(dir.path()), 0);
    }
}

#[tokio::test]
async fn unknown_root_is_not_found_naming_the_store_and_the_nodes() {
    let (_node, url) = zgs_fixture_node().await;
    let dir = tempfile::tempdir().unwrap();
    let s = store_with(dir.path(), zg(vec![url.clone()]));
    let err = s
        .fetch(&B256::repeat_byte(7), &dir.path().join("w"))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StorageError::NotFound(_)), "{msg}");
    assert!(msg.contains("local store") && msg.contains(&url), "{msg}");
}

#[tokio::test]
async fn download_over_the_limit_is_refused() {
    let (node, url) = zgs_fixture_node().await;
    let root = node.serve(&pattern(300_000));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = zg(vec![url]);
    cfg.max_download = 299_999;
    let s = store_with(dir.path(), cfg);
    let err = s.fetch(&root, &dir.path().join("w")).await.unwrap_err();
    assert!(
        matches!(err, StorageError::TooLarge { len: 300_000, .. }),
        "{err}"
    );
    assert_eq!(node.segment_calls(), 0);
}

#[tokio::test]
async fn nodes_are_discovered_through_an_indexer() {
    let (node, url) = zgs_fixture_node().await;
    let data = pattern(5000);
    let root = node.serve(&data);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = zg(vec![]);
    cfg.indexer = Some(url);
    let s = store_with(dir.path(), cfg);
    let path = s.fetch(&root, &dir.path().join("w")).await.unwrap();
    assert_eq!(std::fs::read(path).unwrap(), data);
}

#[tokio::test]
async fn uploaded_segments_reassemble_on_the_node_and_download_back() {
    let (node, url) = zgs_fixture_node().await;
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(3 * SEGMENT_SIZE + 12_345);
    let src = dir.path().join("deliverable.bin");
    std::fs::write(&src, &data).unwrap();
    let tree = SegmentTree::from_file(&src).unwrap();
    // The node has seen the Flow submission (tx seq 42); segments follow.
    node.expect(tree.root(), data.len() as u64, 42);
    let client = ZgsClient::new(vec![url.clone()], std::time::Duration::from_secs(10)).unwrap();
    let before = client.file_info(&tree.root(), true).await.unwrap().unwrap();
    assert!(!before.finalized);
    client.upload_segments(&tree, &src, 42).await.unwrap();
    let after = client.file_info(&tree.root(), true).await.unwrap().unwrap();
    assert!(after.finalized);
    assert_eq!(after.tx.size, data.len() as u64);
    // Another worker downloads it back through the verified path.
    let other = tempfile::tempdir().unwrap();
    let s = store_with(other.path(), zg(vec![url]));
    let path = s
        .fetch(&tree.root(), &other.path().join("w"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(path).unwrap(), data);
}

#[test]
fn flow_submit_calldata_for_both_abis() {
    let data = pattern(17 * 256);
    let tree = root_hash(&data).unwrap();
    let submitter = Address::repeat_byte(0x11);
    let legacy = submit_calldata(&tree, SubmitAbi::Legacy, submitter);
    assert_eq!(&legacy[..4], &[0xef, 0x3e, 0x12, 0xdc]);
    let newer = submit_calldata(&tree, SubmitAbi::WithSubmitter, submitter);
    assert_eq!(&newer[..4], &[0xbc, 0x8c, 0x11, 0xf8]);
    assert_eq!(submit_calldata(&tree, SubmitAbi::Auto, submitter), newer);
    // Decode back with the same ABI: length, nodes (16 + 2 chunks), submitter.
    alloy::sol! {
        struct N { bytes32 root; uint256 height; }
        struct D { uint256 length; bytes tags; N[] nodes; }
        struct S { D data; address submitter; }
        function submit(S submission);
    }
    let call = submitCall::abi_decode(&newer).unwrap();
    assert_eq!(call.submission.submitter, submitter);
    assert_eq!(call.submission.data.length, U256::from(17 * 256));
    let heights: Vec<U256> = call
        .submission
        .data
        .nodes
        .iter()
        .map(|n| n.height)
        .collect();
    assert_eq!(heights, vec![U256::from(4), U256::from(1)]);
    assert_eq!(
        call.submission.data.nodes[0].root,
        tree.submission_nodes()[0].root
    );
    // Fee: price × (16 + 2) sectors.
    assert_eq!(storage_fee(&tree, U256::from(10)), U256::from(180));
    let abi: SubmitAbi = serde_json::from_str("\"with-submitter\"").unwrap();
    assert_eq!(abi, SubmitAbi::WithSubmitter);
}

// ---------------------------------------------------------------------------------------------
// Upload: Flow submission on a real chain (anvil) to test stand-ins of the Flow and market
// contracts (tests/solidity/FlowStandIn.sol: the real contracts cannot be deployed here), then
// every segment to the fixture node, which learns of the submission by watching the stand-in as a
// real node watches the Flow contract.

/// Uploads a 3.2-segment file through `Store::upload_to_0g` against a Flow stand-in (`contract`)
/// and checks the chain and the node; returns whether the legacy ABI was used, and the submitter
/// the stand-in recorded.
async fn upload_through_flow(contract: &str) -> (bool, Address) {
    use alloy::providers::Provider as _;
    let anvil = sealtune_e2e::Anvil::start(16602);
    let signer = sealtune_e2e::signer(0);
    let me = signer.address();
    let provider = anvil.wallet(&signer);
    let flow = deploy_flow(&provider, contract).await;

    let (node, url) = zgs_fixture_node().await;
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(3 * SEGMENT_SIZE + 54_321);
    let mut cfg = zg(vec![url.clone()]);
    cfg.flow_contract = Some(flow);
    let s = store_with(dir.path(), cfg);
    let stored = s.put_upload(data.as_slice(), 64 << 20).await.unwrap();
    let tree = sealtune_protocol::storage::root_hash(&data).unwrap();

    // The node watches the Flow stand-in and learns each new submission (root and size from the
    // chain).
    let watcher = watch_flow(&node, provider.clone(), flow, std::time::Duration::ZERO);
    let root = s.upload_to_0g(&stored.keccak, &provider, me).await.unwrap();
    assert_eq!(root, tree.root(), "the 0G root of the file");
    assert_eq!(
        s.path_of(&root),
        Some(stored.path.clone()),
        "indexed by root"
    );

    let standin = FlowStandIn::new(flow, &provider);
    assert_eq!(standin.submissions().call().await.unwrap(), U256::from(1));
    assert_eq!(
        standin.rootOf(U256::ZERO).call().await.unwrap(),
        root,
        "the stand-in folds the submission nodes into the file's root"
    );
    assert_eq!(
        standin.lastLength().call().await.unwrap(),
        U256::from(data.len())
    );
    assert_eq!(
        standin.lastNodes().call().await.unwrap(),
        U256::from(tree.submission_nodes().len())
    );
    // The stand-in required value == price × sectors; the balance is what was paid.
    let paid = provider.get_balance(flow).await.unwrap();
    assert_eq!(paid, storage_fee(&tree, U256::from(PRICE_PER_SECTOR)));
    assert!(paid > U256::ZERO);

    // The node got every segment: another worker downloads it through the verified path.
    let other = tempfile::tempdir().unwrap();
    let back = store_with(other.path(), zg(vec![url]))
        .fetch(&root, &other.path().join("w"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(back).unwrap(), data);

    // Uploading again: the network has it finalized, no second submission.
    assert_eq!(
        s.upload_to_0g(&stored.keccak, &provider, me).await.unwrap(),
        root
    );
    assert_eq!(standin.submissions().call().await.unwrap(), U256::from(1));
    watcher.abort();
    (
        standin.lastWasLegacy().call().await.unwrap(),
        standin.lastSubmitter().call().await.unwrap(),
    )
}

#[tokio::test]
async fn upload_submits_to_flow_with_the_newer_abi_and_sends_every_segment() {
    let (legacy, submitter) = upload_through_flow("FlowWithSubmitterStandIn").await;
    assert!(!legacy, "the newer ABI was used");
    let me = sealtune_e2e::signer(0);
    assert_eq!(
        submitter,
        me.address(),
        "the submitter field is the provider"
    );
}

#[tokio::test]
async fn upload_falls_back_to_the_legacy_submit_abi_when_flow_has_only_that() {
    let (legacy, submitter) = upload_through_flow("FlowLegacyStandIn").await;
    assert!(legacy, "Auto fell back to the legacy ABI");
    let me = sealtune_e2e::signer(0);
    assert_eq!(submitter, me.address());
}

#[tokio::test]
async fn upload_without_a_flow_contract_is_a_config_error_and_sends_nothing() {
    let (node, url) = zgs_fixture_node().await;
    let dir = tempfile::tempdir().unwrap();
    let s = store_with(dir.path(), zg(vec![url]));
    let stored = s.put_upload(pattern(1000).as_slice(), 4096).await.unwrap();
    let provider = sealtune_e2e::chain::reader("http://127.0.0.1:9");
    let err = s
        .upload_to_0g(&stored.keccak, &provider, Address::ZERO)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StorageError::Config(m) if m.contains("flow_contract")),
        "{err}"
    );
    assert_eq!(node.segment_calls(), 0);
}
