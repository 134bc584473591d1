//! Benchmark `tokens` (see BENCHMARKS.md, "Token counting (protocol)").
//!
//! Counts a generated 10 MB JSONL (all three record shapes) with SmolLM2's tokenizer:
//! sealtune's `TokenCounter::count_dataset` against 0G's Python counter (`AutoTokenizer`, one `encode` per
//! field per record: `protocol/tests/py/count_tokens_0g.py`) run as a subprocess that times itself
//! (reading + counting, not the import or the tokenizer load). Runs are interleaved and medians
//! compared; the counts must be identical. A second interleaved pass, on the records already in memory,
//! compares the count-only path (`TokenCounter::count_records`, what `count_dataset` uses) with the full
//! `encode_fast` path it replaced (`count_text_by_encoding`), each on one thread and on all cores, so
//! the per-core gain over Python (which counts on one thread) shows apart from the parallel one.
//! Then a criterion group times the Rust side alone.
//!
//! Needs the project venv and model cache (`scripts/setup`). Run:
//! `cargo bench -p sealtune-benches --bench tokens` (with `. scripts/env`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::Criterion;
use rayon::prelude::*;
use sealtune_protocol::dataset::{self, DatasetError, ReadLimits, Record};
use sealtune_protocol::tokens::{CountRule, TokenCounter};

const TARGET_BYTES: usize = 10 << 20;
const ROUNDS: usize = 5;

use sealtune_e2e::{hf_cache, repo_root};

fn smollm2_dir() -> PathBuf {
    let snapshots = hf_cache().join("models--HuggingFaceTB--SmolLM2-135M-Instruct/snapshots");
    std::fs::read_dir(&snapshots)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|d| d.join("tokenizer.json").exists())
        .unwrap_or_else(|| {
            panic!(
                "no SmolLM2 tokenizer under {}: run scripts/setup",
                snapshots.display()
            )
        })
}

const WORDS: &[&str] = &[
    "the",
    "model",
    "learns",
    "from",
    "examples",
    "and",
    "a",
    "provider",
    "runs",
    "training",
    "inside",
    "confidential",
    "virtual",
    "machine",
    "customer",
    "dataset",
    "tokens",
    "fee",
    "is",
    "computed",
    "with",
    "tokenizer",
    "of",
    "to",
    "in",
    "for",
    "that",
    "this",
    "answer",
    "question",
    "explain",
    "why",
    "how",
    "network",
    "storage",
    "root",
    "hash",
    "Rust",
    "Python",
    "function",
    "returns",
    "value",
    "error",
    "never",
    "panics",
    "fine-tuning",
    "LoRA",
    "adapter",
    "weights",
    "epoch",
    "loss",
    "step,",
    "data.",
    "It's",
    "well-known:",
    "2024",
    "3.14",
    "naïve",
    "café",
    "日本語",
    "中文文本",
    "русский",
    "🦀",
    "e\u{301}",
    "\"quoted\"",
    "(parenthesised)",
    "x = y + 1;",
    "\n",
    "\n\n",
    "  ",
];

struct Gen(u64);

impl Gen {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    /// `base + below(spread)` words, as a JSON string literal.
    fn text(&mut self, base: usize, spread: usize) -> String {
        let words = base + if spread > 0 { self.below(spread) } else { 0 };
        let mut s = String::new();
        for i in 0..words {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(WORDS[self.below(WORDS.len())]);
        }
        quote(&s)
    }
}

/// A deterministic ~10 MB JSONL mixing the three shapes.
fn generate(path: &Path) -> usize {
    let mut g = Gen(0x1234_5678_9abc_def0);
    let mut out = String::with_capacity(TARGET_BYTES + (64 << 10));
    let mut records = 0;
    while out.len() < TARGET_BYTES {
        let line = match records % 3 {
            0 => format!(r#"{{"text":{}}}"#, g.text(100, 600)),
            1 => {
                let (i, n, o) = (g.text(10, 40), g.text(0, 200), g.text(50, 400));
                format!(r#"{{"instruction":{i},"input":{n},"output":{o}}}"#)
            }
            _ => {
                let (s, u, a) = (g.text(10, 0), g.text(10, 60), g.text(50, 400));
                format!(
                    r#"{{"messages":[{{"role":"system","content":{s}}},{{"role":"user","content":{u}}},{{"role":"assistant","content":{a}}}]}}"#
                )
            }
        };
        out.push_str(&line);
        out.push('\n');
        records += 1;
    }
    std::fs::write(path, out).expect("write dataset");
    records
}

/// A JSON string literal (the generator's words need only these escapes).
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// The number after `"key": ` in the Python counter's one-line JSON output.
fn json_number(text: &str, key: &str) -> f64 {
    let at = text
        .find(&format!("\"{key}\": "))
        .unwrap_or_else(|| panic!("no {key} in {text}"));
    let rest = &text[at + key.len() + 4..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end]
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("bad {key} in {text}"))
}

struct PythonRun {
    tokens: u64,
    seconds: f64,
}

fn python_count(model: &Path, dataset: &Path) -> PythonRun {
    let out = Command::new(sealtune_e2e::venv_python())
        .arg(repo_root().join("protocol/tests/py/count_tokens_0g.py"))
        .arg(model)
        .arg(dataset)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_CACHE", hf_cache())
        .env("TOKENIZERS_PARALLELISM", "false")
        .output()
        .expect("run the venv's python (scripts/setup)");
    assert!(
        out.status.success(),
        "python counter failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    PythonRun {
        tokens: json_number(&text, "tokens") as u64,
        seconds: json_number(&text, "seconds"),
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let model = smollm2_dir();
    let dir = tempfile::tempdir().expect("tempdir");
    let dataset = dir.path().join("tokens-10mb.jsonl");
    let records = generate(&dataset);
    let bytes = std::fs::metadata(&dataset).expect("dataset").len();

    let load = Instant::now();
    let counter = TokenCounter::from_file(model.join("tokenizer.json")).expect("tokenizer");
    let load = load.elapsed();
    let limits = ReadLimits::default();
    let count = || {
        counter
            .count_dataset(&dataset, CountRule::Official, &limits)
            .expect("count")
    };

    println!(
        "dataset: {records} records, {bytes} bytes; cores: {}; tokenizer load {:.0} ms",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load.as_secs_f64() * 1e3
    );
    let mut rust_s = Vec::new();
    let mut python_s = Vec::new();
    for round in 0..ROUNDS {
        let t = Instant::now();
        let rust = count();
        let r = t.elapsed().as_secs_f64();
        let py = python_count(&model, &dataset);
        assert_eq!(rust.tokens, py.tokens, "Rust and Python counts differ");
        println!(
            "round {round}: tokens {} | rust {:.3} s | python {:.3} s | {:.2}x",
            rust.tokens,
            r,
            py.seconds,
            py.seconds / r
        );
        rust_s.push(r);
        python_s.push(py.seconds);
    }
    let (r, p) = (median(rust_s), median(python_s));
    println!(
        "median: rust {r:.3} s ({:.1} MB/s) | python {p:.3} s ({:.1} MB/s) | rust is {:.2}x faster",
        bytes as f64 / r / 1e6,
        bytes as f64 / p / 1e6,
        p / r
    );

    // In-memory pass: count-only vs full encoding, one thread vs all cores.
    let mut records: Vec<Record> = Vec::new();
    dataset::read_dataset(&dataset, &limits, |_, r| {
        records.push(r);
        Ok::<(), DatasetError>(())
    })
    .expect("read dataset");
    let by_encoding = |records: &[Record]| -> u64 {
        records
            .par_iter()
            .map(|r| {
                let f = r.fields();
                [f.text, f.input, f.output]
                    .into_iter()
                    .flatten()
                    .map(|t| counter.count_text_by_encoding(t).expect("encode"))
                    .sum::<u64>()
            })
            .sum()
    };
    let count_only = |records: &[Record]| -> u64 {
        counter
            .count_records(records, CountRule::Official)
            .expect("count")
    };
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let names = [
        "count-only, 1 thread",
        "encode_fast, 1 thread",
        "count-only, all cores",
        "encode_fast, all cores",
    ];
    let mut secs = vec![Vec::new(); names.len()];
    let mut expected = None;
    for _ in 0..ROUNDS {
        for (i, s) in secs.iter_mut().enumerate() {
            let t = Instant::now();
            let n = match i {
                0 => one.install(|| count_only(&records)),
                1 => one.install(|| by_encoding(&records)),
                2 => count_only(&records),
                _ => by_encoding(&records),
            };
            s.push(t.elapsed().as_secs_f64());
            assert_eq!(*expected.get_or_insert(n), n, "paths disagree");
        }
    }
    println!(
        "in memory, {ROUNDS} interleaved rounds, medians (load average {}); python median {p:.3} s:",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    for (name, s) in names.iter().zip(secs) {
        let m = median(s);
        println!(
            "  {name}: {m:.3} s ({:.1} MB/s, {:.2}x python)",
            bytes as f64 / m / 1e6,
            p / m
        );
    }

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20));
    c.bench_function("tokens/count_dataset_10mb_smollm2", |b| b.iter(count));
    c.final_summary();
}
