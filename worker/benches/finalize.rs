//! Finalize of a trained output when the parent seals, through the pipeline's own functions
//! (`sealtune_worker::pipeline::finalize`; no criterion: one run is seconds of disk I/O; rounds are
//! timed by hand and the median printed). What `finalize` adds around them is database writes and
//! the chain call, not timed here.
//!
//! 1. `seal`: `finalize::seal_dir` (`deliverable::seal_dir_to_file`: zip `Stored`, AES-256-GCM
//!    chunks, write, fsync);
//! 2. `sign`: `finalize::sign_sealed` (tag digest read back from the sealed file, signed with a TEE
//!    key, `finish`: patch + fsync) — the pipeline re-reads the file because the child may have sealed it;
//! 3. `import`: `finalize::import_sealed` (hard link + `storage::Store::import_file`: keccak256 and
//!    the 0G root hash in one streaming pass, then a rename into the content-addressed store).
//!
//! Peak RSS is the process's `VmHWM`, reset before each round through `/proc/self/clear_refs`.
//! Target (issue 6): 1 GiB in under 5 s with RSS under 300 MB on 2 cores.
//!
//!     . scripts/env && cargo bench -p sealtune-worker --bench finalize [-- MIB ROUNDS]
//!
//! The output (four shards of pseudo-random bytes + a small config) is written once into a temp
//! directory under `$SEALTUNE_BENCH_DIR` (default: the system temp dir); it is in the page cache
//! afterwards, so reading it costs memory bandwidth, not disk.
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use sealtune_protocol::deliverable::{OsRng, TeeSigningKey};
use sealtune_worker::pipeline::finalize;
use sealtune_worker::storage::{StorageConfig, Store};

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn reset_hwm() {
    // "5" resets the peak resident set size (Linux ≥ 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Writes `mib` MiB of high-entropy bytes as four shards plus a config, with a 1 MiB buffer.
fn write_output(dir: &Path, mib: u64) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("adapter_config.json"),
        br#"{"r":8,"lora_alpha":16}"#,
    )
    .unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut buf = vec![0u8; 1 << 20];
    let shards = 4u64;
    for s in 0..shards {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(dir.join(format!("model-{s:05}.safetensors"))).unwrap(),
        );
        for _ in 0..mib.div_ceil(shards) {
            for word in buf.chunks_exact_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                word.copy_from_slice(&state.to_le_bytes());
            }
            f.write_all(&buf).unwrap();
        }
        f.flush().unwrap();
    }
}

struct Round {
    seal: Duration,
    sign: Duration,
    import: Duration,
    total: Duration,
    hwm_mib: f64,
    sealed_bytes: u64,
}

fn one_round(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    output: &Path,
    work: &Path,
    tee: &TeeSigningKey,
) -> Round {
    reset_hwm();
    let sealed = work.join("model.sealed");
    let t0 = Instant::now();
    let result = rt
        .block_on(finalize::seal_dir(output.to_owned(), &sealed))
        .unwrap();
    let t1 = Instant::now();
    rt.block_on(finalize::sign_sealed(tee.clone(), &sealed))
        .unwrap();
    let t2 = Instant::now();
    let stored = rt
        .block_on(finalize::import_sealed(store, work, &sealed))
        .unwrap();
    std::fs::remove_file(&sealed).unwrap();
    let t3 = Instant::now();
    let hwm_mib = vm_hwm_kib() as f64 / 1024.0;
    assert_eq!(stored.len, result.file_len);
    // Keep the disk free for the next round.
    rt.block_on(store.remove(&stored.keccak)).unwrap();
    Round {
        seal: t1 - t0,
        sign: t2 - t1,
        import: t3 - t2,
        total: t3 - t0,
        hwm_mib,
        sealed_bytes: stored.len,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let mib: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let rounds: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let base = std::env::var_os("SEALTUNE_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let tmp = tempfile::tempdir_in(base).unwrap();
    let output = tmp.path().join("output");
    let work = tmp.path().join("task");
    std::fs::create_dir_all(&work).unwrap();
    write_output(&output, mib);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = Store::open(&StorageConfig::default(), &tmp.path().join("data")).unwrap();
    let tee = TeeSigningKey::random(&mut OsRng);
    println!(
        "finalize of {mib} MiB ({} cores, rayon {} threads), {rounds} rounds, files under {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        rayon::current_num_threads(),
        tmp.path().display()
    );
    let mut all = Vec::new();
    for r in 0..rounds {
        let round = one_round(&rt, &store, &output, &work, &tee);
        let gib = round.sealed_bytes as f64 / f64::from(1u32 << 30);
        println!(
            "round {r}: total {:.2} s ({:.0} MiB/s) = seal {:.2} s + tag digest/sign/finish {:.2} s + link/import (keccak + root) {:.2} s; peak RSS {:.0} MiB",
            round.total.as_secs_f64(),
            gib * 1024.0 / round.total.as_secs_f64(),
            round.seal.as_secs_f64(),
            round.sign.as_secs_f64(),
            round.import.as_secs_f64(),
            round.hwm_mib
        );
        all.push(round);
    }
    let med = |f: fn(&Round) -> f64| median(all.iter().map(f).collect());
    println!(
        "median: total {:.2} s (seal {:.2} s, sign {:.2} s, import {:.2} s), peak RSS max {:.0} MiB",
        med(|r| r.total.as_secs_f64()),
        med(|r| r.seal.as_secs_f64()),
        med(|r| r.sign.as_secs_f64()),
        med(|r| r.import.as_secs_f64()),
        all.iter().map(|r| r.hwm_mib).fold(0.0, f64::max)
    );
}
