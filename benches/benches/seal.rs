//! Benchmark `seal`: sealing and opening a model directory (PROTOCOL.md §4), figures in BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p sealtune-benches --bench seal            # 1 GiB model (SEALTUNE_SEAL_BENCH_MIB to change)
//! ```
//!
//! First a CPU-only pass (no disk): [`SealZipWriter`] seals 256 MiB of in-memory weights into
//! `io::sink()`, `open` opens the sealed bytes from memory into `io::sink()`, and the parts that bound
//! them (one AES-256-GCM call on a 64 MiB chunk with `aws-lc-rs`, what sealing uses, and with the
//! RustCrypto `aes-gcm` crate for comparison, CRC-32 of the zip, a memcpy)
//! are timed alone; rounds are interleaved and each figure is given per wall-second and per
//! CPU-second of the measuring thread (`/proc/thread-self/schedstat`), the latter being what a shared,
//! loaded machine cannot distort much. `SEALTUNE_SEAL_BENCH_CPU_ROUNDS` (default 7) sets the rounds.
//!
//! Then criterion measures seal (zip + AES-256-GCM, stored and deflate) and open (signature check +
//! decrypt) of a directory of bf16-like weights generated in a temporary directory
//! (`SEALTUNE_SEAL_BENCH_MIB=0` skips this disk part). Peak memory is measured apart: the bench re-runs
//! itself as a child process that seals (or opens) once and reports its own `VmHWM`.
use std::hint::black_box;
use std::io::{self, Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use criterion::{Criterion, Throughput};
use sealtune_protocol::deliverable::{
    self, ChunkLen, DeliverableKey, OsRng, SealOptions, SealZipWriter, TeeSigningKey,
    ZipCompression,
};
use sealtune_protocol::sig::address_of;

const CHILD_ENV: &str = "SEALTUNE_SEAL_BENCH_CHILD";

fn tee() -> TeeSigningKey {
    TeeSigningKey::from_slice(&[0x5e; 32]).unwrap_or_else(|_| unreachable!())
}

/// Fill `buf` with bf16 values of a narrow bell curve (like trained weights: random mantissas,
/// concentrated exponents), so deflate sees realistic entropy.
fn weights(buf: &mut [u8], seed: &mut u64) {
    for pair in buf.chunks_exact_mut(2) {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let s = *seed;
        // sum of four uniforms ≈ normal, scaled to σ ≈ 0.02
        let u = ((s & 0xffff) + ((s >> 16) & 0xffff) + ((s >> 32) & 0xffff) + (s >> 48)) as f32
            / 65536.0
            - 2.0;
        let bits = (u * 0.035).to_bits();
        pair.copy_from_slice(&((bits >> 16) as u16).to_le_bytes());
    }
}

/// A model directory of `mib` MiB: shards of at most 256 MiB plus a config.
fn make_model(root: &Path, mib: usize) -> PathBuf {
    let dir = root.join("model");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.join("config.json"),
        br#"{"architectures":["Qwen2ForCausalLM"]}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut left = mib;
    let mut shard = 0;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let this = left.min(256);
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(dir.join(format!("model-{shard:05}.safetensors")))
                .unwrap_or_else(|e| panic!("{e}")),
        );
        for _ in 0..this {
            weights(&mut buf, &mut seed);
            std::io::Write::write_all(&mut f, &buf).unwrap_or_else(|e| panic!("{e}"));
        }
        left -= this;
        shard += 1;
    }
    dir
}

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Child mode: `seal <dir> <out>` or `open <enc> <zip> <keyhex>`; prints `seconds peak_kib`.
fn child(args: &[String]) {
    let t = Instant::now();
    match args.first().map(String::as_str) {
        Some("seal") => {
            let sealed = deliverable::seal_dir_to_file(
                Path::new(&args[1]),
                Path::new(&args[2]),
                &mut OsRng,
                &SealOptions::default(),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            deliverable::finish(
                Path::new(&args[2]),
                &deliverable::sign_tags(&tee(), &sealed.tag_digest),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            println!(
                "{} {} {}",
                t.elapsed().as_secs_f64(),
                vm_hwm_kib(),
                sealed
                    .key
                    .as_bytes()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            );
        }
        Some("open") => {
            let key = DeliverableKey::from_hex(&args[3]).unwrap_or_else(|| panic!("bad key"));
            deliverable::open_file(
                Path::new(&args[1]),
                Path::new(&args[2]),
                &key,
                address_of(tee().verifying_key()),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            println!("{} {}", t.elapsed().as_secs_f64(), vm_hwm_kib());
        }
        _ => panic!("unknown child mode"),
    }
}

fn run_child(args: &[&str]) -> Vec<String> {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(exe)
        .env(CHILD_ENV, "1")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// CPU time of the calling thread, in seconds (`/proc/thread-self/schedstat`: ns on the CPU first).
fn thread_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns / 1e9)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Run `f` once; push its MB/s of `bytes` per wall-second and per CPU-second of this thread.
fn timed(bytes: usize, wall: &mut Vec<f64>, cpu: &mut Vec<f64>, f: impl FnOnce()) {
    let (c, t) = (thread_cpu_s(), Instant::now());
    f();
    let (t, c) = (t.elapsed().as_secs_f64(), thread_cpu_s() - c);
    wall.push(bytes as f64 / 1e6 / t);
    cpu.push(bytes as f64 / 1e6 / c);
}

const CPU_MIB: usize = 256;
const BLOCK: usize = 16 << 20;

/// Seal `CPU_MIB` MiB of `block` (repeated) as one zip entry into `out`.
fn seal_memory<W: Write>(
    out: W,
    key: &DeliverableKey,
    block: &[u8],
) -> deliverable::StreamSealed<W> {
    let mut w = SealZipWriter::new(out, key, &mut OsRng, &SealOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    w.start_file("model.safetensors", (CPU_MIB as u64) << 20)
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..CPU_MIB * (1 << 20) / BLOCK {
        w.write_all(block).unwrap_or_else(|e| panic!("{e}"));
    }
    w.finish().unwrap_or_else(|e| panic!("{e}"))
}

/// The CPU-only pass (see the module docs): interleaved rounds, medians printed.
fn cpu_only() {
    let rounds: usize = std::env::var("SEALTUNE_SEAL_BENCH_CPU_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let mut block = vec![0u8; BLOCK];
    weights(&mut block, &mut 0x2545_f491_4f6c_dd1d);
    let key = DeliverableKey::from_bytes([7; 32]);
    let sealed = seal_memory(Cursor::new(Vec::new()), &key, &block);
    let mut file = sealed.writer;
    deliverable::finish_writer(
        &mut file,
        &deliverable::sign_tags(&tee(), &sealed.tag_digest),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let file = file.into_inner();
    let signer = address_of(tee().verifying_key());
    let cipher = Aes256Gcm::new(&[7u8; 32].into());
    let lc = aws_lc_rs::aead::LessSafeKey::new(
        aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &[7u8; 32])
            .unwrap_or_else(|_| unreachable!()),
    );
    let mut chunk = vec![0u8; deliverable::WIRE_CHUNK_LEN];
    chunk.copy_from_slice(&block.repeat(deliverable::WIRE_CHUNK_LEN / BLOCK));
    let mut copy = vec![0u8; deliverable::WIRE_CHUNK_LEN];
    let total = CPU_MIB << 20;
    let names = [
        "seal 256 MiB -> sink (zip + CRC-32 + copy + AES-256-GCM)",
        "open 256 MiB from memory -> sink (tags + signature + AES-256-GCM)",
        "aes-gcm crate: encrypt one 64 MiB chunk in place",
        "aes-gcm crate: decrypt one 64 MiB chunk in place",
        "crc32fast over 64 MiB (the zip's CRC)",
        "memcpy 64 MiB",
        "aws-lc-rs (what deliverable uses): encrypt one 64 MiB chunk in place",
        "aws-lc-rs (what deliverable uses): decrypt one 64 MiB chunk in place",
    ];
    let mut wall = vec![Vec::new(); names.len()];
    let mut cpu = vec![Vec::new(); names.len()];
    for _ in 0..rounds {
        timed(total, &mut wall[0], &mut cpu[0], || {
            black_box(seal_memory(io::sink(), &key, &block).tag_digest);
        });
        timed(total, &mut wall[1], &mut cpu[1], || {
            deliverable::open(
                &mut Cursor::new(file.as_slice()),
                &mut io::sink(),
                &key,
                signer,
                ChunkLen::default(),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        });
        let nonce = Nonce::from_slice(&[1u8; 12]);
        let mut tag = Default::default();
        timed(chunk.len(), &mut wall[2], &mut cpu[2], || {
            tag = cipher
                .encrypt_in_place_detached(nonce, &[], &mut chunk)
                .unwrap_or_else(|_| unreachable!());
        });
        timed(chunk.len(), &mut wall[3], &mut cpu[3], || {
            cipher
                .decrypt_in_place_detached(nonce, &[], &mut chunk, &tag)
                .unwrap_or_else(|_| panic!("decrypt"));
        });
        timed(chunk.len(), &mut wall[4], &mut cpu[4], || {
            let mut h = crc32fast::Hasher::new();
            h.update(&chunk);
            black_box(h.finalize());
        });
        timed(chunk.len(), &mut wall[5], &mut cpu[5], || {
            copy.copy_from_slice(&chunk);
            black_box(&copy);
        });
        let mut lc_tag = [0u8; 16];
        timed(chunk.len(), &mut wall[6], &mut cpu[6], || {
            let t = lc
                .seal_in_place_separate_tag(
                    aws_lc_rs::aead::Nonce::assume_unique_for_key([2u8; 12]),
                    aws_lc_rs::aead::Aad::empty(),
                    &mut chunk,
                )
                .unwrap_or_else(|_| unreachable!());
            lc_tag.copy_from_slice(t.as_ref());
        });
        copy.copy_from_slice(&chunk);
        let mut sealed = [copy.as_slice(), lc_tag.as_slice()].concat();
        timed(chunk.len(), &mut wall[7], &mut cpu[7], || {
            lc.open_in_place(
                aws_lc_rs::aead::Nonce::assume_unique_for_key([2u8; 12]),
                aws_lc_rs::aead::Aad::empty(),
                &mut sealed,
            )
            .unwrap_or_else(|_| panic!("decrypt"));
        });
    }
    println!(
        "CPU-only, {rounds} interleaved rounds, medians (load average {}):",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    for ((name, w), c) in names.iter().zip(wall).zip(cpu) {
        println!(
            "  {name}: {:.0} MB/s wall, {:.0} MB/s per CPU-second",
            median(w),
            median(c)
        );
    }
}

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        child(&args);
        return;
    }
    cpu_only();
    let mib: usize = std::env::var("SEALTUNE_SEAL_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    if mib == 0 {
        return;
    }
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let model = make_model(tmp.path(), mib);
    let enc = tmp.path().join("model.enc");
    let zip = tmp.path().join("model.zip");
    let bytes = (mib as u64) << 20;

    // Peak RSS and one-shot timings in a fresh process each.
    let s = run_child(&[
        "seal",
        model.to_str().unwrap_or_default(),
        enc.to_str().unwrap_or_default(),
    ]);
    let o = run_child(&[
        "open",
        enc.to_str().unwrap_or_default(),
        zip.to_str().unwrap_or_default(),
        &s[2],
    ]);
    let mbps = |secs: &str| bytes as f64 / 1e6 / secs.parse::<f64>().unwrap_or(f64::NAN);
    println!(
        "one-shot {mib} MiB: seal {:.0} MB/s, peak RSS {} MiB; open {:.0} MB/s, peak RSS {} MiB",
        mbps(&s[0]),
        s[1].parse::<u64>().unwrap_or(0) / 1024,
        mbps(&o[0]),
        o[1].parse::<u64>().unwrap_or(0) / 1024
    );
    let zip_len = std::fs::metadata(&zip).map(|m| m.len()).unwrap_or(0);
    let key = DeliverableKey::from_hex(&s[2]).unwrap_or_else(|| panic!("bad key"));
    let _ = std::fs::remove_file(&zip);

    let mut c = Criterion::default().sample_size(10).configure_from_args();
    let mut g = c.benchmark_group("deliverable");
    g.throughput(Throughput::Bytes(bytes));
    for (name, compression) in [
        ("seal_stored", ZipCompression::Stored),
        ("seal_deflate", ZipCompression::Deflate),
    ] {
        let options = SealOptions {
            compression,
            ..SealOptions::default()
        };
        g.bench_function(format!("{name}_{mib}MiB"), |b| {
            b.iter(|| {
                let sealed = deliverable::seal_dir_to_file(
                    &model,
                    &tmp.path().join("bench.enc"),
                    &mut OsRng,
                    &options,
                )
                .unwrap_or_else(|e| panic!("{e}"));
                if compression == ZipCompression::Deflate {
                    println!("deflate: zip {} bytes vs stored {zip_len}", sealed.zip_len);
                }
            })
        });
    }
    g.bench_function(format!("open_{mib}MiB"), |b| {
        b.iter(|| {
            deliverable::open_file(&enc, &zip, &key, address_of(tee().verifying_key()))
                .unwrap_or_else(|e| panic!("{e}"));
        })
    });
    g.finish();
    c.final_summary();
}
