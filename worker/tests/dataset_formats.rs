//! Every dataset format the worker takes — JSONL, a JSON array (`alpaca_data.json`), CSV, Parquet and
//! a zipped Hugging Face `save_to_disk` folder (Arrow IPC shards) — read by the worker's one reader
//! (`sealtune_worker::formats::read_dataset`, behind both the count and the preparation) under each
//! `dataset_type`, counted by the fee's rule: the counts equal Python `transformers` on the same
//! records as Python's own readers (json, csv, pyarrow, datasets) give them, for both models of the
//! offline cache (`tests/py/formats_oracle.py` writes the files and counts them). Malformed Parquet
//! and Arrow files fail naming the record.
//!
//! Needs the project venv and models installed by `scripts/setup`; fails (never skips) without them.

use std::path::{Path, PathBuf};
use std::process::Command;

use sealtune_e2e::{hf_cache, venv_python};
use sealtune_protocol::dataset::{DatasetError, ReadLimits};
use sealtune_protocol::dataset_type::DatasetType;
use sealtune_protocol::tokens::{TokenCount, TokenCounter, TokenError};
use serde_json::{Value, json};

const MODELS: [&str; 2] = [
    "HuggingFaceTB/SmolLM2-135M-Instruct",
    "sentence-transformers/all-MiniLM-L6-v2",
];

fn model_dir(repo_id: &str) -> PathBuf {
    let snapshots = hf_cache()
        .join(format!("models--{}", repo_id.replace('/', "--")))
        .join("snapshots");
    std::fs::read_dir(&snapshots)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|dir| dir.join("tokenizer.json").exists())
        .unwrap_or_else(|| {
            panic!(
                "no tokenizer.json under {}: run scripts/setup",
                snapshots.display()
            )
        })
}

const PIECES: &[&str] = &[
    "the",
    "quick",
    "fox",
    "Fine-tuning",
    " ",
    "\n",
    "\r\n",
    "\t",
    "naïve",
    "日本語",
    "🦀",
    "👩‍💻",
    "e\u{301}",
    "{json}",
    "{instruction}",
    "}}",
    "\"quoted\"",
    "a,b",
    ",",
    "[CLS]",
    "<|im_end|>",
    "https://example.org/?a=b",
    "1234",
    "—",
];

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
    fn text(&mut self, max_words: usize) -> String {
        let n = self.below(max_words + 1);
        (0..n)
            .map(|_| PIECES[self.below(PIECES.len())])
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn rows() -> String {
    let mut rng = Rng(0x5ea1_7a11);
    let mut out = String::new();
    for i in 0..60 {
        let mut row = json!({
            "instruction": rng.text(8),
            "input": if i % 3 == 0 { String::new() } else { rng.text(6) },
            "output": rng.text(10),
        });
        if i % 4 == 1 {
            row["system"] = Value::String(rng.text(4));
        }
        out.push_str(&row.to_string());
        out.push('\n');
    }
    out
}

fn types() -> Vec<Option<DatasetType>> {
    let custom: DatasetType = serde_json::from_value(json!({
        "system_prompt": "you are helpful", "system_format": "<<{system}>>\n",
        "field_system": "system", "field_instruction": "instruction", "field_input": "input",
        "field_output": "output", "format": "Q: {instruction} | {input} {{x}}\nA: ",
        "no_input_format": "Q: {instruction}\nA: "
    }))
    .unwrap();
    vec![
        None,
        Some(DatasetType::Instruct),
        Some(DatasetType::Alpaca),
        Some(custom),
        Some(serde_json::from_value(json!({"field": "output"})).unwrap()),
        Some(serde_json::from_value(json!({"system_prompt": "S"})).unwrap()),
    ]
}

fn count(
    counter: &TokenCounter,
    path: &Path,
    ty: Option<&DatasetType>,
) -> Result<TokenCount, TokenError> {
    let spill = path.parent().unwrap();
    counter.count_with(DatasetType::count_rule(ty), |f| {
        sealtune_worker::formats::read_dataset(path, ty, &ReadLimits::default(), spill, f)
    })
}

#[test]
fn every_format_counts_like_python_transformers_under_every_dataset_type() {
    let dir = tempfile::tempdir().unwrap();
    let rows_path = dir.path().join("rows.jsonl");
    std::fs::write(&rows_path, rows()).unwrap();
    let types = types();
    let types_json: Vec<Value> = types
        .iter()
        .map(|t| serde_json::to_value(t).unwrap())
        .collect();
    let types_path = dir.path().join("types.json");
    std::fs::write(&types_path, serde_json::to_string(&types_json).unwrap()).unwrap();
    let out = dir.path().join("out");
    let oracle = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/formats_oracle.py");
    let dirs: Vec<PathBuf> = MODELS.iter().map(|m| model_dir(m)).collect();
    let run = Command::new(venv_python())
        .arg(&oracle)
        .arg(&rows_path)
        .arg(&out)
        .arg(&types_path)
        .args(&dirs)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let expected: Value = serde_json::from_slice(&run.stdout).unwrap();

    for model in &dirs {
        let counter = TokenCounter::from_file(model.join("tokenizer.json")).unwrap();
        let per_file = &expected[model.to_str().unwrap()];
        for (file, counts) in per_file.as_object().unwrap() {
            for (ty, want) in types.iter().zip(counts.as_array().unwrap()) {
                if want.is_null() {
                    continue;
                }
                let got = count(&counter, &out.join(file), ty.as_ref())
                    .unwrap_or_else(|e| panic!("{file} {ty:?}: {e}"));
                assert_eq!(
                    (got.records, got.tokens),
                    (
                        want["records"].as_u64().unwrap(),
                        want["tokens"].as_u64().unwrap()
                    ),
                    "{} {file} {ty:?}",
                    model.display()
                );
            }
            // The JSONL the rows came from counts the same as every other format.
            let jsonl = count(&counter, &rows_path, None).unwrap();
            if file != "chat.parquet" {
                assert_eq!(
                    jsonl.tokens,
                    counts[0]["tokens"].as_u64().unwrap(),
                    "{file}"
                );
            }
        }
    }

    // Malformed files of the columnar formats fail naming the record.
    let counter = TokenCounter::from_file(dirs[0].join("tokenizer.json")).unwrap();
    for (file, want) in [
        (
            "bad.parquet",
            "row 3: field `output` must be a string, found null",
        ),
        (
            "bad_hf.zip",
            "bad_hf/data-00000-of-00001.arrow: row 2: field `output` must be a string, found null",
        ),
        (
            "cut.parquet",
            "row 1: cannot decode: not a readable Parquet file",
        ),
    ] {
        let e = count(&counter, &out.join(file), None).unwrap_err();
        assert!(e.to_string().starts_with(want), "{file}: {e}");
        assert!(
            matches!(e, TokenError::Dataset(DatasetError::Record { .. })),
            "{file}: {e}"
        );
    }
}

/// A one-column (`text`) Parquet file of `rows`, written by the `parquet` crate with `compression`,
/// no dictionary and one data page per row group.
fn write_parquet(path: &Path, rows: &[String], compression: parquet::basic::Compression) {
    use std::sync::Arc;
    let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
        "text",
        arrow_schema::DataType::Utf8,
        false,
    )]));
    let column = arrow_array::StringArray::from_iter_values(rows);
    let batch = arrow_array::RecordBatch::try_new(schema.clone(), vec![Arc::new(column)]).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(compression)
        .set_dictionary_enabled(false)
        .set_data_page_size_limit(usize::MAX)
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn read_all(path: &Path) -> Result<u64, DatasetError> {
    let mut n = 0;
    sealtune_worker::formats::read_dataset(
        path,
        None,
        &ReadLimits::default(),
        path.parent().unwrap(),
        |_, _| {
            n += 1;
            Ok::<(), DatasetError>(())
        },
    )?;
    Ok(n)
}

/// The Thrift-compact varint of `value` zigzag-encoded (an i32 field of a page header).
fn zigzag_varint(value: i64) -> Vec<u8> {
    let mut z = ((value << 1) ^ (value >> 63)) as u64;
    let mut out = vec![];
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// The Parquet decoder allocates what a page *declares* (Snappy zero-fills it), so a small file
/// declaring huge pages would take the worker's memory, and a gzip page decompresses to its end
/// whatever it declares. Every page header is checked first: a real file's page whose declared
/// size is forged up to 100 MiB (the same varint length, so the file stays consistent) is refused
/// naming the page before anything is decoded (without the check the forged file reads, after
/// zero-filling 100 MiB), and gzip pages are refused; the unforged file reads.
#[test]
fn a_parquet_page_declaring_more_than_the_limit_is_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    // ~1.5 MiB of text in one row: one data page whose size needs a 4-byte varint, like 100 MiB.
    let big: String = (0..300_000).map(|i| format!("w{} ", i % 997)).collect();
    assert!((1 << 20..1 << 27).contains(&big.len()), "{}", big.len());
    let rows = vec![big.clone(), "a short row".to_string()];
    let good = dir.path().join("good.parquet");
    write_parquet(&good, &rows, parquet::basic::Compression::SNAPPY);
    assert_eq!(read_all(&good).unwrap(), 2);

    // Forge the page's declared uncompressed size.
    let mut bytes = std::fs::read(&good).unwrap();
    let meta = parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&std::fs::File::open(&good).unwrap())
        .unwrap();
    let column = &meta.row_groups()[0].columns()[0];
    let start = column.data_page_offset() as usize;
    let sizes = sealtune_worker::parquet_pages::page_sizes(&bytes[start..]).unwrap();
    let real = zigzag_varint(sizes.uncompressed);
    let forged = zigzag_varint(100 << 20);
    assert_eq!(real.len(), forged.len());
    let header = &mut bytes[start..start + sizes.len as usize];
    let at = header
        .windows(real.len() + 1)
        .position(|w| w[0] == 0x15 && w[1..] == real[..])
        .expect("field 2 of the header");
    header[at + 1..at + 1 + real.len()].copy_from_slice(&forged);
    let bomb = dir.path().join("bomb.parquet");
    std::fs::write(&bomb, &bytes).unwrap();
    let e = read_all(&bomb).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "row group 0, column 0 (text): the page at byte {start} declares 104857600 uncompressed bytes, over the 67108864 accepted"
        )),
        "{e}"
    );

    let gzip = dir.path().join("gzip.parquet");
    write_parquet(
        &gzip,
        &rows,
        parquet::basic::Compression::GZIP(Default::default()),
    );
    let e = read_all(&gzip).unwrap_err().to_string();
    assert!(
        e.contains("pages are not accepted (their decoder is not bounded); save the file with Snappy or Zstd compression"),
        "{e}"
    );
}
