//! Where things are: the checkout's root and the real fixtures of `tests/fixtures` (quotes, collateral,
//! GPU evidence, the official ABIs; provenance in its README).

use std::path::{Path, PathBuf};

/// The checkout's root directory: `$SEALTUNE_ROOT` (set by `scripts/env`) when set, else the directory
/// this crate was compiled in. The run-time value wins so that a test binary that Cargo reused from
/// another checkout of the same commit (one target dir per machine) still looks in this checkout.
pub fn repo_root() -> PathBuf {
    if let Some(root) = std::env::var_os("SEALTUNE_ROOT") {
        return PathBuf::from(root);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The fixtures directory: `$SEALTUNE_FIXTURES` when set, else `tests/fixtures` in the checkout
/// (real quotes, collateral, GPU evidence and the official ABIs; provenance in its README).
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("SEALTUNE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("tests/fixtures"))
}

/// A fixture file by path relative to [`fixtures_dir`]; panics saying where it was looked for.
pub fn fixture(rel: &str) -> PathBuf {
    let p = fixtures_dir().join(rel);
    assert!(
        p.exists(),
        "fixture {rel} not found at {}: the fixtures live in tests/fixtures of the checkout \
         (or where SEALTUNE_FIXTURES points)",
        p.display()
    );
    p
}

/// A fixture's bytes (path relative to [`fixtures_dir`]); panics saying where it was looked for.
pub fn fixture_bytes(rel: &str) -> Vec<u8> {
    let p = fixture(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading fixture {}: {e}", p.display()))
}
