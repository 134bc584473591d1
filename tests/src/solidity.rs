//! Compiling Solidity test contracts (stand-ins for the 0G storage contracts and the like) with the
//! pinned solc-js under node.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use crate::fixtures::repo_root;
use crate::tools::node_tool;

/// A contract compiled by the pinned solc-js (`node_modules/solc`): its ABI (JSON) and creation
/// bytecode.
pub struct Compiled {
    /// The ABI, as solc prints it.
    pub abi: serde_json::Value,
    /// The creation bytecode.
    pub bytecode: Vec<u8>,
}

/// Compiles the Solidity `source` (file name `file`) with the pinned solc-js under node and returns
/// every contract in it by name; panics with solc's errors when it does not compile.
pub fn compile_solidity(file: &str, source: &str) -> BTreeMap<String, Compiled> {
    use std::io::Write as _;
    let input = serde_json::json!({
        "language": "Solidity",
        "sources": {file: {"content": source}},
        "settings": {"optimizer": {"enabled": true, "runs": 200},
                     "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}}}
    });
    let _ = node_tool("solcjs"); // a clear message when the npm tools are missing
    let mut child = Command::new("node")
        .arg("-e")
        .arg("const solc=require('solc');let s='';process.stdin.on('data',d=>s+=d).on('end',()=>process.stdout.write(solc.compile(s)))")
        .env("NODE_PATH", repo_root().join("node_modules"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node: {e}"));
    child
        .stdin
        .take()
        .map(|mut i| i.write_all(input.to_string().as_bytes()))
        .unwrap_or_else(|| panic!("no stdin"))
        .unwrap_or_else(|e| panic!("writing to solc-js: {e}"));
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("solc-js: {e}"));
    assert!(
        out.status.success(),
        "solc-js failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("solc-js printed no JSON: {e}"));
    let errors: Vec<&serde_json::Value> = v["errors"]
        .as_array()
        .map(|a| a.iter().filter(|e| e["severity"] == "error").collect())
        .unwrap_or_default();
    assert!(errors.is_empty(), "{file} does not compile: {errors:?}");
    v["contracts"][file]
        .as_object()
        .unwrap_or_else(|| panic!("solc-js returned no contracts for {file}: {v}"))
        .iter()
        .map(|(name, c)| {
            let hex_code = c["evm"]["bytecode"]["object"].as_str().unwrap_or_default();
            let bytecode = hex::decode(hex_code)
                .unwrap_or_else(|e| panic!("bytecode of {name} is not hex: {e}"));
            (
                name.clone(),
                Compiled {
                    abi: c["abi"].clone(),
                    bytecode,
                },
            )
        })
        .collect()
}
