//! Whole tasks through a real worker: the embedded executor running a real script, sealing,
//! `addDeliverable`, the customer's acknowledgement, settlement — and the unhappy paths: a crashing
//! script, no acknowledgement (penalty), and the worker killed at every pipeline stage.
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use sealtune_e2e::chain::*;
use sealtune_e2e::process::processes_mentioning;
use sealtune_e2e::stack::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_then_nonce_reuse_is_refused() {
    let stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions::default(),
    )
    .await;
    stack.fund(2, 10, 5).await;
    let provider_before = stack.balance(stack.provider_address()).await;
    let id = submit(&stack, 2, 7).await;
    let t = wait_state(
        &stack,
        2,
        &id,
        &["Delivered", "Failed"],
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        t["progress"],
        "Delivered",
        "{}",
        task_log(&stack, 2, &id).await
    );
    let tokens = t["tokens"].as_i64().unwrap();
    assert!(tokens > 0);
    let adapter = download_ack_decrypt(&stack, 2, &id).await;
    assert!(
        adapter.starts_with(b"weights-"),
        "the script's output, decrypted"
    );
    let fee = U256::from(tokens as u64) * U256::from(PRICE);
    let events = settlements(&stack, &id).await;
    assert_eq!(events.len(), 1, "settled exactly once");
    assert_eq!(events[0].fee, fee, "tokens × price × 1 epoch");
    assert!(events[0].acknowledged);
    assert_eq!(events[0].nonce, U256::from(7u64));
    assert!(
        stack.balance(stack.provider_address()).await > provider_before - ether(1),
        "provider paid (minus gas)"
    );
    let log = task_log(&stack, 2, &id).await;
    for needle in [
        "setup done",
        "training started",
        "model sealed",
        "delivered",
        "settled in",
    ] {
        assert!(log.contains(needle), "log lacks {needle}:\n{log}");
    }
    // The same nonce again is refused at once.
    let r = upload(&stack, 2, dataset_jsonl(3)).await;
    let hash = r.json::<Value>().await.unwrap()["datasetHash"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = create(&stack, 2, &task_body(2, &hash, 7, PARAMS)).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("nonce"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_script_fails_the_task_and_charges_nothing() {
    let mut stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions::default(),
    )
    .await;
    stack.env.push(("QUICK_SCRIPT_MODE".into(), "crash".into()));
    stack.worker = None;
    stack.start_worker(None).await;
    stack.fund(2, 10, 5).await;
    let id = submit(&stack, 2, 1).await;
    let t = wait_state(
        &stack,
        2,
        &id,
        &["Failed", "Delivered"],
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(t["progress"], "Failed");
    assert!(
        t["failReason"]
            .as_str()
            .unwrap()
            .contains("crashed on purpose"),
        "{t}"
    );
    assert!(
        task_log(&stack, 2, &id)
            .await
            .contains("crashed on purpose")
    );
    let account = stack
        .serving(2)
        .getAccount(signer(2).address(), stack.provider_address())
        .call()
        .await
        .unwrap();
    assert_eq!(account.balance, ether(5), "nothing charged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledgement_settles_with_the_penalty_and_withholds_the_key() {
    let stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions {
            ack_timeout: "3s",
            ..Default::default()
        },
    )
    .await;
    stack.fund(2, 10, 5).await;
    let id = submit(&stack, 2, 1).await;
    let t = wait_state(
        &stack,
        2,
        &id,
        &["Finished", "Failed"],
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        t["progress"],
        "Finished",
        "{}",
        task_log(&stack, 2, &id).await
    );
    let events = settlements(&stack, &id).await;
    assert_eq!(events.len(), 1);
    assert!(!events[0].acknowledged);
    let full = U256::from(t["tokens"].as_i64().unwrap() as u64) * U256::from(PRICE);
    assert_eq!(
        events[0].fee,
        full * U256::from(30u64) / U256::from(100u64),
        "30% penalty"
    );
    let d = stack
        .serving(2)
        .getDeliverable(signer(2).address(), stack.provider_address(), id.clone())
        .call()
        .await
        .unwrap();
    assert!(
        d.encryptedSecret.is_empty(),
        "the customer never gets the key"
    );
}

/// Kills the worker at each named stage (it aborts; during training it also sends itself `SIGKILL`),
/// restarts it, and checks the task still finishes with one settlement and a deliverable the
/// customer can open. The sealing steps in between: `worker_crash.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_every_stage_restarts_and_finishes_once() {
    let mut stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions::default(),
    )
    .await;
    for (i, point) in [
        "after-setup",
        "during-training",
        "during-training:kill",
        "after-training",
        "after-seal",
        "after-add-deliverable",
        "before-settle",
        "after-settle",
    ]
    .into_iter()
    .enumerate()
    {
        let who = 2 + (i % 2);
        if i < 2 {
            stack.fund(who, 20, 10).await;
        }
        stack.worker = None;
        let training = point.starts_with("during-training");
        if training {
            stack.env = vec![("QUICK_SCRIPT_MODE".into(), "slow".into())];
        } else {
            stack.env.clear();
        }
        stack.start_worker(Some(point)).await;
        let id = submit(&stack, who, 100 + i as u64).await;
        let settles_after = matches!(point, "before-settle" | "after-settle");
        if settles_after {
            wait_state(&stack, who, &id, &["Delivered"], Duration::from_secs(120)).await;
            stack.acknowledge(who, &id).await;
        }
        assert!(
            stack.wait_worker_exit(Duration::from_secs(120)).await,
            "{point}: the worker aborted"
        );
        if training {
            // The executor dies with the worker (the slow script would run 6 s more): no orphan
            // writes into the task directory the restarted worker trains in again.
            let deadline = Instant::now() + Duration::from_secs(2);
            while !processes_mentioning(&id).is_empty() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(
                processes_mentioning(&id),
                Vec::<String>::new(),
                "the executor outlived the worker"
            );
        }
        stack.env.clear();
        stack.start_worker(None).await;
        if settles_after {
            wait_state(&stack, who, &id, &["Finished"], Duration::from_secs(60)).await;
        } else {
            let t = wait_state(
                &stack,
                who,
                &id,
                &["Delivered", "Failed"],
                Duration::from_secs(120),
            )
            .await;
            assert_eq!(
                t["progress"],
                "Delivered",
                "{point}: {}",
                task_log(&stack, who, &id).await
            );
            download_ack_decrypt(&stack, who, &id).await;
        }
        assert_eq!(
            settlements(&stack, &id).await.len(),
            1,
            "{point}: settled exactly once"
        );
        let _: Address = signer(who).address();
    }
}
