//! `sealtune get-report`: the task's signed training report, checked against the chain.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::{Ctx, Output, TaskArgs};
use crate::config::parse_address;
use crate::error::{ClientError, Result};

/// Arguments of `sealtune get-report`.
#[derive(Debug, Args)]
pub struct GetReportArgs {
    /// The provider and the task.
    #[command(flatten)]
    pub task: TaskArgs,
    /// Also write the signed report (`{document, signature}`) here, for `sealtune-verify report`.
    #[arg(long)]
    pub save: Option<PathBuf>,
}

impl GetReportArgs {
    pub(super) async fn run(&self, ctx: &Ctx<'_>) -> Result<Output> {
        let provider = parse_address("--provider", &self.task.provider)?;
        let c = ctx.client()?;
        let checked = c.report(provider, &self.task.task_id).await?;
        if let Some(path) = &self.save {
            let text = serde_json::to_string_pretty(&checked.signed)
                .map_err(|e| ClientError::InvalidInput(e.to_string()))?;
            std::fs::write(path, text).map_err(|source| ClientError::Io {
                path: path.clone(),
                source,
            })?;
        }
        let r = &checked.report;
        let mut human = format!(
            "training report of task {} (signed by TEE signer {}, verified against the chain)\n",
            r.task_id, r.tee_signer
        );
        human.push_str(&format!(
            "  base model {} ({}), dataset {}, model root {}\n",
            r.base_model, r.base_model_hash, r.dataset_hash, r.model_root_hash
        ));
        human.push_str(&format!(
            "  tokens billed {}, fee {} neuron, steps {}, wall time {:.1} s\n",
            r.tokens_billed,
            r.fee,
            r.steps
                .map_or_else(|| "not reported".to_owned(), |s| s.to_string()),
            r.wall_time_ms as f64 / 1000.0
        ));
        if let (Some(first), Some(last)) = (r.loss_curve.first(), r.loss_curve.last()) {
            human.push_str(&format!(
                "  training loss {:.4} (step {}) → {:.4} (step {})\n",
                first.loss, first.step, last.loss, last.step
            ));
        }
        if r.metrics.is_empty() {
            human.push_str("  metrics: none reported by the training script\n");
        }
        for (name, value) in &r.metrics {
            human.push_str(&format!("  {name} {value:.4}\n"));
        }
        let document: serde_json::Value =
            serde_json::from_str(&checked.signed.document).unwrap_or_default();
        Ok(Output::new(
            json!({ "task_id": r.task_id, "verified": true, "report": document, "signed": checked.signed }),
            human.trim_end(),
        ))
    }
}
