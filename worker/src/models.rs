//! The models a provider offers: their configuration (`[[service.models]]`, read by
//! [`crate::config`]), and where a model's weights and tokenizer are: a local directory, an entry of
//! the offline Hugging Face cache (through `hf-hub`, never the network), or a zip in storage by root
//! hash.
//!
//! This module depends on nothing else of the worker; `config` uses it (one-way).
use std::path::{Path, PathBuf};

use alloy::primitives::{B256, U256};
use sealtune_protocol::fee::{FeeSchedule, PriceCoefficient};
use sealtune_protocol::params::LoraRanges;
use serde::{Deserialize, Serialize};

/// Where a model's weights come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub enum Weights {
    /// A local directory in HF layout.
    #[serde(rename = "path")]
    Path(PathBuf),
    /// An entry of the local Hugging Face cache (`HF_HUB_CACHE`), read offline through hf-hub.
    #[serde(rename = "hf")]
    Hf(String),
    /// A file in sealtune's storage (local store or 0G Storage) by root hash: a zip of the model directory.
    #[serde(rename = "root")]
    Root(B256),
}

/// The schema of a model's `trainingParams`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ParamsSchema {
    /// The stock LoRA script's five keys (PROTOCOL.md §3).
    #[default]
    Lora,
    /// Any JSON object; the script validates.
    Free,
}

/// `text` or `image`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// Text datasets (JSONL records).
    #[default]
    Text,
    /// Image-folder datasets.
    Image,
}

/// One model the provider offers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Its name.
    pub name: String,
    /// Its id: customers send it as `preTrainedModelHash`.
    pub hash: B256,
    /// The image name shown to customers.
    #[serde(default)]
    pub image: String,
    /// `text` or `image`.
    #[serde(default, alias = "dataType")]
    pub data_type: DataType,
    /// The training script (relative paths are relative to the config file).
    #[serde(alias = "trainingScript")]
    pub training_script: PathBuf,
    /// Shown to customers.
    #[serde(default)]
    pub description: String,
    /// The tokenizer id shown to customers (0G: the tokenizer's root hash).
    #[serde(default)]
    pub tokenizer: String,
    /// Where the weights are; required (0G's config does not say, sealtune must know).
    pub weights: Option<Weights>,
    /// `tokenizer.json` used for the fee (default: the one in the weights directory).
    #[serde(default)]
    pub tokenizer_path: Option<PathBuf>,
    /// Price coefficient (default 1).
    #[serde(default)]
    pub price_coefficient: PriceCoefficient,
    /// Flat storage fee in neuron (default 0).
    #[serde(default)]
    pub storage_fee: U256,
    /// Parameter schema (default `lora`).
    #[serde(default)]
    pub params: ParamsSchema,
    /// A zip of usage docs served at `/v1/model/desc/:name`.
    #[serde(default, alias = "usageFile")]
    pub usage_file: Option<PathBuf>,
    /// Processes (ranks) a task of this model runs as, with torchrun's environment contract
    /// (`RANK`, `WORLD_SIZE`, ... see `exec::ranks`): one per GPU on a multi-GPU machine, or 2+ gloo
    /// ranks on CPU. Default 1 (one process). At most [`crate::exec::MAX_RANKS`].
    #[serde(default = "one_rank")]
    pub ranks: u32,
    /// The script that evaluates a delivered model of this base (docs/PROTOCOL.md §10; the stock
    /// LoRA script has an evaluate mode). Absent: evaluations of this model are refused.
    #[serde(default, alias = "evaluationScript")]
    pub evaluation_script: Option<PathBuf>,
    /// The LoRA options offered for this model (`r`, `lora_alpha`, `lora_dropout`,
    /// `target_modules`, `merge`; PROTOCOL.md §3); absent: [`LoraRanges::default`]. Measured.
    #[serde(default)]
    pub lora_ranges: Option<LoraRanges>,
    /// A sealed checkpoint every this many training steps (0, the default: none). Scripts that
    /// checkpoint through the `sealtune` module (the stock ones) then resume from the last one after
    /// a worker restart; others start again from step 0 (`pipeline::checkpoint`).
    #[serde(default)]
    pub checkpoint_steps: u32,
}

fn one_rank() -> u32 {
    1
}

/// How a request names a model: `preTrainedModelHash` (or the `:name` of `/v1/model/:name`), which
/// is a model's hash or its name. The text is kept as sent (the API answers it back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    text: String,
    hash: Option<B256>,
}

impl ModelRef {
    /// Reads `text` once: a 32-byte hash, or else a name.
    pub fn new(text: &str) -> ModelRef {
        ModelRef {
            text: text.to_owned(),
            hash: text.parse().ok(),
        }
    }
    /// The text as sent.
    pub fn as_str(&self) -> &str {
        &self.text
    }
    /// Whether this names `model` (its hash, or its name).
    pub fn names(&self, model: &ModelConfig) -> bool {
        self.hash == Some(model.hash) || self.text == model.name
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl DataType {
    /// The wire name: `text` or `image` (the `modelType` of a task, `dataType` of a model).
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Text => "text",
            DataType::Image => "image",
        }
    }

    /// The data type named `name` (`text` or `image`).
    pub fn from_name(name: &str) -> Option<DataType> {
        [DataType::Text, DataType::Image]
            .into_iter()
            .find(|t| t.as_str() == name)
    }
}

impl ModelConfig {
    /// Makes the model's relative paths (script, weights, tokenizer, usage file) relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.training_script);
        if let Some(p) = self.evaluation_script.as_mut() {
            fix(p);
        }
        if let Some(Weights::Path(p)) = self.weights.as_mut() {
            fix(p);
        }
        if let Some(p) = self.tokenizer_path.as_mut() {
            fix(p);
        }
        if let Some(p) = self.usage_file.as_mut() {
            fix(p);
        }
    }

    /// What is wrong with this model that can be seen offline: a missing script, missing weights
    /// (a weights directory not found, an HF repo not in the local cache). Empty = fine.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(1..=crate::exec::MAX_RANKS).contains(&self.ranks) {
            problems.push(format!(
                "model `{}`: `ranks` must be 1 to {}, got {}",
                self.name,
                crate::exec::MAX_RANKS,
                self.ranks
            ));
        }
        if let Some(p) = self.evaluation_script.as_ref().filter(|p| !p.is_file()) {
            problems.push(format!(
                "model `{}`: evaluation script {} not found",
                self.name,
                p.display()
            ));
        }
        if let Some(ranges) = &self.lora_ranges {
            for p in ranges.problems() {
                problems.push(format!("model `{}`: `lora_ranges` {p}", self.name));
            }
        }
        if !self.training_script.is_file() {
            problems.push(format!(
                "model `{}`: training script {} not found",
                self.name,
                self.training_script.display()
            ));
        }
        match &self.weights {
            None => problems.push(format!(
                "model `{}`: `weights` is missing (path, hf or root)",
                self.name
            )),
            Some(Weights::Path(p)) if !p.is_dir() => problems.push(format!(
                "model `{}`: weights directory {} not found",
                self.name,
                p.display()
            )),
            Some(Weights::Hf(repo)) => {
                if let Err(e) = hf_snapshot(repo) {
                    problems.push(format!("model `{}`: {e}", self.name));
                }
            }
            _ => {}
        }
        problems
    }

    /// The LoRA options offered for this model: the declared ranges, else the defaults.
    pub fn lora_ranges(&self) -> LoraRanges {
        self.lora_ranges.clone().unwrap_or_default()
    }

    /// The fee schedule of this model under `price_per_token`.
    pub fn fee_schedule(&self, price_per_token: U256) -> FeeSchedule {
        FeeSchedule {
            price_per_token,
            price_coefficient: self.price_coefficient,
            storage_fee: self.storage_fee,
        }
    }
}

/// A model that cannot be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The HF cache has no snapshot of the repo.
    #[error(
        "Hugging Face cache entry `{repo}` not found under {cache} (HF_HUB_CACHE): download it into the cache first"
    )]
    NotInHfCache {
        /// The repo id.
        repo: String,
        /// Where we looked.
        cache: String,
    },
    /// The config has no weights for the model.
    #[error("model `{0}` has no `weights` in the config")]
    NoWeights(String),
    /// A weights directory is missing.
    #[error("weights directory {0} does not exist")]
    MissingDir(PathBuf),
    /// No tokenizer.json.
    #[error("model `{name}`: no tokenizer.json at {path}: set `tokenizer_path`")]
    NoTokenizer {
        /// The model.
        name: String,
        /// Where we looked.
        path: PathBuf,
    },
    /// Fetching from storage failed.
    #[error("model weights {0}")]
    Storage(String),
}

/// The snapshot directory of `repo` in the offline HF cache (where its `config.json` is).
pub fn hf_snapshot(repo: &str) -> Result<PathBuf, ModelError> {
    // HF_HUB_CACHE (what transformers and scripts/env use) wins; hf-hub itself only reads HF_HOME.
    let cache = match std::env::var_os("HF_HUB_CACHE") {
        Some(dir) if !dir.is_empty() => hf_hub::Cache::new(PathBuf::from(dir)),
        _ => hf_hub::Cache::from_env(),
    };
    let not_found = || ModelError::NotInHfCache {
        repo: repo.to_owned(),
        cache: cache.path().display().to_string(),
    };
    let file = cache
        .model(repo.to_owned())
        .get("config.json")
        .ok_or_else(not_found)?;
    file.parent().map(Path::to_path_buf).ok_or_else(not_found)
}

/// The weights directory of a model whose weights are local (path or HF cache). Models stored by
/// root hash are unpacked by the pipeline into `models_dir`.
pub fn local_weights_dir(model: &ModelConfig) -> Result<Option<PathBuf>, ModelError> {
    match &model.weights {
        None => Err(ModelError::NoWeights(model.name.clone())),
        Some(Weights::Path(p)) => {
            if p.is_dir() {
                Ok(Some(p.clone()))
            } else {
                Err(ModelError::MissingDir(p.clone()))
            }
        }
        Some(Weights::Hf(repo)) => hf_snapshot(repo).map(Some),
        Some(Weights::Root(_)) => Ok(None),
    }
}

/// The tokenizer file used to count tokens for `model` whose weights are in `weights_dir`.
pub fn tokenizer_file(model: &ModelConfig, weights_dir: &Path) -> Result<PathBuf, ModelError> {
    let path = model
        .tokenizer_path
        .clone()
        .unwrap_or_else(|| weights_dir.join("tokenizer.json"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(ModelError::NoTokenizer {
            name: model.name.clone(),
            path,
        })
    }
}
