//! Errors across the Python boundary, in one place: every native failure is a [`NativeError`], which
//! becomes a `sealtune.SealtuneError` (a `RuntimeError`) whose message names the cause.

use pyo3::PyErr;
use pyo3::exceptions::PyRuntimeError;

pyo3::create_exception!(
    sealtune,
    SealtuneError,
    PyRuntimeError,
    "A sealtune operation failed (bad argument, I/O, sealing or token counting); the message says why."
);

/// Why a native `sealtune` call failed.
#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    /// The caller passed something unusable.
    #[error("{0}")]
    InvalidArgument(String),
    /// A dataset record is invalid (its position named).
    #[error("{0}")]
    Record(String),
    /// The call is not possible in the current state (a finished stream, a second live seal...).
    #[error("{0}")]
    State(String),
    /// An event could not be written (non-finite number, or the event stream is gone).
    #[error("cannot report the event: {0}")]
    Event(String),
    /// Sealing failed.
    #[error("sealing the model failed: {0}")]
    Seal(#[from] sealtune_protocol::deliverable::SealError),
    /// Token counting failed.
    #[error(transparent)]
    Tokens(#[from] sealtune_protocol::tokens::TokenError),
    /// Reading or writing a file failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<NativeError> for PyErr {
    fn from(e: NativeError) -> PyErr {
        match e {
            NativeError::InvalidArgument(m) => pyo3::exceptions::PyValueError::new_err(m),
            other => SealtuneError::new_err(other.to_string()),
        }
    }
}
