//! Token count and fee of a dataset before anything is paid (PROTOCOL.md §3), with
//! `sealtune_protocol::tokens` (the base model's own tokenizer) and `sealtune_protocol::fee`.

use std::path::{Path, PathBuf};

use alloy::primitives::U256;
use sealtune_protocol::dataset::NoColumnar;
use sealtune_protocol::dataset::ReadLimits;
use sealtune_protocol::dataset_type::DatasetType;
use sealtune_protocol::fee::{self, FeeSchedule, PriceCoefficient};
use sealtune_protocol::tokens::{CountRule, TokenCounter};
use serde::Serialize;

use crate::amount::ser_dec;
use crate::api::ProviderApi;
use crate::chain::ServiceView;
use crate::error::{ClientError, Result};

/// Where the tokenizer comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerSource {
    /// A `tokenizer.json` file, or a directory holding one.
    Path(PathBuf),
    /// A Hugging Face repo id (`org/name`) looked up in the local HF cache only (never downloaded).
    HfCache {
        /// The repo id.
        repo: String,
        /// The cache directory; `None` is `$HF_HUB_CACHE`, `$HF_HOME/hub`, or `~/.cache/huggingface/hub`.
        cache_dir: Option<PathBuf>,
    },
}

impl TokenizerSource {
    /// The `tokenizer.json` to load.
    pub fn resolve(&self) -> Result<PathBuf> {
        match self {
            TokenizerSource::Path(p) => {
                let file = if p.is_dir() {
                    p.join("tokenizer.json")
                } else {
                    p.clone()
                };
                if !file.is_file() {
                    return Err(ClientError::InvalidInput(format!(
                        "tokenizer {} not found (pass a tokenizer.json file or the model directory holding it)",
                        file.display()
                    )));
                }
                Ok(file)
            }
            TokenizerSource::HfCache { repo, cache_dir } => {
                let dir = cache_dir.clone().unwrap_or_else(default_hf_cache);
                hf_hub::Cache::new(dir.clone())
                    .model(repo.clone())
                    .get("tokenizer.json")
                    .ok_or_else(|| {
                        ClientError::InvalidInput(format!(
                            "model {repo:?} has no tokenizer.json in the Hugging Face cache {} (nothing is downloaded): pass --tokenizer PATH",
                            dir.display()
                        ))
                    })
            }
        }
    }

    /// The tokenizer of `model` in the local Hugging Face cache. A repo id (`org/name`) is used as
    /// is; a provider's model name (no `/`) is looked up in `service`'s model list, whose
    /// `tokenizer` field names the repo; when the provider cannot say, the name itself is tried.
    pub async fn of_model(model: &str, service: Option<&ServiceView>) -> Self {
        let mut repo = model.to_owned();
        if !model.contains('/')
            && let Some(sv) = service
            && let Ok(api) = ProviderApi::new(&sv.url)
            && let Ok(info) = api.model(model).await
            && let Some(t) = info.tokenizer.filter(|t| t.contains('/'))
        {
            repo = t;
        }
        TokenizerSource::HfCache {
            repo,
            cache_dir: None,
        }
    }
}

/// The Hugging Face hub cache directory from the environment.
pub fn default_hf_cache() -> PathBuf {
    if let Some(d) = std::env::var_os("HF_HUB_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("HF_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("hub");
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
        .unwrap_or_else(|| PathBuf::from(".cache/huggingface/hub"))
}

/// The price inputs of the fee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceInputs {
    /// The service's on-chain price per token, in neuron.
    pub price_per_token: U256,
    /// The model's price coefficient (1 on the official provider).
    pub price_coefficient: PriceCoefficient,
    /// The model's storage fee in neuron (0 on the official provider).
    pub storage_fee: U256,
}

/// A token count and fee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Estimate {
    /// The tokenizer file used.
    pub tokenizer: PathBuf,
    /// Records in the dataset.
    pub records: u64,
    /// Tokens under 0G's rule (`text`, `input`, `output`): what the fee uses.
    pub tokens: u64,
    /// Tokens also counting `instruction` (the documented variant), when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_with_instruction: Option<u64>,
    /// `num_train_epochs` of the training parameters (3 when absent).
    pub epochs: u64,
    /// Price per token, in neuron.
    #[serde(serialize_with = "ser_dec")]
    pub price_per_token: U256,
    /// The price coefficient used.
    pub price_coefficient: String,
    /// The storage fee used, in neuron.
    #[serde(serialize_with = "ser_dec")]
    pub storage_fee: U256,
    /// `tokens × pricePerToken × epochs × coefficient + storageFee`, in neuron.
    #[serde(serialize_with = "ser_dec")]
    pub fee: U256,
}

/// Count the tokens of `dataset` (JSONL, JSON array, CSV, or a zip of them) with `tokenizer` under
/// `dataset_type` (the provider's billing rule for it) and compute the fee. `training_params` is the
/// JSON the task will carry (`"{}"` for the defaults). Parquet and saved Hugging Face datasets are
/// read by the provider's worker only.
pub fn estimate(
    tokenizer: &TokenizerSource,
    dataset: &Path,
    dataset_type: Option<&DatasetType>,
    training_params: &str,
    price: &PriceInputs,
    count_instruction: bool,
) -> Result<Estimate> {
    if !dataset.is_file() {
        return Err(ClientError::InvalidInput(format!(
            "dataset {} is not a file",
            dataset.display()
        )));
    }
    let epochs = fee::epochs_from_training_params(training_params)?;
    let path = tokenizer.resolve()?;
    let counter = TokenCounter::from_file(&path)?;
    let limits = ReadLimits::default();
    let official = counter.count_dataset_typed(dataset, dataset_type, &limits, &NoColumnar)?;
    let with_instruction = if count_instruction {
        Some(
            counter
                .count_dataset(dataset, CountRule::WithInstruction, &limits)?
                .tokens,
        )
    } else {
        None
    };
    let schedule = FeeSchedule {
        price_per_token: price.price_per_token,
        price_coefficient: price.price_coefficient,
        storage_fee: price.storage_fee,
    };
    let fee = schedule.fee(official.tokens, epochs)?;
    Ok(Estimate {
        tokenizer: path,
        records: official.records,
        tokens: official.tokens,
        tokens_with_instruction: with_instruction,
        epochs,
        price_per_token: price.price_per_token,
        price_coefficient: price.price_coefficient.to_string(),
        storage_fee: price.storage_fee,
        fee,
    })
}

/// [`estimate`] on a blocking thread: tokenizing a dataset is CPU-bound.
pub async fn estimate_blocking(
    tokenizer: TokenizerSource,
    dataset: PathBuf,
    dataset_type: Option<DatasetType>,
    training_params: String,
    price: PriceInputs,
    count_instruction: bool,
) -> Result<Estimate> {
    tokio::task::spawn_blocking(move || {
        estimate(
            &tokenizer,
            &dataset,
            dataset_type.as_ref(),
            &training_params,
            &price,
            count_instruction,
        )
    })
    .await
    .map_err(|e| ClientError::InvalidInput(format!("estimate task failed: {e}")))?
}
