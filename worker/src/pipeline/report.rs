//! The training report (docs/PROTOCOL.md §9): what the worker saw of a task's training, signed by
//! the TEE signer once the deliverable's root is known.
//!
//! - While the script runs, [`Observed`] collects from its events: the steps, the loss curve and
//!   every named metric (its last value). Nothing is computed or guessed here: a script that reports
//!   no eval loss gets a report without one. What a script can make the worker keep is bounded
//!   ([`MAX_METRICS`], [`MAX_NAME_LEN`], the curve thinned as it grows).
//! - When training succeeds the observation is recorded ([`record_observed`]) before the seal is
//!   committed, so a restart after that point keeps it.
//! - Finalize calls [`ensure_signed`] once the root hash is known and before it announces the
//!   deliverable: the report is built from the task row, the measured config and the observation,
//!   signed ([`SignedReport::sign`]) and recorded; a recorded report for the same root is kept.
use std::collections::BTreeMap;

use alloy::primitives::B256;
use sealtune_protocol::events::Event;
use sealtune_protocol::report::{
    LossPoint, REPORT_VERSION, SignedReport, TrainingReport, sample_curve,
};
use serde::{Deserialize, Serialize};

use super::StepError;
use crate::app::Worker;
use crate::store::Task;

/// Most metric names kept per task (later new names are dropped).
pub const MAX_METRICS: usize = 32;
/// Longest metric name kept, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// The curve is thinned (every other point dropped) when it grows past this.
const MAX_RAW_CURVE: usize = 4096;

/// What the worker saw of one training run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// Unix seconds when the child started.
    pub started_at: i64,
    /// Wall time of the child, in milliseconds.
    pub wall_time_ms: u64,
    /// The highest step reported.
    #[serde(default)]
    pub steps: Option<u64>,
    /// The loss curve (thinned while it grows; sampled again into the report).
    #[serde(default)]
    pub curve: Vec<LossPoint>,
    /// Every named metric's last value.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

impl Observed {
    /// A run starting now.
    pub fn starting(started_at: i64) -> Observed {
        Observed {
            started_at,
            ..Observed::default()
        }
    }

    /// Takes what `event` tells (steps, losses, metrics); other events are ignored.
    pub fn see(&mut self, event: &Event) {
        match event {
            Event::Progress {
                step,
                loss,
                metrics,
                ..
            } => {
                self.steps = Some(self.steps.map_or(*step, |s| s.max(*step)));
                if let Some(loss) = loss {
                    self.curve.push(LossPoint {
                        step: *step,
                        loss: *loss,
                    });
                    if self.curve.len() > MAX_RAW_CURVE {
                        let mut i = 0usize;
                        self.curve.retain(|_| {
                            i += 1;
                            i.is_multiple_of(2)
                        });
                    }
                }
                for (name, value) in metrics {
                    if name.starts_with("eval_") || name.starts_with("base_") {
                        self.metric(name, *value);
                    }
                }
            }
            Event::Metric { name, value, .. } => self.metric(name, *value),
            _ => {}
        }
    }

    fn metric(&mut self, name: &str, value: f64) {
        if !value.is_finite() || name.is_empty() || name.len() > MAX_NAME_LEN {
            return;
        }
        if self.metrics.len() < MAX_METRICS || self.metrics.contains_key(name) {
            self.metrics.insert(name.to_owned(), value);
        }
    }
}

/// Records the observation of a successful training run (replacing an earlier attempt's).
pub(super) async fn record_observed(
    worker: &Worker,
    task: &Task,
    observed: &Observed,
) -> Result<(), StepError> {
    let text = serde_json::to_string(observed).map_err(StepError::retry)?;
    worker.store.set_observed(&task.id, &text).await?;
    Ok(())
}

/// Builds, signs and records the task's report for the deliverable `root`, unless one for that
/// root is recorded already.
pub(super) async fn ensure_signed(
    worker: &Worker,
    task: &Task,
    root: B256,
) -> Result<(), StepError> {
    if let Some(existing) = worker.store.report(&task.id).await?
        && existing
            .report()
            .is_ok_and(|r| r.model_root_hash == root && r.tee_signer == worker.attest.signer())
    {
        return Ok(());
    }
    let observed: Observed = match worker.store.observed(&task.id).await? {
        Some(text) => serde_json::from_str(&text).unwrap_or_default(),
        None => Observed::default(),
    };
    let report = build(worker, task, root, &observed)?;
    let domain =
        sealtune_protocol::eip712::domain(worker.chain.chain_id, worker.chain.serving_address());
    let signed = SignedReport::sign(&report, worker.attest.signing_key(), &domain);
    worker.store.set_report(&task.id, &signed).await?;
    let mut line = "training report signed".to_owned();
    for name in [
        sealtune_protocol::report::metric::BASE_EVAL_LOSS,
        sealtune_protocol::report::metric::EVAL_LOSS,
    ] {
        if let Some(v) = report.metrics.get(name) {
            line.push_str(&format!(", {name} {v:.4}"));
        }
    }
    worker.task_log(&task.id, line).await;
    Ok(())
}

/// The report of `task` for the deliverable `root` from what was observed.
fn build(
    worker: &Worker,
    task: &Task,
    root: B256,
    observed: &Observed,
) -> Result<TrainingReport, StepError> {
    let model = super::model_of(worker, task)?;
    let script_sha256 = worker
        .measured
        .document
        .models
        .iter()
        .find(|m| m.hash == model.hash)
        .map(|m| m.script.sha256)
        .unwrap_or_default();
    Ok(TrainingReport {
        version: REPORT_VERSION,
        task_id: task.id.clone(),
        user: task.user_address,
        provider: worker.chain.address,
        tee_signer: worker.attest.signer(),
        serving_contract: worker.chain.serving_address(),
        chain_id: worker.chain.chain_id,
        base_model: model.name.clone(),
        base_model_hash: model.hash,
        dataset_hash: task.dataset_hash.hash(),
        model_root_hash: root,
        script_sha256,
        config_hash: worker.measured.hash,
        training_params: task.training_params.as_str().to_owned(),
        tokens_billed: task.token_count.unwrap_or(0),
        fee: task.task_fee.unwrap_or(task.fee).to_string(),
        steps: observed.steps,
        started_at: observed.started_at,
        wall_time_ms: observed.wall_time_ms,
        loss_curve: sample_curve(&observed.curve),
        metrics: observed.metrics.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_taken_as_reported_and_bounded() {
        let mut o = Observed::starting(1);
        o.see(&Event::Metric {
            name: "eval_loss".into(),
            value: 1.25,
            step: None,
        });
        for i in 0..100 {
            o.see(&Event::Metric {
                name: format!("m{i}"),
                value: 1.0,
                step: None,
            });
        }
        o.see(&Event::Metric {
            name: "x".repeat(MAX_NAME_LEN + 1),
            value: 1.0,
            step: None,
        });
        o.see(&Event::Metric {
            name: "eval_loss".into(),
            value: 0.5,
            step: None,
        });
        assert_eq!(o.metrics.len(), MAX_METRICS);
        assert_eq!(o.metrics["eval_loss"], 0.5);
        assert!(o.steps.is_none(), "no step reported, none invented");
    }

    #[test]
    fn the_curve_stays_bounded() {
        let mut o = Observed::starting(1);
        for step in 1..=20_000u64 {
            o.see(&Event::Progress {
                step,
                total: None,
                loss: Some(1.0),
                learning_rate: None,
                epoch: None,
                metrics: Default::default(),
            });
        }
        assert!(o.curve.len() <= MAX_RAW_CURVE);
        assert_eq!(o.steps, Some(20_000));
    }
}
