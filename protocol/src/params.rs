//! The stock LoRA script's `trainingParams` (PROTOCOL.md §3): the five 0G keys, each in range, and
//! sealtune's optional LoRA options within the ranges the provider declares for the model.
//!
//! `trainingParams` travels as a JSON *string* inside the create-task body; the worker validates it
//! before anything is fetched or charged ([`LoraParams::parse_for`] with the model's
//! [`LoraRanges`]), and the customer CLI validates it before signing ([`LoraParams::parse`]: the
//! rules that hold for every provider). This module is the one place the rules are written on the
//! Rust side; the stock script (`scripts/training/lora_causal_lm.py`, `load_params`) checks the
//! same provider-independent rules again, as 0G's scripts do.
//!
//! The options, all optional, at the top level or inside OPEA's `lora_config` object (seed 004),
//! never in both: `r` (integer), `lora_alpha` (integer), `lora_dropout` (number, `0 ≤ d < 1`),
//! `target_modules` (module names); and `merge_adapter` (boolean, top level): deliver the adapter
//! merged into the base weights. None of them changes the fee (tokens × price × epochs).
//!
//! ```
//! use sealtune_protocol::params::{LoraParams, LoraRanges, ParamsError};
//! let p = LoraParams::parse(r#"{"neftune_noise_alpha":5,"num_train_epochs":1,
//!     "per_device_train_batch_size":2,"learning_rate":0.0002,"max_steps":-1}"#)?;
//! assert_eq!(p.num_train_epochs, 1);
//! assert!(matches!(LoraParams::parse(r#"{"num_train_epochs":1}"#), Err(ParamsError::Missing(_))));
//! let opea = r#"{"neftune_noise_alpha":0,"num_train_epochs":1,"per_device_train_batch_size":2,
//!     "learning_rate":0.0002,"max_steps":-1,"lora_config":{"r":16,"lora_alpha":32},"merge_adapter":true}"#;
//! let p = LoraParams::parse_for(opea, &LoraRanges::default())?;
//! assert_eq!((p.lora.r, p.merge_adapter), (Some(16), true));
//! let narrow = LoraRanges { r: [1, 8], ..LoraRanges::default() };
//! assert!(matches!(LoraParams::parse_for(opea, &narrow), Err(ParamsError::NotOffered { key: "r", .. })));
//! # Ok::<(), ParamsError>(())
//! ```
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The five keys, in the order 0G documents them: all required.
pub const LORA_KEYS: [&str; 5] = [
    "neftune_noise_alpha",
    "num_train_epochs",
    "per_device_train_batch_size",
    "learning_rate",
    "max_steps",
];

/// The LoRA options (optional), at the top level or inside [`LORA_CONFIG`].
pub const LORA_OPTION_KEYS: [&str; 4] = ["r", "lora_alpha", "lora_dropout", "target_modules"];

/// OPEA's name for the object holding the LoRA options (seed 004).
pub const LORA_CONFIG: &str = "lora_config";

/// The option asking for the adapter merged into the base weights (the name of OPEA's endpoint).
pub const MERGE_ADAPTER: &str = "merge_adapter";

/// Provider-independent ceilings (the stock script enforces the same): a provider may declare
/// narrower ranges, never wider ones.
pub const MAX_R: u32 = 256;
/// The largest `lora_alpha` any provider may allow.
pub const MAX_LORA_ALPHA: u32 = 512;
/// The most `target_modules` names.
pub const MAX_TARGET_MODULES: usize = 16;
/// The longest module name.
pub const MAX_MODULE_NAME: usize = 64;

/// Every key `trainingParams` may hold, for error messages.
fn allowed_keys() -> String {
    format!(
        "{} (required); {}, {LORA_CONFIG} {{{}}}, {MERGE_ADAPTER} (optional)",
        LORA_KEYS.join(", "),
        LORA_OPTION_KEYS.join(", "),
        LORA_OPTION_KEYS.join(", ")
    )
}

/// Why `trainingParams` was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamsError {
    /// Not a JSON object.
    #[error("trainingParams is not a JSON object: {0}")]
    NotObject(String),
    /// An unknown key (at the top level, or inside `lora_config` when it names the object).
    #[error("trainingParams has an unknown key `{0}`; the allowed keys are {keys}", keys = allowed_keys())]
    Unknown(String),
    /// A missing key.
    #[error("trainingParams lacks `{0}`; all of {keys} are required", keys = LORA_KEYS.join(", "))]
    Missing(&'static str),
    /// A LoRA option given both at the top level and inside `lora_config`.
    #[error(
        "trainingParams `{0}` is given both at the top level and inside `lora_config`: give it once"
    )]
    Twice(&'static str),
    /// A value out of range or of the wrong type.
    #[error("trainingParams `{key}` = {value}: {rule}")]
    Range {
        /// The key.
        key: &'static str,
        /// The value as sent (cut to 40 characters).
        value: String,
        /// The rule.
        rule: &'static str,
    },
    /// A LoRA option outside the ranges the provider declares for the model.
    #[error(
        "trainingParams `{key}` = {value}: this provider allows {allowed} for this model (its declared `lora_ranges`, shown by GET /v1/config)"
    )]
    NotOffered {
        /// The key.
        key: &'static str,
        /// The value as sent (cut to 40 characters).
        value: String,
        /// What the provider allows.
        allowed: String,
    },
}

/// The LoRA options a customer set; `None`: the script's default (r 8, alpha 16, dropout 0.05,
/// the attention projections).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoraOptions {
    /// The rank.
    pub r: Option<u32>,
    /// The scaling numerator (`lora_alpha / r` scales the update).
    pub lora_alpha: Option<u32>,
    /// Dropout on the LoRA input.
    pub lora_dropout: Option<f64>,
    /// The module names the adapter wraps.
    pub target_modules: Option<Vec<String>>,
}

/// Validated LoRA training parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraParams {
    /// NEFTune noise alpha, 0–10.
    pub neftune_noise_alpha: f64,
    /// Epochs, 1–10.
    pub num_train_epochs: u64,
    /// Per-device batch size, 1–4.
    pub per_device_train_batch_size: u64,
    /// Learning rate, 1e-5…1e-3, written in decimal notation.
    pub learning_rate: f64,
    /// -1 (use epochs) or a positive step count.
    pub max_steps: i64,
    /// The LoRA options.
    pub lora: LoraOptions,
    /// Deliver the adapter merged into the base weights (a full model) instead of the adapter.
    pub merge_adapter: bool,
}

/// The LoRA options a provider offers for one model (`lora_ranges` of a model entry in its config;
/// part of the measured configuration). Bounds are inclusive `[low, high]`. A model without a
/// declaration offers [`LoraRanges::default`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraRanges {
    /// `r`: default `[1, 64]`.
    pub r: [u32; 2],
    /// `lora_alpha`: default `[1, 128]`.
    pub lora_alpha: [u32; 2],
    /// `lora_dropout`: default `[0, 0.5]`.
    pub lora_dropout: [f64; 2],
    /// The module names `target_modules` may list: default the Llama-family projections.
    pub target_modules: Vec<String>,
    /// Whether `merge_adapter` may be asked: default `true`.
    pub merge: bool,
}

impl Default for LoraRanges {
    fn default() -> Self {
        LoraRanges {
            r: [1, 64],
            lora_alpha: [1, 128],
            lora_dropout: [0.0, 0.5],
            target_modules: [
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
            ]
            .map(String::from)
            .to_vec(),
            merge: true,
        }
    }
}

// Equality by the bits of the dropout bounds, so the measured document (which is `Eq`) can hold
// the ranges; the bounds are checked finite at config load ([`LoraRanges::problems`]).
impl PartialEq for LoraRanges {
    fn eq(&self, other: &Self) -> bool {
        self.r == other.r
            && self.lora_alpha == other.lora_alpha
            && self.lora_dropout.map(f64::to_bits) == other.lora_dropout.map(f64::to_bits)
            && self.target_modules == other.target_modules
            && self.merge == other.merge
    }
}
impl Eq for LoraRanges {}

impl LoraRanges {
    /// What is wrong with a declaration (empty: fine): a bound pair out of order or beyond the
    /// provider-independent ceilings, a module name that is not one.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let [lo, hi] = self.r;
        if !(1 <= lo && lo <= hi && hi <= MAX_R) {
            out.push(format!(
                "`r` must be [low, high] with 1 ≤ low ≤ high ≤ {MAX_R}, got [{lo}, {hi}]"
            ));
        }
        let [lo, hi] = self.lora_alpha;
        if !(1 <= lo && lo <= hi && hi <= MAX_LORA_ALPHA) {
            out.push(format!(
                "`lora_alpha` must be [low, high] with 1 ≤ low ≤ high ≤ {MAX_LORA_ALPHA}, got [{lo}, {hi}]"
            ));
        }
        let [lo, hi] = self.lora_dropout;
        if !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo <= hi && hi < 1.0) {
            out.push(format!(
                "`lora_dropout` must be [low, high] with 0 ≤ low ≤ high < 1, got [{lo}, {hi}]"
            ));
        }
        if let Err(e) = module_names(&self.target_modules) {
            out.push(format!("`target_modules`: {e}"));
        }
        out
    }
}

/// A list of module names: 1 to [`MAX_TARGET_MODULES`], each 1 to [`MAX_MODULE_NAME`] of
/// `[A-Za-z0-9_]`, no repeats.
fn module_names(names: &[String]) -> Result<(), &'static str> {
    const RULE: &str =
        "must be 1 to 16 distinct module names of letters, digits and `_` (at most 64 each)";
    let valid = |n: &String| {
        (1..=MAX_MODULE_NAME).contains(&n.len())
            && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    let distinct = names.iter().collect::<BTreeSet<_>>().len() == names.len();
    if (1..=MAX_TARGET_MODULES).contains(&names.len()) && distinct && names.iter().all(valid) {
        Ok(())
    } else {
        Err(RULE)
    }
}

/// `trainingParams` as its keys and raw JSON values.
type RawMap = BTreeMap<String, Box<RawValue>>;

fn range(key: &'static str, value: &str, rule: &'static str) -> ParamsError {
    ParamsError::Range {
        key,
        value: value.chars().take(40).collect(),
        rule,
    }
}

fn not_offered(key: &'static str, value: &str, allowed: String) -> ParamsError {
    ParamsError::NotOffered {
        key,
        value: value.chars().take(40).collect(),
        allowed,
    }
}

impl LoraParams {
    /// Parses and validates `trainingParams` under the rules that hold for every provider (the
    /// five keys in range, the LoRA options within the ceilings). A worker also checks the model's
    /// declared ranges: [`LoraParams::parse_for`].
    pub fn parse(text: &str) -> Result<LoraParams, ParamsError> {
        let map: RawMap =
            serde_json::from_str(text).map_err(|e| ParamsError::NotObject(e.to_string()))?;
        let known = |k: &str| {
            LORA_KEYS.contains(&k)
                || LORA_OPTION_KEYS.contains(&k)
                || k == LORA_CONFIG
                || k == MERGE_ADAPTER
        };
        if let Some(k) = map.keys().find(|k| !known(k)) {
            return Err(ParamsError::Unknown(k.chars().take(64).collect()));
        }
        let mut params = read_five(&map)?;
        params.lora = read_options(&map)?;
        params.merge_adapter = match map.get(MERGE_ADAPTER).map(|v| v.get()) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(range(MERGE_ADAPTER, other, "must be true or false")),
        };
        Ok(params)
    }

    /// [`LoraParams::parse`], then the LoRA options within the provider's `ranges` for the model.
    pub fn parse_for(text: &str, ranges: &LoraRanges) -> Result<LoraParams, ParamsError> {
        let params = LoraParams::parse(text)?;
        params.check_offered(ranges)?;
        Ok(params)
    }

    /// Whether the LoRA options are within the provider's `ranges` (an absent option always is:
    /// the script's default applies).
    pub fn check_offered(&self, ranges: &LoraRanges) -> Result<(), ParamsError> {
        let o = &self.lora;
        let span = |[lo, hi]: [u32; 2]| format!("{lo} to {hi}");
        if let Some(r) = o.r.filter(|r| !(ranges.r[0]..=ranges.r[1]).contains(r)) {
            return Err(not_offered("r", &r.to_string(), span(ranges.r)));
        }
        if let Some(a) = o
            .lora_alpha
            .filter(|a| !(ranges.lora_alpha[0]..=ranges.lora_alpha[1]).contains(a))
        {
            return Err(not_offered(
                "lora_alpha",
                &a.to_string(),
                span(ranges.lora_alpha),
            ));
        }
        let [lo, hi] = ranges.lora_dropout;
        if let Some(d) = o.lora_dropout.filter(|d| !(lo..=hi).contains(d)) {
            return Err(not_offered(
                "lora_dropout",
                &d.to_string(),
                format!("{lo} to {hi}"),
            ));
        }
        let offered = |m: &&String| ranges.target_modules.contains(m);
        if let Some(m) = o.target_modules.iter().flatten().find(|m| !offered(m)) {
            let allowed = format!("only the modules {}", ranges.target_modules.join(", "));
            return Err(not_offered("target_modules", m, allowed));
        }
        if self.merge_adapter && !ranges.merge {
            let allowed = "only the adapter (no merged model)".to_owned();
            return Err(not_offered(MERGE_ADAPTER, "true", allowed));
        }
        Ok(())
    }
}

/// The five 0G keys, each required and in range (the options left at their defaults).
fn read_five(map: &RawMap) -> Result<LoraParams, ParamsError> {
    let raw = |key: &'static str| -> Result<&str, ParamsError> {
        map.get(key)
            .map(|v| v.get())
            .ok_or(ParamsError::Missing(key))
    };
    let number = |key: &'static str, rule: &'static str| -> Result<(f64, &str), ParamsError> {
        let r = raw(key)?;
        let v: f64 = r.parse().map_err(|_| range(key, r, rule))?;
        if v.is_finite() {
            Ok((v, r))
        } else {
            Err(range(key, r, rule))
        }
    };
    let integer = |key: &'static str, rule: &'static str| -> Result<i64, ParamsError> {
        let r = raw(key)?;
        r.parse::<i64>().map_err(|_| range(key, r, rule))
    };

    const ALPHA: &str = "must be a number from 0 to 10";
    let (neftune_noise_alpha, r) = number("neftune_noise_alpha", ALPHA)?;
    if !(0.0..=10.0).contains(&neftune_noise_alpha) {
        return Err(range("neftune_noise_alpha", r, ALPHA));
    }
    const EPOCHS: &str = "must be an integer from 1 to 10";
    let epochs = integer("num_train_epochs", EPOCHS)?;
    if !(1..=10).contains(&epochs) {
        return Err(range("num_train_epochs", &epochs.to_string(), EPOCHS));
    }
    const BATCH: &str = "must be an integer from 1 to 4";
    let batch = integer("per_device_train_batch_size", BATCH)?;
    if !(1..=4).contains(&batch) {
        return Err(range(
            "per_device_train_batch_size",
            &batch.to_string(),
            BATCH,
        ));
    }
    const LR: &str = "must be a number from 0.00001 to 0.001 in decimal notation (no exponent)";
    let (learning_rate, r) = number("learning_rate", LR)?;
    if r.contains(['e', 'E']) || !(1e-5..=1e-3).contains(&learning_rate) {
        return Err(range("learning_rate", r, LR));
    }
    const STEPS: &str = "must be -1 or a positive integer";
    let max_steps = integer("max_steps", STEPS)?;
    if max_steps != -1 && max_steps < 1 {
        return Err(range("max_steps", &max_steps.to_string(), STEPS));
    }
    Ok(LoraParams {
        neftune_noise_alpha,
        num_train_epochs: epochs.unsigned_abs(),
        per_device_train_batch_size: batch.unsigned_abs(),
        learning_rate,
        max_steps,
        lora: LoraOptions::default(),
        merge_adapter: false,
    })
}

/// The LoRA options, from the top level or OPEA's `lora_config` object (never both), each within
/// the provider-independent ceilings.
fn read_options(map: &RawMap) -> Result<LoraOptions, ParamsError> {
    let nested: RawMap = match map.get(LORA_CONFIG) {
        None => RawMap::new(),
        Some(v) => serde_json::from_str(v.get()).map_err(|_| {
            range(
                LORA_CONFIG,
                v.get(),
                "must be an object of LoRA options (r, lora_alpha, lora_dropout, target_modules)",
            )
        })?,
    };
    if let Some(k) = nested
        .keys()
        .find(|k| !LORA_OPTION_KEYS.contains(&k.as_str()))
    {
        let k: String = k.chars().take(64).collect();
        return Err(ParamsError::Unknown(format!("{LORA_CONFIG}.{k}")));
    }
    let get = |key: &'static str| match (map.get(key), nested.get(key)) {
        (Some(_), Some(_)) => Err(ParamsError::Twice(key)),
        (top, inner) => Ok(top.or(inner).map(|v| v.get())),
    };
    let bounded =
        |key: &'static str, max: u32, rule: &'static str| -> Result<Option<u32>, ParamsError> {
            let Some(text) = get(key)? else {
                return Ok(None);
            };
            match text.parse::<u32>() {
                Ok(v) if (1..=max).contains(&v) => Ok(Some(v)),
                _ => Err(range(key, text, rule)),
            }
        };
    let r = bounded("r", MAX_R, "must be an integer from 1 to 256")?;
    let lora_alpha = bounded(
        "lora_alpha",
        MAX_LORA_ALPHA,
        "must be an integer from 1 to 512",
    )?;
    const DROPOUT: &str = "must be a number from 0 up to (not including) 1";
    let lora_dropout = match get("lora_dropout")? {
        None => None,
        Some(text) => match text.parse::<f64>() {
            Ok(d) if (0.0..1.0).contains(&d) => Some(d),
            _ => return Err(range("lora_dropout", text, DROPOUT)),
        },
    };
    let target_modules = match get("target_modules")? {
        None => None,
        Some(text) => {
            let names: Vec<String> = serde_json::from_str(text)
                .map_err(|_| range("target_modules", text, "must be a list of module names"))?;
            module_names(&names).map_err(|rule| range("target_modules", text, rule))?;
            Some(names)
        }
    };
    Ok(LoraOptions {
        r,
        lora_alpha,
        lora_dropout,
        target_modules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(key: &str, value: &str) -> String {
        let mut m: BTreeMap<&str, &str> = BTreeMap::from([
            ("neftune_noise_alpha", "5"),
            ("num_train_epochs", "3"),
            ("per_device_train_batch_size", "2"),
            ("learning_rate", "0.0002"),
            ("max_steps", "-1"),
        ]);
        m.insert(key, value);
        let body: Vec<String> = m
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        format!("{{{}}}", body.join(","))
    }

    #[test]
    fn accepts_the_documented_ranges() {
        for (k, v) in [
            ("neftune_noise_alpha", "0"),
            ("neftune_noise_alpha", "10"),
            ("num_train_epochs", "10"),
            ("per_device_train_batch_size", "4"),
            ("learning_rate", "0.00001"),
            ("learning_rate", "0.001"),
            ("max_steps", "7"),
        ] {
            LoraParams::parse(&with(k, v)).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
        }
    }

    #[test]
    fn refuses_everything_else_with_the_key_named() {
        for (k, v) in [
            ("neftune_noise_alpha", "10.5"),
            ("neftune_noise_alpha", "\"5\""),
            ("num_train_epochs", "0"),
            ("num_train_epochs", "1.5"),
            ("per_device_train_batch_size", "5"),
            ("learning_rate", "2e-4"),
            ("learning_rate", "0.01"),
            ("max_steps", "0"),
            ("max_steps", "-2"),
            ("max_steps", ""),
            ("bogus", "1"),
        ] {
            let e = LoraParams::parse(&with(k, v)).unwrap_err();
            assert!(e.to_string().contains(k), "{k}={v}: {e}");
        }
        assert!(matches!(
            LoraParams::parse("[1]"),
            Err(ParamsError::NotObject(_))
        ));
        assert!(matches!(
            LoraParams::parse("{"),
            Err(ParamsError::NotObject(_))
        ));
    }

    const FIVE: &str = r#""neftune_noise_alpha":0,"num_train_epochs":1,"per_device_train_batch_size":2,"learning_rate":0.0002,"max_steps":-1"#;

    fn five_and(extra: &str) -> String {
        format!("{{{FIVE}{extra}}}")
    }

    #[test]
    fn the_official_five_key_form_has_no_lora_options() {
        let p = LoraParams::parse_for(&five_and(""), &LoraRanges::default()).unwrap();
        assert_eq!(p.lora, LoraOptions::default());
        assert!(!p.merge_adapter);
    }

    #[test]
    fn lora_options_are_read_at_the_top_level_or_in_opeas_lora_config() {
        let top = five_and(
            r#","r":16,"lora_alpha":32,"lora_dropout":0.1,"target_modules":["q_proj","v_proj"],"merge_adapter":true"#,
        );
        let opea = five_and(
            r#","lora_config":{"r":16,"lora_alpha":32,"lora_dropout":0.1,"target_modules":["q_proj","v_proj"]},"merge_adapter":true"#,
        );
        let want = LoraOptions {
            r: Some(16),
            lora_alpha: Some(32),
            lora_dropout: Some(0.1),
            target_modules: Some(vec!["q_proj".into(), "v_proj".into()]),
        };
        for text in [top, opea] {
            let p = LoraParams::parse_for(&text, &LoraRanges::default()).unwrap();
            assert_eq!(p.lora, want);
            assert!(p.merge_adapter);
        }
    }

    #[test]
    fn lora_options_beyond_the_ceilings_are_refused_naming_the_key() {
        for (extra, key) in [
            (r#","r":0"#, "r"),
            (r#","r":257"#, "r"),
            (r#","r":8.5"#, "r"),
            (r#","r":"8""#, "r"),
            (r#","lora_alpha":513"#, "lora_alpha"),
            (r#","lora_dropout":1"#, "lora_dropout"),
            (r#","lora_dropout":-0.1"#, "lora_dropout"),
            (r#","target_modules":[]"#, "target_modules"),
            (r#","target_modules":["q_proj","q_proj"]"#, "target_modules"),
            (r#","target_modules":["../x"]"#, "target_modules"),
            (r#","target_modules":"q_proj""#, "target_modules"),
            (r#","merge_adapter":1"#, "merge_adapter"),
            (r#","lora_config":[8]"#, "lora_config"),
        ] {
            let e = LoraParams::parse(&five_and(extra)).unwrap_err();
            assert!(
                matches!(&e, ParamsError::Range { key: k, .. } if *k == key),
                "{extra}: {e}"
            );
        }
    }

    #[test]
    fn an_r_outside_the_providers_declared_range_is_refused() {
        let ranges = LoraRanges {
            r: [4, 16],
            lora_alpha: [8, 32],
            lora_dropout: [0.0, 0.2],
            target_modules: vec!["q_proj".into(), "v_proj".into()],
            merge: false,
        };
        LoraParams::parse_for(&five_and(r#","r":16,"lora_alpha":8"#), &ranges).unwrap();
        for (extra, key, value) in [
            (r#","r":32"#, "r", "32"),
            (r#","lora_config":{"r":2}"#, "r", "2"),
            (r#","lora_alpha":64"#, "lora_alpha", "64"),
            (r#","lora_dropout":0.3"#, "lora_dropout", "0.3"),
            (
                r#","target_modules":["q_proj","o_proj"]"#,
                "target_modules",
                "o_proj",
            ),
            (r#","merge_adapter":true"#, "merge_adapter", "true"),
        ] {
            let e = LoraParams::parse_for(&five_and(extra), &ranges).unwrap_err();
            assert!(
                matches!(&e, ParamsError::NotOffered { key: k, value: v, .. } if *k == key && v == value),
                "{extra}: {e}"
            );
            assert!(e.to_string().contains("this provider allows"), "{e}");
        }
        // The ceilings hold whatever the provider declares.
        let e = LoraParams::parse_for(&five_and(r#","r":300"#), &ranges).unwrap_err();
        assert!(matches!(e, ParamsError::Range { key: "r", .. }), "{e}");
    }

    #[test]
    fn an_option_given_twice_or_an_unknown_lora_config_key_is_refused() {
        let e = LoraParams::parse(&five_and(r#","r":8,"lora_config":{"r":16}"#)).unwrap_err();
        assert_eq!(e, ParamsError::Twice("r"));
        let e =
            LoraParams::parse(&five_and(r#","lora_config":{"sparse_adapter":true}"#)).unwrap_err();
        assert_eq!(e, ParamsError::Unknown("lora_config.sparse_adapter".into()));
        let text = LoraParams::parse(&five_and(r#","lora_rank":8"#))
            .unwrap_err()
            .to_string();
        for key in LORA_KEYS
            .iter()
            .chain(&LORA_OPTION_KEYS)
            .chain(&[LORA_CONFIG, MERGE_ADAPTER])
        {
            assert!(text.contains(key), "{key} missing from: {text}");
        }
    }

    #[test]
    fn declared_ranges_are_checked_at_config_load() {
        assert!(LoraRanges::default().problems().is_empty());
        for bad in [
            LoraRanges {
                r: [0, 8],
                ..LoraRanges::default()
            },
            LoraRanges {
                r: [16, 8],
                ..LoraRanges::default()
            },
            LoraRanges {
                r: [1, 1024],
                ..LoraRanges::default()
            },
            LoraRanges {
                lora_alpha: [1, 600],
                ..LoraRanges::default()
            },
            LoraRanges {
                lora_dropout: [0.0, 1.0],
                ..LoraRanges::default()
            },
            LoraRanges {
                lora_dropout: [f64::NAN, 0.1],
                ..LoraRanges::default()
            },
            LoraRanges {
                target_modules: vec![],
                ..LoraRanges::default()
            },
            LoraRanges {
                target_modules: vec!["a b".into()],
                ..LoraRanges::default()
            },
        ] {
            assert_eq!(bad.problems().len(), 1, "{bad:?}");
        }
    }

    /// Under a v2 request the signature covers `keccak256(trainingParams)`: a relay that rewrites
    /// `r` (or moves it into `lora_config`) breaks it.
    #[test]
    fn a_rewritten_r_under_a_v2_request_is_refused() {
        use crate::request_v2::{self, RequestV2Error, TaskRequest};
        use alloy_primitives::{Address, B256, U256};
        let customer = k256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap();
        let domain = request_v2::domain(16602, Address::repeat_byte(0x5e));
        let signed_text = five_and(r#","r":8"#);
        let request = TaskRequest {
            user: crate::sig::address_of(customer.verifying_key()),
            provider: Address::repeat_byte(0x77),
            modelHash: B256::repeat_byte(1),
            trainingParamsHash: request_v2::training_params_hash(&signed_text),
            optionsHash: request_v2::options_hash(&Default::default()),
            datasetHash: B256::repeat_byte(2),
            feeCeiling: U256::ZERO,
            nonce: U256::from(7u64),
        };
        let signature = request.sign(&customer, &domain);
        request.verify(&domain, &signature).unwrap();
        for rewritten in [
            five_and(r#","r":64"#),
            five_and(r#","lora_config":{"r":64}"#),
        ] {
            LoraParams::parse_for(&rewritten, &LoraRanges::default()).unwrap();
            let relayed = TaskRequest {
                trainingParamsHash: request_v2::training_params_hash(&rewritten),
                ..request.clone()
            };
            assert!(matches!(
                relayed.verify(&domain, &signature),
                Err(RequestV2Error::NotSignedOver { .. })
            ));
        }
    }
}
