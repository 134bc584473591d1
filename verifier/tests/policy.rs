//! The TOML policy on the real fixtures: each failure names the policy line that rejected it.
mod common;

use common::*;
use sealtune_verifier::policy::{Policy, PolicyError, compose_images};
use sealtune_verifier::quote::ParsedQuote;
use sealtune_verifier::verify::{
    QuoteDocument, VerificationReport, VerifyOptions, verify_document,
};
use sha2::{Digest, Sha256};

fn link<'a>(r: &'a VerificationReport, name: &str) -> &'a sealtune_verifier::verify::Link {
    r.link(name)
        .unwrap_or_else(|| panic!("no link {name} in {:#?}", r.links))
}

fn v4_td() -> sealtune_verifier::quote::TdReport {
    ParsedQuote::parse(&fixture("tdx/tdx_quote"))
        .unwrap()
        .body
        .td()
        .unwrap()
        .clone()
}

fn v4_report(policy: &str) -> VerificationReport {
    let doc = QuoteDocument::from_bytes(&fixture("tdx/tdx_quote")).unwrap();
    verify_document(
        &doc,
        &VerifyOptions {
            now: TDX_V4_AT,
            collateral: Some(collateral("tdx/tdx_quote_collateral.json")),
            policy: Some(Policy::from_toml("p.toml", policy).unwrap()),
            ..Default::default()
        },
    )
}

#[test]
fn matching_measurements_hold() {
    let td = v4_td();
    let p = format!(
        "[measurements]\nmrtd = [\"{}\"]\nrtmr0 = [\"{}\", \"{}\"]\nrtmr1 = [\"0x{}\"]\nrtmr2 = [\"{}\"]\n",
        hex::encode(td.mr_td),
        hex::encode([0u8; 48]),
        hex::encode(td.rtmr[0]),
        hex::encode(td.rtmr[1]),
        hex::encode(td.rtmr[2]),
    );
    let r = v4_report(&p);
    let l = link(&r, "policy measurements");
    assert!(l.ok, "{}", l.detail);
    assert!(
        l.detail.contains("MRTD, RTMR0, RTMR1, RTMR2"),
        "{}",
        l.detail
    );
}

#[test]
fn a_wrong_rtmr_names_its_policy_line() {
    let td = v4_td();
    let p = format!(
        "# expected measurements\n[measurements]\nmrtd = [\"{}\"]\n\nrtmr1 = [\"{}\"]\n",
        hex::encode(td.mr_td),
        hex::encode([0xaa; 48]),
    );
    let r = v4_report(&p);
    let l = link(&r, "policy measurements");
    assert!(!l.ok);
    assert!(l.detail.contains("RTMR1"), "{}", l.detail);
    assert!(
        l.detail.contains("p.toml:5 (measurements.rtmr1)"),
        "{}",
        l.detail
    );
    assert!(!r.verified);
}

#[test]
fn a_tcb_status_outside_the_policy_names_its_line() {
    let r = v4_report("[tcb]\naccepted_statuses = [\"SWHardeningNeeded\"]\n");
    let l = link(&r, "DCAP (dcap-qvl)");
    assert!(!l.ok);
    assert!(l.detail.contains("UpToDate"), "{}", l.detail);
    assert!(
        l.detail.contains("p.toml:2 (tcb.accepted_statuses)"),
        "{}",
        l.detail
    );
}

#[test]
fn strict_platform_in_the_policy_names_its_line() {
    let r = v4_report("[tcb]\nallow_smt = true\nallow_dynamic_platform = false\n");
    let l = link(&r, "DCAP (dcap-qvl)");
    assert!(!l.ok);
    assert!(
        l.detail.contains("p.toml:3 (tcb.allow_dynamic_platform)"),
        "{}",
        l.detail
    );
}

#[test]
fn advisories_outside_the_allow_list_fail() {
    let doc = QuoteDocument::from_bytes(&fixture("tdx/sgx_quote")).unwrap();
    let run = |policy: &str| {
        verify_document(
            &doc,
            &VerifyOptions {
                now: SGX_AT,
                collateral: Some(collateral("tdx/sgx_quote_collateral.json")),
                policy: Some(Policy::from_toml("sgx.toml", policy).unwrap()),
                ..Default::default()
            },
        )
    };
    let base = "[tcb]\naccepted_statuses = [\"UpToDate\", \"ConfigurationAndSWHardeningNeeded\"]\n";
    let r = run(&format!(
        "{base}allowed_advisories = [\"INTEL-SA-00615\"]\n"
    ));
    assert!(
        link(&r, "DCAP (dcap-qvl)").ok,
        "{}",
        link(&r, "DCAP (dcap-qvl)").detail
    );
    let l = link(&r, "policy advisories");
    assert!(!l.ok);
    assert!(l.detail.contains("INTEL-SA-00289"), "{}", l.detail);
    assert!(
        l.detail.contains("sgx.toml:3 (tcb.allowed_advisories)"),
        "{}",
        l.detail
    );

    let r = run(&format!(
        "{base}allowed_advisories = [\"INTEL-SA-00615\", \"INTEL-SA-00289\"]\n"
    ));
    assert!(link(&r, "policy advisories").ok);

    let r = run(&format!(
        "{base}rejected_advisories = [\"INTEL-SA-00289\"]\n"
    ));
    let l = link(&r, "DCAP (dcap-qvl)");
    assert!(!l.ok);
    assert!(
        l.detail.contains("sgx.toml:3 (tcb.rejected_advisories)"),
        "{}",
        l.detail
    );

    // Measurements of a TD cannot hold for an SGX quote.
    let r = run(&format!(
        "{base}[measurements]\nmrtd = [\"{}\"]\n",
        hex::encode([0u8; 48])
    ));
    assert!(!link(&r, "policy measurements").ok);
}

#[test]
fn compose_hash_and_images_are_checked_against_the_app_compose() {
    let compose = serde_json::json!({
        "manifest_version": 2,
        "name": "sealtune-worker",
        "docker_compose_file": "services:\n  worker:\n    image: ghcr.io/sealtune/worker@sha256:aa\n  sidecar:\n    image: \"docker.io/library/nginx:1.27\"\n",
    })
    .to_string();
    assert_eq!(
        compose_images(&compose),
        vec![
            "docker.io/library/nginx:1.27".to_owned(),
            "ghcr.io/sealtune/worker@sha256:aa".to_owned()
        ]
    );
    let hash = hex::encode(Sha256::digest(compose.as_bytes()));
    let mut v = dstack_report();
    v["tcb_info"] = serde_json::json!({ "app_compose": compose })
        .to_string()
        .into();
    let doc = QuoteDocument::from_bytes(v.to_string().as_bytes()).unwrap();
    let run = |policy: &str| {
        verify_document(
            &doc,
            &VerifyOptions {
                policy: Some(Policy::from_toml("app.toml", policy).unwrap()),
                ..Default::default()
            },
        )
    };
    let ok = run(&format!(
        "[app]\ncompose_hashes = [\"{hash}\"]\nimages = [\"ghcr.io/sealtune/worker@sha256:aa\", \"docker.io/library/nginx:1.27\"]\napp_events = [\"LIUM_MINER_HOTKEY\"]\npins = [\"worker@sha256:aa\"]\n"
    ));
    let l = link(&ok, "policy app");
    assert!(l.ok, "{}", l.detail);
    // The policy's app_events let the fixture's application event through.
    assert!(
        link(&ok, "event log").ok,
        "{}",
        link(&ok, "event log").detail
    );

    let bad = run(&format!(
        "[app]\ncompose_hashes = [\"{}\"]\nimages = [\"ghcr.io/sealtune/worker@sha256:aa\"]\n",
        hex::encode([1u8; 32])
    ));
    let l = link(&bad, "policy app");
    assert!(!l.ok);
    assert!(
        l.detail.contains("app.toml:2 (app.compose_hashes)"),
        "{}",
        l.detail
    );
    assert!(l.detail.contains("nginx"), "{}", l.detail);
    assert!(l.detail.contains("app.toml:3 (app.images)"), "{}", l.detail);
    // A training-script hash the compose does not pin.
    let pin = run("[app]\n\npins = [\"SEALTUNE_SCRIPT_SHA256=0123\"]\n");
    let l = link(&pin, "policy app");
    assert!(!l.ok);
    assert!(
        l.detail.contains("SEALTUNE_SCRIPT_SHA256=0123"),
        "{}",
        l.detail
    );
    assert!(l.detail.contains("app.toml:3 (app.pins)"), "{}", l.detail);
    // Without the app event allowed, the event log link fails.
    assert!(!link(&bad, "event log").ok);
}

#[test]
fn bad_policy_files_are_refused_with_their_line() {
    let e = Policy::from_toml("p.toml", "[tcb]\nallow_debug = true\n").unwrap_err();
    assert!(
        matches!(
            &e,
            PolicyError::Value {
                line: 2,
                key: "tcb.allow_debug",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("never trusted"), "{e}");
    let e = Policy::from_toml("p.toml", "[tcb]\naccepted_statuses = [\"Revoked\"]\n").unwrap_err();
    assert!(e.to_string().contains("p.toml:2"), "{e}");
    let e = Policy::from_toml("p.toml", "[tcb]\naccepted_statuses = [\"Fine\"]\n").unwrap_err();
    assert!(e.to_string().contains("unknown TCB status"), "{e}");
    let e = Policy::from_toml("p.toml", "\n[measurements]\nmrtd = [\"abcd\"]\n").unwrap_err();
    assert!(
        e.to_string().contains("p.toml:3 (measurements.mrtd)"),
        "{e}"
    );
    // A typo is an error, never a silently weaker policy.
    let e = Policy::from_toml("p.toml", "[measurements]\nmrtdd = []\n").unwrap_err();
    assert!(matches!(e, PolicyError::Toml { .. }), "{e}");
    assert!(e.to_string().contains("mrtdd"), "{e}");
    let e = Policy::from_toml("p.toml", "[tcb\n").unwrap_err();
    assert!(matches!(e, PolicyError::Toml { .. }), "{e}");
}

#[test]
fn policy_flag_on_the_command_line() {
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("policy.toml");
    std::fs::write(&p, "[measurements]\nmrtd = [\"00\"]\n").unwrap();
    let q = fixtures_dir().join("tdx/tdx_quote").display().to_string();
    let cli = sealtune_verifier::cli::Cli::try_parse_from([
        "sealtune-verify",
        "quote",
        "--file",
        &q,
        "--policy",
        &p.display().to_string(),
    ])
    .unwrap();
    let err = sealtune_verifier::cli::run(&cli, TDX_V4_AT, &mut Vec::new()).unwrap_err();
    assert!(
        err.to_string()
            .contains("policy.toml:2 (measurements.mrtd)"),
        "{err}"
    );
}
