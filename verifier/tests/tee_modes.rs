//! Provider quotes are TDX: an SGX quote is refused unless an SGX enclave is asked for (`--sgx`,
//! issue 17 item 3); `--hardware-only` checks the hardware of a bare quote and says that no binding
//! was checked (issue 17 item 6).
mod common;

use clap::Parser;
use common::*;
use dcap_qvl::TcbStatus;
use sealtune_verifier::cli::{Cli, run};
use sealtune_verifier::dcap::TcbPolicy;
use sealtune_verifier::verify::{
    ExpectedTee, HARDWARE_ONLY_NOTE, QuoteDocument, VerificationReport, VerifyOptions,
    verify_document,
};

fn link<'a>(r: &'a VerificationReport, name: &str) -> &'a sealtune_verifier::verify::Link {
    r.link(name)
        .unwrap_or_else(|| panic!("no link {name} in {:#?}", r.links))
}

/// The SGX sample's status (ConfigurationAndSWHardeningNeeded) accepted, so that only the TEE type
/// decides.
fn sgx_opts(tee: ExpectedTee, hardware_only: bool) -> VerifyOptions {
    let mut tcb_policy = TcbPolicy::default();
    tcb_policy
        .accepted_statuses
        .push(TcbStatus::ConfigurationAndSWHardeningNeeded);
    VerifyOptions {
        now: SGX_AT,
        collateral: Some(collateral("tdx/sgx_quote_collateral.json")),
        tcb_policy,
        tee,
        hardware_only,
        ..Default::default()
    }
}

fn sgx_report(tee: ExpectedTee, hardware_only: bool) -> VerificationReport {
    let doc = QuoteDocument::from_bytes(&fixture("tdx/sgx_quote")).unwrap();
    verify_document(&doc, &sgx_opts(tee, hardware_only))
}

fn cli(args: &[&str]) -> (i32, String) {
    let cli = Cli::try_parse_from(args).unwrap();
    let mut out = Vec::new();
    let code = run(&cli, 0, &mut out).unwrap();
    (code, String::from_utf8(out).unwrap())
}

fn path(rel: &str) -> String {
    let _ = fixture(rel);
    fixtures_dir().join(rel).display().to_string()
}

#[test]
fn sgx_quote_is_refused_as_a_providers_quote() {
    // Even as a hardware-only check, whose other links all hold.
    for hardware_only in [false, true] {
        let r = sgx_report(ExpectedTee::ProviderTdx, hardware_only);
        let l = link(&r, "TEE type");
        assert!(!l.ok);
        assert!(
            l.detail
                .starts_with("SGX quote (tee_type 0x0) refused: a provider's quote must be TDX"),
            "{}",
            l.detail
        );
        assert!(
            l.detail.contains("sealtune-verify quote --sgx"),
            "{}",
            l.detail
        );
        assert!(
            link(&r, "DCAP (dcap-qvl)").ok,
            "{}",
            link(&r, "DCAP (dcap-qvl)").detail
        );
        assert!(!r.verified);
    }
}

#[test]
fn sgx_enclave_is_checked_when_asked_for_explicitly() {
    let r = sgx_report(ExpectedTee::SgxEnclave, true);
    let l = link(&r, "TEE type");
    assert!(l.ok, "{}", l.detail);
    assert!(l.detail.contains("SGX enclave"), "{}", l.detail);
    assert!(r.verified, "{}", r.render_human());
    // Without --hardware-only the binding is still required (the sample binds no signer).
    let r = sgx_report(ExpectedTee::SgxEnclave, false);
    assert!(link(&r, "TEE type").ok);
    assert!(!link(&r, "signer binding").ok);
}

#[test]
fn tdx_quote_is_refused_where_an_sgx_enclave_is_asked_for() {
    let doc = QuoteDocument::from_bytes(&fixture("tdx/tdx_quote")).unwrap();
    let r = verify_document(
        &doc,
        &VerifyOptions {
            now: TDX_V4_AT,
            collateral: Some(collateral("tdx/tdx_quote_collateral.json")),
            tee: ExpectedTee::SgxEnclave,
            hardware_only: true,
            ..Default::default()
        },
    );
    let l = link(&r, "TEE type");
    assert!(
        !l.ok && l.detail.contains("--sgx expects an SGX enclave's quote"),
        "{}",
        l.detail
    );
    assert!(!r.verified);
}

#[test]
fn sgx_quote_on_the_command_line_fails_the_tee_type_link() {
    let (code, out) = cli(&[
        "sealtune-verify",
        "quote",
        "--file",
        &path("tdx/sgx_quote"),
        "--collateral",
        &path("tdx/sgx_quote_collateral.json"),
        "--at",
        &SGX_AT.to_string(),
    ]);
    assert_eq!(code, 1);
    assert!(out.contains("✗ TEE type"), "{out}");
    assert!(
        out.contains("refused: a provider's quote must be TDX"),
        "{out}"
    );
}

#[test]
fn hardware_only_exits_0_on_a_real_quote_and_says_no_binding_was_checked() {
    let args = |json: bool| {
        let mut a = vec![
            "sealtune-verify".to_owned(),
            "quote".into(),
            "--file".into(),
            path("tdx/tdx_quote"),
            "--collateral".into(),
            path("tdx/tdx_quote_collateral.json"),
            "--at".into(),
            TDX_V4_AT.to_string(),
            "--hardware-only".into(),
        ];
        if json {
            a.push("--json".into());
        }
        a
    };
    let text: Vec<String> = args(false);
    let (code, out) = cli(&text.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}");
    for held in [
        "✓ quote signature",
        "✓ TEE type",
        "✓ PCK leaf",
        "✓ TD attributes",
        "✓ DCAP (dcap-qvl)",
        "✓ cross-check",
    ] {
        assert!(out.contains(held), "{held}: {out}");
    }
    assert!(out.contains(HARDWARE_ONLY_NOTE), "{out}");
    assert!(
        out.contains("VERIFIED (hardware only): the Intel chain, TCB, QE identity and TD attributes hold; no binding was checked"),
        "{out}"
    );
    // No binding link was run.
    for absent in [
        "signer binding",
        "JSON report_data",
        "event log",
        "compose hash",
    ] {
        assert!(
            !out.lines()
                .any(|l| l.get(4..).is_some_and(|rest| rest.starts_with(absent))),
            "{absent}: {out}"
        );
    }

    let json: Vec<String> = args(true);
    let (code, out) = cli(&json.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["hardware_only"], true);
}

#[test]
fn hardware_only_fails_on_a_tampered_quote() {
    let mut quote = fixture("tdx/tdx_quote");
    quote[48 + 136] ^= 1; // a byte of MRTD, inside the signed body
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("tampered");
    std::fs::write(&f, &quote).unwrap();
    let (code, out) = cli(&[
        "sealtune-verify",
        "quote",
        "--file",
        &f.display().to_string(),
        "--collateral",
        &path("tdx/tdx_quote_collateral.json"),
        "--at",
        &TDX_V4_AT.to_string(),
        "--hardware-only",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("✗ quote signature"), "{out}");
    assert!(out.contains("✗ DCAP (dcap-qvl)"), "{out}");
    assert!(out.contains("NOT VERIFIED"), "{out}");
}

#[test]
fn hardware_only_refuses_binding_arguments() {
    let err = Cli::try_parse_from([
        "sealtune-verify",
        "quote",
        "--file",
        "q",
        "--hardware-only",
        "--signer",
        "0x0000000000000000000000000000000000000001",
    ])
    .unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
}
