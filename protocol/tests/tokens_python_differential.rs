//! Differential test of the token-counting rule: sealtune's Rust counter against 0G's Python counter
//! (`transformers.AutoTokenizer`, one `encode` per field per record, `tests/py/count_tokens_0g.py`)
//! on generated datasets of all three shapes, for both models of the project's offline HF cache.
//!
//! Needs the project venv and models installed by `scripts/setup`; fails (never skips) without them.
#![cfg(feature = "tokenizer")]

use std::path::{Path, PathBuf};
use std::process::Command;

use sealtune_protocol::dataset::{ReadLimits, parse_record};
use sealtune_protocol::tokens::{CountRule, TokenCounter};
use serde_json::{Value, json};

const SMOLLM2: &str = "HuggingFaceTB/SmolLM2-135M-Instruct";
const MINILM: &str = "sentence-transformers/all-MiniLM-L6-v2";

use sealtune_e2e::{hf_cache, repo_root, venv_python as python};

/// The snapshot directory of `repo_id` in the HF cache that holds a `tokenizer.json`.
fn model_dir(repo_id: &str) -> PathBuf {
    let snapshots = hf_cache()
        .join(format!("models--{}", repo_id.replace('/', "--")))
        .join("snapshots");
    let found = std::fs::read_dir(&snapshots)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|dir| dir.join("tokenizer.json").exists());
    found.unwrap_or_else(|| {
        panic!(
            "no tokenizer.json for {repo_id} under {}: run scripts/setup to install the offline model cache",
            snapshots.display()
        )
    })
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const PIECES: &[&str] = &[
    "the",
    "quick",
    "brown",
    "fox",
    "Fine-tuning",
    "model",
    "0G",
    "network",
    "TEE",
    " ",
    "  ",
    "\n",
    "\t",
    "\r\n",
    "naïve",
    "café",
    "Ünïcödé",
    "日本語のテキスト",
    "中文",
    "한국어",
    "Ελληνικά",
    "русский",
    "עברית",
    "العربية",
    "हिन्दी",
    "🦀",
    "👩‍💻",
    "🇫🇷",
    "e\u{301}",
    "\u{200b}",
    "\u{a0}",
    "ﬁ",
    "[CLS]",
    "[SEP]",
    "[UNK]",
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "</s>",
    "https://example.org/a?b=c",
    "fn main() { println!(\"hi\"); }",
    "1234567890",
    "3.14159",
    "$",
    "%",
    "\\",
    "\"quoted\"",
    "{json}",
    "UPPER",
    "MiXeD",
    "don't",
    "l'été",
    "a\u{2028}b",
    "\u{1}",
    "...",
    "—",
    "«»",
];

fn text(rng: &mut Rng) -> String {
    let words = match rng.below(10) {
        0 => 0,                     // empty field
        1 => 600 + rng.below(2400), // long: far past MiniLM's 128 and 512
        _ => 1 + rng.below(60),
    };
    let mut s = String::new();
    for _ in 0..words {
        s.push_str(rng.pick(PIECES));
        if rng.below(3) > 0 {
            s.push(' ');
        }
    }
    s
}

fn record(rng: &mut Rng, shape: usize) -> Value {
    match shape {
        0 => json!({"text": text(rng)}),
        1 => json!({"instruction": text(rng), "input": text(rng), "output": text(rng)}),
        2 => json!({"instruction": text(rng), "output": text(rng), "id": rng.below(1000)}),
        _ => {
            let mut messages = Vec::new();
            if rng.below(2) == 0 {
                messages.push(json!({"role": "system", "content": text(rng)}));
            }
            for _ in 0..1 + rng.below(3) {
                messages.push(json!({"role": "user", "content": text(rng)}));
                messages.push(json!({"role": "assistant", "content": text(rng)}));
            }
            if rng.below(4) == 0 {
                messages.push(json!({"role": "user", "content": text(rng)}));
            }
            json!({"messages": messages})
        }
    }
}

/// A dataset mixing all shapes, one record per line.
fn dataset(seed: u64, records: usize) -> String {
    let mut rng = Rng(seed);
    let mut out = String::new();
    for i in 0..records {
        out.push_str(&record(&mut rng, i % 4).to_string());
        out.push('\n');
    }
    out
}

fn python_counts(model: &Path, dataset: &Path, rule: CountRule) -> (u64, Vec<u64>) {
    let script = repo_root().join("protocol/tests/py/count_tokens_0g.py");
    let mut cmd = Command::new(python());
    cmd.arg(&script)
        .arg(model)
        .arg(dataset)
        .arg("--per-record")
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_CACHE", hf_cache())
        .env("TRANSFORMERS_OFFLINE", "1")
        .env("TOKENIZERS_PARALLELISM", "false");
    if rule == CountRule::WithInstruction {
        cmd.arg("--with-instruction");
    }
    let out = cmd
        .output()
        .expect("running the venv's python (run scripts/setup)");
    assert!(
        out.status.success(),
        "python counter failed (run scripts/setup if the venv is incomplete):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("python counter prints JSON");
    let per_record = v["per_record"]
        .as_array()
        .expect("per_record")
        .iter()
        .map(|n| n.as_u64().expect("count"))
        .collect();
    (v["tokens"].as_u64().expect("tokens"), per_record)
}

fn check_model(repo_id: &str, seed: u64) {
    let model = model_dir(repo_id);
    let counter = TokenCounter::from_file(model.join("tokenizer.json")).expect("tokenizer loads");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.jsonl");
    let data = dataset(seed, 400);
    std::fs::write(&path, &data).unwrap();

    for rule in [CountRule::Official, CountRule::WithInstruction] {
        let (py_total, py_records) = python_counts(&model, &path, rule);
        let rust_records: Vec<u64> = data
            .lines()
            .map(|line| {
                counter
                    .count_record(&parse_record(line.as_bytes()).unwrap(), rule)
                    .unwrap()
            })
            .collect();
        assert_eq!(
            rust_records.len(),
            py_records.len(),
            "{repo_id} {rule:?}: record count"
        );
        for (i, (r, p)) in rust_records.iter().zip(&py_records).enumerate() {
            assert_eq!(
                r,
                p,
                "{repo_id} {rule:?}: line {}: {}",
                i + 1,
                data.lines().nth(i).unwrap()
            );
        }
        let total = counter
            .count_dataset(&path, rule, &ReadLimits::default())
            .unwrap();
        assert_eq!(total.records, 400);
        assert_eq!(total.tokens, py_total, "{repo_id} {rule:?}: dataset total");
    }
}

#[test]
fn smollm2_counts_equal_transformers() {
    check_model(SMOLLM2, 0x5eed_0001);
}

#[test]
fn minilm_counts_equal_transformers() {
    check_model(MINILM, 0x5eed_0002);
}

/// MiniLM's tokenizer.json truncates to 128 tokens: the counter must not.
#[test]
fn minilm_truncation_is_disabled() {
    let counter = TokenCounter::from_file(model_dir(MINILM).join("tokenizer.json")).unwrap();
    assert_eq!(counter.count_text(&"word ".repeat(1000)).unwrap(), 1002);
    assert_eq!(
        counter.count_text("").unwrap(),
        2,
        "[CLS] [SEP] like Python's encode(\"\")"
    );
}

/// The count-only path equals the length of a full `encode_fast`, on both models, for texts with added
/// tokens, repeated pre-tokens (cache hits), long pre-tokens (cache bypassed), and with two counters
/// alternating on the same threads (the per-thread cache must not mix tokenizers).
#[test]
fn count_only_path_equals_full_encoding() {
    let smol = TokenCounter::from_file(model_dir(SMOLLM2).join("tokenizer.json")).unwrap();
    let mini = TokenCounter::from_file(model_dir(MINILM).join("tokenizer.json")).unwrap();
    let long = "x".repeat(300);
    let texts = [
        "",
        " ",
        "\n\n",
        "Hello world, hello WORLD! hello world",
        "<|im_start|>user\nhi<|im_end|><|endoftext|>",
        "[CLS] tokens [SEP] [MASK] [PAD] [UNK]",
        "naïve café 日本語 中文文本 русский 🦀 e\u{301} 3.14 2024",
        long.as_str(),
        "  leading and trailing spaces   ",
        "tabs\tand\r\nnewlines\n",
    ];
    for round in 0..3 {
        for text in texts {
            for (name, counter) in [("smollm2", &smol), ("minilm", &mini)] {
                assert_eq!(
                    counter.count_text(text).unwrap(),
                    counter.count_text_by_encoding(text).unwrap(),
                    "{name}, round {round}: {text:?}"
                );
            }
        }
    }
    let data = dataset(0x5eed_0003, 300);
    std::thread::scope(|s| {
        for first in 0..2 {
            let (data, counters) = (&data, [&smol, &mini]);
            s.spawn(move || {
                for (i, line) in data.lines().enumerate() {
                    // Alternate the tokenizers on this thread.
                    let counter = counters[(i + first) % 2];
                    assert_eq!(
                        counter.count_text(line).unwrap(),
                        counter.count_text_by_encoding(line).unwrap(),
                        "{line}"
                    );
                }
            });
        }
    });
}
