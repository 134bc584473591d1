//! The GPU links of a quote report ([`crate::verify::verify_document`]), in order:
//! `GPU evidence`, `GPU binding`, then per GPU `GPU report`, `GPU chain`, `GPU signature`,
//! `GPU FWID`, `GPU nonce`, `GPU measurements` (with `--rim`), `GPU versions` (informational), then
//! `policy gpu` and `dstack GPU events` (informational).
//!
//! An answer without `nvidia_payload` and a policy without `[gpu]` add no link: the report of a
//! CPU-only provider is unchanged.

use sealtune_protocol::attestation::AttestationDocument;
use sha2::{Digest as _, Sha256};

use super::{GpuInputs, GpuOutcome, verify_payload};
use crate::verify::{QuoteDocument, VerificationReport, VerifyOptions};

/// Checks the answer's GPU evidence and pushes its links.
pub fn push_gpu_links(rep: &mut VerificationReport, doc: &QuoteDocument, opts: &VerifyOptions) {
    let gpu_policy = opts.policy.as_ref().filter(|p| !p.gpu.is_empty());
    let required = gpu_policy.is_some_and(|p| p.gpu.requires_evidence());
    if doc.nvidia_payload.is_none() && gpu_policy.is_none() {
        return;
    }
    let document = doc
        .attestation_document
        .as_ref()
        .and_then(|v| AttestationDocument::from_json(v).ok());
    let bound_expected = document.is_some() || required;
    let outcome = verify_payload(
        doc.nvidia_payload.as_ref(),
        &GpuInputs {
            now: opts.now,
            document,
            reference: opts.gpu_reference.clone(),
            root_der: None,
        },
    );
    push_evidence_links(rep, &outcome, required, bound_expected);
    if let Some(p) = gpu_policy
        && let Some(r) = p.gpu.check(&p.origin, &outcome)
    {
        rep.push_link("policy gpu", r);
    }
    if let Some(r) = dstack_gpu_events(rep, doc, &outcome) {
        rep.push_info("dstack GPU events", r);
    }
    rep.gpu = Some(outcome);
}

fn push_evidence_links(
    rep: &mut VerificationReport,
    outcome: &GpuOutcome,
    required: bool,
    bound_expected: bool,
) {
    if let Some(why) = &outcome.absent {
        let r = Err(format!("no GPU evidence: {why}"));
        if required {
            rep.push_link("GPU evidence", r);
        } else {
            rep.push_info("GPU evidence", r);
        }
        return;
    }
    if let Some(why) = &outcome.malformed {
        rep.push_link("GPU evidence", Err(why.clone()));
        return;
    }
    rep.push_link(
        "GPU evidence",
        Ok(format!(
            "{} GPU(s), arch {}, payload hash {}, CC {}",
            outcome.gpus.len(),
            outcome.arch.as_deref().unwrap_or("?"),
            outcome.hash.map(|h| h.to_string()).unwrap_or_default(),
            match outcome.cc {
                Some(c) => format!(
                    "on={} dev_tools={} (NVML, bound)",
                    c.cc_enabled, c.dev_tools
                ),
                None => "state not reported".into(),
            }
        )),
    );
    if outcome.gpus.is_empty() {
        rep.push_link("GPU evidence", Err("the evidence list is empty".into()));
    }
    if let Some(b) = &outcome.binding {
        if bound_expected {
            rep.push_link("GPU binding", b.clone());
        } else {
            rep.push_info("GPU binding", b.clone());
        }
    }
    for g in &outcome.gpus {
        let at = |r: &Result<String, String>| {
            r.clone()
                .map(|d| format!("GPU {}: {d}", g.index))
                .map_err(|d| format!("GPU {}: {d}", g.index))
        };
        rep.push_link("GPU report", at(&g.parse));
        rep.push_link("GPU chain", at(&g.chain));
        rep.push_link("GPU signature", at(&g.signature));
        rep.push_link("GPU FWID", at(&g.fwid));
        rep.push_link("GPU nonce", at(&g.nonce));
        if let Some(m) = &g.measurements {
            rep.push_link("GPU measurements", at(m));
        }
        rep.push_info(
            "GPU versions",
            Ok(format!(
                "GPU {}: driver {}, VBIOS {} (signed opaque data)",
                g.index,
                g.driver_version.as_deref().unwrap_or("unknown"),
                g.vbios_version.as_deref().unwrap_or("unknown")
            )),
        );
    }
}

/// dstack's boot-time GPU events (`gpu-policy-hash`, `gpu-attestation`), when the replayed log
/// has them: reported, and the `gpu-attestation` summary is searched for the served evidence's
/// hashes (the payload hash, or SHA-256 of one GPU's report). dstack attests the GPUs at boot with
/// its own nonce, so its evidence is not the per-request evidence served here; a match is shown,
/// a non-match is expected and only informs.
fn dstack_gpu_events(
    rep: &VerificationReport,
    doc: &QuoteDocument,
    outcome: &GpuOutcome,
) -> Option<Result<String, String>> {
    let log = rep.event_log.as_ref()?;
    if log.gpu_policy_hash.is_none() && log.gpu_attestation.is_none() {
        return None;
    }
    let mut parts = Vec::new();
    if let Some(h) = &log.gpu_policy_hash {
        parts.push(format!("gpu-policy-hash {h}"));
    }
    let Some(att) = &log.gpu_attestation else {
        return Some(Ok(parts.join("; ")));
    };
    let lower = att.to_ascii_lowercase();
    let mut candidates: Vec<String> = outcome
        .hash
        .iter()
        .map(|h| hex::encode(h.as_slice()))
        .collect();
    if let Some(payload) = doc
        .nvidia_payload
        .as_ref()
        .and_then(|v| sealtune_protocol::gpu::NvidiaPayload::from_json(v).ok())
    {
        for (i, e) in payload.evidence_list.iter().enumerate() {
            if let Ok(bytes) = e.evidence_bytes(i) {
                candidates.push(hex::encode(Sha256::digest(&bytes)));
            }
        }
    }
    let found = candidates.iter().find(|c| lower.contains(c.as_str()));
    parts.push(match found {
        Some(c) => format!("gpu-attestation records served evidence hash {c}"),
        None => format!(
            "gpu-attestation ({} bytes) records boot-time evidence, not the evidence served here \
             (another nonce)",
            att.len()
        ),
    });
    Some(if found.is_some() || candidates.is_empty() {
        Ok(parts.join("; "))
    } else {
        Err(parts.join("; "))
    })
}
