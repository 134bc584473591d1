//! Benchmark `dataset_envelope`: sealing and opening a confidential dataset (PROTOCOL.md §8),
//! figures in BENCHMARKS.md.
//!
//! ```text
//! . scripts/env && cargo bench -p sealtune-benches --bench dataset_envelope   # SEALTUNE_ENVELOPE_BENCH_MIB=1024
//! ```
//!
//! One thread throughout. `seal`: [`EnvelopeWriter`] seals `MIB` MiB of JSONL-like text produced by
//! a generator (no input buffer) into `io::sink()` — the client's side, minus the disk. `open`:
//! the same amount, sealed once into a temporary file, is opened by `envelope::open` from that file
//! (page-cached) into `io::sink()` — the worker's side at setup, minus the disk write. Each figure
//! per wall-second and per CPU-second of the measuring thread (`/proc/thread-self/schedstat`), the
//! median of `SEALTUNE_ENVELOPE_BENCH_ROUNDS` (default 5) rounds; the process's peak RSS (`VmHWM`)
//! is printed before and after, showing memory does not grow with the dataset.
use std::io::{self, BufReader, Read, Write};
use std::time::Instant;

use sealtune_protocol::envelope::{self, DEFAULT_CHUNK_LOG2, EnvelopeWriter};
use sealtune_protocol::sig::address_of;

/// JSONL-like bytes, `left` of them, from a 64 KiB pattern (no allocation per read).
struct Text {
    pattern: Vec<u8>,
    at: usize,
    left: u64,
}

impl Text {
    fn new(len: u64) -> Self {
        let mut pattern = Vec::new();
        let mut i = 0u64;
        while pattern.len() < 64 << 10 {
            pattern.extend_from_slice(
                format!("{{\"instruction\":\"Summarise record {i}.\",\"input\":\"lorem ipsum dolor sit amet {i}\",\"output\":\"summary {i}\"}}\n")
                    .as_bytes(),
            );
            i += 1;
        }
        Text {
            pattern,
            at: 0,
            left: len,
        }
    }
}

impl Read for Text {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(self.pattern.len() - self.at)
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        buf[..n].copy_from_slice(&self.pattern[self.at..self.at + n]);
        self.at = (self.at + n) % self.pattern.len();
        self.left -= n as u64;
        Ok(n)
    }
}

/// CPU time of this thread, in seconds (`/proc/thread-self/schedstat`, first field: ns on CPU).
fn thread_cpu() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e9)
}

fn vm_hwm() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_default()
}

/// Runs `f` and returns (MB per wall-second, MB per CPU-second) for `bytes`.
fn timed(bytes: u64, f: impl FnOnce()) -> (f64, f64) {
    let (wall, cpu) = (Instant::now(), thread_cpu());
    f();
    let mb = bytes as f64 / 1e6;
    (
        mb / wall.elapsed().as_secs_f64(),
        mb / (thread_cpu() - cpu).max(1e-9),
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mib: u64 = std::env::var("SEALTUNE_ENVELOPE_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let rounds: usize = std::env::var("SEALTUNE_ENVELOPE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let bytes = mib << 20;
    let owner = k256::ecdsa::SigningKey::from_slice(&[0x11; 32]).unwrap();
    let worker = k256::SecretKey::from_slice(&[0x22; 32]).unwrap();
    let user = address_of(owner.verifying_key());
    println!(
        "dataset envelope, {mib} MiB, chunk 2^{DEFAULT_CHUNK_LOG2}, one thread; VmHWM at start {}",
        vm_hwm()
    );

    let dir = tempfile::tempdir().unwrap();
    let sealed = dir.path().join("dataset.sealed");
    {
        let out = io::BufWriter::new(std::fs::File::create(&sealed).unwrap());
        envelope::seal(
            &mut Text::new(bytes),
            out,
            &owner,
            &worker.public_key(),
            &mut rand_core_os(),
        )
        .unwrap();
    }
    let (mut seal_wall, mut seal_cpu, mut open_wall, mut open_cpu) =
        (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let (w, c) = timed(bytes, || {
            let mut wtr = EnvelopeWriter::new(
                io::sink(),
                &owner,
                &worker.public_key(),
                &mut rand_core_os(),
                DEFAULT_CHUNK_LOG2,
            )
            .unwrap();
            io::copy(&mut Text::new(bytes), &mut wtr).unwrap();
            wtr.finish().unwrap();
        });
        seal_wall.push(w);
        seal_cpu.push(c);
        let (w, c) = timed(bytes, || {
            let mut input =
                BufReader::with_capacity(1 << 16, std::fs::File::open(&sealed).unwrap());
            envelope::open(&mut input, &mut io::sink(), &worker, user).unwrap();
        });
        open_wall.push(w);
        open_cpu.push(c);
    }
    println!(
        "seal  {mib} MiB -> sink: {:>6.0} MB/s wall, {:>6.0} MB/s per CPU-second (median of {rounds})",
        median(seal_wall),
        median(seal_cpu)
    );
    println!(
        "open  {mib} MiB file -> sink: {:>6.0} MB/s wall, {:>6.0} MB/s per CPU-second (median of {rounds})",
        median(open_wall),
        median(open_cpu)
    );
    println!("VmHWM at end {}", vm_hwm());
    io::stdout().flush().unwrap();
}

fn rand_core_os() -> sealtune_protocol::deliverable::OsRng {
    sealtune_protocol::deliverable::OsRng
}
