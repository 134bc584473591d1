//! report_data → TEE signer binding (PROTOCOL.md §5).
//!
//! Layouts of the 64 bytes inside the quote body:
//! - (a) [`Layout::AsciiAddress`]: the ASCII `0x…` address (42 bytes) zero-padded to 64;
//! - (b) [`Layout::TappdSha512`]: `sha512("app-data:" ‖ data)`, checkable only with the preimage `data`;
//! - (c) [`Layout::ZgRawSigner`]: the non-legacy 0G layout with the raw signer at bytes 32–52;
//! - sealtune's [`Layout::DocumentV2`]: `SHA-512(domain ‖ signer ‖ nonce ‖ config_hash ‖ slots)` of
//!   the attestation document v2 the answer declares (`sealtune_protocol::attestation`); a hash
//!   under a domain tag, so no caller-chosen byte of a nonce can be read as any layout's signer.
//!
//! Each layout is accepted only in its exact form and only as declared: the document layout only
//! when the answer carries a document (and, when this verifier sent a nonce, only with that nonce);
//! the 0G raw-signer layout only when the caller opts in ([`BindingExpectations::allow_zg_raw`]).

use base64::Engine;
use sealtune_protocol::attestation::AttestationDocument;
use serde::Serialize;
use sha2::{Digest, Sha512};

/// A 20-byte EVM address.
pub type Address = [u8; 20];

/// Why report_data does not bind what it should.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// The JSON `report_data` is neither base64 nor hex of 64 bytes.
    #[error("JSON report_data is not 64 bytes of base64 or hex")]
    JsonEncoding,
    /// The JSON `report_data` differs from the quote body's.
    #[error("JSON report_data differs from the quote body's report_data")]
    JsonMismatch,
    /// The attestation document is for another nonce than the one this verifier chose (a stale
    /// or relayed answer).
    #[error(
        "the attestation document carries nonce {found}, not the nonce this verifier chose ({expected}): a stale or relayed answer"
    )]
    NonceMismatch {
        /// The document's nonce (hex).
        found: String,
        /// The verifier's nonce (hex).
        expected: String,
    },
    /// This verifier sent a nonce and the answer declares no attestation document.
    #[error(
        "the answer carries no attestation document for this verifier's nonce: no freshness proof"
    )]
    NoDocument,
    /// The declared attestation document does not hash to report_data.
    #[error("report_data is not the hash of the attestation document the answer declares")]
    DocumentMismatch,
    /// The tappd preimage does not hash to report_data.
    #[error("report_data is not sha512(\"app-data:\" ‖ preimage)")]
    PreimageMismatch,
    /// No known layout fits.
    #[error(
        "report_data layout not recognised (not an ASCII 0x address; give the expected signer for the 0G raw layout or the tappd preimage)"
    )]
    UnknownLayout,
    /// The bound signer is not the expected one.
    #[error("report_data binds signer 0x{found}, expected 0x{expected}")]
    WrongSigner {
        /// Signer found (hex).
        found: String,
        /// Signer expected (hex).
        expected: String,
    },
    /// An address string that is not `0x` + 40 hex digits.
    #[error("not an address: {0}")]
    BadAddress(String),
}

/// Which layout bound the signer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// (a) ASCII `0x…` address zero-padded.
    AsciiAddress,
    /// (b) legacy tappd `sha512("app-data:" ‖ data)`.
    TappdSha512,
    /// (c) 0G layout with the raw signer at bytes 32–52.
    ZgRawSigner,
    /// sealtune's attestation document v2 (signer, nonce, config hash, slots).
    DocumentV2,
}

/// What the verifier knows when checking the binding.
#[derive(Debug, Clone, Default)]
pub struct BindingExpectations {
    /// The signer the contract (or the user) says the service has.
    pub signer: Option<Address>,
    /// The nonce this verifier sent with `GET /v1/quote?nonce=`.
    pub nonce: Option<[u8; 32]>,
    /// The `data` of a legacy tappd quote.
    pub tappd_preimage: Option<Vec<u8>>,
    /// The attestation document v2 the answer declares (`attestation_document`).
    pub document: Option<AttestationDocument>,
    /// Accept the 0G raw-signer layout (c), which only an expected signer can recognise.
    pub allow_zg_raw: bool,
}

/// The binding found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Binding {
    /// Layout.
    pub layout: Layout,
    /// The signer bound (hex, no 0x), when the layout names one.
    pub signer: Option<String>,
}

/// Decode the JSON `report_data`: base64 per PROTOCOL.md §5, or 128 hex digits as raw dstack sends.
pub fn decode_json_report_data(json: &str) -> Result<[u8; 64], BindingError> {
    let json = json.trim();
    let decoded = if json.len() == 128 && json.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(json).map_err(|_| BindingError::JsonEncoding)?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(json)
            .map_err(|_| BindingError::JsonEncoding)?
    };
    <[u8; 64]>::try_from(decoded.as_slice()).map_err(|_| BindingError::JsonEncoding)
}

/// Decode the JSON `report_data` ([`decode_json_report_data`]) and compare it with the quote body's.
pub fn check_json_report_data(json: &str, body: &[u8; 64]) -> Result<(), BindingError> {
    if decode_json_report_data(json)? == *body {
        Ok(())
    } else {
        Err(BindingError::JsonMismatch)
    }
}

/// Parse `0x` + 40 hex digits (any case).
pub fn parse_address(s: &str) -> Result<Address, BindingError> {
    let h = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let bytes = hex::decode(h).map_err(|_| BindingError::BadAddress(s.to_string()))?;
    Address::try_from(bytes.as_slice()).map_err(|_| BindingError::BadAddress(s.to_string()))
}

/// Layout (a): the ASCII address zero-padded.
pub fn ascii_report_data(signer: &Address) -> [u8; 64] {
    let mut out = [0u8; 64];
    let s = format!("0x{}", hex::encode(signer));
    let (a, _) = out.split_at_mut(42);
    a.copy_from_slice(s.as_bytes());
    out
}

/// Layout (b): `sha512("app-data:" ‖ data)`.
pub fn tappd_report_data(data: &[u8]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(b"app-data:");
    h.update(data);
    h.finalize().into()
}

/// Find the layout of `rd` given what the verifier knows, and check the signer when one is expected.
pub fn check_binding(rd: &[u8; 64], exp: &BindingExpectations) -> Result<Binding, BindingError> {
    let binding = if let Some(doc) = &exp.document {
        document_binding(rd, doc, exp.nonce.as_ref())?
    } else if exp.nonce.is_some() {
        return Err(BindingError::NoDocument);
    } else if let Some(pre) = &exp.tappd_preimage {
        if tappd_report_data(pre) != *rd {
            return Err(BindingError::PreimageMismatch);
        }
        Binding {
            layout: Layout::TappdSha512,
            signer: find_address(pre).map(hex::encode),
        }
    } else if let Some(a) = ascii_address(rd) {
        Binding {
            layout: Layout::AsciiAddress,
            signer: Some(hex::encode(a)),
        }
    } else if let (true, Some(expected)) = (exp.allow_zg_raw, &exp.signer) {
        let raw = rd.get(32..52).ok_or(BindingError::UnknownLayout)?;
        if raw != expected.as_slice() {
            return Err(BindingError::UnknownLayout);
        }
        Binding {
            layout: Layout::ZgRawSigner,
            signer: Some(hex::encode(raw)),
        }
    } else {
        return Err(BindingError::UnknownLayout);
    };
    if let Some(expected) = &exp.signer {
        let expected = hex::encode(expected);
        match &binding.signer {
            Some(found) if *found == expected => {}
            found => {
                return Err(BindingError::WrongSigner {
                    found: found.clone().unwrap_or_else(|| "(none)".into()),
                    expected,
                });
            }
        }
    }
    Ok(binding)
}

/// The document layout: the document is for `nonce` (when this verifier sent one) and hashes to `rd`.
fn document_binding(
    rd: &[u8; 64],
    doc: &AttestationDocument,
    nonce: Option<&[u8; 32]>,
) -> Result<Binding, BindingError> {
    if let Some(n) = nonce
        && doc.nonce.as_slice() != n.as_slice()
    {
        return Err(BindingError::NonceMismatch {
            found: hex::encode(doc.nonce),
            expected: hex::encode(n),
        });
    }
    if doc.report_data() != *rd {
        return Err(BindingError::DocumentMismatch);
    }
    Ok(Binding {
        layout: Layout::DocumentV2,
        signer: Some(hex::encode(doc.signer)),
    })
}

fn ascii_address(rd: &[u8; 64]) -> Option<Address> {
    let (text, pad) = rd.split_at(42);
    if pad.iter().any(|b| *b != 0) {
        return None;
    }
    let s = core::str::from_utf8(text).ok()?;
    let h = s.strip_prefix("0x")?;
    let bytes = hex::decode(h).ok()?;
    Address::try_from(bytes.as_slice()).ok()
}

fn find_address(data: &[u8]) -> Option<Address> {
    data.windows(42).find_map(|w| {
        let s = core::str::from_utf8(w).ok()?;
        let h = s.strip_prefix("0x")?;
        let bytes = hex::decode(h).ok()?;
        Address::try_from(bytes.as_slice()).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNER: Address = [0x11; 20];

    #[test]
    fn ascii_address_layout_binds_the_signer() {
        let rd = ascii_report_data(&SIGNER);
        let exp = BindingExpectations {
            signer: Some(SIGNER),
            ..Default::default()
        };
        let b = check_binding(&rd, &exp).unwrap();
        assert_eq!(b.layout, Layout::AsciiAddress);
    }

    #[test]
    fn ascii_address_of_another_signer_is_rejected() {
        let rd = ascii_report_data(&[0x22; 20]);
        let exp = BindingExpectations {
            signer: Some(SIGNER),
            ..Default::default()
        };
        assert!(matches!(
            check_binding(&rd, &exp),
            Err(BindingError::WrongSigner { .. })
        ));
    }

    fn document(nonce: [u8; 32]) -> AttestationDocument {
        AttestationDocument::new(
            SIGNER.into(),
            nonce.into(),
            sealtune_protocol::B256::repeat_byte(3),
        )
    }

    #[test]
    fn document_layout_requires_the_verifiers_nonce() {
        let doc = document([7; 32]);
        let rd = doc.report_data();
        let ok = BindingExpectations {
            signer: Some(SIGNER),
            nonce: Some([7; 32]),
            document: Some(doc),
            ..Default::default()
        };
        assert_eq!(check_binding(&rd, &ok).unwrap().layout, Layout::DocumentV2);
        let stale = BindingExpectations {
            nonce: Some([8; 32]),
            ..ok.clone()
        };
        assert!(matches!(
            check_binding(&rd, &stale),
            Err(BindingError::NonceMismatch { .. })
        ));
        // A nonce sent, no document declared: no freshness proof.
        let undeclared = BindingExpectations {
            document: None,
            ..ok.clone()
        };
        assert_eq!(
            check_binding(&rd, &undeclared),
            Err(BindingError::NoDocument)
        );
        // A document that is not what report_data hashes.
        let mut other = doc;
        other.config_hash = sealtune_protocol::B256::repeat_byte(4);
        let forged = BindingExpectations {
            document: Some(other),
            ..ok
        };
        assert_eq!(
            check_binding(&rd, &forged),
            Err(BindingError::DocumentMismatch)
        );
    }

    /// The relay attack on the old `signer ‖ 0^12 ‖ nonce` form: an attacker asked an honest
    /// worker for a quote with `nonce = attacker ‖ 0^12` so that bytes 32..52 read as the
    /// attacker's address. With the document layout report_data is a hash: neither the 0G raw
    /// layout (even when allowed) nor any other reads the attacker there.
    #[test]
    fn a_relayed_nonce_quote_cannot_bind_the_attacker() {
        let attacker: Address = [0x66; 20];
        let mut nonce = [0u8; 32];
        nonce[..20].copy_from_slice(&attacker);
        let rd = document(nonce).report_data();
        let exp = BindingExpectations {
            signer: Some(attacker),
            allow_zg_raw: true,
            ..Default::default()
        };
        assert_eq!(check_binding(&rd, &exp), Err(BindingError::UnknownLayout));
        let declared = BindingExpectations {
            document: Some(document(nonce)),
            ..exp
        };
        assert!(matches!(
            check_binding(&rd, &declared),
            Err(BindingError::WrongSigner { .. })
        ));
    }

    #[test]
    fn tappd_layout_needs_the_preimage() {
        let data = br#"{"address":"0x1111111111111111111111111111111111111111"}"#.to_vec();
        let rd = tappd_report_data(&data);
        let exp = BindingExpectations {
            signer: Some(SIGNER),
            tappd_preimage: Some(data),
            ..Default::default()
        };
        assert_eq!(
            check_binding(&rd, &exp).unwrap().layout,
            Layout::TappdSha512
        );
        let without = BindingExpectations {
            signer: Some(SIGNER),
            ..Default::default()
        };
        assert_eq!(
            check_binding(&rd, &without),
            Err(BindingError::UnknownLayout)
        );
    }

    #[test]
    fn zg_raw_signer_layout_binds_bytes_32_to_52() {
        let mut rd = [0xab; 64];
        rd[32..52].copy_from_slice(&SIGNER);
        let exp = BindingExpectations {
            signer: Some(SIGNER),
            ..Default::default()
        };
        // Only when asked for: the layout cannot be recognised from the bytes alone.
        assert_eq!(check_binding(&rd, &exp), Err(BindingError::UnknownLayout));
        let allowed = BindingExpectations {
            allow_zg_raw: true,
            ..exp
        };
        assert_eq!(
            check_binding(&rd, &allowed).unwrap().layout,
            Layout::ZgRawSigner
        );
    }

    #[test]
    fn json_report_data_must_equal_the_quote_body() {
        let rd = ascii_report_data(&SIGNER);
        let b64 = base64::engine::general_purpose::STANDARD.encode(rd);
        check_json_report_data(&b64, &rd).unwrap();
        check_json_report_data(&hex::encode(rd), &rd).unwrap();
        let other = ascii_report_data(&[0x22; 20]);
        assert_eq!(
            check_json_report_data(&b64, &other),
            Err(BindingError::JsonMismatch)
        );
    }
}
