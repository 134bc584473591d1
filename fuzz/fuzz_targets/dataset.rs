//! Fuzz the dataset reader: any bytes, as a JSONL stream or a zip, give records or a typed error, never a panic.
#![no_main]
use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use sealtune_protocol::dataset::{DatasetError, ReadLimits, parse_record, read_jsonl, read_zip};

fuzz_target!(|data: &[u8]| {
    let limits = ReadLimits {
        max_line_bytes: 4096,
    };
    let _ = parse_record(data);
    let _ = read_jsonl(data, &limits, |_, record| {
        let _ = record.fields();
        Ok::<(), DatasetError>(())
    });
    let _ = read_zip(
        Cursor::new(data),
        &limits,
        |_, _| Ok::<(), DatasetError>(()),
    );
});
