//! The documented deployment starts: every variable the shipped deployment files set for the worker
//! is one the worker reads (a misspelt secret name would leave the worker without its wallet key),
//! the config reaches the worker as the file the image names (from dstack's encrypted environment,
//! through a compose `configs` entry), the secrets dstack lets through reach the config, and every
//! TOML snippet of the provider guide parses with the config reader (a key documented but never read
//! fails, as the reader refuses unknown keys).

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

/// The shell command of the compose service's `entrypoint` (`/bin/sh -c <command>`), as compose
/// passes it (`$$` is compose's escape for `$`).
fn entrypoint_command(compose: &str) -> String {
    let mut lines = compose
        .lines()
        .skip_while(|l| l.trim() != "entrypoint:")
        .skip(1);
    assert_eq!(lines.next().map(str::trim), Some("- /bin/sh"));
    assert_eq!(lines.next().map(str::trim), Some("- -c"));
    let command = lines.next().unwrap().trim().strip_prefix("- ").unwrap();
    command.replace("$$", "$")
}

/// The variables the entrypoint drops before the worker starts (`env -u NAME`).
fn dropped_by_the_entrypoint(command: &str) -> BTreeSet<String> {
    command
        .split("env -u ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The image's runtime environment (deploy/image.toml, every variant).
fn image_env() -> Vec<String> {
    let spec: toml::Value = toml::from_str(&read("deploy/image.toml")).unwrap();
    let mut env: Vec<String> = spec["config"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    for variant in spec["variants"].as_table().unwrap().values() {
        env.extend(
            variant["env"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned()),
        );
    }
    env
}

#[test]
fn the_deployment_files_set_only_variables_the_worker_reads() {
    let known = read_by_the_worker();
    let compose = read("deploy/docker-compose.yml");
    let app: serde_json::Value = serde_json::from_str(&read("deploy/app-compose.json")).unwrap();
    let allowed: Vec<String> = app["allowed_envs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    // Variables the entrypoint consumes and drops are not the worker's; each must be let through.
    let command = entrypoint_command(&compose);
    let dropped = dropped_by_the_entrypoint(&command);
    assert_eq!(dropped, BTreeSet::from(["SEALTUNE_CONFIG_B64".to_owned()]));
    let for_the_worker = |names: BTreeSet<String>| -> BTreeSet<String> {
        names.difference(&dropped).cloned().collect()
    };
    for (file, names) in [
        (
            "deploy/docker-compose.yml",
            for_the_worker(sealtune_names(&compose)),
        ),
        (
            "deploy/image.toml env",
            sealtune_names(&image_env().join("\n")),
        ),
        (
            "deploy/app-compose.json allowed_envs",
            for_the_worker(allowed.iter().cloned().collect()),
        ),
    ] {
        assert!(!names.is_empty(), "{file} sets no SEALTUNE_* variable");
        let unread: Vec<_> = names.difference(&known).collect();
        assert!(
            unread.is_empty(),
            "{file} sets {unread:?}, which the worker never reads (it reads {known:?})"
        );
    }
    // dstack lets through the wallet key and the config, nothing else.
    assert_eq!(
        allowed,
        vec![
            "SEALTUNE_PRIVATE_KEY".to_owned(),
            "SEALTUNE_CONFIG_B64".to_owned()
        ]
    );
    // The config file the entrypoint writes is the one the image's worker reads.
    let config_path = image_env()
        .iter()
        .find_map(|e| e.strip_prefix("SEALTUNE_CONFIG=").map(str::to_owned))
        .expect("the image names its config file");
    assert!(command.contains(&format!("> {config_path} ")), "{command}");
    // The image refuses the dev source.
    assert!(image_env().contains(&format!("{FORBID_DEV_ENV}=1")));
}

/// The compose's entrypoint, run as compose runs it (`/bin/sh -c`, the image's worker replaced by
/// `env`, the config path by a temporary one): the base64 config becomes the file, root-only, the
/// variable is gone from the worker's environment, the wallet key is there, and the worker's config
/// reader loads that file with that key.
#[test]
fn the_entrypoint_turns_the_encrypted_config_into_the_file_the_worker_loads() {
    use base64::Engine;
    use std::os::unix::fs::PermissionsExt;
    let compose = read("deploy/docker-compose.yml");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    let command = entrypoint_command(&compose)
        .replace("/etc/sealtune/config.toml", file.to_str().unwrap())
        .replace("/usr/local/bin/sealtune-worker serve", "env");
    let config = "[attestation]\nsource = \"dstack\"\n\n[service]\nprice_per_token = \"7\"\n";
    let key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", &command])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env(
            "SEALTUNE_CONFIG_B64",
            base64::engine::general_purpose::STANDARD.encode(config),
        )
        .env("SEALTUNE_PRIVATE_KEY", key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = String::from_utf8(out.stdout).unwrap();
    assert!(!env.contains("SEALTUNE_CONFIG_B64"), "{env}");
    assert!(
        env.contains(&format!("SEALTUNE_PRIVATE_KEY={key}")),
        "{env}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), config);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let loaded = Config::load(
        &file,
        &BTreeMap::from([("SEALTUNE_PRIVATE_KEY".to_owned(), key.to_owned())]),
    )
    .unwrap();
    assert!(loaded.wallet().is_ok());
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
