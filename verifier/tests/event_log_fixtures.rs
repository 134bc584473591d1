//! Event log replay on the real dstack GetQuote response, and the rules it must follow.
mod common;

use common::*;
use sealtune_verifier::event_log::{
    DSTACK_RUNTIME_EVENT_TYPE, Event, EventLogError, EventPolicy, check_compose_hash, extend,
    parse_event_log, runtime_digest_v1, runtime_preimage_v2, verify_event_log,
};
use sealtune_verifier::quote::ParsedQuote;
use sealtune_verifier::report_data::BindingError;
use sealtune_verifier::verify::{QuoteDocument, VerifyOptions, verify_document};
use sha2::{Digest, Sha256};

fn dstack() -> (Vec<Event>, [[u8; 48]; 4]) {
    let v = dstack_report();
    let quote = hex::decode(v["quote"].as_str().unwrap()).unwrap();
    let parsed = ParsedQuote::parse(&quote).unwrap();
    let events = parse_event_log(v["event_log"].as_str().unwrap()).unwrap();
    (events, parsed.body.td().unwrap().rtmr)
}

fn fixture_policy() -> EventPolicy {
    EventPolicy {
        allowed_app_events: vec!["LIUM_MINER_HOTKEY".into()],
    }
}

fn index_of(events: &[Event], name: &str) -> usize {
    events.iter().position(|e| e.name == name).unwrap()
}

#[test]
fn dstack_event_log_replays_into_the_quotes_rtmr0_to_3() {
    let (events, rtmr) = dstack();
    let s = verify_event_log(&events, &rtmr, &fixture_policy()).unwrap();
    assert_eq!(s.events, 28);
    assert_eq!(
        s.app_id.as_deref(),
        Some("3763bc34552cf3a27ff71ad5f7a90471562a1a2d")
    );
    assert_eq!(
        s.instance_id.as_deref(),
        Some("c3714eb66990eace777b4e664c16e09375dec4c9")
    );
    assert!(s.key_provider.as_deref().unwrap().contains("local-sgx"));
    assert_eq!(s.app_events.len(), 1);
}

#[test]
fn imr_given_as_a_string_is_read() {
    let log = r#"[{"imr":"3","event_type":"134217729","digest":"","event":"system-preparing","event_payload":"","preimage":"{\"name\":\"system-preparing\",\"payload\":\"\",\"type\":134217729}"}]"#;
    let events = parse_event_log(log).unwrap();
    assert_eq!(events[0].imr, 3);
    assert_eq!(events[0].event_type, DSTACK_RUNTIME_EVENT_TYPE);
}

#[test]
fn v2_digest_is_recomputed_from_the_canonical_preimage() {
    let name = "system-preparing";
    let pre = runtime_preimage_v2(name, b"");
    assert_eq!(
        pre,
        r#"{"name":"system-preparing","payload":"","type":134217729}"#
    );
    let log = serde_json::json!([{
        "imr": 3, "event_type": DSTACK_RUNTIME_EVENT_TYPE, "digest": "", "event": name,
        "event_payload": "", "preimage": pre,
    }])
    .to_string();
    let events = parse_event_log(&log).unwrap();
    let mut rtmr3 = [0u8; 48];
    extend(&mut rtmr3, &sha2::Sha384::digest(pre.as_bytes()));
    let rtmrs = [[0u8; 48], [0u8; 48], [0u8; 48], rtmr3];
    verify_event_log(&events, &rtmrs, &EventPolicy::default()).unwrap();

    let mut forged = events.clone();
    forged[0].preimage = Some(r#"{"name":"app-id","payload":"","type":134217729}"#.into());
    assert!(matches!(
        verify_event_log(&forged, &rtmrs, &EventPolicy::default()),
        Err(EventLogError::DigestMismatch { .. })
    ));
}

#[test]
fn event_whose_digest_does_not_match_is_rejected() {
    let (mut events, rtmr) = dstack();
    let i = index_of(&events, "compose-hash");
    events[i].payload[0] ^= 1;
    assert!(matches!(
        verify_event_log(&events, &rtmr, &fixture_policy()),
        Err(EventLogError::DigestMismatch { .. })
    ));
}

#[test]
fn unknown_application_event_is_rejected() {
    let (events, rtmr) = dstack();
    let err = verify_event_log(&events, &rtmr, &EventPolicy::default()).unwrap_err();
    assert!(
        matches!(&err, EventLogError::Unknown { name, .. } if name == "LIUM_MINER_HOTKEY"),
        "{err}"
    );
}

#[test]
fn duplicated_system_event_is_rejected() {
    let (mut events, rtmr) = dstack();
    let i = index_of(&events, "app-id");
    let dup = events[i].clone();
    events.insert(i + 1, dup);
    assert!(matches!(
        verify_event_log(&events, &rtmr, &fixture_policy()),
        Err(EventLogError::Duplicate { .. })
    ));
}

#[test]
fn reordered_system_events_are_rejected() {
    let (mut events, rtmr) = dstack();
    let a = index_of(&events, "app-id");
    let c = index_of(&events, "compose-hash");
    events.swap(a, c);
    assert!(matches!(
        verify_event_log(&events, &rtmr, &fixture_policy()),
        Err(EventLogError::Order { .. })
    ));
}

#[test]
fn reordered_firmware_events_do_not_replay() {
    let (mut events, rtmr) = dstack();
    events.swap(0, 1);
    assert!(matches!(
        verify_event_log(&events, &rtmr, &fixture_policy()),
        Err(EventLogError::Rtmr { index: 0, .. })
    ));
}

#[test]
fn dropped_event_does_not_replay() {
    let (mut events, rtmr) = dstack();
    events.pop();
    assert!(matches!(
        verify_event_log(&events, &rtmr, &fixture_policy()),
        Err(EventLogError::Rtmr { index: 3, .. })
    ));
}

#[test]
fn application_event_before_system_ready_is_rejected() {
    let (mut events, rtmr) = dstack();
    let app = events.pop().unwrap();
    let i = index_of(&events, "boot-mr-done");
    events.insert(i, app);
    assert!(matches!(
        verify_event_log(&events, &rtmr, &fixture_policy()),
        Err(EventLogError::Unknown { .. })
    ));
}

fn runtime_event(name: &str, payload: &[u8]) -> Event {
    Event {
        imr: 3,
        event_type: DSTACK_RUNTIME_EVENT_TYPE,
        digest: runtime_digest_v1(name, payload).to_vec(),
        name: name.into(),
        payload: payload.to_vec(),
        version: None,
        preimage: None,
        hash_input: None,
    }
}

#[test]
fn compose_hash_event_equals_sha256_of_app_compose() {
    let compose = r#"{"manifest_version":2,"name":"sealtune-worker"}"#;
    let events = vec![runtime_event(
        "compose-hash",
        &Sha256::digest(compose.as_bytes()),
    )];
    let tcb_info = serde_json::json!({ "app_compose": compose }).to_string();
    check_compose_hash(&events, &tcb_info).unwrap();
}

#[test]
fn compose_mismatch_is_rejected() {
    let (events, _) = dstack();
    let tcb_info = serde_json::json!({ "app_compose": "{\"name\":\"not-this-app\"}" }).to_string();
    assert!(matches!(
        check_compose_hash(&events, &tcb_info),
        Err(EventLogError::ComposeMismatch { .. })
    ));
}

#[test]
fn dstack_document_json_report_data_matches_and_event_log_replays() {
    let doc = QuoteDocument::from_bytes(&fixture("tdx/dstack/quote-report.json")).unwrap();
    let opts = VerifyOptions {
        event_policy: fixture_policy(),
        ..Default::default()
    };
    let report = verify_document(&doc, &opts);
    let get = |n: &str| report.links.iter().find(|l| l.name == n).unwrap();
    assert!(
        get("quote signature").ok,
        "{}",
        get("quote signature").detail
    );
    assert!(
        get("JSON report_data").ok,
        "{}",
        get("JSON report_data").detail
    );
    assert!(get("event log").ok, "{}", get("event log").detail);
    // No tcb_info: the compose hash is the replayed compose-hash event's.
    assert!(
        get("compose hash")
            .detail
            .contains("from the compose-hash event"),
        "{}",
        get("compose hash").detail
    );
    assert!(get("compose hash").ok);
    // No collateral, report_data 0x1234… binds no signer: not verified.
    assert!(!get("DCAP (dcap-qvl)").ok);
    assert!(!get("signer binding").ok);
    assert!(!report.verified);
}

#[test]
fn wrong_json_report_data_is_rejected() {
    let mut v = dstack_report();
    v["report_data"] = serde_json::Value::String(format!("5678{}", "0".repeat(124)));
    let doc = QuoteDocument::from_bytes(v.to_string().as_bytes()).unwrap();
    let report = verify_document(&doc, &VerifyOptions::default());
    let l = report
        .links
        .iter()
        .find(|l| l.name == "JSON report_data")
        .unwrap();
    assert!(!l.ok);
    assert_eq!(l.detail, BindingError::JsonMismatch.to_string());
}
