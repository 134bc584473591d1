//! A synthetic PKI built in the test, verified through dcap-qvl with `QuoteVerifier::new(test_root)`
//! (the verifier's `root_ca_der` option) and through this crate's own reading.
//!
//! Everything Intel signs is re-signed here: a test root CA, a "PCK Platform CA", a PCK leaf, a TCB
//! signing certificate, both CRLs, the TCB info and the QE identity, the QE report and the quote. The
//! *structure* comes from the real v4 fixture so that it is realistic: the TD body, the QE report
//! fields, the PCK leaf's SGX extension (FMSPC, CPU SVN, PCE SVN…) and the TCB info / QE identity JSON
//! (re-signed unchanged, or with the statuses edited). That covers what no public sample has: v5
//! quotes with TD1.0 and TD1.5 bodies, a debug TD, a revoked PCK certificate, a revoked and an
//! out-of-date TCB level.
mod common;

use common::*;
use p256::ecdsa::{Signature, SigningKey, signature::Signer};
use p256::pkcs8::EncodePrivateKey;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SerialNumber,
};
use sealtune_verifier::dcap::{DcapError, TcbPolicy, verify_dcap};
use sealtune_verifier::quote::{Body, ParsedQuote, TD10_LEN};
use sealtune_verifier::verify::{
    QuoteDocument, VerificationReport, VerifyOptions, verify_document,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

const V4_SIGNED: usize = 48 + TD10_LEN;
const SGX_EXTENSION_OID: &[u64] = &[1, 2, 840, 113741, 1, 13, 1];

fn key(seed: u8) -> (SigningKey, KeyPair) {
    let sk = SigningKey::from_slice(&[seed; 32]).unwrap();
    let der = sk.to_pkcs8_der().unwrap();
    let kp = KeyPair::try_from(der.as_bytes()).unwrap();
    (sk, kp)
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    d.push(DnType::OrganizationName, "sealtune test PKI (not Intel)");
    d
}

fn ca_params(cn: &str, serial: u64) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = at(1_704_067_200); // 2024-01-01
    p.not_after = at(1_893_456_000); // 2030-01-01
    p.serial_number = Some(SerialNumber::from(serial));
    p
}

fn leaf_params(cn: &str, serial: u64) -> CertificateParams {
    let mut p = ca_params(cn, serial);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::ContentCommitment,
    ];
    p
}

const PCK_SERIAL: u64 = 0x5eed;

/// What to make different from a good platform.
#[derive(Default, Clone, Copy)]
struct Variant {
    revoke_pck: bool,
    /// Replace every `"tcbStatus":"UpToDate"` of the TCB info with this status.
    tcb_status: Option<&'static str>,
}

struct Pki {
    root_der: Vec<u8>,
    pck_key: SigningKey,
    pck_chain_pem: String,
    collateral: dcap_qvl::QuoteCollateralV3,
}

fn sgx_extension_of_the_fixture_pck() -> Vec<u8> {
    let q = ParsedQuote::parse(&fixture("tdx/tdx_quote")).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&q.cert_data).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&pem.contents).unwrap();
    cert.extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == "1.2.840.113741.1.13.1")
        .expect("the fixture's PCK leaf has the SGX extension")
        .value
        .to_vec()
}

fn pki(v: Variant) -> Pki {
    let (_, root_kp) = key(0x01);
    let root = ca_params("Test SGX Root CA", 1)
        .self_signed(&root_kp)
        .unwrap();
    let (_, pck_ca_kp) = key(0x02);
    let pck_ca = ca_params("Test SGX PCK Platform CA", 2)
        .signed_by(&pck_ca_kp, &root, &root_kp)
        .unwrap();
    let (pck_key, pck_kp) = key(0x03);
    let mut lp = leaf_params("Test SGX PCK Certificate", PCK_SERIAL);
    lp.custom_extensions.push(CustomExtension::from_oid_content(
        SGX_EXTENSION_OID,
        sgx_extension_of_the_fixture_pck(),
    ));
    let pck = lp.signed_by(&pck_kp, &pck_ca, &pck_ca_kp).unwrap();
    let (tcb_key, tcb_kp) = key(0x04);
    let tcb_cert = leaf_params("Test SGX TCB Signing", 4)
        .signed_by(&tcb_kp, &root, &root_kp)
        .unwrap();

    let crl = |revoked: Vec<RevokedCertParams>| CertificateRevocationListParams {
        this_update: at(1_748_736_000), // 2025-06-01
        next_update: at(1_751_328_000), // 2025-07-01
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let root_crl = crl(vec![]).signed_by(&root, &root_kp).unwrap();
    let revoked = if v.revoke_pck {
        vec![RevokedCertParams {
            serial_number: SerialNumber::from(PCK_SERIAL),
            revocation_time: at(1_748_736_000),
            reason_code: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity_date: None,
        }]
    } else {
        vec![]
    };
    let pck_crl = crl(revoked).signed_by(&pck_ca, &pck_ca_kp).unwrap();

    let real = collateral("tdx/tdx_quote_collateral.json");
    let mut tcb_info = real.tcb_info.clone();
    if let Some(s) = v.tcb_status {
        assert!(tcb_info.contains("\"tcbStatus\":\"UpToDate\""));
        tcb_info = tcb_info.replace(
            "\"tcbStatus\":\"UpToDate\"",
            &format!("\"tcbStatus\":\"{s}\""),
        );
    }
    let sign = |k: &SigningKey, m: &[u8]| -> Vec<u8> {
        let s: Signature = k.sign(m);
        s.to_bytes().to_vec()
    };
    let tcb_chain = format!("{}{}", tcb_cert.pem(), root.pem());
    let collateral = dcap_qvl::QuoteCollateralV3 {
        pck_crl_issuer_chain: format!("{}{}", pck_ca.pem(), root.pem()),
        root_ca_crl: root_crl.der().to_vec(),
        pck_crl: pck_crl.der().to_vec(),
        tcb_info_issuer_chain: tcb_chain.clone(),
        tcb_info_signature: sign(&tcb_key, tcb_info.as_bytes()),
        tcb_info,
        qe_identity_issuer_chain: tcb_chain,
        qe_identity_signature: sign(&tcb_key, real.qe_identity.as_bytes()),
        qe_identity: real.qe_identity,
        pck_certificate_chain: None,
    };
    Pki {
        root_der: root.der().to_vec(),
        pck_key,
        pck_chain_pem: format!("{}{}{}", pck.pem(), pck_ca.pem(), root.pem()),
        collateral,
    }
}

/// A quote over `signed` (header [+ v5 descriptor] + body): a fresh attestation key signs it, the QE
/// report (from the fixture) binds that key and is signed by the PCK key, the chain is the test PKI's.
fn quote(pki: &Pki, signed: Vec<u8>) -> Vec<u8> {
    let fx = ParsedQuote::parse(&fixture("tdx/tdx_quote")).unwrap();
    let att = SigningKey::from_slice(&[0x05; 32]).unwrap();
    let att_pub = att.verifying_key().to_sec1_point(false).as_bytes()[1..65].to_vec();
    let mut qe_report = fx.qe_report_raw.clone();
    let mut h = Sha256::new();
    h.update(&att_pub);
    h.update(&fx.qe_auth_data);
    qe_report[320..352].copy_from_slice(&h.finalize());
    qe_report[352..384].fill(0);
    let qe_sig: Signature = pki.pck_key.sign(&qe_report);

    let mut inner = qe_report;
    inner.extend_from_slice(&qe_sig.to_bytes());
    inner.extend_from_slice(&(fx.qe_auth_data.len() as u16).to_le_bytes());
    inner.extend_from_slice(&fx.qe_auth_data);
    inner.extend_from_slice(&5u16.to_le_bytes());
    inner.extend_from_slice(&(pki.pck_chain_pem.len() as u32).to_le_bytes());
    inner.extend_from_slice(pki.pck_chain_pem.as_bytes());

    let sig: Signature = att.sign(&signed);
    let mut sig_data = sig.to_bytes().to_vec();
    sig_data.extend_from_slice(&att_pub);
    sig_data.extend_from_slice(&6u16.to_le_bytes());
    sig_data.extend_from_slice(&(inner.len() as u32).to_le_bytes());
    sig_data.extend_from_slice(&inner);

    let mut q = signed;
    q.extend_from_slice(&(sig_data.len() as u32).to_le_bytes());
    q.extend_from_slice(&sig_data);
    q
}

fn v4_signed(edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut s = fixture("tdx/tdx_quote")[..V4_SIGNED].to_vec();
    edit(&mut s[48..]);
    s
}

/// v5 with body type 2 (TD1.0) or 3 (TD1.5: TEE_TCB_SVN_2 = TEE_TCB_SVN, no service TD).
fn v5_signed(body_type: u16) -> Vec<u8> {
    let v4 = fixture("tdx/tdx_quote");
    let mut s = v4[..48].to_vec();
    s[..2].copy_from_slice(&5u16.to_le_bytes());
    let mut body = v4[48..V4_SIGNED].to_vec();
    if body_type == 3 {
        let tee_tcb_svn = body[..16].to_vec();
        body.extend_from_slice(&tee_tcb_svn);
        body.extend_from_slice(&[0; 48]);
    }
    s.extend_from_slice(&body_type.to_le_bytes());
    s.extend_from_slice(&(body.len() as u32).to_le_bytes());
    s.extend_from_slice(&body);
    s
}

fn report(pki: &Pki, quote: Vec<u8>, tcb: TcbPolicy) -> VerificationReport {
    verify_document(
        &QuoteDocument {
            quote,
            ..Default::default()
        },
        &VerifyOptions {
            now: TDX_V4_AT,
            collateral: Some(pki.collateral.clone()),
            root_ca_der: Some(pki.root_der.clone()),
            tcb_policy: tcb,
            ..Default::default()
        },
    )
}

fn link<'a>(r: &'a VerificationReport, name: &str) -> &'a sealtune_verifier::verify::Link {
    r.link(name)
        .unwrap_or_else(|| panic!("no link {name}: {:#?}", r.links))
}

fn assert_quote_links_hold(r: &VerificationReport) {
    for name in [
        "quote parse",
        "quote signature",
        "QE binds key",
        "PCK leaf",
        "QE report signature",
        "TD attributes",
        "DCAP (dcap-qvl)",
        "cross-check",
    ] {
        assert!(link(r, name).ok, "{name}: {}", link(r, name).detail);
    }
}

#[test]
fn synthetic_v4_quote_verifies_under_the_test_root_and_nowhere_else() {
    let pki = pki(Variant::default());
    let q = quote(&pki, v4_signed(|_| {}));
    let out = verify_dcap(
        &q,
        &pki.collateral,
        TDX_V4_AT,
        &TcbPolicy::default(),
        Some(&pki.root_der),
    )
    .unwrap();
    assert_eq!(out.status, dcap_qvl::TcbStatus::UpToDate);
    assert_eq!(out.fmspc, "b0c06f000000");
    let r = report(&pki, q.clone(), TcbPolicy::default());
    assert_quote_links_hold(&r);
    assert!(link(&r, "PCK leaf").detail.contains("b0c06f000000"));
    // Under Intel's real root the same quote is rejected: the trust anchor is what makes it good.
    assert!(matches!(
        verify_dcap(&q, &pki.collateral, TDX_V4_AT, &TcbPolicy::default(), None),
        Err(DcapError::Verification(_))
    ));
}

#[test]
fn synthetic_v5_quotes_with_td10_and_td15_bodies_verify() {
    let pki = pki(Variant::default());
    for (body_type, shape) in [(2u16, "TD1.0"), (3, "TD1.5")] {
        let q = quote(&pki, v5_signed(body_type));
        let p = ParsedQuote::parse(&q).unwrap();
        assert_eq!(p.header.version, 5);
        assert_eq!(p.body.shape(), shape);
        if body_type == 3 {
            assert!(matches!(&p.body, Body::Td15(td) if td.mr_service_td == Some([0; 48])));
        }
        let r = report(&pki, q, TcbPolicy::default());
        assert_quote_links_hold(&r);
        assert!(link(&r, "quote parse").detail.contains(shape));
        assert!(link(&r, "DCAP (dcap-qvl)").detail.contains("UpToDate"));
    }
}

#[test]
fn synthetic_debug_td_is_rejected_by_both_readings() {
    let pki = pki(Variant::default());
    let q = quote(&pki, v4_signed(|body| body[120] |= 1)); // TD attribute bit 0: DEBUG
    let r = report(&pki, q, TcbPolicy::default());
    assert!(link(&r, "quote signature").ok);
    assert!(link(&r, "QE report signature").ok);
    let td = link(&r, "TD attributes");
    assert!(!td.ok && td.detail.contains("debug"), "{}", td.detail);
    let d = link(&r, "DCAP (dcap-qvl)");
    assert!(!d.ok, "dcap-qvl must reject a debug TD: {}", d.detail);
    assert!(!r.verified);
}

#[test]
fn synthetic_revoked_pck_certificate_is_rejected() {
    let pki = pki(Variant {
        revoke_pck: true,
        ..Default::default()
    });
    let r = report(&pki, quote(&pki, v4_signed(|_| {})), TcbPolicy::default());
    // The independent reading still sees a well-formed, correctly signed quote…
    assert!(link(&r, "quote signature").ok);
    assert!(link(&r, "QE report signature").ok);
    // …but the PCK certificate is on its CA's CRL.
    let d = link(&r, "DCAP (dcap-qvl)");
    assert!(!d.ok);
    assert!(
        d.detail.to_ascii_lowercase().contains("revoked"),
        "{}",
        d.detail
    );
    assert!(!r.verified);
}

#[test]
fn synthetic_revoked_and_out_of_date_tcb_levels_follow_the_policy() {
    let revoked = pki(Variant {
        tcb_status: Some("Revoked"),
        ..Default::default()
    });
    let q = quote(&revoked, v4_signed(|_| {}));
    let r = report(&revoked, q.clone(), TcbPolicy::default());
    let d = link(&r, "DCAP (dcap-qvl)");
    assert!(!d.ok && d.detail.contains("Revoked"), "{}", d.detail);
    // Even a lax policy never takes Revoked.
    let lax = TcbPolicy {
        allow_out_of_date: true,
        ..TcbPolicy::default()
    };
    assert!(!link(&report(&revoked, q, lax.clone()), "DCAP (dcap-qvl)").ok);

    let ood = pki(Variant {
        tcb_status: Some("OutOfDate"),
        ..Default::default()
    });
    let q = quote(&ood, v4_signed(|_| {}));
    let d = report(&ood, q.clone(), TcbPolicy::default());
    let l = link(&d, "DCAP (dcap-qvl)");
    assert!(!l.ok && l.detail.contains("OutOfDate"), "{}", l.detail);
    let l = report(&ood, q, lax);
    assert!(
        link(&l, "DCAP (dcap-qvl)").ok,
        "{}",
        link(&l, "DCAP (dcap-qvl)").detail
    );
}
