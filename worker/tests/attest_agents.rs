//! The hardware-backed attestation sources against stand-ins for what cannot exist here:
//!
//! - `dstack_fixture_server`: an HTTP server on a unix socket speaking the dstack guest agent's
//!   API (`/GetKey`, `/GetQuote`, `/Info`) and legacy tappd's (`/prpc/Tappd.*`). `GetQuote`
//!   replays the recorded dstack response in the shared fixtures (`tdx/dstack/quote-report.json`)
//!   with the requested report_data spliced into the quote body (so the quote's signature no
//!   longer verifies, which the worker does not check); `TdxQuote` does the same with
//!   `tdx/quote-from-tappd.hex`. Keys and `Info` are synthesized (nothing recorded exists).
//! - `fake_configfs`: a temporary directory laid out like `/sys/kernel/config/tsm/report/<entry>`
//!   with an `outblob` staged by the test.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use alloy::primitives::Address;
use axum::Json;
use axum::extract::State;
use axum::routing::post;
use sealtune_protocol::attestation::{AttestationDocument, CONFIG_EVENT};
use sealtune_protocol::dstack::{RUNTIME_EVENT_TYPE, extend_rtmr, runtime_event_digest_v1};
use sealtune_verifier::event_log::{EventPolicy, parse_event_log, verify_event_log};
use sealtune_verifier::quote::ParsedQuote;
use sealtune_verifier::report_data::{
    BindingExpectations, Layout, check_binding, check_json_report_data,
};
use sealtune_verifier::verify::QuoteDocument;
use sealtune_worker::attest::{
    AttestConfig, AttestError, Attestation, DEV_APP_COMPOSE, SourceKind, quote_report_data,
    signer_key_path,
};
use sha2::{Digest as _, Sha256};

/// The config hash these tests measure (any value: the sources only carry it).
const CONFIG: alloy::primitives::B256 = alloy::primitives::B256::repeat_byte(0x42);

use sealtune_e2e::fixture;

fn recorded_dstack() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture("tdx/dstack/quote-report.json")).unwrap())
        .unwrap()
}

fn recorded_tappd_quote() -> Vec<u8> {
    let text = std::fs::read_to_string(fixture("tdx/quote-from-tappd.hex")).unwrap();
    hex::decode(text.trim().trim_start_matches("0x")).unwrap()
}

/// The recorded v4 quote with `rd` at the report_data offset (568).
fn splice(mut quote: Vec<u8>, rd: &[u8]) -> Vec<u8> {
    quote[568..632].copy_from_slice(rd);
    quote
}

#[derive(Clone)]
struct Agent {
    /// Splice the requested report_data (false: replay the recording as is).
    splice: bool,
    /// Answer every call with HTTP 500.
    fail: bool,
    calls: Arc<AtomicU32>,
    /// Runtime events received through `EmitEvent` (name, payload hex), replayed in `GetQuote`.
    emitted: Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

/// A stand-in KMS derivation: the key depends only on the path (deterministic like dstack's).
fn derived_key(path: &str) -> [u8; 32] {
    Sha256::digest(format!("fixture-kms:{path}")).into()
}

fn tcb_info() -> String {
    serde_json::json!({"app_compose": DEV_APP_COMPOSE, "compose_hash": "", "event_log": []})
        .to_string()
}

async fn get_key(
    State(a): State<Agent>,
    Json(req): Json<serde_json::Value>,
) -> Result<Json<serde_json::Value>, axum::http::StatusCode> {
    a.calls.fetch_add(1, Ordering::SeqCst);
    if a.fail {
        return Err(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(req["algorithm"], "secp256k1");
    let path = req["path"].as_str().unwrap_or_default();
    Ok(Json(serde_json::json!({
        "key": hex::encode(derived_key(path)),
        "signature_chain": ["00", "11"],
    })))
}

async fn get_quote(
    State(a): State<Agent>,
    Json(req): Json<serde_json::Value>,
) -> Result<Json<serde_json::Value>, axum::http::StatusCode> {
    a.calls.fetch_add(1, Ordering::SeqCst);
    if a.fail {
        return Err(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    }
    let mut rec = recorded_dstack();
    let rd = hex::decode(req["report_data"].as_str().unwrap()).unwrap();
    assert_eq!(rd.len(), 64, "the worker sends 64 bytes of report_data");
    // Emitted events extend RTMR3 as the real agent does: appended to the log, and the quote's
    // RTMR3 (absolute offset 520 in a v4 quote) extended (like the report_data splice, this
    // breaks the recorded quote's signature, which the worker does not check).
    let emitted = a.emitted.lock().unwrap().clone();
    if !emitted.is_empty() {
        let mut log: Vec<serde_json::Value> =
            serde_json::from_str(rec["event_log"].as_str().unwrap()).unwrap();
        let mut q = hex::decode(rec["quote"].as_str().unwrap()).unwrap();
        let mut rtmr3: [u8; 48] = q[520..568].try_into().unwrap();
        for (name, payload) in emitted {
            let digest = runtime_event_digest_v1(&name, &hex::decode(&payload).unwrap());
            extend_rtmr(&mut rtmr3, &digest);
            log.push(
                serde_json::json!({"imr": 3, "event_type": RUNTIME_EVENT_TYPE,
                "digest": hex::encode(digest), "event": name, "event_payload": payload}),
            );
        }
        q[520..568].copy_from_slice(&rtmr3);
        rec["quote"] = hex::encode(q).into();
        rec["event_log"] = serde_json::Value::String(serde_json::Value::Array(log).to_string());
    }
    if a.splice {
        let q = hex::decode(rec["quote"].as_str().unwrap()).unwrap();
        rec["quote"] = hex::encode(splice(q, &rd)).into();
        rec["report_data"] = hex::encode(&rd).into();
    }
    Ok(Json(rec))
}

async fn emit_event(
    State(a): State<Agent>,
    Json(req): Json<serde_json::Value>,
) -> Json<serde_json::Value> {
    a.calls.fetch_add(1, Ordering::SeqCst);
    let name = req["event"].as_str().unwrap().to_owned();
    let payload = req["payload"].as_str().unwrap().to_owned();
    a.emitted.lock().unwrap().push((name, payload));
    Json(serde_json::json!({}))
}

async fn info(State(a): State<Agent>) -> Json<serde_json::Value> {
    a.calls.fetch_add(1, Ordering::SeqCst);
    Json(serde_json::json!({
        "app_id": "3763bc34552cf3a27ff71ad5f7a90471562a1a2d",
        "instance_id": "c3714eb66990eace777b4e664c16e09375dec4c9",
        "app_cert": "",
        "tcb_info": tcb_info(),
        "app_name": "fixture",
        "device_id": "",
        "key_provider_info": "",
        "compose_hash": "",
    }))
}

async fn tappd_derive_key(Json(req): Json<serde_json::Value>) -> Json<serde_json::Value> {
    // A PEM whose body stands in for the P-256 key tappd derives from the path.
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD
        .encode(derived_key(req["path"].as_str().unwrap_or_default()));
    Json(serde_json::json!({
        "key": format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"),
        "certificate_chain": [],
    }))
}

async fn tappd_quote(Json(req): Json<serde_json::Value>) -> Json<serde_json::Value> {
    assert_eq!(req["hash_algorithm"], "raw");
    let rd = hex::decode(req["report_data"].as_str().unwrap()).unwrap();
    Json(serde_json::json!({
        "quote": hex::encode(splice(recorded_tappd_quote(), &rd)),
        "event_log": "[]",
    }))
}

/// Starts the `dstack_fixture_server` on a fresh socket in `dir`.
async fn dstack_fixture_server(dir: &Path, agent: Agent) -> PathBuf {
    let sock = dir.join("agent.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let app = axum::Router::new()
        .route("/GetKey", post(get_key))
        .route("/GetQuote", post(get_quote))
        .route("/Info", post(info))
        .route("/EmitEvent", post(emit_event))
        .route("/prpc/Tappd.DeriveKey", post(tappd_derive_key))
        .route("/prpc/Tappd.TdxQuote", post(tappd_quote))
        .route("/prpc/Tappd.Info", post(info))
        .with_state(agent);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    sock
}

fn agent() -> Agent {
    Agent {
        splice: true,
        fail: false,
        calls: Arc::new(AtomicU32::new(0)),
        emitted: Default::default(),
    }
}

fn dstack_config(sock: &Path) -> AttestConfig {
    AttestConfig {
        dstack_socket: sock.to_path_buf(),
        tappd_socket: sock.to_path_buf(),
        ..AttestConfig::new(SourceKind::Dstack)
    }
}

#[tokio::test]
async fn dstack_signer_comes_from_get_key_and_is_stable() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dstack_fixture_server(dir.path(), agent()).await;
    let cfg = dstack_config(&sock);
    let a = Attestation::open(&cfg, dir.path(), CONFIG).await.unwrap();
    let expected = k256::ecdsa::SigningKey::from_slice(&derived_key(&signer_key_path(
        "sealtune/tee-signer",
        CONFIG,
    )))
    .unwrap();
    assert_eq!(a.signer(), Address::from_private_key(&expected));
    assert!(!a.is_dev());
    let b = Attestation::open(&cfg, dir.path(), CONFIG).await.unwrap();
    assert_eq!(b.signer(), a.signer());
    assert_eq!(b.previous_signer(), None);
    // No key is written to the data directory, only the public signer record.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!names.iter().any(|n| n.contains("key")), "{names:?}");
    // Another derivation path is another signer, reported as a change.
    let other = AttestConfig {
        key_path: "sealtune/other".into(),
        ..cfg
    };
    let c = Attestation::open(&other, dir.path(), CONFIG).await.unwrap();
    assert_ne!(c.signer(), a.signer());
    assert_eq!(c.previous_signer(), Some(a.signer()));
}

#[tokio::test]
async fn dstack_quote_body_carries_the_recorded_quote_bound_to_the_signer() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dstack_fixture_server(dir.path(), agent()).await;
    let att = Attestation::open(&dstack_config(&sock), dir.path(), CONFIG)
        .await
        .unwrap();
    let body = att.quote_body(None).await.unwrap();
    assert!(body.get("dev").is_none());
    assert_eq!(body["source"], "dstack");
    let doc = QuoteDocument::from_bytes(body.to_string().as_bytes()).unwrap();
    assert!(!doc.dev);
    let parsed = ParsedQuote::parse(&doc.quote).unwrap();
    let rd = parsed.body.report_data();
    check_json_report_data(doc.report_data.as_deref().unwrap(), rd).unwrap();
    let b = check_binding(
        rd,
        &BindingExpectations {
            signer: Some(att.signer().0.0),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(b.layout, Layout::AsciiAddress);
    // The recorded event log is relayed unchanged and still replays into the quote's RTMRs.
    let events = parse_event_log(doc.event_log.as_deref().unwrap()).unwrap();
    let policy = EventPolicy {
        allowed_app_events: vec!["LIUM_MINER_HOTKEY".into()],
    };
    verify_event_log(&events, &parsed.body.td().unwrap().rtmr, &policy).unwrap();
    assert!(
        body["vm_config"]
            .as_str()
            .unwrap()
            .contains("os_image_hash")
    );
    // tcb_info comes from Info.
    assert_eq!(doc.tcb_info.as_deref(), Some(tcb_info().as_str()));

    let nonce = [9u8; 32];
    let body = att.quote_body(Some(nonce)).await.unwrap();
    let doc = QuoteDocument::from_bytes(body.to_string().as_bytes()).unwrap();
    let rd = quote_report_data(&doc.quote).unwrap();
    let declared = AttestationDocument::from_json(&body["attestation_document"]).unwrap();
    let b = check_binding(
        &rd,
        &BindingExpectations {
            signer: Some(att.signer().0.0),
            nonce: Some(nonce),
            document: Some(declared),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(b.layout, Layout::DocumentV2);
    assert_eq!(declared.config_hash, CONFIG);
}

/// dstack records the config hash once per boot as the `sealtune-config` RTMR3 event: a restart
/// with the same config emits nothing more, a restart with another config is refused.
#[tokio::test]
async fn dstack_records_the_config_hash_once_and_refuses_another_in_the_same_boot() {
    let dir = tempfile::tempdir().unwrap();
    let a = agent();
    let emitted = a.emitted.clone();
    let sock = dstack_fixture_server(dir.path(), a).await;
    let first = Attestation::open(&dstack_config(&sock), dir.path(), CONFIG)
        .await
        .unwrap();
    assert!(first.config_in_rtmr3());
    let recorded = || emitted.lock().unwrap().clone();
    assert_eq!(
        recorded(),
        vec![(CONFIG_EVENT.to_owned(), hex::encode(CONFIG))]
    );
    Attestation::open(&dstack_config(&sock), dir.path(), CONFIG)
        .await
        .unwrap();
    assert_eq!(
        recorded().len(),
        1,
        "a restart must not record the config twice"
    );
    let other = alloy::primitives::B256::repeat_byte(0x43);
    let err = Attestation::open(&dstack_config(&sock), dir.path(), other)
        .await
        .unwrap_err();
    assert!(matches!(err, AttestError::ConfigChanged { .. }), "{err}");
    assert_eq!(recorded().len(), 1);
}

#[tokio::test]
async fn a_quote_without_the_requested_report_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let replay = Agent {
        splice: false,
        ..agent()
    };
    let sock = dstack_fixture_server(dir.path(), replay).await;
    let att = Attestation::open(&dstack_config(&sock), dir.path(), CONFIG)
        .await
        .unwrap();
    let err = att.quote_body(None).await.unwrap_err();
    match err {
        AttestError::ReportDataMismatch { got, .. } => assert!(got.starts_with("1234"), "{got}"),
        other => panic!("expected ReportDataMismatch, got {other}"),
    }
}

#[tokio::test]
async fn agent_errors_are_typed_and_name_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let failing = Agent {
        fail: true,
        ..agent()
    };
    let sock = dstack_fixture_server(dir.path(), failing.clone()).await;
    let err = Attestation::open(&dstack_config(&sock), dir.path(), CONFIG)
        .await
        .unwrap_err();
    assert!(matches!(err, AttestError::Agent { .. }), "{err}");
    assert!(err.to_string().contains("500"), "{err}");
    assert!(failing.calls.load(Ordering::SeqCst) >= 1);
    // Nothing recorded on failure.
    assert!(!dir.path().join("tee-signer.json").exists());
    let missing = dstack_config(&dir.path().join("absent.sock"));
    let err = Attestation::open(&missing, dir.path(), CONFIG)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("absent.sock"), "{err}");
}

#[tokio::test]
async fn tappd_signer_and_raw_quote() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dstack_fixture_server(dir.path(), agent()).await;
    let cfg = AttestConfig {
        source: SourceKind::Tappd,
        ..dstack_config(&sock)
    };
    let a = Attestation::open(&cfg, dir.path(), CONFIG).await.unwrap();
    let b = Attestation::open(&cfg, dir.path(), CONFIG).await.unwrap();
    assert_eq!(a.signer(), b.signer());
    assert_eq!(a.source(), SourceKind::Tappd);
    let body = a.quote_body(Some([3; 32])).await.unwrap();
    let doc = QuoteDocument::from_bytes(body.to_string().as_bytes()).unwrap();
    let rd = quote_report_data(&doc.quote).unwrap();
    assert_eq!(
        rd,
        AttestationDocument {
            dataset_key_hash: Some(a.tee_keys().hash()),
            ..AttestationDocument::new(a.signer(), [3; 32].into(), CONFIG)
        }
        .report_data()
    );
    assert!(!a.config_in_rtmr3(), "tappd has no runtime events");
    assert_eq!(doc.tcb_info.as_deref(), Some(tcb_info().as_str()));
}

// ---------------------------------------------------------------------------------------------
// fake_configfs

/// A directory laid out like a configfs-tsm report entry (`provider`, `generation`, `inblob`,
/// `outblob`). Unlike the kernel it does not react to `inblob`: the test stages the `outblob`
/// the kernel would produce for the report_data it expects the worker to ask for, and checks
/// afterwards what the worker wrote to `inblob`.
struct FakeConfigfs {
    base: tempfile::TempDir,
}

impl FakeConfigfs {
    fn new(provider: &str) -> Self {
        let base = tempfile::tempdir().unwrap();
        let fake = Self { base };
        std::fs::create_dir(fake.entry()).unwrap();
        std::fs::write(fake.entry().join("provider"), format!("{provider}\n")).unwrap();
        std::fs::write(fake.entry().join("generation"), "1\n").unwrap();
        std::fs::write(fake.entry().join("inblob"), [0u8; 64]).unwrap();
        std::fs::write(fake.entry().join("outblob"), b"").unwrap();
        fake
    }

    fn entry(&self) -> PathBuf {
        self.base
            .path()
            .join(format!("sealtune-{}", std::process::id()))
    }

    /// The quote the kernel would return for `rd`.
    fn stage(&self, rd: &[u8; 64]) {
        std::fs::write(
            self.entry().join("outblob"),
            splice(recorded_tappd_quote(), rd),
        )
        .unwrap();
    }

    fn inblob(&self) -> Vec<u8> {
        std::fs::read(self.entry().join("inblob")).unwrap()
    }

    fn config(&self) -> AttestConfig {
        AttestConfig {
            tsm_dir: self.base.path().to_path_buf(),
            timeout_secs: 10,
            ..AttestConfig::new(SourceKind::ConfigfsTsm)
        }
    }
}

#[tokio::test]
async fn configfs_tsm_quote_through_fake_configfs() {
    let fake = FakeConfigfs::new("tdx_guest");
    let data = tempfile::tempdir().unwrap();
    let att = Attestation::open(&fake.config(), data.path(), CONFIG)
        .await
        .unwrap();
    assert_eq!(att.source(), SourceKind::ConfigfsTsm);
    fake.stage(&att.report_data(None));
    let body = att.quote_body(None).await.unwrap();
    assert_eq!(fake.inblob(), att.report_data(None));
    let doc = QuoteDocument::from_bytes(body.to_string().as_bytes()).unwrap();
    let parsed = ParsedQuote::parse(&doc.quote).unwrap();
    let b = check_binding(
        parsed.body.report_data(),
        &BindingExpectations {
            signer: Some(att.signer().0.0),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(b.layout, Layout::AsciiAddress);
    assert!(doc.event_log.is_none() && doc.tcb_info.is_none());

    let nonce = [0xee; 32];
    fake.stage(&att.report_data(Some(nonce)));
    att.quote_body(Some(nonce)).await.unwrap();
    assert_eq!(
        fake.inblob(),
        AttestationDocument {
            dataset_key_hash: Some(att.tee_keys().hash()),
            ..AttestationDocument::new(att.signer(), nonce.into(), CONFIG)
        }
        .report_data()
    );
}

#[tokio::test]
async fn configfs_tsm_refuses_a_quote_for_other_report_data_or_none() {
    let fake = FakeConfigfs::new("tdx_guest");
    let data = tempfile::tempdir().unwrap();
    let att = Attestation::open(&fake.config(), data.path(), CONFIG)
        .await
        .unwrap();
    let err = att.quote_body(None).await.unwrap_err();
    assert!(err.to_string().contains("empty quote"), "{err}");
    fake.stage(&[0x42; 64]);
    let err = att.quote_body(None).await.unwrap_err();
    assert!(
        matches!(err, AttestError::ReportDataMismatch { .. }),
        "{err}"
    );
    std::fs::write(fake.entry().join("generation"), "not a number").unwrap();
    let err = att.quote_body(None).await.unwrap_err();
    assert!(err.to_string().contains("generation"), "{err}");
}

#[tokio::test]
async fn configfs_tsm_key_is_new_at_every_start_and_the_change_is_reported() {
    let fake = FakeConfigfs::new("tdx_guest");
    let data = tempfile::tempdir().unwrap();
    let a = Attestation::open(&fake.config(), data.path(), CONFIG)
        .await
        .unwrap();
    let first = a.signer();
    drop(a);
    let b = Attestation::open(&fake.config(), data.path(), CONFIG)
        .await
        .unwrap();
    assert_ne!(b.signer(), first);
    assert_eq!(b.previous_signer(), Some(first));
}

#[tokio::test]
async fn configfs_tsm_refuses_a_missing_dir_or_a_foreign_provider() {
    let data = tempfile::tempdir().unwrap();
    let cfg = AttestConfig {
        tsm_dir: data.path().join("no-configfs"),
        ..AttestConfig::new(SourceKind::ConfigfsTsm)
    };
    let err = Attestation::open(&cfg, data.path(), CONFIG)
        .await
        .unwrap_err();
    assert!(matches!(err, AttestError::Tsm { .. }), "{err}");
    let sev = FakeConfigfs::new("sev_guest");
    let err = Attestation::open(&sev.config(), data.path(), CONFIG)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("sev_guest"), "{err}");
}

/// The release image forbids the dev source through the environment. (This binary has no other
/// dev-source test, so setting the variable process-wide cannot affect another test.)
#[tokio::test]
#[allow(unsafe_code)]
async fn dev_source_is_refused_where_the_image_forbids_it() {
    let data = tempfile::tempdir().unwrap();
    // SAFETY: no other thread of this test binary reads this variable.
    unsafe { std::env::set_var(sealtune_worker::attest::FORBID_DEV_ENV, "1") };
    let err = Attestation::open(&AttestConfig::new(SourceKind::Dev), data.path(), CONFIG)
        .await
        .unwrap_err();
    assert!(matches!(err, AttestError::DevForbidden), "{err}");
    assert!(!data.path().join("tee-signer.dev.key").exists());
}

/// The verifier reads the measured config hash from the `sealtune-config` RTMR3 event and the
/// attestation document, refuses a document that disagrees with RTMR3, and a policy pins it.
#[tokio::test]
async fn the_verifier_reads_and_pins_the_config_hash_from_rtmr3_and_the_document() {
    use sealtune_verifier::policy::Policy;
    use sealtune_verifier::verify::{VerifyOptions, verify_document};
    let dir = tempfile::tempdir().unwrap();
    let sock = dstack_fixture_server(dir.path(), agent()).await;
    let att = Attestation::open(&dstack_config(&sock), dir.path(), CONFIG)
        .await
        .unwrap();
    let body = att.quote_body(Some([7; 32])).await.unwrap();
    let link = |body: &serde_json::Value, policy: &str, name: &str| {
        let doc = QuoteDocument::from_bytes(body.to_string().as_bytes()).unwrap();
        let opts = VerifyOptions {
            policy: Some(Policy::from_toml("p.toml", policy).unwrap()),
            ..Default::default()
        };
        let rep = verify_document(&doc, &opts);
        rep.links
            .iter()
            .find(|l| l.name == name)
            .map(|l| (l.ok, l.detail.clone()))
            .unwrap_or_else(|| panic!("no {name} link: {}", rep.render_human()))
    };
    let pinned = format!(
        "[app]\napp_events = [\"LIUM_MINER_HOTKEY\"]\nconfig_hashes = [\"{}\"]\n",
        hex::encode(CONFIG)
    );
    let (ok, detail) = link(&body, &pinned, "event log");
    assert!(ok, "{detail}");
    let (ok, detail) = link(&body, &pinned, "config hash");
    assert!(ok && detail.contains(&hex::encode(CONFIG)), "{detail}");
    let (ok, detail) = link(&body, &pinned, "policy config");
    assert!(ok, "{detail}");

    let other = pinned.replace(&hex::encode(CONFIG), &"ab".repeat(32));
    let (ok, detail) = link(&body, &other, "policy config");
    assert!(!ok && detail.contains("is not one of"), "{detail}");

    // A document that declares another config than RTMR3 records.
    let mut lying = body.clone();
    lying["attestation_document"]["config_hash"] = format!("0x{}", "cd".repeat(32)).into();
    let (ok, detail) = link(&lying, &pinned, "config hash");
    assert!(
        !ok && detail.contains("RTMR3 records config hash"),
        "{detail}"
    );
}
