//! Today's dstack (issue 17 item 5): a real GetQuote answer of dstack 0.6 whose RTMR3 runtime events
//! carry an empty `digest` and which has no `tcb_info`. Digests are computed from type, name and
//! payload (V1, or V2 JCS), replayed, and the decoded system events are shown and pinnable.
mod common;

use clap::Parser;
use common::*;
use sealtune_protocol::dstack::{RuntimeEventVersion, runtime_event_digest_v2};
use sealtune_verifier::cli::{Cli, run};
use sealtune_verifier::event_log::{
    DSTACK_RUNTIME_EVENT_TYPE, Event, EventLogError, EventPolicy, extend, parse_event_log,
    verify_event_log,
};
use sealtune_verifier::policy::Policy;
use sealtune_verifier::quote::ParsedQuote;
use sealtune_verifier::verify::{
    QuoteDocument, VerificationReport, VerifyOptions, verify_document,
};

const FIXTURE: &str = "tdx/dstack/tdx-measurement-getquote.json";
const COMPOSE_HASH: &str = "86b0e55f2fa8e4fb69d890f14f54d5612707646e2573d54e0d2ddaaade77caa9";
const OS_IMAGE_HASH: &str = "457c385537cfbc8cca617b672ef395ae0aabb88f0fff1bc53ca887b46475dcc0";

fn getquote() -> serde_json::Value {
    serde_json::from_slice(&fixture(FIXTURE)).unwrap()
}

fn events_and_rtmrs() -> (Vec<Event>, [[u8; 48]; 4]) {
    let v = getquote();
    let quote = hex::decode(v["quote"].as_str().unwrap()).unwrap();
    let parsed = ParsedQuote::parse(&quote).unwrap();
    let events = parse_event_log(v["event_log"].as_str().unwrap()).unwrap();
    (events, parsed.body.td().unwrap().rtmr)
}

fn report(policy: Option<Policy>) -> VerificationReport {
    let doc = QuoteDocument::from_bytes(&fixture(FIXTURE)).unwrap();
    verify_document(
        &doc,
        &VerifyOptions {
            policy,
            ..Default::default()
        },
    )
}

fn link<'a>(r: &'a VerificationReport, name: &str) -> &'a sealtune_verifier::verify::Link {
    r.link(name)
        .unwrap_or_else(|| panic!("no link {name} in {:#?}", r.links))
}

#[test]
fn runtime_events_of_current_dstack_have_no_digest() {
    let (events, _) = events_and_rtmrs();
    let runtime: Vec<&Event> = events
        .iter()
        .filter(|e| e.event_type == DSTACK_RUNTIME_EVENT_TYPE)
        .collect();
    assert_eq!(runtime.len(), 9);
    assert!(
        runtime
            .iter()
            .all(|e| e.digest.is_empty() && e.version.is_none())
    );
}

#[test]
fn empty_digests_are_computed_and_replay_to_the_quotes_rtmr3() {
    let (events, rtmr) = events_and_rtmrs();
    let s = verify_event_log(&events, &rtmr, &EventPolicy::default()).unwrap();
    assert_eq!(s.events, 29);
    assert_eq!(s.computed_digests, 9);
    // The replayed RTMR3 is the quote's, byte for byte (and RTMR0–2 too).
    for (i, r) in rtmr.iter().enumerate() {
        assert_eq!(s.rtmr[i], hex::encode(r), "RTMR{i}");
    }
    let mut rtmr3 = [0u8; 48];
    for e in events.iter().filter(|e| e.imr == 3) {
        extend(
            &mut rtmr3,
            &RuntimeEventVersion::V1.digest(&e.name, &e.payload),
        );
    }
    assert_eq!(rtmr3, rtmr[3]);
}

#[test]
fn tampered_payload_fails_naming_the_event() {
    let (mut events, rtmr) = events_and_rtmrs();
    let i = events
        .iter()
        .position(|e| e.name == "compose-hash")
        .unwrap();
    events[i].payload[0] ^= 1;
    let err = verify_event_log(&events, &rtmr, &EventPolicy::default()).unwrap_err();
    assert!(matches!(err, EventLogError::Rtmr { index: 3, .. }), "{err}");
    // No digest in the log to compare with: the mismatch names the events whose digests were computed.
    let msg = err.to_string();
    assert!(msg.contains(&format!("{i} compose-hash")), "{msg}");
    assert!(msg.contains("computed here from name and payload"), "{msg}");

    // With the digest the log would have carried, the event itself is named.
    let (mut events, rtmr) = events_and_rtmrs();
    events[i].digest = RuntimeEventVersion::V1
        .digest(&events[i].name, &events[i].payload)
        .to_vec();
    events[i].payload[0] ^= 1;
    let err = verify_event_log(&events, &rtmr, &EventPolicy::default()).unwrap_err();
    assert!(
        matches!(&err, EventLogError::DigestMismatch { index, name, .. } if *index == i && name == "compose-hash"),
        "{err}"
    );
}

#[test]
fn a_version_2_event_with_an_empty_digest_is_computed_from_its_jcs_form() {
    let payload = hex::decode(COMPOSE_HASH).unwrap();
    let log = |version: u64| {
        serde_json::json!([{
            "imr": 3, "event_type": DSTACK_RUNTIME_EVENT_TYPE, "digest": "",
            "event": "compose-hash", "event_payload": COMPOSE_HASH, "version": version,
        }])
        .to_string()
    };
    let mut rtmr3 = [0u8; 48];
    extend(
        &mut rtmr3,
        &runtime_event_digest_v2("compose-hash", &payload),
    );
    let rtmrs = [[0u8; 48], [0u8; 48], [0u8; 48], rtmr3];
    let v2 = parse_event_log(&log(2)).unwrap();
    verify_event_log(&v2, &rtmrs, &EventPolicy::default()).unwrap();
    // The same event read as V1 does not replay to that register.
    let v1 = parse_event_log(&log(1)).unwrap();
    assert!(matches!(
        verify_event_log(&v1, &rtmrs, &EventPolicy::default()),
        Err(EventLogError::Rtmr { index: 3, .. })
    ));
    // A version dstack does not have is refused.
    let v3 = parse_event_log(&log(3)).unwrap();
    assert!(matches!(
        verify_event_log(&v3, &rtmrs, &EventPolicy::default()),
        Err(EventLogError::Field {
            field: "version",
            ..
        })
    ));
}

#[test]
fn hash_input_must_be_the_exact_preimage() {
    let (mut events, rtmr) = events_and_rtmrs();
    let i = events.iter().position(|e| e.name == "app-id").unwrap();
    let pre = RuntimeEventVersion::V1.preimage(&events[i].name, &events[i].payload);
    events[i].hash_input = Some(pre.clone());
    verify_event_log(&events, &rtmr, &EventPolicy::default()).unwrap();
    let mut forged = pre;
    forged.push(0);
    events[i].hash_input = Some(forged);
    assert!(matches!(
        verify_event_log(&events, &rtmr, &EventPolicy::default()),
        Err(EventLogError::DigestMismatch { index, .. }) if index == i
    ));
}

#[test]
fn system_events_of_current_dstack_are_decoded() {
    let (events, rtmr) = events_and_rtmrs();
    let s = verify_event_log(&events, &rtmr, &EventPolicy::default()).unwrap();
    assert_eq!(
        s.app_id.as_deref(),
        Some("86b0e55f2fa8e4fb69d890f14f54d5612707646e")
    );
    assert_eq!(s.compose_hash.as_deref(), Some(COMPOSE_HASH));
    assert_eq!(
        s.instance_id.as_deref(),
        Some("98a9eb355addf798c4c067396c4ae4a973e77589")
    );
    assert_eq!(s.os_image_hash.as_deref(), Some(OS_IMAGE_HASH));
    assert!(
        s.key_provider
            .as_deref()
            .unwrap()
            .starts_with(r#"{"name":"kms","id":"3059"#)
    );
    assert!(
        s.key_provider_id
            .as_deref()
            .unwrap()
            .starts_with("3059301306072a8648ce3d0201")
    );
    assert_eq!(s.storage_fs.as_deref(), Some("zfs"));
    assert!(s.app_events.is_empty());
}

/// dstack's newest boot order: init scripts and the GPU events come between compose-hash and
/// instance-id; init-script-hash may repeat, the others may not.
#[test]
fn gpu_and_init_script_events_follow_dstacks_boot_order() {
    let ev = |name: &str, payload: &str| {
        serde_json::json!({"imr": 3, "event_type": DSTACK_RUNTIME_EVENT_TYPE, "digest": "",
            "event": name, "event_payload": hex::encode(payload)})
    };
    let attestation = r#"{"version":1,"devices":1,"cc_mode":"on","devtools":false}"#;
    let names = [
        ("system-preparing", ""),
        ("app-id", "a"),
        ("compose-hash", "c"),
        ("init-script-hash", "i1"),
        ("init-script-hash", "i2"),
        ("gpu-policy-hash", "g"),
        ("gpu-attestation", attestation),
        ("instance-id", "n"),
        ("boot-mr-done", ""),
        ("system-ready", ""),
    ];
    let replay = |names: &[(&str, &str)]| {
        let log: Vec<_> = names.iter().map(|(n, p)| ev(n, p)).collect();
        let events = parse_event_log(&serde_json::to_string(&log).unwrap()).unwrap();
        let mut rtmr3 = [0u8; 48];
        for e in &events {
            extend(
                &mut rtmr3,
                &RuntimeEventVersion::V1.digest(&e.name, &e.payload),
            );
        }
        verify_event_log(
            &events,
            &[[0u8; 48], [0u8; 48], [0u8; 48], rtmr3],
            &EventPolicy::default(),
        )
    };
    let s = replay(&names).unwrap();
    assert_eq!(s.init_script_hashes.len(), 2);
    assert_eq!(
        s.gpu_policy_hash.as_deref(),
        Some(hex::encode("g").as_str())
    );
    assert_eq!(s.gpu_attestation.as_deref(), Some(attestation));

    let mut late_gpu = names.to_vec();
    let gpu = late_gpu.remove(5);
    late_gpu.insert(7, gpu); // gpu-policy-hash after instance-id
    assert!(matches!(
        replay(&late_gpu),
        Err(EventLogError::Order { name, after, .. }) if name == "gpu-policy-hash" && after == "instance-id"
    ));
    let mut twice = names.to_vec();
    twice.insert(6, ("gpu-policy-hash", "g"));
    assert!(matches!(
        replay(&twice),
        Err(EventLogError::Duplicate { name, .. }) if name == "gpu-policy-hash"
    ));
}

#[test]
fn quote_signature_and_json_report_data_of_the_fixture_hold() {
    let r = report(None);
    for name in [
        "quote signature",
        "QE binds key",
        "QE report signature",
        "TEE type",
        "TD attributes",
        "JSON report_data",
        "event log",
    ] {
        assert!(link(&r, name).ok, "{name}: {}", link(&r, name).detail);
    }
    // No collateral here, and report_data binds a dstack KMS key, not a sealtune signer.
    assert!(!r.verified);
}

#[test]
fn without_tcb_info_the_compose_hash_is_taken_from_the_replayed_event() {
    let r = report(None);
    let l = link(&r, "compose hash");
    assert!(l.ok, "{}", l.detail);
    assert!(l.detail.contains(COMPOSE_HASH), "{}", l.detail);
    assert!(
        l.detail.contains("from the compose-hash event"),
        "{}",
        l.detail
    );

    // A log that does not replay gives no compose hash to trust.
    let mut v = getquote();
    let log = v["event_log"]
        .as_str()
        .unwrap()
        .replace(COMPOSE_HASH, &"00".repeat(32));
    v["event_log"] = serde_json::Value::String(log);
    let doc = QuoteDocument::from_bytes(v.to_string().as_bytes()).unwrap();
    let r = verify_document(&doc, &VerifyOptions::default());
    assert!(!link(&r, "event log").ok);
    assert!(!link(&r, "compose hash").ok);
}

#[test]
fn policy_pins_the_compose_hash_and_system_events_of_the_replayed_log() {
    let text = format!(
        "[app]\ncompose_hashes = [\"{COMPOSE_HASH}\"]\n[events]\nos_image_hashes = [\"0x{OS_IMAGE_HASH}\"]\napp_ids = [\"86b0e55f2fa8e4fb69d890f14f54d5612707646e\"]\n"
    );
    let r = report(Some(Policy::from_toml("p.toml", &text).unwrap()));
    assert!(
        link(&r, "policy app").ok,
        "{}",
        link(&r, "policy app").detail
    );
    let l = link(&r, "policy events");
    assert!(l.ok, "{}", l.detail);
    assert!(l.detail.contains(OS_IMAGE_HASH), "{}", l.detail);

    let other = "11".repeat(32);
    let text = format!(
        "[app]\ncompose_hashes = [\"{other}\"]\n[events]\nos_image_hashes = [\"{other}\"]\nkey_provider_ids = [\"ab\"]\n"
    );
    let r = report(Some(Policy::from_toml("p.toml", &text).unwrap()));
    let app = link(&r, "policy app");
    assert!(
        !app.ok && app.detail.contains("p.toml:2 (app.compose_hashes)"),
        "{}",
        app.detail
    );
    let ev = link(&r, "policy events");
    assert!(!ev.ok, "{}", ev.detail);
    assert!(
        ev.detail.contains("os-image-hash")
            && ev.detail.contains("p.toml:4 (events.os_image_hashes)"),
        "{}",
        ev.detail
    );
    assert!(
        ev.detail.contains("p.toml:5 (events.key_provider_ids)"),
        "{}",
        ev.detail
    );
}

fn cli(args: &[&str]) -> (i32, String) {
    let cli = Cli::try_parse_from(args).unwrap();
    let mut out = Vec::new();
    let code = run(&cli, 0, &mut out).unwrap();
    (code, String::from_utf8(out).unwrap())
}

#[test]
fn decoded_events_are_shown_in_the_text_and_json_reports() {
    let file = fixtures_dir().join(FIXTURE).display().to_string();
    let (code, out) = cli(&["sealtune-verify", "quote", "--file", &file]);
    assert_eq!(code, 1); // no collateral
    assert!(out.contains("✓ event log"), "{out}");
    assert!(
        out.contains(&format!("os-image-hash    {OS_IMAGE_HASH}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("compose-hash     {COMPOSE_HASH}")),
        "{out}"
    );
    assert!(out.contains(r#"key-provider     {"name":"kms""#), "{out}");
    assert!(out.contains("storage-fs       zfs"), "{out}");

    let (_, out) = cli(&["sealtune-verify", "quote", "--file", &file, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let e = &v["event_log"];
    assert_eq!(e["os_image_hash"], OS_IMAGE_HASH);
    assert_eq!(e["compose_hash"], COMPOSE_HASH);
    assert_eq!(e["computed_digests"], 9);
    assert_eq!(e["storage_fs"], "zfs");
    assert!(e["key_provider_id"].as_str().unwrap().starts_with("3059"));
}
