//! A task delivered through 0G Storage (`[storage.zg]` with a Flow contract) by the real worker
//! binary, killed (`SIGKILL`) at each step of the upload and restarted: the Flow submission is paid
//! once per deliverable, the deliverable is announced with the 0G root of the sealed file, and the
//! customer (the `sealtune-client` library) downloads it from the storage node, every segment
//! verified, then acknowledges, is settled and decrypts. A node serving a tampered segment makes
//! `0g-storage` fail and `auto` fall back to the provider's TEE, the same root checked.
//!
//! The storage node and the Flow contract are FAKES (`zgs_fake`, `solidity/FlowStandIn.sol`: the 0G
//! network cannot exist here); the chain (anvil), the serving contracts, the worker, its SQLite
//! store and its embedded Python are real.

mod zgs_fake;

use std::time::Duration;

use alloy::primitives::{B256, U256};
use alloy::providers::Provider as _;
use sealtune_client::chain::{Chain, Contracts};
use sealtune_client::error::ClientError;
use sealtune_client::flow::Client;
use sealtune_client::progress::NoProgress;
use sealtune_client::zgs::{DownloadMethod, DownloadSource, StorageNodes};
use sealtune_e2e::chain::*;
use sealtune_e2e::stack::*;
use sealtune_protocol::deliverable::RootKind;
use sealtune_protocol::storage::root_hash_file;
use sealtune_worker::storage::storage_fee;
use zgs_fake::{Fault, FlowStandIn, PRICE_PER_SECTOR, deploy_flow, watch_flow, zgs_fixture_node};

fn customer(stack: &Stack, who: usize, node: &str) -> Client {
    let chain = Chain::connect(
        &stack.anvil.endpoint,
        Contracts {
            ledger: stack.deployment.ledger,
            serving: stack.deployment.serving,
        },
        Some(signer(who)),
    )
    .unwrap();
    let mut c = Client::new(chain).unwrap();
    c.storage = StorageNodes {
        nodes: vec![node.to_owned()],
        indexer: None,
    };
    c
}

fn now_ms() -> u64 {
    now() * 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_every_upload_step_the_model_reaches_0g_storage_once_and_downloads_from_there() {
    let mut stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions::default(),
    )
    .await;
    let deployer = stack.anvil.wallet(&signer(0));
    let flow = deploy_flow(&deployer, "FlowWithSubmitterStandIn").await;
    let (node, url) = zgs_fixture_node().await;
    // The node learns of a submission 12 s after it is mined: a worker restarted in between finds
    // the nodes ignorant of it, and only its own record stops it from paying again.
    let _watch = watch_flow(&node, deployer.clone(), flow, Duration::from_secs(12));
    let mut config = std::fs::read_to_string(&stack.config_path).unwrap();
    config.push_str(&format!(
        "\n[storage.zg]\nnodes = [\"{url}\"]\nflow_contract = \"{flow}\"\nsync_timeout_secs = 60\n"
    ));
    stack.worker = None;
    write_private(&stack.config_path, &config);
    stack.env = vec![("QUICK_SCRIPT_MODE".into(), "big".into())];
    let standin = FlowStandIn::new(flow, &deployer);
    let dir = tempfile::tempdir().unwrap();
    let provider = stack.provider_address();
    let mut fees = U256::ZERO;
    let points = [
        (2, "after-zg-submit-recorded"),
        (3, "after-zg-submit"),
        (4, "during-zg-upload"),
    ];
    for (n, (who, point)) in points.into_iter().enumerate() {
        stack.start_worker(Some(&format!("{point}:kill"))).await;
        stack.fund(who, 10, 5).await;
        let id = submit(&stack, who, 1).await;
        assert!(
            stack.wait_worker_exit(Duration::from_secs(120)).await,
            "killed at {point}"
        );
        let submitted = standin.submissions().call().await.unwrap();
        let expected = if point == "after-zg-submit-recorded" {
            n
        } else {
            n + 1
        };
        assert_eq!(
            submitted,
            U256::from(expected),
            "{point}: submissions before the restart"
        );
        stack.start_worker(None).await;
        wait_state(&stack, who, &id, &["Delivered"], Duration::from_secs(120)).await;
        assert_eq!(
            standin.submissions().call().await.unwrap(),
            U256::from(n + 1),
            "{point}: one Flow submission for this deliverable, none paid twice"
        );
        let log = task_log(&stack, who, &id).await;
        assert!(log.contains("on 0G Storage: root"), "{point}: {log}");
        if point == "after-zg-submit-recorded" {
            assert!(
                log.contains("recorded before a restart is on chain: not paid again"),
                "{log}"
            );
        }

        let c = customer(&stack, who, &url);
        let enc = dir.path().join(format!("model-{who}.enc"));
        if point == "during-zg-upload" {
            tampered_storage_falls_back_to_the_tee(&c, &node, provider, &id, &enc).await;
        }
        let d = c
            .download_model(provider, &id, &enc, true, now_ms(), &NoProgress)
            .await
            .expect("download from 0G Storage + checks + acknowledge");
        assert_eq!(
            d.source,
            DownloadSource::ZgStorage,
            "{point}: {:?}",
            d.storage_error
        );
        assert_eq!(d.check.root_kind, RootKind::StorageRoot);
        let tree = root_hash_file(&enc).unwrap();
        let announced = c.deliverable(provider, &id).await.unwrap().model_root_hash;
        assert_eq!(
            announced.as_ref(),
            tree.root().as_slice(),
            "announced with the 0G root"
        );
        assert_eq!(
            standin.rootOf(U256::from(n)).call().await.unwrap(),
            B256::from_slice(&announced),
            "the root submitted to Flow is the announced one"
        );
        fees += storage_fee(&tree, U256::from(PRICE_PER_SECTOR));

        c.wait_settled(
            provider,
            &id,
            Duration::from_secs(60),
            Duration::from_millis(500),
        )
        .await
        .expect("settled after the acknowledgement");
        let out = dir.path().join(format!("model-{who}"));
        c.decrypt_model(
            provider,
            &id,
            &enc,
            &dir.path().join(format!("model-{who}.zip")),
            Some(&out),
            &NoProgress,
        )
        .await
        .expect("decrypt");
        let weights = std::fs::read(out.join("output_model/adapter_model.safetensors")).unwrap();
        assert_eq!(weights.len(), 3 << 20, "{point}");
    }
    assert_eq!(
        deployer.get_balance(flow).await.unwrap(),
        fees,
        "the Flow contract received each deliverable's storage fee exactly once"
    );
}

/// A node serving a tampered segment: `0g-storage` fails naming it (a verification failure),
/// `auto` falls back to the provider's TEE and checks the same 0G root; nothing is acknowledged.
async fn tampered_storage_falls_back_to_the_tee(
    c: &Client,
    node: &zgs_fake::Node,
    provider: alloy::primitives::Address,
    id: &str,
    enc: &std::path::Path,
) {
    node.set_fault(Fault::TamperData(1));
    let err = c
        .download_model_by(
            DownloadMethod::ZgStorage,
            provider,
            id,
            enc,
            false,
            now_ms(),
            &NoProgress,
        )
        .await
        .expect_err("a tampered segment");
    assert!(
        matches!(&err, ClientError::Storage { tampered: true, message } if message.contains("segment 1")),
        "{err}"
    );
    assert!(!enc.exists(), "nothing kept");
    let d = c
        .download_model_by(
            DownloadMethod::Auto,
            provider,
            id,
            enc,
            false,
            now_ms(),
            &NoProgress,
        )
        .await
        .expect("auto falls back to the TEE");
    assert_eq!(d.source, DownloadSource::Tee);
    assert!(
        d.storage_error
            .as_deref()
            .is_some_and(|e| e.contains("segment 1")),
        "{:?}",
        d.storage_error
    );
    assert_eq!(
        d.check.root_kind,
        RootKind::StorageRoot,
        "the TEE download is checked against the 0G root"
    );
    assert!(!d.acknowledged);
    std::fs::remove_file(enc).unwrap();
    node.set_fault(Fault::Honest);
}
