//! `sealtune-verify report`: a task's signed training report (docs/PROTOCOL.md §9).
//!
//! Links: the document parses as a report of this version; its EIP-712 signature (in the serving
//! contract's domain, chain id from the chain) recovers to the document's `tee_signer`; that signer is
//! the provider's `teeSignerAddress` on chain, acknowledged by the contract owner; the document's
//! `model_root_hash` is the deliverable's root on chain; the document's chain, contract, provider and
//! user are those asked about. Any edited byte changes the signed hash, so the signature link fails.
use alloy::primitives::{Address, B256};
use sealtune_protocol::report::{SignedReport, TrainingReport};

use crate::chain::{OnchainDeliverable, RegisteredSigner};
use crate::verify::VerificationReport;

/// What the chain says, read by the caller.
#[derive(Debug, Clone)]
pub struct ChainFacts {
    /// The chain id.
    pub chain_id: u64,
    /// The serving contract.
    pub serving: Address,
    /// The provider's service as registered.
    pub signer: RegisteredSigner,
    /// The report's deliverable on chain.
    pub deliverable: OnchainDeliverable,
}

/// Checks `signed` against the chain; `user` is the customer the caller expects (when given).
pub fn check_report(
    signed: &SignedReport,
    facts: &ChainFacts,
    user: Option<Address>,
    now: u64,
) -> (VerificationReport, Option<TrainingReport>) {
    let mut rep = VerificationReport::new(now);
    let domain = sealtune_protocol::eip712::domain(facts.chain_id, facts.serving);
    let verified = signed.verify(&domain);
    rep.push_link(
        "report signature",
        verified
            .as_ref()
            .map(|(r, s)| {
                format!(
                    "EIP-712 TrainingReport of task {} recovers to {s}",
                    r.task_id
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
        if recovered == facts.signer.tee_signer {
            Ok(format!(
                "{recovered} is provider {}'s teeSignerAddress on chain",
                facts.signer.provider
            ))
        } else {
            Err(format!(
                "the report is signed by {recovered}, but provider {}'s teeSignerAddress on chain is {}",
                facts.signer.provider, facts.signer.tee_signer
            ))
        },
    );
    rep.push_link(
        "signer acknowledged",
        if facts.signer.acknowledged {
            Ok("the contract owner acknowledged this TEE signer".into())
        } else {
            Err("the service's TEE signer is not acknowledged by the contract owner".into())
        },
    );
    rep.push_link("report subject", subject_link(&report, facts, user));
    rep.push_link("root hash", root_link(&report, &facts.deliverable));
    rep.push_info("metrics", Ok(metrics_line(&report)));
    rep.finish();
    (rep, Some(report))
}

/// The document names the chain, contract, provider and customer asked about.
fn subject_link(
    report: &TrainingReport,
    facts: &ChainFacts,
    user: Option<Address>,
) -> Result<String, String> {
    check_subject(
        ReportSubject {
            chain_id: report.chain_id,
            serving: report.serving_contract,
            provider: report.provider,
            user: report.user,
        },
        facts,
        user,
    )?;
    Ok(format!(
        "task {} of customer {} with provider {}",
        report.task_id, report.user, report.provider
    ))
}

/// The document's root is the deliverable's on chain.
fn root_link(report: &TrainingReport, on_chain: &OnchainDeliverable) -> Result<String, String> {
    let chain_root = B256::try_from(on_chain.model_root_hash.as_ref()).ok();
    match chain_root {
        Some(root) if root == report.model_root_hash => Ok(format!(
            "the report's model root {root} is deliverable {:?}'s on chain",
            on_chain.id
        )),
        _ => Err(format!(
            "the report's model root {} is not deliverable {:?}'s on chain (0x{})",
            report.model_root_hash,
            on_chain.id,
            hex::encode(&on_chain.model_root_hash)
        )),
    }
}

/// The metrics, as reported (names the report does not have are not shown).
pub fn metrics_line(report: &TrainingReport) -> String {
    let mut parts: Vec<String> = report
        .metrics
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if let Some(steps) = report.steps {
        parts.push(format!("steps {steps}"));
    }
    parts.push(format!("tokens {}", report.tokens_billed));
    parts.push(format!("wall time {} ms", report.wall_time_ms));
    parts.join(", ")
}

/// Who a signed report (training or evaluation) says it is about.
pub(crate) struct ReportSubject {
    pub(crate) chain_id: u64,
    pub(crate) serving: Address,
    pub(crate) provider: Address,
    pub(crate) user: Address,
}

/// The report names the chain, contract and provider asked about, and `user` when the caller
/// expects one: the one subject rule of every signed report.
pub(crate) fn check_subject(
    report: ReportSubject,
    facts: &ChainFacts,
    user: Option<Address>,
) -> Result<(), String> {
    if report.chain_id != facts.chain_id || report.serving != facts.serving {
        return Err(format!(
            "the report is for chain {} contract {}, not chain {} contract {}",
            report.chain_id, report.serving, facts.chain_id, facts.serving
        ));
    }
    if report.provider != facts.signer.provider {
        return Err(format!(
            "the report names provider {}, not {}",
            report.provider, facts.signer.provider
        ));
    }
    if let Some(user) = user
        && user != report.user
    {
        return Err(format!(
            "the report is for customer {}, not {user}",
            report.user
        ));
    }
    Ok(())
}
