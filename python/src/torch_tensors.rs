//! Feature `torch` (the worker's build): torch tensors read in place through tch, without numpy.
//!
//! `Tensor::pyobject_unpack` (tch's `python-extension`) turns a Python `torch.Tensor` into a
//! `tch::Tensor` sharing the same storage; a CPU contiguous tensor's bytes are then read where they lie.
//! A CUDA tensor costs one device-to-host copy (of that tensor only); a non-contiguous one, one copy.
//! This needs the embedding binary to link the very libtorch the venv's `torch` loads (the worker's
//! build script links the venv's `torch/lib`), so that both sides share one `THPVariable` type.

use std::io::Write;

use pyo3::prelude::*;
use tch::{Device, Kind, Tensor};

use crate::error::NativeError;

/// The safetensors dtype of a tch kind.
fn dtype_of(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Float => "F32",
        Kind::Double => "F64",
        Kind::Half => "F16",
        Kind::BFloat16 => "BF16",
        Kind::Int64 => "I64",
        Kind::Int => "I32",
        Kind::Int16 => "I16",
        Kind::Int8 => "I8",
        Kind::Uint8 => "U8",
        Kind::Bool => "BOOL",
        _ => return None,
    })
}

/// If `obj` is a `torch.Tensor`, write its bytes to `out` (checking dtype and size) and return
/// `Ok(true)`; `Ok(false)` when it is not a tensor (the caller falls back to the buffer protocol).
pub fn write_tensor(
    out: &mut impl Write,
    obj: &Bound<'_, PyAny>,
    name: &str,
    dtype: &str,
    expected: u64,
) -> Result<bool, NativeError> {
    // SAFETY: `obj` is a live Python object (we hold a reference and the GIL) and its pointer is
    // only read by libtorch_python's THPVariable_Check / THPVariable_Unpack, which take a PyObject*.
    #[allow(unsafe_code)]
    let unpacked = unsafe { Tensor::pyobject_unpack(obj.as_ptr().cast()) }
        .map_err(|e| NativeError::InvalidArgument(format!("tensor {name:?}: {e}")))?;
    let Some(tensor) = unpacked else {
        return Ok(false);
    };
    let kind = tensor.kind();
    if dtype_of(kind) != Some(dtype) {
        return Err(NativeError::InvalidArgument(format!(
            "tensor {name:?}: its kind {kind:?} is not the declared dtype {dtype}"
        )));
    }
    let tensor = if tensor.device() == Device::Cpu {
        tensor
    } else {
        tensor.to_device(Device::Cpu)
    };
    let tensor = if tensor.is_contiguous() {
        tensor
    } else {
        tensor.contiguous()
    };
    let len = tensor.numel().saturating_mul(kind.elt_size_in_bytes());
    if len as u64 != expected {
        return Err(NativeError::InvalidArgument(format!(
            "tensor {name:?}: holds {len} bytes, its declared shape needs {expected}"
        )));
    }
    if len == 0 {
        return Ok(true);
    }
    let ptr = tensor.data_ptr().cast::<u8>().cast_const();
    // SAFETY: `tensor` is a contiguous CPU tensor of `len` bytes (checked above) whose storage is kept
    // alive by `tensor` (and by the Python object we hold) for the whole borrow; we only read it, with
    // the GIL held and no call back into Python while the slice lives.
    #[allow(unsafe_code)]
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
    out.write_all(bytes)?;
    Ok(true)
}
