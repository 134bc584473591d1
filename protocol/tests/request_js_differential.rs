//! Differential test against the official client's code: `tests/js/request_sign.cjs` signs every
//! customer request kind with the 0G SDK's own helpers (and the settlement message with ethers'
//! EIP-712 encoder) for keys and inputs derived from a fresh random seed; this crate must compute
//! the same digests, recover the same signers and public keys, and sign byte-identically.
//!
//! Needs node and the pinned npm packages (`scripts/setup` installs both); it fails, never skips,
//! when they are missing.

use std::path::Path;

use rand_core::{OsRng, RngCore};

#[path = "request_vectors.rs"]
#[allow(dead_code)]
mod vectors;

fn run_js(seed: &str, cases: usize) -> String {
    let node_modules = sealtune_e2e::node_modules();
    for package in ["ethers", "@0gfoundation/0g-compute-ts-sdk"] {
        assert!(
            node_modules.join(package).join("package.json").is_file(),
            "{package} is not installed under {}: run scripts/setup (it installs the pinned npm packages)",
            node_modules.display()
        );
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js/request_sign.cjs");
    let out = sealtune_e2e::node(&script)
        .arg(seed)
        .arg(cases.to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): install it with scripts/setup"));
    assert!(
        out.status.success(),
        "{} failed ({}); if packages are missing, run scripts/setup\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the script prints UTF-8 JSON")
}

#[test]
fn official_sdk_signatures_agree_with_rust_for_random_keys_and_inputs() {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let seed = hex::encode(seed);
    let json = run_js(&seed, 24);
    let v: vectors::Vectors =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    // On failure the panic names the case; rerun the script with this seed to reproduce it.
    eprintln!("request_sign.cjs seed {seed}");
    let cov = vectors::check_vectors(&v);
    assert_eq!(cov.cases, 4 * 24, "{cov:?}");
    assert!(cov.leading_zero_digests >= 4 * 6, "{cov:?}");
}
