//! GPU evidence for `/v1/quote` (`nvidia_payload`, docs/PROTOCOL.md §5.1.1): per GPU, the
//! confidential-computing attestation report (SPDM GET_MEASUREMENTS request and signed response)
//! over the GPU nonce, its certificate chain, and the CC / dev-tools state.
//!
//! [`EvidenceSource`] has three implementations, picked by `[attestation.gpu]`:
//!
//! | `source` | what it serves |
//! |---|---|
//! | `nvml` (default) | [`NvmlSource`]: every GPU through NVML (`nvmlDeviceGetConfComputeGpuAttestationReport`, `…GetConfComputeGpuCertificate`, `nvmlSystemGetConfComputeSettings`). Without NVML or a GPU: `{"absent": "<why>"}` |
//! | `files` | [`FileSource`]: recorded evidence replayed (tests, the dev source). Its nonce is the one it was recorded for, so a verifier's `GPU nonce` link fails unless the files were captured for that nonce: replayed evidence is never fresh |
//! | `none` | [`NoGpu`]: `{"absent": "GPU evidence disabled by configuration"}` |
//!
//! The hash of the whole payload goes into the attestation document's `gpu_evidence_hash`
//! ([`sealtune_protocol::gpu::NvidiaPayload::hash`]), so evidence from another machine's GPU
//! answering the same nonce does not verify with this quote.

use std::path::PathBuf;

use sealtune_protocol::gpu::{CcState, GpuEvidence, NvidiaPayload};
use serde::{Deserialize, Serialize};

/// The architecture name served in `arch` (private-ml-sdk and 0G use `HOPPER`).
pub const ARCH_HOPPER: &str = "HOPPER";

/// Why no evidence could be collected (served as `{"absent": "<reason>"}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GpuUnavailable(pub String);

/// Where GPU evidence comes from.
pub trait EvidenceSource: Send + Sync + std::fmt::Debug {
    /// Every GPU's evidence over `nonce` (blocking: NVML calls take tens of milliseconds).
    fn collect(&self, nonce: [u8; 32]) -> Result<NvidiaPayload, GpuUnavailable>;
}

/// `[attestation.gpu]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GpuConfig {
    /// `nvml` (default), `files` or `none`.
    #[serde(default)]
    pub source: GpuSourceKind,
    /// With `files`: one entry per GPU.
    #[serde(default)]
    pub files: Vec<EvidenceFiles>,
}

/// Which [`EvidenceSource`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuSourceKind {
    /// NVML.
    #[default]
    Nvml,
    /// Recorded files.
    Files,
    /// None.
    None,
}

/// One GPU's recorded evidence.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceFiles {
    /// The report: raw bytes, or hex text (as NVIDIA's samples are written).
    pub evidence: PathBuf,
    /// The certificate chain (PEM or DER).
    pub certificate: PathBuf,
}

impl GpuConfig {
    /// The configured source.
    pub fn open(&self) -> Box<dyn EvidenceSource> {
        match self.source {
            GpuSourceKind::Nvml => Box::new(NvmlSource),
            GpuSourceKind::None => Box::new(NoGpu(
                "GPU evidence disabled by configuration ([attestation.gpu] source = \"none\")"
                    .into(),
            )),
            GpuSourceKind::Files => match FileSource::load(&self.files) {
                Ok(s) => Box::new(s),
                Err(e) => Box::new(NoGpu(e.0)),
            },
        }
    }
}

/// No GPU evidence, with the reason served.
#[derive(Debug, Clone)]
pub struct NoGpu(pub String);

impl EvidenceSource for NoGpu {
    fn collect(&self, _nonce: [u8; 32]) -> Result<NvidiaPayload, GpuUnavailable> {
        Err(GpuUnavailable(self.0.clone()))
    }
}

/// Recorded evidence, replayed.
#[derive(Debug, Clone)]
pub struct FileSource {
    gpus: Vec<(Vec<u8>, Vec<u8>)>,
    cc: Option<CcState>,
}

impl FileSource {
    /// Evidence and chains already in memory.
    pub fn new(gpus: Vec<(Vec<u8>, Vec<u8>)>, cc: Option<CcState>) -> Self {
        FileSource { gpus, cc }
    }

    /// Reads the files (a hex report is decoded).
    pub fn load(files: &[EvidenceFiles]) -> Result<Self, GpuUnavailable> {
        let read = |p: &PathBuf| {
            std::fs::read(p)
                .map_err(|e| GpuUnavailable(format!("GPU evidence file {}: {e}", p.display())))
        };
        let mut gpus = Vec::new();
        for f in files {
            let raw = read(&f.evidence)?;
            let text = String::from_utf8_lossy(&raw);
            let evidence = hex::decode(text.trim()).unwrap_or(raw);
            gpus.push((evidence, read(&f.certificate)?));
        }
        if gpus.is_empty() {
            return Err(GpuUnavailable(
                "[attestation.gpu] source = \"files\" lists no files".into(),
            ));
        }
        Ok(FileSource { gpus, cc: None })
    }
}

impl EvidenceSource for FileSource {
    fn collect(&self, nonce: [u8; 32]) -> Result<NvidiaPayload, GpuUnavailable> {
        let list = self
            .gpus
            .iter()
            .map(|(e, c)| GpuEvidence::new(e, c, ARCH_HOPPER))
            .collect();
        Ok(NvidiaPayload::new(nonce, ARCH_HOPPER, list, self.cc))
    }
}

/// Every GPU through NVML (loaded at each call: a worker without the library still starts).
#[derive(Debug, Clone, Copy)]
pub struct NvmlSource;

impl EvidenceSource for NvmlSource {
    fn collect(&self, nonce: [u8; 32]) -> Result<NvidiaPayload, GpuUnavailable> {
        let nvml = nvml_wrapper::Nvml::init()
            .map_err(|e| GpuUnavailable(format!("NVML unavailable: {e}")))?;
        let count = nvml
            .device_count()
            .map_err(|e| GpuUnavailable(format!("NVML device count: {e}")))?;
        if count == 0 {
            return Err(GpuUnavailable("NVML reports no GPU".into()));
        }
        let mut list = Vec::new();
        let mut cc = None;
        for i in 0..count {
            let dev = nvml
                .device_by_index(i)
                .map_err(|e| GpuUnavailable(format!("GPU {i}: {e}")))?;
            if cc.is_none() {
                cc = Some(CcState {
                    cc_enabled: dev.is_cc_enabled().map_err(|e| {
                        GpuUnavailable(format!("GPU {i}: confidential-computing state: {e}"))
                    })?,
                    dev_tools: dev
                        .is_cc_dev_mode_enabled()
                        .map_err(|e| GpuUnavailable(format!("GPU {i}: dev-tools state: {e}")))?,
                });
            }
            let report = dev
                .confidential_compute_gpu_attestation_report(nonce)
                .map_err(|e| GpuUnavailable(format!("GPU {i}: attestation report: {e}")))?;
            let cert = dev
                .confidential_compute_gpu_certificate()
                .map_err(|e| GpuUnavailable(format!("GPU {i}: certificate chain: {e}")))?;
            let evidence = truncate(&report.attestation_report, report.attestation_report_size);
            let chain = truncate(
                &cert.attestation_cert_chain,
                cert.attestation_cert_chain_size,
            );
            list.push(GpuEvidence::new(evidence, chain, ARCH_HOPPER));
        }
        Ok(NvidiaPayload::new(nonce, ARCH_HOPPER, list, cc))
    }
}

/// NVML's buffers are fixed-size: keep the returned length (never more than the buffer).
fn truncate(buf: &[u8], len: u32) -> &[u8] {
    let n = usize::try_from(len).unwrap_or(usize::MAX).min(buf.len());
    buf.get(..n).unwrap_or(buf)
}

/// The `nvidia_payload` value and the hash the attestation document binds (`None` when absent).
pub fn payload_value(
    source: &dyn EvidenceSource,
    nonce: [u8; 32],
) -> (serde_json::Value, Option<alloy::primitives::B256>) {
    let payload = source.collect(nonce).and_then(|p| {
        let h = p
            .hash()
            .map_err(|e| GpuUnavailable(format!("GPU evidence cannot be hashed: {e}")))?;
        Ok((p, h))
    });
    match payload {
        Ok((p, h)) => match serde_json::to_value(&p) {
            Ok(v) => (v, Some(h)),
            Err(e) => (NvidiaPayload::absent(&e.to_string()), None),
        },
        Err(e) => (NvidiaPayload::absent(&e.0), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_gpu_the_field_says_why() {
        let (v, h) = payload_value(&NoGpu("no GPU here".into()), [0; 32]);
        assert_eq!(v, serde_json::json!({"absent": "no GPU here"}));
        assert!(h.is_none());
    }

    #[test]
    fn nvml_buffers_are_cut_to_the_returned_length() {
        assert_eq!(truncate(&[1, 2, 3, 4], 2), &[1, 2]);
        assert_eq!(truncate(&[1, 2], 9), &[1, 2]);
    }

    #[test]
    fn recorded_evidence_is_served_with_its_hash() {
        let s = FileSource::new(vec![(b"report".to_vec(), b"chain".to_vec())], None);
        let (v, h) = payload_value(&s, [5; 32]);
        let p = NvidiaPayload::from_json(&v).unwrap();
        assert_eq!(p.nonce, hex::encode([5; 32]));
        assert_eq!(Some(p.hash().unwrap()), h);
    }
}
