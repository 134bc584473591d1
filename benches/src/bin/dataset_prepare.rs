//! Benchmark `dataset_prepare` (see BENCHMARKS.md, "Dataset parse + prepare").
//!
//! Generates a dataset of `SEALTUNE_BENCH_DATASET_MB` MB (default 256; the figure uses 1024)
//! of instruction records in each text format — JSONL, a JSON array and CSV — and times the
//! preparation the worker's executor runs on it: `protocol::dataset::prepare_jsonl` (read with the
//! one reader, validate, shape by the `dataset_type`, write the prepared JSONL to a buffered file),
//! with and without a custom template. Preparation is one reader on **one thread**, so the MB/s
//! printed is per core. Peak memory is the process's `VmHWM` after each run (it only grows: bounded
//! memory shows as a flat line). Token counting is timed apart (`--bench tokens`).
//!
//! A binary rather than a `[[bench]]`: it needs only `protocol`, so its release build skips the
//! dev-dependencies. Run:
//! `. scripts/env && SEALTUNE_BENCH_DATASET_MB=1024 cargo run --release -p sealtune-benches --bin dataset_prepare`
//! (needs about 3.5 × the size free under `CARGO_TARGET_DIR`).

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use sealtune_benches::dataset_gen::{self, csv_field, peak_rss_mb};
use sealtune_protocol::dataset::{NoColumnar, ReadLimits, prepare_jsonl};
use sealtune_protocol::dataset_type::DatasetType;
use serde_json::json;

/// Write JSONL, JSON array and CSV of about `bytes` each.
fn generate(dir: &Path, bytes: u64) -> u64 {
    let mut jsonl = BufWriter::new(std::fs::File::create(dir.join("d.jsonl")).unwrap());
    let mut array = BufWriter::new(std::fs::File::create(dir.join("d.json")).unwrap());
    let mut csv = BufWriter::new(std::fs::File::create(dir.join("d.csv")).unwrap());
    array.write_all(b"[\n").unwrap();
    csv.write_all(b"instruction,input,output\n").unwrap();
    let mut records = 0u64;
    for ((i, x, o), line) in dataset_gen::records(bytes) {
        writeln!(jsonl, "{line}").unwrap();
        if records > 0 {
            array.write_all(b",\n").unwrap();
        }
        write!(array, "  {line}").unwrap();
        writeln!(csv, "{},{},{}", csv_field(&i), csv_field(&x), csv_field(&o)).unwrap();
        records += 1;
    }
    array.write_all(b"\n]\n").unwrap();
    records
}

fn main() {
    let mb: u64 = std::env::var("SEALTUNE_BENCH_DATASET_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(target).unwrap();
    let records = generate(dir.path(), mb << 20);
    let custom: DatasetType = serde_json::from_value(json!({
        "system_prompt": "Answer briefly.", "format": "Q: {instruction} ({input})\nA:",
        "no_input_format": "Q: {instruction}\nA:"
    }))
    .unwrap();
    println!(
        "dataset_prepare: {records} records, ~{mb} MB per format, one thread (the preparation is one reader)"
    );
    println!("| format | dataset_type | input MB | seconds | MB/s (one core) | peak RSS MB |");
    println!("|---|---|---|---|---|---|");
    let runs = [
        ("d.jsonl", "JSONL", None),
        ("d.csv", "CSV", None),
        ("d.csv", "CSV", Some(&custom)),
        ("d.json", "JSON array", None),
        ("d.jsonl", "JSONL", Some(&custom)),
    ];
    for (file, name, ty) in runs {
        let path = dir.path().join(file);
        let size = std::fs::metadata(&path).unwrap().len();
        let out = dir.path().join("prepared.jsonl");
        let start = Instant::now();
        let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&out).unwrap());
        let n = prepare_jsonl(
            &path,
            ty,
            &ReadLimits::default(),
            &NoColumnar,
            &mut w,
            &mut std::io::sink(),
        )
        .unwrap()
        .0
        .records;
        w.flush().unwrap();
        drop(w);
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(n, records, "{name}");
        let _ = std::fs::remove_file(&out);
        println!(
            "| {name} | {} | {:.0} | {secs:.2} | {:.0} | {} |",
            if ty.is_some() {
                "custom template"
            } else {
                "none"
            },
            size as f64 / 1e6,
            size as f64 / 1e6 / secs,
            peak_rss_mb()
        );
    }
}
