//! The sealing stream behind `sealtune.seal_model`: model files are written as entries of the
//! deliverable zip (`output_model/<name>`), encrypted chunk by chunk (PROTOCOL.md §4) as they arrive, so
//! the plaintext model never touches disk.
//!
//! Tensors are written as a safetensors file built on the fly: the header from the tensors' names,
//! dtypes and shapes, then each tensor's bytes read **in place** from a Python buffer (the CPU tensor's
//! own memory, exported by numpy), one tensor at a time, so a GPU model needs one host copy of one
//! tensor at a time, never of the whole model.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::buffer::PyUntypedBuffer;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use sealtune_protocol::deliverable::{
    ChunkLen, DeliverableKey, OsRng, SealOptions, SealZipWriter, SealedChunk,
};
use sealtune_protocol::events::Event;
use serde_json::{Map, Value, json};

use crate::error::NativeError;
use crate::live::{self, SealResult};

/// Bytes per element of a safetensors dtype, `None` for an unknown dtype.
pub fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" => 8,
        _ => return None,
    })
}

/// One tensor of a safetensors file: name, dtype (`F32`, `BF16`, ...) and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// The tensor's name.
    pub name: String,
    /// Its safetensors dtype.
    pub dtype: String,
    /// Its shape.
    pub shape: Vec<u64>,
}

impl TensorSpec {
    /// Bytes of the tensor's data.
    pub fn nbytes(&self) -> Result<u64, NativeError> {
        let size = dtype_size(&self.dtype).ok_or_else(|| {
            NativeError::InvalidArgument(format!(
                "tensor {:?}: unknown safetensors dtype {:?}",
                self.name, self.dtype
            ))
        })?;
        self.shape
            .iter()
            .try_fold(size, |acc, d| acc.checked_mul(*d))
            .ok_or_else(|| {
                NativeError::InvalidArgument(format!("tensor {:?}: shape too large", self.name))
            })
    }
}

/// The safetensors header (length prefix, JSON padded with spaces to 8 bytes) for `tensors` laid out
/// in the given order, and the total data length.
pub fn safetensors_header(
    tensors: &[TensorSpec],
    metadata: &[(String, String)],
) -> Result<(Vec<u8>, u64), NativeError> {
    let mut map = Map::new();
    if !metadata.is_empty() {
        let meta: Map<String, Value> = metadata
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        map.insert("__metadata__".into(), Value::Object(meta));
    }
    let mut names = BTreeSet::new();
    let mut offset = 0u64;
    for t in tensors {
        if t.name == "__metadata__" || !names.insert(t.name.as_str()) {
            return Err(NativeError::InvalidArgument(format!(
                "tensor name {:?} is reserved or repeated",
                t.name
            )));
        }
        let end = offset
            .checked_add(t.nbytes()?)
            .ok_or_else(|| NativeError::InvalidArgument("model too large".into()))?;
        map.insert(
            t.name.clone(),
            json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut header = serde_json::to_vec(&Value::Object(map))
        .map_err(|e| NativeError::InvalidArgument(e.to_string()))?;
    while header.len() % 8 != 0 {
        header.push(b' ');
    }
    let mut out = Vec::with_capacity(header.len() + 8);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    Ok((out, offset))
}

/// Write the bytes of a C-contiguous Python buffer of exactly `expected` bytes into `out`, read in place.
fn write_buffer(
    out: &mut impl Write,
    obj: &Bound<'_, PyAny>,
    name: &str,
    expected: u64,
) -> Result<(), NativeError> {
    let buffer = PyUntypedBuffer::get(obj)
        .map_err(|e| NativeError::InvalidArgument(format!("tensor {name:?}: not a buffer: {e}")))?;
    if !buffer.is_c_contiguous() {
        return Err(NativeError::InvalidArgument(format!(
            "tensor {name:?}: buffer is not contiguous"
        )));
    }
    let len = buffer.len_bytes();
    if len as u64 != expected {
        return Err(NativeError::InvalidArgument(format!(
            "tensor {name:?}: buffer holds {len} bytes, its dtype and shape need {expected}"
        )));
    }
    if len == 0 {
        return Ok(());
    }
    let ptr = buffer.buf_ptr().cast::<u8>().cast_const();
    // SAFETY: `buffer` holds a PEP 3118 export of `obj` for the whole borrow: the exporter keeps the
    // memory alive and unmoved until `buffer` is released (at the end of this function). The export is
    // C-contiguous and `len_bytes()` long (checked above), so `ptr..ptr+len` is one valid allocation.
    // We only read, with the GIL held and without calling back into Python while the slice lives;
    // a concurrent writer on another native thread would only change which bytes are sealed.
    #[allow(unsafe_code)]
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
    out.write_all(bytes)?;
    Ok(())
}

type Writer = SealZipWriter<BufWriter<File>>;

/// The sealing stream (`sealtune._native.SealStream`).
#[pyclass(module = "sealtune._native")]
pub struct SealStream {
    state: Mutex<Option<Writer>>,
    path: PathBuf,
    live: bool,
    files: Mutex<u64>,
}

impl SealStream {
    fn open(
        path: PathBuf,
        key: &DeliverableKey,
        chunk_len: ChunkLen,
        live: bool,
    ) -> Result<Self, NativeError> {
        let file = File::create(&path)?;
        let options = SealOptions {
            chunk_len,
            ..SealOptions::default()
        };
        let out = BufWriter::with_capacity(1 << 20, file);
        let writer = if live {
            SealZipWriter::with_observer(
                out,
                key,
                &mut OsRng,
                &options,
                Box::new(|c: &SealedChunk| {
                    live::emit(&Event::ChunkSealed {
                        index: c.index,
                        plaintext_len: c.plaintext_len,
                        tag: c.tag,
                    })
                    .map_err(std::io::Error::other)
                }),
            )
        } else {
            SealZipWriter::new(out, key, &mut OsRng, &options)
        };
        let writer = match writer {
            Ok(w) => w,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e.into());
            }
        };
        Ok(SealStream {
            state: Mutex::new(Some(writer)),
            path,
            live,
            files: Mutex::new(0),
        })
    }

    /// Run `f` on the open writer; on error the stream is aborted (file removed).
    fn with_writer(
        &self,
        f: impl FnOnce(&mut Writer) -> Result<(), NativeError>,
    ) -> Result<(), NativeError> {
        let mut guard = self
            .state
            .lock()
            .map_err(|_| NativeError::State("sealing stream poisoned".into()))?;
        let writer = guard.as_mut().ok_or_else(|| {
            NativeError::State("the sealing stream is finished or aborted".into())
        })?;
        let result = f(writer);
        if result.is_err() {
            *guard = None;
            let _ = std::fs::remove_file(&self.path);
        } else if let Ok(mut files) = self.files.lock() {
            *files += 1;
        }
        result
    }
}

#[pymethods]
impl SealStream {
    /// A stream with an explicit key (64 hex digits) into `path`: for tests and benchmarks. Chunk events
    /// are not emitted; the TEE signature is left zeroed.
    #[new]
    #[pyo3(signature = (path, key_hex, chunk_len=None))]
    fn new(path: PathBuf, key_hex: &str, chunk_len: Option<usize>) -> PyResult<Self> {
        let key = DeliverableKey::from_hex(key_hex)
            .ok_or_else(|| NativeError::InvalidArgument("key_hex must be 64 hex digits".into()))?;
        let chunk_len = match chunk_len {
            None => ChunkLen::WIRE,
            Some(n) => ChunkLen::for_tests(n).ok_or_else(|| {
                NativeError::InvalidArgument("chunk_len must be 1 byte to 64 MiB".into())
            })?,
        };
        Ok(Self::open(path, &key, chunk_len, false)?)
    }

    /// The task's sealing stream inside a worker (key and path from the worker). Fails outside a worker,
    /// when the worker does not seal in the child, or when the task already opened one.
    #[staticmethod]
    fn live() -> PyResult<Self> {
        let ctx = live::context()
            .ok_or_else(|| NativeError::State("not running inside a sealtune worker".into()))?;
        let seal = ctx.seal.as_ref().ok_or_else(|| {
            NativeError::State("the worker does not seal in the script for this task".into())
        })?;
        if !live::claim_seal() {
            return Err(NativeError::State(
                "seal_model was already called for this task (one sealed model per task)".into(),
            )
            .into());
        }
        Ok(Self::open(
            seal.sealed_path.clone(),
            &seal.key,
            ChunkLen::WIRE,
            true,
        )?)
    }

    /// Add a small file (`name` relative to the model directory) from bytes or any buffer.
    fn add_file(&self, name: &str, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let len = PyUntypedBuffer::get(data)
            .map_err(|e| NativeError::InvalidArgument(format!("{name}: not bytes: {e}")))?
            .len_bytes() as u64;
        self.with_writer(|w| {
            w.start_file(name, len)?;
            write_buffer(w, data, name, len)
        })?;
        Ok(())
    }

    /// Add a safetensors file: `specs` is a list of `(name, dtype, shape)`; `buffers` an iterable yielding
    /// each tensor's bytes as a C-contiguous buffer, in the same order, pulled one at a time. With the
    /// `torch` feature (the worker's build), an item may also be a `torch.Tensor`, read through tch.
    #[pyo3(signature = (name, specs, buffers, metadata=None))]
    fn add_safetensors(
        &self,
        name: &str,
        specs: Vec<(String, String, Vec<u64>)>,
        buffers: &Bound<'_, PyAny>,
        metadata: Option<Vec<(String, String)>>,
    ) -> PyResult<()> {
        let specs: Vec<TensorSpec> = specs
            .into_iter()
            .map(|(name, dtype, shape)| TensorSpec { name, dtype, shape })
            .collect();
        let (header, data_len) = safetensors_header(&specs, &metadata.unwrap_or_default())?;
        let mut iter = buffers.try_iter()?;
        let mut result = Ok(());
        self.with_writer(|w| {
            w.start_file(name, header.len() as u64 + data_len)?;
            w.write_all(&header)?;
            for spec in &specs {
                let item = match iter.next() {
                    Some(Ok(item)) => item,
                    Some(Err(e)) => {
                        let msg = e.to_string();
                        result = Err(e);
                        return Err(NativeError::InvalidArgument(msg));
                    }
                    None => {
                        return Err(NativeError::InvalidArgument(format!(
                            "buffers ended before tensor {:?}",
                            spec.name
                        )));
                    }
                };
                let nbytes = spec.nbytes()?;
                #[cfg(feature = "torch")]
                if crate::torch_tensors::write_tensor(w, &item, &spec.name, &spec.dtype, nbytes)? {
                    continue;
                }
                write_buffer(w, &item, &spec.name, nbytes)?;
            }
            if iter.next().is_some() {
                return Err(NativeError::InvalidArgument(
                    "more buffers than tensor specs".into(),
                ));
            }
            Ok(())
        })
        .map_err(|e| match std::mem::replace(&mut result, Ok(())) {
            Err(py_err) => py_err,
            Ok(()) => PyErr::from(e),
        })?;
        Ok(())
    }

    /// Close the zip, seal the last chunk and sync the file. Returns `{tag_digest, chunks, file_len,
    /// zip_len, files, path}`; inside a worker the executor reports it to the parent.
    fn finish<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let writer = self
            .state
            .lock()
            .map_err(|_| NativeError::State("sealing stream poisoned".into()))?
            .take()
            .ok_or_else(|| {
                NativeError::State("the sealing stream is finished or aborted".into())
            })?;
        let files = self.files.lock().map(|f| *f).unwrap_or(0);
        let done = (|| -> Result<_, NativeError> {
            let sealed = writer.finish()?;
            let file = sealed
                .writer
                .into_inner()
                .map_err(|e| NativeError::Io(e.into_error()))?;
            file.sync_all()?;
            Ok((
                sealed.tag_digest,
                sealed.chunks,
                sealed.file_len,
                sealed.zip_len,
            ))
        })();
        let (tag_digest, chunks, file_len, zip_len) = match done {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_file(&self.path);
                return Err(e.into());
            }
        };
        if self.live {
            live::set_seal_result(SealResult {
                tag_digest,
                chunks,
                file_len,
                zip_len,
                files,
            });
        }
        let d = PyDict::new(py);
        d.set_item("tag_digest", format!("{tag_digest:#x}"))?;
        d.set_item("chunks", chunks)?;
        d.set_item("file_len", file_len)?;
        d.set_item("zip_len", zip_len)?;
        d.set_item("files", files)?;
        d.set_item("path", &self.path)?;
        Ok(d)
    }

    /// Abandon the stream and delete the partial file.
    fn abort(&self) {
        if let Ok(mut g) = self.state.lock()
            && g.take().is_some()
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for SealStream {
    fn drop(&mut self) {
        self.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_offsets_are_contiguous() {
        let specs = vec![
            TensorSpec {
                name: "a".into(),
                dtype: "F32".into(),
                shape: vec![2, 3],
            },
            TensorSpec {
                name: "b".into(),
                dtype: "BF16".into(),
                shape: vec![5],
            },
        ];
        let (header, len) = safetensors_header(&specs, &[("format".into(), "pt".into())]).unwrap();
        assert_eq!(len, 24 + 10);
        let n = u64::from_le_bytes(header[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        assert_eq!(header.len(), 8 + n);
        let v: Value = serde_json::from_slice(&header[8..]).unwrap();
        assert_eq!(v["b"]["data_offsets"], json!([24, 34]));
        assert_eq!(v["__metadata__"]["format"], "pt");
    }

    #[test]
    fn bad_specs_are_refused() {
        let t = |name: &str, dtype: &str| TensorSpec {
            name: name.into(),
            dtype: dtype.into(),
            shape: vec![1],
        };
        assert!(safetensors_header(&[t("a", "F33")], &[]).is_err());
        assert!(safetensors_header(&[t("a", "F32"), t("a", "F32")], &[]).is_err());
        assert!(safetensors_header(&[t("__metadata__", "F32")], &[]).is_err());
        let huge = TensorSpec {
            name: "h".into(),
            dtype: "F64".into(),
            shape: vec![u64::MAX, 2],
        };
        assert!(safetensors_header(&[huge], &[]).is_err());
    }
}
