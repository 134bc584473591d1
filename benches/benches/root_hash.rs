//! 0G Storage root hash throughput (BENCHMARKS.md, "Storage root hash (protocol)").
//!
//! `cargo bench -p sealtune-benches --bench root_hash` measures, on 256 MiB:
//! - `root_hash/one_thread` and `root_hash/all_cores`: `storage::root_hash` of a byte slice on a
//!   one-thread rayon pool and on the global pool;
//! - `root_hash/file_streaming`: `storage::root_hash_file` (bounded memory, page-cached file);
//! - `keccak_limit/one_thread`: plain `keccak256` of every 256-byte leaf, no tree (the per-core
//!   ceiling of hashing the leaves alone);
//!
//! then times the official JS SDK (`benches/js/root_hash.cjs`) on the same file once and prints the
//! ratio. Set `SEALTUNE_BENCH_NO_JS=1` to skip the JS run.

use std::{hint::black_box, time::Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use sealtune_protocol::{
    keccak256,
    storage::{CHUNK_SIZE, root_hash, root_hash_file},
};

const SIZE: usize = 256 << 20;

fn data() -> Vec<u8> {
    (0..SIZE).map(|i| (i % 251) as u8).collect()
}

fn bench(c: &mut Criterion, data: &[u8], file: &std::path::Path) {
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("one-thread pool");

    let mut group = c.benchmark_group("root_hash");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(std::time::Duration::from_secs(1))
        .throughput(Throughput::Bytes(SIZE as u64));
    group.bench_function("one_thread", |b| {
        b.iter(|| one.install(|| root_hash(black_box(data)).expect("root")))
    });
    group.bench_function("all_cores", |b| {
        b.iter(|| root_hash(black_box(data)).expect("root"))
    });
    group.bench_function("file_streaming", |b| {
        b.iter(|| root_hash_file(black_box(file)).expect("root"))
    });
    group.finish();

    let mut group = c.benchmark_group("keccak_limit");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(std::time::Duration::from_secs(1))
        .throughput(Throughput::Bytes(SIZE as u64));
    group.bench_function("one_thread", |b| {
        b.iter(|| {
            black_box(data)
                .chunks(CHUNK_SIZE)
                .fold(0u8, |acc, leaf| acc ^ keccak256(leaf)[0])
        })
    });
    group.finish();
}

/// Times the official SDK and our streaming file hash on the same file, once each.
fn js_comparison(file: &std::path::Path) {
    if std::env::var_os("SEALTUNE_BENCH_NO_JS").is_some() {
        return;
    }
    let output = sealtune_e2e::node(sealtune_e2e::repo_root().join("benches/js/root_hash.cjs"))
        .arg(file)
        .output();
    let output = match output {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!(
                "JS SDK run failed (run scripts/setup): {}",
                String::from_utf8_lossy(&o.stderr)
            );
            return;
        }
        Err(e) => {
            eprintln!("cannot run node ({e}): run scripts/setup");
            return;
        }
    };
    // {"root":"0x…","ms":123.4}, printed by our own script.
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| -> String {
        let start = text.find(&format!("\"{name}\":")).expect("field") + name.len() + 3;
        text[start..]
            .split([',', '}'])
            .next()
            .expect("value")
            .trim_matches('"')
            .to_string()
    };
    let (js_root, js_ms): (String, f64) = (field("root"), field("ms").parse().expect("ms"));
    let start = Instant::now();
    let ours = root_hash_file(file).expect("root");
    let ours_ms = start.elapsed().as_secs_f64() * 1e3;
    assert_eq!(ours.root().to_string(), js_root, "roots differ");
    let mib = SIZE as f64 / (1 << 20) as f64;
    println!(
        "js_sdk/root_hash 256 MiB: {:.0} ms ({:.1} MiB/s); ours (file, all cores): {:.0} ms ({:.1} MiB/s); ratio {:.1}x",
        js_ms,
        mib / (js_ms / 1e3),
        ours_ms,
        mib / (ours_ms / 1e3),
        js_ms / ours_ms
    );
}

fn main() {
    let data = data();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("root_hash_256MiB.bin");
    std::fs::write(&file, &data).expect("write bench file");

    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &data, &file);
    c.final_summary();
    js_comparison(&file);
}
