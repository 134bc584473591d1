//! The token-counting rule behind the fee (PROTOCOL.md §3), with the base model's own tokenizer.
//!
//! # What is counted
//!
//! For each record, after the `messages` conversion of [`crate::dataset`] (instruction = the last user
//! message, output = the last assistant message):
//!
//! - [`CountRule::Official`] (0G's counter, the one the fee uses): the sum of
//!   `len(encode(field))` over the fields `text`, `input` and `output` **that the record has**.
//!   `instruction` is not counted. A chat record therefore counts only its last assistant message.
//! - [`CountRule::WithInstruction`] (documented variant): the same plus `instruction`.
//!
//! Each field is encoded on its own **with the tokenizer's special tokens** (0G's Python counter calls
//! `AutoTokenizer.encode(field)`, whose default is `add_special_tokens=True`; for MiniLM every field
//! counts `[CLS]` and `[SEP]`, so an empty `input` is 2 tokens; SmolLM2 adds none). Truncation and
//! padding configured in `tokenizer.json` are **disabled** before counting (MiniLM's file truncates
//! to 128 tokens, which would undercount), as `encode` in Python does not truncate either.
//! The differential test `tests/tokens_python_differential.rs` checks these counts against Python
//! `transformers` on both models of the project's cache.
//!
//! Records are read in batches of [`BATCH_RECORDS`] and each batch is counted in parallel with rayon:
//! memory stays bounded by one batch whatever the dataset size.
//!
//! # Example
//!
//! ```no_run
//! use sealtune_protocol::dataset::ReadLimits;
//! use sealtune_protocol::tokens::{CountRule, TokenCounter};
//!
//! let counter = TokenCounter::from_file("tokenizer.json")?;
//! let official = counter.count_dataset("dataset.jsonl".as_ref(), CountRule::Official, &ReadLimits::default())?;
//! println!("{} records, {} tokens", official.records, official.tokens);
//! # Ok::<(), sealtune_protocol::tokens::TokenError>(())
//! ```

use std::path::Path;

use rayon::prelude::*;
use tokenizers::Tokenizer;

use crate::dataset::{self, DatasetError, Location, ReadLimits, Record};

/// Records per parallel batch in [`TokenCounter::count_dataset`].
pub const BATCH_RECORDS: usize = 2048;

/// Which fields of a record are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CountRule {
    /// 0G's counter: `text`, `input`, `output` (what the fee uses, what the official tools predict).
    #[default]
    Official,
    /// `text`, `input`, `output` and `instruction`.
    WithInstruction,
}

/// Why tokens could not be counted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The tokenizer file cannot be loaded or configured.
    #[error("loading the tokenizer: {0}")]
    Load(String),
    /// The tokenizer failed on a record.
    #[error("{location}: tokenizing: {message}")]
    Encode {
        /// The record (`line 0` when counting records outside a file).
        location: Location,
        /// The tokenizer's error.
        message: String,
    },
    /// The dataset cannot be read.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
}

/// The result of counting a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenCount {
    /// Records counted.
    pub records: u64,
    /// Tokens under the rule used.
    pub tokens: u64,
}

/// A tokenizer set up for counting (truncation and padding off).
#[derive(Debug, Clone)]
pub struct TokenCounter {
    tokenizer: Tokenizer,
}

impl TokenCounter {
    /// Load a `tokenizer.json` and disable its truncation and padding.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TokenError> {
        let path = path.as_ref();
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| TokenError::Load(format!("{}: {e}", path.display())))?;
        Self::from_tokenizer(tokenizer)
    }

    /// Wrap a tokenizer, disabling its truncation and padding.
    pub fn from_tokenizer(mut tokenizer: Tokenizer) -> Result<Self, TokenError> {
        tokenizer
            .with_truncation(None)
            .map_err(|e| TokenError::Load(e.to_string()))?;
        tokenizer.with_padding(None);
        Ok(Self { tokenizer })
    }

    /// Tokens of one text, special tokens included (like Python's `tokenizer.encode(text)`).
    pub fn count_text(&self, text: &str) -> Result<u64, String> {
        self.tokenizer
            .encode_fast(text, true)
            .map(|e| e.len() as u64)
            .map_err(|e| e.to_string())
    }

    /// Tokens of one record under `rule`.
    pub fn count_record(&self, record: &Record, rule: CountRule) -> Result<u64, String> {
        let fields = record.fields();
        let instruction = match rule {
            CountRule::Official => None,
            CountRule::WithInstruction => fields.instruction,
        };
        [fields.text, fields.input, fields.output, instruction]
            .into_iter()
            .flatten()
            .try_fold(0u64, |sum, text| {
                Ok(sum.saturating_add(self.count_text(text)?))
            })
    }

    /// Tokens of a batch of located records, counted in parallel.
    fn count_batch(
        &self,
        batch: &[(Location, Record)],
        rule: CountRule,
    ) -> Result<u64, TokenError> {
        batch
            .par_iter()
            .map(|(location, record)| {
                self.count_record(record, rule)
                    .map_err(|message| TokenError::Encode {
                        location: location.clone(),
                        message,
                    })
            })
            .try_reduce(|| 0, |a, b| Ok(a.saturating_add(b)))
    }

    /// Tokens of records already in memory, counted in parallel.
    pub fn count_records(&self, records: &[Record], rule: CountRule) -> Result<u64, TokenError> {
        records
            .par_iter()
            .enumerate()
            .map(|(i, record)| {
                self.count_record(record, rule)
                    .map_err(|message| TokenError::Encode {
                        location: Location {
                            entry: None,
                            line: i as u64 + 1,
                        },
                        message,
                    })
            })
            .try_reduce(|| 0, |a, b| Ok(a.saturating_add(b)))
    }

    /// Count a dataset file (JSONL or zip, see [`crate::dataset::read_dataset`]) in batches of
    /// [`BATCH_RECORDS`] records, each counted in parallel.
    pub fn count_dataset(
        &self,
        path: &Path,
        rule: CountRule,
        limits: &ReadLimits,
    ) -> Result<TokenCount, TokenError> {
        let mut batch: Vec<(Location, Record)> = Vec::with_capacity(BATCH_RECORDS);
        let mut tokens = 0u64;
        let summary = dataset::read_dataset(path, limits, |location, record| {
            batch.push((location.clone(), record));
            if batch.len() >= BATCH_RECORDS {
                tokens = tokens.saturating_add(self.count_batch(&batch, rule)?);
                batch.clear();
            }
            Ok::<(), TokenError>(())
        })?;
        tokens = tokens.saturating_add(self.count_batch(&batch, rule)?);
        Ok(TokenCount {
            records: summary.records,
            tokens,
        })
    }

    /// The underlying tokenizer (truncation and padding disabled).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
}
