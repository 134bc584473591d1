//! Helpers for `build.rs` scripts of crates that embed CPython or link libtorch.
//!
//! A binary that embeds CPython must find the interpreter's own `libpython` at run time (not
//! Debian's, which cannot see the project's venv): we emit an rpath to the `LIBDIR` of the Python
//! that pyo3 was configured with (`PYO3_PYTHON`). tch's link arguments do not propagate to the
//! final binary, so a binary built with the `torch` feature adds libtorch's rpath and
//! `--no-as-needed -ltorch` itself.

use std::path::PathBuf;
use std::process::Command;

/// Emit an rpath to the directory holding `libpythonX.Y.so` of the Python pyo3 builds against.
pub fn link_embedded_python() {
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    let config = pyo3_build_config::get();
    if let Some(dir) = config.lib_dir() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}

/// The Python interpreter used at build time: `PYO3_PYTHON`, else `$VIRTUAL_ENV/bin/python`, else `python3`.
pub fn build_python() -> PathBuf {
    if let Some(p) = std::env::var_os("PYO3_PYTHON") {
        return PathBuf::from(p);
    }
    if let Some(v) = std::env::var_os("VIRTUAL_ENV") {
        return PathBuf::from(v).join("bin").join("python");
    }
    PathBuf::from("python3")
}

/// Emit the link arguments that make a binary load the venv's libtorch (rpath, `--no-as-needed -ltorch`).
///
/// Call only when the crate's `torch` feature is on. Panics (failing the build with the reason)
/// when the build Python has no torch: the `torch` feature needs the project venv (`scripts/setup`).
pub fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=VIRTUAL_ENV");
    let python = build_python();
    let out = Command::new(&python)
        .args([
            "-c",
            "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
        ])
        .output();
    let dir = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        Ok(o) => panic!(
            "the `torch` feature needs torch in the build Python ({}): {}; run scripts/setup and build through scripts/env",
            python.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("cannot run {}: {e}", python.display()),
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    println!("cargo:rustc-link-arg=-L{dir}");
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
    // tch's python-extension pulls libtorch_python, which needs libpython's symbols even in a binary
    // that never calls into Python itself.
    if let Some(name) = pyo3_build_config::get().lib_name() {
        println!("cargo:rustc-link-arg=-l{name}");
    }
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
}
