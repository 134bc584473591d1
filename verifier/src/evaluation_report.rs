//! `sealtune-verify report` on a signed evaluation report (docs/PROTOCOL.md §10), the sibling of
//! [`crate::training_report`]: the same links, with the *evaluated* task's deliverable as the root
//! the document must name.
//!
//! Links: the EIP-712 `EvaluationReport` signature (serving contract's domain) recovers to the
//! document's `tee_signer`; that signer is the provider's `teeSignerAddress` on chain, acknowledged;
//! the document's chain, contract, provider (and customer, when asked) are those asked about; its
//! `evaluated_root_hash` is the evaluated task's deliverable root on chain.
use alloy::primitives::{Address, B256};
use sealtune_protocol::evaluation::{EvaluationReport, SignedEvaluation};

use crate::training_report::ChainFacts;
use crate::verify::VerificationReport;

/// Checks `signed` against the chain (`facts.deliverable` is the evaluated task's); `user` is the
/// customer the caller expects (when given).
pub fn check_evaluation(
    signed: &SignedEvaluation,
    facts: &ChainFacts,
    user: Option<Address>,
    now: u64,
) -> (VerificationReport, Option<EvaluationReport>) {
    let mut rep = VerificationReport::new(now);
    let domain = sealtune_protocol::eip712::domain(facts.chain_id, facts.serving);
    let verified = signed.verify(&domain);
    rep.push_link(
        "report signature",
        verified
            .as_ref()
            .map(|(r, s)| {
                format!(
                    "EIP-712 EvaluationReport of task {} (evaluating task {}) recovers to {s}",
                    r.task_id, r.evaluated_task_id
                )
            })
            .map_err(|e| e.to_string()),
    );
    let Ok((report, recovered)) = verified else {
        rep.finish();
        return (rep, signed.report().ok());
    };
    rep.push_link(
        "TEE signer",
        if recovered == facts.signer.tee_signer && facts.signer.acknowledged {
            Ok(format!(
                "{recovered} is provider {}'s acknowledged teeSignerAddress on chain",
                facts.signer.provider
            ))
        } else {
            Err(format!(
                "the report is signed by {recovered}; provider {}'s teeSignerAddress on chain is {} (acknowledged: {})",
                facts.signer.provider, facts.signer.tee_signer, facts.signer.acknowledged
            ))
        },
    );
    rep.push_link("report subject", subject(&report, facts, user));
    let chain_root = B256::try_from(facts.deliverable.model_root_hash.as_ref()).ok();
    rep.push_link(
        "root hash",
        if chain_root == Some(report.evaluated_root_hash) {
            Ok(format!(
                "the evaluated root {} is task {}'s deliverable on chain",
                report.evaluated_root_hash, report.evaluated_task_id
            ))
        } else {
            Err(format!(
                "the evaluated root {} is not task {}'s deliverable on chain (0x{})",
                report.evaluated_root_hash,
                report.evaluated_task_id,
                hex::encode(&facts.deliverable.model_root_hash)
            ))
        },
    );
    let mut metrics: Vec<String> = report
        .metrics
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    metrics.push(format!("is_finetune {}", report.is_finetune));
    metrics.push(format!("tokens {}", report.tokens_billed));
    rep.push_info("metrics", Ok(metrics.join(", ")));
    rep.finish();
    (rep, Some(report))
}

fn subject(
    report: &EvaluationReport,
    facts: &ChainFacts,
    user: Option<Address>,
) -> Result<String, String> {
    crate::training_report::check_subject(
        crate::training_report::ReportSubject {
            chain_id: report.chain_id,
            serving: report.serving_contract,
            provider: report.provider,
            user: report.user,
        },
        facts,
        user,
    )?;
    Ok(format!(
        "evaluation {} of customer {}'s task {} with provider {}",
        report.task_id, report.user, report.evaluated_task_id, report.provider
    ))
}
