//! The PCK certificate chain carried by a quote (certification data type 5), read with `x509-parser`.
//!
//! The leaf's Intel SGX extension (OID 1.2.840.113741.1.13.1) names the platform: FMSPC, PCE id and
//! SVN, CPU SVN, PPID (when present) and the platform configuration flags.

use serde::Serialize;
use x509_parser::der_parser::ber::{BerObject, BerObjectContent};
use x509_parser::der_parser::der::parse_der;
use x509_parser::pem::Pem;

/// OID of Intel's SGX extension in PCK certificates.
pub const SGX_EXTENSION_OID: &str = "1.2.840.113741.1.13.1";

/// Why the PCK chain could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PckError {
    /// The PEM chain is malformed.
    #[error("PCK chain PEM is malformed: {0}")]
    Pem(String),
    /// A certificate in the chain is not valid X.509.
    #[error("certificate {index} of the PCK chain is not valid X.509: {reason}")]
    Certificate {
        /// Index in the chain (0 = leaf).
        index: usize,
        /// Parser message.
        reason: String,
    },
    /// The chain is empty.
    #[error("PCK chain is empty")]
    Empty,
    /// The leaf has no SGX extension.
    #[error("PCK leaf has no SGX extension ({SGX_EXTENSION_OID})")]
    NoSgxExtension,
    /// The SGX extension is malformed.
    #[error("PCK SGX extension is malformed: {0}")]
    Extension(&'static str),
}

/// One certificate of the chain, for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertSummary {
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// notBefore (unix seconds).
    pub not_before: i64,
    /// notAfter (unix seconds).
    pub not_after: i64,
}

/// What the PCK leaf says about the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PckInfo {
    /// The chain, leaf first.
    pub chain: Vec<CertSummary>,
    /// Leaf public key, SEC1 uncompressed.
    #[serde(skip)]
    pub leaf_public_key: Vec<u8>,
    /// FMSPC (6 bytes, hex).
    pub fmspc: String,
    /// PCE id (hex).
    pub pce_id: String,
    /// PCE SVN.
    pub pce_svn: u16,
    /// CPU SVN (16 bytes, hex).
    pub cpu_svn: String,
    /// PPID (hex), when present.
    pub ppid: Option<String>,
    /// SGX type (0 standard, 1 scalable, 2 scalable with integrity).
    pub sgx_type: Option<u8>,
    /// Dynamic platform flag (Platform CA certificates only).
    pub dynamic_platform: Option<bool>,
    /// Cached keys flag.
    pub cached_keys: Option<bool>,
    /// SMT enabled flag.
    pub smt_enabled: Option<bool>,
}

/// Read a PEM PCK chain (leaf first) and the leaf's SGX extension.
pub fn parse_pck_chain(pem: &[u8]) -> Result<PckInfo, PckError> {
    let mut ders = Vec::new();
    for item in Pem::iter_from_buffer(pem) {
        let item = item.map_err(|e| PckError::Pem(e.to_string()))?;
        ders.push(item.contents);
    }
    let mut chain = Vec::with_capacity(ders.len());
    let mut leaf = None;
    for (index, der) in ders.iter().enumerate() {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| PckError::Certificate {
                index,
                reason: e.to_string(),
            })?;
        chain.push(CertSummary {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        });
        if index == 0 {
            let ext = cert
                .extensions()
                .iter()
                .find(|e| e.oid.to_id_string() == SGX_EXTENSION_OID)
                .ok_or(PckError::NoSgxExtension)?;
            leaf = Some((
                cert.public_key().subject_public_key.data.to_vec(),
                parse_sgx_extension(ext.value)?,
            ));
        }
    }
    let (leaf_public_key, ext) = leaf.ok_or(PckError::Empty)?;
    Ok(PckInfo {
        chain,
        leaf_public_key,
        fmspc: hex::encode(ext.fmspc.ok_or(PckError::Extension("no FMSPC"))?),
        pce_id: hex::encode(ext.pce_id.ok_or(PckError::Extension("no PCE-ID"))?),
        pce_svn: ext.pce_svn.ok_or(PckError::Extension("no PCESVN"))?,
        cpu_svn: hex::encode(ext.cpu_svn.ok_or(PckError::Extension("no CPUSVN"))?),
        ppid: ext.ppid.map(hex::encode),
        sgx_type: ext.sgx_type,
        dynamic_platform: ext.dynamic_platform,
        cached_keys: ext.cached_keys,
        smt_enabled: ext.smt_enabled,
    })
}

#[derive(Default)]
struct SgxExt {
    ppid: Option<Vec<u8>>,
    fmspc: Option<Vec<u8>>,
    pce_id: Option<Vec<u8>>,
    pce_svn: Option<u16>,
    cpu_svn: Option<Vec<u8>>,
    sgx_type: Option<u8>,
    dynamic_platform: Option<bool>,
    cached_keys: Option<bool>,
    smt_enabled: Option<bool>,
}

/// Iterate the `SEQUENCE OF SEQUENCE { OID, value }` shape Intel uses at every level.
fn pairs<'a, 'b>(obj: &'b BerObject<'a>) -> Result<Vec<(String, &'b BerObject<'a>)>, PckError> {
    let seq = obj
        .as_sequence()
        .map_err(|_| PckError::Extension("expected a SEQUENCE"))?;
    seq.iter()
        .map(|item| {
            let inner = item
                .as_sequence()
                .map_err(|_| PckError::Extension("expected SEQUENCE { OID, value }"))?;
            match inner.as_slice() {
                [oid, value] => {
                    let oid = oid
                        .as_oid()
                        .map_err(|_| PckError::Extension("expected an OID"))?;
                    Ok((oid.to_id_string(), value))
                }
                _ => Err(PckError::Extension("expected SEQUENCE { OID, value }")),
            }
        })
        .collect()
}

fn octets(v: &BerObject<'_>) -> Result<Vec<u8>, PckError> {
    v.as_slice()
        .map(<[u8]>::to_vec)
        .map_err(|_| PckError::Extension("expected an OCTET STRING"))
}

fn parse_sgx_extension(value: &[u8]) -> Result<SgxExt, PckError> {
    let (_, obj) = parse_der(value).map_err(|_| PckError::Extension("not DER"))?;
    let mut out = SgxExt::default();
    let base = SGX_EXTENSION_OID;
    for (oid, v) in pairs(&obj)? {
        let Some(suffix) = oid.strip_prefix(base) else {
            continue;
        };
        match suffix {
            ".1" => out.ppid = Some(octets(v)?),
            ".2" => {
                for (tcb_oid, tv) in pairs(v)? {
                    if tcb_oid == format!("{base}.2.17") {
                        let svn = tv
                            .as_u32()
                            .map_err(|_| PckError::Extension("PCESVN is not an INTEGER"))?;
                        out.pce_svn = Some(
                            u16::try_from(svn)
                                .map_err(|_| PckError::Extension("PCESVN out of range"))?,
                        );
                    } else if tcb_oid == format!("{base}.2.18") {
                        out.cpu_svn = Some(octets(tv)?);
                    }
                }
            }
            ".3" => out.pce_id = Some(octets(v)?),
            ".4" => out.fmspc = Some(octets(v)?),
            ".5" => {
                let t = match v.content {
                    BerObjectContent::Enum(t) => t,
                    _ => return Err(PckError::Extension("SGX type is not ENUMERATED")),
                };
                out.sgx_type = Some(
                    u8::try_from(t).map_err(|_| PckError::Extension("SGX type out of range"))?,
                );
            }
            ".7" => {
                for (cfg_oid, cv) in pairs(v)? {
                    let flag = cv.as_bool().ok();
                    match cfg_oid.strip_prefix(&format!("{base}.7")) {
                        Some(".1") => out.dynamic_platform = flag,
                        Some(".2") => out.cached_keys = flag,
                        Some(".3") => out.smt_enabled = flag,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}
