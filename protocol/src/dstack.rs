//! dstack's runtime-event measurement rule: how an event an application (or dstack itself) emits at
//! run time extends RTMR3. The worker's dev attestation source writes events with it and the verifier
//! replays them with it, so the two cannot drift.
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
    let mut h = Sha384::new();
    h.update(RUNTIME_EVENT_TYPE.to_le_bytes());
    h.update(b":");
    h.update(name.as_bytes());
    h.update(b":");
    h.update(payload);
    h.finalize().into()
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
