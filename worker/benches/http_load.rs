//! Load on `GET /v1/user/:addr/task/:id` from this (second) process against a real worker on loopback
//! (real anvil, contracts and SQLite). Target: ≥ 5,000 requests/s with p99 < 20 ms on 2 cores.
//!
//!     . scripts/env && cargo bench -p sealtune-worker --bench http_load [-- SECONDS CONNECTIONS]
//!
//! Prints requests/s and latency percentiles for several rounds; BENCHMARKS.md quotes the median round.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sealtune_e2e::chain::*;
use sealtune_e2e::stack::*;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let conns: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions::default(),
    )
    .await;
    stack.fund(2, 10, 5).await;
    let id = submit_with(&stack, 2, 1, dataset_jsonl(4)).await;
    wait_state(&stack, 2, &id, &["Delivered"], Duration::from_secs(60)).await;
    let url = stack.url(&format!("/v1/user/{}/task/{id}", signer(2).address()));
    println!(
        "GET {url}: {conns} connections, {secs} s per round, worker pid separate from this load process"
    );
    let mut rounds = Vec::new();
    for round in 0..5 {
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for _ in 0..conns {
            let (url, stop) = (url.clone(), stop.clone());
            handles.push(tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .unwrap();
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let r = client.get(&url).send().await.unwrap();
                    assert!(r.status().is_success());
                    let _ = r.bytes().await.unwrap();
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.unwrap());
        }
        all.sort();
        let n = all.len();
        let pct = |p: f64| all[((n as f64 * p) as usize).min(n - 1)].as_secs_f64() * 1e3;
        let rps = n as f64 / secs as f64;
        println!(
            "round {round}: {rps:>8.0} req/s  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            pct(0.5),
            pct(0.99),
            pct(1.0)
        );
        rounds.push((rps, pct(0.99)));
    }
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (rps, p99) = rounds[rounds.len() / 2];
    println!("median round: {rps:.0} req/s, p99 {p99:.2} ms");
}
