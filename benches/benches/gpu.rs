//! Benchmark `gpu`: verifying GPU evidence offline (sealtune_verifier::gpu::verify_payload), figures
//! in BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p sealtune-benches --bench gpu
//! ```
//!
//! - `one_real_h100`: the real H100 sample (tests/fixtures/nvidia): parse the payload JSON, base64,
//!   SPDM report, five-certificate chain to NVIDIA's pinned root (four P-384 signatures), the SPDM
//!   P-384 signature, FWID and nonce.
//! - `eight_synthetic`: eight NVIDIA-shaped GPUs (sealtune_e2e::gpu: the same five-certificate
//!   shape, root → identity → provisioner shared, device and leaf per GPU), bound in an attestation
//!   document: the shared chain part (two signatures) is verified once, each GPU costs its SPDM
//!   signature and its two own certificates.
//!
//! One thread (the calling thread; nothing uses a pool). After criterion, an interleaved pass
//! (400 rounds) prints p50 and p99 of each.
use std::time::{Duration, Instant};

use criterion::Criterion;
use sealtune_e2e::gpu::{SYNTHETIC_GPU_AT, synthetic_gpus};
use sealtune_protocol::attestation::{AttestationDocument, gpu_nonce};
use sealtune_protocol::gpu::{GpuEvidence, NvidiaPayload};
use sealtune_protocol::{Address, B256};
use sealtune_verifier::gpu::{GpuInputs, verify_payload};

/// 2024-06-01: inside the sample chain's window.
const AT: u64 = 1_717_200_000;

fn real() -> serde_json::Value {
    let text = String::from_utf8(sealtune_e2e::fixture_bytes(
        "nvidia/hopperAttestationReport.txt",
    ))
    .unwrap();
    let ev = hex::decode(text.trim()).unwrap();
    let chain = sealtune_e2e::fixture_bytes("nvidia/hopper_cert_chain_case1.txt");
    let nonce: [u8; 32] = ev[4..36].try_into().unwrap();
    let p = NvidiaPayload::new(
        nonce,
        "HOPPER",
        vec![GpuEvidence::new(&ev, &chain, "HOPPER")],
        None,
    );
    serde_json::to_value(p).unwrap()
}

fn eight() -> (serde_json::Value, GpuInputs) {
    let verifier_nonce = [9u8; 32];
    let s = synthetic_gpus(8, gpu_nonce(&verifier_nonce));
    let list = s
        .gpus
        .iter()
        .map(|(e, c)| GpuEvidence::new(e, c.as_bytes(), "HOPPER"))
        .collect();
    let p = NvidiaPayload::new(gpu_nonce(&verifier_nonce), "HOPPER", list, None);
    let mut doc = AttestationDocument::new(
        Address::repeat_byte(1),
        B256::from(verifier_nonce),
        B256::repeat_byte(2),
    );
    doc.gpu_evidence_hash = Some(p.hash().unwrap());
    let inputs = GpuInputs {
        now: SYNTHETIC_GPU_AT,
        document: Some(doc),
        root_der: Some(s.root_der),
        ..Default::default()
    };
    (serde_json::to_value(p).unwrap(), inputs)
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.50), at(0.99))
}

fn main() {
    let real = real();
    let real_inputs = GpuInputs {
        now: AT,
        ..Default::default()
    };
    let one = || {
        let out = verify_payload(Some(&real), &real_inputs);
        out.gpus.iter().all(|g| g.ok())
    };
    let (eight_payload, eight_inputs) = eight();
    let many = || verify_payload(Some(&eight_payload), &eight_inputs).ok();
    assert!(one(), "the real sample must verify");
    assert!(many(), "eight synthetic GPUs must verify");

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(50)
        .measurement_time(Duration::from_secs(6));
    let mut g = c.benchmark_group("gpu");
    g.bench_function("one_real_h100", |b| b.iter(one));
    g.bench_function("eight_synthetic", |b| b.iter(many));
    g.finish();
    c.final_summary();

    let rounds = 400;
    let (mut t1, mut t8) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for _ in 0..rounds {
        let t = Instant::now();
        std::hint::black_box(one());
        t1.push(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(many());
        t8.push(t.elapsed());
    }
    let (a50, a99) = percentiles(t1);
    let (b50, b99) = percentiles(t8);
    println!(
        "interleaved, {rounds} rounds, one thread: one real H100 p50 {a50:?} p99 {a99:?} | eight synthetic GPUs p50 {b50:?} p99 {b99:?}"
    );
}
