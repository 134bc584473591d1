//! The policies shipped with the release (`deploy/policy.toml`, `deploy/policy-dev.toml`): generated
//! from the published `deploy/app-compose.json` and current; what they pin and leave UNPINNED; a
//! check without any policy; the report's link order.
mod common;

use base64::Engine;
use common::*;
use sealtune_e2e::provider_fixture::{FIXTURE_APP_COMPOSE, dev_attestation_fields};
use sealtune_verifier::policy::shipped::{self, FromCompose, from_compose};
use sealtune_verifier::policy::{Pinnable, Policy, PolicyAttestation};
use sealtune_verifier::report_data::BindingExpectations;
use sealtune_verifier::verify::{
    LINK_ORDER, QuoteDocument, VerificationReport, VerifyOptions, verify_document,
};
use sha2::Digest;

fn compose() -> Vec<u8> {
    std::fs::read(sealtune_e2e::repo_root().join(shipped::COMPOSE_PATH)).unwrap()
}

#[test]
fn shipped_policies_are_current() {
    for (dev, shipped_text, file) in [
        (false, shipped::RELEASE, "deploy/policy.toml"),
        (true, shipped::DEV, "deploy/policy-dev.toml"),
    ] {
        let generated = from_compose(&FromCompose {
            compose_path: shipped::COMPOSE_PATH,
            compose: &compose(),
            dev,
            config_hashes: Vec::new(),
        })
        .unwrap();
        assert_eq!(
            generated,
            shipped_text,
            "{file} is stale: run `sealtune-verify policy from-compose deploy/app-compose.json{} --output {file}`",
            if dev { " --dev" } else { "" }
        );
    }
}

#[test]
fn the_release_policy_pins_the_published_compose_and_names_what_it_leaves_open() {
    let p = shipped::release().unwrap();
    let hash: [u8; 32] = sha2::Sha256::digest(compose()).into();
    assert_eq!(p.compose_hashes.as_ref().unwrap().value, vec![hash]);
    assert_eq!(p.kind(), PolicyAttestation::Tdx);
    assert!(p.require_config_hash.as_ref().unwrap().value);
    assert_eq!(
        p.required_events.as_ref().unwrap().value,
        vec!["os-image-hash".to_owned(), "key-provider".to_owned()]
    );
    // Nothing that cannot be known here is invented: each is declared unpinned, with its source.
    for what in [
        Pinnable::Mrtd,
        Pinnable::Rtmr0,
        Pinnable::Rtmr1,
        Pinnable::Rtmr2,
        Pinnable::OsImageHash,
        Pinnable::KeyProvider,
        Pinnable::ConfigHash,
    ] {
        assert!(
            p.unpinned
                .iter()
                .any(|(w, text)| *w == what && text.contains("provider")),
            "{what:?}"
        );
    }
    let lines = p.unpinned(false, false, None);
    assert!(
        lines.iter().any(|l| l.starts_with("UNPINNED MRTD: ")),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("compose hash")),
        "{lines:?}"
    );

    let dev = shipped::named("dev").unwrap().unwrap();
    assert_eq!(dev.kind(), PolicyAttestation::Dev);
    assert_eq!(dev.compose_hashes.as_ref().unwrap().value, vec![hash]);
}

#[test]
fn a_value_both_pinned_and_declared_unpinned_is_refused() {
    let e = Policy::from_toml(
        "p.toml",
        "[measurements]\nmrtd = [\"00\"]\n[unpinned]\nmrtd = \"the provider\"\n",
    );
    assert!(e.is_err());
    let e = Policy::from_toml(
        "p.toml",
        &format!(
            "[app]\nconfig_hashes = [\"{}\"]\n\n[unpinned]\nconfig_hash = \"the provider\"\n",
            "ab".repeat(32)
        ),
    )
    .unwrap_err();
    assert!(e.to_string().contains("p.toml:5"), "{e}");
    let e = Policy::from_toml("p.toml", "[events]\nrequired = [\"os-image\"]\n").unwrap_err();
    assert!(e.to_string().contains("events.required"), "{e}");
    let e = Policy::from_toml("p.toml", "[policy]\nattestation = \"sgx\"\n").unwrap_err();
    assert!(e.to_string().contains("policy.attestation"), "{e}");
}

fn dev_document(app_compose: &str) -> QuoteDocument {
    let signer = alloy::primitives::Address::repeat_byte(0x11);
    let (event_log, tcb_info) = dev_attestation_fields(
        app_compose,
        signer,
        alloy::primitives::B256::repeat_byte(0xc0),
    );
    let rd = sealtune_verifier::report_data::ascii_report_data(&signer.0.0);
    QuoteDocument {
        report_data: Some(base64::engine::general_purpose::STANDARD.encode(rd)),
        event_log: Some(event_log),
        tcb_info: Some(tcb_info),
        dev: true,
        ..Default::default()
    }
}

fn dev_opts(policy: Option<Policy>, required: bool) -> VerifyOptions {
    VerifyOptions {
        allow_dev_quote: true,
        policy,
        policy_required: required,
        binding: BindingExpectations {
            signer: Some([0x11; 20]),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn failed<'a>(r: &'a VerificationReport, name: &str) -> &'a str {
    r.links
        .iter()
        .find(|l| l.name == name && l.required && !l.ok)
        .map(|l| l.detail.as_str())
        .unwrap_or_else(|| panic!("no failed {name} link:\n{}", r.render_human()))
}

#[test]
fn without_a_policy_the_check_says_unpinned_and_fails_when_one_is_required() {
    let doc = dev_document(FIXTURE_APP_COMPOSE);
    let r = verify_document(&doc, &dev_opts(None, true));
    assert!(!r.verified);
    let detail = failed(&r, "policy");
    assert!(
        detail.contains("UNPINNED: no policy")
            && detail.contains("compose hash")
            && detail.contains("--no-policy"),
        "{detail}"
    );
    // Not required (`--no-policy`, or `sealtune-verify quote` without --policy): informational.
    let r = verify_document(&doc, &dev_opts(None, false));
    assert!(r.verified, "{}", r.render_human());
    assert!(!r.link("policy").unwrap().required);
}

#[test]
fn a_dev_answer_with_a_config_hash_pin_that_differs_fails_the_policy_config_link() {
    let doc = dev_document(FIXTURE_APP_COMPOSE);
    let mut dev = shipped::named("dev").unwrap().unwrap();
    dev.pin_config_hashes(vec![[0xc0; 32]]);
    let r = verify_document(&doc, &dev_opts(Some(dev.clone()), true));
    assert!(r.verified, "{}", r.render_human());
    dev.pin_config_hashes(vec![[0xc1; 32]]);
    let r = verify_document(&doc, &dev_opts(Some(dev), true));
    assert!(!r.verified);
    assert!(
        failed(&r, "policy config").contains("given on the command line (--config-hash)"),
        "{}",
        r.render_human()
    );
}

#[test]
fn a_dev_answer_whose_log_does_not_replay_to_its_stated_rtmr3_fails_the_event_log_link() {
    let mut doc = dev_document(FIXTURE_APP_COMPOSE);
    let mut info: serde_json::Value =
        serde_json::from_str(doc.tcb_info.as_deref().unwrap()).unwrap();
    info["rtmr3"] = hex::encode([7u8; 48]).into();
    doc.tcb_info = Some(info.to_string());
    let r = verify_document(&doc, &dev_opts(shipped::named("dev").unwrap().ok(), true));
    assert!(
        failed(&r, "event log").contains("RTMR3"),
        "{}",
        r.render_human()
    );
}

#[test]
fn a_stale_nonce_fails_the_nonce_link() {
    let signer = alloy::primitives::Address::repeat_byte(0x11);
    let document = sealtune_protocol::attestation::AttestationDocument::new(
        signer,
        alloy::primitives::B256::repeat_byte(1),
        alloy::primitives::B256::repeat_byte(0xc0),
    );
    let mut doc = dev_document(FIXTURE_APP_COMPOSE);
    doc.report_data =
        Some(base64::engine::general_purpose::STANDARD.encode(document.report_data()));
    doc.attestation_document = Some(serde_json::to_value(document).unwrap());
    let mut opts = dev_opts(shipped::named("dev").unwrap().ok(), true);
    opts.binding.nonce = Some([1; 32]);
    assert!(verify_document(&doc, &opts).verified);
    opts.binding.nonce = Some([2; 32]);
    let r = verify_document(&doc, &opts);
    assert!(
        failed(&r, "nonce").contains("stale or relayed"),
        "{}",
        r.render_human()
    );
    assert!(failed(&r, "signer binding").contains("stale or relayed"));
    // No document at all: no freshness proof, refused unless allowed.
    doc.attestation_document = None;
    doc.report_data = dev_document(FIXTURE_APP_COMPOSE).report_data;
    let r = verify_document(&doc, &opts);
    assert!(
        failed(&r, "nonce").contains("cannot prove freshness"),
        "{}",
        r.render_human()
    );
    opts.allow_no_freshness = true;
    assert!(verify_document(&doc, &opts).verified);
}

/// Every report lists its links in the order of docs/verifier.md.
#[test]
fn links_come_in_the_documented_order() {
    let mut reports = vec![
        verify_document(
            &dev_document(FIXTURE_APP_COMPOSE),
            &dev_opts(shipped::named("dev").unwrap().ok(), true),
        ),
        verify_document(&dev_document("{}"), &dev_opts(None, false)),
    ];
    let dstack = QuoteDocument::from_bytes(&fixture("tdx/dstack/quote-report.json")).unwrap();
    reports.push(verify_document(
        &dstack,
        &VerifyOptions {
            now: TDX_V4_AT,
            policy: shipped::release().ok(),
            ..Default::default()
        },
    ));
    for r in &reports {
        let positions: Vec<usize> = r
            .links
            .iter()
            .map(|l| {
                LINK_ORDER
                    .iter()
                    .position(|n| *n == l.name)
                    .unwrap_or_else(|| panic!("{} is not in LINK_ORDER", l.name))
            })
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] <= w[1]),
            "out of order:\n{}",
            r.render_human()
        );
    }
}
