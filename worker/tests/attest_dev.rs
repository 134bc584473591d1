//! The `dev` attestation source end to end: the key file, signer-change detection, and the
//! `/v1/quote` body as the verifier library and the official SDK read it; plus the shipped
//! deployment files (the compose hash the verifier computes from `deploy/app-compose.json` is the
//! one the dev source reports).

use std::path::Path;

use alloy::primitives::Address;
use base64::Engine as _;
use sealtune_protocol::attestation::{AttestationDocument, CONFIG_EVENT};
use sealtune_verifier::event_log::{
    EventLogError, EventPolicy, check_compose_hash, parse_event_log, verify_event_log,
};
use sealtune_verifier::report_data::{BindingError, BindingExpectations, Layout, check_binding};
use sealtune_verifier::verify::{QuoteDocument, VerifyOptions, verify_document};
use sealtune_worker::attest::{
    AttestConfig, AttestError, Attestation, DEV_APP_COMPOSE, SourceKind,
};
use sha2::{Digest as _, Sha256};

/// The config hash these tests measure (any value: the sources only carry it).
const CONFIG: alloy::primitives::B256 = alloy::primitives::B256::repeat_byte(0x42);

use sealtune_e2e::repo_root as repo;

fn dev() -> AttestConfig {
    AttestConfig::new(SourceKind::Dev)
}

async fn body_doc(
    att: &Attestation,
    nonce: Option<[u8; 32]>,
) -> (serde_json::Value, QuoteDocument) {
    let body = att.quote_body(nonce).await.unwrap();
    let doc = QuoteDocument::from_bytes(body.to_string().as_bytes()).unwrap();
    (body, doc)
}

fn json_report_data(doc: &QuoteDocument) -> [u8; 64] {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(doc.report_data.as_deref().unwrap())
        .unwrap();
    raw.try_into().unwrap()
}

#[tokio::test]
async fn dev_key_is_stable_across_opens_in_the_same_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let a = Attestation::open(&dev(), dir.path(), CONFIG).await.unwrap();
    let b = Attestation::open(&dev(), dir.path(), CONFIG).await.unwrap();
    assert_eq!(a.signer(), b.signer());
    assert_eq!(a.signer(), Address::from_private_key(a.signing_key()));
    assert_eq!(a.previous_signer(), None);
    assert_eq!(b.previous_signer(), None);
    assert!(a.is_dev());
    assert_eq!(a.source(), SourceKind::Dev);
    // Another data directory is another key.
    let other = tempfile::tempdir().unwrap();
    let c = Attestation::open(&dev(), other.path(), CONFIG)
        .await
        .unwrap();
    assert_ne!(a.signer(), c.signer());
}

#[tokio::test]
async fn signer_change_is_reported_until_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let first = Attestation::open(&dev(), dir.path(), CONFIG).await.unwrap();
    let old = first.signer();
    drop(first);
    // The root secret file changes (a restored backup, another disk): a new signer.
    let new_key = k256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    std::fs::write(
        dir.path().join("tee-signer.dev.key"),
        format!("0x{}\n", hex::encode(new_key.to_bytes())),
    )
    .unwrap();
    let second = Attestation::open(&dev(), dir.path(), CONFIG).await.unwrap();
    assert_ne!(second.signer(), old);
    assert_ne!(
        second.signer(),
        Address::from_private_key(&new_key),
        "the signer is derived from the root secret and the key path, not the root itself"
    );
    assert_eq!(second.previous_signer(), Some(old));
    drop(second);
    // Not recorded yet (e.g. a crash before the old signer's tasks were handled): reported again.
    let third = Attestation::open(&dev(), dir.path(), CONFIG).await.unwrap();
    assert_eq!(third.previous_signer(), Some(old));
    third.record_signer().unwrap();
    let fourth = Attestation::open(&dev(), dir.path(), CONFIG).await.unwrap();
    assert_eq!(fourth.previous_signer(), None);
}

#[tokio::test]
async fn corrupt_dev_key_file_is_an_error_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("tee-signer.dev.key");
    std::fs::write(&key, "not hex").unwrap();
    let err = Attestation::open(&dev(), dir.path(), CONFIG)
        .await
        .unwrap_err();
    assert!(matches!(err, AttestError::File { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), "not hex");
    std::fs::write(&key, format!("0x{}", "00".repeat(32))).unwrap();
    let err = Attestation::open(&dev(), dir.path(), CONFIG)
        .await
        .unwrap_err();
    assert!(matches!(err, AttestError::BadKey { .. }), "{err}");
    assert!(!dir.path().join("tee-signer.json").exists());
}

#[tokio::test]
async fn dev_quote_body_is_marked_and_binds_the_signer_in_layout_a() {
    let dir = tempfile::tempdir().unwrap();
    let att = Attestation::open(&dev(), dir.path(), CONFIG).await.unwrap();
    let (body, doc) = body_doc(&att, None).await;
    assert!(doc.dev);
    assert!(doc.quote.is_empty());
    assert_eq!(body["source"], "dev");
    assert!(body["warning"].as_str().unwrap().contains("INSECURE"));
    let rd = json_report_data(&doc);
    let b = check_binding(
        &rd,
        &BindingExpectations {
            signer: Some(att.signer().0.0),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(b.layout, Layout::AsciiAddress);
    // The official SDK's check: base64-decode, strip NULs, compare case-insensitively.
    let text = String::from_utf8(rd.to_vec()).unwrap().replace('\0', "");
    assert_eq!(text.to_lowercase(), att.signer().to_string().to_lowercase());
    // The verifier rejects the dev source unless told otherwise.
    let strict = verify_document(&doc, &VerifyOptions::default());
    assert!(!strict.verified);
    assert!(
        strict
            .links
            .iter()
            .any(|l| l.name == "dev attestation" && !l.ok)
    );
    let allowed = verify_document(
        &doc,
        &VerifyOptions {
            allow_dev_quote: true,
            ..Default::default()
        },
    );
    assert!(allowed.verified, "{}", allowed.render_human());
}

#[tokio::test]
async fn dev_quote_body_with_a_nonce_binds_the_attestation_document() {
    let dir = tempfile::tempdir().unwrap();
    let att = Attestation::open(&dev(), dir.path(), CONFIG).await.unwrap();
    let nonce = [0x5a; 32];
    let (body, doc) = body_doc(&att, Some(nonce)).await;
    assert_eq!(body["nonce"], hex::encode(nonce));
    assert_eq!(body["config_hash"], CONFIG.to_string());
    let declared = AttestationDocument::from_json(&body["attestation_document"]).unwrap();
    assert_eq!(
        declared,
        AttestationDocument {
            dataset_key_hash: Some(att.tee_keys().hash()),
            ..AttestationDocument::new(att.signer(), nonce.into(), CONFIG)
        }
    );
    let rd = json_report_data(&doc);
    assert_eq!(rd, declared.report_data());
    let exp = BindingExpectations {
        signer: Some(att.signer().0.0),
        nonce: Some(nonce),
        document: Some(declared),
        ..Default::default()
    };
    assert_eq!(check_binding(&rd, &exp).unwrap().layout, Layout::DocumentV2);
    let stale = BindingExpectations {
        nonce: Some([0x5b; 32]),
        ..exp
    };
    assert!(matches!(
        check_binding(&rd, &stale),
        Err(BindingError::NonceMismatch { .. })
    ));
}

/// A changed config is a new signer (the key path includes the config hash), and the dev event log
/// records the config hash as the `sealtune-config` runtime event.
/// The checkpoint key survives a restart (the same data directory and config), is per task, and a
/// changed config gives another one (earlier checkpoints can no longer be opened).
#[tokio::test]
async fn the_checkpoint_key_survives_a_restart_is_per_task_and_changes_with_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let a = Attestation::open(&dev(), dir.path(), CONFIG).await.unwrap();
    let again = Attestation::open(&dev(), dir.path(), CONFIG).await.unwrap();
    assert_eq!(*a.checkpoint_key("t1"), *again.checkpoint_key("t1"));
    assert_ne!(*a.checkpoint_key("t1"), *a.checkpoint_key("t2"));
    assert_ne!(
        a.checkpoint_key("t1").as_slice(),
        a.dataset_key().to_bytes().as_slice()
    );
    let other = alloy::primitives::B256::repeat_byte(0x43);
    let b = Attestation::open(&dev(), dir.path(), other).await.unwrap();
    assert_ne!(*a.checkpoint_key("t1"), *b.checkpoint_key("t1"));
}

#[tokio::test]
async fn a_changed_config_is_a_new_signer_and_the_event_log_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let a = Attestation::open(&dev(), dir.path(), CONFIG).await.unwrap();
    let other = alloy::primitives::B256::repeat_byte(0x43);
    let b = Attestation::open(&dev(), dir.path(), other).await.unwrap();
    assert_ne!(a.signer(), b.signer());
    assert_eq!(b.previous_signer(), Some(a.signer()));
    let again = Attestation::open(&dev(), dir.path(), CONFIG).await.unwrap();
    assert_eq!(again.signer(), a.signer());
    let (_, doc) = body_doc(&a, None).await;
    let events = parse_event_log(doc.event_log.as_deref().unwrap()).unwrap();
    let recorded: Vec<_> = events
        .iter()
        .filter(|e| e.name == CONFIG_EVENT)
        .map(|e| e.payload.clone())
        .collect();
    assert_eq!(recorded, vec![CONFIG.to_vec()]);
}

#[tokio::test]
async fn dev_event_log_replays_and_its_compose_hash_matches_the_shipped_app_compose() {
    let dir = tempfile::tempdir().unwrap();
    let att = Attestation::open(&dev(), dir.path(), CONFIG).await.unwrap();
    let (_, doc) = body_doc(&att, None).await;
    let events = parse_event_log(doc.event_log.as_deref().unwrap()).unwrap();
    let tcb: serde_json::Value = serde_json::from_str(doc.tcb_info.as_deref().unwrap()).unwrap();
    let rtmr3: [u8; 48] = hex::decode(tcb["rtmr3"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let summary = verify_event_log(
        &events,
        &[[0; 48], [0; 48], [0; 48], rtmr3],
        &EventPolicy::default(),
    )
    .unwrap();
    assert_eq!(
        summary.key_provider.as_deref().map(|k| k.contains("dev")),
        Some(true)
    );
    // The verifier's compose check, from the shipped file on disk.
    let shipped = std::fs::read_to_string(repo().join("deploy/app-compose.json")).unwrap();
    assert_eq!(shipped, DEV_APP_COMPOSE);
    let computed = check_compose_hash(&events, doc.tcb_info.as_deref().unwrap()).unwrap();
    assert_eq!(computed, hex::encode(Sha256::digest(shipped.as_bytes())));
    assert_eq!(summary.compose_hash.as_deref(), Some(computed.as_str()));
    assert_eq!(tcb["compose_hash"], computed);
    // A tampered app_compose fails the same check.
    let mut forged = tcb.clone();
    forged["app_compose"] = serde_json::Value::String(shipped.replace("3080", "3081"));
    assert!(matches!(
        check_compose_hash(&events, &forged.to_string()),
        Err(EventLogError::ComposeMismatch { .. })
    ));
}

#[tokio::test]
async fn dev_source_serves_a_configured_app_compose() {
    let dir = tempfile::tempdir().unwrap();
    let compose = dir.path().join("my-app-compose.json");
    std::fs::write(&compose, r#"{"manifest_version":2,"name":"x"}"#).unwrap();
    let cfg = AttestConfig {
        app_compose: Some(compose.clone()),
        ..dev()
    };
    let att = Attestation::open(&cfg, dir.path(), CONFIG).await.unwrap();
    let (_, doc) = body_doc(&att, None).await;
    let events = parse_event_log(doc.event_log.as_deref().unwrap()).unwrap();
    let h = check_compose_hash(&events, doc.tcb_info.as_deref().unwrap()).unwrap();
    assert_eq!(
        h,
        hex::encode(Sha256::digest(std::fs::read(&compose).unwrap()))
    );
    let missing = AttestConfig {
        app_compose: Some(dir.path().join("absent.json")),
        ..dev()
    };
    assert!(matches!(
        Attestation::open(&missing, dir.path(), CONFIG).await,
        Err(AttestError::File { .. })
    ));
}

#[test]
fn shipped_app_compose_wraps_the_shipped_docker_compose() {
    let app: serde_json::Value = serde_json::from_str(DEV_APP_COMPOSE).unwrap();
    let compose = std::fs::read_to_string(repo().join("deploy/docker-compose.yml")).unwrap();
    assert_eq!(app["docker_compose_file"].as_str(), Some(compose.as_str()));
    assert_eq!(app["runner"], "docker-compose");
    assert_eq!(app["kms_enabled"], true);
    assert!(compose.contains("/var/run/dstack.sock:/var/run/dstack.sock"));
    // The config arrives in the encrypted environment, not from a host file (worker/tests/deploy_files.rs
    // runs the entrypoint); the image is pinned by digest, so the compose hash pins the image.
    assert!(compose.contains("> /etc/sealtune/config.toml "));
    assert!(!compose.contains("./config.toml"));
    let image = compose
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("image: "))
        .unwrap();
    let (_, digest) = image
        .split_once("@sha256:")
        .expect("image pinned by digest");
    assert!(
        digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
        "{image}"
    );
}

#[test]
fn attest_config_has_no_default_source_and_rejects_unknown_keys() {
    let err = toml::from_str::<AttestConfig>("").unwrap_err();
    assert!(err.to_string().contains("source"), "{err}");
    let err = toml::from_str::<AttestConfig>("source = \"sgx\"").unwrap_err();
    assert!(err.to_string().contains("sgx"), "{err}");
    assert!(toml::from_str::<AttestConfig>("source = \"dev\"\nsockett = \"x\"").is_err());
    let cfg: AttestConfig = toml::from_str("source = \"configfs-tsm\"").unwrap();
    assert_eq!(cfg.source, SourceKind::ConfigfsTsm);
    assert_eq!(cfg.dstack_socket, Path::new("/var/run/dstack.sock"));
    assert_eq!(cfg.tsm_dir, Path::new("/sys/kernel/config/tsm/report"));
}

/// The test harness's dev answers (`sealtune_e2e::provider_fixture::dev_attestation_fields`, used by
/// the client's and the verifier's tests, which cannot depend on the worker) carry the same event log
/// and RTMR3 as the worker's dev source.
#[test]
fn the_harness_dev_log_is_the_worker_dev_log() {
    let signer = Address::repeat_byte(0x42);
    let config = alloy::primitives::B256::repeat_byte(0xc0);
    let (log, rtmr3) = sealtune_worker::attest::dev_event_log(
        sealtune_worker::attest::DEV_APP_COMPOSE,
        &signer.0.0,
        &config.0,
    );
    let (harness_log, tcb_info) = sealtune_e2e::provider_fixture::dev_attestation_fields(
        sealtune_e2e::provider_fixture::FIXTURE_APP_COMPOSE,
        signer,
        config,
    );
    assert_eq!(harness_log, log);
    let info: serde_json::Value = serde_json::from_str(&tcb_info).unwrap();
    assert_eq!(info["rtmr3"], hex::encode(rtmr3));
}
