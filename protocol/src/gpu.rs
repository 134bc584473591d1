//! The GPU evidence a worker serves as `nvidia_payload` in `/v1/quote` and the hash that binds it
//! into the attestation document v2 (docs/PROTOCOL.md §5.1.1).
//!
//! The JSON shape is the one private-ml-sdk and 0G brokers serve:
//! `{"nonce": <64 hex>, "evidence_list": [{"evidence": base64, "certificate": base64, "arch"}],
//! "arch": "HOPPER"}`, plus sealtune's `cc` (the confidential-computing and dev-tools state NVML
//! reports). `evidence` is the SPDM GET_MEASUREMENTS request followed by the signed response;
//! `certificate` is the GPU's certificate chain (PEM text, or concatenated DER), leaf first. Where
//! no GPU evidence exists the field is `{"absent": "<reason>"}` (an object, like the present form,
//! for clients that pass the field on unread).
//!
//! [`NvidiaPayload::hash`] is `SHA-256` of [`NvidiaPayload::canonical_bytes`]: fixed-order,
//! length-prefixed *decoded* bytes, so re-encoding the JSON (key order, base64 line breaks) does not
//! change it.
//!
//! ```
//! use sealtune_protocol::gpu::{NvidiaPayload, GpuEvidence};
//! let p = NvidiaPayload::new([7; 32], "HOPPER", vec![GpuEvidence::new(b"report", b"chain", "HOPPER")], None);
//! let again = NvidiaPayload::from_json(&serde_json::to_value(&p).unwrap()).unwrap();
//! assert_eq!(again.hash().unwrap(), p.hash().unwrap());
//! ```

use alloy_primitives::B256;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Domain tag of [`NvidiaPayload::canonical_bytes`].
pub const GPU_EVIDENCE_DOMAIN: &[u8] = b"sealtune/gpu-evidence/v1";

/// Why a served `nvidia_payload` cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Not the JSON shape above.
    #[error("nvidia_payload is malformed: {0}")]
    Malformed(String),
    /// The nonce is not 32 bytes of hex.
    #[error("nvidia_payload nonce is not 64 hex digits")]
    Nonce,
    /// An evidence or certificate field is not base64.
    #[error("nvidia_payload evidence {index}: {field} is not base64")]
    Base64 {
        /// Index in `evidence_list`.
        index: usize,
        /// `evidence` or `certificate`.
        field: &'static str,
    },
}

/// The confidential-computing state NVML reports for the system's GPUs. Reported by the driver
/// inside the TEE (not signed by the GPU); bound by the evidence hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CcState {
    /// The CC feature is on.
    pub cc_enabled: bool,
    /// Dev-tools mode (debuggers, profilers can read GPU memory) is on.
    pub dev_tools: bool,
}

/// One GPU's evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuEvidence {
    /// base64 of the SPDM request ‖ signed response.
    pub evidence: String,
    /// base64 of the certificate chain (PEM text or concatenated DER), leaf first.
    pub certificate: String,
    /// The GPU architecture (`HOPPER`).
    #[serde(default)]
    pub arch: Option<String>,
}

impl GpuEvidence {
    /// Encodes raw evidence and certificate bytes.
    pub fn new(evidence: &[u8], certificate: &[u8], arch: &str) -> Self {
        let b64 = base64::engine::general_purpose::STANDARD;
        GpuEvidence {
            evidence: b64.encode(evidence),
            certificate: b64.encode(certificate),
            arch: Some(arch.to_string()),
        }
    }

    /// The raw evidence bytes.
    pub fn evidence_bytes(&self, index: usize) -> Result<Vec<u8>, PayloadError> {
        decode_b64(&self.evidence).ok_or(PayloadError::Base64 {
            index,
            field: "evidence",
        })
    }

    /// The raw certificate chain bytes.
    pub fn certificate_bytes(&self, index: usize) -> Result<Vec<u8>, PayloadError> {
        decode_b64(&self.certificate).ok_or(PayloadError::Base64 {
            index,
            field: "certificate",
        })
    }
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()
}

/// The `nvidia_payload` of `/v1/quote` when GPU evidence is present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvidiaPayload {
    /// The nonce every GPU signed (64 hex digits).
    pub nonce: String,
    /// One entry per GPU.
    pub evidence_list: Vec<GpuEvidence>,
    /// The GPU architecture (`HOPPER`).
    pub arch: String,
    /// The CC / dev-tools state NVML reports (sealtune only; absent from other providers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cc: Option<CcState>,
}

/// What a `/v1/quote` answer says about GPU evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// `nvidia_payload` is null or missing.
    Missing,
    /// `{"absent": reason}`: the worker says why it has none.
    Absent(String),
    /// Evidence.
    Present(NvidiaPayload),
}

impl NvidiaPayload {
    /// A payload over `nonce`.
    pub fn new(
        nonce: [u8; 32],
        arch: &str,
        evidence_list: Vec<GpuEvidence>,
        cc: Option<CcState>,
    ) -> Self {
        NvidiaPayload {
            nonce: hex::encode(nonce),
            evidence_list,
            arch: arch.to_string(),
            cc,
        }
    }

    /// The `{"absent": reason}` form.
    pub fn absent(reason: &str) -> serde_json::Value {
        serde_json::json!({ "absent": reason })
    }

    /// Reads the served field: null, `{"absent": …}`, the object, or the object as a JSON string
    /// (private-ml-sdk serves `json.dumps(payload)`).
    pub fn read(value: Option<&serde_json::Value>) -> Result<Served, PayloadError> {
        let value = match value {
            None | Some(serde_json::Value::Null) => return Ok(Served::Missing),
            Some(serde_json::Value::String(s)) => serde_json::from_str(s)
                .map_err(|e| PayloadError::Malformed(format!("string is not JSON: {e}")))?,
            Some(v) => v.clone(),
        };
        if let Some(reason) = value.get("absent") {
            return Ok(Served::Absent(
                reason.as_str().unwrap_or("no reason given").to_string(),
            ));
        }
        Self::from_json(&value).map(Served::Present)
    }

    /// Parses the object form.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, PayloadError> {
        serde_json::from_value(value.clone()).map_err(|e| PayloadError::Malformed(e.to_string()))
    }

    /// The 32-byte nonce.
    pub fn nonce_bytes(&self) -> Result<[u8; 32], PayloadError> {
        let s = self.nonce.trim();
        let v = hex::decode(s.strip_prefix("0x").unwrap_or(s)).map_err(|_| PayloadError::Nonce)?;
        <[u8; 32]>::try_from(v.as_slice()).map_err(|_| PayloadError::Nonce)
    }

    /// The bytes [`Self::hash`] hashes (PROTOCOL.md §5.1.1):
    /// `"sealtune/gpu-evidence/v1" ‖ nonce (32) ‖ lp(arch) ‖ be32(count) ‖` for each GPU
    /// `lp(evidence) ‖ lp(certificate) ‖ lp(arch or "")`, then `0x00` without `cc` or
    /// `0x01 ‖ cc_enabled (1) ‖ dev_tools (1)`; `lp(x) = be32(len x) ‖ x`, fields decoded from
    /// hex/base64.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, PayloadError> {
        let mut out = Vec::new();
        out.extend_from_slice(GPU_EVIDENCE_DOMAIN);
        out.extend_from_slice(&self.nonce_bytes()?);
        push_lp(&mut out, self.arch.as_bytes())?;
        push_len(&mut out, self.evidence_list.len())?;
        for (i, e) in self.evidence_list.iter().enumerate() {
            push_lp(&mut out, &e.evidence_bytes(i)?)?;
            push_lp(&mut out, &e.certificate_bytes(i)?)?;
            push_lp(&mut out, e.arch.as_deref().unwrap_or("").as_bytes())?;
        }
        match self.cc {
            None => out.push(0),
            Some(cc) => {
                out.extend_from_slice(&[1, u8::from(cc.cc_enabled), u8::from(cc.dev_tools)])
            }
        }
        Ok(out)
    }

    /// `SHA-256(canonical_bytes)`: the attestation document's `gpu_evidence_hash`.
    pub fn hash(&self) -> Result<B256, PayloadError> {
        Ok(B256::from(<[u8; 32]>::from(Sha256::digest(
            self.canonical_bytes()?,
        ))))
    }
}

fn push_len(out: &mut Vec<u8>, len: usize) -> Result<(), PayloadError> {
    let n = u32::try_from(len).map_err(|_| PayloadError::Malformed("field over 4 GiB".into()))?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

fn push_lp(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), PayloadError> {
    push_len(out, bytes.len())?;
    out.extend_from_slice(bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> NvidiaPayload {
        NvidiaPayload::new(
            [1; 32],
            "HOPPER",
            vec![GpuEvidence::new(b"ev", b"cert", "HOPPER")],
            Some(CcState {
                cc_enabled: true,
                dev_tools: false,
            }),
        )
    }

    #[test]
    fn canonical_bytes_follow_the_spec_layout() {
        let mut want = b"sealtune/gpu-evidence/v1".to_vec();
        want.extend_from_slice(&[1; 32]);
        want.extend_from_slice(&[0, 0, 0, 6]);
        want.extend_from_slice(b"HOPPER");
        want.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
        want.extend_from_slice(b"ev");
        want.extend_from_slice(&[0, 0, 0, 4]);
        want.extend_from_slice(b"cert");
        want.extend_from_slice(&[0, 0, 0, 6]);
        want.extend_from_slice(b"HOPPER");
        want.extend_from_slice(&[1, 1, 0]);
        assert_eq!(payload().canonical_bytes().unwrap(), want);
    }

    #[test]
    fn every_field_is_bound_and_the_string_form_reads_the_same() {
        let p = payload();
        let h = p.hash().unwrap();
        let mut q = p.clone();
        q.cc = Some(CcState {
            cc_enabled: true,
            dev_tools: true,
        });
        assert_ne!(q.hash().unwrap(), h);
        let mut q = p.clone();
        q.evidence_list[0] = GpuEvidence::new(b"eV", b"cert", "HOPPER");
        assert_ne!(q.hash().unwrap(), h);
        let text = serde_json::Value::String(serde_json::to_string(&p).unwrap());
        assert_eq!(
            NvidiaPayload::read(Some(&text)).unwrap(),
            Served::Present(p)
        );
        assert_eq!(
            NvidiaPayload::read(Some(&NvidiaPayload::absent("no GPU"))).unwrap(),
            Served::Absent("no GPU".into())
        );
        assert_eq!(NvidiaPayload::read(None).unwrap(), Served::Missing);
    }
}
