//! The dataset reader, rule by rule (PROTOCOL.md §3): shapes, streaming, limits, zips.

use std::io::{Cursor, Read, Write};

use sealtune_protocol::dataset::{
    DatasetError, Location, ReadLimits, Record, RecordError, Unit, read_dataset, read_jsonl,
    read_zip,
};

fn collect(data: &[u8]) -> Result<Vec<(Location, Record)>, DatasetError> {
    let mut out = Vec::new();
    read_jsonl(data, &ReadLimits::default(), |loc, rec| {
        out.push((loc.clone(), rec));
        Ok::<(), DatasetError>(())
    })?;
    Ok(out)
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in entries {
        if name.ends_with('/') {
            w.add_directory(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
        } else {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(data).unwrap();
        }
    }
    w.finish().unwrap().into_inner()
}

fn zip_records(zip: Vec<u8>) -> Result<Vec<(Location, Record)>, DatasetError> {
    let mut out = Vec::new();
    read_zip(Cursor::new(zip), &ReadLimits::default(), |loc, rec| {
        out.push((loc.clone(), rec));
        Ok::<(), DatasetError>(())
    })?;
    Ok(out)
}

#[test]
fn all_three_shapes_stream_in_order_with_line_numbers() {
    let data = "\u{feff}{\"text\":\"a\"}\r\n\n   \n{\"instruction\":\"i\",\"output\":\"o\"}\n\
                {\"messages\":[{\"role\":\"user\",\"content\":\"u\"},{\"role\":\"assistant\",\"content\":\"x\"}]}";
    let recs = collect(data.as_bytes()).unwrap();
    let lines: Vec<u64> = recs.iter().map(|(l, _)| l.line).collect();
    assert_eq!(lines, [1, 4, 5]);
    let shapes: Vec<&str> = recs.iter().map(|(_, r)| r.shape()).collect();
    assert_eq!(shapes, ["text", "instruction", "messages"]);
}

#[test]
fn messages_conversion_takes_the_last_user_and_assistant_message() {
    let line = r#"{"messages":[{"role":"user","content":"u1"},{"role":"assistant","content":"a1"},
        {"role":"user","content":"u2"},{"role":"assistant","content":"a2"},{"role":"user","content":"u3"}]}"#;
    let recs = collect(line.replace('\n', "").as_bytes()).unwrap();
    let fields = recs[0].1.fields();
    assert_eq!(
        (fields.instruction, fields.input, fields.output),
        (Some("u3"), None, Some("a2"))
    );
}

#[test]
fn empty_dataset_is_an_error() {
    assert!(matches!(collect(b""), Err(DatasetError::Empty)));
    assert!(matches!(collect(b"\n \n\r\n"), Err(DatasetError::Empty)));
}

#[test]
fn invalid_json_line_names_its_line() {
    let err = collect(b"{\"text\":\"a\"}\n{\"text\": oops}\n").unwrap_err();
    assert_eq!(
        err.location(),
        Some(&Location {
            entry: None,
            unit: Unit::Line,
            line: 2
        })
    );
    assert!(matches!(
        err,
        DatasetError::Record {
            error: RecordError::InvalidJson(_),
            ..
        }
    ));
    assert!(err.to_string().starts_with("line 2: invalid JSON"), "{err}");
}

#[test]
fn wrong_shape_names_its_line_and_problem() {
    let err =
        collect(b"{\"text\":\"a\"}\n{\"text\":\"a\"}\n{\"prompt\":\"p\",\"completion\":\"c\"}\n")
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 3: unknown record shape: expected `text`, `instruction`+`output` or `messages`, found keys [completion, prompt]"
    );
    let err =
        collect(br#"{"messages":[{"role":"user","content":[{"type":"text"}]}]}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 1: field `messages[0].content` must be a string, found an array"
    );
}

#[test]
fn a_100_mb_line_fails_fast_without_being_buffered() {
    let huge = b"{\"text\":\"a\"}\n{\"text\":\""
        .chain(std::io::repeat(b'a').take(100 << 20))
        .chain(&b"\"}\n"[..]);
    let started = std::time::Instant::now();
    let err = read_jsonl(huge, &ReadLimits::default(), |_, _| {
        Ok::<(), DatasetError>(())
    })
    .unwrap_err();
    assert!(
        matches!(err, DatasetError::LineTooLong { max, .. } if max == 16 << 20),
        "{err}"
    );
    assert_eq!(err.to_string(), "line 2: line longer than 16777216 bytes");
    assert!(started.elapsed().as_secs() < 10);
}

#[test]
fn line_limit_is_exact() {
    let limits = ReadLimits { max_line_bytes: 12 };
    let ok = b"{\"text\":\"a\"}\r\n"; // 12 bytes + CRLF
    read_jsonl(&ok[..], &limits, |_, _| Ok::<(), DatasetError>(())).unwrap();
    let long = b"{\"text\":\"ab\"}\n";
    let err = read_jsonl(&long[..], &limits, |_, _| Ok::<(), DatasetError>(())).unwrap_err();
    assert!(matches!(err, DatasetError::LineTooLong { .. }));
}

#[test]
fn zip_entries_are_read_in_order_and_named_in_errors() {
    let zip = zip_of(&[
        ("data/", b""),
        ("data/a.jsonl", b"{\"text\":\"1\"}\n{\"text\":\"2\"}\n"),
        ("data/README.md", b"not a dataset"),
        ("__MACOSX/data/._a.jsonl", b"\x00\x05junk"),
        (
            "data/b.JSONL",
            b"{\"output\":\"o\",\"instruction\":\"i\"}\n",
        ),
    ]);
    let recs = zip_records(zip).unwrap();
    let locs: Vec<String> = recs.iter().map(|(l, _)| l.to_string()).collect();
    assert_eq!(
        locs,
        [
            "data/a.jsonl: line 1",
            "data/a.jsonl: line 2",
            "data/b.JSONL: line 1"
        ]
    );

    let bad = zip_of(&[("data/a.jsonl", b"{\"text\":\"1\"}\n[]\n")]);
    let err = zip_records(bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "data/a.jsonl: line 2: a record must be a JSON object, found an array"
    );
}

#[test]
fn zip_with_parent_or_absolute_paths_is_refused() {
    for name in [
        "../evil.jsonl",
        "data/../../evil.jsonl",
        "/etc/cron.d/x",
        "C:/x.jsonl",
        "data\\..\\x.jsonl",
    ] {
        let zip = zip_of(&[
            ("data/a.jsonl", b"{\"text\":\"1\"}\n"),
            (name, b"{\"text\":\"1\"}\n"),
        ]);
        match zip_records(zip) {
            Err(DatasetError::UnsafeZipPath(entry)) => assert_eq!(entry, name),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn zip_without_jsonl_or_records_is_an_error() {
    assert!(matches!(
        zip_records(zip_of(&[("data/x.txt", b"hi")])),
        Err(DatasetError::NoJsonlInZip)
    ));
    assert!(matches!(
        zip_records(zip_of(&[("data/a.jsonl", b"\n")])),
        Err(DatasetError::Empty)
    ));
    assert!(matches!(
        zip_records(b"PK\x03\x04garbage".to_vec()),
        Err(DatasetError::Zip(_))
    ));
}

#[test]
fn read_dataset_detects_zip_by_magic_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("dataset.bin");
    std::fs::write(&zip_path, zip_of(&[("d/a.jsonl", b"{\"text\":\"1\"}\n")])).unwrap();
    let jsonl_path = dir.path().join("dataset.zip");
    std::fs::write(&jsonl_path, b"{\"text\":\"1\"}\n{\"text\":\"2\"}\n").unwrap();
    let count = |p: &std::path::Path| {
        read_dataset(p, &ReadLimits::default(), |_, _| Ok::<(), DatasetError>(()))
            .map(|s| s.records)
    };
    assert_eq!(count(&zip_path).unwrap(), 1);
    assert_eq!(count(&jsonl_path).unwrap(), 2);
    assert!(matches!(
        count(&dir.path().join("missing")),
        Err(DatasetError::Io(_))
    ));
}

#[test]
fn callback_errors_stop_reading() {
    let mut seen = 0;
    let err = read_jsonl(
        &b"{\"text\":\"1\"}\n{\"text\":\"2\"}\n"[..],
        &ReadLimits::default(),
        |_, _| {
            seen += 1;
            Err(DatasetError::Empty)
        },
    )
    .unwrap_err();
    assert!(matches!(err, DatasetError::Empty));
    assert_eq!(seen, 1);
}
