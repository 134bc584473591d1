//! The official 0G SDK's library API, under node, against sealtune's contracts on anvil: create a
//! ledger, deposit, transfer to a provider, read the ledger, the account and the service list. Every
//! value the SDK reads must equal what the alloy bindings read.

use alloy::primitives::U256;
use sealtune_e2e::contracts::Env;
use sealtune_e2e::{ether, repo_root};
use serde_json::Value;

#[tokio::test]
async fn official_sdk_funds_and_reads_like_the_bindings() {
    let env = Env::new().await;
    env.register_provider().await;
    let key = format!("0x{}", alloy::hex::encode(env.user.credential().to_bytes()));
    let out = sealtune_e2e::node(repo_root().join("contracts/tests/js/sdk_ledger.cjs"))
        .env("RPC", env.rpc())
        .env("KEY", key)
        .env("LEDGER", env.deployment.ledger.to_string())
        .env("SERVING", env.deployment.serving.to_string())
        .env("PROVIDER", env.provider.address().to_string())
        .output()
        .expect("node runs (installed by scripts/setup)");
    assert!(
        out.status.success(),
        "the official SDK failed against sealtune's contracts:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("SDK_RESULT "))
        .unwrap_or_else(|| panic!("no SDK_RESULT line in:\n{stdout}"));
    let sdk: Value = serde_json::from_str(line).expect("the script prints JSON");

    // The ledger: 3 + 2 deposited, 1.5 moved to the provider.
    let ledger = env
        .ledger(&env.user)
        .getLedger(env.user.address())
        .call()
        .await
        .unwrap();
    assert_eq!(
        sdk["ledger"]["totalBalance"],
        ledger.totalBalance.to_string()
    );
    assert_eq!(
        sdk["ledger"]["availableBalance"],
        ledger.availableBalance.to_string()
    );
    assert_eq!(ledger.totalBalance, ether(5));
    assert_eq!(
        ledger.availableBalance,
        ether(5) - ether(1) / U256::from(2u64) * U256::from(3u64)
    );

    // The fine-tuning sub-account, created by the SDK's transferFund, acknowledged by funding.
    let account = env
        .serving(&env.user)
        .getAccount(env.user.address(), env.provider.address())
        .call()
        .await
        .unwrap();
    assert_eq!(sdk["account"]["balance"], account.balance.to_string());
    assert_eq!(sdk["account"]["nonce"], account.nonce.to_string());
    assert_eq!(
        sdk["account"]["pendingRefund"],
        account.pendingRefund.to_string()
    );
    assert_eq!(sdk["account"]["acknowledged"], account.acknowledged);
    assert_eq!(account.balance, ether(3) / U256::from(2u64));
    assert!(account.acknowledged);
    assert!(
        sdk["account"]["provider"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case(&env.provider.address().to_string())
    );

    // The service list.
    let services = env
        .serving(&env.user)
        .getAllServices()
        .call()
        .await
        .unwrap();
    let listed = sdk["services"].as_array().unwrap();
    assert_eq!(listed.len(), services.len());
    let s = &services[0];
    assert_eq!(listed[0]["url"], s.url.as_str());
    assert_eq!(listed[0]["pricePerToken"], s.pricePerToken.to_string());
    assert_eq!(listed[0]["teeSignerAcknowledged"], s.teeSignerAcknowledged);
    assert_eq!(listed[0]["models"], serde_json::json!(s.models));
    assert!(
        listed[0]["teeSignerAddress"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case(&s.teeSignerAddress.to_string())
    );
}
