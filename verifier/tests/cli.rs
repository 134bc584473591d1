//! The command line, driven through the library (`main.rs` only forwards to `cli::run`).
mod common;

use clap::Parser;
use common::*;
use sealtune_verifier::cli::{Cli, run};

fn run_args(args: &[&str]) -> (i32, String) {
    let cli = Cli::try_parse_from(args).unwrap();
    let mut out = Vec::new();
    let code = run(&cli, 0, &mut out).unwrap();
    (code, String::from_utf8(out).unwrap())
}

fn path(rel: &str) -> String {
    let p = fixtures_dir().join(rel);
    let _ = fixture(rel); // fails with the "where to put it" message when missing
    p.display().to_string()
}

#[test]
fn quote_command_reports_each_link_and_fails_without_event_log() {
    let (code, out) = run_args(&[
        "sealtune-verify",
        "quote",
        "--file",
        &path("tdx/tdx_quote"),
        "--collateral",
        &path("tdx/tdx_quote_collateral.json"),
        "--at",
        "2025-06-19T11:32:27Z",
        "--offline",
    ]);
    assert!(out.contains("✓ DCAP (dcap-qvl)"), "{out}");
    assert!(out.contains("UpToDate"), "{out}");
    assert!(out.contains("✓ cross-check"), "{out}");
    assert!(out.contains("✗ event log"), "{out}");
    assert_eq!(code, 1);
}

#[test]
fn quote_command_json_output_is_machine_readable() {
    let (code, out) = run_args(&[
        "sealtune-verify",
        "quote",
        "--file",
        &path("tdx/tdx_quote"),
        "--collateral",
        &path("tdx/tdx_quote_collateral.json"),
        "--at",
        "1750332747",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verified"], false);
    assert_eq!(v["dcap"]["status"], "UpToDate");
    assert_eq!(v["pck"]["fmspc"], "b0c06f000000");
    assert_eq!(code, 1);
}

#[test]
fn expired_collateral_fails_the_dcap_link() {
    let (code, out) = run_args(&[
        "sealtune-verify",
        "quote",
        "--file",
        &path("tdx/tdx_quote"),
        "--collateral",
        &path("tdx/tdx_quote_collateral.json"),
        "--at",
        "1800000000",
    ]);
    assert!(out.contains("✗ DCAP (dcap-qvl)"), "{out}");
    assert_eq!(code, 1);
}

/// A dev answer as the worker's dev source serves it (signer bound in the ASCII layout).
fn dev_answer(dir: &std::path::Path, app_compose: &str) -> String {
    use base64::Engine;
    let signer = alloy::primitives::Address::repeat_byte(0x11);
    let (event_log, tcb_info) = sealtune_e2e::provider_fixture::dev_attestation_fields(
        app_compose,
        signer,
        alloy::primitives::B256::repeat_byte(0xc0),
    );
    let rd = sealtune_verifier::report_data::ascii_report_data(&signer.0.0);
    let answer = serde_json::json!({
        "dev": true,
        "quote": "",
        "report_data": base64::engine::general_purpose::STANDARD.encode(rd),
        "event_log": event_log,
        "tcb_info": tcb_info,
    });
    let f = dir.join(format!("dev-{}.json", app_compose.len()));
    std::fs::write(&f, answer.to_string()).unwrap();
    f.display().to_string()
}

#[test]
fn dev_quote_is_rejected_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dev_answer(
        dir.path(),
        sealtune_e2e::provider_fixture::FIXTURE_APP_COMPOSE,
    );
    let (code, out) = run_args(&["sealtune-verify", "quote", "--file", &file]);
    assert!(out.contains("✗ dev attestation"), "{out}");
    assert_eq!(code, 1);
    let (code, out) = run_args(&[
        "sealtune-verify",
        "quote",
        "--file",
        &file,
        "--allow-dev-quote",
    ]);
    assert!(out.contains("✓ dev attestation"), "{out}");
    // The dev answer runs the chain: binding, event log, compose and config hashes.
    for link in [
        "✓ signer binding",
        "✓ event log",
        "✓ compose hash",
        "✓ config hash",
    ] {
        assert!(out.contains(link), "{link}: {out}");
    }
    assert!(out.contains("UNPINNED: no policy"), "{out}");
    assert_eq!(code, 0);
}

#[test]
fn dev_answer_without_its_evidence_fails_the_event_log_link() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("dev.json");
    std::fs::write(&f, r#"{"dev": true, "report_data": ""}"#).unwrap();
    let file = f.display().to_string();
    let (code, out) = run_args(&[
        "sealtune-verify",
        "quote",
        "--file",
        &file,
        "--allow-dev-quote",
    ]);
    assert!(out.contains("✗ signer binding"), "{out}");
    assert!(
        out.contains("✗ event log") && out.contains("no event log"),
        "{out}"
    );
    assert_eq!(code, 1);
}

#[test]
fn the_dev_policy_pins_the_dev_answers_compose_hash_and_only_dev_answers() {
    let dir = tempfile::tempdir().unwrap();
    let published = sealtune_e2e::provider_fixture::FIXTURE_APP_COMPOSE;
    let run_with_policy = |file: &str, policy: &str| {
        run_args(&[
            "sealtune-verify",
            "quote",
            "--file",
            file,
            "--allow-dev-quote",
            "--policy",
            policy,
        ])
    };
    let good = dev_answer(dir.path(), published);
    let (code, out) = run_with_policy(&good, "dev");
    assert!(
        out.contains("✓ policy ") && out.contains("✓ policy app"),
        "{out}"
    );
    assert!(out.contains("UNPINNED config hash (recorded: 0x"), "{out}");
    assert_eq!(code, 0, "{out}");

    // Another compose than the published one: the policy app link names its pin.
    let evil = published.replace("sealtune/sealtune-worker@sha256:", "evil/worker@sha256:");
    assert_ne!(
        evil, published,
        "the published compose names the image by digest"
    );
    let other = dev_answer(dir.path(), &evil);
    let (code, out) = run_with_policy(&other, "dev");
    assert!(
        out.contains("✗ policy app")
            && out.contains("deploy/policy-dev.toml")
            && out.contains("(app.compose_hashes)"),
        "{out}"
    );
    assert_eq!(code, 1);

    // The release policy is for TDX quotes: refused for a dev answer, naming the policy link.
    let (code, out) = run_with_policy(&good, "release");
    assert!(
        out.contains("✗ policy ") && out.contains("is for TDX quotes"),
        "{out}"
    );
    assert_eq!(code, 1);
}

#[test]
fn the_dev_policy_is_refused_for_a_hardware_quote() {
    let (code, out) = run_args(&[
        "sealtune-verify",
        "quote",
        "--file",
        &path("tdx/tdx_quote"),
        "--collateral",
        &path("tdx/tdx_quote_collateral.json"),
        "--at",
        "1750332747",
        "--policy",
        "dev",
    ]);
    assert!(
        out.contains("✗ policy ") && out.contains("is a dev policy"),
        "{out}"
    );
    assert_eq!(code, 1);
}
