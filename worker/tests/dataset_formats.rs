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
