//! Dataset record shapes (PROTOCOL.md §3) and a streaming reader for JSONL files and zips of JSONL.
//!
//! A fine-tuning dataset is a JSONL file, or a zip holding JSONL files, whose records each have one
//! of three shapes:
//!
//! | shape | keys | after the `messages` conversion |
//! |---|---|---|
//! | instruction | `instruction`, `output` (strings), optional `input` (string) | unchanged |
//! | chat | `messages`: an array of `{role, content}` (strings) | instruction = the **last** `user` message, output = the **last** `assistant` message, no `input` |
//! | text | `text` (string) | unchanged |
//!
//! Rules of this module (0G's setup feeds the JSONL into a Hugging Face `DatasetDict`, whose
//! counter then calls `encode` on each field, so anything else would crash there or be counted
//! differently):
//! - every field of a shape must be a JSON string (not `null`, not a number, not an array of parts);
//! - a record may carry other keys (an `id`, a `source`...): they are ignored, but keys of two shapes
//!   in one record (`text` and `output`, `messages` and `instruction`) are an [`RecordError::AmbiguousShape`];
//! - a `messages` record needs at least one `user` and one `assistant` message; other roles
//!   (`system`, `tool`) are allowed and ignored by the conversion;
//! - blank lines are skipped, a UTF-8 byte-order mark on the first line and `\r\n` endings are accepted;
//! - a dataset with no record is an error ([`DatasetError::Empty`]);
//! - a line longer than [`ReadLimits::max_line_bytes`] fails with [`DatasetError::LineTooLong`]
//!   before it is buffered whole, so a 100 MB line costs at most the limit in memory;
//! - a zip is recognised by its magic bytes, not its name; every entry name is checked (absolute
//!   paths, `..` components, drive letters and backslashes are refused, since 0G's setup unzips
//!   everything), then its `*.jsonl` entries are read in archive order (directories, `__MACOSX/`
//!   and dot-files skipped). A zip without a JSONL entry is [`DatasetError::NoJsonlInZip`].
//!
//! The exact `messages` conversion of 0G's setup is not in the official SDK package (0.9.x), which
//! only ships the client side; this module follows PROTOCOL.md §3.
//!
//! Errors name the record: the zip entry when there is one, and the 1-based line number.
//!
//! # Example
//!
//! ```
//! use sealtune_protocol::dataset::{parse_record, read_jsonl, DatasetError, ReadLimits, Record};
//!
//! let rec = parse_record(br#"{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}"#)?;
//! let fields = rec.fields();
//! assert_eq!(fields.instruction, Some("hi"));
//! assert_eq!(fields.output, Some("hello"));
//! assert_eq!(fields.input, None);
//!
//! let jsonl = "{\"text\":\"a\"}\n\n{\"instruction\":\"b\",\"input\":\"\",\"output\":\"c\"}\n";
//! let mut n = 0;
//! let summary = read_jsonl(jsonl.as_bytes(), &ReadLimits::default(), |_loc, rec: Record| {
//!     n += 1;
//!     Ok::<(), DatasetError>(())
//! })?;
//! assert_eq!((n, summary.records), (2, 2));
//!
//! let err = read_jsonl("{\"text\":1}\n".as_bytes(), &ReadLimits::default(), |_, _| Ok::<(), DatasetError>(()))
//!     .unwrap_err();
//! assert_eq!(err.to_string(), "line 1: field `text` must be a string, found a number");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::Path;

use serde_json::{Map, Value};

use crate::dataset_type::{DatasetType, shape};

mod text;

/// Which fields of a record are counted for the fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CountRule {
    /// 0G's counter: `text`, `input`, `output` (what the fee uses, what the official tools predict).
    #[default]
    Official,
    /// `text`, `input`, `output` and `instruction` (the fee's rule once a `dataset_type` template
    /// applies: the formatted prompt is the record's `instruction`).
    WithInstruction,
}

/// Default longest accepted line: 16 MiB. A record larger than that is not a fine-tuning example.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 << 20;

/// Limits applied while reading a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Longest accepted line in bytes, without its line ending.
    pub max_line_bytes: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// One chat message of a `messages` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `user`, `assistant`, `system`, ...
    pub role: String,
    /// The message text.
    pub content: String,
}

/// One dataset record, in one of the three shapes of PROTOCOL.md §3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// `{"instruction", "input"?, "output"}`.
    Instruction {
        /// The task.
        instruction: String,
        /// Optional context; `None` when the key is absent.
        input: Option<String>,
        /// The expected answer.
        output: String,
    },
    /// `{"messages": [{role, content}, ...]}`, with at least one `user` and one `assistant` message.
    Messages(Vec<Message>),
    /// `{"text"}`.
    Text(String),
}

/// The fields of a record after the `messages` conversion; `None` where the field does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fields<'a> {
    /// `instruction`, or the last `user` message of a chat.
    pub instruction: Option<&'a str>,
    /// `input` when present (never for a chat).
    pub input: Option<&'a str>,
    /// `output`, or the last `assistant` message of a chat.
    pub output: Option<&'a str>,
    /// `text`.
    pub text: Option<&'a str>,
}

impl Record {
    /// The shape's name: `"instruction"`, `"messages"` or `"text"`.
    pub fn shape(&self) -> &'static str {
        match self {
            Record::Instruction { .. } => "instruction",
            Record::Messages(_) => "messages",
            Record::Text(_) => "text",
        }
    }

    /// The record's fields after the `messages` conversion (instruction = the last user message,
    /// output = the last assistant message).
    pub fn fields(&self) -> Fields<'_> {
        match self {
            Record::Instruction {
                instruction,
                input,
                output,
            } => Fields {
                instruction: Some(instruction),
                input: input.as_deref(),
                output: Some(output),
                text: None,
            },
            Record::Messages(messages) => {
                let last = |role: &str| {
                    messages
                        .iter()
                        .rev()
                        .find(|m| m.role == role)
                        .map(|m| m.content.as_str())
                };
                Fields {
                    instruction: last("user"),
                    input: None,
                    output: last("assistant"),
                    text: None,
                }
            }
            Record::Text(text) => Fields {
                text: Some(text),
                ..Fields::default()
            },
        }
    }
}

/// What is wrong with one record (one line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The line is not JSON (or not UTF-8).
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// The line is JSON but not an object.
    #[error("a record must be a JSON object, found {0}")]
    NotAnObject(&'static str),
    /// None of `text`, `instruction`/`input`/`output`, `messages` is present.
    #[error(
        "unknown record shape: expected `text`, `instruction`+`output` or `messages`, found keys [{}]",
        .keys.join(", ")
    )]
    UnknownShape {
        /// The record's keys (at most the first 8, each cut to 64 bytes).
        keys: Vec<String>,
    },
    /// Keys of two shapes in one record.
    #[error("ambiguous record shape: both `{0}` and `{1}` are present")]
    AmbiguousShape(&'static str, &'static str),
    /// A required field is absent.
    #[error("field `{0}` is missing")]
    MissingField(&'static str),
    /// A field is not a string.
    #[error("field `{field}` must be a string, found {found}")]
    NotAString {
        /// The field, e.g. `output` or `messages[2].content`.
        field: String,
        /// The JSON type found.
        found: &'static str,
    },
    /// `messages` is not an array of objects.
    #[error("field `messages` must be an array of {{role, content}} objects{0}")]
    BadMessages(String),
    /// A chat without a message of a role the conversion needs.
    #[error("`messages` has no `{0}` message")]
    MissingRole(&'static str),
    /// A column the `dataset_type` names is absent (or `null`).
    #[error("column `{0}` (named by the dataset_type) is missing")]
    MissingColumn(String),
    /// The record's shape is not one the `dataset_type` takes.
    #[error("{0}")]
    TypeMismatch(&'static str),
    /// A malformed CSV record.
    #[error("invalid CSV: {0}")]
    Csv(String),
    /// A columnar file (Parquet, Arrow) cannot be decoded at this row.
    #[error("cannot decode: {0}")]
    Undecodable(String),
}

/// What a [`Location`]'s number counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unit {
    /// Lines (JSONL; CSV: the line a record starts on, the header being line 1).
    #[default]
    Line,
    /// Elements of a JSON array.
    Element,
    /// Rows of a Parquet or Arrow file.
    Row,
}

/// Where a record is: the zip entry (if any) and its 1-based line, element or row number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The zip entry holding the record; `None` for a plain file.
    pub entry: Option<String>,
    /// What `line` counts.
    pub unit: Unit,
    /// 1-based number of the line, element or row inside the file or entry.
    pub line: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            Unit::Line => "line",
            Unit::Element => "element",
            Unit::Row => "row",
        };
        match &self.entry {
            Some(entry) => write!(f, "{entry}: {unit} {}", self.line),
            None => write!(f, "{unit} {}", self.line),
        }
    }
}

/// Why a dataset cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// Reading the file failed.
    #[error("reading the dataset: {0}")]
    Io(#[from] io::Error),
    /// A record is invalid.
    #[error("{location}: {error}")]
    Record {
        /// Where.
        location: Location,
        /// What is wrong.
        error: RecordError,
    },
    /// A line is longer than the limit; reading stops there.
    #[error("{location}: line longer than {max} bytes")]
    LineTooLong {
        /// Where.
        location: Location,
        /// The limit.
        max: usize,
    },
    /// No record at all.
    #[error("the dataset has no record")]
    Empty,
    /// The zip cannot be read.
    #[error("invalid zip: {0}")]
    Zip(String),
    /// A zip entry would be unpacked outside the target folder.
    #[error("zip entry `{0}` has an unsafe path (absolute, `..`, drive letter or backslash)")]
    UnsafeZipPath(String),
    /// A zip without any data entry ([`entry_kind`]).
    #[error("the zip holds no dataset file (.jsonl, .json, .csv, .parquet or .arrow)")]
    NoJsonlInZip,
    /// A columnar format and no [`Columnar`] reader (the client's estimate).
    #[error(
        "{0:?} datasets are read by the provider's worker only: convert it to JSONL or CSV to estimate here"
    )]
    Unsupported(Format),
}

impl DatasetError {
    /// The location of the offending record, when the error is about one.
    pub fn location(&self) -> Option<&Location> {
        match self {
            DatasetError::Record { location, .. } | DatasetError::LineTooLong { location, .. } => {
                Some(location)
            }
            _ => None,
        }
    }
}

/// What reading a dataset found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DatasetSummary {
    /// Records read.
    pub records: u64,
    /// Records per shape: instruction, messages, text.
    pub by_shape: [u64; 3],
}

impl DatasetSummary {
    fn add(&mut self, record: &Record) {
        self.records = self.records.saturating_add(1);
        let slot = match record {
            Record::Instruction { .. } => &mut self.by_shape[0],
            Record::Messages(_) => &mut self.by_shape[1],
            Record::Text(_) => &mut self.by_shape[2],
        };
        *slot = slot.saturating_add(1);
    }
}

pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn take_string(
    map: &mut Map<String, Value>,
    key: &'static str,
) -> Result<Option<String>, RecordError> {
    match map.remove(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(RecordError::NotAString {
            field: key.to_owned(),
            found: json_type(&other),
        }),
    }
}

fn required(value: Option<String>, key: &'static str) -> Result<String, RecordError> {
    value.ok_or(RecordError::MissingField(key))
}

fn parse_messages(value: Value) -> Result<Vec<Message>, RecordError> {
    let Value::Array(items) = value else {
        return Err(RecordError::BadMessages(format!(
            ", found {}",
            json_type(&value)
        )));
    };
    let mut messages = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(mut obj) = item else {
            return Err(RecordError::BadMessages(format!(
                ", element {i} is {}",
                json_type(&item)
            )));
        };
        let mut field = |key: &'static str| match obj.remove(key) {
            Some(Value::String(s)) => Ok(s),
            None => Err(RecordError::BadMessages(format!(
                ", element {i} has no `{key}`"
            ))),
            Some(other) => Err(RecordError::NotAString {
                field: format!("messages[{i}].{key}"),
                found: json_type(&other),
            }),
        };
        let role = field("role")?;
        let content = field("content")?;
        messages.push(Message { role, content });
    }
    for role in ["user", "assistant"] {
        if !messages.iter().any(|m| m.role == role) {
            return Err(RecordError::MissingRole(role));
        }
    }
    Ok(messages)
}

/// Parse one JSONL line (without its line ending) into a [`Record`]. Never panics.
pub fn parse_record(line: &[u8]) -> Result<Record, RecordError> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| RecordError::InvalidJson(e.to_string()))?;
    record_from_value(value)
}

/// One row (a JSON value) as a record of the three shapes. Never panics.
pub fn record_from_value(value: Value) -> Result<Record, RecordError> {
    let Value::Object(mut map) = value else {
        return Err(RecordError::NotAnObject(json_type(&value)));
    };
    let first_present = |map: &Map<String, Value>, keys: &[&'static str]| {
        keys.iter().copied().find(|k| map.contains_key(*k))
    };
    let instruction_key = first_present(&map, &["instruction", "output", "input"]);
    if let Some(messages) = map.remove("messages") {
        if let Some(other) = instruction_key.or(first_present(&map, &["text"])) {
            return Err(RecordError::AmbiguousShape("messages", other));
        }
        return parse_messages(messages).map(Record::Messages);
    }
    if let Some(key) = instruction_key {
        if map.contains_key("text") {
            return Err(RecordError::AmbiguousShape("text", key));
        }
        let instruction = take_string(&mut map, "instruction")?;
        let input = take_string(&mut map, "input")?;
        let output = take_string(&mut map, "output")?;
        return Ok(Record::Instruction {
            instruction: required(instruction, "instruction")?,
            input,
            output: required(output, "output")?,
        });
    }
    if let Some(text) = take_string(&mut map, "text")? {
        return Ok(Record::Text(text));
    }
    // Sorted, so the message does not depend on serde_json's `preserve_order` (enabled by other crates).
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let keys = keys
        .into_iter()
        .take(8)
        .map(|k| k.chars().take(64).collect())
        .collect();
    Err(RecordError::UnknownShape { keys })
}

/// Read the next line into `buf` (line ending stripped), refusing lines over `max` bytes without
/// buffering them whole.
fn read_bounded_line<R: BufRead>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineRead> {
    buf.clear();
    let mut any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(if any { LineRead::Line } else { LineRead::Eof });
        }
        any = true;
        let (chunk, found_newline) = match memchr::memchr(b'\n', available) {
            Some(pos) => (available.get(..pos).unwrap_or_default(), true),
            None => (available, false),
        };
        // `max + 1` so a line of exactly `max` bytes followed by `\r` is still accepted.
        if buf.len().saturating_add(chunk.len()) > max.saturating_add(1) {
            return Ok(LineRead::TooLong);
        }
        buf.extend_from_slice(chunk);
        // At most `available.len()`: the newline, when found, follows `chunk` in `available`.
        let used = chunk.len().saturating_add(usize::from(found_newline));
        reader.consume(used);
        if found_newline {
            return Ok(LineRead::Line);
        }
    }
}

enum LineRead {
    Line,
    Eof,
    TooLong,
}

/// The formats a dataset (or a zip entry) may be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// A `.json` zip entry: a JSON array when its first non-blank byte is `[`, else JSONL.
    Json,
    /// A JSON array of objects (`alpaca_data.json`).
    JsonArray,
    /// CSV with a header row; every cell is a string.
    Csv,
    /// Apache Parquet (read by a [`Columnar`] reader: the worker's).
    Parquet,
    /// Arrow IPC, stream or file (a Hugging Face `save_to_disk` shard; read by a [`Columnar`] reader).
    Arrow,
}

impl Format {
    /// Whether a [`Columnar`] reader reads it.
    pub fn is_columnar(self) -> bool {
        matches!(self, Format::Parquet | Format::Arrow)
    }

    /// The format of a plain (non-zip) dataset file from its first bytes (after any blank or BOM):
    /// `PAR1` Parquet, `ARROW1` or `0xFFFFFFFF` Arrow, `[` a JSON array, `{` (or nothing) JSONL,
    /// anything else CSV.
    pub fn sniff(head: &[u8]) -> Format {
        if head.starts_with(b"PAR1") {
            return Format::Parquet;
        }
        if head.starts_with(b"ARROW1") || head.starts_with(&[0xFF, 0xFF, 0xFF, 0xFF]) {
            return Format::Arrow;
        }
        let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
        match text.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => Format::JsonArray,
            Some(b'{') | None => Format::Jsonl,
            Some(_) => Format::Csv,
        }
    }
}

/// The source a [`Columnar`] reader reads.
pub enum Source<'a> {
    /// A plain file (seekable).
    File(&'a Path),
    /// A zip entry (a stream: spill it to a file if the format needs to seek).
    Stream(&'a mut dyn Read),
}

/// A reader of the columnar formats, which this framework-free crate leaves to the worker (every
/// build of `protocol` would otherwise pay for Arrow). It calls `emit` with each row as a JSON
/// object (strings as strings, nulls as `null`, lists as arrays, structs as objects), in order,
/// and stops when `emit` breaks; it returns why a file cannot be decoded.
pub trait Columnar {
    /// Read the rows of `source`, in `format` ([`Format::Parquet`] or [`Format::Arrow`]).
    fn read_rows(
        &self,
        format: Format,
        source: Source<'_>,
        emit: &mut dyn FnMut(Value) -> ControlFlow<()>,
    ) -> Result<(), String>;
}

/// No columnar reader: Parquet and Arrow datasets fail with [`DatasetError::Unsupported`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoColumnar;

impl Columnar for NoColumnar {
    fn read_rows(
        &self,
        _: Format,
        _: Source<'_>,
        _: &mut dyn FnMut(Value) -> ControlFlow<()>,
    ) -> Result<(), String> {
        Err(String::new())
    }
}

/// Where records go: each row shaped by the dataset type, counted, handed to `f`.
struct Sink<'a, F> {
    ty: Option<&'a DatasetType>,
    summary: DatasetSummary,
    f: F,
}

impl<F> Sink<'_, F> {
    fn row<E>(&mut self, location: &Location, row: Value) -> Result<(), E>
    where
        F: FnMut(&Location, Record) -> Result<(), E>,
        E: From<DatasetError>,
    {
        let record = shape(self.ty, row).map_err(|error| DatasetError::Record {
            location: location.clone(),
            error,
        })?;
        self.summary.add(&record);
        (self.f)(location, record)
    }
}

fn at(entry: Option<&str>, unit: Unit, line: u64) -> Location {
    Location {
        entry: entry.map(str::to_owned),
        unit,
        line,
    }
}

fn malformed(location: Location, message: String) -> DatasetError {
    DatasetError::Record {
        location,
        error: RecordError::InvalidJson(message),
    }
}

/// Stream the rows of one JSONL source to `sink`, with bounded memory (one line at a time).
fn stream_jsonl<R, F, E>(
    reader: R,
    entry: Option<&str>,
    limits: &ReadLimits,
    sink: &mut Sink<'_, F>,
) -> Result<(), E>
where
    R: Read,
    F: FnMut(&Location, Record) -> Result<(), E>,
    E: From<DatasetError>,
{
    let mut reader = BufReader::with_capacity(256 << 10, reader);
    let mut buf = Vec::new();
    let mut line_no: u64 = 0;
    loop {
        line_no = line_no.saturating_add(1);
        let location = || at(entry, Unit::Line, line_no);
        match read_bounded_line(&mut reader, &mut buf, limits.max_line_bytes)
            .map_err(DatasetError::Io)?
        {
            LineRead::Eof => return Ok(()),
            LineRead::TooLong => {
                return Err(DatasetError::LineTooLong {
                    location: location(),
                    max: limits.max_line_bytes,
                }
                .into());
            }
            LineRead::Line => {}
        }
        let mut line = buf.as_slice();
        if let Some(rest) = line.strip_suffix(b"\r") {
            line = rest;
        }
        if line_no == 1
            && let Some(rest) = line.strip_prefix("\u{feff}".as_bytes())
        {
            line = rest;
        }
        if line.len() > limits.max_line_bytes {
            return Err(DatasetError::LineTooLong {
                location: location(),
                max: limits.max_line_bytes,
            }
            .into());
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let row: Value = serde_json::from_slice(line).map_err(|e| DatasetError::Record {
            location: location(),
            error: RecordError::InvalidJson(e.to_string()),
        })?;
        sink.row(&location(), row)?;
    }
}

/// Stream the elements of a JSON array to `sink`, one element in memory at a time.
fn stream_json_array<R, F, E>(
    reader: R,
    entry: Option<&str>,
    limits: &ReadLimits,
    sink: &mut Sink<'_, F>,
) -> Result<(), E>
where
    R: Read,
    F: FnMut(&Location, Record) -> Result<(), E>,
    E: From<DatasetError>,
{
    let mut reader = BufReader::with_capacity(256 << 10, reader);
    let mut array = text::JsonArray::new();
    let mut buf = Vec::new();
    let mut n: u64 = 0;
    loop {
        n = n.saturating_add(1);
        let location = || at(entry, Unit::Element, n);
        match array
            .next(&mut reader, &mut buf, limits.max_line_bytes)
            .map_err(DatasetError::Io)?
        {
            Err(message) => return Err(malformed(location(), message).into()),
            Ok(text::Unit::End) => return Ok(()),
            Ok(text::Unit::TooLong) => {
                return Err(DatasetError::LineTooLong {
                    location: location(),
                    max: limits.max_line_bytes,
                }
                .into());
            }
            Ok(text::Unit::Got) => {}
        }
        let row: Value = serde_json::from_slice(&buf).map_err(|e| DatasetError::Record {
            location: location(),
            error: RecordError::InvalidJson(e.to_string()),
        })?;
        sink.row(&location(), row)?;
    }
}

/// Stream the rows of a CSV source (header row first) to `sink` as objects of strings.
fn stream_csv<R, F, E>(
    reader: R,
    entry: Option<&str>,
    limits: &ReadLimits,
    sink: &mut Sink<'_, F>,
) -> Result<(), E>
where
    R: Read,
    F: FnMut(&Location, Record) -> Result<(), E>,
    E: From<DatasetError>,
{
    let mut reader = BufReader::with_capacity(256 << 10, reader);
    text::skip_bom(&mut reader).map_err(DatasetError::Io)?;
    let mut csv = text::Csv::new();
    let (mut buf, mut ends, mut start) = (Vec::new(), Vec::new(), 0u64);
    let mut header: Option<Vec<String>> = None;
    loop {
        let got = csv
            .next(
                &mut reader,
                &mut buf,
                &mut ends,
                &mut start,
                limits.max_line_bytes,
            )
            .map_err(DatasetError::Io)?;
        let location = || at(entry, Unit::Line, start);
        let csv_error = |message: String| DatasetError::Record {
            location: location(),
            error: RecordError::Csv(message),
        };
        match got {
            Err(message) => return Err(csv_error(message).into()),
            Ok(text::Unit::End) => return Ok(()),
            Ok(text::Unit::TooLong) => {
                return Err(DatasetError::LineTooLong {
                    location: location(),
                    max: limits.max_line_bytes,
                }
                .into());
            }
            Ok(text::Unit::Got) => {}
        }
        let mut fields = Vec::with_capacity(ends.len());
        let mut from = 0;
        for &end in &ends {
            let bytes = buf.get(from..end).unwrap_or_default();
            let field =
                std::str::from_utf8(bytes).map_err(|e| csv_error(format!("not UTF-8: {e}")))?;
            fields.push(field.to_owned());
            from = end;
        }
        let Some(columns) = &header else {
            let mut seen = std::collections::HashSet::new();
            for name in &fields {
                if !seen.insert(name.as_str()) {
                    let shown: String = name.chars().take(64).collect();
                    return Err(
                        csv_error(format!("the header names column `{shown}` twice")).into(),
                    );
                }
            }
            header = Some(fields);
            continue;
        };
        if fields.len() != columns.len() {
            return Err(csv_error(format!(
                "{} fields, the header has {} columns",
                fields.len(),
                columns.len()
            ))
            .into());
        }
        let row: Map<String, Value> = columns
            .iter()
            .cloned()
            .zip(fields.into_iter().map(Value::String))
            .collect();
        sink.row(&location(), Value::Object(row))?;
    }
}

/// Stream the rows of a columnar source through `columnar` to `sink`.
fn stream_columnar<F, E>(
    columnar: &dyn Columnar,
    format: Format,
    source: Source<'_>,
    entry: Option<&str>,
    sink: &mut Sink<'_, F>,
) -> Result<(), E>
where
    F: FnMut(&Location, Record) -> Result<(), E>,
    E: From<DatasetError>,
{
    let mut n: u64 = 0;
    let mut stopped: Option<E> = None;
    let result = columnar.read_rows(format, source, &mut |row| {
        n = n.saturating_add(1);
        match sink.row(&at(entry, Unit::Row, n), row) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                stopped = Some(e);
                ControlFlow::Break(())
            }
        }
    });
    if let Some(e) = stopped {
        return Err(e);
    }
    match result {
        Ok(()) => Ok(()),
        Err(message) if message.is_empty() => Err(DatasetError::Unsupported(format).into()),
        Err(message) => Err(DatasetError::Record {
            location: at(entry, Unit::Row, n.saturating_add(1)),
            error: RecordError::Undecodable(message),
        }
        .into()),
    }
}

/// Stream one text source (not a zip) in `format` to `sink`.
fn stream_text<R, F, E>(
    format: Format,
    reader: R,
    entry: Option<&str>,
    limits: &ReadLimits,
    sink: &mut Sink<'_, F>,
) -> Result<(), E>
where
    R: Read,
    F: FnMut(&Location, Record) -> Result<(), E>,
    E: From<DatasetError>,
{
    match format {
        Format::Json => {
            let mut reader = BufReader::with_capacity(256 << 10, reader);
            let first = text::peek_non_ws(&mut reader, true).map_err(DatasetError::Io)?;
            if first == Some(b'[') {
                stream_json_array(reader, entry, limits, sink)
            } else {
                stream_jsonl(reader, entry, limits, sink)
            }
        }
        Format::JsonArray => stream_json_array(reader, entry, limits, sink),
        Format::Csv => stream_csv(reader, entry, limits, sink),
        Format::Jsonl | Format::Parquet | Format::Arrow => {
            stream_jsonl(reader, entry, limits, sink)
        }
    }
}

/// A record as the prepared JSONL holds it: the fields after the `messages` conversion, absent
/// ones left out (keys `instruction`, `input`, `output`, `text`).
#[derive(serde::Serialize)]
struct Prepared<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    instruction: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
}

/// Write one record as a line of the prepared JSONL (what a script's `train` split is made of).
pub fn write_prepared<W: io::Write>(out: &mut W, record: &Record) -> io::Result<()> {
    let f = record.fields();
    let prepared = Prepared {
        instruction: f.instruction,
        input: f.input,
        output: f.output,
        text: f.text,
    };
    serde_json::to_writer(&mut *out, &prepared).map_err(io::Error::other)?;
    out.write_all(b"\n")
}

/// Read a dataset (any format, under `ty`) with [`read_dataset_with`] and write its records,
/// prepared ([`write_prepared`]), to `out`, and those of its validation entries
/// ([`is_validation_entry`]) to `validation`: the preparation the worker runs, on the reader the
/// count uses. Returns the summary of all records and how many of them are training records.
pub fn prepare_jsonl<W: io::Write, V: io::Write>(
    path: &Path,
    ty: Option<&DatasetType>,
    limits: &ReadLimits,
    columnar: &dyn Columnar,
    out: &mut W,
    validation: &mut V,
) -> Result<(DatasetSummary, u64), DatasetError> {
    let mut train = 0u64;
    let summary = read_dataset_with(path, ty, limits, columnar, |loc, record| {
        match loc.entry.as_deref() {
            Some(entry) if is_validation_entry(entry) => write_prepared(validation, &record),
            _ => {
                train = train.saturating_add(1);
                write_prepared(out, &record)
            }
        }
        .map_err(DatasetError::Io)
    })?;
    Ok((summary, train))
}

/// Read a JSONL stream record by record, calling `f` for each, with bounded memory.
///
/// Fails with [`DatasetError::Empty`] when the stream holds no record.
pub fn read_jsonl<R, F, E>(reader: R, limits: &ReadLimits, f: F) -> Result<DatasetSummary, E>
where
    R: Read,
    F: FnMut(&Location, Record) -> Result<(), E>,
    E: From<DatasetError>,
{
    read_text(Format::Jsonl, reader, None, limits, f)
}

/// Read one text source (JSONL, JSON array or CSV) under a dataset type, calling `f` for each
/// record; fails with [`DatasetError::Empty`] when it holds no record.
pub fn read_text<R, F, E>(
    format: Format,
    reader: R,
    ty: Option<&DatasetType>,
    limits: &ReadLimits,
    f: F,
) -> Result<DatasetSummary, E>
where
    R: Read,
    F: FnMut(&Location, Record) -> Result<(), E>,
    E: From<DatasetError>,
{
    let mut sink = Sink {
        ty,
        summary: DatasetSummary::default(),
        f,
    };
    stream_text(format, reader, None, limits, &mut sink)?;
    if sink.summary.records == 0 {
        return Err(DatasetError::Empty.into());
    }
    Ok(sink.summary)
}

/// Whether a zip entry name could unpack outside its target folder.
pub fn is_unsafe_zip_path(name: &str) -> bool {
    let bytes = name.as_bytes();
    name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.contains('\0')
        || (bytes.len() >= 2 && bytes.get(1) == Some(&b':'))
        || name.split('/').any(|part| part == "..")
}

/// Whether a zip entry is one of the JSONL files a dataset's records are read from (a `.jsonl` name,
/// not under `__MACOSX/` nor a dot-file or dot-folder).
pub fn is_jsonl_entry(name: &str) -> bool {
    entry_kind(name, false) == EntryKind::Data(Format::Jsonl)
}

/// What a zip entry is to the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Records are read from it, in this format.
    Data(Format),
    /// A Hugging Face `save_to_disk` description (`dataset_info.json`, `state.json`) beside Arrow
    /// shards: never read (the shards are what is counted and trained).
    HfMetadata,
    /// A folder, or under `__MACOSX/`, or a dot-file: never read.
    Skipped,
    /// Anything else: never read, and refused by the worker (it could be read by a script).
    Other,
}

/// The kind of a zip entry; `hf` says whether the zip holds `.arrow` shards (a saved dataset).
/// Data entries are chosen by extension: `.jsonl`, `.json` (array or lines), `.csv`, `.parquet`,
/// `.arrow`. A saved `DatasetDict` (`dataset_dict.json`) is [`EntryKind::Other`]: save its `train`
/// split alone.
pub fn entry_kind(name: &str, hf: bool) -> EntryKind {
    if name.ends_with('/')
        || name
            .split('/')
            .any(|part| part.starts_with('.') || part == "__MACOSX")
    {
        return EntryKind::Skipped;
    }
    let base = name.rsplit('/').next().unwrap_or(name);
    let lower = base.to_ascii_lowercase();
    if hf && (lower == "dataset_info.json" || lower == "state.json") {
        return EntryKind::HfMetadata;
    }
    if lower == "dataset_dict.json" {
        return EntryKind::Other;
    }
    let ext = lower.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
    match ext {
        "jsonl" => EntryKind::Data(Format::Jsonl),
        "json" => EntryKind::Data(Format::Json),
        "csv" => EntryKind::Data(Format::Csv),
        "parquet" => EntryKind::Data(Format::Parquet),
        "arrow" => EntryKind::Data(Format::Arrow),
        _ => EntryKind::Other,
    }
}

/// Whether a zip entry holds validation records (sealtune; PROTOCOL.md §9): a data entry
/// ([`entry_kind`], any format) whose file name starts with `validation` (`validation.jsonl`,
/// `data/validation-2.csv`), case-insensitively. The sealtune worker gives those records to the
/// script as a `validation` split instead of training on them; they are counted and billed like
/// every record (the fee the official tooling predicts counts every JSONL file of the zip).
pub fn is_validation_entry(name: &str) -> bool {
    matches!(entry_kind(name, false), EntryKind::Data(_))
        && name
            .rsplit('/')
            .next()
            .is_some_and(|file| file.to_ascii_lowercase().starts_with("validation"))
}

/// Read a zip of JSONL files record by record (see [`read_zip_with`]; columnar entries fail).
pub fn read_zip<R, F, E>(reader: R, limits: &ReadLimits, f: F) -> Result<DatasetSummary, E>
where
    R: Read + Seek,
    F: FnMut(&Location, Record) -> Result<(), E>,
    E: From<DatasetError>,
{
    read_zip_with(reader, None, limits, &NoColumnar, f)
}

/// Read a zip's data entries ([`entry_kind`]) record by record, in archive order, under a dataset
/// type; every entry name is checked first.
pub fn read_zip_with<R, F, E>(
    reader: R,
    ty: Option<&DatasetType>,
    limits: &ReadLimits,
    columnar: &dyn Columnar,
    f: F,
) -> Result<DatasetSummary, E>
where
    R: Read + Seek,
    F: FnMut(&Location, Record) -> Result<(), E>,
    E: From<DatasetError>,
{
    let zip_err = |e: zip::result::ZipError| DatasetError::Zip(e.to_string());
    let mut archive = zip::ZipArchive::new(reader).map_err(zip_err)?;
    let mut names = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let name = archive.name_for_index(i).unwrap_or_default();
        if is_unsafe_zip_path(name) {
            return Err(DatasetError::UnsafeZipPath(name.chars().take(256).collect()).into());
        }
        names.push(name.to_owned());
    }
    let hf = names
        .iter()
        .any(|n| entry_kind(n, false) == EntryKind::Data(Format::Arrow));
    let data: Vec<(usize, Format)> = names
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match entry_kind(n, hf) {
            EntryKind::Data(format) => Some((i, format)),
            _ => None,
        })
        .collect();
    if data.is_empty() {
        return Err(DatasetError::NoJsonlInZip.into());
    }
    let mut sink = Sink {
        ty,
        summary: DatasetSummary::default(),
        f,
    };
    for (i, format) in data {
        let mut file = archive.by_index(i).map_err(zip_err)?;
        let name = file.name().to_owned();
        if format.is_columnar() {
            // At most the declared size (what the worker's unpacking caps checked), whatever the
            // compressed stream inflates to: a columnar entry may be spilled to disk.
            let declared = file.size();
            let mut limited = (&mut file).take(declared);
            stream_columnar(
                columnar,
                format,
                Source::Stream(&mut limited),
                Some(&name),
                &mut sink,
            )?;
        } else {
            stream_text(format, file, Some(&name), limits, &mut sink)?;
        }
    }
    if sink.summary.records == 0 {
        return Err(DatasetError::Empty.into());
    }
    Ok(sink.summary)
}

/// Read a dataset file — a zip (recognised by its magic bytes) or a plain JSONL file — record by
/// record, calling `f` for each, with bounded memory (no dataset type, no columnar reader).
pub fn read_dataset<F, E>(path: &Path, limits: &ReadLimits, f: F) -> Result<DatasetSummary, E>
where
    F: FnMut(&Location, Record) -> Result<(), E>,
    E: From<DatasetError>,
{
    read_dataset_with(path, None, limits, &NoColumnar, f)
}

/// Read a dataset file in any format — a zip of data files (see [`entry_kind`]) or one file whose
/// format is sniffed ([`Format::sniff`]) — record by record under a dataset type, calling `f` for
/// each, with bounded memory. This is the one reader behind both the count and the preparation.
pub fn read_dataset_with<F, E>(
    path: &Path,
    ty: Option<&DatasetType>,
    limits: &ReadLimits,
    columnar: &dyn Columnar,
    f: F,
) -> Result<DatasetSummary, E>
where
    F: FnMut(&Location, Record) -> Result<(), E>,
    E: From<DatasetError>,
{
    let mut file = File::open(path).map_err(DatasetError::Io)?;
    let mut head = [0u8; 4096];
    let mut got = 0;
    while got < head.len() {
        match file.read(head.get_mut(got..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => got = got.saturating_add(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DatasetError::Io(e).into()),
        }
    }
    file.seek(SeekFrom::Start(0)).map_err(DatasetError::Io)?;
    let head = head.get(..got).unwrap_or_default();
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return read_zip_with(file, ty, limits, columnar, f);
    }
    let format = Format::sniff(head);
    if format.is_columnar() {
        let mut sink = Sink {
            ty,
            summary: DatasetSummary::default(),
            f,
        };
        drop(file);
        stream_columnar(columnar, format, Source::File(path), None, &mut sink)?;
        if sink.summary.records == 0 {
            return Err(DatasetError::Empty.into());
        }
        return Ok(sink.summary);
    }
    read_text(format, file, ty, limits, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Record, RecordError> {
        parse_record(s.as_bytes())
    }

    #[test]
    fn three_shapes_parse() {
        assert_eq!(parse(r#"{"text":"t"}"#), Ok(Record::Text("t".into())));
        assert_eq!(
            parse(r#"{"instruction":"i","output":"o","id":7}"#),
            Ok(Record::Instruction {
                instruction: "i".into(),
                input: None,
                output: "o".into()
            })
        );
        let chat = parse(
            r#"{"messages":[{"role":"system","content":"s"},{"role":"user","content":"u1"},
               {"role":"assistant","content":"a1"},{"role":"user","content":"u2"},{"role":"assistant","content":"a2"}]}"#,
        )
        .unwrap();
        assert_eq!(
            chat.fields(),
            Fields {
                instruction: Some("u2"),
                input: None,
                output: Some("a2"),
                text: None
            }
        );
    }

    #[test]
    fn wrong_shapes_are_typed_errors() {
        assert_eq!(parse("[1]"), Err(RecordError::NotAnObject("an array")));
        assert_eq!(
            parse(r#"{"text":"a","output":"b"}"#),
            Err(RecordError::AmbiguousShape("text", "output"))
        );
        assert_eq!(
            parse(r#"{"instruction":"a"}"#),
            Err(RecordError::MissingField("output"))
        );
        assert_eq!(
            parse(r#"{"input":null,"instruction":"a","output":"b"}"#),
            Err(RecordError::NotAString {
                field: "input".into(),
                found: "null"
            })
        );
        assert_eq!(
            parse(r#"{"messages":[{"role":"user","content":"a"}]}"#),
            Err(RecordError::MissingRole("assistant"))
        );
        assert!(matches!(
            parse(r#"{"prompt":"x"}"#),
            Err(RecordError::UnknownShape { .. })
        ));
        assert!(matches!(parse("{"), Err(RecordError::InvalidJson(_))));
    }

    #[test]
    fn unsafe_zip_paths() {
        for bad in [
            "../x.jsonl",
            "a/../../x",
            "/etc/passwd",
            "C:/x",
            "a\\..\\x",
            "",
        ] {
            assert!(is_unsafe_zip_path(bad), "{bad}");
        }
        for good in ["data/train.jsonl", "x..y.jsonl", "a/b/"] {
            assert!(!is_unsafe_zip_path(good), "{good}");
        }
    }
}
