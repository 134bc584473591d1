//! `sealtune evaluate` (request the evaluation of a delivered model) and `sealtune check-evaluation`
//! (show a decrypted evaluation report, checked against the chain): docs/PROTOCOL.md §10.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use serde_json::json;

use super::{Ctx, Output, VerifyArgs, dev_warning, to_json, verify_options};
use crate::amount::parse_amount;
use crate::config::parse_address;
use crate::error::{ClientError, Result};
use crate::evaluate::{EvaluateRequest, read_signed};
use crate::flow::DatasetSource;
use crate::progress::{Progress, bar};

/// Arguments of `sealtune evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// The provider that delivered the model.
    #[arg(long)]
    pub provider: String,
    /// The delivered task to evaluate (acknowledged and settled: its key is on chain for you).
    #[arg(long = "task-id", visible_alias = "task")]
    pub task_id: String,
    /// The evaluation dataset (uploaded sealed to the provider's attested dataset key).
    #[arg(long)]
    pub dataset_path: PathBuf,
    /// The most you agree to pay (in 0G) for the evaluation.
    #[arg(long)]
    pub max_fee: Option<String>,
    /// Queue behind the provider's other tasks if it is busy.
    #[arg(long)]
    pub wait: bool,
    /// Attestation options (the provider is always verified: it receives the model key).
    #[command(flatten)]
    pub verify: VerifyArgs,
}

impl EvaluateArgs {
    pub(super) async fn run(&self, ctx: &Ctx<'_>) -> Result<Output> {
        let provider = parse_address("--provider", &self.provider)?;
        if !self.dataset_path.is_file() {
            return Err(ClientError::InvalidInput(format!(
                "dataset {} is not a file",
                self.dataset_path.display()
            )));
        }
        dev_warning(self.verify.allow_dev_quote);
        let req = EvaluateRequest {
            provider,
            task_id: self.task_id.clone(),
            dataset: DatasetSource::File(self.dataset_path.clone()),
            max_fee: self.max_fee.as_deref().map(parse_amount).transpose()?,
            wait: self.wait,
            verify: verify_options(&self.verify, ctx.env)?,
        };
        let c = ctx.client()?;
        let pb: Arc<dyn Progress> = Arc::new(bar("upload", ctx.show_progress()));
        let t = c.evaluate(&req, ctx.env.now_ms, pb).await?;
        Ok(Output::new(
            to_json(&t),
            format!(
                "evaluation task {} of task {} created (billed: the dataset's tokens once)\n\
                 when it is Delivered: `sealtune download-model --provider {provider} --task-id {id} --output eval.enc`, \
                 `sealtune decrypt-model --provider {provider} --task-id {id} --encrypted eval.enc --output eval.zip --unzip eval --wait 300`, \
                 then `sealtune check-evaluation --provider {provider} --file eval`",
                t.task_id,
                self.task_id,
                id = t.task_id
            ),
        ))
    }
}

/// Arguments of `sealtune check-evaluation`.
#[derive(Debug, Args)]
pub struct CheckEvaluationArgs {
    /// The provider.
    #[arg(long)]
    pub provider: String,
    /// The decrypted evaluation (its directory) or its `evaluation_report.json`.
    #[arg(long)]
    pub file: PathBuf,
}

impl CheckEvaluationArgs {
    pub(super) async fn run(&self, ctx: &Ctx<'_>) -> Result<Output> {
        let provider = parse_address("--provider", &self.provider)?;
        let signed = read_signed(&self.file)?;
        let r = ctx.client()?.check_evaluation(provider, &signed).await?;
        let mut human = format!(
            "evaluation {} of task {} (signed by TEE signer {}, verified against the chain)\n",
            r.task_id, r.evaluated_task_id, r.tee_signer
        );
        human.push_str(&format!(
            "  base model {} ({}), evaluated root {}, dataset {}\n  is_finetune {}, tokens billed {}, fee {} neuron, wall time {:.1} s\n",
            r.base_model,
            r.base_model_hash,
            r.evaluated_root_hash,
            r.dataset_hash,
            r.is_finetune,
            r.tokens_billed,
            r.fee,
            r.wall_time_ms as f64 / 1000.0
        ));
        if r.metrics.is_empty() {
            human.push_str("  metrics: none reported by the evaluation script\n");
        }
        for (name, value) in &r.metrics {
            human.push_str(&format!("  {name} {value:.4}\n"));
        }
        let document: serde_json::Value =
            serde_json::from_str(&signed.document).unwrap_or_default();
        Ok(Output::new(
            json!({ "task_id": r.task_id, "verified": true, "report": document, "signed": signed }),
            human.trim_end(),
        ))
    }
}
