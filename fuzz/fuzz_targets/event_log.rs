//! Fuzz the dstack event log: parsing (lenient field types), the runtime-event digest rules (a given
//! V1/V2 digest, an empty digest computed as V1 or V2 by the `version` field, a V2 `preimage`, a
//! `hash_input`), the system-event order rules and the RTMR0–3 replay. The input is a bare event log
//! (a JSON array) or a GetQuote document holding one in `event_log`, so the real GetQuote fixtures of
//! both dstack formats (digests given; digests empty) seed it. Properties: never a panic, and a log
//! that replays verifies against the registers it replays to.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sealtune_verifier::event_log::{EventPolicy, parse_event_log, replay, verify_event_log};

fn log_text(data: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(data).ok()?;
    if text.trim_start().starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        return v.get("event_log")?.as_str().map(str::to_owned);
    }
    Some(text.to_owned())
}

fuzz_target!(|data: &[u8]| {
    let Some(text) = log_text(data) else { return };
    let Ok(events) = parse_event_log(&text) else {
        return;
    };
    // Every non-system event is allowed, so that the order and digest rules are reached.
    let policy = EventPolicy {
        allowed_app_events: events.iter().map(|e| e.name.clone()).collect(),
    };
    let _ = verify_event_log(&events, &[[0u8; 48]; 4], &policy);
    if let Ok((summary, rtmr)) = replay(&events, &policy) {
        let _ = summary.decoded();
        let verified = verify_event_log(&events, &rtmr, &policy);
        assert_eq!(verified.as_ref().ok(), Some(&summary), "{verified:?}");
    }
});
