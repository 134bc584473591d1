//! Where a model's weights and tokenizer are: a local directory, an entry of the offline Hugging
//! Face cache (through `hf-hub`, never the network), or a zip in storage by root hash.
use std::path::{Path, PathBuf};

use crate::config::{ModelConfig, Weights};

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
