//! Token counting from Python with `protocol`'s rule (the fee's), through the Rust `tokenizers` crate.

use std::path::PathBuf;

use pyo3::prelude::*;
use sealtune_protocol::dataset::{ReadLimits, parse_record};
use sealtune_protocol::tokens::{self, CountRule};

use crate::error::NativeError;

fn rule(name: &str) -> Result<CountRule, NativeError> {
    match name {
        "official" => Ok(CountRule::Official),
        "with_instruction" => Ok(CountRule::WithInstruction),
        other => Err(NativeError::InvalidArgument(format!(
            "rule must be \"official\" or \"with_instruction\", not {other:?}"
        ))),
    }
}

/// A tokenizer set up for counting (`sealtune._native.TokenCounter`): truncation and padding off,
/// special tokens counted, as `protocol::tokens` documents.
#[pyclass(module = "sealtune._native", frozen)]
pub struct TokenCounter {
    inner: tokens::TokenCounter,
}

#[pymethods]
impl TokenCounter {
    /// Load a `tokenizer.json` file.
    #[new]
    fn new(path: PathBuf) -> PyResult<Self> {
        Ok(TokenCounter {
            inner: tokens::TokenCounter::from_file(&path).map_err(NativeError::from)?,
        })
    }

    /// From the JSON text of a tokenizer (a fast tokenizer's `backend_tokenizer.to_str()`).
    #[staticmethod]
    fn from_json(json: &str) -> PyResult<Self> {
        let tokenizer: tokenizers::Tokenizer = json
            .parse()
            .map_err(|e| NativeError::InvalidArgument(format!("not a tokenizer.json: {e}")))?;
        Ok(TokenCounter {
            inner: tokens::TokenCounter::from_tokenizer(tokenizer).map_err(NativeError::from)?,
        })
    }

    /// Count a dataset file (JSONL or zip of JSONL): returns `(records, tokens)`. Runs without the GIL,
    /// in parallel.
    #[pyo3(signature = (path, rule="official", max_line_bytes=None))]
    fn count_file(
        &self,
        py: Python<'_>,
        path: PathBuf,
        rule: &str,
        max_line_bytes: Option<usize>,
    ) -> PyResult<(u64, u64)> {
        let rule = self::rule(rule)?;
        let mut limits = ReadLimits::default();
        if let Some(max) = max_line_bytes {
            limits.max_line_bytes = max;
        }
        let count = py
            .detach(|| self.inner.count_dataset(&path, rule, &limits))
            .map_err(NativeError::from)?;
        Ok((count.records, count.tokens))
    }

    /// Count records given as JSON texts (one record each, as in a JSONL line): returns the total.
    /// Errors name the record by its 1-based position.
    #[pyo3(signature = (records, rule="official"))]
    fn count_json_records(
        &self,
        py: Python<'_>,
        records: Vec<String>,
        rule: &str,
    ) -> PyResult<u64> {
        let rule = self::rule(rule)?;
        let parsed = records
            .iter()
            .enumerate()
            .map(|(i, line)| {
                parse_record(line.as_bytes())
                    .map_err(|e| NativeError::Record(format!("record {}: {e}", i + 1)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(py
            .detach(|| self.inner.count_records(&parsed, rule))
            .map_err(NativeError::from)?)
    }

    /// Tokens of one text, special tokens included (like `tokenizer.encode(text)`).
    fn count_text(&self, text: &str) -> PyResult<u64> {
        Ok(self
            .inner
            .count_text(text)
            .map_err(NativeError::InvalidArgument)?)
    }
}
