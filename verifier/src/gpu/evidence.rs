//! One GPU's evidence, checked link by link: the certificate chain to NVIDIA's root, the SPDM
//! signature with the leaf's key, the leaf's FWID against the report's, the nonce, the versions,
//! and the measurements against reference values when there are some.

use std::collections::BTreeMap;

use p384::ecdsa::{Signature, signature::Verifier as _};
use serde::Serialize;

use super::chain::ChainVerifier;
use super::spdm::Report;

/// Accepted digests per measurement block index (1-based, as in the report), from RIMs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferenceValues {
    /// Block index → the accepted values (any of them).
    pub measurements: BTreeMap<u8, Vec<Vec<u8>>>,
    /// Where they came from (RIM ids), for the report.
    pub sources: Vec<String>,
}

/// The outcome of one GPU's checks: each `Ok(detail)` or `Err(reason)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuCheck {
    /// Index in `evidence_list`.
    pub index: usize,
    /// The report parses.
    pub parse: Result<String, String>,
    /// The certificate chain holds.
    pub chain: Result<String, String>,
    /// The SPDM signature verifies with the leaf's key.
    pub signature: Result<String, String>,
    /// The leaf's FWID equals the report's.
    pub fwid: Result<String, String>,
    /// The request nonce is the expected one.
    pub nonce: Result<String, String>,
    /// Measurements against reference values (`None`: none supplied).
    pub measurements: Option<Result<String, String>>,
    /// Driver version, from the signed opaque data.
    pub driver_version: Option<String>,
    /// VBIOS version, from the signed opaque data.
    pub vbios_version: Option<String>,
}

impl GpuCheck {
    /// Every check holds.
    pub fn ok(&self) -> bool {
        self.parse.is_ok()
            && self.chain.is_ok()
            && self.signature.is_ok()
            && self.fwid.is_ok()
            && self.nonce.is_ok()
            && self.measurements.as_ref().is_none_or(Result::is_ok)
    }
}

/// Checks one GPU's report and certificate chain. `expected_nonce` is the nonce the GPU must have
/// signed; `chains` carries the pinned root, the time and the signatures already verified.
pub fn verify_gpu(
    index: usize,
    evidence: &[u8],
    certificate: &[u8],
    expected_nonce: &[u8; 32],
    chains: &mut ChainVerifier,
    reference: Option<&ReferenceValues>,
) -> GpuCheck {
    let not_checked = || Err("not checked: the report does not parse".to_string());
    let report = Report::parse(evidence);
    let chain = chains.verify(certificate);
    let chain_entry = chain
        .as_ref()
        .map(|c| {
            format!(
                "{} certificates to the pinned NVIDIA device identity root ({})",
                c.subjects.len(),
                c.subjects.first().map(String::as_str).unwrap_or_default()
            )
        })
        .map_err(ToString::to_string);
    let Ok(report) = report else {
        return GpuCheck {
            index,
            parse: report.map(|_| String::new()).map_err(|e| e.to_string()),
            chain: chain_entry,
            signature: not_checked(),
            fwid: not_checked(),
            nonce: not_checked(),
            measurements: reference.map(|_| not_checked()),
            driver_version: None,
            vbios_version: None,
        };
    };
    let signature = match &chain {
        Ok(c) => check_signature(evidence, &report, c),
        Err(_) => Err("not checked: no trusted leaf key (the certificate chain fails)".into()),
    };
    let fwid = match (&chain, report.fwid()) {
        (Err(_), _) => Err("not checked: the certificate chain fails".into()),
        (Ok(_), None) => Err("the report's opaque data has no FWID (field 20)".into()),
        (Ok(c), Some(f)) => match c.leaf_fwid {
            None => Err("the leaf certificate has no DICE TcbInfo FWID (2.23.133.5.4.1)".into()),
            Some(l) if l == f => Ok(format!("leaf FWID = report FWID {}", hex::encode(f))),
            Some(l) => Err(format!(
                "leaf FWID {} ≠ report FWID {}: the report is not from the certified firmware",
                hex::encode(l),
                hex::encode(f)
            )),
        },
    };
    let nonce = if &report.request.nonce == expected_nonce {
        Ok(format!(
            "the GPU signed nonce {}",
            hex::encode(expected_nonce)
        ))
    } else {
        Err(format!(
            "the GPU signed nonce {}, expected {}",
            hex::encode(report.request.nonce),
            hex::encode(expected_nonce)
        ))
    };
    GpuCheck {
        index,
        parse: Ok(format!(
            "SPDM {}.{} GET_MEASUREMENTS, {} measurement blocks, {} opaque fields",
            report.request.version >> 4,
            report.request.version & 0xf,
            report.response.blocks.len(),
            report.response.opaque.len()
        )),
        chain: chain_entry,
        signature,
        fwid,
        nonce,
        measurements: reference.map(|r| check_measurements(&report, r)),
        driver_version: report.driver_version(),
        vbios_version: report.vbios_version(),
    }
}

/// ECDSA P-384 / SHA-384 over request ‖ response without its signature.
fn check_signature(
    evidence: &[u8],
    report: &Report,
    chain: &super::chain::VerifiedChain,
) -> Result<String, String> {
    let signed = evidence
        .get(..report.signed_len)
        .ok_or("the signed prefix is out of range")?;
    let sig = Signature::from_slice(&report.response.signature)
        .map_err(|_| "the signature's r or s is out of range".to_string())?;
    chain
        .leaf_key
        .verify(signed, &sig)
        .map(|()| {
            format!(
                "ECDSA-P384 over request ‖ response ({} bytes) verifies with the leaf's key",
                report.signed_len
            )
        })
        .map_err(|_| "the SPDM signature does not verify with the leaf certificate's key".into())
}

/// Every block with reference values must equal one of them; blocks without are listed.
fn check_measurements(report: &Report, reference: &ReferenceValues) -> Result<String, String> {
    let mut matched = 0usize;
    let mut mismatches = Vec::new();
    for (index, accepted) in &reference.measurements {
        match report.response.blocks.iter().find(|b| b.index == *index) {
            None => mismatches.push(format!("block {index} is missing from the report")),
            Some(b) if accepted.iter().any(|a| a == &b.value) => {
                matched = matched.saturating_add(1);
            }
            Some(b) => mismatches.push(format!(
                "block {index} is {}, the reference accepts {}",
                hex::encode(&b.value),
                accepted
                    .iter()
                    .map(hex::encode)
                    .collect::<Vec<_>>()
                    .join(" or ")
            )),
        }
    }
    if mismatches.is_empty() {
        Ok(format!(
            "{matched} measurements equal the reference values ({})",
            reference.sources.join(", ")
        ))
    } else {
        Err(mismatches.join("; "))
    }
}
