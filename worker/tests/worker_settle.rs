//! Settlement never strands the customer (issue 18, item 6) and the owner's cancel while training
//! (issue 23, item 3), against a real worker on a real anvil with the real contracts, with the
//! torch-free stand-in script (`QUICK_SCRIPT`: `hang` trains until stopped).
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use sealtune_contracts::FINE_TUNING_SERVICE_NAME;
use sealtune_e2e::chain::*;
use sealtune_e2e::process::processes_mentioning;
use sealtune_e2e::send;
use sealtune_e2e::stack::*;

/// Customer `who` cancels task `id` (signed); returns the status.
async fn cancel(stack: &Stack, who: usize, id: &str) -> u16 {
    let user = signer(who).address().to_checksum(None);
    let sig = sealtune_protocol::request::sign_cancel(&k256_key(who), &id.parse().unwrap());
    stack
        .http
        .post(stack.url(&format!("/v1/user/{user}/task/{id}/cancel")))
        .json(&serde_json::json!({"signature": sig.to_hex_v27()}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Customer `who` retrieves its funds from the provider through the ledger (`retrieveFund`: matured
/// refunds come back, a refund of the rest is requested).
async fn retrieve(stack: &Stack, who: usize) {
    send!(stack.ledger(who).retrieveFund(
        vec![stack.provider_address()],
        FINE_TUNING_SERVICE_NAME.into()
    ))
    .unwrap_or_else(|e| panic!("retrieveFund: {e}"));
}

/// Customer `who` moves `eth` more from its ledger into the provider's sub-account.
async fn top_up(stack: &Stack, who: usize, eth: u64) {
    send!(stack.ledger(who).transferFund(
        stack.provider_address(),
        FINE_TUNING_SERVICE_NAME.into(),
        ether(eth)
    ))
    .unwrap_or_else(|e| panic!("transferFund: {e}"));
}

/// The customer's sub-account with the provider.
async fn account(
    stack: &Stack,
    who: usize,
) -> sealtune_contracts::bindings::FineTuningServing::AccountDetails {
    stack
        .serving(who)
        .getAccount(signer(who).address(), stack.provider_address())
        .call()
        .await
        .unwrap()
}

/// Polls the task log of `id` until it holds `needle`.
async fn wait_log(stack: &Stack, who: usize, id: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !task_log(stack, who, id).await.contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no `{needle}` in the log of {id}:\n{}",
            task_log(stack, who, id).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The penalty share (30 %) of task `t`'s fee.
fn penalty(t: &serde_json::Value) -> U256 {
    let full = U256::from(t["tokens"].as_u64().unwrap()) * U256::from(PRICE);
    full * U256::from(30u64) / U256::from(100u64)
}

/// A settlement that reverts for a reason that will not go away (here: the customer retrieved the
/// funds and the chain's clock ran past the refund's lock time before the worker settled, as when the
/// worker is down longer than `lockTime / 2`) abandons the deliverable on chain: nothing charged, the
/// key withheld, the task failed with the reason, and the customer's next task is delivered (before,
/// the task failed without abandoning and every later `addDeliverable` of the customer reverted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_refused_for_good_abandons_the_deliverable_and_the_next_task_runs() {
    let started = Instant::now();
    let stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions {
            ack_timeout: "25s",
            ..Default::default()
        },
    )
    .await;
    stack.fund(2, 10, 5).await;
    let id = submit(&stack, 2, 1).await;
    wait_state(&stack, 2, &id, &["Delivered"], Duration::from_secs(120)).await;
    retrieve(&stack, 2).await;
    stack.anvil.increase_time(3601).await;
    retrieve(&stack, 2).await;
    assert_eq!(account(&stack, 2).await.balance, U256::ZERO);

    let t = wait_state(
        &stack,
        2,
        &id,
        &["Finished", "Failed"],
        Duration::from_secs(90),
    )
    .await;
    let log = task_log(&stack, 2, &id).await;
    assert_eq!(t["progress"], "Failed", "{log}");
    let reason = t["failReason"].as_str().unwrap();
    assert!(
        reason.contains("insufficient balance") && reason.contains("abandoned"),
        "{reason}"
    );
    assert!(settlements(&stack, &id).await.is_empty(), "nothing charged");
    let d = stack
        .serving(2)
        .getDeliverable(signer(2).address(), stack.provider_address(), id.clone())
        .call()
        .await
        .unwrap();
    assert!(
        d.settled && d.encryptedSecret.is_empty(),
        "abandoned, key withheld"
    );

    top_up(&stack, 2, 5).await;
    let next = submit(&stack, 2, 2).await;
    let t = wait_state(
        &stack,
        2,
        &next,
        &["Delivered", "Failed"],
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        t["progress"],
        "Delivered",
        "{}",
        task_log(&stack, 2, &next).await
    );
    assert!(
        download_ack_decrypt(&stack, 2, &next)
            .await
            .starts_with(b"weights-")
    );
    eprintln!("abandon case: {:?}", started.elapsed());
}

/// The owner cancels a task in `Training`: the training process stops, nothing is delivered, the
/// penalty share of the fee is charged on chain through `addDeliverable` (all-zero root) and
/// `settleFees`; a customer who retrieves the funds behind the fee during training is cancelled
/// the same way (the penalty taken from the refund before it can mature, so retrieving cannot escape
/// it); the customer's next task is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_while_training_charges_the_penalty_retrieving_funds_cannot_escape_it_and_the_next_task_runs()
 {
    let started = Instant::now();
    let mut stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions::default(),
    )
    .await;
    let mode = stack.dir.path().join("script-mode");
    std::fs::write(&mode, "hang").unwrap();
    stack
        .env
        .push(("QUICK_SCRIPT_MODE_FILE".into(), mode.display().to_string()));
    stack.worker = None;
    stack.start_worker(None).await;
    stack.fund(2, 10, 5).await;
    let (user, provider) = (signer(2).address(), stack.provider_address());

    // The owner's cancel during training.
    let id = submit(&stack, 2, 1).await;
    wait_log(&stack, 2, &id, "hanging on purpose").await;
    assert_eq!(cancel(&stack, 3, &id).await, 404, "only the owner");
    let asked = Instant::now();
    assert_eq!(cancel(&stack, 2, &id).await, 200);
    let t = wait_state(&stack, 2, &id, &["Failed"], Duration::from_secs(60)).await;
    eprintln!("cancel to Failed (penalty settled): {:?}", asked.elapsed());
    let reason = t["failReason"].as_str().unwrap();
    assert!(
        reason.contains("cancelled by the customer during training")
            && reason.contains("neuron charged"),
        "{reason}"
    );
    assert_eq!(
        processes_mentioning(&id),
        Vec::<String>::new(),
        "the training process was stopped"
    );
    let events = settlements(&stack, &id).await;
    assert_eq!(events.len(), 1);
    assert!(!events[0].acknowledged);
    assert_eq!(events[0].fee, penalty(&t), "the penalty share of the fee");
    let first_fee = events[0].fee;
    let d = stack
        .serving(2)
        .getDeliverable(user, provider, id.clone())
        .call()
        .await
        .unwrap();
    assert!(
        d.modelRootHash.iter().all(|b| *b == 0) && d.settled && d.encryptedSecret.is_empty(),
        "no model: an all-zero root, settled, no key"
    );
    assert_ne!(
        download(&stack, 2, &id).await.status(),
        200,
        "nothing delivered"
    );
    assert_eq!(cancel(&stack, 2, &id).await, 409, "ended");

    // The customer retrieves the funds behind the fee during training.
    let id = submit(&stack, 2, 2).await;
    wait_log(&stack, 2, &id, "hanging on purpose").await;
    retrieve(&stack, 2).await;
    let t = wait_state(&stack, 2, &id, &["Failed"], Duration::from_secs(60)).await;
    let reason = t["failReason"].as_str().unwrap();
    assert!(
        reason.contains("retrieved during training") && reason.contains("neuron charged"),
        "{reason}"
    );
    assert_eq!(processes_mentioning(&id), Vec::<String>::new());
    let events = settlements(&stack, &id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].fee, penalty(&t), "the penalty was taken");
    // After the lock time the refund comes back less what was charged: the sub-account is empty and
    // the ledger paid both penalties.
    stack.anvil.increase_time(3601).await;
    retrieve(&stack, 2).await;
    assert_eq!(account(&stack, 2).await.balance, U256::ZERO);
    let ledger = stack.ledger(2).getLedger(user).call().await.unwrap();
    assert_eq!(
        ledger.totalBalance,
        ether(10) - first_fee - events[0].fee,
        "the ledger paid both penalties and got the rest back"
    );

    // The next task runs.
    std::fs::write(&mode, "ok").unwrap();
    top_up(&stack, 2, 5).await;
    let next = submit(&stack, 2, 3).await;
    let t = wait_state(
        &stack,
        2,
        &next,
        &["Delivered", "Failed"],
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        t["progress"],
        "Delivered",
        "{}",
        task_log(&stack, 2, &next).await
    );
    assert!(
        download_ack_decrypt(&stack, 2, &next)
            .await
            .starts_with(b"weights-")
    );
    eprintln!("cancel case: {:?}", started.elapsed());
}
