//! The JSONL record parser never panics: random bytes and random JSON give a record or a typed error.

use proptest::prelude::*;
use sealtune_protocol::dataset::{
    DatasetError, ReadLimits, Record, RecordError, parse_record, read_jsonl,
};
use serde_json::{Value, json};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![Just("user"), Just("assistant"), Just("system")].prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        let keys = prop_oneof![
            Just("text".to_owned()),
            Just("instruction".to_owned()),
            Just("input".to_owned()),
            Just("output".to_owned()),
            Just("messages".to_owned()),
            Just("role".to_owned()),
            Just("content".to_owned()),
            "[a-z]{1,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_record(&bytes);
        let _ = read_jsonl(&bytes[..], &ReadLimits { max_line_bytes: 64 }, |_, _| Ok::<(), DatasetError>(()));
    }

    #[test]
    fn random_json_gives_a_consistent_record_or_typed_error(value in json_value()) {
        let line = value.to_string();
        match parse_record(line.as_bytes()) {
            Ok(record) => {
                let fields = record.fields();
                match &record {
                    Record::Text(_) => prop_assert!(fields.text.is_some()),
                    Record::Instruction { .. } => {
                        prop_assert!(fields.instruction.is_some() && fields.output.is_some())
                    }
                    Record::Messages(_) => {
                        prop_assert!(fields.instruction.is_some() && fields.output.is_some() && fields.input.is_none())
                    }
                }
            }
            Err(RecordError::InvalidJson(_)) => prop_assert!(false, "valid JSON reported invalid: {line}"),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn valid_records_round_trip_through_the_reader(texts in prop::collection::vec(".{0,40}", 1..20)) {
        let mut data = String::new();
        for t in &texts {
            data.push_str(&json!({"text": t}).to_string());
            data.push('\n');
        }
        let mut seen = Vec::new();
        read_jsonl(data.as_bytes(), &ReadLimits::default(), |_, r| {
            if let Record::Text(t) = r { seen.push(t) }
            Ok::<(), DatasetError>(())
        }).unwrap();
        prop_assert_eq!(seen, texts);
    }
}
