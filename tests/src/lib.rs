//! Shared helpers for sealtune's end-to-end and smoke tests: where the set-up put the tools, and
//! processes that are stopped when the test ends.
//!
//! Every helper fails with a message that says what to run when a tool is missing, never skips.
#![deny(missing_docs)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The checkout's root directory: `$SEALTUNE_ROOT` (set by `scripts/env`) when set, else the directory
/// this crate was compiled in. The run-time value wins so that a test binary that Cargo reused from
/// another checkout of the same commit (one target dir per machine) still looks in this checkout.
pub fn repo_root() -> PathBuf {
    if let Some(root) = std::env::var_os("SEALTUNE_ROOT") {
        return PathBuf::from(root);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The fixtures directory: `$SEALTUNE_FIXTURES` when set, else `tests/fixtures` in the checkout
/// (real quotes, collateral, GPU evidence and the official ABIs; provenance in its README).
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("SEALTUNE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("tests/fixtures"))
}

/// A fixture file by path relative to [`fixtures_dir`]; panics saying where it was looked for.
pub fn fixture(rel: &str) -> PathBuf {
    let p = fixtures_dir().join(rel);
    assert!(
        p.exists(),
        "fixture {rel} not found at {}: the fixtures live in tests/fixtures of the checkout \
         (or where SEALTUNE_FIXTURES points)",
        p.display()
    );
    p
}

/// An executable installed by `scripts/setup` under `node_modules/.bin`.
pub fn node_tool(name: &str) -> PathBuf {
    let p = repo_root().join("node_modules/.bin").join(name);
    assert!(
        p.exists(),
        "{name} not found at {}: run scripts/setup (it installs the pinned npm tools)",
        p.display()
    );
    p
}

/// The project venv's Python interpreter.
pub fn venv_python() -> PathBuf {
    let p = repo_root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "the project venv is missing ({}): run scripts/setup",
        p.display()
    );
    p
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

/// A child process killed (and reaped) when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A local anvil chain on loopback, stopped on drop.
pub struct Anvil {
    _child: ChildGuard,
    /// The JSON-RPC endpoint, `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The chain id it runs with.
    pub chain_id: u64,
}

impl Anvil {
    /// Start anvil with the given chain id and wait until it accepts connections (at most 10 s).
    pub fn start(chain_id: u64) -> Anvil {
        let port = free_port();
        let child = Command::new(node_tool("anvil"))
            .args([
                "--silent",
                "--port",
                &port.to_string(),
                "--chain-id",
                &chain_id.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start anvil: {e}"));
        let child = ChildGuard(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "anvil did not listen on port {port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Anvil {
            _child: child,
            endpoint: format!("http://127.0.0.1:{port}"),
            chain_id,
        }
    }
}

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
pub fn compile_solidity(file: &str, source: &str) -> std::collections::BTreeMap<String, Compiled> {
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
            let bytecode = (0..hex_code.len() / 2)
                .map(|i| u8::from_str_radix(&hex_code[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
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

/// Run a command to completion and return its stdout; panic with its stderr when it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fixture's bytes (path relative to [`fixtures_dir`]); panics saying where it was looked for.
pub fn fixture_bytes(rel: &str) -> Vec<u8> {
    let p = fixture(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading fixture {}: {e}", p.display()))
}
