//! An independent reading of an Intel DCAP quote (TDX v4/v5, SGX v3/v4/v5).
//!
//! This parser shares no code with `dcap-qvl`: the verifier reads every quote twice and compares the
//! two readings field by field (see [`crate::crosscheck`]). It reads untrusted bytes, so it never
//! panics: every read is bounds-checked and failures are typed [`QuoteParseError`]s.
//!
//! Layout (Intel TDX DCAP Quoting Library API, PROTOCOL.md §7):
//!
//! ```text
//! header (48) | [v5: body type u16, body size u32] | body | sig_data_len u32 | signature data
//! signature data = ecdsa_sig (64) | attestation key (64) | certification data
//!   v4/v5: certification data type 6 = QE report (384) | QE report sig (64) | QE auth data | type 5 PCK chain
//!   v3:    QE report (384) | QE report sig (64) | QE auth data | certification data (type 5)
//! ```

use p256::ecdsa::{Signature, VerifyingKey, signature::Verifier};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Length of the quote header.
pub const HEADER_LEN: usize = 48;
/// Length of an SGX enclave report (also the QE report).
pub const ENCLAVE_REPORT_LEN: usize = 384;
/// Length of a TDX 1.0 TD report body.
pub const TD10_LEN: usize = 584;
/// Length of a TDX 1.5 TD report body.
pub const TD15_LEN: usize = 648;
/// Length of a TDX 1.5 "ex" TD report body.
pub const TD15EX_LEN: usize = 885;
/// TEE type of a TDX quote.
pub const TEE_TYPE_TDX: u32 = 0x81;
/// TEE type of an SGX quote.
pub const TEE_TYPE_SGX: u32 = 0;
/// Attestation key type ECDSA-256-with-P-256.
pub const ATT_KEY_ECDSA_P256: u16 = 2;
/// Intel's QE vendor id.
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
/// Upper bound on the certification data we accept (a PCK chain is ~4 KiB).
const MAX_CERT_DATA: usize = 1 << 20;

/// Why a quote could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteParseError {
    /// The quote ends before a field.
    #[error("quote truncated: {field} needs {needed} bytes at offset {offset}, {available} left")]
    Truncated {
        /// Field being read.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// A version this parser does not know.
    #[error("unsupported quote version {0}")]
    UnsupportedVersion(u16),
    /// A TEE type this parser does not know, or one not allowed for the version.
    #[error("unsupported TEE type {tee_type:#x} for quote version {version}")]
    UnsupportedTeeType {
        /// Quote version.
        version: u16,
        /// TEE type.
        tee_type: u32,
    },
    /// Attestation key type other than ECDSA P-256.
    #[error("unsupported attestation key type {0} (only 2 = ECDSA-P256)")]
    UnsupportedKeyType(u16),
    /// A v5 body type other than 1..=4.
    #[error("unsupported v5 body type {0}")]
    UnsupportedBodyType(u16),
    /// A v5 body size that does not match its type.
    #[error("v5 body size {size} does not match body type {body_type} (expected {expected})")]
    BodySizeMismatch {
        /// Body type.
        body_type: u16,
        /// Declared size.
        size: u32,
        /// Size of that type.
        expected: usize,
    },
    /// Certification data of an unexpected type.
    #[error("unexpected certification data type {found} (expected {expected})")]
    CertType {
        /// Type found.
        found: u16,
        /// Type expected.
        expected: u16,
    },
    /// A declared length that is absurd or overflows.
    #[error("{field} length {len} is out of range")]
    Length {
        /// Field.
        field: &'static str,
        /// Declared length.
        len: usize,
    },
}

/// The 48-byte quote header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    /// Quote version (3, 4 or 5).
    pub version: u16,
    /// Attestation key type (2 = ECDSA-P256).
    pub attestation_key_type: u16,
    /// TEE type (0 = SGX, 0x81 = TDX).
    pub tee_type: u32,
    /// QE security version.
    pub qe_svn: u16,
    /// PCE security version.
    pub pce_svn: u16,
    /// QE vendor id.
    #[serde(with = "hex_bytes")]
    pub qe_vendor_id: [u8; 16],
    /// User data (the first 16 bytes are the QE id).
    #[serde(with = "hex_bytes")]
    pub user_data: [u8; 20],
}

/// A TDX TD report body (TD1.0 fields, plus the TD1.5 ones when present).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TdReport {
    /// TEE TCB SVN.
    #[serde(with = "hex_bytes")]
    pub tee_tcb_svn: [u8; 16],
    /// MRSEAM (TDX module measurement).
    #[serde(with = "hex_bytes")]
    pub mr_seam: [u8; 48],
    /// MRSIGNERSEAM.
    #[serde(with = "hex_bytes")]
    pub mr_signer_seam: [u8; 48],
    /// SEAM attributes.
    #[serde(with = "hex_bytes")]
    pub seam_attributes: [u8; 8],
    /// TD attributes (bit 0 debug, bit 29 migratable…).
    #[serde(with = "hex_bytes")]
    pub td_attributes: [u8; 8],
    /// XFAM.
    #[serde(with = "hex_bytes")]
    pub xfam: [u8; 8],
    /// MRTD (initial TD measurement).
    #[serde(with = "hex_bytes")]
    pub mr_td: [u8; 48],
    /// MRCONFIGID.
    #[serde(with = "hex_bytes")]
    pub mr_config_id: [u8; 48],
    /// MROWNER.
    #[serde(with = "hex_bytes")]
    pub mr_owner: [u8; 48],
    /// MROWNERCONFIG.
    #[serde(with = "hex_bytes")]
    pub mr_owner_config: [u8; 48],
    /// RTMR0..3.
    #[serde(with = "hex_rtmrs")]
    pub rtmr: [[u8; 48]; 4],
    /// report_data.
    #[serde(with = "hex_bytes")]
    pub report_data: [u8; 64],
    /// TD1.5: TEE TCB SVN 2.
    #[serde(with = "hex_opt")]
    pub tee_tcb_svn2: Option<[u8; 16]>,
    /// TD1.5: MRSERVICETD.
    #[serde(with = "hex_opt")]
    pub mr_service_td: Option<[u8; 48]>,
}

/// TD attribute bit: the TD runs in debug mode.
pub const TD_ATTR_DEBUG: u64 = 1;
/// TD attribute bit: the TD is migratable.
pub const TD_ATTR_MIGRATABLE: u64 = 1 << 29;

impl TdReport {
    /// TD attributes as a little-endian integer.
    pub fn td_attributes_u64(&self) -> u64 {
        u64::from_le_bytes(self.td_attributes)
    }
    /// Whether the TD is a debug TD (its memory is readable by the host).
    pub fn is_debug(&self) -> bool {
        self.td_attributes_u64() & TD_ATTR_DEBUG != 0
    }
    /// Whether the TD is migratable.
    pub fn is_migratable(&self) -> bool {
        self.td_attributes_u64() & TD_ATTR_MIGRATABLE != 0
    }
}

/// An SGX enclave report (the body of an SGX quote, and the QE report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnclaveReport {
    /// CPU SVN.
    #[serde(with = "hex_bytes")]
    pub cpu_svn: [u8; 16],
    /// MISCSELECT.
    pub misc_select: u32,
    /// Attributes (flags, xfrm).
    #[serde(with = "hex_bytes")]
    pub attributes: [u8; 16],
    /// MRENCLAVE.
    #[serde(with = "hex_bytes")]
    pub mr_enclave: [u8; 32],
    /// MRSIGNER.
    #[serde(with = "hex_bytes")]
    pub mr_signer: [u8; 32],
    /// ISV product id.
    pub isv_prod_id: u16,
    /// ISV SVN.
    pub isv_svn: u16,
    /// report_data.
    #[serde(with = "hex_bytes")]
    pub report_data: [u8; 64],
}

impl EnclaveReport {
    /// Whether the enclave is a debug enclave.
    pub fn is_debug(&self) -> bool {
        self.attributes.first().is_some_and(|b| b & 0x02 != 0)
    }
}

/// The quote body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// SGX enclave report.
    Sgx(EnclaveReport),
    /// TDX 1.0 TD report.
    Td10(TdReport),
    /// TDX 1.5 TD report.
    Td15(TdReport),
    /// TDX 1.5 "ex" report (only the TD1.5 fields are read; the rest is kept raw).
    Td15Ex(TdReport),
}

impl Body {
    /// The body's report_data.
    pub fn report_data(&self) -> &[u8; 64] {
        match self {
            Body::Sgx(r) => &r.report_data,
            Body::Td10(r) | Body::Td15(r) | Body::Td15Ex(r) => &r.report_data,
        }
    }
    /// The TD report, for TDX bodies.
    pub fn td(&self) -> Option<&TdReport> {
        match self {
            Body::Sgx(_) => None,
            Body::Td10(r) | Body::Td15(r) | Body::Td15Ex(r) => Some(r),
        }
    }
    /// A short name for the body shape.
    pub fn shape(&self) -> &'static str {
        match self {
            Body::Sgx(_) => "SGX enclave report",
            Body::Td10(_) => "TD1.0",
            Body::Td15(_) => "TD1.5",
            Body::Td15Ex(_) => "TD1.5-ex",
        }
    }
}

/// A parsed quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParsedQuote {
    /// Header.
    pub header: Header,
    /// v5 body descriptor type, when present.
    pub body_type: Option<u16>,
    /// Body.
    pub body: Body,
    /// Length of the signed region (header, descriptor, body) at the start of the quote.
    pub signed_len: usize,
    /// ECDSA-P256 signature (r ‖ s) over the signed region.
    #[serde(with = "hex_bytes")]
    pub signature: [u8; 64],
    /// Attestation public key (x ‖ y).
    #[serde(with = "hex_bytes")]
    pub attestation_key: [u8; 64],
    /// Raw QE report (384 bytes), signed by the PCK key.
    #[serde(skip)]
    pub qe_report_raw: Vec<u8>,
    /// QE report.
    pub qe_report: EnclaveReport,
    /// QE report signature (r ‖ s) by the PCK leaf key.
    #[serde(with = "hex_bytes")]
    pub qe_report_signature: [u8; 64],
    /// QE authentication data.
    #[serde(with = "hex_vec")]
    pub qe_auth_data: Vec<u8>,
    /// Inner certification data type (5 = PCK chain PEM).
    pub cert_type: u16,
    /// Inner certification data (the PEM PCK chain for type 5).
    #[serde(skip)]
    pub cert_data: Vec<u8>,
    /// Bytes after the signature data (usually zero padding).
    pub trailing_len: usize,
}

impl ParsedQuote {
    /// Parse a quote. Never panics, whatever the input.
    pub fn parse(bytes: &[u8]) -> Result<Self, QuoteParseError> {
        parse(bytes)
    }

    /// Check the quote's ECDSA-P256 signature over the signed region with the attestation key.
    pub fn verify_signature(&self, quote: &[u8]) -> Result<(), SignatureError> {
        let signed = quote.get(..self.signed_len).ok_or(SignatureError::Region)?;
        verify_p256(&self.attestation_key, signed, &self.signature)
    }

    /// Check that the QE report binds the attestation key:
    /// `qe_report.report_data[..32] == sha256(attestation_key ‖ qe_auth_data)`.
    pub fn verify_qe_binding(&self) -> Result<(), SignatureError> {
        let mut h = Sha256::new();
        h.update(self.attestation_key);
        h.update(&self.qe_auth_data);
        let digest = h.finalize();
        let bound = self
            .qe_report
            .report_data
            .get(..32)
            .ok_or(SignatureError::Region)?;
        if bound == digest.as_slice() {
            Ok(())
        } else {
            Err(SignatureError::QeBinding)
        }
    }

    /// Check the QE report signature with the PCK leaf public key (SEC1 uncompressed point).
    pub fn verify_qe_report_signature(&self, pck_public_key: &[u8]) -> Result<(), SignatureError> {
        let key = VerifyingKey::from_sec1_bytes(pck_public_key).map_err(|_| SignatureError::Key)?;
        let sig = Signature::from_slice(&self.qe_report_signature)
            .map_err(|_| SignatureError::Malformed)?;
        key.verify(&self.qe_report_raw, &sig)
            .map_err(|_| SignatureError::Invalid)
    }
}

/// A signature check that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The public key is not a valid P-256 point.
    #[error("public key is not a valid P-256 point")]
    Key,
    /// The signature bytes are not a valid (r, s).
    #[error("signature is malformed")]
    Malformed,
    /// The signature does not verify.
    #[error("signature does not verify")]
    Invalid,
    /// The signed region lies outside the quote.
    #[error("signed region lies outside the quote")]
    Region,
    /// The QE report does not bind the attestation key.
    #[error("QE report_data is not sha256(attestation key ‖ QE auth data)")]
    QeBinding,
}

/// Verify a raw `r ‖ s` ECDSA-P256/SHA-256 signature with a raw `x ‖ y` public key.
pub fn verify_p256(key_xy: &[u8; 64], msg: &[u8], sig_rs: &[u8; 64]) -> Result<(), SignatureError> {
    let mut sec1 = [0u8; 65];
    let (tag, rest) = sec1.split_at_mut(1);
    tag.copy_from_slice(&[0x04]);
    rest.copy_from_slice(key_xy);
    let key = VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| SignatureError::Key)?;
    let sig = Signature::from_slice(sig_rs).map_err(|_| SignatureError::Malformed)?;
    key.verify(msg, &sig).map_err(|_| SignatureError::Invalid)
}

/// A bounds-checked cursor over untrusted bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], QuoteParseError> {
        let available = self.buf.len().saturating_sub(self.pos);
        let end = self
            .pos
            .checked_add(n)
            .ok_or(QuoteParseError::Length { field, len: n })?;
        let out = self
            .buf
            .get(self.pos..end)
            .ok_or(QuoteParseError::Truncated {
                field,
                offset: self.pos,
                needed: n,
                available,
            })?;
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], QuoteParseError> {
        let s = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, QuoteParseError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, QuoteParseError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn len_u32(&mut self, field: &'static str) -> Result<usize, QuoteParseError> {
        let n = self.u32(field)?;
        let n = usize::try_from(n).map_err(|_| QuoteParseError::Length {
            field,
            len: usize::MAX,
        })?;
        if n > MAX_CERT_DATA {
            return Err(QuoteParseError::Length { field, len: n });
        }
        Ok(n)
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
}

fn parse(bytes: &[u8]) -> Result<ParsedQuote, QuoteParseError> {
    let mut r = Reader::new(bytes);
    let header = Header {
        version: r.u16("version")?,
        attestation_key_type: r.u16("attestation_key_type")?,
        tee_type: r.u32("tee_type")?,
        qe_svn: r.u16("qe_svn")?,
        pce_svn: r.u16("pce_svn")?,
        qe_vendor_id: r.array("qe_vendor_id")?,
        user_data: r.array("user_data")?,
    };
    if header.attestation_key_type != ATT_KEY_ECDSA_P256 {
        return Err(QuoteParseError::UnsupportedKeyType(
            header.attestation_key_type,
        ));
    }
    let (body_type, body) = body(&mut r, &header)?;
    let signed_len = r.pos;
    let sig_len = r.len_u32("signature_data_len")?;
    let sig_data = r.take(sig_len, "signature_data")?;
    let trailing_len = r.remaining();

    let mut s = Reader::new(sig_data);
    let signature = s.array::<64>("ecdsa_signature")?;
    let attestation_key = s.array::<64>("attestation_key")?;
    let qe = certified_qe_section(&mut s, header.version)?;
    Ok(ParsedQuote {
        header,
        body_type,
        body,
        signed_len,
        signature,
        attestation_key,
        qe_report: qe.report,
        qe_report_raw: qe.raw,
        qe_report_signature: qe.signature,
        qe_auth_data: qe.auth_data,
        cert_type: qe.cert_type,
        cert_data: qe.cert_data,
        trailing_len,
    })
}

/// The report body after the header: its v5 body type (`None` before v5) and the report, as the
/// header's version and TEE type say.
fn body(r: &mut Reader<'_>, header: &Header) -> Result<(Option<u16>, Body), QuoteParseError> {
    let bad_tee = QuoteParseError::UnsupportedTeeType {
        version: header.version,
        tee_type: header.tee_type,
    };
    match header.version {
        3 => {
            if header.tee_type != TEE_TYPE_SGX {
                return Err(bad_tee);
            }
            Ok((None, Body::Sgx(enclave_report(r, "sgx_body")?)))
        }
        4 => match header.tee_type {
            TEE_TYPE_SGX => Ok((None, Body::Sgx(enclave_report(r, "sgx_body")?))),
            TEE_TYPE_TDX => Ok((None, Body::Td10(td_report(r, false)?))),
            _ => Err(bad_tee),
        },
        5 => v5_body(r, header, bad_tee),
        v => Err(QuoteParseError::UnsupportedVersion(v)),
    }
}

/// A v5 body: a type and size descriptor, then the report of that type.
fn v5_body(
    r: &mut Reader<'_>,
    header: &Header,
    bad_tee: QuoteParseError,
) -> Result<(Option<u16>, Body), QuoteParseError> {
    let body_type = r.u16("body_type")?;
    let size = r.u32("body_size")?;
    let expected = match body_type {
        1 => ENCLAVE_REPORT_LEN,
        2 => TD10_LEN,
        3 => TD15_LEN,
        4 => TD15EX_LEN,
        other => return Err(QuoteParseError::UnsupportedBodyType(other)),
    };
    if usize::try_from(size).ok() != Some(expected) {
        return Err(QuoteParseError::BodySizeMismatch {
            body_type,
            size,
            expected,
        });
    }
    let tee_ok = if body_type == 1 {
        header.tee_type == TEE_TYPE_SGX
    } else {
        header.tee_type == TEE_TYPE_TDX
    };
    if !tee_ok {
        return Err(bad_tee);
    }
    let body = match body_type {
        1 => Body::Sgx(enclave_report(r, "sgx_body")?),
        2 => Body::Td10(td_report(r, false)?),
        3 => Body::Td15(td_report(r, true)?),
        _ => {
            let td = td_report(r, true)?;
            r.take(TD15EX_LEN.saturating_sub(TD15_LEN), "td15ex_extension")?;
            Body::Td15Ex(td)
        }
    };
    Ok((Some(body_type), body))
}

/// The QE section of the signature data (inside a type-6 certification data wrapper from v4 on),
/// which must certify with a PCK chain (type 5).
fn certified_qe_section(s: &mut Reader<'_>, version: u16) -> Result<QeSection, QuoteParseError> {
    let qe = if version == 3 {
        qe_section(s)?
    } else {
        let outer_type = s.u16("certification_data_type")?;
        if outer_type != 6 {
            return Err(QuoteParseError::CertType {
                found: outer_type,
                expected: 6,
            });
        }
        let outer_len = s.len_u32("certification_data_len")?;
        let outer = s.take(outer_len, "certification_data")?;
        qe_section(&mut Reader::new(outer))?
    };
    if qe.cert_type != 5 {
        return Err(QuoteParseError::CertType {
            found: qe.cert_type,
            expected: 5,
        });
    }
    Ok(qe)
}

struct QeSection {
    raw: Vec<u8>,
    report: EnclaveReport,
    signature: [u8; 64],
    auth_data: Vec<u8>,
    cert_type: u16,
    cert_data: Vec<u8>,
}

fn qe_section(r: &mut Reader<'_>) -> Result<QeSection, QuoteParseError> {
    let raw = r.take(ENCLAVE_REPORT_LEN, "qe_report")?;
    let report = enclave_report(&mut Reader::new(raw), "qe_report")?;
    let signature = r.array::<64>("qe_report_signature")?;
    let auth_len = usize::from(r.u16("qe_auth_data_len")?);
    let auth_data = r.take(auth_len, "qe_auth_data")?.to_vec();
    let cert_type = r.u16("pck_cert_data_type")?;
    let cert_len = r.len_u32("pck_cert_data_len")?;
    let cert_data = r.take(cert_len, "pck_cert_data")?.to_vec();
    Ok(QeSection {
        raw: raw.to_vec(),
        report,
        signature,
        auth_data,
        cert_type,
        cert_data,
    })
}

fn enclave_report(
    r: &mut Reader<'_>,
    field: &'static str,
) -> Result<EnclaveReport, QuoteParseError> {
    let bytes = r.take(ENCLAVE_REPORT_LEN, field)?;
    let mut b = Reader::new(bytes);
    let cpu_svn = b.array("cpu_svn")?;
    let misc_select = b.u32("misc_select")?;
    b.take(28, "reserved1")?;
    let attributes = b.array("attributes")?;
    let mr_enclave = b.array("mr_enclave")?;
    b.take(32, "reserved2")?;
    let mr_signer = b.array("mr_signer")?;
    b.take(96, "reserved3")?;
    let isv_prod_id = b.u16("isv_prod_id")?;
    let isv_svn = b.u16("isv_svn")?;
    b.take(60, "reserved4")?;
    let report_data = b.array("report_data")?;
    Ok(EnclaveReport {
        cpu_svn,
        misc_select,
        attributes,
        mr_enclave,
        mr_signer,
        isv_prod_id,
        isv_svn,
        report_data,
    })
}

fn td_report(r: &mut Reader<'_>, td15: bool) -> Result<TdReport, QuoteParseError> {
    let tee_tcb_svn = r.array("tee_tcb_svn")?;
    let mr_seam = r.array("mr_seam")?;
    let mr_signer_seam = r.array("mr_signer_seam")?;
    let seam_attributes = r.array("seam_attributes")?;
    let td_attributes = r.array("td_attributes")?;
    let xfam = r.array("xfam")?;
    let mr_td = r.array("mr_td")?;
    let mr_config_id = r.array("mr_config_id")?;
    let mr_owner = r.array("mr_owner")?;
    let mr_owner_config = r.array("mr_owner_config")?;
    let rtmr = [
        r.array("rtmr0")?,
        r.array("rtmr1")?,
        r.array("rtmr2")?,
        r.array("rtmr3")?,
    ];
    let report_data = r.array("report_data")?;
    let (tee_tcb_svn2, mr_service_td) = if td15 {
        (
            Some(r.array("tee_tcb_svn2")?),
            Some(r.array("mr_service_td")?),
        )
    } else {
        (None, None)
    };
    Ok(TdReport {
        tee_tcb_svn,
        mr_seam,
        mr_signer_seam,
        seam_attributes,
        td_attributes,
        xfam,
        mr_td,
        mr_config_id,
        mr_owner,
        mr_owner_config,
        rtmr,
        report_data,
        tee_tcb_svn2,
        mr_service_td,
    })
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer, const N: usize>(
        v: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
}

mod hex_vec {
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
}

mod hex_opt {
    pub fn serialize<S: serde::Serializer, const N: usize>(
        v: &Option<[u8; N]>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&hex::encode(v)),
            None => s.serialize_none(),
        }
    }
}

mod hex_rtmrs {
    use serde::ser::SerializeSeq;
    pub fn serialize<S: serde::Serializer>(v: &[[u8; 48]; 4], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(4))?;
        for r in v {
            seq.serialize_element(&hex::encode(r))?;
        }
        seq.end()
    }
}
