//! LedgerManager rules of PROTOCOL.md §1, one test per rule, against a real anvil.

use alloy::primitives::{Address, U256};
use sealtune_contracts::{DeployConfig, FINE_TUNING_SERVICE_NAME};
use sealtune_e2e::contracts::*;
use sealtune_e2e::trials::{self, Isolation};
use sealtune_e2e::{ether, send};

/// One anvil with the contracts for the whole binary; each case starts from the freshly deployed state.
fn main() -> std::process::ExitCode {
    trials::run(
        Env::new(),
        sealtune_e2e::cases![
            ledger_requires_minimum_3_ether,
            transfer_fund_creates_then_tops_up_sub_account,
            retrieve_fund_takes_two_calls_a_lock_time_apart,
            retrieve_fund_at_most_20_providers,
            spend_fund_only_by_registered_service,
            fine_tuning_registered_under_official_name,
            register_service_is_owner_only_and_unique,
            refund_leaves_zero_or_minimum_and_zero_deletes_sub_accounts,
            deploy_hands_ownership_to_configured_owner,
        ],
        Isolation::Snapshot(|env| &env.anvil),
    )
}

async fn ledger_requires_minimum_3_ether(env: &Env) {
    let l = env.ledger(&env.user);
    assert_revert(
        send!(l.addLedger(String::new()).value(ether(2))),
        "MinimumDepositRequired",
    );
    assert_revert(
        send!(l.depositFund().value(ether(2))),
        "MinimumDepositRequired",
    );
    send!(l.depositFund().value(ether(3))).unwrap();
    assert_revert(
        send!(l.addLedger(String::new()).value(ether(3))),
        "LedgerExists",
    );
    send!(l.depositFund().value(ether(1))).unwrap();
    send!(
        env.ledger(&env.user2)
            .depositFundFor(env.user.address())
            .value(ether(1))
    )
    .unwrap();
    let ledger = l.getLedger(env.user.address()).call().await.unwrap();
    assert_eq!(ledger.totalBalance, ether(5));
    assert_eq!(ledger.availableBalance, ether(5));
}

async fn transfer_fund_creates_then_tops_up_sub_account(env: &Env) {
    env.register_provider().await;
    let (u, p) = (env.user.address(), env.provider.address());
    let l = env.ledger(&env.user);
    send!(l.addLedger("info".into()).value(ether(10))).unwrap();
    assert_revert(
        send!(l.transferFund(p, SERVICE.into(), ether(1) / U256::from(2u64))),
        "MinimumDepositRequired",
    );
    assert_revert(
        send!(l.transferFund(p, SERVICE.into(), ether(11))),
        "InsufficientAvailableBalance",
    );
    send!(l.transferFund(p, SERVICE.into(), ether(2))).unwrap();
    let s = env.serving(&env.user);
    assert_eq!(s.getAccount(u, p).call().await.unwrap().balance, ether(2));
    assert_eq!(
        l.getLedgerProviders(u, SERVICE.into())
            .call()
            .await
            .unwrap(),
        vec![p]
    );
    // top-up first cancels pending refunds (no new funds locked for that part)
    send!(l.retrieveFund(vec![p], SERVICE.into())).unwrap();
    assert_eq!(s.getPendingRefund(u, p).call().await.unwrap(), ether(2));
    send!(l.transferFund(p, SERVICE.into(), ether(3))).unwrap();
    let acc = s.getAccount(u, p).call().await.unwrap();
    assert_eq!(acc.balance, ether(3));
    assert_eq!(acc.pendingRefund, U256::ZERO);
    let ledger = l.getLedger(u).call().await.unwrap();
    assert_eq!(ledger.availableBalance, ether(7));
    assert_eq!(ledger.totalBalance, ether(10));
}

async fn retrieve_fund_takes_two_calls_a_lock_time_apart(env: &Env) {
    env.register_provider().await;
    env.fund(&env.user, 10, 4).await;
    let (u, p) = (env.user.address(), env.provider.address());
    let l = env.ledger(&env.user);
    send!(l.retrieveFund(vec![p], SERVICE.into())).unwrap();
    assert_eq!(
        l.getLedger(u).call().await.unwrap().availableBalance,
        ether(6)
    );
    env.increase_time(86_400).await;
    send!(l.retrieveFund(vec![p], SERVICE.into())).unwrap();
    let ledger = l.getLedger(u).call().await.unwrap();
    assert_eq!(ledger.availableBalance, ether(10));
    assert_eq!(ledger.totalBalance, ether(10));
    assert_eq!(
        env.serving(&env.user)
            .getAccount(u, p)
            .call()
            .await
            .unwrap()
            .balance,
        U256::ZERO
    );
}

async fn retrieve_fund_at_most_20_providers(env: &Env) {
    let l = env.ledger(&env.user);
    send!(l.addLedger(String::new()).value(ether(3))).unwrap();
    let many = vec![Address::repeat_byte(1); 21];
    assert_revert(
        send!(l.retrieveFund(many, SERVICE.into())),
        "TooManyProviders",
    );
    send!(l.retrieveFund(vec![Address::repeat_byte(1); 20], SERVICE.into())).unwrap();
}

async fn spend_fund_only_by_registered_service(env: &Env) {
    let l = env.ledger(&env.user);
    send!(l.addLedger(String::new()).value(ether(3))).unwrap();
    assert_revert(
        send!(l.spendFund(env.user.address(), ether(1))),
        "CallerNotRegisteredService",
    );
}

async fn fine_tuning_registered_under_official_name(env: &Env) {
    let l = env.ledger(&env.user);
    let info = l
        .getServiceInfo(env.deployment.serving)
        .call()
        .await
        .unwrap();
    assert_eq!(info.fullName, FINE_TUNING_SERVICE_NAME);
    assert_eq!(info.serviceType, "fine-tuning");
    assert_eq!(info.version, "v1.0");
    assert!(info.isRecommended);
    assert_eq!(
        l.getServiceAddressByName(FINE_TUNING_SERVICE_NAME.into())
            .call()
            .await
            .unwrap(),
        env.deployment.serving
    );
    let rec = l
        .getRecommendedService("fine-tuning".into())
        .call()
        .await
        .unwrap();
    assert_eq!(rec.serviceAddress, env.deployment.serving);
    assert!(
        l.isRecommendedVersion("fine-tuning".into(), "v1.0".into())
            .call()
            .await
            .unwrap()
    );
    assert_eq!(l.getAllActiveServices().call().await.unwrap().len(), 1);
    assert_revert(
        l.getServiceInfo(Address::repeat_byte(9))
            .call()
            .await
            .map_err(Into::into),
        "ServiceNotFound",
    );
    // the SDK's `transferFund(provider, 'fine-tuning', ...)` resolves a type to its recommended version
    env.register_provider().await;
    send!(l.addLedger(String::new()).value(ether(3))).unwrap();
    send!(l.transferFund(env.provider.address(), "fine-tuning".into(), ether(1))).unwrap();
    assert_revert(
        send!(l.transferFund(env.provider.address(), "inference".into(), ether(1))),
        "InvalidServiceType",
    );
}

async fn register_service_is_owner_only_and_unique(env: &Env) {
    let serving = env.deployment.serving;
    assert_revert(
        send!(env.ledger(&env.user).registerService(
            "fine-tuning".into(),
            "v2".into(),
            serving,
            String::new()
        )),
        "OwnableUnauthorizedAccount",
    );
    let l = env.ledger(&env.owner);
    assert_revert(
        send!(l.registerService("fine-tuning".into(), "v2".into(), serving, String::new())),
        "ServiceAlreadyRegistered",
    );
    assert_revert(
        send!(l.registerService(String::new(), "v2".into(), serving, String::new())),
        "ServiceTypeRequired",
    );
    assert_revert(
        send!(l.registerService("x".into(), "v1".into(), env.user.address(), String::new())),
        "InvalidServiceAddress",
    );
    assert_revert(
        send!(l.registerService(
            "x".into(),
            "v1".into(),
            env.deployment.ledger,
            String::new()
        )),
        "ServiceMustImplementIServing",
    );
}

async fn refund_leaves_zero_or_minimum_and_zero_deletes_sub_accounts(env: &Env) {
    env.register_provider().await;
    env.fund(&env.user, 5, 1).await;
    let (u, p) = (env.user.address(), env.provider.address());
    let l = env.ledger(&env.user);
    assert_revert(send!(l.refund(ether(5))), "InsufficientAvailableBalance");
    assert_revert(send!(l.refund(ether(3))), "MinimumDepositRequired");
    assert_revert(send!(l.deleteLedger()), "MustWithdrawAllFundsFirst");
    send!(l.retrieveFund(vec![p], SERVICE.into())).unwrap();
    env.increase_time(86_400).await;
    send!(l.retrieveFund(vec![p], SERVICE.into())).unwrap();
    let before = env.balance(u).await;
    send!(l.refund(ether(5))).unwrap();
    assert!(env.balance(u).await > before + ether(4));
    assert!(
        !env.serving(&env.user)
            .accountExists(u, p)
            .call()
            .await
            .unwrap()
    );
    assert!(
        l.getLedgerProviders(u, SERVICE.into())
            .call()
            .await
            .unwrap()
            .is_empty()
    );
    send!(l.deleteLedger()).unwrap();
    assert_revert(
        l.getLedger(u).call().await.map_err(Into::into),
        "LedgerNotExists",
    );
}

async fn deploy_hands_ownership_to_configured_owner(env: &Env) {
    let owner = Address::repeat_byte(0x77);
    let env = Env::on(
        env.anvil.clone(),
        DeployConfig {
            owner: Some(owner),
            ..DeployConfig::default()
        },
    )
    .await;
    assert_eq!(env.serving(&env.user).owner().call().await.unwrap(), owner);
    assert_eq!(env.ledger(&env.user).owner().call().await.unwrap(), owner);
}
