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
use std::path::Path;

use serde_json::{Map, Value};

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
}

/// Where a record is: the zip entry (if any) and the 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The zip entry holding the record; `None` for a plain JSONL file.
    pub entry: Option<String>,
    /// 1-based line number inside the file or entry.
    pub line: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.entry {
            Some(entry) => write!(f, "{entry}: line {}", self.line),
            None => write!(f, "line {}", self.line),
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
    /// A zip without any `*.jsonl` entry.
    #[error("the zip holds no .jsonl file")]
    NoJsonlInZip,
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

fn json_type(v: &Value) -> &'static str {
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
/// buffering them whole. Returns `Ok(false)` at end of input.
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
        let (chunk, found_newline) = match available.iter().position(|&b| b == b'\n') {
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

/// Stream the records of one JSONL source to `f`, in order, with bounded memory (one line at a time).
///
/// `entry` names the zip entry in error locations. Stops at the first invalid record or when `f`
/// fails. Does not check for an empty dataset (see [`read_jsonl`]).
fn stream_jsonl<R, F, E>(
    reader: R,
    entry: Option<&str>,
    limits: &ReadLimits,
    summary: &mut DatasetSummary,
    f: &mut F,
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
        let location = || Location {
            entry: entry.map(str::to_owned),
            line: line_no,
        };
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
        let record = parse_record(line).map_err(|error| DatasetError::Record {
            location: location(),
            error,
        })?;
        summary.add(&record);
        f(&location(), record)?;
    }
}

/// Read a JSONL stream record by record, calling `f` for each, with bounded memory.
///
/// Fails with [`DatasetError::Empty`] when the stream holds no record.
pub fn read_jsonl<R, F, E>(reader: R, limits: &ReadLimits, mut f: F) -> Result<DatasetSummary, E>
where
    R: Read,
    F: FnMut(&Location, Record) -> Result<(), E>,
    E: From<DatasetError>,
{
    let mut summary = DatasetSummary::default();
    stream_jsonl(reader, None, limits, &mut summary, &mut f)?;
    if summary.records == 0 {
        return Err(DatasetError::Empty.into());
    }
    Ok(summary)
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
/// not under `__MACOSX/` nor a dot-file or dot-folder). The worker refuses a zip holding any other
/// file, so that what it counts is all the training can read.
pub fn is_jsonl_entry(name: &str) -> bool {
    let skipped = name
        .split('/')
        .any(|part| part.starts_with('.') || part == "__MACOSX");
    !skipped && name.to_ascii_lowercase().ends_with(".jsonl")
}

/// Whether a JSONL zip entry holds validation records (sealtune; PROTOCOL.md §8): its file name
/// starts with `validation` (`validation.jsonl`, `data/validation-2.jsonl`), case-insensitively.
/// The sealtune worker gives those records to the script as a `validation` split instead of
/// training on them; they are counted and billed like every record (the fee the official tooling
/// predicts counts every JSONL file of the zip).
pub fn is_validation_entry(name: &str) -> bool {
    is_jsonl_entry(name)
        && name
            .rsplit('/')
            .next()
            .is_some_and(|file| file.to_ascii_lowercase().starts_with("validation"))
}

/// Read a zip of JSONL files record by record (see the module docs for which entries count).
pub fn read_zip<R, F, E>(reader: R, limits: &ReadLimits, mut f: F) -> Result<DatasetSummary, E>
where
    R: Read + Seek,
    F: FnMut(&Location, Record) -> Result<(), E>,
    E: From<DatasetError>,
{
    let zip_err = |e: zip::result::ZipError| DatasetError::Zip(e.to_string());
    let mut archive = zip::ZipArchive::new(reader).map_err(zip_err)?;
    let mut jsonl = Vec::new();
    for i in 0..archive.len() {
        let name = archive.name_for_index(i).unwrap_or_default();
        if is_unsafe_zip_path(name) {
            return Err(DatasetError::UnsafeZipPath(name.chars().take(256).collect()).into());
        }
        if is_jsonl_entry(name) {
            jsonl.push(i);
        }
    }
    if jsonl.is_empty() {
        return Err(DatasetError::NoJsonlInZip.into());
    }
    let mut summary = DatasetSummary::default();
    for i in jsonl {
        let file = archive.by_index(i).map_err(zip_err)?;
        if file.is_dir() {
            continue;
        }
        let name = file.name().to_owned();
        stream_jsonl(file, Some(&name), limits, &mut summary, &mut f)?;
    }
    if summary.records == 0 {
        return Err(DatasetError::Empty.into());
    }
    Ok(summary)
}

/// Read a dataset file — a zip (recognised by its magic bytes) or a plain JSONL file — record by
/// record, calling `f` for each, with bounded memory.
pub fn read_dataset<F, E>(path: &Path, limits: &ReadLimits, f: F) -> Result<DatasetSummary, E>
where
    F: FnMut(&Location, Record) -> Result<(), E>,
    E: From<DatasetError>,
{
    let mut file = File::open(path).map_err(DatasetError::Io)?;
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        match file.read(magic.get_mut(got..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => got = got.saturating_add(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DatasetError::Io(e).into()),
        }
    }
    file.seek(SeekFrom::Start(0)).map_err(DatasetError::Io)?;
    if got == 4 && (magic == *b"PK\x03\x04" || magic == *b"PK\x05\x06") {
        read_zip(file, limits, f)
    } else {
        read_jsonl(file, limits, f)
    }
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
