//! # sealtune-python
//!
//! The `sealtune` Python module for training-script authors, one crate with two ways in:
//!
//! * **the wheel** (`pip install sealtune`, built by maturin from the root `pyproject.toml`): the native
//!   part is the extension module `sealtune._native`, wrapped by the pure-Python package in
//!   `python/python/sealtune`. Standalone, events go to the file named by `SEALTUNE_EVENTS_FILE`, else to
//!   stdout, and `seal_model` saves the model normally (and says so).
//! * **embedded** in the worker's executor child: [`register_embedded`] installs the same native module
//!   and the same Python sources into the running interpreter, and [`install_live`] connects it to the
//!   task: events go straight to the parent's event stream, and `seal_model` streams the tensors into
//!   the sealing stream with the per-task key ([`LiveSeal`]), so the plaintext model never touches disk.
//!
//! The native module exposes (see `sealtune/_native.pyi` for the Python signatures):
//!
//! | name | what |
//! |---|---|
//! | `emit_progress`, `emit_log`, `emit_metric`, `emit_checkpoint` | one [`Event`] each, validated by `sealtune_protocol::events` |
//! | `live_task()` | the task's paths when running inside a worker, else `None` |
//! | `TokenCounter` | `protocol`'s token-counting rule (the fee's) with a `tokenizer.json` |
//! | `SealStream` | the sealing stream: safetensors and small files zipped and sealed chunk by chunk |
//!
//! Tensors reach Rust without a copy on CPU. In the pip wheel the Python side hands each tensor's bytes
//! as a buffer (`memoryview` over `tensor.view(torch.uint8).numpy()`, which shares the tensor's memory)
//! and [`seal`] reads it in place while the buffer is held. With the `torch` feature (the worker's build)
//! the tensors themselves are passed and read through tch (`Tensor::pyobject_unpack`, [`torch_tensors`]).
//! Either way a GPU tensor costs one device-to-host copy, of one tensor at a time.
#![deny(missing_docs)]

pub mod error;
pub mod live;
pub mod seal;
pub mod tokens;
#[cfg(feature = "torch")]
pub mod torch_tensors;

use std::collections::BTreeMap;
use std::ffi::CString;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use sealtune_protocol::events::{Event, LogLevel};

pub use error::NativeError;
pub use live::{
    LiveContext, LiveSeal, LiveSink, SealResult, TaskPaths, install_live, take_seal_result,
};

/// The pure-Python sources of the `sealtune` package, in the order [`register_embedded`] executes them
/// (module name, file name, source). The wheel ships the same files.
pub const PYTHON_SOURCES: &[(&str, &str, &str)] = &[(
    "sealtune",
    "sealtune/__init__.py",
    include_str!("../python/sealtune/__init__.py"),
)];

fn emit_or_err(event: Event) -> PyResult<()> {
    live::emit(&event).map_err(PyErr::from)
}

/// Report a training step (`progress` event).
#[pyfunction]
#[pyo3(signature = (step, total=None, loss=None, learning_rate=None, epoch=None, metrics=None))]
fn emit_progress(
    step: u64,
    total: Option<u64>,
    loss: Option<f64>,
    learning_rate: Option<f64>,
    epoch: Option<f64>,
    metrics: Option<BTreeMap<String, f64>>,
) -> PyResult<()> {
    emit_or_err(Event::Progress {
        step,
        total,
        loss,
        learning_rate,
        epoch,
        metrics: metrics.unwrap_or_default(),
    })
}

/// Write a line to the task log (`log` event); `level` is `debug`, `info`, `warn` or `error`.
#[pyfunction]
#[pyo3(signature = (message, level="info"))]
fn emit_log(message: &str, level: &str) -> PyResult<()> {
    let level = match level {
        "debug" => LogLevel::Debug,
        "info" => LogLevel::Info,
        "warn" | "warning" => LogLevel::Warn,
        "error" => LogLevel::Error,
        other => {
            return Err(NativeError::InvalidArgument(format!(
                "log level must be debug, info, warn or error, not {other:?}"
            ))
            .into());
        }
    };
    emit_or_err(Event::log(level, message))
}

/// Report one named value (`metric` event).
#[pyfunction]
#[pyo3(signature = (name, value, step=None))]
fn emit_metric(name: String, value: f64, step: Option<u64>) -> PyResult<()> {
    emit_or_err(Event::Metric { name, value, step })
}

/// Tell the worker that the trainer finished writing `checkpoint-<step>` in the task's checkpoint
/// directory (`checkpoint` event): the worker seals it and deletes the plaintext.
#[pyfunction]
fn emit_checkpoint(step: u64) -> PyResult<()> {
    emit_or_err(Event::Checkpoint { step })
}

/// The task's paths as a dict when running inside a worker (`data_path`, `model_path`, `config_path`,
/// `output_dir`, `sealing`), else `None`.
#[pyfunction]
fn live_task(py: Python<'_>) -> PyResult<Option<Bound<'_, PyDict>>> {
    let Some(ctx) = live::context() else {
        return Ok(None);
    };
    let d = PyDict::new(py);
    d.set_item("data_path", &ctx.task.data_path)?;
    d.set_item("model_path", &ctx.task.model_path)?;
    d.set_item("config_path", &ctx.task.config_path)?;
    d.set_item("output_dir", &ctx.task.output_dir)?;
    d.set_item("sealing", ctx.seal.is_some())?;
    Ok(Some(d))
}

/// The native part of the `sealtune` Python package.
#[pymodule]
#[pyo3(name = "_native")]
pub fn native_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("TORCH_FEATURE", cfg!(feature = "torch"))?;
    m.add_function(wrap_pyfunction!(emit_progress, m)?)?;
    m.add_function(wrap_pyfunction!(emit_log, m)?)?;
    m.add_function(wrap_pyfunction!(emit_metric, m)?)?;
    m.add_function(wrap_pyfunction!(live_task, m)?)?;
    m.add_function(wrap_pyfunction!(emit_checkpoint, m)?)?;
    m.add_class::<tokens::TokenCounter>()?;
    m.add_class::<seal::SealStream>()?;
    m.add("SealtuneError", m.py().get_type::<error::SealtuneError>())?;
    Ok(())
}

/// Install the `sealtune` package (the native module and the embedded Python sources) into the running
/// interpreter's `sys.modules`, ahead of any `sealtune` installed in the venv, so the script's
/// `import sealtune` gets the build that matches this worker.
pub fn register_embedded(py: Python<'_>) -> PyResult<()> {
    let sys_modules = py.import("sys")?.getattr("modules")?;
    let native = PyModule::new(py, "sealtune._native")?;
    native_module(&native)?;
    sys_modules.set_item("sealtune._native", &native)?;
    for (name, file, source) in PYTHON_SOURCES {
        let code = CString::new(*source)
            .map_err(|_| NativeError::InvalidArgument(format!("{file} holds a NUL byte")))?;
        let file = CString::new(format!("<sealtune-embedded>/{file}"))
            .map_err(|_| NativeError::InvalidArgument("file name holds a NUL byte".into()))?;
        let module_name = CString::new(*name)
            .map_err(|_| NativeError::InvalidArgument("module name holds a NUL byte".into()))?;
        // Executing `sealtune` imports `sealtune._native`, found in sys.modules above.
        let module = PyModule::from_code(py, &code, &file, &module_name)?;
        if *name == "sealtune" {
            module.setattr("_native", &native)?;
        }
    }
    Ok(())
}
