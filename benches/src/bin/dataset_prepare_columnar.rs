//! Benchmark `dataset_prepare_columnar` (see BENCHMARKS.md, "Dataset parse + prepare"): the
//! columnar formats, read by the worker's own reader.
//!
//! Generates the same records as `dataset_prepare` (`sealtune_benches::dataset_gen`, about
//! `SEALTUNE_BENCH_DATASET_MB` MB of JSONL, default 256; the figure uses 1024) as:
//! - JSONL (the baseline, measured in the same interleaving);
//! - Parquet, Snappy pages, row groups of 65,536 rows (`pyarrow`'s codec);
//! - an Arrow IPC stream in batches of 1,000 rows: the shard `Dataset.save_to_disk` writes
//!   (`data-00000-of-00001.arrow`), read bare;
//! - that saved folder zipped as a customer uploads it (the shard, `dataset_info.json`,
//!   `state.json`), stored and deflated: the entry is read as a stream, no spill.
//!
//! and times `protocol::dataset::prepare_jsonl` with the worker's columnar reader
//! (`worker/src/formats.rs`, compiled into this binary from its source file: the worker crate
//! itself pulls the whole worker, whose release build takes far longer than this one). One
//! thread; every round runs each format once, in order, and the table gives the median of the
//! rounds (`SEALTUNE_BENCH_ROUNDS`, default 3). Peak RSS is reset before each run
//! (`/proc/self/clear_refs`) and read after it.
//!
//! Needs the `columnar` feature (it pulls `parquet` and `arrow`). Run:
//! `. scripts/env && SEALTUNE_BENCH_DATASET_MB=1024 cargo run --release -p sealtune-benches --features columnar --bin dataset_prepare_columnar`
//! (needs about 4.5 × the size free under `CARGO_TARGET_DIR`).

#[allow(dead_code)] // the bench uses the reader, not the worker's other entry points
#[path = "../../../worker/src/formats.rs"]
mod formats;

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use sealtune_benches::dataset_gen::{self, Triple, peak_rss_mb, reset_peak_rss};
use sealtune_protocol::dataset::{ReadLimits, prepare_jsonl};

const ARROW_BATCH: usize = 1_000;
const PARQUET_ROW_GROUP: usize = 65_536;

fn batch(schema: &Arc<Schema>, rows: &[Triple]) -> RecordBatch {
    let column =
        |f: fn(&Triple) -> &str| Arc::new(StringArray::from_iter_values(rows.iter().map(f)));
    RecordBatch::try_new(
        schema.clone(),
        vec![column(|r| &r.0), column(|r| &r.1), column(|r| &r.2)],
    )
    .unwrap()
}

/// Write JSONL, Parquet and an Arrow IPC stream of the same records; returns the record count.
fn generate(dir: &Path, bytes: u64) -> u64 {
    let schema = Arc::new(Schema::new(
        ["instruction", "input", "output"]
            .map(|n| Field::new(n, DataType::Utf8, false))
            .to_vec(),
    ));
    let mut jsonl = BufWriter::new(std::fs::File::create(dir.join("d.jsonl")).unwrap());
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_max_row_group_row_count(Some(PARQUET_ROW_GROUP))
        .build();
    let mut parquet = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(dir.join("d.parquet")).unwrap(),
        schema.clone(),
        Some(props),
    )
    .unwrap();
    let mut arrow = arrow_ipc::writer::StreamWriter::try_new(
        BufWriter::new(std::fs::File::create(dir.join("data-00000-of-00001.arrow")).unwrap()),
        &schema,
    )
    .unwrap();
    let (mut rows, mut records) = (Vec::with_capacity(ARROW_BATCH), 0u64);
    let mut flush = |rows: &mut Vec<Triple>| {
        if !rows.is_empty() {
            let b = batch(&schema, rows);
            parquet.write(&b).unwrap();
            arrow.write(&b).unwrap();
            rows.clear();
        }
    };
    for (triple, line) in dataset_gen::records(bytes) {
        writeln!(jsonl, "{line}").unwrap();
        rows.push(triple);
        records += 1;
        if rows.len() == ARROW_BATCH {
            flush(&mut rows);
        }
    }
    flush(&mut rows);
    jsonl.flush().unwrap();
    parquet.close().unwrap();
    arrow.finish().unwrap();
    records
}

/// The `save_to_disk` folder (the shard and its two descriptions) zipped with `method`.
fn zip_saved_folder(dir: &Path, name: &str, method: zip::CompressionMethod) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(dir.join(name)).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(method)
        .large_file(true);
    z.start_file("data-00000-of-00001.arrow", options).unwrap();
    let mut shard = std::fs::File::open(dir.join("data-00000-of-00001.arrow")).unwrap();
    std::io::copy(&mut shard, &mut z).unwrap();
    for (file, text) in [
        (
            "dataset_info.json",
            r#"{"features":{"instruction":{"dtype":"string","_type":"Value"},"input":{"dtype":"string","_type":"Value"},"output":{"dtype":"string","_type":"Value"}}}"#,
        ),
        (
            "state.json",
            r#"{"_data_files":[{"filename":"data-00000-of-00001.arrow"}],"_format_type":null}"#,
        ),
    ] {
        z.start_file(file, options).unwrap();
        z.write_all(text.as_bytes()).unwrap();
    }
    z.finish().unwrap();
}

/// One preparation of `path`: (seconds, peak RSS MB during it).
fn prepare(dir: &Path, path: &Path, records: u64) -> (f64, u64) {
    let columnar = formats::WorkerColumnar {
        spill_dir: dir.to_path_buf(),
    };
    let out = dir.join("prepared.jsonl");
    let reset = reset_peak_rss();
    let start = Instant::now();
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&out).unwrap());
    let n = prepare_jsonl(
        path,
        None,
        &ReadLimits::default(),
        &columnar,
        &mut w,
        &mut std::io::sink(),
    )
    .unwrap()
    .0
    .records;
    w.flush().unwrap();
    drop(w);
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(n, records, "{}", path.display());
    let _ = std::fs::remove_file(&out);
    (secs, if reset { peak_rss_mb() } else { 0 })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (mb, rounds) = (
        env("SEALTUNE_BENCH_DATASET_MB", 256),
        env("SEALTUNE_BENCH_ROUNDS", 3),
    );
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(target).unwrap();
    let records = generate(dir.path(), mb << 20);
    zip_saved_folder(
        dir.path(),
        "saved_stored.zip",
        zip::CompressionMethod::Stored,
    );
    zip_saved_folder(
        dir.path(),
        "saved_deflated.zip",
        zip::CompressionMethod::Deflated,
    );
    let runs = [
        ("d.jsonl", "JSONL (baseline)"),
        ("d.parquet", "Parquet, Snappy"),
        (
            "data-00000-of-00001.arrow",
            "Arrow IPC stream (save_to_disk shard)",
        ),
        ("saved_stored.zip", "save_to_disk folder, zip stored"),
        ("saved_deflated.zip", "save_to_disk folder, zip deflated"),
    ];
    let mut times = vec![Vec::new(); runs.len()];
    let mut peaks = vec![0u64; runs.len()];
    for round in 0..rounds {
        for (i, (file, name)) in runs.iter().enumerate() {
            let (secs, peak) = prepare(dir.path(), &dir.path().join(file), records);
            eprintln!("round {round}: {name}: {secs:.2} s, peak {peak} MB");
            times[i].push(secs);
            peaks[i] = peaks[i].max(peak);
        }
    }
    let jsonl_mb = std::fs::metadata(dir.path().join("d.jsonl")).unwrap().len() as f64 / 1e6;
    println!(
        "dataset_prepare_columnar: {records} records ({jsonl_mb:.0} MB as JSONL), one thread, median of {rounds} interleaved rounds"
    );
    println!(
        "| format | file MB | median s | MB/s of file (one core) | JSONL-equivalent MB/s | peak RSS MB |"
    );
    println!("|---|---|---|---|---|---|");
    for (i, (file, name)) in runs.iter().enumerate() {
        let size = std::fs::metadata(dir.path().join(file)).unwrap().len() as f64 / 1e6;
        let secs = median(times[i].clone());
        println!(
            "| {name} | {size:.0} | {secs:.2} | {:.0} | {:.0} | {} |",
            size / secs,
            jsonl_mb / secs,
            peaks[i]
        );
    }
}
