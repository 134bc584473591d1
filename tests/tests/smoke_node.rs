//! Smoke tests of the official 0G packages and eciesjs under node (the compatibility oracles).

use sealtune_e2e::{node_tool, repo_root, run_ok};
use std::process::Command;

#[test]
fn official_0g_compute_cli_reports_its_pinned_version() {
    let out = run_ok(Command::new(node_tool("0g-compute-cli")).arg("--version"));
    assert_eq!(
        out.trim(),
        "0.9.0",
        "the pinned @0gfoundation/0g-compute-ts-sdk"
    );
}

#[test]
fn eciesjs_round_trips_under_node() {
    let script = r#"
const { PrivateKey, encrypt, decrypt } = require('eciesjs');
const sk = new PrivateKey();
const msg = Buffer.from('sealtune model key 0123456789abcdef');
const ct = encrypt(sk.publicKey.toHex(), msg);
const pt = decrypt(sk.secret, ct);
console.log(JSON.stringify({ ok: Buffer.compare(pt, msg) === 0, ctLen: ct.length, msgLen: msg.length }));
"#;
    let out = run_ok(
        Command::new("node")
            .arg("-e")
            .arg(script)
            .env("NODE_PATH", repo_root().join("node_modules")),
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    // eciesjs 0.4 defaults: 65-byte uncompressed ephemeral key, 16-byte nonce, 16-byte tag, then the ciphertext
    assert_eq!(
        v["ctLen"].as_u64().unwrap(),
        65 + 16 + 16 + v["msgLen"].as_u64().unwrap(),
        "{v}"
    );
}
