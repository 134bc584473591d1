//! `sealtune list-checkpoints`: a task's sealed training checkpoints, as its provider lists them.

use clap::Args;
use serde_json::json;

use super::{Ctx, Output, TaskArgs};
use crate::config::parse_address;
use crate::error::Result;

/// Arguments of `sealtune list-checkpoints`.
#[derive(Debug, Args)]
pub struct ListCheckpointsArgs {
    /// The provider and the task.
    #[command(flatten)]
    pub task: TaskArgs,
}

impl ListCheckpointsArgs {
    pub(super) async fn run(&self, ctx: &Ctx<'_>) -> Result<Output> {
        let provider = parse_address("--provider", &self.task.provider)?;
        let c = ctx.client()?;
        let list = c.checkpoints(provider, &self.task.task_id).await?;
        let mut human = if list.is_empty() {
            format!(
                "task {}: no sealed checkpoint (the model does not checkpoint, training has not reached the first one, or the task ended and they were deleted)",
                self.task.task_id
            )
        } else {
            format!(
                "task {}: {} sealed checkpoint(s)\n",
                self.task.task_id,
                list.len()
            )
        };
        for c in &list {
            let when = format!("sealed at unix {}", c.created_at);
            let loss = c.loss.map_or_else(|| "-".to_owned(), |l| format!("{l:.4}"));
            human.push_str(&format!(
                "  step {:>6}  loss {loss:>8}  {when}  {} bytes sealed\n",
                c.step, c.sealed_bytes
            ));
        }
        Ok(Output::new(
            json!({ "task_id": self.task.task_id, "checkpoints": list }),
            human.trim_end(),
        ))
    }
}
