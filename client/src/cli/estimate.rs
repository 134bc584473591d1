//! `sealtune estimate`: token count and fee before paying anything.

use std::path::PathBuf;

use clap::Args;

use super::{Ctx, Output, read_params, to_json};
use crate::amount::{format_0g, parse_amount};
use crate::config::parse_address;
use crate::error::{ClientError, Result};
use crate::estimate::{Estimate, PriceInputs, TokenizerSource, estimate_blocking};

/// Arguments of `sealtune estimate`.
#[derive(Debug, Args)]
pub struct EstimateArgs {
    /// The dataset (JSONL, JSON array, CSV, or a zip of them).
    #[arg(long)]
    pub dataset_path: PathBuf,
    /// The `datasetType` the task will carry (see `create-task --help`): counted by its billing rule.
    #[arg(long)]
    pub dataset_type: Option<sealtune_protocol::dataset_type::DatasetType>,
    /// A tokenizer.json file or the model directory holding it.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// The model: its tokenizer is looked up in the local Hugging Face cache (a repo id, or the
    /// provider's model name whose `tokenizer` field names one).
    #[arg(long)]
    pub model: Option<String>,
    /// Training parameters JSON file (for num_train_epochs; default 3 epochs).
    #[arg(long)]
    pub config_path: Option<PathBuf>,
    /// The provider (its on-chain price per token).
    #[arg(long)]
    pub provider: Option<String>,
    /// Price per token instead of the provider's (in 0G, or neuron with the suffix).
    #[arg(long)]
    pub price_per_token: Option<String>,
    /// The model's price coefficient (1 on official providers).
    #[arg(long, default_value = "1")]
    pub price_coefficient: String,
    /// The model's storage fee (0 on official providers).
    #[arg(long, default_value = "0")]
    pub storage_fee: String,
    /// Also count `instruction` (the documented variant; the fee uses the official count).
    #[arg(long)]
    pub count_instruction: bool,
}

impl EstimateArgs {
    pub(super) async fn run(&self, ctx: &Ctx<'_>) -> Result<Output> {
        let params = match &self.config_path {
            Some(p) => read_params(p)?,
            None => "{}".to_owned(),
        };
        let price_coefficient =
            self.price_coefficient
                .parse()
                .map_err(|e: sealtune_protocol::fee::FeeError| {
                    ClientError::InvalidInput(e.to_string())
                })?;
        let storage_fee = parse_amount(&self.storage_fee)?;
        let provider = self
            .provider
            .as_deref()
            .map(|p| parse_address("--provider", p))
            .transpose()?;
        // The provider's service is read only when its price is needed; it also names the
        // tokenizer of a model given by the provider's name.
        let (price_per_token, service) = match (&self.price_per_token, provider) {
            (Some(p), _) => (parse_amount(p)?, None),
            (None, Some(p)) => {
                let sv = ctx.chain()?.service(p).await?;
                (sv.price_per_token, Some(sv))
            }
            (None, None) => {
                return Err(ClientError::InvalidInput(
                    "give --provider (its on-chain price) or --price-per-token".into(),
                ));
            }
        };
        let source = match (&self.tokenizer, &self.model) {
            (Some(t), _) => TokenizerSource::Path(t.clone()),
            (None, Some(m)) => TokenizerSource::of_model(m, service.as_ref()).await,
            (None, None) => {
                return Err(ClientError::InvalidInput(
                    "give --tokenizer PATH or --model NAME (its tokenizer from the local Hugging Face cache)".into(),
                ));
            }
        };
        let price = PriceInputs {
            price_per_token,
            price_coefficient,
            storage_fee,
        };
        let e = estimate_blocking(
            source,
            self.dataset_path.clone(),
            self.dataset_type.clone(),
            params,
            price,
            self.count_instruction,
        )
        .await?;
        Ok(Output::new(to_json(&e), render_estimate(&e)))
    }
}

fn render_estimate(e: &Estimate) -> String {
    format!(
        "{} records, {} tokens (official count{}), {} epoch(s)\nfee: {} 0G ({} neuron) = {} tokens x {} neuron x {} epochs x {} + {} neuron",
        e.records,
        e.tokens,
        e.tokens_with_instruction
            .map(|t| format!("; {t} counting instruction"))
            .unwrap_or_default(),
        e.epochs,
        format_0g(e.fee),
        e.fee,
        e.tokens,
        e.price_per_token,
        e.epochs,
        e.price_coefficient,
        e.storage_fee
    )
}
