//! The GPU's attestation report: an SPDM 1.1 GET_MEASUREMENTS request followed by the signed
//! MEASUREMENTS response (DMTF DSP0274 §10.11), as NVML returns it and NVIDIA's verifiers read it.
//!
//! ```text
//! request  = version (1) | 0xE0 | param1 (1, bit 0: signature requested) | param2 (1, 0xFF: all)
//!            | nonce (32) | slot id (1)                                   (37 bytes)
//! response = version (1) | 0x60 | param1 (1) | param2 (1, slot) | number of blocks (1)
//!            | record length (3, LE) | record | nonce (32) | opaque length (2, LE) | opaque data
//!            | signature (96: P-384 r ‖ s)
//! block    = index (1) | spec (1, DMTF = 1) | size (2, LE) | value type (1) | value size (2, LE) | value
//! opaque   = { type (2, LE) | length (2, LE) | value }*                     (NVIDIA's TLVs)
//! ```
//!
//! The signature covers `request ‖ response without its last 96 bytes`. Every read is bounds-checked
//! and the whole input must be consumed: trailing bytes are an error.

use serde::Serialize;

/// SPDM request code of GET_MEASUREMENTS.
pub const GET_MEASUREMENTS: u8 = 0xE0;
/// SPDM response code of MEASUREMENTS.
pub const MEASUREMENTS: u8 = 0x60;
/// Length of the raw P-384 signature closing the response.
pub const SIGNATURE_LEN: usize = 96;
/// The DMTF measurement specification (block `spec` field).
pub const SPEC_DMTF: u8 = 1;

/// NVIDIA's opaque-data field ids that the verifier reads (nvtrust's local verifier numbering).
pub mod field {
    /// Driver version (ASCII, NUL-terminated).
    pub const DRIVER_VERSION: u16 = 3;
    /// GPU info.
    pub const GPU_INFO: u16 = 4;
    /// VBIOS version (8 bytes).
    pub const VBIOS_VERSION: u16 = 6;
    /// Number of measurement records per index (u32 LE each).
    pub const MSRSCNT: u16 = 12;
    /// Board id.
    pub const BOARD_ID: u16 = 14;
    /// Chip SKU (ASCII).
    pub const CHIP_SKU: u16 = 15;
    /// Project (ASCII).
    pub const PROJECT: u16 = 17;
    /// Project SKU (ASCII).
    pub const PROJECT_SKU: u16 = 18;
    /// The firmware id: 48 bytes, equal to the end of the leaf certificate's DICE FWID.
    pub const FWID: u16 = 20;
    /// Protected PCIe status.
    pub const PROTECTED_PCIE_STATUS: u16 = 21;
}

/// Why a report cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpdmError {
    /// The bytes end before a field.
    #[error("SPDM {what}: truncated at byte {at}")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Offset in the whole report.
        at: usize,
    },
    /// A field has a value the format does not allow.
    #[error("SPDM {0}")]
    Invalid(String),
}

/// The GET_MEASUREMENTS request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Request {
    /// SPDM version byte (0x11 = 1.1).
    pub version: u8,
    /// Attributes (bit 0: signature requested).
    pub param1: u8,
    /// Measurement operation (0xFF: all blocks).
    pub param2: u8,
    /// The requester's nonce: the one the verifier expects.
    #[serde(with = "hex_array")]
    pub nonce: [u8; 32],
    /// Certificate slot.
    pub slot_id: u8,
}

/// One measurement block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeasurementBlock {
    /// Block index (1-based).
    pub index: u8,
    /// Measurement specification (1 = DMTF).
    pub spec: u8,
    /// DMTF value type.
    pub value_type: u8,
    /// The value (a SHA-384 digest on Hopper).
    #[serde(with = "hex_vec")]
    pub value: Vec<u8>,
}

/// One opaque-data field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpaqueField {
    /// Field id ([`field`]).
    pub kind: u16,
    /// Raw value.
    #[serde(with = "hex_vec")]
    pub value: Vec<u8>,
}

/// The MEASUREMENTS response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Response {
    /// SPDM version byte.
    pub version: u8,
    /// param1.
    pub param1: u8,
    /// param2 (slot id).
    pub param2: u8,
    /// The measurement blocks, in order.
    pub blocks: Vec<MeasurementBlock>,
    /// The responder's nonce.
    #[serde(with = "hex_array")]
    pub responder_nonce: [u8; 32],
    /// The opaque data, field by field.
    pub opaque: Vec<OpaqueField>,
    /// P-384 signature, r ‖ s.
    #[serde(skip)]
    pub signature: [u8; SIGNATURE_LEN],
}

/// A parsed report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The request.
    pub request: Request,
    /// The response.
    pub response: Response,
    /// Length of the signed prefix (request ‖ response without the signature).
    pub signed_len: usize,
}

impl Report {
    /// Parses a whole report (request ‖ response).
    pub fn parse(bytes: &[u8]) -> Result<Self, SpdmError> {
        let mut r = Reader::new(bytes);
        let request = parse_request(&mut r)?;
        let response = parse_response(&mut r)?;
        if r.remaining() != 0 {
            return Err(SpdmError::Invalid(format!(
                "{} trailing bytes after the signature",
                r.remaining()
            )));
        }
        let signed_len = bytes
            .len()
            .checked_sub(SIGNATURE_LEN)
            .ok_or(SpdmError::Invalid("shorter than a signature".into()))?;
        Ok(Report {
            request,
            response,
            signed_len,
        })
    }

    /// The first opaque field of id `kind`.
    pub fn opaque(&self, kind: u16) -> Option<&[u8]> {
        self.response
            .opaque
            .iter()
            .find(|f| f.kind == kind)
            .map(|f| f.value.as_slice())
    }

    /// The driver version (`550.90.07`).
    pub fn driver_version(&self) -> Option<String> {
        self.opaque(field::DRIVER_VERSION).map(ascii)
    }

    /// The VBIOS version as NVIDIA prints it (`96.00.9f.00.01`): bytes 3, 2, 1, 0, then 4.
    pub fn vbios_version(&self) -> Option<String> {
        let v = self.opaque(field::VBIOS_VERSION)?;
        let order = [3usize, 2, 1, 0, 4];
        let parts: Option<Vec<String>> = order
            .iter()
            .map(|&i| v.get(i).map(|b| format!("{b:02x}")))
            .collect();
        parts.map(|p| p.join("."))
    }

    /// The 48-byte FWID opaque field.
    pub fn fwid(&self) -> Option<[u8; 48]> {
        self.opaque(field::FWID)
            .and_then(|v| <[u8; 48]>::try_from(v).ok())
    }
}

/// ASCII up to the first NUL.
fn ascii(v: &[u8]) -> String {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    v.get(..end)
        .unwrap_or_default()
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

fn parse_request(r: &mut Reader<'_>) -> Result<Request, SpdmError> {
    let version = r.u8("request version")?;
    let code = r.u8("request code")?;
    if code != GET_MEASUREMENTS {
        return Err(SpdmError::Invalid(format!(
            "request code {code:#04x} is not GET_MEASUREMENTS (0xe0)"
        )));
    }
    let param1 = r.u8("request param1")?;
    if param1 & 1 == 0 {
        return Err(SpdmError::Invalid(
            "the request did not ask for a signature".into(),
        ));
    }
    let param2 = r.u8("request param2")?;
    let nonce = r.array::<32>("request nonce")?;
    let slot_id = r.u8("request slot id")?;
    Ok(Request {
        version,
        param1,
        param2,
        nonce,
        slot_id,
    })
}

fn parse_response(r: &mut Reader<'_>) -> Result<Response, SpdmError> {
    let version = r.u8("response version")?;
    let code = r.u8("response code")?;
    if code != MEASUREMENTS {
        return Err(SpdmError::Invalid(format!(
            "response code {code:#04x} is not MEASUREMENTS (0x60)"
        )));
    }
    let param1 = r.u8("response param1")?;
    let param2 = r.u8("response param2")?;
    let count = r.u8("number of blocks")?;
    let record_len = r.u24le("record length")?;
    let record = r.take(record_len, "measurement record")?;
    let blocks = parse_blocks(record, usize::from(count))?;
    let responder_nonce = r.array::<32>("response nonce")?;
    let opaque_len = usize::from(r.u16le("opaque length")?);
    let opaque = parse_opaque(r.take(opaque_len, "opaque data")?)?;
    let signature = r.array::<SIGNATURE_LEN>("signature")?;
    Ok(Response {
        version,
        param1,
        param2,
        blocks,
        responder_nonce,
        opaque,
        signature,
    })
}

fn parse_blocks(record: &[u8], count: usize) -> Result<Vec<MeasurementBlock>, SpdmError> {
    let mut r = Reader::new(record);
    let mut blocks = Vec::with_capacity(count);
    for _ in 0..count {
        let index = r.u8("block index")?;
        let spec = r.u8("block spec")?;
        let size = usize::from(r.u16le("block size")?);
        let body = r.take(size, "block body")?;
        if spec != SPEC_DMTF {
            return Err(SpdmError::Invalid(format!(
                "block {index}: measurement specification {spec} is not DMTF (1)"
            )));
        }
        let mut b = Reader::new(body);
        let value_type = b.u8("DMTF value type")?;
        let value_size = usize::from(b.u16le("DMTF value size")?);
        let value = b.take(value_size, "DMTF value")?.to_vec();
        if b.remaining() != 0 {
            return Err(SpdmError::Invalid(format!(
                "block {index}: size {size} disagrees with its DMTF value size {value_size}"
            )));
        }
        blocks.push(MeasurementBlock {
            index,
            spec,
            value_type,
            value,
        });
    }
    if r.remaining() != 0 {
        return Err(SpdmError::Invalid(format!(
            "measurement record holds {} bytes past its {count} blocks",
            r.remaining()
        )));
    }
    Ok(blocks)
}

fn parse_opaque(data: &[u8]) -> Result<Vec<OpaqueField>, SpdmError> {
    let mut r = Reader::new(data);
    let mut out = Vec::new();
    while r.remaining() != 0 {
        let kind = r.u16le("opaque field type")?;
        let len = usize::from(r.u16le("opaque field length")?);
        let value = r.take(len, "opaque field value")?.to_vec();
        out.push(OpaqueField { kind, value });
    }
    Ok(out)
}

/// A bounds-checked cursor.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SpdmError> {
        let at = self.pos;
        let end = at.checked_add(n).ok_or(SpdmError::Truncated { what, at })?;
        let s = self
            .buf
            .get(at..end)
            .ok_or(SpdmError::Truncated { what, at })?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], SpdmError> {
        let at = self.pos;
        <[u8; N]>::try_from(self.take(N, what)?).map_err(|_| SpdmError::Truncated { what, at })
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, SpdmError> {
        Ok(u8::from_le_bytes(self.array::<1>(what)?))
    }

    fn u16le(&mut self, what: &'static str) -> Result<u16, SpdmError> {
        Ok(u16::from_le_bytes(self.array::<2>(what)?))
    }

    fn u24le(&mut self, what: &'static str) -> Result<usize, SpdmError> {
        let [a, b, c] = self.array::<3>(what)?;
        Ok(usize::from(a) | (usize::from(b) << 8) | (usize::from(c) << 16))
    }
}

mod hex_array {
    pub fn serialize<S: serde::Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
}

mod hex_vec {
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let text =
            std::fs::read_to_string(sealtune_e2e::fixture("nvidia/hopperAttestationReport.txt"))
                .unwrap();
        hex::decode(text.trim()).unwrap()
    }

    #[test]
    fn the_h100_sample_reads_as_nvidia_documents_it() {
        let r = Report::parse(&sample()).unwrap();
        assert_eq!(r.request.version, 0x11);
        assert_eq!(
            hex::encode(r.request.nonce),
            "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"
        );
        assert_eq!(r.response.blocks.len(), 64);
        assert!(r.response.blocks.iter().all(|b| b.value.len() == 48));
        assert_eq!(
            hex::encode(&r.response.blocks[1].value),
            "8048dfd18fe229bf16eb9d30cca0f11a24dafe6eb731de1462984645a0b189b77c4e4e17de727a5e19e3d07de51da338"
        );
        assert_eq!(r.driver_version().as_deref(), Some("550.90.07"));
        assert_eq!(r.vbios_version().as_deref(), Some("96.00.9f.00.01"));
        assert_eq!(
            hex::encode(r.fwid().unwrap()),
            "f5c384aebb579217a2c66b17ed0f28e6a9b8d639041acd7b4721cec004f7275494ba94bb5cdfdb3055ee051762b1f75d"
        );
        assert_eq!(r.signed_len, 4117 - 96);
    }

    #[test]
    fn every_truncation_and_a_trailing_byte_is_an_error_not_a_panic() {
        let s = sample();
        for n in 0..s.len() {
            assert!(Report::parse(&s[..n]).is_err(), "prefix of {n} bytes");
        }
        let mut longer = s.clone();
        longer.push(0);
        assert!(Report::parse(&longer).is_err());
    }
}
