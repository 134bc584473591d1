//! Dataset preparation in the child, as 0G's setup does it (PROTOCOL.md §3).
//!
//! * text, in any format `crate::formats` reads (JSONL, JSON array, CSV, Parquet, Arrow IPC, or a
//!   zip of these): every record is read by [`crate::formats::read_dataset`] under the task's
//!   `dataset_type` — the reader setup counted with — validated (errors name the record: zip entry
//!   and line, element or row) and written normalised, the `messages` shape converted to
//!   instruction = last user message, output = last assistant message, a template's prompt as
//!   `instruction`; Python then turns that file into a `DatasetDict` with a `train` split saved at
//!   `data_path`. A zip holding anything else never gets here: setup refuses it
//!   (`worker/src/intake.rs`), so the records trained are the records counted;
//! * image: the zip is unzipped and its top folder becomes `data_path` (an image-folder layout).

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sealtune_protocol::dataset::{self, ReadLimits};
use sealtune_protocol::dataset_type::DatasetType;
use sealtune_protocol::deliverable::{UnzipLimits, unzip_safely};

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

/// The validation records' file beside the normalised training file `out` (written only when the
/// dataset has validation entries: `protocol::dataset::is_validation_entry`).
pub fn validation_path(out: &Path) -> PathBuf {
    out.with_extension("validation.jsonl")
}

/// A file created on the first write (the validation records' file exists only when there are some).
struct CreatedOnWrite {
    path: PathBuf,
    file: Option<BufWriter<File>>,
}

impl Write for CreatedOnWrite {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.file.is_none() {
            self.file = Some(BufWriter::new(File::create(&self.path)?));
        }
        match self.file.as_mut() {
            Some(f) => f.write(buf),
            None => Ok(0),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

/// Validate and normalise a dataset (any format, under `ty`) into the JSONL file `out`, its
/// validation entries into [`validation_path`] (`protocol::dataset::prepare_jsonl` with the
/// worker's columnar reader); returns the record count (both together). A zip entry that must be
/// seeked is spilled beside `out`.
pub fn normalise_jsonl(
    dataset: &Path,
    ty: Option<&DatasetType>,
    out: &Path,
) -> Result<u64, String> {
    let file = File::create(out).map_err(|e| e.to_string())?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let validation_out = validation_path(out);
    let mut validation = CreatedOnWrite {
        path: validation_out.clone(),
        file: None,
    };
    let columnar = crate::formats::WorkerColumnar {
        spill_dir: out.parent().unwrap_or(Path::new(".")).to_path_buf(),
    };
    let result = dataset::prepare_jsonl(
        dataset,
        ty,
        &ReadLimits::default(),
        &columnar,
        &mut w,
        &mut validation,
    );
    let flushed = w.flush().and_then(|()| validation.flush());
    match (result, flushed) {
        (Ok((_, 0)), Ok(())) => {
            let _ = fs::remove_file(out);
            let _ = fs::remove_file(&validation_out);
            Err("invalid dataset: it holds validation records only (validation*), nothing to train on".into())
        }
        (Ok((summary, _)), Ok(())) => Ok(summary.records),
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
            normalise_jsonl(&spec.dataset, spec.dataset_type.as_ref(), &out)?;
            Ok(Prepared::Jsonl(out))
        }
    }
}
