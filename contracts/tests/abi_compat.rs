//! Every entry of the official ABI files (`tests/fixtures/abi`, vendored from the official SDK) exists in
//! the committed artifacts with the same signature.

use std::collections::BTreeSet;

use serde_json::Value;

fn param_type(p: &Value) -> String {
    let ty = p["type"].as_str().unwrap_or_default();
    match ty.strip_prefix("tuple") {
        Some(suffix) => {
            let inner: Vec<String> = p["components"]
                .as_array()
                .into_iter()
                .flatten()
                .map(named)
                .collect();
            format!("({}){suffix}", inner.join(","))
        }
        None => ty.to_owned(),
    }
}

/// A parameter's type and name (ethers exposes results and struct fields by name, so names matter too).
fn named(p: &Value) -> String {
    format!(
        "{} {}",
        param_type(p),
        p["name"].as_str().unwrap_or_default()
    )
}

fn params(entry: &Value, key: &str, with_indexed: bool) -> String {
    entry[key]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let t = param_type(p);
            let name = p["name"].as_str().unwrap_or_default();
            if with_indexed && p["indexed"].as_bool() == Some(true) {
                format!("{t} indexed {name}")
            } else {
                format!("{t} {name}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A canonical signature: kind, name, inputs (with `indexed` for events), outputs and mutability.
fn signature(entry: &Value) -> String {
    let kind = entry["type"].as_str().unwrap_or_default();
    let name = entry["name"].as_str().unwrap_or_default();
    match kind {
        "function" => format!(
            "function {name}({}) returns ({}) {}",
            params(entry, "inputs", false),
            params(entry, "outputs", false),
            entry["stateMutability"].as_str().unwrap_or_default()
        ),
        "event" => format!(
            "event {name}({}){}",
            params(entry, "inputs", true),
            if entry["anonymous"] == true {
                " anonymous"
            } else {
                ""
            }
        ),
        "error" => format!("error {name}({})", params(entry, "inputs", false)),
        other => format!(
            "{other}({}) {}",
            params(entry, "inputs", false),
            entry["stateMutability"].as_str().unwrap_or_default()
        ),
    }
}

fn check(contract: &str, artifact: &str) {
    let official: Value = serde_json::from_slice(&sealtune_e2e::fixture_bytes(&format!(
        "abi/{contract}.abi.json"
    )))
    .expect("official ABI is JSON");
    let ours: Value = serde_json::from_str(artifact).expect("artifact is JSON");
    let have: BTreeSet<String> = ours["abi"]
        .as_array()
        .expect("abi array")
        .iter()
        .map(signature)
        .collect();
    let missing: Vec<String> = official
        .as_array()
        .expect("official ABI is an array")
        .iter()
        .map(signature)
        .filter(|s| !have.contains(s))
        .collect();
    assert!(
        missing.is_empty(),
        "{contract} lacks these entries of the official ABI:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn fine_tuning_serving_exposes_every_official_abi_entry() {
    check(
        "FineTuningServing",
        sealtune_contracts::FINE_TUNING_SERVING_ARTIFACT,
    );
}

#[test]
fn ledger_manager_exposes_every_official_abi_entry() {
    check("LedgerManager", sealtune_contracts::LEDGER_MANAGER_ARTIFACT);
}

#[test]
fn fine_tuning_serving_has_abandon_deliverable() {
    let ours: Value =
        serde_json::from_str(sealtune_contracts::FINE_TUNING_SERVING_ARTIFACT).unwrap();
    let sigs: BTreeSet<String> = ours["abi"]
        .as_array()
        .unwrap()
        .iter()
        .map(signature)
        .collect();
    assert!(
        sigs.contains("function abandonDeliverable(address user,string id) returns () nonpayable")
    );
}
