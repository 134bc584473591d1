//! dstack event log: lenient parsing, digest recomputation, RTMR0–3 replay (PROTOCOL.md §7).
//!
//! Firmware events (RTMR0–2) are replayed as given. dstack runtime events (`event_type`
//! 0x08000001, RTMR3) have their digest computed from their name and payload by the rules of
//! [`sealtune_protocol::dstack`]: V1 `SHA384(le32(0x08000001) ‖ ":" ‖ name ‖ ":" ‖ payload)` (an event
//! without a `version` field), or V2 `SHA384(JCS({"name", "payload" (hex), "type": 134217729}))`
//! (`"version": 2`, or an older agent's V2 `preimage`). A digest the log gives must equal the computed
//! one; an empty digest (current dstack strips them from GetQuote answers) is replaced by it. A
//! `preimage` or `hash_input` the log gives must be the exact bytes of that rule.
//!
//! System events must be in boot order, each at most once (`init-script-hash` may repeat); their
//! payloads are decoded into the [`EventLogSummary`]. Application events must be allowed by the
//! [`EventPolicy`] and come after `system-ready`. The sealtune worker's own `sealtune-config` event
//! (its measured config hash) is always known: after `system-ready`, at most once, 32 bytes
//! ([`EventLogSummary::config_hash`]).

use sealtune_protocol::attestation::CONFIG_EVENT;
use sealtune_protocol::dstack::RuntimeEventVersion;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha384};

/// Event type of dstack runtime events.
pub const DSTACK_RUNTIME_EVENT_TYPE: u32 = sealtune_protocol::dstack::RUNTIME_EVENT_TYPE;

/// dstack system events, in the order a boot emits them (dstack's `dstack-util` `measure_app_info`
/// and key provisioning; most are optional: older images emit fewer). `system-ready` is last.
pub const SYSTEM_EVENTS: &[&str] = &[
    "system-preparing",
    "app-id",
    "compose-hash",
    "init-script-hash",
    "gpu-policy-hash",
    "gpu-attestation",
    "instance-id",
    "boot-mr-done",
    "mr-kms",
    "os-image-hash",
    "key-provider",
    "storage-fs",
    "system-ready",
];

/// System events a boot may emit more than once (one `init-script-hash` per init script).
pub const REPEATABLE_SYSTEM_EVENTS: &[&str] = &["init-script-hash"];

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
    #[error("RTMR{index} replayed from the event log is {replayed}, the quote has {quoted}{hint}")]
    Rtmr {
        /// Register.
        index: usize,
        /// Replayed value (hex).
        replayed: String,
        /// Quote's value (hex).
        quoted: String,
        /// For RTMR3, the events whose digests the log left empty (computed here from name and
        /// payload): a changed name, payload or order among them shows only as this mismatch.
        hint: String,
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
    /// Digest (48 bytes, or empty: current dstack leaves runtime events' digests out).
    #[serde(serialize_with = "ser_hex")]
    pub digest: Vec<u8>,
    /// Event name (runtime events).
    pub name: String,
    /// Payload.
    #[serde(serialize_with = "ser_hex")]
    pub payload: Vec<u8>,
    /// The `version` field (1 or 2: the digest rule), when sent.
    pub version: Option<u64>,
    /// V2 preimage (the canonical JSON as text), when an older agent sends it.
    pub preimage: Option<String>,
    /// `hash_input`: the exact bytes the digest is taken over (hex in the log), when sent.
    #[serde(serialize_with = "ser_hex_opt")]
    pub hash_input: Option<Vec<u8>>,
}

fn ser_hex_opt<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_some(&hex::encode(v)),
        None => s.serialize_none(),
    }
}

fn ser_hex<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

/// What a good event log says: its size, the decoded system events, the application events and the
/// replayed registers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EventLogSummary {
    /// Number of events.
    pub events: usize,
    /// Runtime events whose digest the log left empty (computed from name and payload).
    pub computed_digests: usize,
    /// `app-id` payload (hex).
    pub app_id: Option<String>,
    /// `instance-id` payload (hex).
    pub instance_id: Option<String>,
    /// `compose-hash` payload (hex): sha256 of the app-compose.
    pub compose_hash: Option<String>,
    /// `init-script-hash` payloads (hex), in order.
    pub init_script_hashes: Vec<String>,
    /// `gpu-policy-hash` payload (hex): sha256 of the app's GPU policy.
    pub gpu_policy_hash: Option<String>,
    /// `gpu-attestation` payload (text: dstack's JSON summary of the GPU evidence it verified).
    pub gpu_attestation: Option<String>,
    /// `mr-kms` payload (hex): the KMS's aggregated measurement.
    pub mr_kms: Option<String>,
    /// `os-image-hash` payload (hex).
    pub os_image_hash: Option<String>,
    /// `key-provider` payload (text).
    pub key_provider: Option<String>,
    /// The `id` of the `key-provider` payload (`{"name": …, "id": …}`), when it has one.
    pub key_provider_id: Option<String>,
    /// `storage-fs` payload (text).
    pub storage_fs: Option<String>,
    /// Application events (name, payload as text or hex).
    pub app_events: Vec<(String, String)>,
    /// The worker's measured config hash, from its one `sealtune-config` event (hex).
    pub config_hash: Option<String>,
    /// Replayed RTMR0–3 (hex).
    pub rtmr: Vec<String>,
}

impl EventLogSummary {
    /// The decoded system events as (name, value) lines, in boot order, for the human report.
    pub fn decoded(&self) -> Vec<(&'static str, String)> {
        let one = [
            ("app-id", &self.app_id),
            ("compose-hash", &self.compose_hash),
            ("gpu-policy-hash", &self.gpu_policy_hash),
            ("gpu-attestation", &self.gpu_attestation),
            ("instance-id", &self.instance_id),
            ("mr-kms", &self.mr_kms),
            ("os-image-hash", &self.os_image_hash),
            ("key-provider", &self.key_provider),
            ("storage-fs", &self.storage_fs),
        ];
        let mut out: Vec<(&'static str, String)> = Vec::new();
        for (name, value) in one {
            if let Some(v) = value {
                out.push((name, v.clone()));
            }
            if name == "compose-hash" {
                out.extend(
                    self.init_script_hashes
                        .iter()
                        .map(|h| ("init-script-hash", h.clone())),
                );
            }
        }
        out
    }
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
            let version = match m.get("version") {
                None | Some(serde_json::Value::Null) => None,
                Some(_) => Some(num("version")?),
            };
            let hash_input = match m.get("hash_input") {
                None | Some(serde_json::Value::Null) => None,
                Some(_) => Some(hexf("hash_input")?),
            };
            Ok(Event {
                imr,
                event_type,
                digest: hexf("digest")?,
                name: text("event")?,
                payload: hexf("event_payload")?,
                version,
                preimage: (!preimage.is_empty()).then_some(preimage),
                hash_input,
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
    sealtune_protocol::dstack::runtime_event_preimage_v2(name, payload)
}

/// V2 digest of a runtime event.
pub fn runtime_digest_v2(name: &str, payload: &[u8]) -> [u8; 48] {
    sealtune_protocol::dstack::runtime_event_digest_v2(name, payload)
}

/// The worker's `sealtune-config` event: after `system-ready`, exactly once, 32 bytes.
fn record_config(
    summary: &mut EventLogSummary,
    index: usize,
    e: &Event,
    order: &SystemOrder,
) -> Result<(), EventLogError> {
    if !order.ready() {
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
    let (summary, rtmr) = replay(events, policy)?;
    for (index, (replayed, quoted)) in rtmr.iter().zip(quote_rtmrs.iter()).enumerate() {
        if replayed != quoted {
            return Err(EventLogError::Rtmr {
                index,
                replayed: hex::encode(replayed),
                quoted: hex::encode(quoted),
                hint: if index == 3 {
                    computed_hint(events)
                } else {
                    String::new()
                },
            });
        }
    }
    Ok(summary)
}

/// Check the log's structure and digests and replay it: the summary and RTMR0–3 as the log makes
/// them (compared with nothing: [`verify_event_log`] compares them with a quote's).
pub fn replay(
    events: &[Event],
    policy: &EventPolicy,
) -> Result<(EventLogSummary, [[u8; 48]; 4]), EventLogError> {
    let mut summary = EventLogSummary {
        events: events.len(),
        ..Default::default()
    };
    let mut order = SystemOrder::default();
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
            let d = runtime_digest(index, e)?;
            if e.digest.is_empty() {
                summary.computed_digests = summary.computed_digests.saturating_add(1);
            }
            if order.accept(index, &e.name)? {
                record_system(&mut summary, e);
            } else if e.name == CONFIG_EVENT {
                record_config(&mut summary, index, e, &order)?;
            } else {
                check_app_event(index, e, policy, &order)?;
                summary
                    .app_events
                    .push((e.name.clone(), payload_text(&e.payload)));
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
    summary.rtmr = rtmr.iter().map(hex::encode).collect();
    Ok((summary, rtmr))
}

/// The boot-order state of the system events seen so far.
#[derive(Default)]
struct SystemOrder {
    seen: [bool; SYSTEM_EVENTS.len()],
    last: Option<usize>,
}

impl SystemOrder {
    /// `Ok(true)` for a system event in order (recorded), `Ok(false)` for an application event.
    fn accept(&mut self, index: usize, name: &str) -> Result<bool, EventLogError> {
        let Some(pos) = SYSTEM_EVENTS.iter().position(|n| *n == name) else {
            return Ok(false);
        };
        let seen = self.seen.get(pos).copied().unwrap_or(false);
        if seen && !REPEATABLE_SYSTEM_EVENTS.contains(&name) {
            return Err(EventLogError::Duplicate {
                index,
                name: name.to_owned(),
            });
        }
        if let Some(last) = self.last.filter(|l| *l > pos) {
            return Err(EventLogError::Order {
                index,
                name: name.to_owned(),
                after: SYSTEM_EVENTS.get(last).copied().unwrap_or("?").into(),
            });
        }
        if let Some(s) = self.seen.get_mut(pos) {
            *s = true;
        }
        self.last = Some(pos);
        Ok(true)
    }

    fn ready(&self) -> bool {
        self.seen.last().copied().unwrap_or(false)
    }
}

/// An application event must be allowed by the policy and come after `system-ready`.
fn check_app_event(
    index: usize,
    e: &Event,
    policy: &EventPolicy,
    order: &SystemOrder,
) -> Result<(), EventLogError> {
    if !policy.allowed_app_events.contains(&e.name) {
        return Err(EventLogError::Unknown {
            index,
            name: e.name.clone(),
            detail: " by the policy",
        });
    }
    if !order.ready() {
        return Err(EventLogError::Unknown {
            index,
            name: e.name.clone(),
            detail: " before system-ready",
        });
    }
    Ok(())
}

/// The RTMR3 hint: which runtime events had no digest in the log.
fn computed_hint(events: &[Event]) -> String {
    let names: Vec<String> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.event_type == DSTACK_RUNTIME_EVENT_TYPE && e.digest.is_empty())
        .map(|(i, e)| format!("{i} {}", e.name))
        .collect();
    if names.is_empty() {
        return String::new();
    }
    format!(
        " (the log gives no digest for events [{}]: computed here from name and payload, so a \
         changed name, payload or order of one of them shows as this mismatch)",
        names.join(", ")
    )
}

/// The digest rule an event follows: its `version` field; else the one its `preimage` or
/// `hash_input` is the preimage of (an older agent's V2 `preimage`); else V1, dstack's default.
fn event_version(index: usize, e: &Event) -> Result<RuntimeEventVersion, EventLogError> {
    if let Some(v) = e.version {
        return RuntimeEventVersion::from_number(v).ok_or_else(|| EventLogError::Field {
            index,
            field: "version",
            reason: format!("{v} is not a dstack event log version (1 or 2)"),
        });
    }
    let v2 = || RuntimeEventVersion::V2.preimage(&e.name, &e.payload);
    if e.preimage.is_some() || e.hash_input.as_deref() == Some(v2().as_slice()) {
        return Ok(RuntimeEventVersion::V2);
    }
    Ok(RuntimeEventVersion::V1)
}

/// The digest of a runtime event, computed from its name and payload; the log's digest, preimage
/// and `hash_input`, where given, must agree with it.
fn runtime_digest(index: usize, e: &Event) -> Result<[u8; 48], EventLogError> {
    let mismatch = |reason: String| EventLogError::DigestMismatch {
        index,
        name: e.name.clone(),
        reason,
    };
    let version = event_version(index, e)?;
    let preimage = version.preimage(&e.name, &e.payload);
    if let Some(p) = &e.preimage
        && p.as_bytes()
            != RuntimeEventVersion::V2
                .preimage(&e.name, &e.payload)
                .as_slice()
    {
        return Err(mismatch(format!(
            "V2 preimage {p:?} is not the canonical {:?}",
            runtime_preimage_v2(&e.name, &e.payload)
        )));
    }
    if let Some(h) = &e.hash_input
        && *h != preimage
    {
        return Err(mismatch(format!(
            "hash_input {} is not the {version} preimage {} of this event",
            hex::encode(h),
            hex::encode(&preimage)
        )));
    }
    let computed: [u8; 48] = Sha384::digest(&preimage).into();
    if e.digest.is_empty() || e.digest.as_slice() == computed.as_slice() {
        return Ok(computed);
    }
    // A digest without a version field may follow either rule.
    if e.version.is_none() {
        let v2 = runtime_digest_v2(&e.name, &e.payload);
        if e.digest.as_slice() == v2.as_slice() {
            return Ok(v2);
        }
    }
    Err(mismatch(format!(
        "given {}, {version} recomputed {}",
        hex::encode(&e.digest),
        hex::encode(computed)
    )))
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
        "init-script-hash" => summary.init_script_hashes.push(hex::encode(&e.payload)),
        "gpu-policy-hash" => summary.gpu_policy_hash = hexp,
        "gpu-attestation" => summary.gpu_attestation = Some(payload_text(&e.payload)),
        "mr-kms" => summary.mr_kms = hexp,
        "os-image-hash" => summary.os_image_hash = hexp,
        "key-provider" => {
            summary.key_provider = Some(payload_text(&e.payload));
            summary.key_provider_id = serde_json::from_slice::<serde_json::Value>(&e.payload)
                .ok()
                .and_then(|v| v.get("id")?.as_str().map(str::to_owned));
        }
        "storage-fs" => summary.storage_fs = Some(payload_text(&e.payload)),
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
