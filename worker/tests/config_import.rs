//! `sealtune-worker config import-0g` on 0G's own example (`tests/fixtures/0g/customized-models.yaml`,
//! with the `servingUrl` and `privateKeys` lines 0G's guide has a provider set): the result passes
//! `sealtune-worker config check`, every key is accounted for, and the wallet key is never written.
use std::path::Path;
use std::process::Command;

use sealtune_e2e::chain::DEV_KEYS;
use sealtune_e2e::fixtures::{fixture, repo_root};

/// The worker binary with no SEALTUNE_* variable but `env`; returns (exit code, stdout, stderr).
fn worker(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealtune-worker"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("SEALTUNE_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// 0G's example as a provider's `config.local.yaml`: the guide's servingUrl and privateKeys, the
/// broker's own database section, and the vendored customizedModels block.
fn config_local_yaml(dir: &Path) -> std::path::PathBuf {
    let models = std::fs::read_to_string(fixture("0g/customized-models.yaml")).unwrap();
    let yaml = format!(
        "servingUrl: \"https://ft.example.com:3080\"\nprivateKeys:\n  - \"{}\"\ndatabase:\n  fineTune: \"root:s3cret@tcp(mysql:3306)/fineTune\"\n{models}",
        DEV_KEYS[1]
    );
    let path = dir.join("config.local.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn the_0g_example_imports_and_passes_config_check_without_its_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = config_local_yaml(dir.path());
    let out = dir.path().join("worker.toml");
    let scripts = repo_root().join("scripts/training");
    let (code, stdout, stderr) = worker(
        &[
            "config",
            "import-0g",
            yaml.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--scripts-dir",
            scripts.to_str().unwrap(),
            "--serving",
            "0x5FbDB2315678afecb367f032d93F642f64180aa3",
            "--ledger",
            "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
            "--storage-indexer",
            "https://indexer-storage-testnet-turbo.0g.ai",
            "--json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let toml = std::fs::read_to_string(&out).unwrap();
    assert_eq!(doc["toml"], toml.as_str());
    // No secret of the 0G file reaches the TOML or the report.
    for secret in [&DEV_KEYS[1][2..], "s3cret"] {
        assert!(
            !stdout.contains(secret) && !toml.contains(secret),
            "{secret} leaked"
        );
    }
    let note = |key: &str| {
        doc["notes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["key"] == key)
            .unwrap_or_else(|| panic!("no note for {key}: {stdout}"))
            .clone()
    };
    assert_eq!(note("servingUrl")["outcome"], "carried");
    assert_eq!(note("privateKeys")["outcome"], "dropped");
    assert!(
        note("privateKeys")["why"]
            .as_str()
            .unwrap()
            .contains("SEALTUNE_PRIVATE_KEY")
    );
    assert_eq!(note("database")["outcome"], "dropped");
    assert_eq!(note("private_key")["outcome"], "needed");
    for i in 0..2 {
        let m = format!("service.customizedModels[{i}]");
        assert_eq!(note(&format!("{m}.trainingScript"))["outcome"], "converted");
        assert_eq!(note(&format!("{m}.hash"))["outcome"], "converted");
        for k in ["name", "image", "dataType", "description", "tokenizer"] {
            assert_eq!(note(&format!("{m}.{k}"))["outcome"], "carried", "{m}.{k}");
        }
    }

    // The wallet key comes from the environment, as in the CVM; the rest is in the file.
    let (code, stdout, stderr) = worker(
        &[
            "config",
            "check",
            "--json",
            "--config",
            out.to_str().unwrap(),
        ],
        &[("SEALTUNE_PRIVATE_KEY", DEV_KEYS[1])],
    );
    let check: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert_eq!(code, 0, "{}\n{stderr}", check["problems"]);
    let models = check["config"]["service"]["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    assert_eq!(models[0]["name"], "deepseek-r1-distill-qwen-1.5b");
    assert_eq!(
        models[0]["weights"]["root"],
        "0x1d98b2088bd094f879315ac29edd471638204cd45e7c8d066ee88fbc7c174ce7"
    );
    assert_eq!(models[1]["data_type"], "image");
    assert_eq!(
        check["config"]["serving_url"],
        "https://ft.example.com:3080"
    );

    // Without the key in the environment the check names what is missing.
    let (code, _, stderr) = worker(&["config", "check", "--config", out.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("SEALTUNE_PRIVATE_KEY"), "{stderr}");

    // An existing file is never overwritten.
    let (code, _, stderr) = worker(
        &[
            "config",
            "import-0g",
            yaml.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("not overwritten"), "{stderr}");
}
