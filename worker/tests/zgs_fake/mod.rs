//! FAKE 0G Storage node for tests (no real storage node can run here): an in-process axum server
//! speaking the node's JSON-RPC (`zgs_getFileInfo`, `zgs_downloadSegmentWithProof`,
//! `zgs_uploadSegmentsByTxSeq`) and the indexer's `indexer_getShardedNodes`, over files it keeps in
//! a temporary directory. The proofs it serves are built by the worker's `SegmentTree` and checked
//! by `protocol`'s verifier on both sides; segments it receives are checked the same way, and a
//! file is finalized only when its bytes give the submitted root. It learns of Flow submissions by
//! watching the Flow stand-in on a real anvil ([`watch_flow`], `solidity/FlowStandIn.sol`), as a
//! real node watches the Flow contract. Shared by `storage_zgs.rs` and `deliver_zgs.rs`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use alloy::primitives::{Address, B256, U256, keccak256};
use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use sealtune_protocol::storage::{SEGMENT_SIZE, SegmentWithProof};
use sealtune_worker::storage::SegmentTree;

/// How the fixture node misbehaves.
#[derive(Clone, Copy, Default)]
pub enum Fault {
    #[default]
    Honest,
    /// Flip a byte of this segment's data.
    TamperData(u64),
    /// Serve segment 0 whatever is asked.
    WrongIndex,
    /// Claim another file size.
    WrongSize,
}

struct FileEntry {
    path: PathBuf,
    tree: SegmentTree,
    seq: u64,
    finalized: bool,
    received: Vec<bool>,
}

#[derive(Default)]
struct NodeState {
    files: HashMap<B256, FileEntry>,
    fault: Fault,
    segment_calls: u64,
}

#[derive(Clone)]
pub struct Node {
    state: Arc<Mutex<NodeState>>,
    dir: Arc<tempfile::TempDir>,
    url: Arc<Mutex<String>>,
}

impl Node {
    /// Serves `data` as a finalized file.
    pub fn serve(&self, data: &[u8]) -> B256 {
        let path = self.dir.path().join(format!("{}", keccak256(data)));
        std::fs::write(&path, data).unwrap();
        let tree = SegmentTree::from_file(&path).unwrap();
        let root = tree.root();
        let segs = tree.layout().segments() as usize;
        let seq = self.state.lock().unwrap().files.len() as u64;
        self.state.lock().unwrap().files.insert(
            root,
            FileEntry {
                path,
                tree,
                seq,
                finalized: true,
                received: vec![true; segs],
            },
        );
        root
    }

    /// What the node learns from a Flow submission: a file of `size` bytes with this root,
    /// segments still to come.
    pub fn expect(&self, root: B256, size: u64, seq: u64) {
        let path = self.dir.path().join(format!("upload-{root}"));
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(size).unwrap();
        let segs = size.div_ceil(SEGMENT_SIZE as u64) as usize;
        // The tree is only used for serving once finalized; rebuilt then.
        let tree = SegmentTree::from_file(&path).unwrap();
        // A file the node has already (submitted again) keeps what it received.
        self.state
            .lock()
            .unwrap()
            .files
            .entry(root)
            .or_insert(FileEntry {
                path,
                tree,
                seq,
                finalized: false,
                received: vec![false; segs],
            });
    }

    pub fn set_fault(&self, fault: Fault) {
        self.state.lock().unwrap().fault = fault;
    }

    pub fn segment_calls(&self) -> u64 {
        self.state.lock().unwrap().segment_calls
    }
}

fn rpc_error(id: &serde_json::Value, msg: &str) -> Json<serde_json::Value> {
    Json(serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": msg}}))
}

async fn rpc(
    State(node): State<Node>,
    Json(req): Json<serde_json::Value>,
) -> Json<serde_json::Value> {
    let id = req["id"].clone();
    let params = req["params"].clone();
    let ok = |result: serde_json::Value| {
        Json(serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result}))
    };
    match req["method"].as_str().unwrap_or_default() {
        "indexer_getShardedNodes" => {
            let url = node.url.lock().unwrap().clone();
            ok(
                serde_json::json!({"trusted": [{"url": url, "config": {"numShard": 1, "shardId": 0}}], "discovered": []}),
            )
        }
        "zgs_getFileInfo" => {
            let root: B256 = params[0].as_str().unwrap().parse().unwrap();
            let st = node.state.lock().unwrap();
            match st.files.get(&root) {
                None => ok(serde_json::Value::Null),
                Some(f) => ok(serde_json::json!({
                    "tx": {
                        "streamIds": [], "data": "0x", "dataMerkleRoot": root.to_string(),
                        "merkleNodes": [], "startEntryIndex": 0, "size": f.tree.layout().size(), "seq": f.seq,
                    },
                    "finalized": f.finalized, "isCached": false,
                    "uploadedSegNum": f.received.iter().filter(|r| **r).count(),
                })),
            }
        }
        "zgs_downloadSegmentWithProof" => {
            let root: B256 = params[0].as_str().unwrap().parse().unwrap();
            let asked = params[1].as_u64().unwrap();
            let mut st = node.state.lock().unwrap();
            st.segment_calls += 1;
            let fault = st.fault;
            let Some(f) = st.files.get(&root).filter(|f| f.finalized) else {
                return ok(serde_json::Value::Null);
            };
            let index = if matches!(fault, Fault::WrongIndex) {
                0
            } else {
                asked
            };
            let mut file = std::fs::File::open(&f.path).unwrap();
            let mut seg = f.tree.segment(&mut file, &f.path, index).unwrap();
            match fault {
                Fault::TamperData(i) if i == asked => {
                    let mut data = base64::engine::general_purpose::STANDARD
                        .decode(seg["data"].as_str().unwrap())
                        .unwrap();
                    data[7] ^= 1;
                    seg["data"] = base64::engine::general_purpose::STANDARD
                        .encode(data)
                        .into();
                }
                Fault::WrongSize => seg["fileSize"] = (f.tree.layout().size() + 1).into(),
                _ => {}
            }
            ok(seg)
        }
        "zgs_uploadSegmentsByTxSeq" => {
            let seq = params[1].as_u64().unwrap();
            let mut st = node.state.lock().unwrap();
            let Some((root, f)) = st.files.iter_mut().find(|(_, f)| f.seq == seq) else {
                return rpc_error(&id, "unknown tx seq");
            };
            let root = *root;
            for seg in params[0].as_array().unwrap() {
                let seg = SegmentWithProof::from_json(seg.to_string().as_bytes()).unwrap();
                let Ok(data) = seg.verify(root) else {
                    return rpc_error(&id, "invalid segment proof");
                };
                use std::io::{Seek, SeekFrom, Write};
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&f.path)
                    .unwrap();
                file.seek(SeekFrom::Start(seg.index * SEGMENT_SIZE as u64))
                    .unwrap();
                file.write_all(data).unwrap();
                f.received[seg.index as usize] = true;
            }
            if f.received.iter().all(|r| *r) {
                f.tree = SegmentTree::from_file(&f.path).unwrap();
                assert_eq!(
                    f.tree.root(),
                    root,
                    "the uploaded file has the submitted root"
                );
                f.finalized = true;
            }
            ok(serde_json::Value::Null)
        }
        other => rpc_error(&id, &format!("method {other} not found")),
    }
}

/// Starts a fake storage node; returns it and its URL.
pub async fn zgs_fixture_node() -> (Node, String) {
    let node = Node {
        state: Arc::default(),
        dir: Arc::new(tempfile::tempdir().unwrap()),
        url: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    *node.url.lock().unwrap() = url.clone();
    let app = axum::Router::new()
        .route("/", axum::routing::post(rpc))
        .with_state(node.clone())
        .layer(axum::extract::DefaultBodyLimit::max(64 << 20));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (node, url)
}

alloy::sol! {
    /// The Flow stand-in's views (solidity/FlowStandIn.sol).
    #[sol(rpc)]
    interface FlowStandIn {
        function submissions() external view returns (uint256);
        function lastLength() external view returns (uint256);
        function lastNodes() external view returns (uint256);
        function lastSubmitter() external view returns (address);
        function lastWasLegacy() external view returns (bool);
        function rootOf(uint256 seq) external view returns (bytes32);
        function lengthOf(uint256 seq) external view returns (uint256);
    }
}

/// The stand-in market's price per 256-byte sector (wei).
pub const PRICE_PER_SECTOR: u64 = 1_000_000_000;

async fn deploy(provider: &alloy::providers::DynProvider, code: &[u8], arg: B256) -> Address {
    use alloy::network::TransactionBuilder as _;
    use alloy::providers::Provider as _;
    let tx = alloy::rpc::types::TransactionRequest::default()
        .with_deploy_code([code, arg.as_slice()].concat());
    let receipt = provider
        .send_transaction(tx)
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    receipt.contract_address.unwrap()
}

/// Deploys the market stand-in and the Flow stand-in `contract` (`FlowWithSubmitterStandIn` or
/// `FlowLegacyStandIn`) from `provider`'s wallet; returns the Flow stand-in's address.
pub async fn deploy_flow(provider: &alloy::providers::DynProvider, contract: &str) -> Address {
    let compiled = sealtune_e2e::compile_solidity(
        "FlowStandIn.sol",
        include_str!("../solidity/FlowStandIn.sol"),
    );
    let market = deploy(
        provider,
        &compiled["MarketStandIn"].bytecode,
        U256::from(PRICE_PER_SECTOR).into(),
    )
    .await;
    deploy(provider, &compiled[contract].bytecode, market.into_word()).await
}

/// Makes `node` learn every Flow submission to the stand-in at `flow` (root, length, sequence), as
/// a real node follows the Flow contract, `lag` after it first sees it mined (real nodes follow the
/// chain some blocks behind); runs until the test ends.
pub fn watch_flow(
    node: &Node,
    provider: alloy::providers::DynProvider,
    flow: Address,
    lag: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    let node = node.clone();
    tokio::spawn(async move {
        let standin = FlowStandIn::new(flow, &provider);
        let mut seen = 0u64;
        loop {
            let count: u64 = standin
                .submissions()
                .call()
                .await
                .map(|c| c.to())
                .unwrap_or(seen);
            if seen < count {
                tokio::time::sleep(lag).await;
            }
            while seen < count {
                let root = standin.rootOf(U256::from(seen)).call().await.unwrap();
                let len: u64 = standin
                    .lengthOf(U256::from(seen))
                    .call()
                    .await
                    .unwrap()
                    .to();
                node.expect(root, len, seen);
                seen += 1;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
}
