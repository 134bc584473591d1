//! The task commands: upload-dataset, create-task, query-progress, get-log, cancel-task.

use std::path::PathBuf;
use std::sync::Arc;

use alloy::primitives::Address;
use clap::Args;
use sealtune_protocol::task::TaskState;
use serde_json::{Value, json};

use super::{Ctx, Output, VerifyArgs, dev_warning, read_params, to_json, verify_options};
use crate::amount::{format_0g, parse_amount};
use crate::api::Task;
use crate::config::parse_address;
use crate::error::{ClientError, Result};
use crate::flow::{CreateTaskRequest, CreatedTask, DatasetSource, VerifyMode};
use crate::progress::{Progress, bar};

/// `--provider` and `--task-id`.
#[derive(Debug, Args)]
pub struct TaskArgs {
    /// The provider's address.
    #[arg(long)]
    pub provider: String,
    /// The task id (a UUID).
    #[arg(long = "task-id", visible_alias = "task")]
    pub task_id: String,
}

/// Arguments of `sealtune upload-dataset`.
#[derive(Debug, Args)]
pub struct UploadDatasetArgs {
    /// The provider's address.
    #[arg(long)]
    pub provider: String,
    /// The dataset file (JSONL or zip).
    #[arg(long)]
    pub data_path: PathBuf,
}

impl UploadDatasetArgs {
    pub(super) async fn run(&self, ctx: &Ctx<'_>) -> Result<Output> {
        let provider = parse_address("--provider", &self.provider)?;
        let c = ctx.client()?;
        let pb: Arc<dyn Progress> = Arc::new(bar("upload", ctx.show_progress()));
        let up = c
            .upload_dataset(provider, &self.data_path, ctx.env.now_ms, pb)
            .await?;
        Ok(Output::new(
            to_json(&up),
            format!(
                "uploaded {} bytes; dataset hash {}",
                up.bytes, up.dataset_hash
            ),
        ))
    }
}

/// Arguments of `sealtune create-task`.
#[derive(Debug, Args)]
pub struct CreateTaskArgs {
    /// The provider's address.
    #[arg(long)]
    pub provider: String,
    /// The model name (as the provider lists it) or its hash.
    #[arg(long, visible_alias = "pretrained-model")]
    pub model: String,
    /// A dataset hash already uploaded.
    #[arg(
        long,
        conflicts_with = "dataset_path",
        required_unless_present = "dataset_path"
    )]
    pub dataset: Option<String>,
    /// A dataset file to upload to the provider's TEE first.
    #[arg(long)]
    pub dataset_path: Option<PathBuf>,
    /// Training parameters JSON file.
    #[arg(long)]
    pub config_path: PathBuf,
    /// The most you agree to pay (in 0G): signed into the request; the task fails before
    /// training if the fee is higher.
    #[arg(long)]
    pub max_fee: Option<String>,
    /// Queue behind the provider's other tasks if it is busy.
    #[arg(long)]
    pub wait: bool,
    /// How the dataset's rows become records (docs/dataset-guide.md): `instruct`, `pretrain`,
    /// `alpaca`, or a JSON object mapping columns, e.g.
    /// '{"field_instruction":"question","field_output":"answer","format":"Q: {instruction} {input}\nA:"}'.
    /// A template changes what is billed: the formatted prompt + the output.
    #[arg(long)]
    pub dataset_type: Option<sealtune_protocol::dataset_type::DatasetType>,
    /// Skip the attestation check (you then trust the provider blindly).
    #[arg(long)]
    pub no_verify: bool,
    /// Attestation options.
    #[command(flatten)]
    pub verify: VerifyArgs,
}

impl CreateTaskArgs {
    pub(super) async fn run(&self, ctx: &Ctx<'_>) -> Result<Output> {
        let req = self.request(ctx)?;
        let c = ctx.client()?;
        let pb: Arc<dyn Progress> = Arc::new(bar("upload", ctx.show_progress()));
        let t = c.create_task(&req, ctx.env.now_ms, pb).await?;
        Ok(Output::new(to_json(&t), render_created(&t)))
    }

    /// The request the arguments describe (files read, the attestation options set).
    fn request(&self, ctx: &Ctx<'_>) -> Result<CreateTaskRequest> {
        let provider = parse_address("--provider", &self.provider)?;
        let training_params = read_params(&self.config_path)?;
        let max_fee = self.max_fee.as_deref().map(parse_amount).transpose()?;
        let dataset = match (&self.dataset, &self.dataset_path) {
            (Some(h), None) => DatasetSource::Hash(h.clone()),
            (None, Some(p)) => DatasetSource::File(p.clone()),
            _ => {
                return Err(ClientError::InvalidInput(
                    "give exactly one of --dataset HASH and --dataset-path FILE".into(),
                ));
            }
        };
        let verify = if self.no_verify {
            eprintln!("WARNING: --no-verify: the provider's attestation is not checked");
            VerifyMode::Skip
        } else {
            dev_warning(self.verify.allow_dev_quote);
            VerifyMode::Verify(verify_options(&self.verify, ctx.env)?)
        };
        Ok(CreateTaskRequest {
            provider,
            model: self.model.clone(),
            dataset,
            training_params,
            max_fee,
            wait: self.wait,
            verify,
            dataset_type: self.dataset_type.clone(),
        })
    }
}

fn render_created(t: &CreatedTask) -> String {
    format!(
        "created task {}\n  provider verified: {}{}\n  dataset {}\n  signature: {} form{}\nfollow it with `sealtune query-progress --provider {} --task-id {}`",
        t.task_id,
        t.provider_verified,
        if t.dev_quote {
            " (INSECURE dev attestation)"
        } else {
            ""
        },
        t.dataset_hash,
        t.signature_form,
        t.max_fee
            .map(|f| format!(", fee ceiling {} 0G", format_0g(f)))
            .unwrap_or_default(),
        t.provider,
        t.task_id
    )
}

/// Arguments of `sealtune query-progress`.
#[derive(Debug, Args)]
pub struct QueryProgressArgs {
    /// The provider's address.
    #[arg(long)]
    pub provider: String,
    /// The task id.
    #[arg(long = "task-id", visible_alias = "task")]
    pub task_id: Option<String>,
    /// List every task with this provider.
    #[arg(long, conflicts_with = "task_id")]
    pub all: bool,
}

impl QueryProgressArgs {
    pub(super) async fn run(&self, ctx: &Ctx<'_>) -> Result<Output> {
        let provider = parse_address("--provider", &self.provider)?;
        let c = ctx.client()?;
        if self.all {
            let tasks = c.tasks(provider).await?;
            return Ok(Output::new(to_json(&tasks), render_tasks(&tasks)));
        }
        let t = c.task(provider, self.task_id.as_deref()).await?;
        let state = t.progress.clone().unwrap_or_else(|| "?".into());
        let next = next_step(&state, provider, &t.id);
        let mut j = to_json(&t);
        if let Value::Object(m) = &mut j {
            m.insert("next".into(), json!(next));
        }
        Ok(Output::new(
            j,
            format!(
                "task {}: {state}{}\n{next}",
                t.id,
                t.fee
                    .as_deref()
                    .filter(|f| *f != "0")
                    .map(|f| format!(" (fee {f} neuron)"))
                    .unwrap_or_default()
            ),
        ))
    }
}

/// `query-progress --all`: one line per task.
fn render_tasks(tasks: &[Task]) -> String {
    if tasks.is_empty() {
        return "no tasks".into();
    }
    tasks
        .iter()
        .map(|t| {
            format!(
                "{}  {}  {}",
                t.id,
                t.progress.as_deref().unwrap_or("?"),
                t.created_at.as_deref().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What to do next in a task's state.
pub fn next_step(state: &str, provider: Address, id: &str) -> String {
    let Ok(state) = state.parse::<TaskState>() else {
        return format!("see `sealtune get-log --provider {provider} --task-id {id}`");
    };
    if state.is_pending() {
        format!(
            "next: wait; check again with `sealtune query-progress --provider {provider} --task-id {id}` (log: `sealtune get-log`)"
        )
    } else if state == TaskState::Delivered {
        format!(
            "next: `sealtune download-model --provider {provider} --task-id {id} --output model.enc` (checks, then acknowledges)"
        )
    } else if state.is_delivered() {
        // UserAcknowledged or Finished: the key is (or soon will be) on chain.
        format!(
            "next: `sealtune decrypt-model --provider {provider} --task-id {id} --encrypted model.enc --output model.zip --wait 300`"
        )
    } else {
        format!(
            "the task failed: see why with `sealtune get-log --provider {provider} --task-id {id}`"
        )
    }
}

/// Arguments of `sealtune get-log`.
#[derive(Debug, Args)]
pub struct GetLogArgs {
    /// The provider's address.
    #[arg(long)]
    pub provider: String,
    /// The task id (default: the latest).
    #[arg(long = "task-id", visible_alias = "task")]
    pub task_id: Option<String>,
}

impl GetLogArgs {
    pub(super) async fn run(&self, ctx: &Ctx<'_>) -> Result<Output> {
        let provider = parse_address("--provider", &self.provider)?;
        let c = ctx.client()?;
        let (id, log) = c.log(provider, self.task_id.as_deref()).await?;
        Ok(Output::new(
            json!({ "task_id": id, "log": log }),
            log.trim_end(),
        ))
    }
}

/// Arguments of `sealtune cancel-task`.
#[derive(Debug, Args)]
pub struct CancelTaskArgs {
    /// The provider and the task.
    #[command(flatten)]
    pub task: TaskArgs,
}

impl CancelTaskArgs {
    pub(super) async fn run(&self, ctx: &Ctx<'_>) -> Result<Output> {
        let task = &self.task;
        let provider = parse_address("--provider", &task.provider)?;
        let c = ctx.client()?;
        let answer = c.cancel_task(provider, &task.task_id).await?;
        Ok(Output::new(
            json!({ "task_id": task.task_id, "cancelled": true, "answer": answer }),
            format!("task {} cancelled", task.task_id),
        ))
    }
}
