//! The columnar dataset formats, read worker-side (the framework-free `protocol` crate leaves them
//! to a [`Columnar`] reader, so that only the worker pays Arrow's build time): Parquet (the
//! `parquet` crate: uncompressed, Snappy and Zstd pages, each page's header checked first by
//! [`crate::parquet_pages`]) and Arrow IPC, stream or file (the shards of a
//! Hugging Face `Dataset.save_to_disk`). Each row becomes a JSON object — strings, numbers,
//! booleans, `null`, lists as arrays and structs as objects (a `messages` column of
//! `list<struct<role, content>>` reads as the chat shape) — and goes through the same
//! `protocol::dataset` shaping and counting as a JSONL line, record by record: memory is bounded by
//! one record batch ([`BATCH_ROWS`] rows), never by the file.
//!
//! A zip entry is a stream: Arrow IPC streams are read from it directly; Parquet (and the Arrow
//! file form) need to seek, so the entry is first copied to an unnamed temporary file in
//! [`WorkerColumnar::spill_dir`] (deleted when closed; its size is within the zip caps the intake
//! checked).
//!
//! [`read_dataset`] is the one reader of a task's dataset: setup counts through it and the
//! executor's preparation writes the records it yields, so what is counted is what is trained.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{ArrowError, DataType as ArrowType};
use sealtune_protocol::dataset::{
    self, Columnar, DatasetError, DatasetSummary, Format, Location, ReadLimits, Record, Source,
};
use sealtune_protocol::dataset_type::DatasetType;
use serde_json::{Map, Number, Value};

/// Rows per record batch decoded at a time.
pub const BATCH_ROWS: usize = 1024;

/// Deepest list/struct nesting converted (deeper values are refused, not recursed into).
const MAX_DEPTH: usize = 16;

/// The worker's [`Columnar`] reader.
#[derive(Debug, Clone)]
pub struct WorkerColumnar {
    /// Where a zip entry that must be seeked is spilled (the task's work directory).
    pub spill_dir: PathBuf,
}

/// Read a task's dataset — any format of `protocol::dataset::read_dataset_with`, Parquet and
/// Arrow included — under its `dataset_type`, calling `f` for each record; zip entries that must
/// be seeked are spilled to `spill_dir`.
pub fn read_dataset<F, E>(
    path: &Path,
    ty: Option<&DatasetType>,
    limits: &ReadLimits,
    spill_dir: &Path,
    f: F,
) -> Result<DatasetSummary, E>
where
    F: FnMut(&Location, Record) -> Result<(), E>,
    E: From<DatasetError>,
{
    let columnar = WorkerColumnar {
        spill_dir: spill_dir.to_path_buf(),
    };
    dataset::read_dataset_with(path, ty, limits, &columnar, f)
}

impl Columnar for WorkerColumnar {
    fn read_rows(
        &self,
        format: Format,
        source: Source<'_>,
        emit: &mut dyn FnMut(Value) -> ControlFlow<()>,
    ) -> Result<(), String> {
        let result = match (format, source) {
            (Format::Parquet, Source::File(path)) => {
                parquet_rows(File::open(path).map_err(|e| e.to_string())?, emit)
            }
            (Format::Parquet, Source::Stream(stream)) => parquet_rows(self.spill(stream)?, emit),
            // Both forms, by their head: a `save_to_disk` shard is an IPC *stream*, bare or zipped.
            (Format::Arrow, Source::File(path)) => {
                let mut reader = BufReader::new(File::open(path).map_err(|e| e.to_string())?);
                let head = reader.fill_buf().map_err(|e| e.to_string())?;
                if head.starts_with(b"ARROW1") {
                    let mut file = reader.into_inner();
                    file.rewind().map_err(|e| e.to_string())?;
                    arrow_rows(file, emit)
                } else {
                    arrow_stream_rows(reader, emit)
                }
            }
            (Format::Arrow, Source::Stream(stream)) => {
                let mut reader = BufReader::new(stream);
                let head = reader.fill_buf().map_err(|e| e.to_string())?;
                if head.starts_with(b"ARROW1") {
                    arrow_rows(self.spill(&mut reader)?, emit)
                } else {
                    arrow_stream_rows(reader, emit)
                }
            }
            (other, _) => Err(format!("{other:?} is not a columnar format")),
        };
        result.map_err(|e| e.chars().take(300).collect())
    }
}

impl WorkerColumnar {
    /// Copy a stream to an unnamed temporary file, rewound.
    fn spill(&self, stream: &mut dyn Read) -> Result<File, String> {
        let mut file = tempfile::tempfile_in(&self.spill_dir)
            .map_err(|e| format!("cannot spill the zip entry: {e}"))?;
        std::io::copy(stream, &mut file).map_err(|e| format!("cannot spill the zip entry: {e}"))?;
        file.rewind().map_err(|e| e.to_string())?;
        Ok(file)
    }
}

fn parquet_rows(file: File, emit: &mut dyn FnMut(Value) -> ControlFlow<()>) -> Result<(), String> {
    let pages = file.try_clone().map_err(|e| e.to_string())?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    crate::parquet_pages::check(&pages, builder.metadata())?;
    let reader = builder
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| e.to_string())?;
    batches_rows(reader, emit)
}

fn arrow_rows(file: File, emit: &mut dyn FnMut(Value) -> ControlFlow<()>) -> Result<(), String> {
    let reader = arrow_ipc::reader::FileReader::try_new(BufReader::new(file), None)
        .map_err(|e| format!("not a readable Arrow IPC file: {e}"))?;
    batches_rows(reader, emit)
}

fn arrow_stream_rows<R: Read>(
    reader: R,
    emit: &mut dyn FnMut(Value) -> ControlFlow<()>,
) -> Result<(), String> {
    let reader = arrow_ipc::reader::StreamReader::try_new(reader, None)
        .map_err(|e| format!("not a readable Arrow IPC stream: {e}"))?;
    batches_rows(reader, emit)
}

fn batches_rows<I>(batches: I, emit: &mut dyn FnMut(Value) -> ControlFlow<()>) -> Result<(), String>
where
    I: Iterator<Item = Result<RecordBatch, ArrowError>>,
{
    for batch in batches {
        let batch = batch.map_err(|e| e.to_string())?;
        let schema = batch.schema();
        for row in 0..batch.num_rows() {
            let mut map = Map::new();
            for (field, column) in schema.fields().iter().zip(batch.columns()) {
                let value = to_json(column.as_ref(), row, 0)
                    .map_err(|e| format!("column `{}`: {e}", field.name()))?;
                map.insert(field.name().clone(), value);
            }
            if emit(Value::Object(map)).is_break() {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn number(n: impl Into<Number>) -> Value {
    Value::Number(n.into())
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// One cell as JSON.
fn to_json(array: &dyn Array, i: usize, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("nested deeper than {MAX_DEPTH} levels"));
    }
    if array.is_null(i) {
        return Ok(Value::Null);
    }
    Ok(match array.data_type() {
        ArrowType::Null => Value::Null,
        ArrowType::Utf8 => Value::String(array.as_string::<i32>().value(i).to_owned()),
        ArrowType::LargeUtf8 => Value::String(array.as_string::<i64>().value(i).to_owned()),
        ArrowType::Utf8View => Value::String(array.as_string_view().value(i).to_owned()),
        ArrowType::Boolean => Value::Bool(array.as_boolean().value(i)),
        ArrowType::Int8 => number(array.as_primitive::<Int8Type>().value(i)),
        ArrowType::Int16 => number(array.as_primitive::<Int16Type>().value(i)),
        ArrowType::Int32 => number(array.as_primitive::<Int32Type>().value(i)),
        ArrowType::Int64 => number(array.as_primitive::<Int64Type>().value(i)),
        ArrowType::UInt8 => number(array.as_primitive::<UInt8Type>().value(i)),
        ArrowType::UInt16 => number(array.as_primitive::<UInt16Type>().value(i)),
        ArrowType::UInt32 => number(array.as_primitive::<UInt32Type>().value(i)),
        ArrowType::UInt64 => number(array.as_primitive::<UInt64Type>().value(i)),
        ArrowType::Float16 => float(array.as_primitive::<Float16Type>().value(i).to_f64()),
        ArrowType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(i))),
        ArrowType::Float64 => float(array.as_primitive::<Float64Type>().value(i)),
        ArrowType::List(_) => list(array.as_list::<i32>().value(i).as_ref(), depth)?,
        ArrowType::LargeList(_) => list(array.as_list::<i64>().value(i).as_ref(), depth)?,
        ArrowType::Struct(fields) => {
            let s = array.as_struct();
            let mut map = Map::new();
            for (field, column) in fields.iter().zip(s.columns()) {
                map.insert(
                    field.name().clone(),
                    to_json(column.as_ref(), i, depth.saturating_add(1))?,
                );
            }
            Value::Object(map)
        }
        ArrowType::Dictionary(_, _) => {
            let dict = array.as_any_dictionary();
            let key = to_json(dict.keys(), i, depth.saturating_add(1))?
                .as_u64()
                .and_then(|k| usize::try_from(k).ok())
                .filter(|k| *k < dict.values().len())
                .ok_or("dictionary key out of range")?;
            to_json(dict.values().as_ref(), key, depth.saturating_add(1))?
        }
        other => return Err(format!("type {other} cannot hold dataset text")),
    })
}

fn list(values: &dyn Array, depth: usize) -> Result<Value, String> {
    (0..values.len())
        .map(|j| to_json(values, j, depth.saturating_add(1)))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::StringArray;
    use arrow_schema::{Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "text",
            ArrowType::Utf8,
            false,
        )]));
        let column = Arc::new(StringArray::from(vec!["one", "two"]));
        RecordBatch::try_new(schema, vec![column]).unwrap()
    }

    fn texts(path: &Path, dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        read_dataset(path, None, &ReadLimits::default(), dir, |_, record| {
            out.push(format!("{record:?}"));
            Ok::<(), DatasetError>(())
        })
        .unwrap();
        out
    }

    /// The shard `Dataset.save_to_disk` writes (`data-00000-of-00001.arrow`) is an Arrow IPC
    /// *stream*; uploaded bare (not zipped) it is read like the zipped one, and so is the file form.
    #[test]
    fn a_bare_arrow_stream_shard_and_an_arrow_file_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch();
        let stream = dir.path().join("data-00000-of-00001.arrow");
        let mut w =
            arrow_ipc::writer::StreamWriter::try_new(File::create(&stream).unwrap(), &b.schema())
                .unwrap();
        w.write(&b).unwrap();
        w.finish().unwrap();
        let file = dir.path().join("file.arrow");
        let mut w =
            arrow_ipc::writer::FileWriter::try_new(File::create(&file).unwrap(), &b.schema())
                .unwrap();
        w.write(&b).unwrap();
        w.finish().unwrap();
        let from_stream = texts(&stream, dir.path());
        assert_eq!(from_stream.len(), 2, "{from_stream:?}");
        assert!(from_stream[1].contains("two"), "{from_stream:?}");
        assert_eq!(texts(&file, dir.path()), from_stream);
    }
}
