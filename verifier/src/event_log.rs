//! dstack event log: lenient parsing, digest recomputation, RTMR0–3 replay (PROTOCOL.md §7).
//!
//! Firmware events (RTMR0–2) are replayed as given. dstack runtime events (`event_type`
//! 0x08000001, RTMR3) have their digest recomputed: V1 `SHA384(le32(0x08000001) ‖ ":" ‖ name ‖ ":" ‖
//! payload)`, or V2 (agents that send `digest: ""` and a `preimage`) `SHA384(JCS({"name", "payload"
//! (hex), "type": 134217729}))`. System events must be unique and in boot order; application events
//! must be allowed by the [`EventPolicy`] and come after `system-ready`. The sealtune worker's own
//! `sealtune-config` event (its measured config hash) is always known: after `system-ready`, at most
//! once, 32 bytes ([`EventLogSummary::config_hash`]).

use sealtune_protocol::attestation::CONFIG_EVENT;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha384};

/// Event type of dstack runtime events.
pub const DSTACK_RUNTIME_EVENT_TYPE: u32 = sealtune_protocol::dstack::RUNTIME_EVENT_TYPE;

/// dstack system events, in the order a boot emits them.
pub const SYSTEM_EVENTS: &[&str] = &[
    "system-preparing",
    "app-id",
    "compose-hash",
    "instance-id",
    "boot-mr-done",
    "key-provider",
    "storage-fs",
    "system-ready",
];

/// Why an event log is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventLogError {
    /// Not a JSON array of events.
    #[error("event log is not a JSON array of events: {0}")]
    Json(String),
    /// A field has an unusable value.
    #[error("event {index}: field {field} is invalid: {reason}")]
    Field {
        /// Event index.
        index: usize,
        /// Field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// An IMR outside 0..=3.
    #[error("event {index}: imr {imr} is not an RTMR (0..=3)")]
    Imr {
        /// Event index.
        index: usize,
        /// The imr.
        imr: u64,
    },
    /// A runtime event on a register other than RTMR3, or another event on RTMR3.
    #[error(
        "event {index} ({name}): runtime events belong to RTMR3 and RTMR3 holds only runtime events"
    )]
    Register {
        /// Event index.
        index: usize,
        /// Event name.
        name: String,
    },
    /// A digest that does not match its event.
    #[error("event {index} ({name}): digest does not match the event ({reason})")]
    DigestMismatch {
        /// Event index.
        index: usize,
        /// Event name.
        name: String,
        /// Details.
        reason: String,
    },
    /// A system event seen twice.
    #[error("event {index}: system event {name} is duplicated")]
    Duplicate {
        /// Event index.
        index: usize,
        /// Event name.
        name: String,
    },
    /// A system event out of boot order.
    #[error("event {index}: system event {name} comes after {after}, out of boot order")]
    Order {
        /// Event index.
        index: usize,
        /// Event name.
        name: String,
        /// The later event already seen.
        after: String,
    },
    /// An application event the policy does not allow (or one emitted before `system-ready`).
    #[error("event {index}: application event {name} is not allowed{detail}")]
    Unknown {
        /// Event index.
        index: usize,
        /// Event name.
        name: String,
        /// Extra detail.
        detail: &'static str,
    },
    /// A replayed register differs from the quote's.
    #[error("RTMR{index} replayed from the event log is {replayed}, the quote has {quoted}")]
    Rtmr {
        /// Register.
        index: usize,
        /// Replayed value (hex).
        replayed: String,
        /// Quote's value (hex).
        quoted: String,
    },
    /// `compose-hash` does not match `tcb_info.app_compose`.
    #[error("compose-hash event {event} != sha256(tcb_info.app_compose) {computed}")]
    ComposeMismatch {
        /// Event payload (hex).
        event: String,
        /// sha256 of app_compose (hex).
        computed: String,
    },
    /// No compose-hash event, or no tcb_info to compare with.
    #[error("compose hash not checkable: {0}")]
    ComposeMissing(&'static str),
}

/// Which application events are acceptable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPolicy {
    /// Names of application (non-system) runtime events that may appear after `system-ready`.
    pub allowed_app_events: Vec<String>,
}

/// One event, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Register index (0..=3).
    pub imr: u32,
    /// Event type.
    pub event_type: u32,
    /// Digest (48 bytes, or empty when the agent sends V2 preimages).
    #[serde(serialize_with = "ser_hex")]
    pub digest: Vec<u8>,
    /// Event name (runtime events).
    pub name: String,
    /// Payload.
    #[serde(serialize_with = "ser_hex")]
    pub payload: Vec<u8>,
    /// V2 preimage, when sent.
    pub preimage: Option<String>,
}

fn ser_hex<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

/// What a good event log says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EventLogSummary {
    /// Number of events.
    pub events: usize,
    /// `app-id` payload (hex).
    pub app_id: Option<String>,
    /// `instance-id` payload (hex).
    pub instance_id: Option<String>,
    /// `compose-hash` payload (hex).
    pub compose_hash: Option<String>,
    /// `key-provider` payload (text).
    pub key_provider: Option<String>,
    /// Application events (name, payload as text or hex).
    pub app_events: Vec<(String, String)>,
    /// The worker's measured config hash, from its one `sealtune-config` event (hex).
    pub config_hash: Option<String>,
    /// Replayed RTMR0–3 (hex).
    pub rtmr: Vec<String>,
}

/// Parse an event log leniently: numbers may be strings (`"imr": "3"`), hex may carry `0x`.
pub fn parse_event_log(json: &str) -> Result<Vec<Event>, EventLogError> {
    let raw: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(json).map_err(|e| EventLogError::Json(e.to_string()))?;
    raw.iter()
        .enumerate()
        .map(|(index, m)| {
            let num = |field: &'static str| -> Result<u64, EventLogError> {
                let bad = |reason: String| EventLogError::Field {
                    index,
                    field,
                    reason,
                };
                match m.get(field) {
                    Some(serde_json::Value::Number(n)) => {
                        n.as_u64().ok_or_else(|| bad(format!("{n} is not a u64")))
                    }
                    Some(serde_json::Value::String(s)) => {
                        let s = s.trim();
                        match s.strip_prefix("0x") {
                            Some(h) => u64::from_str_radix(h, 16),
                            None => s.parse(),
                        }
                        .map_err(|e| bad(format!("{s:?}: {e}")))
                    }
                    other => Err(bad(format!("expected a number, got {other:?}"))),
                }
            };
            let text = |field: &'static str| -> Result<String, EventLogError> {
                match m.get(field) {
                    None | Some(serde_json::Value::Null) => Ok(String::new()),
                    Some(serde_json::Value::String(s)) => Ok(s.clone()),
                    Some(other) => Err(EventLogError::Field {
                        index,
                        field,
                        reason: format!("expected a string, got {other}"),
                    }),
                }
            };
            let hexf = |field: &'static str| -> Result<Vec<u8>, EventLogError> {
                let s = text(field)?;
                let s = s.trim();
                hex::decode(s.strip_prefix("0x").unwrap_or(s)).map_err(|e| EventLogError::Field {
                    index,
                    field,
                    reason: e.to_string(),
                })
            };
            let imr = num("imr")?;
            let imr = u32::try_from(imr)
                .ok()
                .filter(|i| *i <= 3)
                .ok_or(EventLogError::Imr { index, imr })?;
            let event_type =
                u32::try_from(num("event_type")?).map_err(|_| EventLogError::Field {
                    index,
                    field: "event_type",
                    reason: "out of range".into(),
                })?;
            let preimage = text("preimage")?;
            Ok(Event {
                imr,
                event_type,
                digest: hexf("digest")?,
                name: text("event")?,
                payload: hexf("event_payload")?,
                preimage: (!preimage.is_empty()).then_some(preimage),
            })
        })
        .collect()
}

/// V1 digest of a runtime event (the rule lives in [`sealtune_protocol::dstack`]).
pub fn runtime_digest_v1(name: &str, payload: &[u8]) -> [u8; 48] {
    sealtune_protocol::dstack::runtime_event_digest_v1(name, payload)
}

/// The JCS canonical JSON V2 digests are taken over (keys sorted: name, payload, type).
pub fn runtime_preimage_v2(name: &str, payload: &[u8]) -> String {
    #[derive(Serialize)]
    struct Canon<'a> {
        name: &'a str,
        payload: String,
        #[serde(rename = "type")]
        ty: u32,
    }
    let canon = Canon {
        name,
        payload: hex::encode(payload),
        ty: DSTACK_RUNTIME_EVENT_TYPE,
    };
    // serde_json writes no whitespace, keeps field order (already sorted), and escapes strings the
    // way JCS does for the characters event names use.
    serde_json::to_string(&canon).unwrap_or_default()
}

/// V2 digest of a runtime event.
pub fn runtime_digest_v2(name: &str, payload: &[u8]) -> [u8; 48] {
    Sha384::digest(runtime_preimage_v2(name, payload).as_bytes()).into()
}

/// The worker's `sealtune-config` event: after `system-ready`, exactly once, 32 bytes.
fn record_config(
    summary: &mut EventLogSummary,
    index: usize,
    e: &Event,
    seen: &[bool],
) -> Result<(), EventLogError> {
    if !seen.last().copied().unwrap_or(false) {
        return Err(EventLogError::Unknown {
            index,
            name: e.name.clone(),
            detail: " before system-ready",
        });
    }
    if summary.config_hash.is_some() {
        return Err(EventLogError::Duplicate {
            index,
            name: e.name.clone(),
        });
    }
    if e.payload.len() != 32 {
        return Err(EventLogError::Field {
            index,
            field: "event_payload",
            reason: format!("a config hash is 32 bytes, not {}", e.payload.len()),
        });
    }
    summary.config_hash = Some(hex::encode(&e.payload));
    Ok(())
}

/// Extend `mr` with `digest`: `mr = SHA384(mr ‖ digest)`.
pub fn extend(mr: &mut [u8; 48], digest: &[u8]) {
    sealtune_protocol::dstack::extend_rtmr(mr, digest);
}

/// Check the log's structure and digests, replay RTMR0–3 and compare with `quote_rtmrs`.
pub fn verify_event_log(
    events: &[Event],
    quote_rtmrs: &[[u8; 48]; 4],
    policy: &EventPolicy,
) -> Result<EventLogSummary, EventLogError> {
    let mut summary = EventLogSummary {
        events: events.len(),
        ..Default::default()
    };
    let mut seen: Vec<bool> = vec![false; SYSTEM_EVENTS.len()];
    let mut last_system: Option<usize> = None;
    let mut rtmr = [[0u8; 48]; 4];
    for (index, e) in events.iter().enumerate() {
        let runtime = e.event_type == DSTACK_RUNTIME_EVENT_TYPE;
        if runtime != (e.imr == 3) {
            return Err(EventLogError::Register {
                index,
                name: e.name.clone(),
            });
        }
        let digest: Vec<u8> = if runtime {
            let d = check_runtime_digest(index, e)?;
            match SYSTEM_EVENTS.iter().position(|n| *n == e.name) {
                Some(pos) => {
                    if seen.get(pos).copied().unwrap_or(false) {
                        return Err(EventLogError::Duplicate {
                            index,
                            name: e.name.clone(),
                        });
                    }
                    if let Some(last) = last_system.filter(|l| *l > pos) {
                        return Err(EventLogError::Order {
                            index,
                            name: e.name.clone(),
                            after: SYSTEM_EVENTS.get(last).copied().unwrap_or("?").into(),
                        });
                    }
                    if let Some(s) = seen.get_mut(pos) {
                        *s = true;
                    }
                    last_system = Some(pos);
                    record_system(&mut summary, e);
                }
                None if e.name == CONFIG_EVENT => {
                    record_config(&mut summary, index, e, &seen)?;
                }
                None => {
                    if !policy.allowed_app_events.contains(&e.name) {
                        return Err(EventLogError::Unknown {
                            index,
                            name: e.name.clone(),
                            detail: " by the policy",
                        });
                    }
                    let ready = SYSTEM_EVENTS.len().saturating_sub(1);
                    if !seen.get(ready).copied().unwrap_or(false) {
                        return Err(EventLogError::Unknown {
                            index,
                            name: e.name.clone(),
                            detail: " before system-ready",
                        });
                    }
                    summary
                        .app_events
                        .push((e.name.clone(), payload_text(&e.payload)));
                }
            }
            d.to_vec()
        } else {
            e.digest.clone()
        };
        let idx = usize::try_from(e.imr).unwrap_or(usize::MAX);
        let mr = rtmr.get_mut(idx).ok_or(EventLogError::Imr {
            index,
            imr: u64::from(e.imr),
        })?;
        extend(mr, &digest);
    }
    for (index, (replayed, quoted)) in rtmr.iter().zip(quote_rtmrs.iter()).enumerate() {
        if replayed != quoted {
            return Err(EventLogError::Rtmr {
                index,
                replayed: hex::encode(replayed),
                quoted: hex::encode(quoted),
            });
        }
    }
    summary.rtmr = rtmr.iter().map(hex::encode).collect();
    Ok(summary)
}

fn check_runtime_digest(index: usize, e: &Event) -> Result<[u8; 48], EventLogError> {
    let mismatch = |reason: String| EventLogError::DigestMismatch {
        index,
        name: e.name.clone(),
        reason,
    };
    if e.digest.is_empty() {
        let canon = runtime_preimage_v2(&e.name, &e.payload);
        match &e.preimage {
            None => Err(mismatch("empty digest and no preimage".into())),
            Some(p) if *p != canon => Err(mismatch(format!(
                "V2 preimage {p:?} is not the canonical {canon:?}"
            ))),
            Some(_) => Ok(runtime_digest_v2(&e.name, &e.payload)),
        }
    } else {
        let v1 = runtime_digest_v1(&e.name, &e.payload);
        if e.digest.as_slice() == v1.as_slice() {
            Ok(v1)
        } else {
            Err(mismatch(format!(
                "given {}, V1 recomputed {}",
                hex::encode(&e.digest),
                hex::encode(v1)
            )))
        }
    }
}

fn payload_text(p: &[u8]) -> String {
    match core::str::from_utf8(p) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => s.to_string(),
        _ => hex::encode(p),
    }
}

fn record_system(summary: &mut EventLogSummary, e: &Event) {
    let hexp = Some(hex::encode(&e.payload));
    match e.name.as_str() {
        "app-id" => summary.app_id = hexp,
        "instance-id" => summary.instance_id = hexp,
        "compose-hash" => summary.compose_hash = hexp,
        "key-provider" => summary.key_provider = Some(payload_text(&e.payload)),
        _ => {}
    }
}

/// Check the `compose-hash` event against `sha256(tcb_info.app_compose)`.
///
/// `tcb_info` is the JSON string the worker serves (PROTOCOL.md §5).
pub fn check_compose_hash(events: &[Event], tcb_info: &str) -> Result<String, EventLogError> {
    let info: serde_json::Value = serde_json::from_str(tcb_info)
        .map_err(|_| EventLogError::ComposeMissing("tcb_info is not JSON"))?;
    let compose =
        info.get("app_compose")
            .and_then(|v| v.as_str())
            .ok_or(EventLogError::ComposeMissing(
                "tcb_info has no app_compose string",
            ))?;
    let event = events
        .iter()
        .find(|e| e.event_type == DSTACK_RUNTIME_EVENT_TYPE && e.name == "compose-hash")
        .ok_or(EventLogError::ComposeMissing("no compose-hash event"))?;
    let computed = hex::encode(Sha256::digest(compose.as_bytes()));
    let event_hex = hex::encode(&event.payload);
    if computed == event_hex {
        Ok(computed)
    } else {
        Err(EventLogError::ComposeMismatch {
            event: event_hex,
            computed,
        })
    }
}
