//! Collateral fetch and cache, and `quote --url`, against loopback HTTP servers. The servers are
//! test fixtures standing in for a PCCS (serving the real fixture collateral in the PCCS API v4
//! shape) and for a provider's `/v1/quote` (serving the real dstack GetQuote response): no network
//! exists here.
mod common;

#[path = "common/http.rs"]
mod http;

use clap::Parser;
use common::*;
use sealtune_verifier::cli::{Cli, run_with};
use sealtune_verifier::collateral::{
    Cached, CollateralCache, CollateralError, CollateralKey, CollateralSource, Pccs, Tee,
    next_update, obtain,
};

fn v4_collateral() -> dcap_qvl::QuoteCollateralV3 {
    collateral("tdx/tdx_quote_collateral.json")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn cli(args: &[&str], nonce: [u8; 32]) -> (i32, String) {
    let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let mut out = Vec::new();
    let code = run_with(&cli, TDX_V4_AT, nonce, &mut out).unwrap();
    (code, String::from_utf8(out).unwrap())
}

#[test]
fn the_quote_names_its_collateral() {
    let key = CollateralKey::of_quote(&fixture("tdx/tdx_quote")).unwrap();
    assert_eq!(key.tee, Tee::Tdx);
    assert_eq!(key.fmspc, "b0c06f000000");
    assert_eq!(key.ca, "platform");
    let sgx = CollateralKey::of_quote(&fixture("tdx/sgx_quote")).unwrap();
    assert_eq!(sgx.tee, Tee::Sgx);
}

#[test]
fn next_update_is_the_earliest_of_the_collateral() {
    let n = next_update(&v4_collateral()).unwrap();
    assert!(n > TDX_V4_AT && n <= TDX_V4_EXPIRES, "{n}");
}

#[test]
fn fetch_from_a_pccs_reproduces_the_collateral_byte_for_byte() {
    let c = v4_collateral();
    let server = http::pccs(c.clone());
    let key = CollateralKey::of_quote(&fixture("tdx/tdx_quote")).unwrap();
    let fetched = rt()
        .block_on(Pccs::new(&server.url).unwrap().fetch(&key))
        .unwrap();
    assert_eq!(fetched, c);
    let reqs = server.requests();
    assert!(
        reqs.contains(&"/sgx/certification/v4/pckcrl?ca=platform&encoding=der".to_owned()),
        "{reqs:?}"
    );
    assert!(
        reqs.contains(&"/tdx/certification/v4/tcb?fmspc=B0C06F000000".to_owned()),
        "{reqs:?}"
    );
}

#[test]
fn cache_serves_until_next_update_and_offline_never_fetches() {
    let server = http::pccs(v4_collateral());
    let dir = tempfile::tempdir().unwrap();
    let quote = fixture("tdx/tdx_quote");
    let online = CollateralSource {
        pccs_url: Some(server.url.clone()),
        cache_dir: Some(dir.path().to_owned()),
        offline: false,
    };
    let rt = rt();
    let (c1, from1) = rt.block_on(obtain(&quote, &online, TDX_V4_AT)).unwrap();
    assert!(from1.starts_with("fetched from"), "{from1}");
    let fetches = server.requests().len();
    assert_eq!(fetches, 4);

    // Second time: from the cache, no request.
    let (c2, from2) = rt.block_on(obtain(&quote, &online, TDX_V4_AT)).unwrap();
    assert!(from2.starts_with("cache "), "{from2}");
    assert_eq!(c1, c2);
    assert_eq!(server.requests().len(), fetches);

    // Offline: the cache only.
    let offline = CollateralSource {
        pccs_url: None,
        cache_dir: Some(dir.path().to_owned()),
        offline: true,
    };
    let (c3, _) = rt.block_on(obtain(&quote, &offline, TDX_V4_AT)).unwrap();
    assert_eq!(c1, c3);
    // Past nextUpdate, offline refuses the stale entry and says so.
    let err = rt
        .block_on(obtain(&quote, &offline, TDX_V4_EXPIRES + 1))
        .unwrap_err();
    assert!(
        matches!(&err, CollateralError::Offline(m) if m.contains("expired")),
        "{err}"
    );
    // Online past nextUpdate, it fetches again.
    let (_, from4) = rt
        .block_on(obtain(&quote, &online, TDX_V4_EXPIRES + 1))
        .unwrap();
    assert!(from4.starts_with("fetched from"), "{from4}");
    assert_eq!(server.requests().len(), 2 * fetches);

    // Offline with an empty cache.
    let empty = tempfile::tempdir().unwrap();
    let err = rt
        .block_on(obtain(
            &quote,
            &CollateralSource {
                cache_dir: Some(empty.path().to_owned()),
                offline: true,
                ..Default::default()
            },
            TDX_V4_AT,
        ))
        .unwrap_err();
    assert!(
        matches!(&err, CollateralError::Offline(m) if m.contains("no cached collateral")),
        "{err}"
    );
    assert_eq!(server.requests().len(), 2 * fetches);
}

#[test]
fn a_corrupt_cache_entry_is_an_error_not_a_silent_refetch() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CollateralCache::new(dir.path());
    let key = CollateralKey::of_quote(&fixture("tdx/tdx_quote")).unwrap();
    std::fs::write(cache.path(&key), b"{not json").unwrap();
    assert!(matches!(
        cache.load(&key, TDX_V4_AT),
        Err(CollateralError::Cache { .. })
    ));
    cache.store(&key, &v4_collateral()).unwrap();
    assert!(matches!(cache.load(&key, TDX_V4_AT), Ok(Cached::Fresh(..))));
}

#[test]
fn pccs_errors_are_reported_with_the_url() {
    let server = http::Server::start(|_| (503, vec![], b"down".to_vec()));
    let key = CollateralKey::of_quote(&fixture("tdx/tdx_quote")).unwrap();
    let err = rt()
        .block_on(Pccs::new(&server.url).unwrap().fetch(&key))
        .unwrap_err();
    assert!(
        matches!(&err, CollateralError::Status { status: 503, url } if url.contains("pckcrl")),
        "{err}"
    );
}

#[test]
fn quote_command_fetches_collateral_then_verifies_offline_from_the_cache() {
    let server = http::pccs(v4_collateral());
    let dir = tempfile::tempdir().unwrap();
    let quote = fixtures_dir().join("tdx/tdx_quote").display().to_string();
    let cache = dir.path().display().to_string();
    let (_, out) = cli(
        &[
            "sealtune-verify",
            "quote",
            "--file",
            &quote,
            "--pccs",
            &server.url,
            "--cache",
            &cache,
            "--at",
            "1750332747",
        ],
        [0; 32],
    );
    assert!(out.contains("✓ DCAP (dcap-qvl)"), "{out}");
    assert!(out.contains("UpToDate"), "{out}");
    let n = server.requests().len();
    let (_, out) = cli(
        &[
            "sealtune-verify",
            "quote",
            "--file",
            &quote,
            "--offline",
            "--cache",
            &cache,
            "--at",
            "1750332747",
        ],
        [0; 32],
    );
    assert!(out.contains("✓ DCAP (dcap-qvl)"), "{out}");
    assert_eq!(server.requests().len(), n);
}

#[test]
fn offline_without_collateral_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let quote = fixtures_dir().join("tdx/tdx_quote").display().to_string();
    let cache = dir.path().display().to_string();
    let cli = Cli::try_parse_from([
        "sealtune-verify",
        "quote",
        "--file",
        &quote,
        "--offline",
        "--cache",
        &cache,
    ])
    .unwrap();
    let err = run_with(&cli, TDX_V4_AT, [0; 32], &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("no cached collateral"), "{err}");
    // --offline and --url contradict each other.
    assert!(
        Cli::try_parse_from(["sealtune-verify", "quote", "--url", "http://x", "--offline"])
            .is_err()
    );
}

fn provider_server() -> http::Server {
    let body = fixture("tdx/dstack/quote-report.json");
    http::Server::start(move |target| {
        if target.starts_with("/v1/quote") {
            (
                200,
                vec![("ZG-Quote-Signature".into(), "0xfeedbeef".into())],
                body.clone(),
            )
        } else {
            (404, vec![], vec![])
        }
    })
}

#[test]
fn quote_url_sends_a_fresh_nonce_and_reports_the_quote_signature_header() {
    let server = provider_server();
    let pccs = http::pccs(v4_collateral());
    let (code, out) = cli(
        &[
            "sealtune-verify",
            "quote",
            "--url",
            &server.url,
            "--pccs",
            &pccs.url,
            "--allow-app-event",
            "LIUM_MINER_HOTKEY",
        ],
        [0x5c; 32],
    );
    assert_eq!(
        server.requests(),
        vec![format!("/v1/quote?nonce={}", hex::encode([0x5c; 32]))]
    );
    assert!(out.contains("ZG-Quote-Signature"), "{out}");
    assert!(out.contains("0xfeedbeef"), "{out}");
    // The fixture predates the nonce: its report_data cannot carry ours, so freshness fails.
    assert!(out.contains("✗ signer binding"), "{out}");
    assert!(out.contains("nonce"), "{out}");
    // Its event log still replays.
    assert!(out.contains("✓ event log"), "{out}");
    assert_eq!(code, 1);

    let (_, _) = cli(
        &[
            "sealtune-verify",
            "quote",
            "--url",
            &server.url,
            "--pccs",
            &pccs.url,
            "--no-nonce",
        ],
        [0x5c; 32],
    );
    assert_eq!(server.requests().last().unwrap(), "/v1/quote");
}

#[test]
fn quote_url_that_fails_is_a_clear_error() {
    let server = http::Server::start(|_| (500, vec![], b"{\"error\":\"boom\"}".to_vec()));
    let cli = Cli::try_parse_from(["sealtune-verify", "quote", "--url", &server.url]).unwrap();
    let err = run_with(&cli, TDX_V4_AT, [0; 32], &mut Vec::new()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("/v1/quote?nonce=") && msg.contains("500"),
        "{msg}"
    );
}
