//! The committed artifacts are what `node contracts/build.cjs` produces from `contracts/sol`, and
//! the runtime code fits the EIP-170 limit.

use std::path::PathBuf;
use std::process::Command;

const CONTRACTS: [&str; 2] = ["FineTuningServing", "LedgerManager"];

#[test]
fn committed_artifacts_match_a_fresh_compile() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().expect("tempdir");
    let result = Command::new("node")
        .arg(manifest.join("build.cjs"))
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap_or_else(|e| {
            panic!("running node failed ({e}): install Node.js and run scripts/setup")
        });
    assert!(
        result.status.success(),
        "node contracts/build.cjs failed:\n{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    for name in CONTRACTS {
        let fresh = std::fs::read_to_string(out.path().join(format!("{name}.json")))
            .expect("fresh artifact");
        let committed = std::fs::read_to_string(manifest.join(format!("artifacts/{name}.json")))
            .unwrap_or_default();
        assert!(
            fresh == committed,
            "contracts/artifacts/{name}.json is stale (sources or compiler settings changed): run `node contracts/build.cjs` and commit the result"
        );
    }
}

#[test]
fn runtime_code_fits_eip170() {
    for artifact in [
        sealtune_contracts::FINE_TUNING_SERVING_ARTIFACT,
        sealtune_contracts::LEDGER_MANAGER_ARTIFACT,
    ] {
        let v: serde_json::Value = serde_json::from_str(artifact).unwrap();
        let code = v["deployedBytecode"].as_str().unwrap();
        let size = (code.len() - 2) / 2;
        assert!(
            size <= 24_576,
            "{} runtime code is {size} bytes, over 24576",
            v["contractName"]
        );
    }
}
