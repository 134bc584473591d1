//! The text formats beside JSONL — JSON arrays (`alpaca_data.json`) and CSV with a header row — read
//! into the same records, with bounded memory, and malformed files failing with the record named.

use std::io::{Cursor, Write};

use sealtune_protocol::dataset::{
    DatasetError, Format, Location, NoColumnar, ReadLimits, Record, RecordError, Unit,
    read_dataset_with, read_text, read_zip_with,
};
use sealtune_protocol::dataset_type::DatasetType;

fn read(
    format: Format,
    data: &[u8],
    ty: Option<&DatasetType>,
) -> Result<Vec<(Location, Record)>, DatasetError> {
    let mut out = Vec::new();
    read_text(format, data, ty, &ReadLimits::default(), |loc, rec| {
        out.push((loc.clone(), rec));
        Ok::<(), DatasetError>(())
    })?;
    Ok(out)
}

fn instr(i: &str, input: Option<&str>, o: &str) -> Record {
    Record::Instruction {
        instruction: i.into(),
        input: input.map(Into::into),
        output: o.into(),
    }
}

#[test]
fn alpaca_data_json_is_read_element_by_element() {
    // The layout of Stanford's alpaca_data.json: an indented array of objects.
    let data = "\u{feff}[\n    {\n        \"instruction\": \"Give three tips.\",\n        \"input\": \"\",\n        \"output\": \"1. Eat [well], {sleep}.\"\n    },\n    {\"instruction\": \"Quote \\\"x\\\", ]\", \"input\": \"a,b\", \"output\": \"y\"}\n]\n";
    let got = read(Format::JsonArray, data.as_bytes(), None).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].1,
        instr("Give three tips.", Some(""), "1. Eat [well], {sleep}.")
    );
    assert_eq!(got[1].1, instr("Quote \"x\", ]", Some("a,b"), "y"));
    assert_eq!(got[1].0.to_string(), "element 2");
    assert!(matches!(
        read(Format::JsonArray, b" [ ] ", None),
        Err(DatasetError::Empty)
    ));
}

#[test]
fn a_malformed_json_array_names_the_element() {
    let cases: [(&[u8], &str); 6] = [
        (
            br#"[{"instruction":"a","output":"b"},{"instruction":"c"}]"#,
            "element 2: field `output` is missing",
        ),
        (
            br#"[{"text":"a"},"#,
            "element 2: invalid JSON: the array is not closed (no `]`)",
        ),
        (
            br#"[{"text":"a"} {"text":"b"}]"#,
            "element 2: invalid JSON: expected `,` or `]`",
        ),
        (
            br#"[{"text":"a"}] x"#,
            "element 2: invalid JSON: data after the closing `]`",
        ),
        (
            br#"[{"text":"a"}, 7]"#,
            "element 2: a record must be a JSON object, found a number",
        ),
        (
            br#"{"text":"a"}"#,
            "element 1: invalid JSON: a JSON dataset must be an array",
        ),
    ];
    for (data, want) in cases {
        let e = read(Format::JsonArray, data, None).unwrap_err();
        assert!(
            e.to_string().starts_with(want),
            "{}: {e}",
            String::from_utf8_lossy(data)
        );
    }
    // An element over the limit fails before it is buffered whole.
    let big = format!("[{{\"text\":\"{}\"}}]", "x".repeat(300));
    let e = read_text(
        Format::JsonArray,
        big.as_bytes(),
        None,
        &ReadLimits {
            max_line_bytes: 100,
        },
        |_, _| Ok::<(), DatasetError>(()),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            DatasetError::LineTooLong {
                location: Location {
                    unit: Unit::Element,
                    line: 1,
                    ..
                },
                max: 100
            }
        ),
        "{e}"
    );
}

#[test]
fn csv_rows_are_objects_of_strings() {
    let data = "\u{feff}instruction,input,output,id\r\n\"Say \"\"hi\"\"\",,\"Hello,\nworld\",1\r\n\r\nAdd,1 2,3,2\n";
    let got = read(Format::Csv, data.as_bytes(), None).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].1, instr("Say \"hi\"", Some(""), "Hello,\nworld"));
    assert_eq!(got[0].0.to_string(), "line 2");
    // The second record starts on line 5 (the first spans lines 2-3, line 4 is blank).
    assert_eq!(got[1].0.to_string(), "line 5");
    assert_eq!(got[1].1, instr("Add", Some("1 2"), "3"));
    // A dataset_type maps columns of any name.
    let ty: DatasetType = serde_json::from_str(
        r#"{"field_instruction":"q","field_output":"a","no_input_format":"Q: {instruction}\n"}"#,
    )
    .unwrap();
    let got = read(Format::Csv, b"q,a\nwhy?,because\n", Some(&ty)).unwrap();
    assert_eq!(got[0].1, instr("Q: why?\n", None, "because"));
}

#[test]
fn a_malformed_csv_names_the_line() {
    let cases: [(&[u8], &str); 5] = [
        (
            b"instruction,output\na,b\nc\n",
            "line 3: invalid CSV: 1 fields, the header has 2 columns",
        ),
        (
            b"text\n\"open\n",
            "line 2: invalid CSV: a quoted field is not closed",
        ),
        (
            b"text\n\"a\"b\n",
            "line 2: invalid CSV: `b` after the closing quote",
        ),
        (
            b"text,text\na,b\n",
            "line 1: invalid CSV: the header names column `text` twice",
        ),
        (
            b"prompt,answer\na,b\n",
            "line 2: unknown record shape: expected `text`, `instruction`+`output` or `messages`, found keys [answer, prompt]",
        ),
    ];
    for (data, want) in cases {
        let e = read(Format::Csv, data, None).unwrap_err();
        assert!(
            e.to_string().starts_with(want),
            "{}: {e}",
            String::from_utf8_lossy(data)
        );
    }
    // Leading blank lines count: the error names the line a spreadsheet shows.
    let e = read(Format::Csv, b"\n\ninstruction,output\na\n", None).unwrap_err();
    assert!(
        e.to_string().starts_with("line 4: invalid CSV: 1 fields"),
        "{e}"
    );
    let e = read(Format::Csv, b"text\n\xff\n", None).unwrap_err();
    assert!(
        matches!(
            e,
            DatasetError::Record {
                error: RecordError::Csv(_),
                ..
            }
        ),
        "{e}"
    );
    assert!(matches!(
        read(Format::Csv, b"text\n", None),
        Err(DatasetError::Empty)
    ));
    let e = read_text(
        Format::Csv,
        format!("text\n{}\n", "y".repeat(300)).as_bytes(),
        None,
        &ReadLimits {
            max_line_bytes: 100,
        },
        |_, _| Ok::<(), DatasetError>(()),
    )
    .unwrap_err();
    assert!(matches!(e, DatasetError::LineTooLong { .. }), "{e}");
}

#[test]
fn plain_files_are_sniffed_and_zips_mix_formats() {
    assert_eq!(Format::sniff(b"\xEF\xBB\xBF \n[{"), Format::JsonArray);
    assert_eq!(Format::sniff(b"{\"text\""), Format::Jsonl);
    assert_eq!(Format::sniff(b""), Format::Jsonl);
    assert_eq!(Format::sniff(b"instruction,output"), Format::Csv);
    assert_eq!(Format::sniff(b"PAR1\x15"), Format::Parquet);
    assert_eq!(Format::sniff(b"\xFF\xFF\xFF\xFF\x10"), Format::Arrow);

    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("data");
    std::fs::write(&csv, "text\nhello\n").unwrap();
    let n = read_dataset_with(&csv, None, &ReadLimits::default(), &NoColumnar, |_, _| {
        Ok::<(), DatasetError>(())
    })
    .unwrap();
    assert_eq!(n.records, 1);

    let mut zip = Vec::new();
    {
        let mut z = zip::ZipWriter::new(Cursor::new(&mut zip));
        let opts = zip::write::SimpleFileOptions::default();
        for (name, body) in [
            ("d/a.json", "[{\"text\":\"one\"}]"),
            ("d/b.json", "{\"text\":\"two\"}\n"),
            ("d/c.csv", "text\nthree\n"),
            ("d/notes.txt", "not read"),
        ] {
            z.start_file(name, opts).unwrap();
            z.write_all(body.as_bytes()).unwrap();
        }
        z.finish().unwrap();
    }
    let mut texts = Vec::new();
    read_zip_with(
        Cursor::new(&zip),
        None,
        &ReadLimits::default(),
        &NoColumnar,
        |loc, rec| {
            texts.push(format!("{loc} {}", rec.fields().text.unwrap()));
            Ok::<(), DatasetError>(())
        },
    )
    .unwrap();
    assert_eq!(
        texts,
        [
            "d/a.json: element 1 one",
            "d/b.json: line 1 two",
            "d/c.csv: line 2 three"
        ]
    );
    // Parquet without a columnar reader (the client's estimate) is a clear error.
    let pq = dir.path().join("p");
    std::fs::write(&pq, b"PAR1....").unwrap();
    let e = read_dataset_with(&pq, None, &ReadLimits::default(), &NoColumnar, |_, _| {
        Ok::<(), DatasetError>(())
    })
    .unwrap_err();
    assert!(
        matches!(e, DatasetError::Unsupported(Format::Parquet)),
        "{e}"
    );
}

/// A columnar reader that reports how many bytes its stream gave.
struct ByteCounter;

impl sealtune_protocol::dataset::Columnar for ByteCounter {
    fn read_rows(
        &self,
        _: Format,
        source: sealtune_protocol::dataset::Source<'_>,
        _: &mut dyn FnMut(serde_json::Value) -> std::ops::ControlFlow<()>,
    ) -> Result<(), String> {
        let sealtune_protocol::dataset::Source::Stream(stream) = source else {
            return Err("not a stream".into());
        };
        let mut sink = Vec::new();
        let n = std::io::Read::read_to_end(stream, &mut sink).map_err(|e| e.to_string())?;
        Err(format!("{n} bytes"))
    }
}

#[test]
fn a_columnar_zip_entry_gives_no_more_than_its_declared_size() {
    // The unpacking caps check declared sizes; an entry inflating past its declaration (a lying
    // zip bomb) is cut there before a worker spills it to disk.
    let mut zip = Vec::new();
    {
        let mut z = zip::ZipWriter::new(Cursor::new(&mut zip));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        z.start_file("a.parquet", opts).unwrap();
        z.write_all(&[7u8; 1000]).unwrap();
        z.finish().unwrap();
    }
    let patch = |zip: &mut Vec<u8>, magic: &[u8], offset: usize| {
        let at = zip.windows(4).position(|w| w == magic).unwrap() + offset;
        zip[at..at + 4].copy_from_slice(&10u32.to_le_bytes());
    };
    patch(&mut zip, b"PK\x03\x04", 22);
    patch(&mut zip, b"PK\x01\x02", 24);
    let e = read_zip_with(
        Cursor::new(&zip),
        None,
        &ReadLimits::default(),
        &ByteCounter,
        |_, _| Ok::<(), DatasetError>(()),
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "a.parquet: row 1: cannot decode: 10 bytes");
}
