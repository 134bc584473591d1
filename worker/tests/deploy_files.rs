//! The documented deployment starts: every variable the shipped deployment files set for the worker
//! is one the worker reads (a misspelt secret name would leave the worker without its wallet key),
//! the secret dstack lets through reaches the config, and every TOML snippet of the provider guide
//! parses with the config reader (a key documented but never read fails, as the reader refuses
//! unknown keys).

use std::collections::{BTreeMap, BTreeSet};

use sealtune_e2e::repo_root;
use sealtune_worker::attest::FORBID_DEV_ENV;
use sealtune_worker::config::{Config, ENV_VARS};

/// Every `SEALTUNE_*` name the worker reads when it serves.
fn read_by_the_worker() -> BTreeSet<String> {
    ENV_VARS
        .iter()
        .copied()
        .chain(["SEALTUNE_CONFIG", FORBID_DEV_ENV])
        .map(str::to_owned)
        .collect()
}

fn sealtune_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices("SEALTUNE_") {
        let rest = text.get(i..).unwrap_or_default();
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        names.insert(name);
    }
    names
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap()
}

#[test]
fn the_deployment_files_set_only_variables_the_worker_reads() {
    let known = read_by_the_worker();
    let compose = read("deploy/docker-compose.yml");
    let app: serde_json::Value = serde_json::from_str(&read("deploy/app-compose.json")).unwrap();
    let dockerfile = read("deploy/Dockerfile");
    // The image's runtime stage (the build stage's SEALTUNE_CACHE is scripts/setup's, not the worker's).
    let runtime = dockerfile
        .split("FROM debian")
        .nth(1)
        .expect("a runtime stage");
    let allowed: Vec<String> = app["allowed_envs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    for (file, names) in [
        ("deploy/docker-compose.yml", sealtune_names(&compose)),
        ("deploy/Dockerfile (runtime stage)", sealtune_names(runtime)),
        (
            "deploy/app-compose.json allowed_envs",
            allowed.iter().cloned().collect(),
        ),
    ] {
        assert!(!names.is_empty(), "{file} sets no SEALTUNE_* variable");
        let unread: Vec<_> = names.difference(&known).collect();
        assert!(
            unread.is_empty(),
            "{file} sets {unread:?}, which the worker never reads (it reads {known:?})"
        );
    }
    // The one secret dstack lets through is the wallet key, and it reaches the config.
    assert_eq!(allowed, vec!["SEALTUNE_PRIVATE_KEY".to_owned()]);
    let mut config = Config::from_toml("[attestation]\nsource = \"dstack\"").unwrap();
    config
        .apply_env(&BTreeMap::from([(
            allowed[0].clone(),
            "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d".to_owned(),
        )]))
        .unwrap();
    assert!(config.wallet().is_ok());
}

/// The provider guide's TOML snippets, with their commented-out `# key = value` lines switched
/// on, are valid config (with an `[attestation]` section appended where a snippet has none).
#[test]
fn every_config_snippet_of_the_provider_guide_parses() {
    let guide = read("docs/provider-guide.md");
    let blocks: Vec<&str> = guide
        .split("```toml")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect();
    assert!(!blocks.is_empty(), "the guide has no TOML snippet");
    for block in blocks {
        let mut text: String = block
            .lines()
            .map(|l| {
                let t = l.trim_start();
                match t.strip_prefix("# ") {
                    Some(rest) if rest.contains(" = ") || rest.starts_with('[') => rest,
                    _ => t,
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            // Placeholders for an address or key the provider fills in.
            .replace(
                "\"0x...\"",
                "\"0x5FbDB2315678afecb367f032d93F642f64180aa3\"",
            )
            .replace("\"0x…\"", "\"0x5FbDB2315678afecb367f032d93F642f64180aa3\"");
        if !text.contains("[attestation]") {
            text = format!("{text}\n[attestation]\nsource = \"dev\"\n");
        }
        if let Err(e) = Config::from_toml(&text) {
            panic!("a provider-guide snippet does not parse: {e}\n---\n{text}");
        }
    }
}
