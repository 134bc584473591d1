//! FineTuningServing rules of PROTOCOL.md §1, one test per rule, against a real anvil.

use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::Provider;
use alloy::sol_types::SolStruct;
use sealtune_contracts::DeployConfig;
use sealtune_contracts::bindings::FineTuningServing::VerifierInput;
use sealtune_contracts::bindings::{VerifierMessage, verifier_domain};
use sealtune_e2e::contracts::*;
use sealtune_e2e::trials::{self, Isolation};
use sealtune_e2e::{ether, send};

/// One anvil with the contracts for the whole binary; each case starts from the freshly deployed state.
fn main() -> std::process::ExitCode {
    trials::run(
        Env::new(),
        sealtune_e2e::cases![
            first_registration_requires_min_stake,
            service_update_rejects_stake,
            remove_service_returns_stake,
            signer_change_clears_owner_acknowledgement,
            only_owner_acknowledges_or_revokes_tee_signer,
            owner_acknowledgement_names_the_signer_it_acknowledges,
            a_tee_signer_serves_one_provider,
            funding_acknowledges_tee_signer,
            revoke_acknowledgement_only_at_zero_balance,
            account_functions_only_by_ledger,
            direct_deposits_are_rejected,
            at_most_five_active_refunds,
            refund_matures_after_lock_time,
            update_lock_time_applies_to_pending_refunds,
            lock_time_and_penalty_are_bounded,
            initialize_only_once,
            deliverable_id_must_be_1_to_256_bytes,
            add_deliverable_requires_previous_acknowledged,
            abandon_rejects_settled_deliverable,
            deliverable_ring_holds_20_and_evicts_only_settled,
            settle_charges_full_fee_when_acknowledged,
            settle_charges_penalty_when_unacknowledged,
            settle_requires_secret_iff_acknowledged,
            settle_rejects_reused_nonce,
            settle_rejects_settled_deliverable,
            settle_rejects_wrong_tee_signature,
            settle_rejects_each_tampered_signed_field_and_a_foreign_domain,
            settle_rejects_root_hash_mismatch,
            settle_requires_owner_acknowledged_signer,
            settle_requires_user_acknowledged_signer,
            settle_rejects_insufficient_balance,
            penalty_settlement_needs_only_the_penalty_in_balance,
            settle_cancels_pending_refunds_when_needed,
            contract_digest_matches_rust_eip712,
            paging_views_limit_50,
            contract_digest_matches_protocol_eip712,
        ],
        Isolation::Snapshot(|env| &env.anvil),
    )
}

async fn first_registration_requires_min_stake(env: &Env) {
    let serving = env.serving(&env.provider);
    let msg = assert_revert(
        register(&serving, env.tee.address(), ether(99)).await,
        "InsufficientStake",
    );
    assert!(msg.contains("stake"), "{msg}");
    register(&serving, env.tee.address(), ether(100))
        .await
        .unwrap();
    assert_eq!(env.balance(env.deployment.serving).await, ether(100));
    let s = serving
        .getService(env.provider.address())
        .call()
        .await
        .unwrap();
    assert_eq!(s.teeSignerAddress, env.tee.address());
    assert!(!s.teeSignerAcknowledged);
}

async fn service_update_rejects_stake(env: &Env) {
    let serving = env.serving(&env.provider);
    register(&serving, env.tee.address(), ether(100))
        .await
        .unwrap();
    assert_revert(
        register(&serving, env.tee.address(), ether(1)).await,
        "CannotAddStakeWhenUpdating",
    );
    register(&serving, env.tee.address(), U256::ZERO)
        .await
        .unwrap();
}

async fn remove_service_returns_stake(env: &Env) {
    let serving = env.serving(&env.provider);
    register(&serving, env.tee.address(), ether(100))
        .await
        .unwrap();
    let before = env.balance(env.provider.address()).await;
    send!(serving.removeService()).unwrap();
    let after = env.balance(env.provider.address()).await;
    assert!(
        after > before + ether(99),
        "stake not returned: {before} -> {after}"
    );
    assert_eq!(env.balance(env.deployment.serving).await, U256::ZERO);
    assert_revert(send!(serving.removeService()), "ServiceNotExist");
    assert!(serving.getAllServices().call().await.unwrap().is_empty());
}

/// Issue 18: `acknowledgeTEESignerByOwnerFor(provider, signer)` acknowledges only the signer it names:
/// a provider that swaps in another signer after the owner verified one gets no acknowledgement.
async fn owner_acknowledgement_names_the_signer_it_acknowledges(env: &Env) {
    let serving = env.serving(&env.provider);
    register(&serving, env.tee.address(), ether(100))
        .await
        .unwrap();
    let (p, verified) = (env.provider.address(), env.tee.address());
    assert_revert(
        send!(
            env.serving(&env.user)
                .acknowledgeTEESignerByOwnerFor(p, verified)
        ),
        "OwnableUnauthorizedAccount",
    );
    // The provider swaps its signer in front of the owner's acknowledgement of the verified one.
    let swapped = Address::repeat_byte(0x66);
    register(&serving, swapped, U256::ZERO).await.unwrap();
    let msg = assert_revert(
        send!(
            env.serving(&env.owner)
                .acknowledgeTEESignerByOwnerFor(p, verified)
        ),
        "TEESignerMismatch",
    );
    assert!(msg.contains(&swapped.to_string()), "{msg}");
    assert_revert(
        send!(
            env.serving(&env.owner)
                .acknowledgeTEESignerByOwnerFor(p, Address::ZERO)
        ),
        "TEESignerMismatch",
    );
    let s = serving.getService(p).call().await.unwrap();
    assert!(!s.teeSignerAcknowledged);
    // Back to the verified signer: acknowledged, and the event names it.
    register(&serving, verified, U256::ZERO).await.unwrap();
    let receipt = send!(
        env.serving(&env.owner)
            .acknowledgeTEESignerByOwnerFor(p, verified)
    )
    .unwrap();
    let event = receipt
        .decoded_log::<sealtune_contracts::bindings::FineTuningServing::ProviderTEESignerAcknowledged>()
        .expect("ProviderTEESignerAcknowledged");
    assert_eq!(
        (event.teeSignerAddress, event.acknowledged),
        (verified, true)
    );
    assert!(
        serving
            .getService(p)
            .call()
            .await
            .unwrap()
            .teeSignerAcknowledged
    );
}

/// Issue 18: a TEE signer address serves one provider: another provider cannot register it (and so
/// cannot inherit customers' acknowledgements of it); it is free again once its provider moved on.
async fn a_tee_signer_serves_one_provider(env: &Env) {
    let tee = env.tee.address();
    register(&env.serving(&env.provider), tee, ether(100))
        .await
        .unwrap();
    let other = env.serving(&env.user2);
    let msg = assert_revert(register(&other, tee, ether(100)).await, "TEESignerInUse");
    assert!(msg.contains(&env.provider.address().to_string()), "{msg}");
    register(&other, Address::repeat_byte(0x77), ether(100))
        .await
        .unwrap();
    assert_revert(register(&other, tee, U256::ZERO).await, "TEESignerInUse");
    // The first provider moves to another signer: the old one is free.
    register(
        &env.serving(&env.provider),
        Address::repeat_byte(0x78),
        U256::ZERO,
    )
    .await
    .unwrap();
    register(&other, tee, U256::ZERO).await.unwrap();
    // A removed service frees its signer.
    assert_revert(
        register(&env.serving(&env.provider), tee, U256::ZERO).await,
        "TEESignerInUse",
    );
    send!(other.removeService()).unwrap();
    register(&env.serving(&env.provider), tee, U256::ZERO)
        .await
        .unwrap();
}

async fn signer_change_clears_owner_acknowledgement(env: &Env) {
    env.register_provider().await;
    let serving = env.serving(&env.provider);
    assert!(
        serving
            .getService(env.provider.address())
            .call()
            .await
            .unwrap()
            .teeSignerAcknowledged
    );
    // same signer: acknowledgement kept
    register(&serving, env.tee.address(), U256::ZERO)
        .await
        .unwrap();
    assert!(
        serving
            .getService(env.provider.address())
            .call()
            .await
            .unwrap()
            .teeSignerAcknowledged
    );
    let new_signer = Address::repeat_byte(0x42);
    register(&serving, new_signer, U256::ZERO).await.unwrap();
    let s = serving
        .getService(env.provider.address())
        .call()
        .await
        .unwrap();
    assert_eq!(s.teeSignerAddress, new_signer);
    assert!(!s.teeSignerAcknowledged);
}

async fn only_owner_acknowledges_or_revokes_tee_signer(env: &Env) {
    register(&env.serving(&env.provider), env.tee.address(), ether(100))
        .await
        .unwrap();
    let p = env.provider.address();
    assert_revert(
        send!(env.serving(&env.user).acknowledgeTEESignerByOwner(p)),
        "OwnableUnauthorizedAccount",
    );
    send!(env.serving(&env.owner).acknowledgeTEESignerByOwner(p)).unwrap();
    assert_revert(
        send!(env.serving(&env.user).revokeTEESignerAcknowledgement(p)),
        "OwnableUnauthorizedAccount",
    );
    send!(env.serving(&env.owner).revokeTEESignerAcknowledgement(p)).unwrap();
    assert!(
        !env.serving(&env.user)
            .getService(p)
            .call()
            .await
            .unwrap()
            .teeSignerAcknowledged
    );
}

async fn funding_acknowledges_tee_signer(env: &Env) {
    env.register_provider().await;
    env.fund(&env.user, 5, 2).await;
    let acc = env
        .serving(&env.user)
        .getAccount(env.user.address(), env.provider.address())
        .call()
        .await
        .unwrap();
    assert!(acc.acknowledged);
    assert_eq!(acc.balance, ether(2));
}

async fn revoke_acknowledgement_only_at_zero_balance(env: &Env) {
    let d = DirectEnv::new(env).await;
    let (user, p) = (d.env.user.address(), d.env.provider.address());
    send!(
        d.as_(&d.ledger)
            .addAccount(user, p, String::new())
            .value(ether(1))
    )
    .unwrap();
    let msg = assert_revert(
        send!(d.as_(&d.env.user).acknowledgeTEESigner(p, false)),
        "CannotRevokeWithNonZeroBalance",
    );
    assert!(msg.contains("retrieve"), "{msg}");
    // drain: refund everything and process it after the lock time
    send!(d.as_(&d.ledger).requestRefundAll(user, p)).unwrap();
    d.env.increase_time(3600).await;
    send!(d.as_(&d.ledger).processRefund(user, p)).unwrap();
    send!(d.as_(&d.env.user).acknowledgeTEESigner(p, false)).unwrap();
    assert!(
        !d.as_(&d.env.user)
            .getAccount(user, p)
            .call()
            .await
            .unwrap()
            .acknowledged
    );
    send!(d.as_(&d.env.user).acknowledgeTEESigner(p, true)).unwrap();
}

async fn account_functions_only_by_ledger(env: &Env) {
    let s = env.serving(&env.user);
    let (u, p) = (env.user.address(), env.provider.address());
    assert_revert(
        send!(s.addAccount(u, p, String::new()).value(ether(1))),
        "CallerNotLedger",
    );
    assert_revert(send!(s.depositFund(u, p, U256::ZERO)), "CallerNotLedger");
    assert_revert(send!(s.requestRefundAll(u, p)), "CallerNotLedger");
    assert_revert(send!(s.processRefund(u, p)), "CallerNotLedger");
    assert_revert(send!(s.deleteAccount(u, p)), "CallerNotLedger");
}

async fn direct_deposits_are_rejected(env: &Env) {
    let client = env.client(&env.user);
    for to in [env.deployment.serving, env.deployment.ledger] {
        let tx = alloy::rpc::types::TransactionRequest::default()
            .to(to)
            .value(ether(1));
        let err = client
            .send_transaction(tx)
            .await
            .expect_err("plain transfer must revert");
        let err = sealtune_contracts::ContractError::from(alloy::contract::Error::from(err));
        assert_eq!(err.revert_name(), Some("DirectDepositsDisabled"), "{err}");
    }
}

async fn at_most_five_active_refunds(env: &Env) {
    let d = DirectEnv::new(env).await;
    let (user, p) = (d.env.user.address(), d.env.provider.address());
    let ledger = d.as_(&d.ledger);
    send!(ledger.addAccount(user, p, String::new()).value(ether(1))).unwrap();
    for _ in 0..5 {
        send!(ledger.requestRefundAll(user, p)).unwrap();
        send!(ledger.depositFund(user, p, U256::ZERO).value(ether(1))).unwrap();
    }
    let msg = assert_revert(send!(ledger.requestRefundAll(user, p)), "TooManyRefunds");
    assert!(msg.contains("5 pending refunds"), "{msg}");
    let acc = ledger.getAccount(user, p).call().await.unwrap();
    assert_eq!(acc.validRefundsLength, U256::from(5u64));
    assert_eq!(acc.pendingRefund, ether(5));
}

async fn refund_matures_after_lock_time(env: &Env) {
    let d = DirectEnv::new(env).await;
    let (user, p) = (d.env.user.address(), d.env.provider.address());
    let ledger = d.as_(&d.ledger);
    send!(ledger.addAccount(user, p, String::new()).value(ether(2))).unwrap();
    send!(ledger.requestRefundAll(user, p)).unwrap();
    d.env.increase_time(3000).await;
    let early = ledger.processRefund(user, p).call().await.unwrap();
    assert_eq!(early.totalAmount, U256::ZERO);
    d.env.increase_time(600).await;
    let ripe = ledger.processRefund(user, p).call().await.unwrap();
    assert_eq!(ripe.totalAmount, ether(2));
    assert_eq!(ripe.balance, U256::ZERO);
    assert_eq!(ripe.pendingRefund, U256::ZERO);
}

async fn update_lock_time_applies_to_pending_refunds(env: &Env) {
    let d = DirectEnv::new(env).await;
    let (user, p) = (d.env.user.address(), d.env.provider.address());
    let ledger = d.as_(&d.ledger);
    send!(ledger.addAccount(user, p, String::new()).value(ether(2))).unwrap();
    send!(ledger.requestRefundAll(user, p)).unwrap();
    send!(d.as_(&d.env.owner).updateLockTime(U256::from(7200u64))).unwrap();
    d.env.increase_time(3700).await;
    assert_eq!(
        ledger
            .processRefund(user, p)
            .call()
            .await
            .unwrap()
            .totalAmount,
        U256::ZERO
    );
    d.env.increase_time(3600).await;
    assert_eq!(
        ledger
            .processRefund(user, p)
            .call()
            .await
            .unwrap()
            .totalAmount,
        ether(2)
    );
}

async fn lock_time_and_penalty_are_bounded(env: &Env) {
    let s = env.serving(&env.owner);
    assert_revert(
        send!(s.updateLockTime(U256::from(3599u64))),
        "LockTimeOutOfRange",
    );
    assert_revert(
        send!(s.updateLockTime(U256::from(7 * 86400 + 1u64))),
        "LockTimeOutOfRange",
    );
    send!(s.updateLockTime(U256::from(7 * 86400u64))).unwrap();
    assert_revert(
        send!(s.updatePenaltyPercentage(U256::from(101u64))),
        "PenaltyPercentageTooHigh",
    );
    send!(s.updatePenaltyPercentage(U256::from(100u64))).unwrap();
    assert_eq!(
        s.penaltyPercentage().call().await.unwrap(),
        U256::from(100u64)
    );
    assert_revert(
        send!(env.serving(&env.user).updateLockTime(U256::from(7200u64))),
        "OwnableUnauthorizedAccount",
    );
}

async fn initialize_only_once(env: &Env) {
    let s = env.serving(&env.owner);
    assert!(s.initialized().call().await.unwrap());
    assert_eq!(s.lockTime().call().await.unwrap(), U256::from(86_400u64));
    assert_eq!(
        s.penaltyPercentage().call().await.unwrap(),
        U256::from(30u64)
    );
    assert_eq!(
        s.ledgerAddress().call().await.unwrap(),
        env.deployment.ledger
    );
    assert_revert(
        send!(s.initialize(
            U256::from(3600u64),
            env.deployment.ledger,
            env.owner.address(),
            U256::ZERO
        )),
        "AlreadyInitialized",
    );
}

async fn deliverable_id_must_be_1_to_256_bytes(env: &Env) {
    env.register_provider().await;
    env.fund(&env.user, 5, 2).await;
    let u = env.user.address();
    assert_revert(
        env.add_deliverable(u, "").await,
        "DeliverableIdInvalidLength",
    );
    assert_revert(
        env.add_deliverable(u, &"x".repeat(257)).await,
        "DeliverableIdInvalidLength",
    );
    env.add_deliverable(u, &"x".repeat(256)).await.unwrap();
}

async fn add_deliverable_requires_previous_acknowledged(env: &Env) {
    env.register_provider().await;
    env.fund(&env.user, 5, 2).await;
    let (u, p) = (env.user.address(), env.provider.address());
    env.add_deliverable(u, "task-1").await.unwrap();
    assert_revert(
        env.add_deliverable(u, "task-1").await,
        "DeliverableAlreadyExists",
    );
    let msg = assert_revert(
        env.add_deliverable(u, "task-2").await,
        "PreviousDeliverableNotAcknowledged",
    );
    assert!(msg.contains("task-1"), "{msg}");
    send!(
        env.serving(&env.user)
            .acknowledgeDeliverable(p, "task-1".into())
    )
    .unwrap();
    env.add_deliverable(u, "task-2").await.unwrap();
    // an abandoned deliverable no longer blocks the next one
    send!(
        env.serving(&env.provider)
            .abandonDeliverable(u, "task-2".into())
    )
    .unwrap();
    env.add_deliverable(u, "task-3").await.unwrap();
    let d = env
        .serving(&env.user)
        .getDeliverable(u, p, "task-2".into())
        .call()
        .await
        .unwrap();
    assert!(d.settled && !d.acknowledged);
}

async fn abandon_rejects_settled_deliverable(env: &Env) {
    env.register_provider().await;
    env.fund(&env.user, 5, 2).await;
    let u = env.user.address();
    env.add_deliverable(u, "t").await.unwrap();
    send!(env.serving(&env.provider).abandonDeliverable(u, "t".into())).unwrap();
    assert_revert(
        send!(env.serving(&env.provider).abandonDeliverable(u, "t".into())),
        "DeliverableAlreadySettled",
    );
    assert_revert(
        send!(
            env.serving(&env.provider)
                .abandonDeliverable(u, "nope".into())
        ),
        "DeliverableNotExists",
    );
    assert_revert(
        send!(
            env.serving(&env.user)
                .acknowledgeDeliverable(env.provider.address(), "t".into())
        ),
        "CannotAcknowledgeSettledDeliverable",
    );
}

async fn deliverable_ring_holds_20_and_evicts_only_settled(env: &Env) {
    env.register_provider().await;
    env.fund(&env.user, 5, 2).await;
    let (u, p) = (env.user.address(), env.provider.address());
    let user = env.serving(&env.user);
    for i in 0..20 {
        env.add_deliverable(u, &format!("t{i}")).await.unwrap();
        send!(user.acknowledgeDeliverable(p, format!("t{i}"))).unwrap();
    }
    let msg = assert_revert(
        env.add_deliverable(u, "t20").await,
        "CannotEvictUnsettledDeliverable",
    );
    assert!(msg.contains("t0"), "{msg}");
    let input = env.input(
        &env.tee,
        "t0",
        &[7u8; 129],
        1,
        ether(1) / U256::from(10u64),
        u,
    );
    env.settle(input).await.unwrap();
    env.add_deliverable(u, "t20").await.unwrap();
    let all = user.getDeliverables(u, p).call().await.unwrap();
    assert_eq!(all.len(), 20);
    assert_eq!(all[0].id, "t1");
    assert_eq!(all[19].id, "t20");
    assert_revert(
        user.getDeliverable(u, p, "t0".into())
            .call()
            .await
            .map_err(Into::into),
        "DeliverableNotExists",
    );
    let acc = user.getAccount(u, p).call().await.unwrap();
    assert_eq!(acc.deliverablesCount, U256::from(20u64));
    assert_eq!(acc.deliverablesHead, U256::from(1u64));
    // t1 is unsettled: the next addition cannot evict it
    send!(user.acknowledgeDeliverable(p, "t20".into())).unwrap();
    assert_revert(
        env.add_deliverable(u, "t21").await,
        "CannotEvictUnsettledDeliverable",
    );
}

/// A funded, acknowledged account with deliverable "task" ready to settle.
/// (Fresh contracts on the shared chain, so a case may hold two of them.)
async fn ready(shared: &Env, acknowledge: bool) -> Env {
    let env = Env::on(shared.anvil.clone(), DeployConfig::default()).await;
    env.register_provider().await;
    env.fund(&env.user, 10, 5).await;
    env.add_deliverable(env.user.address(), "task")
        .await
        .unwrap();
    if acknowledge {
        send!(
            env.serving(&env.user)
                .acknowledgeDeliverable(env.provider.address(), "task".into())
        )
        .unwrap();
    }
    env
}

async fn settle_charges_full_fee_when_acknowledged(env: &Env) {
    let env = ready(env, true).await;
    let (u, p) = (env.user.address(), env.provider.address());
    let before = env.balance(p).await;
    let secret = [9u8; 129];
    env.settle(env.input(&env.tee, "task", &secret, 42, ether(2), u))
        .await
        .unwrap();
    let after = env.balance(p).await;
    assert!(
        after > before + ether(2) - ether(1) / U256::from(100u64),
        "provider not paid: {before} -> {after}"
    );
    let s = env.serving(&env.user);
    let acc = s.getAccount(u, p).call().await.unwrap();
    assert_eq!(acc.balance, ether(3));
    assert_eq!(acc.nonce, U256::from(42u64));
    let d = s.getDeliverable(u, p, "task".into()).call().await.unwrap();
    assert!(d.settled);
    assert_eq!(d.encryptedSecret, Bytes::from(secret.to_vec()));
    let ledger = env.ledger(&env.user).getLedger(u).call().await.unwrap();
    assert_eq!(ledger.totalBalance, ether(8));
    assert_eq!(ledger.availableBalance, ether(5));
}

async fn settle_charges_penalty_when_unacknowledged(env: &Env) {
    let env = ready(env, false).await;
    let (u, p) = (env.user.address(), env.provider.address());
    env.settle(env.input(&env.tee, "task", &[], 1, ether(2), u))
        .await
        .unwrap();
    let acc = env
        .serving(&env.user)
        .getAccount(u, p)
        .call()
        .await
        .unwrap();
    // 30% of 2 ether
    assert_eq!(acc.balance, ether(5) - ether(6) / U256::from(10u64));
    let d = env
        .serving(&env.user)
        .getDeliverable(u, p, "task".into())
        .call()
        .await
        .unwrap();
    assert!(d.settled && d.encryptedSecret.is_empty());
}

async fn settle_requires_secret_iff_acknowledged(shared: &Env) {
    let env = ready(shared, true).await;
    let u = env.user.address();
    assert_revert(
        env.settle(env.input(&env.tee, "task", &[], 1, ether(1), u))
            .await,
        "SecretShouldNotBeEmpty",
    );
    let env = ready(shared, false).await;
    let u = env.user.address();
    assert_revert(
        env.settle(env.input(&env.tee, "task", &[1], 1, ether(1), u))
            .await,
        "SecretShouldBeEmpty",
    );
}

async fn settle_rejects_reused_nonce(env: &Env) {
    env.register_provider().await;
    env.fund(&env.user, 10, 5).await;
    let (u, p) = (env.user.address(), env.provider.address());
    env.add_deliverable(u, "a").await.unwrap();
    send!(env.serving(&env.user).acknowledgeDeliverable(p, "a".into())).unwrap();
    env.settle(env.input(&env.tee, "a", &[1], 5, ether(1), u))
        .await
        .unwrap();
    env.add_deliverable(u, "b").await.unwrap();
    send!(env.serving(&env.user).acknowledgeDeliverable(p, "b".into())).unwrap();
    for nonce in [4, 5] {
        let msg = assert_revert(
            env.settle(env.input(&env.tee, "b", &[1], nonce, ether(1), u))
                .await,
            "InvalidVerifierInput",
        );
        assert!(msg.contains("nonce"), "{msg}");
    }
    env.settle(env.input(&env.tee, "b", &[1], 6, ether(1), u))
        .await
        .unwrap();
}

async fn settle_rejects_settled_deliverable(env: &Env) {
    let env = ready(env, true).await;
    let u = env.user.address();
    env.settle(env.input(&env.tee, "task", &[1], 1, ether(1), u))
        .await
        .unwrap();
    assert_revert(
        env.settle(env.input(&env.tee, "task", &[1], 2, ether(1), u))
            .await,
        "DeliverableAlreadySettled",
    );
    assert_revert(
        env.settle(env.input(&env.tee, "other", &[1], 3, ether(1), u))
            .await,
        "DeliverableNotExists",
    );
}

async fn settle_rejects_wrong_tee_signature(env: &Env) {
    let env = ready(env, true).await;
    let u = env.user.address();
    let impostor = alloy::signers::local::PrivateKeySigner::random();
    let msg = assert_revert(
        env.settle(env.input(&impostor, "task", &[1], 1, ether(1), u))
            .await,
        "InvalidVerifierInput",
    );
    assert!(msg.contains("signature"), "{msg}");
    // a valid signature over different fields
    let mut input = env.input(&env.tee, "task", &[1], 1, ether(1), u);
    input.taskFee = ether(2);
    assert_revert(env.settle(input).await, "InvalidVerifierInput");
    // a high-s (malleable) twin of a valid signature
    let mut input = env.input(&env.tee, "task", &[1], 1, ether(1), u);
    let n = U256::from_str_radix(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141",
        16,
    )
    .unwrap();
    let mut sig = input.signature.to_vec();
    let s = U256::from_be_slice(&sig[32..64]);
    sig[32..64].copy_from_slice(&(n - s).to_be_bytes::<32>());
    sig[64] = if sig[64] == 27 { 28 } else { 27 };
    input.signature = sig.into();
    assert_revert(env.settle(input).await, "InvalidVerifierInput");
}

async fn settle_rejects_each_tampered_signed_field_and_a_foreign_domain(env: &Env) {
    let env = ready(env, true).await;
    let u = env.user.address();
    // user2 also has an account and a deliverable "task2", so a tampered user or id still finds one.
    env.fund(&env.user2, 10, 5).await;
    env.add_deliverable(env.user2.address(), "task2")
        .await
        .unwrap();
    send!(
        env.serving(&env.user2)
            .acknowledgeDeliverable(env.provider.address(), "task2".into())
    )
    .unwrap();
    let good = || env.input(&env.tee, "task", &[1], 1, ether(1), u);
    let cases: Vec<(&str, VerifierInput)> = vec![
        (
            "id",
            VerifierInput {
                id: "task2".into(),
                user: env.user2.address(),
                ..good()
            },
        ),
        (
            "encryptedSecret",
            VerifierInput {
                encryptedSecret: Bytes::from(vec![2u8]),
                ..good()
            },
        ),
        (
            "modelRootHash",
            VerifierInput {
                modelRootHash: Bytes::from(vec![0xcd; 32]),
                ..good()
            },
        ),
        (
            "nonce",
            VerifierInput {
                nonce: U256::from(2u64),
                ..good()
            },
        ),
        (
            "taskFee",
            VerifierInput {
                taskFee: ether(1) / U256::from(2u64),
                ..good()
            },
        ),
        (
            "user",
            VerifierInput {
                user: env.user2.address(),
                id: "task2".into(),
                ..good()
            },
        ),
    ];
    for (field, input) in cases {
        let msg = assert_revert(env.settle(input).await, "InvalidVerifierInput");
        assert!(!msg.is_empty(), "{field}");
    }
    // Signed for another chain id, or for another contract.
    for (chain_id, contract) in [
        (env.chain_id + 1, env.deployment.serving),
        (env.chain_id, env.deployment.ledger),
    ] {
        let input = sign_input(
            &env.tee,
            chain_id,
            contract,
            "task",
            &[1],
            &ROOT,
            1,
            ether(1),
            u,
        );
        assert_revert(env.settle(input).await, "InvalidVerifierInput");
    }
    // Nothing was settled; the untampered input still settles.
    let d = env
        .serving(&env.user)
        .getDeliverable(u, env.provider.address(), "task".into())
        .call()
        .await
        .unwrap();
    assert!(!d.settled);
    env.settle(good()).await.unwrap();
}

async fn settle_rejects_root_hash_mismatch(env: &Env) {
    let env = ready(env, true).await;
    let u = env.user.address();
    let input = sign_input(
        &env.tee,
        env.chain_id,
        env.deployment.serving,
        "task",
        &[1],
        &[0xcd; 32],
        1,
        ether(1),
        u,
    );
    let msg = assert_revert(env.settle(input).await, "InvalidVerifierInput");
    assert!(msg.contains("root hash"), "{msg}");
}

async fn settle_requires_owner_acknowledged_signer(env: &Env) {
    let env = ready(env, true).await;
    send!(
        env.serving(&env.owner)
            .revokeTEESignerAcknowledgement(env.provider.address())
    )
    .unwrap();
    let msg = assert_revert(
        env.settle(env.input(&env.tee, "task", &[1], 1, ether(1), env.user.address()))
            .await,
        "InvalidVerifierInput",
    );
    assert!(msg.contains("owner"), "{msg}");
}

async fn settle_requires_user_acknowledged_signer(env: &Env) {
    let d = DirectEnv::new(env).await;
    let (u, p) = (d.env.user.address(), d.env.provider.address());
    send!(d.as_(&d.ledger).addAccount(u, p, String::new())).unwrap();
    send!(d.as_(&d.env.user).acknowledgeTEESigner(p, false)).unwrap();
    send!(
        d.as_(&d.env.provider)
            .addDeliverable(u, "t".into(), Bytes::from(ROOT))
    )
    .unwrap();
    let input = sign_input(
        &d.env.tee,
        d.env.chain_id,
        d.serving,
        "t",
        &[],
        &ROOT,
        1,
        U256::ZERO,
        u,
    );
    let msg = assert_revert(
        send!(d.as_(&d.env.provider).settleFees(input)),
        "InvalidVerifierInput",
    );
    assert!(msg.contains("user has not acknowledged"), "{msg}");
}

/// Issue 18: the 30% path charges only the penalty, so only the penalty must be in the balance (5
/// ether held, a 10 ether fee: 3 ether charged).
async fn penalty_settlement_needs_only_the_penalty_in_balance(env: &Env) {
    let env = ready(env, false).await;
    let (u, p) = (env.user.address(), env.provider.address());
    env.settle(env.input(&env.tee, "task", &[], 1, ether(10), u))
        .await
        .unwrap();
    let acc = env
        .serving(&env.user)
        .getAccount(u, p)
        .call()
        .await
        .unwrap();
    assert_eq!(acc.balance, ether(2));
    // More than the balance holds even as a penalty (30% of 20 = 6 > 2): refused.
    send!(env.serving(&env.provider).addDeliverable(
        u,
        "next".into(),
        Bytes::copy_from_slice(&ROOT)
    ))
    .unwrap();
    let msg = assert_revert(
        env.settle(env.input(&env.tee, "next", &[], 2, ether(20), u))
            .await,
        "InvalidVerifierInput",
    );
    assert!(msg.contains("insufficient balance"), "{msg}");
}

async fn settle_rejects_insufficient_balance(env: &Env) {
    let env = ready(env, true).await;
    let msg = assert_revert(
        env.settle(env.input(&env.tee, "task", &[1], 1, ether(6), env.user.address()))
            .await,
        "InvalidVerifierInput",
    );
    assert!(msg.contains("insufficient balance"), "{msg}");
}

async fn settle_cancels_pending_refunds_when_needed(env: &Env) {
    let env = ready(env, true).await;
    let (u, p) = (env.user.address(), env.provider.address());
    send!(env.ledger(&env.user).retrieveFund(vec![p], SERVICE.into())).unwrap();
    let s = env.serving(&env.user);
    assert_eq!(s.getPendingRefund(u, p).call().await.unwrap(), ether(5));
    env.settle(env.input(&env.tee, "task", &[1], 1, ether(2), u))
        .await
        .unwrap();
    let acc = s.getAccount(u, p).call().await.unwrap();
    assert_eq!(acc.balance, ether(3));
    assert_eq!(acc.pendingRefund, ether(3));
}

async fn contract_digest_matches_rust_eip712(env: &Env) {
    let input = env.input(
        &env.tee,
        "0b1c0d38-7a6e-4f3b-9d55-5d1f2c8e9a10",
        &[1, 2, 3],
        17,
        ether(3),
        env.user.address(),
    );
    let onchain = env
        .serving(&env.user)
        .verifierMessageDigest(input.clone())
        .call()
        .await
        .unwrap();
    let message = VerifierMessage {
        id: input.id.clone(),
        encryptedSecret: input.encryptedSecret.clone(),
        modelRootHash: input.modelRootHash.clone(),
        nonce: input.nonce,
        taskFee: input.taskFee,
        user: input.user,
    };
    assert_eq!(
        onchain,
        message.eip712_signing_hash(&verifier_domain(env.chain_id, env.deployment.serving))
    );
}

async fn paging_views_limit_50(env: &Env) {
    env.register_provider().await;
    env.fund(&env.user, 5, 1).await;
    env.fund(&env.user2, 5, 1).await;
    let s = env.serving(&env.provider);
    let page = s
        .getAllAccounts(U256::ZERO, U256::from(50u64))
        .call()
        .await
        .unwrap();
    assert_eq!(page.total, U256::from(2u64));
    assert_eq!(page.accounts.len(), 2);
    let by_provider = s
        .getAccountsByProvider(env.provider.address(), U256::from(1u64), U256::from(10u64))
        .call()
        .await
        .unwrap();
    assert_eq!(by_provider.accounts.len(), 1);
    let by_user = s
        .getAccountsByUser(env.user.address(), U256::ZERO, U256::from(10u64))
        .call()
        .await
        .unwrap();
    assert_eq!(by_user.accounts[0].provider, env.provider.address());
    assert_revert(
        s.getAllAccounts(U256::ZERO, U256::from(51u64))
            .call()
            .await
            .map_err(Into::into),
        "LimitTooLarge",
    );
    let batch = s
        .getBatchAccountsByUsers(vec![env.user.address(), Address::ZERO])
        .call()
        .await
        .unwrap();
    assert_eq!(batch[0].balance, ether(1));
    assert_eq!(batch[1].user, Address::ZERO);
}

async fn contract_digest_matches_protocol_eip712(env: &Env) {
    use sealtune_protocol::eip712;
    let input = env.input(
        &env.tee,
        "0b1c0d38-7a6e-4f3b-9d55-5d1f2c8e9a10",
        &[5; 129],
        99,
        ether(1),
        env.user.address(),
    );
    let onchain = env
        .serving(&env.user)
        .verifierMessageDigest(input.clone())
        .call()
        .await
        .unwrap();
    let message = eip712::VerifierMessage {
        id: input.id,
        encryptedSecret: input.encryptedSecret,
        modelRootHash: input.modelRootHash,
        nonce: input.nonce,
        taskFee: input.taskFee,
        user: input.user,
    };
    assert_eq!(
        onchain,
        message.digest(&eip712::domain(env.chain_id, env.deployment.serving))
    );
}
