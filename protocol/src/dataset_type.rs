//! `dataset_type`: how the columns of a dataset's rows become the records a script trains on
//! (seed 003's tuning-subnet request, following Axolotl's dataset types). Carried in sealtune's
//! create-task request ([`crate::api::CreateTaskBody::dataset_type`]), applied by the worker's
//! preparation and counted the same way (the same [`DatasetType::record`] feeds both).
//!
//! | value | rows | record the script reads | billed strings |
//! |---|---|---|---|
//! | absent | the three shapes of [`crate::dataset`] | as today | 0G's field sum: `text`, `input`, `output` |
//! | `"instruct"` | `instruction`+`output` (`input`) or `messages` | unchanged (the script applies its chat template) | 0G's field sum |
//! | `"pretrain"` | `text` | `{text}` | `text` |
//! | `"alpaca"` | `instruction`, `input`, `output` | `{instruction: prompt, output}`, prompt = the Alpaca template | prompt + output |
//! | `{field: "col"}` | column `col` | `{text}` | `text` |
//! | `{field_instruction, …}` | the named columns | `{instruction: prompt, output}`, prompt = system + template | prompt + output |
//!
//! **Templates.** A custom object (every key optional) maps columns and formats the prompt as Axolotl's
//! user-defined type does: `prompt = system_part + turn`, where `turn` is `format` with `{instruction}`
//! and `{input}` replaced when the row's input is non-empty, else `no_input_format` with
//! `{instruction}`; `system_part` is `system_format` with `{system}` replaced by the row's
//! `field_system` column when it is a non-empty string, else by `system_prompt`, and nothing when that
//! text is empty. `{{` and `}}` are literal braces (Python's `str.format`); any other `{name}` (an
//! attribute, index or format spec like `{instruction.__class__}` included: the worker substitutes,
//! Python never formats a customer's template) and a placeholder used twice are refused when the
//! request is read. Defaults (Axolotl's): `field_system` `system`, `field_instruction`
//! `instruction`, `field_input` `input`, `field_output` `output`, `system_prompt` empty,
//! `system_format` `{system}`, `format` `{instruction} {input} `, `no_input_format` `{instruction} `.
//! A missing or `null` input column is an empty input; the instruction and output columns must be
//! strings. `field` (pretraining) takes the text from one column and may not be combined with the
//! instruction keys.
//!
//! **Billing** ([`DatasetType::count_rule`]): once a template applies, the billed strings are the
//! formatted prompt and the output (each encoded on its own, like every counted field): everything the
//! script receives. Without a template, 0G's field sum (`instruction` unbilled) is kept.
//!
//! **Canonical form** ([`DatasetType::canonical_json`], [`DatasetType::hash`]): a named type is its JSON
//! string (`"alpaca"`); a custom object is a JSON object of the keys given, sorted, without
//! whitespace. The hash is `keccak256` of those bytes: what a signature binds.
//!
//! ```
//! use sealtune_protocol::dataset_type::DatasetType;
//! use sealtune_protocol::dataset::Record;
//!
//! let ty: DatasetType = serde_json::from_str(
//!     r#"{"field_instruction":"q","field_output":"a","format":"Q: {instruction}\nA: ","no_input_format":"Q: {instruction}\nA: "}"#,
//! )?;
//! let row = serde_json::json!({"q": "2+2?", "a": "4"});
//! let rec = ty.record(row).unwrap();
//! assert_eq!(rec, Record::Instruction { instruction: "Q: 2+2?\nA: ".into(), input: None, output: "4".into() });
//! assert_eq!(ty.canonical_json(), r#"{"field_instruction":"q","field_output":"a","format":"Q: {instruction}\nA: ","no_input_format":"Q: {instruction}\nA: "}"#);
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::collections::BTreeMap;

use alloy_primitives::{B256, keccak256};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::dataset::CountRule;
use crate::dataset::{Record, RecordError, record_from_value};

/// Longest accepted template or system prompt, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 4096;

/// The keys of a custom `dataset_type` object.
pub const CUSTOM_KEYS: [&str; 9] = [
    "field",
    "field_input",
    "field_instruction",
    "field_output",
    "field_system",
    "format",
    "no_input_format",
    "system_format",
    "system_prompt",
];

/// The named types.
pub const NAMED_TYPES: [&str; 3] = ["alpaca", "instruct", "pretrain"];

/// The Alpaca prompt with an input (Stanford Alpaca's, as Axolotl's `alpaca` type writes it).
pub const ALPACA_FORMAT: &str = "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n";
/// The Alpaca prompt without an input.
pub const ALPACA_NO_INPUT_FORMAT: &str = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n";

/// Why a `dataset_type` value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatasetTypeError {
    /// Neither a known name nor an object.
    #[error(
        "dataset_type must be one of \"alpaca\", \"instruct\", \"pretrain\" or an object with the keys {CUSTOM_KEYS:?}, found {0}"
    )]
    Unknown(String),
    /// An object key that is not one of [`CUSTOM_KEYS`].
    #[error("dataset_type has the unknown key `{0}`; allowed: {CUSTOM_KEYS:?}")]
    UnknownKey(String),
    /// A value that is not a string (or is empty where a column name is needed).
    #[error("dataset_type.{0} must be a non-empty string")]
    NotAString(String),
    /// A template or prompt over [`MAX_TEMPLATE_BYTES`].
    #[error("dataset_type.{0} is longer than {MAX_TEMPLATE_BYTES} bytes")]
    TooLong(&'static str),
    /// A placeholder the template may not use, or an unbalanced brace.
    #[error(
        "dataset_type.{key}: {problem} (allowed placeholders: {allowed}; write {{{{ and }}}} for literal braces)"
    )]
    Template {
        /// The template key.
        key: &'static str,
        /// What is wrong.
        problem: String,
        /// The placeholders this key may use.
        allowed: &'static str,
    },
    /// `field` combined with instruction keys.
    #[error(
        "dataset_type.field (pretraining text) cannot be combined with `{0}`: use either `field` or the instruction keys"
    )]
    Mixed(&'static str),
}

/// A custom column mapping (seed 003 / Axolotl's user-defined type); `None` keys take the defaults of
/// the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CustomType {
    /// Column holding a per-row system text.
    pub field_system: Option<String>,
    /// Column holding the instruction.
    pub field_instruction: Option<String>,
    /// Column holding the input.
    pub field_input: Option<String>,
    /// Column holding the output.
    pub field_output: Option<String>,
    /// System text when the row has none.
    pub system_prompt: Option<String>,
    /// Template around the system text (`{system}`).
    pub system_format: Option<String>,
    /// Prompt template with an input (`{instruction}`, `{input}`).
    pub format: Option<String>,
    /// Prompt template without an input (`{instruction}`).
    pub no_input_format: Option<String>,
    /// Pretraining: the column holding the text.
    pub field: Option<String>,
}

/// A validated `dataset_type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatasetType {
    /// `"instruct"`: instruction or chat records, unchanged.
    Instruct,
    /// `"pretrain"`: text records.
    Pretrain,
    /// `"alpaca"`: the Alpaca prompt template over `instruction`/`input`/`output`.
    Alpaca,
    /// A custom mapping.
    Custom(Box<CustomType>),
}

impl CustomType {
    fn entries(&self) -> [(&'static str, &Option<String>); 9] {
        [
            ("field", &self.field),
            ("field_input", &self.field_input),
            ("field_instruction", &self.field_instruction),
            ("field_output", &self.field_output),
            ("field_system", &self.field_system),
            ("format", &self.format),
            ("no_input_format", &self.no_input_format),
            ("system_format", &self.system_format),
            ("system_prompt", &self.system_prompt),
        ]
    }
}

/// Check a template's placeholders: `{{`, `}}` and the `allowed` names only.
fn check_template(
    key: &'static str,
    template: &str,
    allowed: &'static [&'static str],
) -> Result<(), DatasetTypeError> {
    let err = |problem: String| DatasetTypeError::Template {
        key,
        problem,
        allowed: match allowed {
            ["system"] => "{system}",
            ["instruction"] => "{instruction}",
            _ => "{instruction}, {input}",
        },
    };
    let mut rest = template;
    let mut seen: Vec<&str> = Vec::new();
    while let Some(i) = rest.find(['{', '}']) {
        let (_, tail) = rest.split_at(i);
        if let Some(after) = tail.strip_prefix("{{").or_else(|| tail.strip_prefix("}}")) {
            rest = after;
            continue;
        }
        if tail.starts_with('}') {
            return Err(err("a single `}` outside a placeholder".into()));
        }
        let close = tail
            .find('}')
            .ok_or_else(|| err("a `{` without its `}`".into()))?;
        let name = tail.get(1..close).unwrap_or_default();
        if !allowed.contains(&name) {
            let shown: String = name.chars().take(40).collect();
            return Err(err(format!("unknown placeholder `{{{shown}}}`")));
        }
        // Once each: a prompt is then at most the template plus the row's own text, so a 4 KB
        // template cannot multiply a 16 MB cell into gigabytes.
        if seen.contains(&name) {
            return Err(err(format!("placeholder `{{{name}}}` used more than once")));
        }
        seen.push(name);
        rest = tail.get(close.saturating_add(1)..).unwrap_or_default();
    }
    Ok(())
}

/// Fill a checked template: `{{`→`{`, `}}`→`}`, `{name}` → its value (Python's `str.format`).
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len().saturating_add(64));
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        if let Some(after) = tail.strip_prefix("{{") {
            out.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push('}');
            rest = after;
        } else if let Some(close) = tail.find('}') {
            let name = tail.get(1..close).unwrap_or_default();
            if let Some((_, v)) = values.iter().find(|(k, _)| *k == name) {
                out.push_str(v);
            }
            rest = tail.get(close.saturating_add(1)..).unwrap_or_default();
        } else {
            out.push_str(tail);
            rest = "";
        }
    }
    out.push_str(rest);
    out
}

impl DatasetType {
    /// Parse and validate a `dataset_type` JSON value.
    pub fn from_value(value: &Value) -> Result<Self, DatasetTypeError> {
        match value {
            Value::String(s) => match s.as_str() {
                "instruct" => Ok(Self::Instruct),
                "pretrain" => Ok(Self::Pretrain),
                "alpaca" => Ok(Self::Alpaca),
                other => Err(DatasetTypeError::Unknown(format!(
                    "\"{}\"",
                    other.chars().take(40).collect::<String>()
                ))),
            },
            Value::Object(map) => Self::custom_from(map).map(|c| Self::Custom(Box::new(c))),
            other => Err(DatasetTypeError::Unknown(
                crate::dataset::json_type(other).to_owned(),
            )),
        }
    }

    fn custom_from(map: &Map<String, Value>) -> Result<CustomType, DatasetTypeError> {
        let mut c = CustomType::default();
        for (key, value) in map {
            let slot = match key.as_str() {
                "field" => &mut c.field,
                "field_input" => &mut c.field_input,
                "field_instruction" => &mut c.field_instruction,
                "field_output" => &mut c.field_output,
                "field_system" => &mut c.field_system,
                "format" => &mut c.format,
                "no_input_format" => &mut c.no_input_format,
                "system_format" => &mut c.system_format,
                "system_prompt" => &mut c.system_prompt,
                other => {
                    return Err(DatasetTypeError::UnknownKey(
                        other.chars().take(64).collect(),
                    ));
                }
            };
            let Value::String(s) = value else {
                return Err(DatasetTypeError::NotAString(key.clone()));
            };
            // Column names must name something; templates and prompts may be empty.
            if key.starts_with("field") && s.is_empty() {
                return Err(DatasetTypeError::NotAString(key.clone()));
            }
            *slot = Some(s.clone());
        }
        for (key, value) in c.entries() {
            if value.as_ref().is_some_and(|v| v.len() > MAX_TEMPLATE_BYTES) {
                return Err(DatasetTypeError::TooLong(key));
            }
        }
        if c.field.is_some()
            && let Some((key, _)) = c
                .entries()
                .into_iter()
                .find(|(k, v)| *k != "field" && v.is_some())
        {
            return Err(DatasetTypeError::Mixed(key));
        }
        if let Some(t) = &c.format {
            check_template("format", t, &["instruction", "input"])?;
        }
        if let Some(t) = &c.no_input_format {
            check_template("no_input_format", t, &["instruction"])?;
        }
        if let Some(t) = &c.system_format {
            check_template("system_format", t, &["system"])?;
        }
        Ok(c)
    }

    /// The canonical JSON of the module docs (sorted keys, no whitespace).
    pub fn canonical_json(&self) -> String {
        match self {
            Self::Instruct => "\"instruct\"".into(),
            Self::Pretrain => "\"pretrain\"".into(),
            Self::Alpaca => "\"alpaca\"".into(),
            Self::Custom(c) => {
                let sorted: BTreeMap<&str, &str> = c
                    .entries()
                    .into_iter()
                    .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
                    .collect();
                serde_json::to_string(&sorted).unwrap_or_default()
            }
        }
    }

    /// `keccak256` of [`DatasetType::canonical_json`]: what a request signature binds.
    pub fn hash(&self) -> B256 {
        keccak256(self.canonical_json().as_bytes())
    }

    /// The counting rule the fee uses for records of this type: the formatted prompt and the output
    /// once a template applies ([`CountRule::WithInstruction`]: the prompt is the record's
    /// `instruction`, it has no `input`), 0G's field sum otherwise.
    pub fn count_rule(this: Option<&Self>) -> CountRule {
        match this {
            Some(Self::Alpaca) => CountRule::WithInstruction,
            Some(Self::Custom(c)) if c.field.is_none() => CountRule::WithInstruction,
            _ => CountRule::Official,
        }
    }

    /// Turn one row (a JSON object: a JSONL line, a JSON array element, a CSV row, a Parquet or
    /// Arrow row) into the record the script reads.
    pub fn record(&self, row: Value) -> Result<Record, RecordError> {
        match self {
            Self::Instruct => match record_from_value(row)? {
                Record::Text(_) => Err(RecordError::TypeMismatch(
                    "dataset_type \"instruct\" takes instruction or messages records, found a `text` record",
                )),
                rec => Ok(rec),
            },
            Self::Pretrain => {
                let mut map = object(row)?;
                let text =
                    take_string(&mut map, "text")?.ok_or(RecordError::MissingField("text"))?;
                Ok(Record::Text(text))
            }
            Self::Alpaca => templated(
                row,
                &CustomType {
                    format: Some(ALPACA_FORMAT.into()),
                    no_input_format: Some(ALPACA_NO_INPUT_FORMAT.into()),
                    ..CustomType::default()
                },
            ),
            Self::Custom(c) => match &c.field {
                Some(field) => {
                    let mut map = object(row)?;
                    let text = take_column(&mut map, field)?
                        .ok_or_else(|| RecordError::MissingColumn(field.clone()))?;
                    Ok(Record::Text(text))
                }
                None => templated(row, c),
            },
        }
    }
}

fn object(row: Value) -> Result<Map<String, Value>, RecordError> {
    match row {
        Value::Object(map) => Ok(map),
        other => Err(RecordError::NotAnObject(crate::dataset::json_type(&other))),
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
            found: crate::dataset::json_type(&other),
        }),
    }
}

/// A column's string; `None` when absent. `null` counts as absent.
fn take_column(map: &mut Map<String, Value>, key: &str) -> Result<Option<String>, RecordError> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(RecordError::NotAString {
            field: key.chars().take(64).collect(),
            found: crate::dataset::json_type(&other),
        }),
    }
}

fn templated(row: Value, c: &CustomType) -> Result<Record, RecordError> {
    let mut map = object(row)?;
    let column = |v: &Option<String>, default: &'static str| -> String {
        v.clone().unwrap_or_else(|| default.to_owned())
    };
    let f_instruction = column(&c.field_instruction, "instruction");
    let f_input = column(&c.field_input, "input");
    let f_output = column(&c.field_output, "output");
    let f_system = column(&c.field_system, "system");
    let instruction = take_column(&mut map, &f_instruction)?
        .ok_or_else(|| RecordError::MissingColumn(f_instruction.clone()))?;
    let output = take_column(&mut map, &f_output)?
        .ok_or_else(|| RecordError::MissingColumn(f_output.clone()))?;
    let input = take_column(&mut map, &f_input)?.unwrap_or_default();
    let row_system = take_column(&mut map, &f_system)?.filter(|s| !s.is_empty());
    let system = row_system
        .or_else(|| c.system_prompt.clone())
        .unwrap_or_default();
    let mut prompt = String::new();
    if !system.is_empty() {
        let format = c.system_format.as_deref().unwrap_or("{system}");
        prompt.push_str(&fill(format, &[("system", &system)]));
    }
    if input.is_empty() {
        let format = c.no_input_format.as_deref().unwrap_or("{instruction} ");
        prompt.push_str(&fill(format, &[("instruction", &instruction)]));
    } else {
        let format = c.format.as_deref().unwrap_or("{instruction} {input} ");
        prompt.push_str(&fill(
            format,
            &[("instruction", &instruction), ("input", &input)],
        ));
    }
    Ok(Record::Instruction {
        instruction: prompt,
        input: None,
        output,
    })
}

/// The record of a row under an optional `dataset_type` (absent: the three shapes of
/// [`crate::dataset`]).
pub fn shape(ty: Option<&DatasetType>, row: Value) -> Result<Record, RecordError> {
    match ty {
        Some(ty) => ty.record(row),
        None => record_from_value(row),
    }
}

/// From a command line: a JSON object (`{"field_instruction": "q", ...}`), or a name with or without
/// JSON quotes (`alpaca`, `"alpaca"`).
impl std::str::FromStr for DatasetType {
    type Err = DatasetTypeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let value = if s.starts_with('{') || s.starts_with('"') {
            serde_json::from_str(s)
                .map_err(|e| DatasetTypeError::Unknown(format!("invalid JSON ({e})")))?
        } else {
            Value::String(s.to_owned())
        };
        Self::from_value(&value)
    }
}

impl Serialize for DatasetType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value: Value =
            serde_json::from_str(&self.canonical_json()).map_err(serde::ser::Error::custom)?;
        value.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for DatasetType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_value(&value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ty(v: Value) -> Result<DatasetType, DatasetTypeError> {
        DatasetType::from_value(&v)
    }

    #[test]
    fn seed_003_example_formats_like_axolotl() {
        let t = ty(
            json!({"system_prompt": "you are helpful", "system_format": "{system}",
            "field_system": "text", "field_instruction": "instruction", "field_input": "input",
            "field_output": "output"}),
        )
        .unwrap();
        let rec = t
            .record(json!({"instruction": "Add", "input": "1 2", "output": "3"}))
            .unwrap();
        assert_eq!(
            rec,
            Record::Instruction {
                instruction: "you are helpfulAdd 1 2 ".into(),
                input: None,
                output: "3".into()
            }
        );
        // The row's own system text wins; an empty input takes no_input_format.
        let rec = t
            .record(json!({"instruction": "Hi", "input": "", "output": "o", "text": "SYS "}))
            .unwrap();
        assert_eq!(rec.fields().instruction, Some("SYS Hi "));
        assert_eq!(
            DatasetType::count_rule(Some(&t)),
            CountRule::WithInstruction
        );
        assert_eq!(DatasetType::count_rule(None), CountRule::Official);
    }

    #[test]
    fn alpaca_and_named_types() {
        let rec = DatasetType::Alpaca
            .record(json!({"instruction": "I", "input": "", "output": "O"}))
            .unwrap();
        assert_eq!(
            rec.fields().instruction.unwrap(),
            ALPACA_NO_INPUT_FORMAT.replace("{instruction}", "I")
        );
        assert!(matches!(
            DatasetType::Instruct.record(json!({"text": "t"})),
            Err(RecordError::TypeMismatch(_))
        ));
        assert_eq!(
            DatasetType::Pretrain.record(json!({"text": "t", "id": 1})),
            Ok(Record::Text("t".into()))
        );
        let field = ty(json!({"field": "body"})).unwrap();
        assert_eq!(
            field.record(json!({"body": "b"})),
            Ok(Record::Text("b".into()))
        );
        assert_eq!(
            field.record(json!({"text": "b"})),
            Err(RecordError::MissingColumn("body".into()))
        );
    }

    #[test]
    fn bad_types_are_refused_naming_the_problem() {
        let e = ty(json!({"field_instruction": "q", "fromat": "x"})).unwrap_err();
        assert_eq!(e, DatasetTypeError::UnknownKey("fromat".into()));
        assert!(e.to_string().contains("no_input_format"), "{e}");
        assert!(matches!(
            ty(json!({"format": "{instruction} {output}"})),
            Err(DatasetTypeError::Template { key: "format", .. })
        ));
        assert!(matches!(
            ty(json!({"no_input_format": "{input}"})),
            Err(DatasetTypeError::Template { .. })
        ));
        assert!(matches!(
            ty(json!({"format": "{instruction"})),
            Err(DatasetTypeError::Template { .. })
        ));
        // No attribute access (Python's format-string escape), no blow-up by repetition.
        for bad in [
            "{instruction.__class__}",
            "{instruction[0]}",
            "{instruction!r}",
            "{instruction:>99999}",
        ] {
            assert!(
                matches!(
                    ty(json!({"format": bad})),
                    Err(DatasetTypeError::Template { .. })
                ),
                "{bad}"
            );
        }
        let e = ty(json!({"format": "{instruction}{input}{instruction}"})).unwrap_err();
        assert!(e.to_string().contains("more than once"), "{e}");
        assert_eq!(
            ty(json!({"field": "t", "format": "{instruction}"})),
            Err(DatasetTypeError::Mixed("format"))
        );
        assert_eq!(
            ty(json!("chat")),
            Err(DatasetTypeError::Unknown("\"chat\"".into()))
        );
        assert_eq!(
            ty(json!({"field_output": 3})),
            Err(DatasetTypeError::NotAString("field_output".into()))
        );
    }

    #[test]
    fn braces_and_canonical_form() {
        let t = ty(json!({"no_input_format": "{{json}}: {instruction}", "format": "{instruction}|{input}"}))
            .unwrap();
        let rec = t
            .record(json!({"instruction": "{x}", "output": "o"}))
            .unwrap();
        assert_eq!(rec.fields().instruction, Some("{json}: {x}"));
        assert_eq!(
            t.canonical_json(),
            r#"{"format":"{instruction}|{input}","no_input_format":"{{json}}: {instruction}"}"#
        );
        let again: DatasetType = serde_json::from_str(&t.canonical_json()).unwrap();
        assert_eq!((again.hash(), again), (t.hash(), t.clone()));
        assert_ne!(t.hash(), DatasetType::Alpaca.hash());
        assert_eq!(
            serde_json::to_string(&DatasetType::Alpaca).unwrap(),
            "\"alpaca\""
        );
        assert_eq!("alpaca".parse(), Ok(DatasetType::Alpaca));
        assert_eq!("\"pretrain\"".parse(), Ok(DatasetType::Pretrain));
        let field: DatasetType = r#"{"field": "body"}"#.parse().unwrap();
        assert_eq!(field.canonical_json(), r#"{"field":"body"}"#);
        assert!("{oops".parse::<DatasetType>().is_err());
    }
}
