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
//! # Count-only path
//!
//! [`TokenCounter::count_text`] runs the tokenizer's own pipeline (added-token extraction,
//! normalizer, pre-tokenizer, model) but never builds an `Encoding`: it sums the token counts of the
//! pre-tokens, memoising the model's count per distinct pre-token in a per-thread cache
//! ([`WORD_CACHE_ENTRIES`] at most, then cleared), and adds the post-processor's special tokens
//! (`PostProcessor::added_tokens`). The counts equal `encode(text).len()`: pre-tokens are tokenized
//! independently by every model `tokenizers` has, and the cache is bypassed for BPE with dropout
//! (non-deterministic). `tests/tokens_python_differential.rs` checks the counts against Python
//! `transformers` and against `encode_fast` on both models.
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

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use tokenizers::{
    Model, ModelWrapper, OffsetReferential, OffsetType, PostProcessor, PreTokenizer, Tokenizer,
};

use crate::dataset::{self, Columnar, DatasetError, DatasetSummary, Location, ReadLimits, Record};
use crate::dataset_type::DatasetType;

/// Records per parallel batch in [`TokenCounter::count_dataset`].
pub const BATCH_RECORDS: usize = 2048;

/// Distinct pre-tokens whose count a thread remembers before it clears its cache.
pub const WORD_CACHE_ENTRIES: usize = 1 << 18;

/// Pre-tokens longer than this (in bytes) are counted without the cache.
const WORD_CACHE_MAX_LEN: usize = 64;

/// Gives every [`TokenCounter`] its own id, so that a thread's cache never serves another tokenizer.
static NEXT_COUNTER_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// `(counter id, pre-token → model token count)` for the counter this thread used last.
    static WORD_CACHE: RefCell<(u64, HashMap<Box<str>, u32>)> = RefCell::new((0, HashMap::new()));
}

pub use crate::dataset::CountRule;

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
    /// Key of this tokenizer in the per-thread word cache.
    id: u64,
    /// Whether model counts of pre-tokens may be memoised (deterministic model).
    cacheable: bool,
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
        let cacheable = match tokenizer.get_model() {
            ModelWrapper::BPE(bpe) => bpe.dropout.is_none(),
            _ => true,
        };
        Ok(Self {
            tokenizer,
            id: NEXT_COUNTER_ID.fetch_add(1, Ordering::Relaxed),
            cacheable,
        })
    }

    /// Tokens of one text, special tokens included (like Python's `tokenizer.encode(text)`), by the
    /// count-only path of the module docs.
    pub fn count_text(&self, text: &str) -> Result<u64, String> {
        let tk = &self.tokenizer;
        let mut pretokenized = tk
            .get_added_vocabulary()
            .extract_and_normalize(tk.get_normalizer(), text);
        if let Some(pre) = tk.get_pre_tokenizer() {
            pre.pre_tokenize(&mut pretokenized)
                .map_err(|e| e.to_string())?;
        }
        let model = tk.get_model();
        let splits = pretokenized.get_splits(OffsetReferential::Normalized, OffsetType::None);
        let mut count = 0u64;
        WORD_CACHE.with_borrow_mut(|(owner, cache)| {
            if *owner != self.id {
                cache.clear();
                *owner = self.id;
            }
            for (piece, _, tokens) in splits {
                let n = match tokens {
                    // An added token, already extracted.
                    Some(tokens) => tokens.len() as u64,
                    None if self.cacheable && piece.len() <= WORD_CACHE_MAX_LEN => {
                        match cache.get(piece) {
                            Some(&n) => u64::from(n),
                            None => {
                                let n = model.tokenize(piece).map_err(|e| e.to_string())?.len();
                                if cache.len() >= WORD_CACHE_ENTRIES {
                                    cache.clear();
                                }
                                let n = u32::try_from(n).unwrap_or(u32::MAX);
                                cache.insert(piece.into(), n);
                                u64::from(n)
                            }
                        }
                    }
                    None => model.tokenize(piece).map_err(|e| e.to_string())?.len() as u64,
                };
                count = count.saturating_add(n);
            }
            Ok::<(), String>(())
        })?;
        let special = tk.get_post_processor().map_or(0, |p| p.added_tokens(false));
        Ok(count.saturating_add(special as u64))
    }

    /// Tokens of one text by a full `encode_fast` (builds the `Encoding`): the reference the
    /// count-only [`TokenCounter::count_text`] is tested against.
    pub fn count_text_by_encoding(&self, text: &str) -> Result<u64, String> {
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
                            unit: dataset::Unit::Line,
                            line: (i as u64).saturating_add(1),
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
        self.count_with(rule, |f| dataset::read_dataset(path, limits, f))
    }

    /// Count a dataset file in any format under a `dataset_type`, by the rule the fee uses for it
    /// ([`DatasetType::count_rule`]), reading it with [`dataset::read_dataset_with`]: the reader the
    /// worker's preparation uses, so what is counted is what is trained.
    pub fn count_dataset_typed(
        &self,
        path: &Path,
        ty: Option<&DatasetType>,
        limits: &ReadLimits,
        columnar: &dyn Columnar,
    ) -> Result<TokenCount, TokenError> {
        let rule = DatasetType::count_rule(ty);
        self.count_with(rule, |f| {
            dataset::read_dataset_with(path, ty, limits, columnar, f)
        })
    }

    /// Count the records a reader streams (`read` calls its argument once per record), in batches
    /// of [`BATCH_RECORDS`] counted in parallel: memory stays bounded by one batch.
    pub fn count_with<R>(&self, rule: CountRule, read: R) -> Result<TokenCount, TokenError>
    where
        R: FnOnce(
            &mut dyn FnMut(&Location, Record) -> Result<(), TokenError>,
        ) -> Result<DatasetSummary, TokenError>,
    {
        let mut batch: Vec<(Location, Record)> = Vec::with_capacity(BATCH_RECORDS);
        let mut tokens = 0u64;
        let summary = read(&mut |location, record| {
            batch.push((location.clone(), record));
            if batch.len() >= BATCH_RECORDS {
                tokens = tokens.saturating_add(self.count_batch(&batch, rule)?);
                batch.clear();
            }
            Ok(())
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
