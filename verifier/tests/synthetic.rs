//! The real v4 quote reshaped (v5 with TD1.0 and TD1.5 bodies, debug and migratable TDs, tampered
//! MRTD) and **re-signed with a foreign attestation key**, keeping the real QE report and PCK chain.
//!
//! These quotes carry a valid `p256` quote signature but an attestation key the QE never certified:
//! they exercise this crate's own reading (parser, quote signature, TD attributes, measurement policy)
//! and show that the QE binding and dcap-qvl reject a key swap. Quotes that verify end to end under a
//! test root (synthetic PCK chain, CRLs, TCB info, QE identity) are in `synthetic_pki.rs`.
mod common;

use common::*;
use p256::ecdsa::{Signature, SigningKey, signature::Signer};
use sealtune_verifier::policy::Policy;
use sealtune_verifier::quote::{Body, ParsedQuote, TD10_LEN, TD15_LEN};
use sealtune_verifier::verify::{
    QuoteDocument, VerificationReport, VerifyOptions, verify_document,
};

const V4_SIGNED: usize = 48 + TD10_LEN;

fn test_key() -> SigningKey {
    SigningKey::from_slice(&[0x17; 32]).unwrap()
}

/// Build a quote from a signed region and the v4 fixture's signature data, re-signed with `key`.
fn resign(signed: Vec<u8>, key: &SigningKey) -> Vec<u8> {
    let v4 = fixture("tdx/tdx_quote");
    let sig_len = u32::from_le_bytes(v4[V4_SIGNED..V4_SIGNED + 4].try_into().unwrap()) as usize;
    let mut sig_data = v4[V4_SIGNED + 4..V4_SIGNED + 4 + sig_len].to_vec();
    let sig: Signature = key.sign(&signed);
    sig_data[..64].copy_from_slice(&sig.to_bytes());
    let point = key.verifying_key().to_sec1_point(false);
    sig_data[64..128].copy_from_slice(&point.as_bytes()[1..65]);
    let mut q = signed;
    q.extend_from_slice(&(sig_data.len() as u32).to_le_bytes());
    q.extend_from_slice(&sig_data);
    q
}

/// The v4 fixture as a v5 quote with body type 2 (TD1.0) or 3 (TD1.5).
fn v5(body_type: u16, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let v4 = fixture("tdx/tdx_quote");
    let mut header = v4[..48].to_vec();
    header[..2].copy_from_slice(&5u16.to_le_bytes());
    let mut body = v4[48..V4_SIGNED].to_vec();
    if body_type == 3 {
        body.extend_from_slice(&[0x15; 16]); // TEE_TCB_SVN_2
        body.extend_from_slice(&[0x5e; 48]); // MRSERVICETD
        assert_eq!(body.len(), TD15_LEN);
    }
    edit(&mut body);
    let mut signed = header;
    signed.extend_from_slice(&body_type.to_le_bytes());
    signed.extend_from_slice(&(body.len() as u32).to_le_bytes());
    signed.extend_from_slice(&body);
    resign(signed, &test_key())
}

/// The v4 fixture with its body edited, re-signed.
fn v4_edited(edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut signed = fixture("tdx/tdx_quote")[..V4_SIGNED].to_vec();
    edit(&mut signed[48..]);
    resign(signed, &test_key())
}

fn report(quote: Vec<u8>, policy: Option<&str>) -> VerificationReport {
    verify_document(
        &QuoteDocument {
            quote,
            ..Default::default()
        },
        &VerifyOptions {
            now: TDX_V4_AT,
            collateral: Some(collateral("tdx/tdx_quote_collateral.json")),
            policy: policy.map(|p| Policy::from_toml("synthetic.toml", p).unwrap()),
            ..Default::default()
        },
    )
}

fn ok(r: &VerificationReport, name: &str) -> bool {
    r.link(name)
        .unwrap_or_else(|| panic!("no link {name}: {:#?}", r.links))
        .ok
}

fn detail<'a>(r: &'a VerificationReport, name: &str) -> &'a str {
    &r.link(name).unwrap().detail
}

#[test]
fn v5_td10_body_is_read_like_the_v4_original() {
    let q = v5(2, |_| {});
    let p = ParsedQuote::parse(&q).unwrap();
    let orig = ParsedQuote::parse(&fixture("tdx/tdx_quote")).unwrap();
    assert_eq!(p.header.version, 5);
    assert_eq!(p.body_type, Some(2));
    assert!(matches!(p.body, Body::Td10(_)));
    assert_eq!(p.body.td(), orig.body.td());
    assert_eq!(p.signed_len, 48 + 6 + TD10_LEN);
    p.verify_signature(&q).unwrap();
    // The test key is not the attestation key the QE certified.
    assert!(p.verify_qe_binding().is_err());

    let r = report(q, None);
    assert!(ok(&r, "quote parse"), "{}", detail(&r, "quote parse"));
    assert!(detail(&r, "quote parse").contains("v5"));
    assert!(ok(&r, "quote signature"));
    assert!(!ok(&r, "QE binds key"));
    assert!(!ok(&r, "DCAP (dcap-qvl)"));
    assert!(!r.verified);
}

#[test]
fn v5_td15_body_carries_its_extra_fields() {
    let q = v5(3, |_| {});
    let p = ParsedQuote::parse(&q).unwrap();
    assert_eq!(p.body_type, Some(3));
    let Body::Td15(td) = &p.body else {
        panic!("not TD1.5: {:?}", p.body.shape())
    };
    assert_eq!(td.tee_tcb_svn2, Some([0x15; 16]));
    assert_eq!(td.mr_service_td, Some([0x5e; 48]));
    p.verify_signature(&q).unwrap();
    // A TD1.5 body declared with the TD1.0 size is refused, not misread.
    let mut bad = q.clone();
    bad[50..54].copy_from_slice(&(TD10_LEN as u32).to_le_bytes());
    assert!(ParsedQuote::parse(&bad).is_err());
}

#[test]
fn debug_td_with_a_valid_quote_signature_is_still_rejected() {
    // TD attributes are at body offset 120; bit 0 is DEBUG.
    let q = v4_edited(|body| body[120] |= 1);
    let r = report(q, None);
    assert!(ok(&r, "quote signature"));
    assert!(!ok(&r, "TD attributes"));
    assert!(
        detail(&r, "TD attributes").contains("debug"),
        "{}",
        detail(&r, "TD attributes")
    );
    assert!(!r.verified);

    let q = v5(3, |body| body[120 + 3] |= 0x20); // bit 29: migratable
    let r = report(q, None);
    assert!(ok(&r, "quote signature"));
    assert!(detail(&r, "TD attributes").contains("migratable"));
}

#[test]
fn tampered_mrtd_re_signed_fails_the_qe_binding_and_the_policy() {
    let orig = ParsedQuote::parse(&fixture("tdx/tdx_quote")).unwrap();
    let mrtd = hex::encode(orig.body.td().unwrap().mr_td);
    // MRTD is at body offset 136.
    let q = v4_edited(|body| body[136] ^= 0xff);
    let policy = format!("[measurements]\nmrtd = [\"{mrtd}\"]\n");
    let r = report(q, Some(&policy));
    assert!(ok(&r, "quote signature"));
    assert!(!ok(&r, "QE binds key"));
    assert!(!ok(&r, "DCAP (dcap-qvl)"));
    assert!(!ok(&r, "policy measurements"));
    assert!(
        detail(&r, "policy measurements").contains("synthetic.toml:2 (measurements.mrtd)"),
        "{}",
        detail(&r, "policy measurements")
    );
}
