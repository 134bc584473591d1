//! NVIDIA's reference integrity manifests (RIMs): ISO 19770-2 SWID tags, one for the driver and
//! one for the VBIOS, listing the expected value(s) of each measurement block and signed with
//! XMLDSig (enveloped, C14N 1.1, ecdsa-sha384) by a key certified up to NVIDIA's RIM root.
//!
//! What is checked here: the signing certificate chain in `KeyInfo` reaches the pinned RIM root
//! ([`NVIDIA_RIM_ROOT_PEM`], from NVIDIA/nvtrust, Apache-2.0) and is valid at `now`; the digest
//! list is read into [`ReferenceValues`]. What is **not** checked: the XML signature itself (no
//! maintained pure-Rust XMLDSig/C14N 1.1 implementation fits this crate), so a RIM edited after
//! signing is not detected here; obtain RIMs from NVIDIA's RIM service or check them with
//! NVIDIA's verifier. The reader is a small attribute scanner for the elements NVIDIA writes
//! (`Meta`, `Resource`, `X509Certificate`), not a general XML parser.

use std::collections::BTreeMap;

use base64::Engine as _;

use super::chain::{ChainVerifier, split_chain};
use super::evidence::ReferenceValues;

/// NVIDIA's CoRIM / RIM signing root (P-384, 2023-03-16 to 2053-03-08).
pub const NVIDIA_RIM_ROOT_PEM: &str = include_str!("nvidia_rim_root.pem");

/// Why a RIM is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RimError {
    /// Not a SWID tag as NVIDIA writes it.
    #[error("RIM: {0}")]
    Malformed(String),
    /// Two RIMs give active values for the same block.
    #[error("RIMs {0} and {1} both give measurement block {2}")]
    Overlap(String, String, u8),
}

/// One RIM, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rim {
    /// `tagId`.
    pub id: String,
    /// `Meta@colloquialVersion` (the driver or VBIOS version it describes).
    pub version: Option<String>,
    /// Active measurements: block index (RIM index + 1, as in the report) → alternatives.
    pub measurements: BTreeMap<u8, Vec<Vec<u8>>>,
    /// The signing chain from `KeyInfo` (DER), leaf first.
    pub certificates: Vec<Vec<u8>>,
}

impl Rim {
    /// Reads a SWID tag.
    pub fn parse(xml: &str) -> Result<Self, RimError> {
        let root = elements(xml, "SoftwareIdentity")
            .into_iter()
            .next()
            .ok_or(RimError::Malformed("no SoftwareIdentity element".into()))?;
        let id = attr(root, "tagId").ok_or(RimError::Malformed("no tagId".into()))?;
        let version = elements(xml, "Meta")
            .into_iter()
            .find_map(|m| attr(m, "colloquialVersion"));
        let mut measurements = BTreeMap::new();
        for r in elements(xml, "Resource") {
            if attr(r, "type").as_deref() != Some("Measurement") {
                continue;
            }
            if !attr(r, "active").is_some_and(|a| a.eq_ignore_ascii_case("true")) {
                continue;
            }
            let index: u8 =
                attr(r, "index")
                    .and_then(|i| i.parse().ok())
                    .ok_or(RimError::Malformed(
                        "a Resource without a numeric index".into(),
                    ))?;
            let block = index
                .checked_add(1)
                .ok_or(RimError::Malformed("index out of range".into()))?;
            let count: usize = attr(r, "alternatives")
                .and_then(|a| a.parse().ok())
                .unwrap_or(1);
            let mut values = Vec::new();
            for k in 0..count.min(16) {
                let v = attr(r, &format!("Hash{k}"))
                    .ok_or(RimError::Malformed(format!("index {index}: no Hash{k}")))?;
                values.push(hex::decode(v).map_err(|_| {
                    RimError::Malformed(format!("index {index}: Hash{k} is not hex"))
                })?);
            }
            measurements.insert(block, values);
        }
        let certificates = text_of(xml, "X509Certificate")
            .into_iter()
            .map(|b64| {
                let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .map_err(|_| RimError::Malformed("X509Certificate is not base64".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Rim {
            id,
            version,
            measurements,
            certificates,
        })
    }

    /// Checks the signing chain to NVIDIA's RIM root at `now` (the root is appended when the
    /// tag does not carry it).
    pub fn verify_chain(&self, now: u64) -> Result<String, String> {
        let root = split_chain(NVIDIA_RIM_ROOT_PEM.as_bytes())
            .map_err(|e| e.to_string())?
            .into_iter()
            .next()
            .ok_or("the pinned RIM root does not parse")?;
        let mut ders = self.certificates.clone();
        if ders.last() != Some(&root) {
            ders.push(root.clone());
        }
        let chain = ders.concat();
        ChainVerifier::with_root(root, now)
            .verify(&chain)
            .map(|c| {
                format!(
                    "RIM {} signed by {} (chain to NVIDIA's RIM root; XML signature not checked)",
                    self.id,
                    c.subjects.first().map(String::as_str).unwrap_or_default()
                )
            })
            .map_err(|e| format!("RIM {}: {e}", self.id))
    }
}

/// Merges RIMs (driver and VBIOS) into reference values; a block given by two RIMs is an error.
pub fn reference_values(rims: &[Rim]) -> Result<ReferenceValues, RimError> {
    let mut out = ReferenceValues::default();
    let mut owner: BTreeMap<u8, &str> = BTreeMap::new();
    for rim in rims {
        for (block, values) in &rim.measurements {
            if let Some(other) = owner.insert(*block, &rim.id) {
                return Err(RimError::Overlap(other.into(), rim.id.clone(), *block));
            }
            out.measurements.insert(*block, values.clone());
        }
        out.sources.push(format!(
            "RIM {} version {}",
            rim.id,
            rim.version.as_deref().unwrap_or("?")
        ));
    }
    Ok(out)
}

/// The opening tags (`<prefix:local …>`, without `<` and `>`) of the elements named `local`.
fn elements<'a>(xml: &'a str, local: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find('<') {
        let after = rest.get(start.saturating_add(1)..).unwrap_or_default();
        let end = after.find('>').unwrap_or(after.len());
        let tag = after.get(..end).unwrap_or_default();
        let name = tag.split_whitespace().next().unwrap_or_default();
        let name_local = name.rsplit(':').next().unwrap_or_default();
        if name_local == local && !name.starts_with('/') {
            out.push(tag);
        }
        rest = after.get(end..).unwrap_or_default();
    }
    out
}

/// The text content of the elements named `local`.
fn text_of<'a>(xml: &'a str, local: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find('<') {
        let after = rest.get(start.saturating_add(1)..).unwrap_or_default();
        let end = after.find('>').unwrap_or(after.len());
        let tag = after.get(..end).unwrap_or_default();
        let name = tag.split_whitespace().next().unwrap_or_default();
        rest = after.get(end..).unwrap_or_default();
        if name.rsplit(':').next() == Some(local) && !name.starts_with('/') && !tag.ends_with('/') {
            let body = rest.get(1..).unwrap_or_default();
            let close = body.find('<').unwrap_or(body.len());
            out.push(body.get(..close).unwrap_or_default());
        }
    }
    out
}

/// An attribute's value by local name (`ns2:Hash0` matches `Hash0`).
fn attr(tag: &str, local: &str) -> Option<String> {
    let mut parts = tag.split('"');
    loop {
        let name_part = parts.next()?;
        let value = parts.next()?;
        let name = name_part
            .trim()
            .trim_end_matches('=')
            .split_whitespace()
            .last()
            .unwrap_or_default();
        if name.rsplit(':').next() == Some(local) {
            return Some(value.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vbios_rim() -> Rim {
        let xml = std::fs::read_to_string(sealtune_e2e::fixture(
            "nvidia/vbios_rim_96005E0001_PROD.swidtag",
        ))
        .unwrap();
        Rim::parse(&xml).unwrap()
    }

    #[test]
    fn the_vbios_rim_reads_and_its_chain_reaches_the_rim_root() {
        let rim = vbios_rim();
        assert_eq!(rim.version.as_deref(), Some("96.00.5E.00.01"));
        assert_eq!(
            hex::encode(&rim.measurements[&2][0]),
            "c3f65ef79a19c029868cd7ce54b10e44f192444edb3506dde29cef2aac4e916c90a4f438e55aa7581a9e384c74d82db6"
        );
        assert!(!rim.certificates.is_empty());
        // 2024-06-01: inside the RIM chain's window.
        rim.verify_chain(1_717_200_000).unwrap();
        // Before the RIM root existed.
        assert!(rim.verify_chain(1_600_000_000).is_err());
    }

    #[test]
    fn two_rims_may_not_give_the_same_block() {
        let rim = vbios_rim();
        let mut other = rim.clone();
        other.id = "other".into();
        assert!(matches!(
            reference_values(&[rim, other]),
            Err(RimError::Overlap(..))
        ));
    }
}
