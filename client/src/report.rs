//! The training report as the customer reads it (docs/PROTOCOL.md §9): fetched from the provider,
//! checked against the chain (TEE signature in the serving contract's domain, signer = the service's
//! `teeSignerAddress`, the document's task, customer, provider and root = the deliverable on chain),
//! and the customer's thresholds applied before `acknowledge-model` pays.
use alloy::primitives::{Address, B256};
use sealtune_protocol::report::{SignedReport, TrainingReport, metric};

use crate::error::{ClientError, Result};
use crate::flow::Client;

/// A report that verified.
#[derive(Debug, Clone)]
pub struct CheckedReport {
    /// The report.
    pub report: TrainingReport,
    /// What the provider served (to save and check again with `sealtune-verify report`).
    pub signed: SignedReport,
}

/// What the customer requires of the report before acknowledging.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Thresholds {
    /// The tuned model's `eval_loss` must be at most this.
    pub max_eval_loss: Option<f64>,
    /// The tuned model's `eval_loss` must be below the base model's `base_eval_loss`.
    pub require_improvement: bool,
}

impl Thresholds {
    /// Whether any threshold is set.
    pub fn any(&self) -> bool {
        self.max_eval_loss.is_some() || self.require_improvement
    }

    /// Checks `report`; a metric the report lacks fails the threshold that needs it.
    pub fn check(&self, report: &TrainingReport) -> std::result::Result<(), String> {
        let get = |name: &str| report.metrics.get(name).copied();
        if let Some(max) = self.max_eval_loss {
            match get(metric::EVAL_LOSS) {
                None => {
                    return Err(format!(
                        "the report has no {} (the script computed none)",
                        metric::EVAL_LOSS
                    ));
                }
                Some(loss) if loss > max => {
                    return Err(format!(
                        "{} {loss} is above the threshold {max}",
                        metric::EVAL_LOSS
                    ));
                }
                Some(_) => {}
            }
        }
        if self.require_improvement {
            match (get(metric::BASE_EVAL_LOSS), get(metric::EVAL_LOSS)) {
                (Some(base), Some(tuned)) if tuned < base => {}
                (Some(base), Some(tuned)) => {
                    return Err(format!(
                        "the tuned {} {tuned} is not below the base model's {base}",
                        metric::EVAL_LOSS
                    ));
                }
                _ => {
                    return Err(format!(
                        "the report lacks {} or {}: no improvement can be shown",
                        metric::BASE_EVAL_LOSS,
                        metric::EVAL_LOSS
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Client {
    /// Fetches the report of `task_id` from `provider` and checks it against the chain.
    pub async fn report(&self, provider: Address, task_id: &str) -> Result<CheckedReport> {
        sealtune_protocol::request::parse_task_id(task_id)?;
        let user = self.user()?;
        let (service, api) = self.provider_api(provider).await?;
        let signed = api.report(user, task_id).await?;
        let deliverable = self.deliverable(provider, task_id).await?;
        let domain = sealtune_protocol::eip712::domain(
            self.chain.chain_id().await?,
            self.chain.serving_address(),
        );
        let bad = |detail: String| ClientError::BadReport(detail);
        let (report, signer) = signed.verify(&domain).map_err(|e| bad(e.to_string()))?;
        if signer != service.tee_signer {
            return Err(bad(format!(
                "signed by {signer}, not the provider's TEE signer {} on chain",
                service.tee_signer
            )));
        }
        if report.task_id != task_id || report.user != user || report.provider != provider {
            return Err(bad(format!(
                "it is about task {} of {} with provider {}, not task {task_id} of {user} with {provider}",
                report.task_id, report.user, report.provider
            )));
        }
        if B256::try_from(deliverable.model_root_hash.as_ref()).ok() != Some(report.model_root_hash)
        {
            return Err(bad(format!(
                "its model root {} is not the deliverable's on chain",
                report.model_root_hash
            )));
        }
        Ok(CheckedReport { report, signed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(metrics: &[(&str, f64)]) -> TrainingReport {
        let mut r = TrainingReport::example();
        r.metrics = metrics.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        r
    }

    #[test]
    fn thresholds_refuse_a_worse_or_silent_report() {
        let max = Thresholds {
            max_eval_loss: Some(2.0),
            require_improvement: false,
        };
        assert!(max.check(&with(&[("eval_loss", 1.5)])).is_ok());
        assert!(
            max.check(&with(&[("eval_loss", 2.5)]))
                .unwrap_err()
                .contains("above")
        );
        assert!(max.check(&with(&[])).unwrap_err().contains("no eval_loss"));

        let better = Thresholds {
            max_eval_loss: None,
            require_improvement: true,
        };
        assert!(
            better
                .check(&with(&[("base_eval_loss", 3.0), ("eval_loss", 1.5)]))
                .is_ok()
        );
        assert!(
            better
                .check(&with(&[("base_eval_loss", 1.0), ("eval_loss", 1.5)]))
                .is_err()
        );
        assert!(
            better.check(&with(&[("eval_loss", 1.5)])).is_err(),
            "no base: no improvement shown"
        );
        assert!(!Thresholds::default().any());
    }
}
