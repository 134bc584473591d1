//! The GPU's certificate chain: leaf (`GH100 A01 GSP FMC LF`, the attestation key) → device
//! (`GSP BROM`) → provisioner → `NVIDIA GH100 Identity` → `NVIDIA Device Identity CA`, the root
//! pinned in this crate ([`NVIDIA_DEVICE_ROOT_PEM`], copied from NVIDIA/nvtrust's local verifier,
//! Apache-2.0; the same file as `tests/fixtures/nvidia/nvidia_device_root.pem`).
//!
//! Checked with `x509-parser` and `p384`, offline: the chain ends at the pinned root (byte for
//! byte), each certificate's issuer is the next one's subject and its ECDSA-P384/SHA-384
//! signature verifies with the next one's key, every certificate is valid at `now`, the
//! intermediates are CAs and the leaf is not, no certificate repeats. Revocation (NVIDIA's OCSP)
//! is not checked offline. The leaf's TCG DICE extension (OID 2.23.133.5.4.1) ends with its
//! 48-byte FWID, which the report's opaque data must repeat.
//!
//! [`ChainVerifier`] remembers the issuer→subject signatures it has checked, so the chain parts
//! GPUs of one machine share are verified once.

use std::collections::HashSet;

use p384::ecdsa::{Signature, VerifyingKey, signature::Verifier as _};
use sha2::{Digest as _, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::der::parse_der;
use x509_parser::pem::Pem;

/// NVIDIA's device identity root (P-384, valid 2021-11-05 to 9999-12-31).
pub const NVIDIA_DEVICE_ROOT_PEM: &str = include_str!("nvidia_device_root.pem");
/// OID of ecdsa-with-SHA384.
pub const ECDSA_SHA384_OID: &str = "1.2.840.10045.4.3.3";
/// OID of the TCG DICE TcbInfo extension carrying the FWID.
pub const DICE_TCB_INFO_OID: &str = "2.23.133.5.4.1";
/// Most certificates a GPU chain may hold.
pub const MAX_CHAIN: usize = 8;

/// Why a chain is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// Neither PEM nor DER certificates.
    #[error("certificate chain is not PEM or DER: {0}")]
    Encoding(String),
    /// Too few or too many certificates.
    #[error("certificate chain holds {0} certificates (expected 2 to {MAX_CHAIN}, leaf to root)")]
    Length(usize),
    /// A certificate is not valid X.509.
    #[error("certificate {index} is not valid X.509: {reason}")]
    Certificate {
        /// Index (0 = leaf).
        index: usize,
        /// Parser message.
        reason: String,
    },
    /// The last certificate is not the pinned root.
    #[error("the chain ends at {0:?}, not at the pinned NVIDIA root")]
    Root(String),
    /// A certificate appears twice.
    #[error("certificate {0} repeats an earlier one")]
    Duplicate(usize),
    /// Issuer and subject do not link.
    #[error("certificate {index} is issued by {issuer:?}, but the next certificate is {next:?}")]
    Order {
        /// Index of the child.
        index: usize,
        /// Its issuer.
        issuer: String,
        /// The next certificate's subject.
        next: String,
    },
    /// A signature does not verify.
    #[error("certificate {index} ({subject:?}): {reason}")]
    Signature {
        /// Index of the child.
        index: usize,
        /// Its subject.
        subject: String,
        /// What failed.
        reason: String,
    },
    /// Outside the validity window at `now`.
    #[error(
        "certificate {index} ({subject:?}) is not valid at {now}: valid {not_before} to {not_after}"
    )]
    Validity {
        /// Index.
        index: usize,
        /// Subject.
        subject: String,
        /// The time checked.
        now: i64,
        /// notBefore.
        not_before: i64,
        /// notAfter.
        not_after: i64,
    },
    /// CA flags are wrong (an intermediate that is no CA, or a CA as leaf).
    #[error("certificate {index} ({subject:?}): {reason}")]
    Constraints {
        /// Index.
        index: usize,
        /// Subject.
        subject: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The leaf's key is not a P-384 key.
    #[error("the leaf's public key is not P-384: {0}")]
    LeafKey(String),
}

/// A chain that holds.
#[derive(Debug, Clone)]
pub struct VerifiedChain {
    /// Subjects, leaf first.
    pub subjects: Vec<String>,
    /// The leaf's P-384 key (verifies the report).
    pub leaf_key: VerifyingKey,
    /// The last 48 bytes of the leaf's DICE TcbInfo extension, when it has one.
    pub leaf_fwid: Option<[u8; 48]>,
    /// The earliest notAfter of the chain (unix seconds).
    pub not_after: i64,
}

/// Splits a chain given as PEM text or as concatenated DER certificates.
pub fn split_chain(bytes: &[u8]) -> Result<Vec<Vec<u8>>, ChainError> {
    if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        return Pem::iter_from_buffer(bytes)
            .map(|p| {
                p.map(|p| p.contents)
                    .map_err(|e| ChainError::Encoding(e.to_string()))
            })
            .collect();
    }
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (tail, _) = parse_der(rest).map_err(|e| ChainError::Encoding(e.to_string()))?;
        let used = rest.len().saturating_sub(tail.len());
        out.push(rest.get(..used).unwrap_or_default().to_vec());
        if used == 0 || out.len() > MAX_CHAIN {
            break;
        }
        rest = tail;
    }
    Ok(out)
}

/// Checks chains against one root at one time, remembering verified signatures.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    root_der: Vec<u8>,
    now: i64,
    verified_edges: HashSet<[u8; 32]>,
}

impl ChainVerifier {
    /// A verifier pinned to NVIDIA's device identity root.
    pub fn nvidia(now: u64) -> Result<Self, ChainError> {
        let root = split_chain(NVIDIA_DEVICE_ROOT_PEM.as_bytes())?;
        let der = root.into_iter().next().ok_or(ChainError::Length(0))?;
        Ok(Self::with_root(der, now))
    }

    /// A verifier pinned to another root (DER), for tests and other NVIDIA roots.
    pub fn with_root(root_der: Vec<u8>, now: u64) -> Self {
        ChainVerifier {
            root_der,
            now: i64::try_from(now).unwrap_or(i64::MAX),
            verified_edges: HashSet::new(),
        }
    }

    /// Verifies a chain (PEM or DER, leaf first).
    pub fn verify(&mut self, chain: &[u8]) -> Result<VerifiedChain, ChainError> {
        let ders = split_chain(chain)?;
        if ders.len() < 2 || ders.len() > MAX_CHAIN {
            return Err(ChainError::Length(ders.len()));
        }
        let certs = ders
            .iter()
            .enumerate()
            .map(|(index, der)| {
                x509_parser::parse_x509_certificate(der)
                    .map(|(_, c)| c)
                    .map_err(|e| ChainError::Certificate {
                        index,
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if ders.last() != Some(&self.root_der) {
            let last = certs.last().map(|c| c.subject().to_string());
            return Err(ChainError::Root(last.unwrap_or_default()));
        }
        for (i, der) in ders.iter().enumerate() {
            if ders.iter().take(i).any(|d| d == der) {
                return Err(ChainError::Duplicate(i));
            }
        }
        let mut not_after = i64::MAX;
        for (index, cert) in certs.iter().enumerate() {
            not_after = not_after.min(self.check_cert(index, cert)?);
        }
        for (index, pair) in certs.windows(2).enumerate() {
            if let ([child, parent], [child_der, parent_der]) = (
                pair,
                ders.get(index..index.saturating_add(2)).unwrap_or_default(),
            ) {
                self.check_edge(index, child, parent, child_der, parent_der)?;
            }
        }
        let leaf = certs.first().ok_or(ChainError::Length(0))?;
        Ok(VerifiedChain {
            subjects: certs.iter().map(|c| c.subject().to_string()).collect(),
            leaf_key: p384_key(leaf).map_err(ChainError::LeafKey)?,
            leaf_fwid: leaf_fwid(leaf),
            not_after,
        })
    }

    /// Validity at `now` and the CA flag; returns notAfter.
    fn check_cert(&self, index: usize, cert: &X509Certificate<'_>) -> Result<i64, ChainError> {
        let subject = || cert.subject().to_string();
        let (nb, na) = (
            cert.validity().not_before.timestamp(),
            cert.validity().not_after.timestamp(),
        );
        if self.now < nb || self.now > na {
            return Err(ChainError::Validity {
                index,
                subject: subject(),
                now: self.now,
                not_before: nb,
                not_after: na,
            });
        }
        let is_ca = cert.is_ca();
        let reason = match (index, is_ca) {
            (0, true) => Some("a CA certificate cannot be the attestation leaf"),
            (1.., false) => Some("an issuing certificate is not a CA"),
            _ => None,
        };
        if let Some(reason) = reason {
            return Err(ChainError::Constraints {
                index,
                subject: subject(),
                reason,
            });
        }
        Ok(na)
    }

    /// Issuer/subject linkage and the child's signature under the parent's key (memoised).
    fn check_edge(
        &mut self,
        index: usize,
        child: &X509Certificate<'_>,
        parent: &X509Certificate<'_>,
        child_der: &[u8],
        parent_der: &[u8],
    ) -> Result<(), ChainError> {
        if child.issuer().as_raw() != parent.subject().as_raw() {
            return Err(ChainError::Order {
                index,
                issuer: child.issuer().to_string(),
                next: parent.subject().to_string(),
            });
        }
        let mut h = Sha256::new();
        h.update(child_der);
        h.update(parent_der);
        let edge: [u8; 32] = h.finalize().into();
        if self.verified_edges.contains(&edge) {
            return Ok(());
        }
        let fail = |reason: String| ChainError::Signature {
            index,
            subject: child.subject().to_string(),
            reason,
        };
        let alg = child.signature_algorithm.algorithm.to_id_string();
        if alg != ECDSA_SHA384_OID {
            return Err(fail(format!(
                "signature algorithm {alg} is not ecdsa-with-SHA384"
            )));
        }
        let key = p384_key(parent).map_err(|e| fail(format!("issuer key: {e}")))?;
        let sig = der_signature(&child.signature_value.data).map_err(fail)?;
        key.verify(child.tbs_certificate.as_ref(), &sig)
            .map_err(|_| fail("signature does not verify with the issuer's key".into()))?;
        self.verified_edges.insert(edge);
        Ok(())
    }
}

fn p384_key(cert: &X509Certificate<'_>) -> Result<VerifyingKey, String> {
    VerifyingKey::from_sec1_bytes(&cert.public_key().subject_public_key.data)
        .map_err(|_| "not a P-384 point".to_string())
}

/// An X.509 ECDSA signature (DER `SEQUENCE { r INTEGER, s INTEGER }`) as a P-384 signature.
fn der_signature(der: &[u8]) -> Result<Signature, String> {
    let (_, obj) = parse_der(der).map_err(|_| "signature is not DER".to_string())?;
    let seq = obj
        .as_sequence()
        .map_err(|_| "signature is not a SEQUENCE".to_string())?;
    let [r, s] = seq.as_slice() else {
        return Err("signature is not (r, s)".into());
    };
    let mut rs = [0u8; 96];
    for (int, out) in [r, s].into_iter().zip(rs.chunks_mut(48)) {
        let bytes = int
            .as_slice()
            .map_err(|_| "signature component is not an INTEGER".to_string())?;
        let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        let trimmed = bytes.get(start..).unwrap_or_default();
        let pad = out
            .len()
            .checked_sub(trimmed.len())
            .ok_or("signature component is longer than 48 bytes")?;
        out.get_mut(pad..)
            .ok_or("signature component")?
            .copy_from_slice(trimmed);
    }
    Signature::from_slice(&rs).map_err(|_| "signature components out of range".to_string())
}

/// The last 48 bytes of the leaf's DICE TcbInfo extension (its FWID, a SHA-384 digest).
fn leaf_fwid(cert: &X509Certificate<'_>) -> Option<[u8; 48]> {
    let ext = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == DICE_TCB_INFO_OID)?;
    let start = ext.value.len().checked_sub(48)?;
    <[u8; 48]>::try_from(ext.value.get(start..)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-06-01, inside every sample certificate's window.
    pub const AT: u64 = 1_717_200_000;

    fn chain(case: u8) -> Vec<u8> {
        sealtune_e2e::fixture_bytes(&format!("nvidia/hopper_cert_chain_case{case}.txt"))
    }

    #[test]
    fn the_sample_chain_reaches_the_pinned_root() {
        let c = ChainVerifier::nvidia(AT)
            .unwrap()
            .verify(&chain(1))
            .unwrap();
        assert_eq!(c.subjects.len(), 5);
        assert!(c.subjects[0].contains("GH100 A01 GSP FMC LF"));
        assert_eq!(
            hex::encode(c.leaf_fwid.unwrap()),
            "f5c384aebb579217a2c66b17ed0f28e6a9b8d639041acd7b4721cec004f7275494ba94bb5cdfdb3055ee051762b1f75d"
        );
    }

    #[test]
    fn broken_chains_fail() {
        let mut v = ChainVerifier::nvidia(AT).unwrap();
        assert!(matches!(v.verify(&chain(2)), Err(ChainError::Length(1))));
        assert!(matches!(
            v.verify(&chain(3)),
            Err(ChainError::Order { index: 1, .. })
        ));
        let e = v.verify(&chain(4)).unwrap_err();
        assert!(
            matches!(
                e,
                ChainError::Duplicate(4) | ChainError::Constraints { index: 0, .. }
            ),
            "{e}"
        );
    }

    #[test]
    fn the_pinned_roots_are_the_vendored_nvidia_files() {
        let device = sealtune_e2e::fixture_bytes("nvidia/nvidia_device_root.pem");
        assert_eq!(NVIDIA_DEVICE_ROOT_PEM.as_bytes(), device.as_slice());
        let rim = sealtune_e2e::fixture_bytes("nvidia/nvidia_rim_root.pem");
        assert_eq!(
            super::super::rim::NVIDIA_RIM_ROOT_PEM.as_bytes(),
            rim.as_slice()
        );
    }

    #[test]
    fn the_der_form_reads_like_the_pem_form() {
        let der: Vec<u8> = split_chain(&chain(1)).unwrap().concat();
        assert_eq!(split_chain(&der).unwrap().len(), 5);
        assert!(ChainVerifier::nvidia(AT).unwrap().verify(&der).is_ok());
    }
}
