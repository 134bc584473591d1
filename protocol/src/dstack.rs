//! dstack's runtime-event measurement rules: how an event an application (or dstack itself) emits at
//! run time extends RTMR3. The worker's dev attestation source writes events with them and the verifier
//! replays them with them, so the two cannot drift.
//!
//! dstack has two digest rules (`EventLogVersion` in dstack's `dstack-types`):
//! - V1 `SHA384(le32(0x08000001) ‖ ":" ‖ name ‖ ":" ‖ payload)`, the default (an event without a
//!   `version` field is V1);
//! - V2 `SHA384(JCS({"name": name, "payload": hex(payload), "type": 134217729}))`, the RFC 8785
//!   canonical JSON of the event.
//!
//! ```
//! use sealtune_protocol::dstack::{extend_rtmr, runtime_event_digest_v1};
//! let mut rtmr3 = [0u8; 48];
//! extend_rtmr(&mut rtmr3, &runtime_event_digest_v1("system-ready", b""));
//! assert_ne!(rtmr3, [0u8; 48]);
//! ```

use sha2::{Digest as _, Sha384};

/// The TCG event type dstack gives runtime events (`0x08000001`).
pub const RUNTIME_EVENT_TYPE: u32 = 0x0800_0001;

/// The V1 digest of a runtime event: `SHA384(le32(0x08000001) ‖ ":" ‖ name ‖ ":" ‖ payload)`.
pub fn runtime_event_digest_v1(name: &str, payload: &[u8]) -> [u8; 48] {
    Sha384::digest(runtime_event_preimage_v1(name, payload)).into()
}

/// The two digest rules of dstack runtime events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuntimeEventVersion {
    /// `SHA384(le32(type) ‖ ":" ‖ name ‖ ":" ‖ payload)`.
    V1,
    /// `SHA384` of the JCS canonical JSON `{"name", "payload" (hex), "type"}`.
    V2,
}

impl RuntimeEventVersion {
    /// The version a `version` field of an event log names (1 or 2).
    pub fn from_number(n: u64) -> Option<Self> {
        match n {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            _ => None,
        }
    }

    /// The exact bytes the digest of this version is taken over.
    pub fn preimage(self, name: &str, payload: &[u8]) -> Vec<u8> {
        match self {
            Self::V1 => runtime_event_preimage_v1(name, payload),
            Self::V2 => runtime_event_preimage_v2(name, payload).into_bytes(),
        }
    }

    /// The digest of an event under this version.
    pub fn digest(self, name: &str, payload: &[u8]) -> [u8; 48] {
        Sha384::digest(self.preimage(name, payload)).into()
    }
}

impl core::fmt::Display for RuntimeEventVersion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::V1 => "V1",
            Self::V2 => "V2",
        })
    }
}

/// The bytes the V1 digest is taken over: `le32(0x08000001) ‖ ":" ‖ name ‖ ":" ‖ payload`.
pub fn runtime_event_preimage_v1(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len().saturating_add(payload.len()).saturating_add(6));
    out.extend_from_slice(&RUNTIME_EVENT_TYPE.to_le_bytes());
    out.push(b':');
    out.extend_from_slice(name.as_bytes());
    out.push(b':');
    out.extend_from_slice(payload);
    out
}

/// The JCS (RFC 8785) canonical JSON the V2 digest is taken over:
/// `{"name":…,"payload":"<lowercase hex>","type":134217729}` (keys sorted, no whitespace).
pub fn runtime_event_preimage_v2(name: &str, payload: &[u8]) -> String {
    let mut out = String::with_capacity(
        name.len()
            .saturating_add(payload.len().saturating_mul(2))
            .saturating_add(48),
    );
    out.push_str("{\"name\":");
    push_jcs_string(&mut out, name);
    out.push_str(",\"payload\":\"");
    out.push_str(&hex::encode(payload));
    out.push_str("\",\"type\":");
    out.push_str(&RUNTIME_EVENT_TYPE.to_string());
    out.push('}');
    out
}

/// The V2 digest of a runtime event: `SHA384` of [`runtime_event_preimage_v2`].
pub fn runtime_event_digest_v2(name: &str, payload: &[u8]) -> [u8; 48] {
    Sha384::digest(runtime_event_preimage_v2(name, payload).as_bytes()).into()
}

/// A JSON string as RFC 8785 §3.2.2.2 writes it: `"` and `\` escaped, the control characters
/// U+0008/9/A/C/D as `\b \t \n \f \r`, the other ones below U+0020 as `\u00xx` (lowercase hex),
/// everything else as is.
fn push_jcs_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Extend a measurement register: `mr = SHA384(mr ‖ digest)`.
pub fn extend_rtmr(mr: &mut [u8; 48], digest: &[u8]) {
    let mut h = Sha384::new();
    h.update(mr.as_slice());
    h.update(digest);
    *mr = h.finalize().into();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The digest is over the little-endian type, the name and the payload, colon-separated.
    #[test]
    fn v1_digest_is_over_type_name_and_payload() {
        let mut h = Sha384::new();
        h.update([0x01, 0x00, 0x00, 0x08]);
        h.update(b":compose-hash:");
        h.update([0xab; 32]);
        let want: [u8; 48] = h.finalize().into();
        assert_eq!(runtime_event_digest_v1("compose-hash", &[0xab; 32]), want);
        assert_ne!(runtime_event_digest_v1("compose-hash", &[0xac; 32]), want);
    }

    /// V2 is the RFC 8785 form dstack's `dstack-types` documents: keys name, payload, type.
    #[test]
    fn v2_preimage_is_the_canonical_json_of_name_payload_and_type() {
        assert_eq!(
            runtime_event_preimage_v2("compose-hash", &[0xab, 0xcd]),
            r#"{"name":"compose-hash","payload":"abcd","type":134217729}"#
        );
        assert_eq!(
            runtime_event_digest_v2("x", b""),
            <[u8; 48]>::from(Sha384::digest(
                br#"{"name":"x","payload":"","type":134217729}"#
            ))
        );
        assert_eq!(
            RuntimeEventVersion::V2.digest("x", b""),
            runtime_event_digest_v2("x", b"")
        );
        assert_ne!(
            runtime_event_digest_v2("x", b""),
            runtime_event_digest_v1("x", b"")
        );
    }

    /// Strings are escaped as RFC 8785 (and serde_json) write them.
    #[test]
    fn v2_preimage_escapes_names_as_jcs_does() {
        let name = "a\"b\\c\u{8}\u{c}\n\r\t\u{1}\u{7f}é🦀/";
        let want = format!(
            "{{\"name\":{},\"payload\":\"ff\",\"type\":134217729}}",
            serde_json::to_string(name).unwrap_or_default()
        );
        assert_eq!(runtime_event_preimage_v2(name, &[0xff]), want);
        assert!(want.contains(r#"\u0001"#) && want.contains(r#"\b\f\n\r\t"#));
    }

    #[test]
    fn extend_chains_sha384() {
        let mut mr = [0u8; 48];
        extend_rtmr(&mut mr, &[1u8; 48]);
        let mut h = Sha384::new();
        h.update([0u8; 48]);
        h.update([1u8; 48]);
        let want: [u8; 48] = h.finalize().into();
        assert_eq!(mr, want);
    }
}
