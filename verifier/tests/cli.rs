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

#[test]
fn dev_quote_is_rejected_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("dev.json");
    std::fs::write(&f, r#"{"dev": true, "report_data": ""}"#).unwrap();
    let file = f.display().to_string();
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
    assert_eq!(code, 0);
}
