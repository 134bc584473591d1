//! Smoke tests of the chain tooling the set-up installs: anvil and solc (solc-js from npm).

use sealtune_e2e::{Anvil, node_tool, run_ok};
use std::io::Write;
use std::process::{Command, Stdio};

fn json_rpc(endpoint: &str, method: &'static str) -> serde_json::Value {
    use alloy::providers::{Provider, ProviderBuilder};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let provider = ProviderBuilder::new().connect_http(endpoint.parse().unwrap());
        provider
            .raw_request::<(), serde_json::Value>(method.into(), ())
            .await
            .unwrap()
    })
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
    let input = serde_json::json!({
        "language": "Solidity",
        "sources": {"Counter.sol": {"content":
            "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.0;\ncontract Counter { uint256 public n; function inc() external { n += 1; } }"}},
        "settings": {"optimizer": {"enabled": true, "runs": 200},
                     "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}}}
    });
    let mut child = Command::new("node")
        .arg("-e")
        .arg("const solc=require('solc');let s='';process.stdin.on('data',d=>s+=d).on('end',()=>process.stdout.write(solc.compile(s)))")
        .env("NODE_PATH", sealtune_e2e::repo_root().join("node_modules"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "solc-js failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v.get("errors").is_none_or(|e| e
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["severity"] != "error")),
        "{v}"
    );
    let c = &v["contracts"]["Counter.sol"]["Counter"];
    let abi: Vec<&str> = c["abi"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(abi, ["inc", "n"]);
    let bytecode = c["evm"]["bytecode"]["object"].as_str().unwrap();
    assert!(
        bytecode.starts_with("6080"),
        "creation bytecode starts with the free-memory-pointer prelude: {bytecode}"
    );
    // and the packaged solcjs binary answers too
    let v = run_ok(Command::new(node_tool("solcjs")).arg("--version"));
    assert!(v.starts_with("0.8.37"), "pinned solc version, got {v}");
}
