//! Amounts of 0G: parsed exactly from the command line, shown in both units.
//!
//! On the command line an amount is a decimal number of 0G (`3`, `0.5`, `1.25`, at most 18
//! fractional digits) or a whole number of neuron (the wei of 0G) with the suffix `neuron` or
//! `wei` (`1500neuron`). 1 0G = 10¹⁸ neuron. Nothing is rounded: more precision than 18 digits is
//! an error.
//!
//! ```
//! use sealtune_client::amount::{format_0g, parse_amount};
//! use alloy::primitives::U256;
//!
//! assert_eq!(parse_amount("1.5").unwrap(), U256::from(1_500_000_000_000_000_000u128));
//! assert_eq!(parse_amount("7wei").unwrap(), U256::from(7u64));
//! assert!(parse_amount("-1").is_err());
//! assert_eq!(format_0g(U256::from(2_500_000_000_000_000_000u128)), "2.5");
//! ```

use alloy::primitives::U256;
use serde::Serializer;

/// Neuron per 0G.
pub const NEURON_PER_0G: u128 = 1_000_000_000_000_000_000;

/// A command-line amount that is not an amount (see the module docs); the client reports it as
/// invalid input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "amount {text:?}: {why}; write a number of 0G such as 3 or 0.5, or neuron such as 1500neuron"
)]
pub struct AmountError {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Parse an amount (see the module docs) into neuron.
pub fn parse_amount(text: &str) -> Result<U256, AmountError> {
    let t = text.trim();
    let bad = |why: &'static str| AmountError {
        text: text.to_owned(),
        why,
    };
    let (digits, is_neuron) = match t.strip_suffix("neuron").or_else(|| t.strip_suffix("wei")) {
        Some(d) => (d.trim(), true),
        // No "0G" suffix: "20G" would read as 2.
        None => (t, false),
    };
    if digits.is_empty() {
        return Err(bad("empty"));
    }
    if is_neuron {
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("neuron must be a whole number"));
        }
        return U256::from_str_radix(digits, 10).map_err(|_| bad("too large"));
    }
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err(bad("no digits"));
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("not a non-negative decimal number"));
    }
    if frac.len() > 18 {
        return Err(bad("more than 18 decimal places"));
    }
    let whole = if whole.is_empty() { "0" } else { whole };
    let mut frac_padded = frac.to_owned();
    while frac_padded.len() < 18 {
        frac_padded.push('0');
    }
    let w = U256::from_str_radix(whole, 10).map_err(|_| bad("too large"))?;
    let f = U256::from_str_radix(&frac_padded, 10).map_err(|_| bad("too large"))?;
    w.checked_mul(U256::from(NEURON_PER_0G))
        .and_then(|x| x.checked_add(f))
        .ok_or_else(|| bad("too large"))
}

/// Format neuron as a decimal number of 0G, without trailing zeros (`"2.5"`, `"3"`, `"0.000000000000000001"`).
pub fn format_0g(neuron: U256) -> String {
    let unit = U256::from(NEURON_PER_0G);
    let whole = neuron / unit;
    let frac = neuron % unit;
    if frac.is_zero() {
        return whole.to_string();
    }
    let mut f = format!("{frac:0>18}");
    while f.ends_with('0') {
        f.pop();
    }
    format!("{whole}.{f}")
}

/// Serialize a `U256` as a decimal string (for `--json` output; JSON numbers lose precision).
pub fn ser_dec<S: Serializer>(v: &U256, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_0g_exactly() {
        assert_eq!(parse_amount("3").unwrap(), U256::from(3 * NEURON_PER_0G));
        assert_eq!(
            parse_amount("0.000000000000000001").unwrap(),
            U256::from(1u8)
        );
        assert_eq!(parse_amount(".5").unwrap(), U256::from(NEURON_PER_0G / 2));
        assert_eq!(
            parse_amount("20G").unwrap_err().why,
            "not a non-negative decimal number"
        );
        assert_eq!(parse_amount("12neuron").unwrap(), U256::from(12u8));
    }

    #[test]
    fn rejects_what_is_not_an_amount() {
        for bad in [
            "",
            "-1",
            "1e18",
            "0x10",
            "1.0000000000000000001",
            "abc",
            ".",
            "1.5wei",
            "1,5",
        ] {
            assert!(parse_amount(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn formats_round_trip() {
        for s in ["0", "1", "2.5", "0.000000000000000001", "123456.789"] {
            assert_eq!(format_0g(parse_amount(s).unwrap()), s);
        }
    }
}
