//! Smoke tests of the chain tooling the set-up installs: anvil and solc (solc-js from npm).

use sealtune_e2e::{Anvil, DEV_KEYS, node_tool, run_ok, signer};
use std::process::Command;

fn json_rpc(endpoint: &str, method: &'static str) -> serde_json::Value {
    use alloy::providers::Provider;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        sealtune_e2e::chain::reader(endpoint)
            .raw_request::<(), serde_json::Value>(method.into(), ())
            .await
            .unwrap()
    })
}

#[test]
fn dev_keys_are_the_accounts_anvil_funds() {
    let anvil = Anvil::dev();
    let accounts = json_rpc(&anvil.endpoint, "eth_accounts");
    let expected: Vec<String> = (0..DEV_KEYS.len())
        .map(|i| format!("{:#x}", signer(i).address()))
        .collect();
    assert_eq!(accounts, serde_json::json!(expected));
}

#[test]
fn anvil_starts_and_answers_json_rpc() {
    let anvil = Anvil::start(16602);
    let chain_id = json_rpc(&anvil.endpoint, "eth_chainId");
    assert_eq!(
        chain_id,
        serde_json::json!("0x40da"),
        "anvil reports the chain id it was started with"
    );
    let block = json_rpc(&anvil.endpoint, "eth_blockNumber");
    assert_eq!(
        block,
        serde_json::json!("0x0"),
        "a fresh anvil chain is at block 0"
    );
}

#[test]
fn solc_compiles_a_contract() {
    let contracts = sealtune_e2e::compile_solidity(
        "Counter.sol",
        "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.0;\ncontract Counter { uint256 public n; function inc() external { n += 1; } }",
    );
    let c = &contracts["Counter"];
    let abi: Vec<&str> = c
        .abi
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(abi, ["inc", "n"]);
    assert!(
        c.bytecode.starts_with(&[0x60, 0x80]),
        "creation bytecode starts with the free-memory-pointer prelude: {:02x?}",
        &c.bytecode[..c.bytecode.len().min(8)]
    );
    // and the packaged solcjs binary answers too
    let v = run_ok(Command::new(node_tool("solcjs")).arg("--version"));
    assert!(v.starts_with("0.8.37"), "pinned solc version, got {v}");
}
