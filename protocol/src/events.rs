//! The events the executor child streams to the worker, one JSON object per line.
//!
//! Every line is an object with the schema version `"v": 1` and a `"type"` tag:
//!
//! | `type` | fields | meaning |
//! |---|---|---|
//! | `started` | `script`? | the script is about to run |
//! | `progress` | `step`, `total`?, `loss`?, `learning_rate`?, `epoch`?, `metrics` (map, may be omitted) | a training step |
//! | `log` | `level` (`debug`/`info`/`warn`/`error`), `message` | a log line for the task log |
//! | `metric` | `name`, `value`, `step`? | one named value (eval loss, accuracy...) |
//! | `chunk_sealed` | `index`, `plaintext_len`, `tag` (`0x` + 32 hex) | the child sealed model chunk `index` with the per-task key |
//! | `checkpoint` | `step` | rank 0's trainer finished writing `checkpoint-<step>` in the task's checkpoint scratch directory: the worker seals it and deletes the plaintext |
//! | `finished` | `output`: `{files, bytes, chunks}` | the script succeeded |
//! | `failed` | `reason` | the script failed |
//!
//! Floats must be finite: [`to_line`] refuses NaN and infinities (JSON cannot carry them) with a
//! typed error, so the writer decides what to report instead. A float read back may differ from the
//! one written by 1 ULP (serde_json parses without its `float_roundtrip` feature): fine for metrics.
//!
//! The child never holds the TEE key: it reports the tag of every sealed chunk, in order, and the
//! parent collects them with a [`TagCollector`] and signs `keccak256(tag₀ ‖ tag₁ ‖ …)`
//! (DESIGN.md "Keys and trust", PROTOCOL.md §4).
//!
//! [`parse_line`] never panics: a bad line (not JSON, too long, another version, an unknown type, a
//! wrong field) is a typed [`EventError`].
//!
//! # Example
//!
//! ```
//! use sealtune_protocol::events::{parse_line, to_line, Event, EventError};
//!
//! let line = to_line(&Event::Progress {
//!     step: 3, total: Some(10), loss: Some(1.25), learning_rate: None, epoch: None,
//!     metrics: Default::default(),
//! })?;
//! assert_eq!(line, r#"{"v":1,"type":"progress","step":3,"total":10,"loss":1.25}"#);
//! assert!(matches!(parse_line(line.as_bytes())?, Event::Progress { step: 3, .. }));
//!
//! assert!(matches!(parse_line(br#"{"v":2,"type":"started"}"#), Err(EventError::UnsupportedVersion(2))));
//! assert!(matches!(parse_line(b"Traceback (most recent call last):"), Err(EventError::InvalidJson(_))));
//! # Ok::<(), EventError>(())
//! ```

use std::collections::BTreeMap;

use alloy_primitives::{B256, keccak256};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The schema version written in every line (`"v"`).
pub const EVENT_VERSION: u64 = 1;

/// Longest accepted event line in bytes (1 MiB); [`Event::log`] cuts messages well below it.
pub const MAX_EVENT_LINE: usize = 1 << 20;

/// Longest log message [`Event::log`] keeps, in bytes.
pub const MAX_LOG_MESSAGE: usize = 64 << 10;

/// Severity of a [`Event::Log`] line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Debug detail.
    Debug,
    /// Normal progress.
    Info,
    /// Something odd.
    Warn,
    /// An error.
    Error,
}

/// What the script produced, reported with [`Event::Finished`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OutputSummary {
    /// Files in the output directory.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Model chunks sealed by the child (0 when the parent seals the output itself).
    #[serde(default)]
    pub chunks: u64,
}

/// One event from the executor child.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The script is about to run.
    Started {
        /// The script's path or name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        script: Option<String>,
    },
    /// A training step.
    Progress {
        /// Steps done.
        step: u64,
        /// Total steps, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<u64>,
        /// Training loss.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        loss: Option<f64>,
        /// Current learning rate.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        learning_rate: Option<f64>,
        /// Fractional epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<f64>,
        /// Other numbers the script reports with the step.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        metrics: BTreeMap<String, f64>,
    },
    /// A log line.
    Log {
        /// Severity.
        level: LogLevel,
        /// The text.
        message: String,
    },
    /// One named value.
    Metric {
        /// Its name.
        name: String,
        /// Its value.
        value: f64,
        /// The step it belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<u64>,
    },
    /// The child sealed a model chunk with the per-task key.
    ChunkSealed {
        /// 0-based chunk index; chunks are reported in order.
        index: u64,
        /// Plaintext bytes in the chunk.
        plaintext_len: u64,
        /// The AES-GCM tag of the chunk.
        #[serde(with = "hex_tag")]
        tag: [u8; 16],
    },
    /// The trainer wrote `checkpoint-<step>` completely into the task's checkpoint scratch
    /// directory (tmpfs): the worker seals it and deletes the plaintext.
    Checkpoint {
        /// The global step the checkpoint holds.
        step: u64,
    },
    /// The script succeeded.
    Finished {
        /// What it produced.
        output: OutputSummary,
    },
    /// The script failed.
    Failed {
        /// Why.
        reason: String,
    },
}

impl Event {
    /// A log event, the message cut to [`MAX_LOG_MESSAGE`] bytes at a character boundary.
    pub fn log(level: LogLevel, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_LOG_MESSAGE {
            let mut cut = MAX_LOG_MESSAGE;
            // Terminates: 0 is always a char boundary.
            while !message.is_char_boundary(cut) {
                cut = cut.saturating_sub(1);
            }
            message.truncate(cut);
        }
        Event::Log { level, message }
    }

    /// Whether this event ends the stream (`finished` or `failed`).
    pub fn is_terminal(&self) -> bool {
        matches!(self, Event::Finished { .. } | Event::Failed { .. })
    }
}

mod hex_tag {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(tag: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("0x{}", hex::encode(tag)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        let text = String::deserialize(d)?;
        let digits = text.strip_prefix("0x").unwrap_or(&text);
        let mut tag = [0u8; 16];
        hex::decode_to_slice(digits, &mut tag)
            .map_err(|e| D::Error::custom(format!("tag must be 16 bytes of hex: {e}")))?;
        Ok(tag)
    }
}

/// Why an event line was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The line is longer than [`MAX_EVENT_LINE`].
    #[error("event line longer than {MAX_EVENT_LINE} bytes ({0})")]
    LineTooLong(usize),
    /// Not JSON (or not UTF-8).
    #[error("event line is not JSON: {0}")]
    InvalidJson(String),
    /// JSON, but not an object.
    #[error("event line must be a JSON object")]
    NotAnObject,
    /// No `"v"` field, or not an unsigned integer.
    #[error("event line has no integer version `v`")]
    MissingVersion,
    /// A version this build does not read.
    #[error("unsupported event version {0} (this build reads {EVENT_VERSION})")]
    UnsupportedVersion(u64),
    /// The object does not match the schema (unknown type, missing or mistyped field).
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// A float to write is NaN or infinite.
    #[error("field `{0}` is not a finite number")]
    NonFinite(String),
}

/// Parse one line (a trailing `\n` or `\r\n` is allowed). Never panics.
pub fn parse_line(line: &[u8]) -> Result<Event, EventError> {
    if line.len() > MAX_EVENT_LINE + 2 {
        return Err(EventError::LineTooLong(line.len()));
    }
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > MAX_EVENT_LINE {
        return Err(EventError::LineTooLong(line.len()));
    }
    let value: Value =
        serde_json::from_slice(line).map_err(|e| EventError::InvalidJson(e.to_string()))?;
    let Value::Object(mut map) = value else {
        return Err(EventError::NotAnObject);
    };
    let version = map
        .remove("v")
        .and_then(|v| v.as_u64())
        .ok_or(EventError::MissingVersion)?;
    if version != EVENT_VERSION {
        return Err(EventError::UnsupportedVersion(version));
    }
    Event::deserialize(Value::Object(map)).map_err(|e| EventError::InvalidEvent(e.to_string()))
}

fn check_finite(event: &Event) -> Result<(), EventError> {
    let bad = |name: &str, v: Option<f64>| match v {
        Some(x) if !x.is_finite() => Err(EventError::NonFinite(name.to_owned())),
        _ => Ok(()),
    };
    match event {
        Event::Progress {
            loss,
            learning_rate,
            epoch,
            metrics,
            ..
        } => {
            bad("loss", *loss)?;
            bad("learning_rate", *learning_rate)?;
            bad("epoch", *epoch)?;
            for (name, v) in metrics {
                bad(&format!("metrics.{name}"), Some(*v))?;
            }
            Ok(())
        }
        Event::Metric { name, value, .. } => bad(name, Some(*value)),
        _ => Ok(()),
    }
}

/// Write an event as one JSON line (without the trailing newline), `"v"` first.
pub fn to_line(event: &Event) -> Result<String, EventError> {
    #[derive(Serialize)]
    struct Versioned<'a> {
        v: u64,
        #[serde(flatten)]
        event: &'a Event,
    }
    check_finite(event)?;
    serde_json::to_string(&Versioned {
        v: EVENT_VERSION,
        event,
    })
    .map_err(|e| EventError::InvalidEvent(e.to_string()))
}

/// Why a [`Event::ChunkSealed`] was refused by a [`TagCollector`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// Chunks must be reported in order, each once.
    #[error("chunk {found} reported, expected chunk {expected}")]
    OutOfOrder {
        /// The next index expected.
        expected: u64,
        /// The index received.
        found: u64,
    },
    /// The `finished` summary disagrees with the chunks reported.
    #[error("the child reported {reported} chunks but sealed {sealed}")]
    CountMismatch {
        /// Chunks in the `finished` summary.
        reported: u64,
        /// Chunks received.
        sealed: u64,
    },
}

/// Collects chunk tags in order, for the parent to sign `keccak256(tag₀ ‖ tag₁ ‖ …)`.
#[derive(Debug, Clone, Default)]
pub struct TagCollector {
    tags: Vec<u8>,
    next: u64,
}

impl TagCollector {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record a sealed chunk; it must be the next index.
    pub fn push(&mut self, index: u64, tag: [u8; 16]) -> Result<(), TagError> {
        if index != self.next {
            return Err(TagError::OutOfOrder {
                expected: self.next,
                found: index,
            });
        }
        self.tags.extend_from_slice(&tag);
        self.next = self.next.saturating_add(1);
        Ok(())
    }

    /// Chunks collected so far.
    pub fn chunks(&self) -> u64 {
        self.next
    }

    /// Check the `finished` summary's chunk count and return `keccak256(tags)`, the digest to sign.
    pub fn finish(&self, reported_chunks: u64) -> Result<B256, TagError> {
        if reported_chunks != self.next {
            return Err(TagError::CountMismatch {
                reported: reported_chunks,
                sealed: self.next,
            });
        }
        Ok(self.digest())
    }

    /// `keccak256(tag₀ ‖ tag₁ ‖ …)` of the tags so far.
    pub fn digest(&self) -> B256 {
        keccak256(&self.tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_round_trips() {
        let events = [
            Event::Started {
                script: Some("train.py".into()),
            },
            Event::Progress {
                step: 1,
                total: None,
                loss: Some(0.5),
                learning_rate: Some(1e-4),
                epoch: Some(0.25),
                metrics: [("grad_norm".to_owned(), 2.0)].into(),
            },
            Event::log(LogLevel::Warn, "é"),
            Event::Metric {
                name: "eval_loss".into(),
                value: 0.1,
                step: Some(4),
            },
            Event::ChunkSealed {
                index: 0,
                plaintext_len: 64 << 20,
                tag: [0xab; 16],
            },
            Event::Finished {
                output: OutputSummary {
                    files: 2,
                    bytes: 10,
                    chunks: 1,
                },
            },
            Event::Failed {
                reason: "CUDA OOM".into(),
            },
        ];
        for event in events {
            let line = to_line(&event).unwrap();
            assert!(line.starts_with(r#"{"v":1,"type":""#), "{line}");
            assert_eq!(parse_line(line.as_bytes()).unwrap(), event);
        }
    }

    #[test]
    fn bad_lines_are_typed_errors() {
        assert_eq!(parse_line(b"[]"), Err(EventError::NotAnObject));
        assert_eq!(
            parse_line(br#"{"type":"started"}"#),
            Err(EventError::MissingVersion)
        );
        assert!(matches!(
            parse_line(br#"{"v":1,"type":"nope"}"#),
            Err(EventError::InvalidEvent(_))
        ));
        assert!(matches!(
            parse_line(
                br#"{"v":1,"type":"chunk_sealed","index":0,"plaintext_len":1,"tag":"0x00"}"#
            ),
            Err(EventError::InvalidEvent(_))
        ));
        let nan = Event::Metric {
            name: "loss".into(),
            value: f64::NAN,
            step: None,
        };
        assert_eq!(to_line(&nan), Err(EventError::NonFinite("loss".into())));
    }

    #[test]
    fn log_messages_are_cut_at_a_char_boundary() {
        let Event::Log { message, .. } = Event::log(LogLevel::Info, "é".repeat(MAX_LOG_MESSAGE))
        else {
            unreachable!()
        };
        assert!(message.len() <= MAX_LOG_MESSAGE && message.len() >= MAX_LOG_MESSAGE - 1);
    }

    #[test]
    fn tags_are_collected_in_order() {
        let mut c = TagCollector::new();
        c.push(0, [1; 16]).unwrap();
        assert_eq!(
            c.push(2, [2; 16]),
            Err(TagError::OutOfOrder {
                expected: 1,
                found: 2
            })
        );
        c.push(1, [2; 16]).unwrap();
        let mut both = [1u8; 32];
        both[16..].fill(2);
        assert_eq!(c.finish(2).unwrap(), keccak256(both));
        assert_eq!(
            c.finish(3),
            Err(TagError::CountMismatch {
                reported: 3,
                sealed: 2
            })
        );
    }
}
