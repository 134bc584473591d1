//! The model commands: download-model, acknowledge-model, decrypt-model, and root-hash.

use std::path::PathBuf;
use std::time::Duration;

use alloy::primitives::Address;
use clap::Args;
use serde_json::{Value, json};

use super::{Ctx, Output, TaskArgs, to_json, tx_line};
use crate::config::parse_address;
use crate::error::Result;
use crate::flow::{DecryptedModel, DownloadedModel};
use crate::progress::bar;
use crate::storage::root_hash;
use crate::zgs::{DownloadMethod, DownloadSource, StorageNodes};

/// Arguments of `sealtune download-model`.
#[derive(Debug, Args)]
pub struct DownloadModelArgs {
    /// The provider and the task.
    #[command(flatten)]
    pub task: TaskArgs,
    /// Where to write the encrypted model (a file, or a directory).
    #[arg(long, visible_alias = "data-path")]
    pub output: PathBuf,
    /// Download and check only; acknowledge later with `acknowledge-model`.
    #[arg(long)]
    pub no_acknowledge: bool,
    /// Where from: `auto` (0G Storage first when a node or an indexer is given, then the
    /// provider's TEE), `tee` or `0g-storage`. The file is checked against the chain either way.
    #[arg(long, value_enum, default_value_t = DownloadMethod::Auto)]
    pub download_method: DownloadMethod,
    /// A 0G Storage node's JSON-RPC URL (repeat, or comma-separate in the variable).
    #[arg(
        long = "storage-node",
        env = "SEALTUNE_STORAGE_NODES",
        value_delimiter = ','
    )]
    pub storage_nodes: Vec<String>,
    /// A 0G Storage indexer, asked for nodes when no --storage-node is given.
    #[arg(long, env = "SEALTUNE_STORAGE_INDEXER")]
    pub storage_indexer: Option<String>,
}

impl DownloadModelArgs {
    pub(super) async fn run(&self, ctx: &Ctx<'_>) -> Result<Output> {
        let provider = parse_address("--provider", &self.task.provider)?;
        let mut c = ctx.client()?;
        c.storage = StorageNodes {
            nodes: self.storage_nodes.clone(),
            indexer: self.storage_indexer.clone(),
        };
        let pb = bar("download", ctx.show_progress());
        let d = c
            .download_model_by(
                self.download_method,
                provider,
                &self.task.task_id,
                &self.output,
                !self.no_acknowledge,
                ctx.env.now_ms,
                &pb,
            )
            .await?;
        Ok(Output::new(to_json(&d), render_downloaded(&d, provider)))
    }
}

fn render_downloaded(d: &DownloadedModel, provider: Address) -> String {
    let next = match (&d.acknowledgement, d.acknowledged) {
        (Some(tx), _) => format!(
            "{}\nnext: `sealtune decrypt-model --provider {provider} --task-id {} --encrypted {} --output model.zip --wait 300`",
            tx_line("acknowledged", tx),
            d.task_id,
            d.path.display()
        ),
        (None, true) => "already acknowledged".to_owned(),
        (None, false) => format!(
            "NOT acknowledged (--no-acknowledge): run `sealtune acknowledge-model --provider {provider} --task-id {} --data-path {}`",
            d.task_id,
            d.path.display()
        ),
    };
    let source = match (d.source, &d.storage_error) {
        (DownloadSource::ZgStorage, _) => "from 0G Storage (every segment verified)".to_owned(),
        (DownloadSource::Tee, None) => "from the provider".to_owned(),
        (DownloadSource::Tee, Some(why)) => {
            format!("from the provider (0G Storage failed: {why})")
        }
    };
    format!(
        "downloaded {} bytes {source} to {}\n  hash matches the on-chain modelRootHash ({:?})\n  tag signature by the TEE signer {}\n{next}",
        d.bytes,
        d.path.display(),
        d.check.root_kind,
        d.check.tag_signer,
    )
}

/// Arguments of `sealtune acknowledge-model`.
#[derive(Debug, Args)]
pub struct AcknowledgeModelArgs {
    /// The provider and the task.
    #[command(flatten)]
    pub task: TaskArgs,
    /// The downloaded encrypted model to check before acknowledging.
    #[arg(long)]
    pub data_path: Option<PathBuf>,
    /// Refuse to acknowledge (and so to pay) unless the signed training report's tuned `eval_loss`
    /// is at most this (a report without one is refused).
    #[arg(long)]
    pub max_eval_loss: Option<f64>,
    /// Refuse to acknowledge unless the report's tuned `eval_loss` is below the base model's
    /// `base_eval_loss` (both computed in the TEE on the task's validation data).
    #[arg(long)]
    pub require_improvement: bool,
}

impl AcknowledgeModelArgs {
    pub(super) async fn run(&self, ctx: &Ctx<'_>) -> Result<Output> {
        let task = &self.task;
        let provider = parse_address("--provider", &task.provider)?;
        let c = ctx.client()?;
        if self.data_path.is_none() {
            eprintln!("note: acknowledging without --data-path: the model file is not checked");
        }
        let thresholds = crate::report::Thresholds {
            max_eval_loss: self.max_eval_loss,
            require_improvement: self.require_improvement,
        };
        if thresholds.any() {
            let checked = c.report(provider, &task.task_id).await?;
            thresholds
                .check(&checked.report)
                .map_err(crate::error::ClientError::BelowThreshold)?;
        }
        let (check, tx) = c
            .acknowledge_model(provider, &task.task_id, self.data_path.as_deref())
            .await?;
        Ok(Output::new(
            json!({ "task_id": task.task_id, "checked": check, "tx": tx, "acknowledged": true }),
            match &tx {
                Some(tx) => tx_line("acknowledged", tx),
                None => "already acknowledged".to_owned(),
            },
        ))
    }
}

/// Arguments of `sealtune decrypt-model`.
#[derive(Debug, Args)]
pub struct DecryptModelArgs {
    /// The provider and the task.
    #[command(flatten)]
    pub task: TaskArgs,
    /// The encrypted model (from download-model).
    #[arg(long)]
    pub encrypted: PathBuf,
    /// Where to write the decrypted zip.
    #[arg(long)]
    pub output: PathBuf,
    /// Also extract the zip into this new directory.
    #[arg(long)]
    pub unzip: Option<PathBuf>,
    /// Wait up to this many seconds for the provider's settlement.
    #[arg(long, default_value_t = 0)]
    pub wait: u64,
}

impl DecryptModelArgs {
    pub(super) async fn run(&self, ctx: &Ctx<'_>) -> Result<Output> {
        let task = &self.task;
        let provider = parse_address("--provider", &task.provider)?;
        let c = ctx.client()?;
        if self.wait > 0 {
            c.wait_settled(
                provider,
                &task.task_id,
                Duration::from_secs(self.wait),
                Duration::from_secs(2),
            )
            .await?;
        }
        let pb = bar("decrypt", ctx.show_progress());
        let d = c
            .decrypt_model(
                provider,
                &task.task_id,
                &self.encrypted,
                &self.output,
                self.unzip.as_deref(),
                &pb,
            )
            .await?;
        Ok(Output::new(to_json(&d), render_decrypted(&d)))
    }
}

fn render_decrypted(d: &DecryptedModel) -> String {
    format!(
        "decrypted {} bytes ({} chunk(s), signed by TEE signer {}) to {}{}",
        d.zip_bytes,
        d.chunks,
        d.tee_signer,
        d.zip.display(),
        d.extracted_to
            .as_ref()
            .map(|p| format!(
                "\nextracted {} file(s) into {}",
                d.files.unwrap_or(0),
                p.display()
            ))
            .unwrap_or_default()
    )
}

/// Arguments of `sealtune root-hash`.
#[derive(Debug, Args)]
pub struct RootHashArgs {
    /// The files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

impl RootHashArgs {
    pub(super) fn run(&self) -> Result<Output> {
        let roots = self
            .files
            .iter()
            .map(|f| root_hash(f))
            .collect::<Result<Vec<_>>>()?;
        let lines: Vec<String> = roots.iter().map(|r| r.root.to_string()).collect();
        let rows: Vec<Value> = roots.iter().map(to_json).collect();
        Ok(Output::new(Value::Array(rows), lines.join("\n")))
    }
}
