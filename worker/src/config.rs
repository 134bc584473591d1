//! The worker's configuration: one TOML file plus `SEALTUNE_*` environment overrides.
//!
//! Every key has a documented default except what only the provider can know (the wallet key, the
//! chain, the public URL, the models). The 0G provider config's key names are accepted as aliases
//! (`servingUrl`, `privateKeys`, `service.customizedModels` with `dataType`, `trainingScript`), so a
//! 0G provider can carry its model list over; `sealtune-worker config import-0g` converts a whole
//! 0G `config.local.yaml` ([`crate::config_import`]). `sealtune-worker config check` loads the file, applies
//! the environment, and validates everything it can without the network (model paths, scripts,
//! tokenizers, the wallet key, the parameter schemas).
//!
//! ```toml
//! data_dir = "/var/lib/sealtune"          # SEALTUNE_DATA_DIR
//! listen = "0.0.0.0:3080"                 # SEALTUNE_LISTEN
//! tls_listen = "0.0.0.0:3443"             # optional: HTTPS with a key derived in the TEE
//! serving_url = "https://ft.example.com"  # SEALTUNE_SERVING_URL (0G: servingUrl)
//! private_key = "0x…"                     # SEALTUNE_PRIVATE_KEY  (0G: privateKeys, first entry)
//!
//! [chain]
//! rpc = "http://127.0.0.1:8545"           # SEALTUNE_RPC
//! serving = "0x…"                         # SEALTUNE_SERVING  (FineTuningServing)
//! ledger = "0x…"                          # SEALTUNE_LEDGER   (LedgerManager)
//!
//! [service]
//! price_per_token = "1000000000"          # neuron per token
//!
//! [[service.models]]                      # 0G: service.customizedModels
//! name = "SmolLM2-135M-Instruct"
//! hash = "0x…"                            # what customers send as preTrainedModelHash
//! data_type = "text"
//! training_script = "scripts/training/lora_causal_lm.py"
//! weights = { hf = "HuggingFaceTB/SmolLM2-135M-Instruct" }
//!
//! [attestation]
//! source = "dstack"                        # or "dev" (insecure, loud), "tappd", "configfs-tsm"
//! ```
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use serde::{Deserialize, Serialize};

use crate::attest::AttestConfig;
use crate::models::{ModelConfig, ModelRef};
use crate::storage::StorageConfig;

/// A configuration problem, with the key it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error, with the line.
        message: String,
    },
    /// A value is missing or wrong.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// The key, dotted.
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// A duration written as `"6h"`, `"30m"`, `"45s"`, `"3d"` or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "DurationText", into = "DurationText")]
pub struct Span(pub Duration);

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum DurationText {
    Seconds(u64),
    Text(String),
}

impl TryFrom<DurationText> for Span {
    type Error = String;
    fn try_from(v: DurationText) -> Result<Self, String> {
        match v {
            DurationText::Seconds(s) => Ok(Span(Duration::from_secs(s))),
            DurationText::Text(t) => parse_span(&t).map(Span),
        }
    }
}

impl From<Span> for DurationText {
    fn from(s: Span) -> Self {
        DurationText::Text(format!("{}s", s.0.as_secs()))
    }
}

/// Parses `"90"`, `"90s"`, `"15m"`, `"6h"`, `"3d"`.
pub fn parse_span(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 90s, 15m, 6h or 3d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (use s, m, h or d)"
            ));
        }
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too long"))
}

/// The environment variables [`Config::apply_env`] reads; with `SEALTUNE_CONFIG` (the file, read
/// by the command line) and [`crate::attest::FORBID_DEV_ENV`] they are every `SEALTUNE_*` variable
/// the worker serves with (the deployment files may set no other: `worker/tests/deploy_files.rs`).
pub const ENV_VARS: [&str; 7] = [
    "SEALTUNE_DATA_DIR",
    "SEALTUNE_LISTEN",
    "SEALTUNE_SERVING_URL",
    "SEALTUNE_PRIVATE_KEY",
    "SEALTUNE_RPC",
    "SEALTUNE_SERVING",
    "SEALTUNE_LEDGER",
];

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the database, uploads, store, task directories and the dev key live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Address the HTTP API listens on (default `0.0.0.0:3080`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where the worker's own HTTPS listener listens (off by default). Its key is derived in the
    /// TEE and its SubjectPublicKeyInfo hash published in `tee_keys` ([`crate::tls`]); whether it
    /// is on is part of the measured config. `listen` keeps serving plain HTTP beside it.
    #[serde(default)]
    pub tls_listen: Option<SocketAddr>,
    /// The public URL registered on chain (`service.url`).
    #[serde(alias = "servingUrl", default)]
    pub serving_url: String,
    /// The provider wallet's private key (pays gas, owns the service). Prefer the env var.
    #[serde(default, skip_serializing)]
    pub private_key: Option<String>,
    /// 0G's `privateKeys` list: the first entry is used when `private_key` is unset.
    #[serde(alias = "privateKeys", default, skip_serializing)]
    pub private_keys: Vec<String>,
    /// The chain and the contracts.
    #[serde(default)]
    pub chain: ChainConfig,
    /// What is sold.
    #[serde(default)]
    pub service: ServiceConfig,
    /// Queue, timeouts, retention and rate limits.
    #[serde(default)]
    pub limits: Limits,
    /// The quote source and TEE key.
    pub attestation: AttestConfig,
    /// Storage backends.
    #[serde(default)]
    pub storage: StorageConfig,
    /// The venv whose site-packages the training script sees (default: the worker's `$VIRTUAL_ENV`);
    /// the task uid must be able to read it.
    #[serde(default)]
    pub python_venv: Option<PathBuf>,
    /// Directories scripts, usage files, tokenizers and weights may come from (default: the config
    /// file's directory; `{ hf = … }` weights may also come from the Hugging Face cache). A path
    /// resolving elsewhere (symlinks followed), into the data directory or at this file is refused.
    #[serde(default)]
    pub asset_roots: Vec<PathBuf>,
    /// The training sandbox (per-task uids, environment allowlist, network).
    #[serde(default)]
    pub sandbox: crate::exec::sandbox::SandboxConfig,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/sealtune")
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 3080))
}

/// Chain settings.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// JSON-RPC URL (default `http://127.0.0.1:8545`).
    #[serde(default)]
    pub rpc: Option<String>,
    /// FineTuningServing address.
    #[serde(default)]
    pub serving: Option<Address>,
    /// LedgerManager address.
    #[serde(default)]
    pub ledger: Option<Address>,
    /// Stake sent with the first `addOrUpdateService` (default 100 ether, the contract minimum).
    #[serde(default)]
    pub stake_wei: Option<U256>,
    /// How often the chain is polled for acknowledgements (default 2 s).
    #[serde(default)]
    pub poll_interval: Option<Span>,
}

impl ChainConfig {
    /// The RPC URL or the local default.
    pub fn rpc_url(&self) -> &str {
        self.rpc.as_deref().unwrap_or("http://127.0.0.1:8545")
    }
    /// The polling interval.
    pub fn poll(&self) -> Duration {
        self.poll_interval.map_or(Duration::from_secs(2), |s| s.0)
    }
}

/// The on-chain quota advertised with the service; detected when unset.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// CPU cores.
    pub cpu_count: Option<u64>,
    /// Memory in bytes.
    pub node_memory: Option<u64>,
    /// GPUs.
    pub gpu_count: Option<u64>,
    /// Disk in bytes.
    pub node_storage: Option<u64>,
    /// GPU model name.
    pub gpu_type: Option<String>,
}

/// The service: price and models.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// `pricePerToken` in neuron (default 1 gwei-unit, `1000000000`).
    #[serde(default = "default_price", alias = "pricePerToken")]
    pub price_per_token: U256,
    /// Advertised quota (detected from the machine when unset).
    #[serde(default)]
    pub quota: QuotaConfig,
    /// The models (0G: `customizedModels`).
    #[serde(default, alias = "customizedModels")]
    pub models: Vec<ModelConfig>,
}

fn default_price() -> U256 {
    U256::from(1_000_000_000u64)
}

/// Queue, timeouts, retention and rate limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Tasks queued or running at most (default 5, as 0G).
    #[serde(default = "d_queue")]
    pub queue_size: u32,
    /// How long a delivered model waits for the customer's acknowledgement before the penalty
    /// settlement (default 6 h; the effective wait is min(this, lockTime / 2)).
    #[serde(default = "d_ack")]
    pub ack_timeout: Span,
    /// How long datasets, fetched models and deliverables are kept after a task ends (default 3 d).
    /// Checked every min(60 s, this) (at least every second).
    #[serde(default = "d_retention")]
    pub retention: Span,
    /// Longest training run (default 24 h).
    #[serde(default = "d_train")]
    pub training_timeout: Span,
    /// Memory limit of the executor child in bytes (`RLIMIT_DATA`; default 3/4 of the machine's
    /// memory, see `exec::sandbox::default_memory_limit`).
    #[serde(default)]
    pub executor_memory_bytes: Option<u64>,
    /// Largest dataset upload (default 100 MiB, as 0G).
    #[serde(default = "d_upload")]
    pub max_upload_bytes: u64,
    /// Largest JSON request body (default 1 MiB).
    #[serde(default = "d_body")]
    pub max_body_bytes: usize,
    /// Model downloads per customer per minute (default 6).
    #[serde(default = "d_dl")]
    pub downloads_per_minute: u32,
    /// How many times a task interrupted by a restart is trained again (default 1; a graceful stop,
    /// SIGTERM, requeues without counting).
    #[serde(default = "d_retries")]
    pub training_restarts: u32,
    /// Longest setup (fetching, checking and counting the dataset) before the task fails (default 1 h).
    #[serde(default = "d_setup")]
    pub setup_timeout: Span,
    /// Balance (neuron, decimal) a sub-account must have available before anything is fetched for
    /// a task signed without a fee ceiling (default 0: the account need only exist; a task with a
    /// ceiling needs the ceiling available).
    #[serde(default)]
    pub min_deposit: U256,
    /// A dataset zip may unpack to at most this many times `max_upload_bytes` (default 16).
    #[serde(default = "d_expansion")]
    pub dataset_expansion: u64,
    /// A dataset zip may hold at most one entry per this many bytes of `max_upload_bytes`
    /// (default 1024: 102 400 entries at 100 MiB).
    #[serde(default = "d_entry_bytes")]
    pub dataset_bytes_per_entry: u64,
}

fn d_queue() -> u32 {
    5
}
fn d_ack() -> Span {
    Span(Duration::from_secs(6 * 3600))
}
fn d_retention() -> Span {
    Span(Duration::from_secs(3 * 86_400))
}
fn d_train() -> Span {
    Span(Duration::from_secs(24 * 3600))
}
fn d_upload() -> u64 {
    100 << 20
}
fn d_body() -> usize {
    1 << 20
}
fn d_dl() -> u32 {
    6
}
fn d_retries() -> u32 {
    1
}
fn d_setup() -> Span {
    Span(Duration::from_secs(3600))
}
fn d_expansion() -> u64 {
    16
}
fn d_entry_bytes() -> u64 {
    1024
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            queue_size: d_queue(),
            ack_timeout: d_ack(),
            retention: d_retention(),
            training_timeout: d_train(),
            executor_memory_bytes: None,
            max_upload_bytes: d_upload(),
            max_body_bytes: d_body(),
            downloads_per_minute: d_dl(),
            training_restarts: d_retries(),
            setup_timeout: d_setup(),
            min_deposit: U256::ZERO,
            dataset_expansion: d_expansion(),
            dataset_bytes_per_entry: d_entry_bytes(),
        }
    }
}

impl Limits {
    /// The most bytes a dataset zip may unpack to: `dataset_expansion × max_upload_bytes`.
    pub fn max_dataset_unpacked_bytes(&self) -> u64 {
        self.max_upload_bytes.saturating_mul(self.dataset_expansion)
    }
    /// The most entries a dataset zip may hold: `max_upload_bytes / dataset_bytes_per_entry`
    /// (at least 1).
    pub fn max_dataset_entries(&self) -> u64 {
        (self.max_upload_bytes / self.dataset_bytes_per_entry.max(1)).max(1)
    }
}

impl Config {
    /// Reads `path`, applies `env` overrides (`SEALTUNE_*`) and resolves relative paths against the
    /// file's directory.
    pub fn load(path: &Path, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        config.apply_env(env)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Parses TOML text (no env, no path resolution).
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Applies `SEALTUNE_*` overrides (every name in [`ENV_VARS`]).
    pub fn apply_env(&mut self, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty());
        if let Some(v) = get("SEALTUNE_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("SEALTUNE_LISTEN") {
            self.listen = v
                .parse()
                .map_err(|e| invalid("SEALTUNE_LISTEN", format!("{e}")))?;
        }
        if let Some(v) = get("SEALTUNE_SERVING_URL") {
            self.serving_url = v.clone();
        }
        if let Some(v) = get("SEALTUNE_PRIVATE_KEY") {
            self.private_key = Some(v.clone());
        }
        if let Some(v) = get("SEALTUNE_RPC") {
            self.chain.rpc = Some(v.clone());
        }
        if let Some(v) = get("SEALTUNE_SERVING") {
            self.chain.serving = Some(
                v.parse()
                    .map_err(|e| invalid("SEALTUNE_SERVING", format!("{e}")))?,
            );
        }
        if let Some(v) = get("SEALTUNE_LEDGER") {
            self.chain.ledger = Some(
                v.parse()
                    .map_err(|e| invalid("SEALTUNE_LEDGER", format!("{e}")))?,
            );
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data_dir);
        if let Some(v) = self.python_venv.as_mut() {
            fix(v);
        }
        for r in &mut self.asset_roots {
            fix(r);
        }
        for m in &mut self.service.models {
            m.resolve_paths(base);
        }
    }

    /// The provider wallet.
    pub fn wallet(&self) -> Result<PrivateKeySigner, ConfigError> {
        let key = self
            .private_key
            .as_ref()
            .or_else(|| self.private_keys.first())
            .ok_or_else(|| {
                invalid(
                    "private_key",
                    "no provider wallet key: set SEALTUNE_PRIVATE_KEY (or private_key in the file)",
                )
            })?;
        key.trim()
            .parse()
            .map_err(|_| invalid("private_key", "not a 32-byte hex private key"))
    }

    /// The serving and ledger addresses.
    pub fn contracts(&self) -> Result<(Address, Address), ConfigError> {
        let serving = self.chain.serving.ok_or_else(|| {
            invalid(
                "chain.serving",
                "the FineTuningServing address is missing (SEALTUNE_SERVING)",
            )
        })?;
        let ledger = self.chain.ledger.ok_or_else(|| {
            invalid(
                "chain.ledger",
                "the LedgerManager address is missing (SEALTUNE_LEDGER)",
            )
        })?;
        Ok((serving, ledger))
    }

    /// The model `model` names (by its hash or its name).
    pub fn model(&self, model: &ModelRef) -> Option<&ModelConfig> {
        self.service.models.iter().find(|m| model.names(m))
    }

    /// Everything that can be checked offline: the wallet key, the contracts, models' scripts,
    /// weights and tokenizers, duplicate names or hashes. Returns human-readable problems (empty = fine).
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = self.wallet() {
            problems.push(e.to_string());
        }
        if let Err(e) = self.contracts() {
            problems.push(e.to_string());
        }
        if self.serving_url.is_empty() {
            problems.push("config key `serving_url`: the public URL customers reach this worker at is missing (SEALTUNE_SERVING_URL)".into());
        }
        if self.service.models.is_empty() {
            problems.push("config key `service.models`: no model is offered".into());
        }
        let mut names = std::collections::BTreeSet::new();
        let mut hashes = std::collections::BTreeSet::new();
        for m in &self.service.models {
            if !names.insert(m.name.as_str()) | !hashes.insert(m.hash) {
                problems.push(format!("model `{}`: duplicate name or hash", m.name));
            }
            problems.extend(m.problems());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::DataType;

    const MINIMAL: &str = r#"
        [attestation]
        source = "dev"
    "#;

    #[test]
    fn defaults_are_documented_values() {
        let c = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(c.limits.queue_size, 5);
        assert_eq!(c.limits.ack_timeout.0, Duration::from_secs(6 * 3600));
        assert_eq!(c.limits.retention.0, Duration::from_secs(3 * 86_400));
        assert_eq!(c.limits.max_upload_bytes, 100 << 20);
        assert_eq!(c.limits.setup_timeout.0, Duration::from_secs(3600));
        assert_eq!(c.limits.min_deposit, U256::ZERO);
        assert_eq!(c.limits.max_dataset_unpacked_bytes(), 1600 << 20);
        assert_eq!(c.limits.max_dataset_entries(), 102_400);
        assert_eq!(c.listen.port(), 3080);
        assert_eq!(c.chain.rpc_url(), "http://127.0.0.1:8545");
    }

    #[test]
    fn intake_limits_are_read_from_limits() {
        let c = Config::from_toml(&format!(
            "{MINIMAL}\n[limits]\nsetup_timeout = \"90s\"\nmin_deposit = \"5000\"\ndataset_expansion = 4\ndataset_bytes_per_entry = 4096\nmax_upload_bytes = 8192\n"
        ))
        .unwrap();
        assert_eq!(c.limits.setup_timeout.0, Duration::from_secs(90));
        assert_eq!(c.limits.min_deposit, U256::from(5000u64));
        assert_eq!(c.limits.max_dataset_unpacked_bytes(), 32_768);
        assert_eq!(c.limits.max_dataset_entries(), 2);
    }

    #[test]
    fn accepts_0g_key_names() {
        let c = Config::from_toml(
            r#"
            servingUrl = "http://x"
            privateKeys = ["0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"]
            [attestation]
            source = "dev"
            [service]
            [[service.customizedModels]]
            name = "m"
            hash = "0x1d98b2088bd094f879315ac29edd471638204cd45e7c8d066ee88fbc7c174ce7"
            image = "deepseek:latest"
            dataType = "text"
            trainingScript = "/app/finetune.py"
            description = "d"
            tokenizer = "0x919d382d5192a7d22006ff5063f1b9064a5b6dd23e03998937f03024f1e2cd36"
            "#,
        )
        .unwrap();
        assert_eq!(c.serving_url, "http://x");
        assert!(c.wallet().is_ok());
        assert_eq!(c.service.models[0].data_type, DataType::Text);
        assert!(c.model(&ModelRef::new("m")).is_some());
        assert!(
            c.model(&ModelRef::new(
                "0x1d98b2088bd094f879315ac29edd471638204cd45e7c8d066ee88fbc7c174ce7"
            ))
            .is_some()
        );
        assert!(c.model(&ModelRef::new("n")).is_none());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = Config::from_toml("bogus = 1\n[attestation]\nsource = \"dev\"").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e =
            Config::from_toml("[limits]\nack_timeout = \"6y\"\n[attestation]\nsource = \"dev\"")
                .unwrap_err();
        assert!(e.contains("unknown unit"), "{e}");
    }

    #[test]
    fn env_overrides_the_file() {
        let mut c = Config::from_toml(MINIMAL).unwrap();
        let env = BTreeMap::from([
            ("SEALTUNE_RPC".to_owned(), "http://h:1".to_owned()),
            ("SEALTUNE_LISTEN".to_owned(), "127.0.0.1:9".to_owned()),
        ]);
        c.apply_env(&env).unwrap();
        assert_eq!(c.chain.rpc_url(), "http://h:1");
        assert_eq!(c.listen.port(), 9);
        let bad = BTreeMap::from([("SEALTUNE_SERVING".to_owned(), "nope".to_owned())]);
        assert!(
            c.apply_env(&bad)
                .unwrap_err()
                .to_string()
                .contains("SEALTUNE_SERVING")
        );
    }

    /// Every name in ENV_VARS changes the config (the list and the reader cannot drift apart).
    #[test]
    fn every_listed_env_var_is_read() {
        let values = [
            "/tmp/sealtune-data",
            "127.0.0.1:9",
            "http://h",
            "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
            "http://h:1",
            "0x5FbDB2315678afecb367f032d93F642f64180aa3",
            "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
        ];
        for (name, value) in ENV_VARS.iter().zip(values) {
            let mut c = Config::from_toml(MINIMAL).unwrap();
            let before = format!("{c:?}");
            let env = BTreeMap::from([((*name).to_owned(), value.to_owned())]);
            c.apply_env(&env).unwrap();
            assert_ne!(format!("{c:?}"), before, "{name} is not read");
        }
    }

    #[test]
    fn spans_parse() {
        assert_eq!(parse_span("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_span("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_span("3d").unwrap(), Duration::from_secs(259_200));
        assert!(parse_span("h").is_err());
        assert!(parse_span("99999999999999999999d").is_err());
    }
}
