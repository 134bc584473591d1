//! Dataset preparation in the child, as 0G's setup does it (PROTOCOL.md §3).
//!
//! * text, JSONL (or a zip of JSONL files): every record is validated with `protocol::dataset` (errors name
//!   the record: zip entry and line) and written normalised, the `messages` shape converted to
//!   instruction = last user message, output = last assistant message; Python then turns that file into
//!   a `DatasetDict` with a `train` split saved at `data_path`. A zip holding anything else (e.g. a saved
//!   `DatasetDict`) never gets here: setup refuses it, so the records trained are the records counted
//!   (`worker/src/intake.rs`);
//! * image: the zip is unzipped and its top folder becomes `data_path` (an image-folder layout).

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sealtune_protocol::dataset::{self, DatasetError, ReadLimits, Record};
use sealtune_protocol::deliverable::{UnzipLimits, unzip_safely};
use serde_json::{Map, Value};

use super::{DataType, ExecSpec};

/// What is left to do after the Rust part.
#[derive(Debug, PartialEq, Eq)]
pub enum Prepared {
    /// `data_path` is ready.
    Ready,
    /// Convert this normalised JSONL file into a `DatasetDict` at `data_path` (then delete it).
    Jsonl(PathBuf),
}

fn is_zip(path: &Path) -> Result<bool, String> {
    let mut magic = [0u8; 4];
    let mut f = File::open(path).map_err(|e| format!("cannot open the dataset: {e}"))?;
    let mut got = 0;
    while got < 4 {
        match f.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(format!("cannot read the dataset: {e}")),
        }
    }
    Ok(got == 4 && (magic == *b"PK\x03\x04" || magic == *b"PK\x05\x06"))
}

/// The folder 0G renames to `data`: the only top-level folder of the zip, else the extraction root.
fn top_folder(root: &Path) -> Result<PathBuf, String> {
    let entries: Vec<_> = fs::read_dir(root)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name != "__MACOSX" && !name.starts_with('.')
        })
        .collect();
    match entries.as_slice() {
        [only] if only.path().is_dir() => Ok(only.path()),
        [] => Err("the dataset zip is empty".into()),
        _ => Ok(root.to_path_buf()),
    }
}

/// Unzip `zip` and move its top folder to `data_path`.
fn unzip_to(zip: &Path, data_path: &Path) -> Result<(), String> {
    let tmp = data_path.with_extension("unzip");
    let _ = fs::remove_dir_all(&tmp);
    unzip_safely(zip, &tmp, &UnzipLimits::default())
        .map_err(|e| format!("cannot unpack the dataset: {e}"))?;
    let top = top_folder(&tmp)?;
    if let Some(parent) = data_path.parent() {
        fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    fs::rename(&top, data_path).map_err(|e| format!("moving the dataset into place: {e}"))?;
    let _ = fs::remove_dir_all(&tmp);
    Ok(())
}

fn normalised(record: Record) -> Value {
    let fields = record.fields();
    let mut map = Map::new();
    let mut put = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            map.insert(k.to_owned(), Value::String(v.to_owned()));
        }
    };
    put("instruction", fields.instruction);
    put("input", fields.input);
    put("output", fields.output);
    put("text", fields.text);
    Value::Object(map)
}

/// The validation records' file beside the normalised training file `out` (written only when the
/// zip has `validation*.jsonl` entries: `protocol::dataset::is_validation_entry`).
pub fn validation_path(out: &Path) -> PathBuf {
    out.with_extension("validation.jsonl")
}

/// Validate and normalise a JSONL (or zip of JSONL) dataset into `out`, its validation entries into
/// [`validation_path`]; returns the record count (both together).
pub fn normalise_jsonl(dataset: &Path, out: &Path) -> Result<u64, String> {
    let file = File::create(out).map_err(|e| e.to_string())?;
    let mut w = BufWriter::new(file);
    let mut validation: Option<BufWriter<File>> = None;
    let validation_out = validation_path(out);
    let mut train_records = 0u64;
    let result = dataset::read_dataset(dataset, &ReadLimits::default(), |loc, record| {
        let target = match loc.entry.as_deref() {
            Some(entry) if dataset::is_validation_entry(entry) => {
                if validation.is_none() {
                    validation = Some(BufWriter::new(
                        File::create(&validation_out).map_err(DatasetError::Io)?,
                    ));
                }
                validation.as_mut().unwrap_or(&mut w)
            }
            _ => {
                train_records += 1;
                &mut w
            }
        };
        serde_json::to_writer(&mut *target, &normalised(record))
            .map_err(|e| DatasetError::Io(e.into()))?;
        target.write_all(b"\n").map_err(DatasetError::Io)
    });
    let flushed = w
        .flush()
        .and_then(|()| validation.as_mut().map_or(Ok(()), Write::flush));
    match (result, flushed) {
        (Ok(_), Ok(())) if train_records == 0 => {
            let _ = fs::remove_file(out);
            let _ = fs::remove_file(&validation_out);
            Err("invalid dataset: it holds validation records only (validation*.jsonl), nothing to train on".into())
        }
        (Ok(summary), Ok(())) => Ok(summary.records),
        (Err(e), _) => {
            let _ = fs::remove_file(out);
            let _ = fs::remove_file(&validation_out);
            Err(format!("invalid dataset: {e}"))
        }
        (_, Err(e)) => {
            let _ = fs::remove_file(out);
            let _ = fs::remove_file(&validation_out);
            Err(format!("writing the prepared dataset: {e}"))
        }
    }
}

/// The Rust part of preparing the dataset; `work` is a scratch directory of the task.
pub fn prepare(spec: &ExecSpec, work: &Path) -> Result<Prepared, String> {
    if spec.data_path.exists() {
        return Err(format!(
            "the data path {} exists already; the executor prepares it",
            spec.data_path.display()
        ));
    }
    let zip = is_zip(&spec.dataset)?;
    match spec.data_type {
        DataType::Image => {
            if !zip {
                return Err("an image dataset must be a zip of an image folder".into());
            }
            unzip_to(&spec.dataset, &spec.data_path)?;
            Ok(Prepared::Ready)
        }
        DataType::Text => {
            fs::create_dir_all(work).map_err(|e| e.to_string())?;
            let out = work.join("prepared.jsonl");
            normalise_jsonl(&spec.dataset, &out)?;
            Ok(Prepared::Jsonl(out))
        }
    }
}
