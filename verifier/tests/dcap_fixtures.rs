//! DCAP verification and the independent reading on the real dcap-qvl samples.
mod common;

use common::*;
use dcap_qvl::TcbStatus;
use sealtune_verifier::dcap::{DcapError, TcbPolicy, verify_dcap};
use sealtune_verifier::quote::{Body, ParsedQuote, SignatureError};
use sealtune_verifier::verify::{QuoteDocument, VerifyOptions, verify_document};

fn link<'a>(
    report: &'a sealtune_verifier::verify::VerificationReport,
    name: &str,
) -> &'a sealtune_verifier::verify::Link {
    report
        .links
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no link {name} in {:#?}", report.links))
}

fn v4_opts(now: u64) -> VerifyOptions {
    VerifyOptions {
        now,
        collateral: Some(collateral("tdx/tdx_quote_collateral.json")),
        ..Default::default()
    }
}

#[test]
fn v4_tdx_quote_is_up_to_date_at_1750332747() {
    let quote = fixture("tdx/tdx_quote");
    let c = collateral("tdx/tdx_quote_collateral.json");
    let out = verify_dcap(&quote, &c, TDX_V4_AT, &TcbPolicy::default(), None).unwrap();
    assert_eq!(out.status, TcbStatus::UpToDate);
    assert!(out.advisory_ids.is_empty());
    assert_eq!(out.fmspc, "b0c06f000000");
}

#[test]
fn v4_tdx_quote_links_all_hold_up_to_the_missing_event_log() {
    let doc = QuoteDocument::from_bytes(&fixture("tdx/tdx_quote")).unwrap();
    let report = verify_document(&doc, &v4_opts(TDX_V4_AT));
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
        assert!(
            link(&report, name).ok,
            "{name}: {}",
            link(&report, name).detail
        );
    }
    // A bare quote has no event log: RTMRs cannot be replayed, so the whole is not verified.
    assert!(!link(&report, "event log").ok);
    assert!(!report.verified);
    let pck = report.pck.as_ref().unwrap();
    assert_eq!(pck.fmspc, "b0c06f000000");
    assert_eq!(pck.chain.len(), 3);
}

#[test]
fn strict_platform_policy_rejects_the_cloud_sample() {
    let quote = fixture("tdx/tdx_quote");
    let c = collateral("tdx/tdx_quote_collateral.json");
    let strict = TcbPolicy {
        allow_dynamic_platform: false,
        allow_cached_keys: false,
        allow_smt: false,
        ..TcbPolicy::default()
    };
    let err = verify_dcap(&quote, &c, TDX_V4_AT, &strict, None).unwrap_err();
    assert!(matches!(err, DcapError::Policy { .. }), "{err}");
}

#[test]
fn v5_outdated_quote_is_rejected_with_no_matching_tcb_level() {
    let quote = fixture("tdx/tdx_quote_outdated");
    let parsed = ParsedQuote::parse(&quote).unwrap();
    assert_eq!(parsed.header.version, 5);
    assert!(matches!(parsed.body, Body::Td15(_)));
    parsed.verify_signature(&quote).unwrap();
    let c = collateral("tdx/tdx_quote_outdated_collateral.json");
    let allow_all = TcbPolicy {
        allow_out_of_date: true,
        ..TcbPolicy::default()
    };
    // One hour after the TCB info's issueDate (2026-02-18T10:58:51Z): inside the collateral
    // window, so the failure is the TCB match, not the time.
    let err = verify_dcap(&quote, &c, TDX_V5_OUTDATED_AT, &allow_all, None).unwrap_err();
    assert!(
        matches!(&err, DcapError::Verification(m) if m.contains("No matching TCB level")),
        "{err}"
    );
}

#[test]
fn sgx_quote_status_at_1750334171_is_configuration_and_sw_hardening_needed() {
    let quote = fixture("tdx/sgx_quote");
    let c = collateral("tdx/sgx_quote_collateral.json");
    // Default policy: not acceptable, but the status is reported.
    match verify_dcap(&quote, &c, SGX_AT, &TcbPolicy::default(), None) {
        Err(DcapError::Policy { status, .. }) => {
            assert_eq!(status, "ConfigurationAndSWHardeningNeeded")
        }
        other => panic!("expected a policy rejection, got {other:?}"),
    }
    let accepting = TcbPolicy {
        accepted_statuses: vec![TcbStatus::ConfigurationAndSWHardeningNeeded],
        ..TcbPolicy::default()
    };
    let out = verify_dcap(&quote, &c, SGX_AT, &accepting, None).unwrap();
    assert_eq!(out.status, TcbStatus::ConfigurationAndSWHardeningNeeded);
    let mut adv = out.advisory_ids.clone();
    adv.sort();
    assert_eq!(adv, ["INTEL-SA-00289", "INTEL-SA-00615"]);
}

#[test]
fn sgx_quote_reading_agrees_with_dcap_qvl() {
    let doc = QuoteDocument::from_bytes(&fixture("tdx/sgx_quote")).unwrap();
    let opts = VerifyOptions {
        now: SGX_AT,
        collateral: Some(collateral("tdx/sgx_quote_collateral.json")),
        tcb_policy: TcbPolicy {
            accepted_statuses: vec![TcbStatus::ConfigurationAndSWHardeningNeeded],
            ..TcbPolicy::default()
        },
        ..Default::default()
    };
    let report = verify_document(&doc, &opts);
    assert!(link(&report, "quote signature").ok);
    assert!(
        link(&report, "cross-check").ok,
        "{}",
        link(&report, "cross-check").detail
    );
    let q = report.quote.as_ref().unwrap();
    assert_eq!(q.header.version, 3);
    assert!(q.body.report_data().starts_with(b"Hello, world!"));
}

#[test]
fn quote_with_flipped_signed_region_byte_is_rejected() {
    let mut quote = fixture("tdx/tdx_quote");
    quote[200] ^= 0x01; // inside MRTD
    let parsed = ParsedQuote::parse(&quote).unwrap();
    assert_eq!(
        parsed.verify_signature(&quote),
        Err(SignatureError::Invalid)
    );
    let c = collateral("tdx/tdx_quote_collateral.json");
    assert!(verify_dcap(&quote, &c, TDX_V4_AT, &TcbPolicy::default(), None).is_err());
    let report = verify_document(
        &QuoteDocument {
            quote,
            ..Default::default()
        },
        &v4_opts(TDX_V4_AT),
    );
    assert!(!link(&report, "quote signature").ok);
    assert!(!link(&report, "DCAP (dcap-qvl)").ok);
}

#[test]
fn quote_with_flipped_signature_byte_is_rejected() {
    let mut quote = fixture("tdx/tdx_quote");
    let sig_at = ParsedQuote::parse(&quote).unwrap().signed_len + 4;
    quote[sig_at + 10] ^= 0x80;
    let parsed = ParsedQuote::parse(&quote).unwrap();
    assert!(parsed.verify_signature(&quote).is_err());
    let c = collateral("tdx/tdx_quote_collateral.json");
    assert!(verify_dcap(&quote, &c, TDX_V4_AT, &TcbPolicy::default(), None).is_err());
}

#[test]
fn quote_with_flipped_certificate_chain_byte_is_rejected() {
    let mut quote = fixture("tdx/tdx_quote");
    // A base64 character in the middle of the PCK leaf's body.
    let begin = quote
        .windows(27)
        .position(|w| w == b"-----BEGIN CERTIFICATE-----")
        .unwrap();
    let at = begin + 27 + 400;
    quote[at] = if quote[at] == b'A' { b'B' } else { b'A' };
    let c = collateral("tdx/tdx_quote_collateral.json");
    assert!(verify_dcap(&quote, &c, TDX_V4_AT, &TcbPolicy::default(), None).is_err());
    let report = verify_document(
        &QuoteDocument {
            quote,
            ..Default::default()
        },
        &v4_opts(TDX_V4_AT),
    );
    assert!(!report.verified);
    assert!(!link(&report, "DCAP (dcap-qvl)").ok);
}

#[test]
fn collateral_used_after_it_expired_is_rejected() {
    let quote = fixture("tdx/tdx_quote");
    let c = collateral("tdx/tdx_quote_collateral.json");
    let err = verify_dcap(&quote, &c, TDX_V4_EXPIRES + 1, &TcbPolicy::default(), None).unwrap_err();
    assert!(matches!(err, DcapError::Verification(_)), "{err}");
}

#[test]
fn collateral_used_before_it_was_issued_is_rejected() {
    let quote = fixture("tdx/tdx_quote");
    let c = collateral("tdx/tdx_quote_collateral.json");
    assert!(
        verify_dcap(
            &quote,
            &c,
            1_750_329_147 - 3600,
            &TcbPolicy::default(),
            None
        )
        .is_err()
    );
}

#[test]
fn debug_td_is_rejected_by_the_independent_reading() {
    let mut quote = fixture("tdx/tdx_quote");
    quote[48 + 120] |= 0x01; // TD attributes, DEBUG bit
    let report = verify_document(
        &QuoteDocument {
            quote,
            ..Default::default()
        },
        &v4_opts(TDX_V4_AT),
    );
    assert!(!link(&report, "TD attributes").ok);
    assert!(!report.verified);
}

#[test]
fn v4_quote_fields_sit_at_the_protocol_offsets() {
    let quote = fixture("tdx/tdx_quote");
    let parsed = ParsedQuote::parse(&quote).unwrap();
    let td = parsed.body.td().unwrap();
    assert_eq!(&td.mr_td[..], &quote[184..232]);
    assert_eq!(&td.rtmr[0][..], &quote[376..424]);
    assert_eq!(&td.rtmr[3][..], &quote[520..568]);
    assert_eq!(&td.report_data[..], &quote[568..632]);
    assert_eq!(parsed.signed_len, 632);
}
