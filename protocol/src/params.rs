//! The stock LoRA script's `trainingParams` (PROTOCOL.md §3): exactly five keys, each in range.
//!
//! `trainingParams` travels as a JSON *string* inside the create-task body; the worker validates it
//! before anything is fetched or charged, and the customer CLI validates it before signing.
//!
//! ```
//! use sealtune_protocol::params::{LoraParams, ParamsError};
//! let p = LoraParams::parse(r#"{"neftune_noise_alpha":5,"num_train_epochs":1,
//!     "per_device_train_batch_size":2,"learning_rate":0.0002,"max_steps":-1}"#)?;
//! assert_eq!(p.num_train_epochs, 1);
//! assert!(matches!(LoraParams::parse(r#"{"num_train_epochs":1}"#), Err(ParamsError::Missing(_))));
//! # Ok::<(), ParamsError>(())
//! ```
use std::collections::BTreeMap;

use serde_json::value::RawValue;

/// The five keys, in the order 0G documents them.
pub const LORA_KEYS: [&str; 5] = [
    "neftune_noise_alpha",
    "num_train_epochs",
    "per_device_train_batch_size",
    "learning_rate",
    "max_steps",
];

/// Why `trainingParams` was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamsError {
    /// Not a JSON object.
    #[error("trainingParams is not a JSON object: {0}")]
    NotObject(String),
    /// An unknown key.
    #[error("trainingParams has an unknown key `{0}`; the allowed keys are {keys}", keys = LORA_KEYS.join(", "))]
    Unknown(String),
    /// A missing key.
    #[error("trainingParams lacks `{0}`; all of {keys} are required", keys = LORA_KEYS.join(", "))]
    Missing(&'static str),
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
}

/// Validated LoRA training parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
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
}

impl LoraParams {
    /// Parses and validates `trainingParams`.
    pub fn parse(text: &str) -> Result<LoraParams, ParamsError> {
        let map: BTreeMap<String, Box<RawValue>> =
            serde_json::from_str(text).map_err(|e| ParamsError::NotObject(e.to_string()))?;
        if let Some(k) = map.keys().find(|k| !LORA_KEYS.contains(&k.as_str())) {
            return Err(ParamsError::Unknown(k.chars().take(64).collect()));
        }
        let raw = |key: &'static str| -> Result<&str, ParamsError> {
            map.get(key)
                .map(|v| v.get())
                .ok_or(ParamsError::Missing(key))
        };
        let range = |key: &'static str, value: &str, rule: &'static str| ParamsError::Range {
            key,
            value: value.chars().take(40).collect(),
            rule,
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
            num_train_epochs: epochs as u64,
            per_device_train_batch_size: batch as u64,
            learning_rate,
            max_steps,
        })
    }
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
}
