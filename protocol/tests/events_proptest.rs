//! The executor event parser never panics, and every event the writer emits parses back to itself.

use std::collections::BTreeMap;

use proptest::prelude::*;
use sealtune_protocol::events::{Event, EventError, LogLevel, OutputSummary, parse_line, to_line};
use serde_json::{Value, json};

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |x| x.is_finite()),
        -10.0..10.0f64
    ]
}

fn event() -> impl Strategy<Value = Event> {
    let level = prop_oneof![
        Just(LogLevel::Debug),
        Just(LogLevel::Info),
        Just(LogLevel::Warn),
        Just(LogLevel::Error)
    ];
    prop_oneof![
        proptest::option::of(".{0,20}").prop_map(|script| Event::Started { script }),
        (
            any::<u64>(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(finite()),
            proptest::option::of(finite()),
            proptest::option::of(finite()),
            prop::collection::btree_map(".{0,8}", finite(), 0..4)
        )
            .prop_map(|(step, total, loss, learning_rate, epoch, metrics)| {
                Event::Progress {
                    step,
                    total,
                    loss,
                    learning_rate,
                    epoch,
                    metrics: metrics.into_iter().collect::<BTreeMap<_, _>>(),
                }
            }),
        (level, ".{0,40}").prop_map(|(level, message)| Event::log(level, message)),
        (".{0,10}", finite(), proptest::option::of(any::<u64>()))
            .prop_map(|(name, value, step)| Event::Metric { name, value, step }),
        (any::<u64>(), any::<u64>(), any::<[u8; 16]>()).prop_map(|(index, plaintext_len, tag)| {
            Event::ChunkSealed {
                index,
                plaintext_len,
                tag,
            }
        }),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(files, bytes, chunks)| {
            Event::Finished {
                output: OutputSummary {
                    files,
                    bytes,
                    chunks,
                },
            }
        }),
        ".{0,40}".prop_map(|reason| Event::Failed { reason }),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(|x| json!(x)),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("started"),
            Just("progress"),
            Just("log"),
            Just("metric"),
            Just("chunk_sealed"),
            Just("finished"),
            Just("failed"),
            Just("info")
        ]
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        let keys = prop_oneof![
            Just("v".to_owned()),
            Just("type".to_owned()),
            Just("step".to_owned()),
            Just("metrics".to_owned()),
            Just("level".to_owned()),
            Just("message".to_owned()),
            Just("tag".to_owned()),
            Just("output".to_owned()),
            "[a-z_]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// serde_json (without its `float_roundtrip` feature) may read a float back 1 ULP away.
fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 4.0 * f64::EPSILON * a.abs().max(b.abs())
}

fn close_opt(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => close(a, b),
        (a, b) => a == b,
    }
}

fn same_event(a: &Event, b: &Event) -> bool {
    match (a, b) {
        (
            Event::Progress {
                step,
                total,
                loss,
                learning_rate,
                epoch,
                metrics,
            },
            Event::Progress {
                step: s2,
                total: t2,
                loss: l2,
                learning_rate: r2,
                epoch: e2,
                metrics: m2,
            },
        ) => {
            step == s2
                && total == t2
                && close_opt(*loss, *l2)
                && close_opt(*learning_rate, *r2)
                && close_opt(*epoch, *e2)
                && metrics.len() == m2.len()
                && metrics
                    .iter()
                    .zip(m2)
                    .all(|((k1, v1), (k2, v2))| k1 == k2 && close(*v1, *v2))
        }
        (
            Event::Metric { name, value, step },
            Event::Metric {
                name: n2,
                value: v2,
                step: s2,
            },
        ) => name == n2 && step == s2 && close(*value, *v2),
        (a, b) => a == b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_line(&bytes);
    }

    #[test]
    fn random_json_never_panics(value in json_value(), v1 in any::<bool>()) {
        let mut value = value;
        if v1 && let Value::Object(map) = &mut value {
            map.insert("v".into(), json!(1));
        }
        if let Err(e) = parse_line(value.to_string().as_bytes()) {
            prop_assert!(!matches!(e, EventError::InvalidJson(_)));
        }
    }

    #[test]
    fn written_events_parse_back(event in event()) {
        let line = to_line(&event).unwrap();
        prop_assert!(!line.contains('\n'));
        let parsed = parse_line(format!("{line}\n").as_bytes()).unwrap();
        prop_assert!(same_event(&parsed, &event), "{parsed:?} != {event:?}");
    }
}
