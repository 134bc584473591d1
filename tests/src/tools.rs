//! The tools `scripts/setup` installs (the pinned npm tools, the project venv), free loopback ports,
//! and running a command to completion.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use crate::fixtures::repo_root;

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

/// The checkout's `node_modules` (the pinned npm packages `scripts/setup` installs), for `NODE_PATH`.
pub fn node_modules() -> PathBuf {
    repo_root().join("node_modules")
}

/// `node <script>` with `NODE_PATH` set to [`node_modules`], so the script finds the pinned packages.
pub fn node(script: impl AsRef<std::path::Path>) -> Command {
    let mut cmd = Command::new("node");
    cmd.arg(script.as_ref()).env("NODE_PATH", node_modules());
    cmd
}

/// The offline Hugging Face cache: `$HF_HUB_CACHE` (set by `scripts/env`) when set, else `.sealtune/hf`
/// in the checkout, where `scripts/setup` converts the models.
pub fn hf_cache() -> PathBuf {
    std::env::var_os("HF_HUB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".sealtune/hf"))
}
