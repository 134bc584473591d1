//! The task fee (PROTOCOL.md §3):
//! `fee = tokens × pricePerToken × epochs × priceCoefficient + storageFee`, in neuron (wei), exact.
//!
//! - `tokens` is the dataset's token count (see `tokens`), `epochs` the training parameter
//!   `num_train_epochs` ([`DEFAULT_EPOCHS`] when absent), both from [`epochs_from_training_params`].
//! - `pricePerToken` is the service's on-chain price.
//! - `priceCoefficient` and `storageFee` are per-model provider settings. The coefficient is a
//!   non-negative decimal (e.g. `"1.25"`, at most 18 fractional digits) held as an exact ratio; the
//!   product is rounded **down** to a whole neuron, in the customer's favour.
//!
//! **Compatibility.** The official client does not predict the fee: `0g-compute-cli` sends
//! `fee: "0"` and lets the provider compute it, and 0G's own broker charges
//! `tokens × pricePerToken × epochs` (no coefficient, no storage fee). [`FeeSchedule::official`]
//! (coefficient 1, storage fee 0) therefore reproduces the official provider's formula; anything
//! else is a sealtune provider's pricing choice, published with the model. There is no official
//! code to test against (0G's broker is not in the pinned packages): the unit tests pin the formula
//! as PROTOCOL.md §3 states it.
//!
//! All arithmetic is `U256` and checked: an overflow is [`FeeError::Overflow`], never a wrap.
//!
//! ```
//! use sealtune_protocol::fee::{epochs_from_training_params, FeeSchedule, PriceCoefficient};
//! use sealtune_protocol::U256;
//!
//! let epochs = epochs_from_training_params(r#"{"num_train_epochs": 2, "learning_rate": 0.0002}"#).unwrap();
//! let schedule = FeeSchedule {
//!     price_per_token: U256::from(10u64),
//!     price_coefficient: "1.5".parse::<PriceCoefficient>().unwrap(),
//!     storage_fee: U256::from(7u64),
//! };
//! // 1000 tokens × 10 × 2 epochs × 1.5 + 7
//! assert_eq!(schedule.fee(1000, epochs).unwrap(), U256::from(30_007u64));
//! assert_eq!(FeeSchedule::official(U256::from(10u64)).fee(1000, 3).unwrap(), U256::from(30_000u64));
//! ```

use std::fmt;
use std::str::FromStr;

use alloy_primitives::U256;

/// `num_train_epochs` when the training parameters do not set it.
pub const DEFAULT_EPOCHS: u64 = 3;
/// Most fractional digits a [`PriceCoefficient`] may have.
pub const MAX_COEFFICIENT_DECIMALS: u8 = 18;
/// Longest coefficient text accepted.
const MAX_COEFFICIENT_LEN: usize = 100;

/// Why a fee could not be computed or is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeeError {
    /// The fee does not fit in 256 bits.
    #[error(
        "task fee overflows 256 bits (tokens {tokens}, epochs {epochs}): the dataset or the provider's price settings are out of range"
    )]
    Overflow {
        /// The token count.
        tokens: u64,
        /// The epoch count.
        epochs: u64,
    },
    /// The price coefficient is not a non-negative decimal.
    #[error(
        "invalid price coefficient {input:?}: expected a non-negative decimal such as \"1\" or \"1.25\" with at most {MAX_COEFFICIENT_DECIMALS} fractional digits"
    )]
    Coefficient {
        /// The offending text (truncated to 100 characters).
        input: String,
    },
    /// `num_train_epochs` is present but not a positive integer, or the parameters are not a JSON object.
    #[error(
        "invalid trainingParams: {0}; set \"num_train_epochs\" to a positive integer or leave it out for {DEFAULT_EPOCHS}"
    )]
    Epochs(String),
    /// `max_steps` would train more records than the billed epochs hold.
    #[error(
        "trainingParams max_steps {max_steps} trains more than the billed {epochs} epoch(s) of {records} record(s) ({steps_per_epoch} step(s) per epoch at batch size {batch}): max_steps can only shorten training; set it to at most {limit} or to -1"
    )]
    MaxStepsBeyondEpochs {
        /// The requested steps.
        max_steps: u64,
        /// The billed epochs.
        epochs: u64,
        /// The records counted.
        records: u64,
        /// Records per step (batch size × gradient accumulation).
        batch: u64,
        /// Steps in one epoch.
        steps_per_epoch: u64,
        /// The most steps the billed epochs hold.
        limit: u64,
    },
    /// The computed fee exceeds the ceiling the customer signed.
    #[error(
        "the task fee {fee} exceeds the fee ceiling {ceiling} the customer signed: the customer must sign a higher fee or use a smaller dataset"
    )]
    ExceedsCeiling {
        /// The computed fee.
        fee: U256,
        /// The signed ceiling.
        ceiling: U256,
    },
}

/// A non-negative decimal multiplier, held exactly as `numerator / 10^decimals`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PriceCoefficient {
    numerator: U256,
    decimals: u8,
}

impl PriceCoefficient {
    /// The coefficient 1 (the official provider's pricing).
    pub const ONE: PriceCoefficient = PriceCoefficient {
        numerator: U256::from_limbs([1, 0, 0, 0]),
        decimals: 0,
    };

    /// `numerator / 10^decimals`; `None` if `decimals` exceeds [`MAX_COEFFICIENT_DECIMALS`].
    pub fn new(numerator: U256, decimals: u8) -> Option<Self> {
        (decimals <= MAX_COEFFICIENT_DECIMALS).then_some(PriceCoefficient {
            numerator,
            decimals,
        })
    }

    /// The numerator of `numerator / 10^decimals`.
    pub fn numerator(&self) -> U256 {
        self.numerator
    }

    /// The number of decimal places.
    pub fn decimals(&self) -> u8 {
        self.decimals
    }

    /// `10^decimals`.
    fn denominator(&self) -> U256 {
        U256::from(10u64).pow(U256::from(self.decimals))
    }
}

impl Default for PriceCoefficient {
    fn default() -> Self {
        PriceCoefficient::ONE
    }
}

impl FromStr for PriceCoefficient {
    type Err = FeeError;

    /// Digits, optionally a `.` and 1–18 more digits. No sign, exponent or spaces.
    fn from_str(input: &str) -> Result<Self, FeeError> {
        let err = || FeeError::Coefficient {
            input: input.chars().take(100).collect(),
        };
        if input.len() > MAX_COEFFICIENT_LEN {
            return Err(err());
        }
        let (int, frac) = match input.split_once('.') {
            Some((i, f)) if !f.is_empty() => (i, f),
            Some(_) => return Err(err()),
            None => (input, ""),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !all_digits(int) || !all_digits(frac) {
            return Err(err());
        }
        let decimals = u8::try_from(frac.len()).map_err(|_| err())?;
        if decimals > MAX_COEFFICIENT_DECIMALS {
            return Err(err());
        }
        let numerator = U256::from_str_radix(&format!("{int}{frac}"), 10).map_err(|_| err())?;
        Ok(PriceCoefficient {
            numerator,
            decimals,
        })
    }
}

impl fmt::Display for PriceCoefficient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.numerator.to_string();
        let decimals = usize::from(self.decimals);
        if decimals == 0 {
            return f.write_str(&digits);
        }
        // At least one digit before the point: pad to decimals + 1 digits (ASCII, so any split is valid).
        let padded = format!("{digits:0>width$}", width = decimals.saturating_add(1));
        match padded.split_at_checked(padded.len().saturating_sub(decimals)) {
            Some((int, frac)) => write!(f, "{int}.{frac}"),
            None => f.write_str(&padded),
        }
    }
}

impl serde::Serialize for PriceCoefficient {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PriceCoefficient {
    /// Accepts a string (`"1.25"`, exact), an unsigned integer, or a float (read through its shortest
    /// decimal form, so a TOML `1.1` means exactly 11/10).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = PriceCoefficient;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative decimal price coefficient")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(PriceCoefficient {
                    numerator: U256::from(v),
                    decimals: 0,
                })
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map_err(|_| {
                        E::custom(format!("price coefficient must not be negative, got {v}"))
                    })
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                // Rust prints f64 without exponent and with the shortest round-trip digits.
                format!("{v}").parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A model's pricing: what [`FeeSchedule::fee`] multiplies the tokens and epochs by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FeeSchedule {
    /// The service's on-chain `pricePerToken`, in neuron.
    pub price_per_token: U256,
    /// The model's price coefficient (default 1).
    #[serde(default)]
    pub price_coefficient: PriceCoefficient,
    /// The model's flat storage fee, in neuron (default 0).
    #[serde(default)]
    pub storage_fee: U256,
}

impl FeeSchedule {
    /// The official 0G provider's pricing: coefficient 1, no storage fee.
    pub fn official(price_per_token: U256) -> Self {
        FeeSchedule {
            price_per_token,
            price_coefficient: PriceCoefficient::ONE,
            storage_fee: U256::ZERO,
        }
    }

    /// `floor(tokens × pricePerToken × epochs × coefficient) + storageFee`, checked.
    pub fn fee(&self, tokens: u64, epochs: u64) -> Result<U256, FeeError> {
        let overflow = || FeeError::Overflow { tokens, epochs };
        let training = U256::from(tokens)
            .checked_mul(self.price_per_token)
            .and_then(|v| v.checked_mul(U256::from(epochs)))
            .and_then(|v| v.checked_mul(self.price_coefficient.numerator))
            .ok_or_else(overflow)?
            .checked_div(self.price_coefficient.denominator())
            .ok_or_else(overflow)?;
        training.checked_add(self.storage_fee).ok_or_else(overflow)
    }
}

/// The epoch count of a task: `num_train_epochs` from its `trainingParams` JSON, or [`DEFAULT_EPOCHS`].
///
/// `trainingParams` must be a JSON object; `num_train_epochs`, when present and not `null`, must be a
/// positive integer. (The full parameter validation lives with the training-parameter schema.)
pub fn epochs_from_training_params(training_params: &str) -> Result<u64, FeeError> {
    let value: serde_json::Value = serde_json::from_str(training_params)
        .map_err(|e| FeeError::Epochs(format!("not valid JSON ({e})")))?;
    let object = value
        .as_object()
        .ok_or_else(|| FeeError::Epochs("not a JSON object".into()))?;
    match object.get("num_train_epochs") {
        None | Some(serde_json::Value::Null) => Ok(DEFAULT_EPOCHS),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Ok(n),
            _ => Err(FeeError::Epochs(format!(
                "num_train_epochs is {}, not a positive integer",
                v.to_string().chars().take(100).collect::<String>()
            ))),
        },
    }
}

/// `max_steps` may only shorten training within the billed epochs: with `max_steps > 0`, the training
/// script (Hugging Face `Trainer`) runs exactly `max_steps` optimizer steps whatever `num_train_epochs`
/// says, cycling over the data, so a large `max_steps` would train epochs nobody paid for.
///
/// A step consumes `per_device_train_batch_size × gradient_accumulation_steps` records (each 1 when
/// absent: the smallest step, so the most steps are allowed only when the parameters say so); one
/// epoch is `ceil(records / that)` steps, and `max_steps` must be at most `epochs ×` that. `max_steps`
/// absent, `null`, `-1` or `0` means "train the epochs" and always passes.
///
/// ```
/// use sealtune_protocol::fee::check_max_steps;
/// let p = r#"{"num_train_epochs":1,"per_device_train_batch_size":2,"max_steps":3}"#;
/// assert!(check_max_steps(p, 1, 6).is_ok()); // 6 records at 2 per step: 3 steps
/// assert!(check_max_steps(p, 1, 5).is_ok()); // 5 records: 3 steps (the last one short)
/// assert!(check_max_steps(p, 1, 4).is_err()); // 4 records: 2 steps, 3 asked
/// ```
pub fn check_max_steps(training_params: &str, epochs: u64, records: u64) -> Result<(), FeeError> {
    let value: serde_json::Value = serde_json::from_str(training_params)
        .map_err(|e| FeeError::Epochs(format!("not valid JSON ({e})")))?;
    let positive = |key: &str| -> Result<Option<u64>, FeeError> {
        match value.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) if v.as_i64().is_some_and(|n| n <= 0) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                FeeError::Epochs(format!(
                    "{key} is {}, not an integer",
                    v.to_string().chars().take(100).collect::<String>()
                ))
            }),
        }
    };
    let Some(max_steps) = positive("max_steps")? else {
        return Ok(());
    };
    let batch = positive("per_device_train_batch_size")?
        .unwrap_or(1)
        .saturating_mul(positive("gradient_accumulation_steps")?.unwrap_or(1));
    let steps_per_epoch = records.div_ceil(batch.max(1));
    let limit = steps_per_epoch.saturating_mul(epochs);
    if max_steps > limit {
        return Err(FeeError::MaxStepsBeyondEpochs {
            max_steps,
            epochs,
            records,
            batch,
            steps_per_epoch,
            limit,
        });
    }
    Ok(())
}

/// Enforce the fee ceiling the customer signed (see `request::VerifiedCreateTask::fee_ceiling`).
pub fn check_fee_ceiling(fee: U256, ceiling: Option<U256>) -> Result<(), FeeError> {
    match ceiling {
        Some(ceiling) if fee > ceiling => Err(FeeError::ExceedsCeiling { fee, ceiling }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn schedule(price: u64, coefficient: &str, storage: u64) -> FeeSchedule {
        FeeSchedule {
            price_per_token: U256::from(price),
            price_coefficient: coefficient.parse().unwrap(),
            storage_fee: U256::from(storage),
        }
    }

    /// A `max_steps` beyond the billed epochs is refused; within them, or "use epochs", it passes.
    #[test]
    fn max_steps_can_only_shorten_training_within_the_billed_epochs() {
        let p = |max_steps: i64| {
            format!(
                r#"{{"num_train_epochs":2,"per_device_train_batch_size":2,"max_steps":{max_steps}}}"#
            )
        };
        // 6 records at batch 2: 3 steps per epoch, 6 in two epochs.
        assert_eq!(check_max_steps(&p(6), 2, 6), Ok(()));
        assert_eq!(check_max_steps(&p(-1), 2, 6), Ok(()));
        assert_eq!(check_max_steps(&p(1), 2, 6), Ok(()));
        assert!(matches!(
            check_max_steps(&p(7), 2, 6),
            Err(FeeError::MaxStepsBeyondEpochs { limit: 6, .. })
        ));
        assert!(matches!(
            check_max_steps(&p(1_000_000), 2, 6),
            Err(FeeError::MaxStepsBeyondEpochs { .. })
        ));
        // Gradient accumulation makes a step consume more records.
        let acc =
            r#"{"per_device_train_batch_size":2,"gradient_accumulation_steps":3,"max_steps":2}"#;
        assert!(check_max_steps(acc, 1, 6).is_err());
        assert_eq!(check_max_steps(acc, 2, 6), Ok(()));
        // No batch size: one record per step.
        assert_eq!(check_max_steps(r#"{"max_steps":6}"#, 1, 6), Ok(()));
        assert!(check_max_steps(r#"{"max_steps":"6"}"#, 1, 6).is_err());
    }

    #[test]
    fn fee_is_tokens_times_price_times_epochs_times_coefficient_plus_storage() {
        assert_eq!(
            schedule(10, "2", 5).fee(1_000, 3),
            Ok(U256::from(60_005u64))
        );
    }

    #[test]
    fn official_pricing_is_tokens_times_price_times_epochs() {
        let price = U256::from(1_000_000_000u64);
        assert_eq!(
            FeeSchedule::official(price).fee(12_345, 3),
            Ok(U256::from(12_345u64 * 3 * 1_000_000_000))
        );
    }

    #[test]
    fn fractional_coefficient_is_exact_and_rounds_down() {
        assert_eq!(schedule(1, "1.25", 0).fee(4, 1), Ok(U256::from(5u64)));
        assert_eq!(schedule(1, "0.333", 0).fee(10, 1), Ok(U256::from(3u64))); // 3.33 -> 3
        assert_eq!(schedule(3, "0.5", 0).fee(1, 1), Ok(U256::from(1u64))); // 1.5 -> 1
    }

    #[test]
    fn fee_overflow_is_a_typed_error() {
        let s = FeeSchedule::official(U256::MAX);
        assert_eq!(
            s.fee(2, 1),
            Err(FeeError::Overflow {
                tokens: 2,
                epochs: 1
            })
        );
        let s = FeeSchedule {
            storage_fee: U256::MAX,
            ..FeeSchedule::official(U256::from(1u64))
        };
        assert_eq!(
            s.fee(1, 1),
            Err(FeeError::Overflow {
                tokens: 1,
                epochs: 1
            })
        );
    }

    #[test]
    fn epochs_default_to_3() {
        assert_eq!(epochs_from_training_params("{}"), Ok(DEFAULT_EPOCHS));
        assert_eq!(
            epochs_from_training_params(r#"{"num_train_epochs": null}"#),
            Ok(3)
        );
        assert_eq!(
            epochs_from_training_params(r#"{"num_train_epochs": 7}"#),
            Ok(7)
        );
    }

    #[test]
    fn epochs_must_be_a_positive_integer() {
        for bad in [
            r#"{"num_train_epochs": 0}"#,
            r#"{"num_train_epochs": -1}"#,
            r#"{"num_train_epochs": 2.5}"#,
            r#"{"num_train_epochs": "3"}"#,
            "[]",
            "not json",
        ] {
            assert!(
                matches!(epochs_from_training_params(bad), Err(FeeError::Epochs(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn fee_above_the_signed_ceiling_is_rejected() {
        let (fee, ceiling) = (U256::from(101u64), U256::from(100u64));
        assert_eq!(
            check_fee_ceiling(fee, Some(ceiling)),
            Err(FeeError::ExceedsCeiling { fee, ceiling })
        );
        assert_eq!(check_fee_ceiling(ceiling, Some(ceiling)), Ok(()));
        assert_eq!(check_fee_ceiling(fee, None), Ok(()));
    }

    #[test]
    fn coefficient_display_round_trips() {
        for s in [
            "0",
            "1",
            "1.5",
            "0.05",
            "12.000000000000000001",
            "0.000000000000000001",
        ] {
            let c: PriceCoefficient = s.parse().unwrap();
            assert_eq!(c.to_string(), s);
        }
    }

    #[test]
    fn coefficient_rejects_signs_exponents_and_excess_precision() {
        for bad in [
            "",
            "-1",
            "+1",
            "1e3",
            ".5",
            "1.",
            " 1",
            "1.0000000000000000001",
            "NaN",
            "inf",
            "1.2.3",
        ] {
            assert!(
                matches!(
                    bad.parse::<PriceCoefficient>(),
                    Err(FeeError::Coefficient { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn coefficient_deserializes_from_string_integer_or_float() {
        let from = |j: &str| serde_json::from_str::<PriceCoefficient>(j);
        assert_eq!(from(r#""1.1""#).unwrap(), "1.1".parse().unwrap());
        assert_eq!(from("2").unwrap(), "2".parse().unwrap());
        assert_eq!(from("1.1").unwrap(), "1.1".parse().unwrap());
        assert!(from("-1").is_err());
        assert!(from("-0.5").is_err());
        let s: FeeSchedule = serde_json::from_str(r#"{"price_per_token": "0x10"}"#).unwrap();
        assert_eq!(s, FeeSchedule::official(U256::from(16u64)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn coefficient_parser_never_panics(s in prop_oneof![any::<String>(), "[0-9.+\\-e]{0,40}"]) {
            if let Ok(c) = s.parse::<PriceCoefficient>() {
                prop_assert_eq!(c.to_string().parse::<PriceCoefficient>().unwrap(), c);
            }
        }

        #[test]
        fn epochs_parser_never_panics(s in any::<String>(), n in any::<i64>()) {
            let _ = epochs_from_training_params(&s);
            let r = epochs_from_training_params(&format!("{{\"num_train_epochs\": {n}}}"));
            prop_assert_eq!(r.is_ok(), n >= 1);
        }

        #[test]
        fn fee_never_panics_and_is_exact_when_it_fits(
            price in any::<[u64; 4]>(),
            storage in any::<[u64; 4]>(),
            tokens in any::<u64>(),
            epochs in any::<u64>(),
            num in any::<u64>(),
            decimals in 0u8..=18,
        ) {
            let s = FeeSchedule {
                price_per_token: U256::from_limbs(price),
                price_coefficient: PriceCoefficient::new(U256::from(num), decimals).unwrap(),
                storage_fee: U256::from_limbs(storage),
            };
            if let Ok(fee) = s.fee(tokens, epochs) {
                prop_assert!(fee >= s.storage_fee);
            }
            let small = FeeSchedule { price_per_token: U256::from(price[0] >> 40), storage_fee: U256::from(storage[0]), ..s };
            let (t, e) = (tokens >> 40, epochs >> 56);
            let exact = U256::from(t) * U256::from(price[0] >> 40) * U256::from(e) * U256::from(num)
                / U256::from(10u64).pow(U256::from(decimals)) + U256::from(storage[0]);
            prop_assert_eq!(small.fee(t, e).unwrap(), exact);
        }
    }
}
