//! # sealtune-python
//!
//! The `sealtune` Python module for training-script authors: built as a wheel with maturin (module
//! `sealtune._native`, wrapped by the pure-Python package in `python/python/sealtune`), and
//! registered into the worker's embedded interpreter.
#![deny(missing_docs)]

use pyo3::prelude::*;

/// The native part of the `sealtune` Python package.
#[pymodule]
#[pyo3(name = "_native")]
pub fn native_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
