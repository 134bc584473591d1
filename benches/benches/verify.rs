//! Benchmark `verify`: the verifier's whole offline check vs `dcap-qvl` alone, figures in BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p sealtune-benches --bench verify      # fixtures from tests/fixtures
//! ```
//!
//! - `dcap_qvl_alone`: `dcap_qvl::verify::verify(quote, collateral, now)` on the v4 TDX fixture, the
//!   collateral already parsed (same crate, same `rustcrypto` backend the verifier uses).
//! - `full`: what `sealtune-verify quote --offline --cache DIR --policy P` does for that quote: load and
//!   parse the cached collateral from disk, `verify_document` (independent parse, p256 quote and QE
//!   report signatures, PCK chain reading, dcap-qvl, field cross-check, report_data binding, TCB and
//!   measurement policy), plus the event-log work of a dstack document: parse the real dstack event log
//!   and replay it into RTMR0–3 against its quote, and check the compose hash. (No public sample has
//!   collateral *and* an event log, so the event log comes from the dstack fixture.)
//!
//! After criterion, an interleaved pass (`full`, `dcap`, `full`, …, 400 rounds) prints p50 and p99 of
//! each, and their ratio.
use std::time::{Duration, Instant};

use criterion::Criterion;
use sealtune_verifier::collateral::{Cached, CollateralCache, CollateralKey};
use sealtune_verifier::event_log::{
    EventPolicy, check_compose_hash, parse_event_log, verify_event_log,
};
use sealtune_verifier::policy::Policy;
use sealtune_verifier::quote::ParsedQuote;
use sealtune_verifier::verify::{QuoteDocument, VerifyOptions, verify_document};

const AT: u64 = 1_750_332_747;

fn read(rel: &str) -> Vec<u8> {
    sealtune_e2e::fixture_bytes(rel)
}

struct Inputs {
    quote: Vec<u8>,
    collateral: dcap_qvl::QuoteCollateralV3,
    cache: CollateralCache,
    key: CollateralKey,
    policy: Policy,
    dstack_log: String,
    dstack_rtmr: [[u8; 48]; 4],
    tcb_info: String,
    _dir: tempfile::TempDir,
}

fn inputs() -> Inputs {
    let quote = read("tdx/tdx_quote");
    let collateral =
        sealtune_verifier::dcap::parse_collateral(&read("tdx/tdx_quote_collateral.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = CollateralCache::new(dir.path());
    let key = CollateralKey::of_quote(&quote).unwrap();
    cache.store(&key, &collateral).unwrap();
    let td = ParsedQuote::parse(&quote)
        .unwrap()
        .body
        .td()
        .unwrap()
        .clone();
    let policy = Policy::from_toml(
        "bench.toml",
        &format!(
            "[tcb]\naccepted_statuses = [\"UpToDate\", \"SWHardeningNeeded\"]\nallowed_advisories = []\n\
             [measurements]\nmrtd = [\"{}\"]\nrtmr0 = [\"{}\"]\nrtmr1 = [\"{}\"]\nrtmr2 = [\"{}\"]\n\
             [app]\napp_events = [\"LIUM_MINER_HOTKEY\"]\n",
            hex::encode(td.mr_td),
            hex::encode(td.rtmr[0]),
            hex::encode(td.rtmr[1]),
            hex::encode(td.rtmr[2])
        ),
    )
    .unwrap();
    let dstack: serde_json::Value =
        serde_json::from_slice(&read("tdx/dstack/quote-report.json")).unwrap();
    let dq = hex::decode(dstack["quote"].as_str().unwrap()).unwrap();
    let dstack_rtmr = ParsedQuote::parse(&dq).unwrap().body.td().unwrap().rtmr;
    let dstack_log = dstack["event_log"].as_str().unwrap().to_owned();
    // The fixture carries no app-compose: the compose check runs on one of a realistic size (2 KiB);
    // it does not match the event, which costs the same as a match.
    let compose = "x".repeat(2048);
    let tcb_info = serde_json::json!({ "app_compose": compose }).to_string();
    Inputs {
        quote,
        collateral,
        cache,
        key,
        policy,
        dstack_log,
        dstack_rtmr,
        tcb_info,
        _dir: dir,
    }
}

fn full(i: &Inputs) -> bool {
    let Cached::Fresh(collateral, _) = i.cache.load(&i.key, AT).unwrap() else {
        panic!("cache entry not fresh")
    };
    let report = verify_document(
        &QuoteDocument {
            quote: i.quote.clone(),
            ..Default::default()
        },
        &VerifyOptions {
            now: AT,
            collateral: Some(*collateral),
            policy: Some(i.policy.clone()),
            ..Default::default()
        },
    );
    let events = parse_event_log(&i.dstack_log).unwrap();
    let policy = i.policy.event_policy(&EventPolicy::default());
    let summary = verify_event_log(&events, &i.dstack_rtmr, &policy).unwrap();
    // The compose check (hash of app_compose, find the event, compare): its outcome is a mismatch
    // here, the cost is the same.
    let _ = check_compose_hash(&events, &i.tcb_info);
    report.links.iter().filter(|l| l.ok).count() > 8 && summary.events > 0
}

fn dcap(i: &Inputs) -> bool {
    dcap_qvl::verify::verify(&i.quote, &i.collateral, AT).is_ok()
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

fn main() {
    let i = inputs();
    assert!(
        full(&i),
        "full verification of the fixtures must hold its links"
    );
    assert!(dcap(&i));

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(50)
        .measurement_time(Duration::from_secs(8));
    let mut g = c.benchmark_group("verify");
    g.bench_function("dcap_qvl_alone", |b| b.iter(|| dcap(&i)));
    g.bench_function("full", |b| b.iter(|| full(&i)));
    g.finish();
    c.final_summary();

    let rounds: usize = std::env::var("SEALTUNE_VERIFY_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    let (mut tf, mut td) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for _ in 0..rounds {
        let t = Instant::now();
        std::hint::black_box(full(&i));
        tf.push(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(dcap(&i));
        td.push(t.elapsed());
    }
    let (f50, f99) = percentiles(tf);
    let (d50, d99) = percentiles(td);
    println!(
        "interleaved, {rounds} rounds: full p50 {f50:?} p99 {f99:?} | dcap-qvl alone p50 {d50:?} p99 {d99:?} | ratio p50 {:.2}x p99 {:.2}x",
        f50.as_secs_f64() / d50.as_secs_f64(),
        f99.as_secs_f64() / d99.as_secs_f64()
    );
}
