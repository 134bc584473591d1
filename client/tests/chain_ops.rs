//! The customer's chain operations against a real anvil and the real contracts: balances move as
//! the ledger rules say, and every refusal is a typed error that changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use alloy::primitives::{Address, U256};
use common::Env;
use sealtune_client::ClientError;
use sealtune_client::error::exit;
use sealtune_e2e::ether;
use sealtune_e2e::trials::{self, Isolation};

/// One anvil with the contracts and the provider fixture for the whole binary; each case starts from the
/// freshly registered state with a fixture that has recorded nothing.
fn main() -> std::process::ExitCode {
    trials::run(
        Env::new(),
        sealtune_e2e::cases![
            create_deposit_transfer_retrieve_moves_balances,
            create_account_below_minimum_is_a_typed_revert_and_changes_nothing,
            transfer_errors_say_what_to_do_next,
            list_service_shows_the_registered_provider,
            acknowledge_model_marks_the_deliverable_once,
            wrong_contract_address_is_a_config_error,
        ],
        Isolation::SnapshotAnd(|env| &env.anvil, Env::reset),
    )
}

async fn create_deposit_transfer_retrieve_moves_balances(env: &Env) {
    let c = env.client(&env.user);
    let user = env.user.address();
    let provider = env.provider.address();
    let wallet_before = c.chain.wallet_balance(user).await.unwrap();
    assert!(c.chain.ledger_of(user).await.unwrap().is_none());

    c.chain.create_account(ether(3), "me").await.unwrap();
    let l = c.chain.ledger_of(user).await.unwrap().unwrap();
    assert_eq!((l.available_balance, l.total_balance), (ether(3), ether(3)));
    assert_eq!(l.additional_info, "me");

    c.chain.deposit_fund(ether(2)).await.unwrap();
    let l = c.chain.ledger_of(user).await.unwrap().unwrap();
    assert_eq!((l.available_balance, l.total_balance), (ether(5), ether(5)));
    let wallet_after = c.chain.wallet_balance(user).await.unwrap();
    assert!(
        wallet_before - wallet_after >= ether(5),
        "the wallet paid the deposits"
    );

    assert_eq!(c.chain.service_name().await.unwrap(), "fine-tuning-v1.0");
    c.chain
        .transfer_fund(provider, ether(2), None)
        .await
        .unwrap();
    let a = c.chain.account(user, provider).await.unwrap().unwrap();
    assert_eq!(a.balance, ether(2));
    assert!(
        a.acknowledged,
        "funding acknowledges the provider's TEE signer"
    );
    let l = c.chain.ledger_of(user).await.unwrap().unwrap();
    assert_eq!((l.available_balance, l.total_balance), (ether(3), ether(5)));
    assert_eq!(
        c.chain.sub_account_providers(user).await.unwrap(),
        vec![provider]
    );

    // Retrieving: first a refund request (locked for a day), then, after the lock time, the money.
    let (providers, _) = c.chain.retrieve_fund(&[]).await.unwrap();
    assert_eq!(providers, vec![provider]);
    let a = c.chain.account(user, provider).await.unwrap().unwrap();
    assert_eq!(a.pending_refund, ether(2));
    assert_eq!(a.refunds.len(), 1);
    assert_eq!(
        c.chain
            .ledger_of(user)
            .await
            .unwrap()
            .unwrap()
            .available_balance,
        ether(3)
    );
    env.increase_time(c.chain.lock_time().await.unwrap()).await;
    c.chain.retrieve_fund(&[provider]).await.unwrap();
    let l = c.chain.ledger_of(user).await.unwrap().unwrap();
    assert_eq!((l.available_balance, l.total_balance), (ether(5), ether(5)));
    assert_eq!(
        c.chain
            .account(user, provider)
            .await
            .unwrap()
            .unwrap()
            .balance,
        U256::ZERO
    );

    // Back to the wallet.
    c.chain.refund(ether(2)).await.unwrap();
    assert_eq!(
        c.chain
            .ledger_of(user)
            .await
            .unwrap()
            .unwrap()
            .total_balance,
        ether(3)
    );

    let summary = c.account_summary().await.unwrap();
    assert_eq!(summary.sub_accounts.len(), 1);
    assert_eq!(summary.ledger.unwrap().available_balance, ether(3));
}

async fn create_account_below_minimum_is_a_typed_revert_and_changes_nothing(env: &Env) {
    let c = env.client(&env.user);
    let user = env.user.address();
    let e = c.chain.create_account(ether(1), "").await.unwrap_err();
    assert_eq!(e.revert_name(), Some("MinimumDepositRequired"), "{e}");
    assert_eq!(e.exit_code(), exit::CHAIN);
    assert!(
        e.hint().unwrap().contains("at least 3 0G"),
        "{:?}",
        e.hint()
    );
    assert!(c.chain.ledger_of(user).await.unwrap().is_none());
    assert_eq!(env.tx_count(user).await, 0, "nothing was sent");

    // The refused gas estimation leaves no nonce gap: the next transaction goes through.
    c.chain.create_account(ether(3), "").await.unwrap();
    assert_eq!(env.tx_count(user).await, 1);
}

async fn transfer_errors_say_what_to_do_next(env: &Env) {
    let c = env.client(&env.user);
    let user = env.user.address();
    let provider = env.provider.address();

    // No ledger yet.
    let e = c
        .chain
        .transfer_fund(provider, ether(1), None)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::NoLedger(a) if a == user), "{e}");
    assert!(e.hint().unwrap().contains("sealtune create-account"));

    c.chain.create_account(ether(3), "").await.unwrap();

    // Unknown provider: refused before anything is sent.
    let sent = env.tx_count(user).await;
    let stranger = Address::repeat_byte(0x42);
    let e = c
        .chain
        .transfer_fund(stranger, ether(1), None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, ClientError::UnknownProvider(a) if a == stranger),
        "{e}"
    );
    assert_eq!(e.exit_code(), exit::CHAIN);
    assert!(e.hint().unwrap().contains("sealtune list-service"));
    assert_eq!(env.tx_count(user).await, sent);

    // Below the first-transfer minimum, then more than available.
    let e = c
        .chain
        .transfer_fund(provider, ether(1) / U256::from(2u8), None)
        .await
        .unwrap_err();
    assert_eq!(e.revert_name(), Some("MinimumDepositRequired"), "{e}");
    let e = c
        .chain
        .transfer_fund(provider, ether(4), None)
        .await
        .unwrap_err();
    assert_eq!(e.revert_name(), Some("InsufficientAvailableBalance"), "{e}");
    assert!(
        e.hint().unwrap().contains("sealtune deposit-fund"),
        "{:?}",
        e.hint()
    );
    assert_eq!(
        env.tx_count(user).await,
        sent,
        "refused transfers send nothing"
    );
    assert!(c.chain.account(user, provider).await.unwrap().is_none());

    // A wrong service name is a typed revert too.
    let e = c
        .chain
        .transfer_fund(provider, ether(1), Some("inference-v9"))
        .await
        .unwrap_err();
    assert_eq!(e.revert_name(), Some("InvalidServiceType"), "{e}");

    // And after all those refusals the next valid transfer goes through.
    c.chain
        .transfer_fund(provider, ether(1), None)
        .await
        .unwrap();
    assert_eq!(
        c.chain
            .account(user, provider)
            .await
            .unwrap()
            .unwrap()
            .balance,
        ether(1)
    );
}

async fn list_service_shows_the_registered_provider(env: &Env) {
    // Listing needs no key.
    let ch = env.chain(None);
    let services = ch.list_services().await.unwrap();
    assert_eq!(services.len(), 1);
    let s = &services[0];
    assert_eq!(s.provider, env.provider.address());
    assert_eq!(s.url, env.fixture.url);
    assert_eq!(s.tee_signer, env.tee.address());
    assert!(s.tee_signer_acknowledged);
    assert_eq!(s.price_per_token, U256::from(common::GWEI_PRICE));
    assert_eq!(s.models, vec!["SmolLM2-135M-Instruct".to_string()]);
    assert_eq!(s.quota.gpu_type, "H100");
    assert_eq!(ch.service(env.provider.address()).await.unwrap(), *s);

    // A read-only chain refuses what needs the key, with the way to give one.
    let e = ch.create_account(ether(3), "").await.unwrap_err();
    assert_eq!(e.exit_code(), exit::CONFIG);
    assert!(e.to_string().contains("--key"), "{e}");
}

async fn acknowledge_model_marks_the_deliverable_once(env: &Env) {
    let c = env.client(&env.user);
    let user = env.user.address();
    let provider = env.provider.address();
    let id = "0b7e1f4e-33c1-4f0c-9a39-2f7f7b0c1d2e";

    // No sub-account yet, then nothing delivered yet: typed errors, not raw reverts.
    let e = c.acknowledge_model(provider, id, None).await.unwrap_err();
    assert!(
        matches!(e, ClientError::NoSubAccount(p) if p == provider),
        "{e}"
    );
    c.chain.create_account(ether(3), "").await.unwrap();
    c.chain
        .transfer_fund(provider, ether(1), None)
        .await
        .unwrap();
    let e = c.acknowledge_model(provider, id, None).await.unwrap_err();
    assert_eq!(e.exit_code(), exit::NOT_READY, "{e}");

    env.deliver(user, id, &[0xab; 32]).await;
    assert!(!c.deliverable(provider, id).await.unwrap().acknowledged);

    let (check, tx) = c.acknowledge_model(provider, id, None).await.unwrap();
    assert!(check.is_none());
    assert!(tx.is_some());
    let d = c.deliverable(provider, id).await.unwrap();
    assert!(d.acknowledged);
    assert_eq!(d.model_root_hash.as_ref(), &[0xab; 32]);
    let (_, again) = c.acknowledge_model(provider, id, None).await.unwrap();
    assert!(again.is_none(), "already acknowledged: nothing sent");

    // Another customer cannot acknowledge it (no such deliverable on their account).
    let other = env.client(&env.user2);
    assert!(other.acknowledge_model(provider, id, None).await.is_err());

    // A malformed task id is refused locally.
    let e = c
        .acknowledge_model(provider, "not-a-uuid", None)
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), exit::USAGE, "{e}");
}

async fn wrong_contract_address_is_a_config_error(env: &Env) {
    let mut contracts = env.contracts();
    contracts.serving = Address::repeat_byte(0x77);
    let ch = sealtune_client::chain::Chain::connect(&env.rpc(), contracts, None).unwrap();
    let e = ch.list_services().await.unwrap_err();
    assert_eq!(e.exit_code(), exit::CONFIG, "{e}");
    assert!(e.to_string().contains("no contract"), "{e}");
}
