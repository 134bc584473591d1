//! The `[gpu]` section of a policy file (crate::policy):
//!
//! ```toml
//! [gpu]
//! required = true                  # GPU evidence must be served, verify and be bound in the quote
//! min_driver_version = "550.90.07" # every GPU's signed driver version at least this
//! cc_on = true                     # the worker must report confidential computing on
//! dev_tools = false                # … and dev-tools mode off
//! count = 8                        # exactly this many GPUs
//! ```
//!
//! Each key applies only when written; a failure names its policy line.

use serde::Deserialize;
use toml::Spanned;

use super::{GpuOutcome, compare_versions};
use crate::policy::{PolicyError, Rule};

/// The raw `[gpu]` table.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawGpu {
    required: Option<Spanned<bool>>,
    min_driver_version: Option<Spanned<String>>,
    cc_on: Option<Spanned<bool>>,
    dev_tools: Option<Spanned<bool>>,
    count: Option<Spanned<u32>>,
}

/// The GPU rules of a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuPolicy {
    /// `gpu.required`.
    pub required: Option<Rule<bool>>,
    /// `gpu.min_driver_version`.
    pub min_driver_version: Option<Rule<String>>,
    /// `gpu.cc_on`.
    pub cc_on: Option<Rule<bool>>,
    /// `gpu.dev_tools`.
    pub dev_tools: Option<Rule<bool>>,
    /// `gpu.count`.
    pub count: Option<Rule<u32>>,
}

impl GpuPolicy {
    /// Reads the raw table; `text` is the whole file (for line numbers).
    pub fn from_raw(origin: &str, text: &str, raw: RawGpu) -> Result<Self, PolicyError> {
        let rule = |key: &'static str, v: Option<Spanned<bool>>| {
            v.map(|v| Rule {
                line: crate::policy::line_of(text, v.span().start),
                key,
                value: v.into_inner(),
            })
        };
        let min_driver_version = match raw.min_driver_version {
            None => None,
            Some(v) => {
                let line = crate::policy::line_of(text, v.span().start);
                let value = v.into_inner();
                if value.split('.').any(|p| p.parse::<u64>().is_err()) {
                    return Err(PolicyError::Value {
                        origin: origin.to_owned(),
                        line,
                        key: "gpu.min_driver_version",
                        message: format!("{value:?} is not a dotted version (550.90.07)"),
                    });
                }
                Some(Rule {
                    value,
                    line,
                    key: "gpu.min_driver_version",
                })
            }
        };
        Ok(GpuPolicy {
            required: rule("gpu.required", raw.required),
            min_driver_version,
            cc_on: rule("gpu.cc_on", raw.cc_on),
            dev_tools: rule("gpu.dev_tools", raw.dev_tools),
            count: raw.count.map(|v| Rule {
                line: crate::policy::line_of(text, v.span().start),
                key: "gpu.count",
                value: v.into_inner(),
            }),
        })
    }

    /// Whether any rule is written.
    pub fn is_empty(&self) -> bool {
        self == &GpuPolicy::default()
    }

    /// Whether the policy requires GPU evidence.
    pub fn requires_evidence(&self) -> bool {
        self.required.as_ref().is_some_and(|r| r.value)
    }

    /// Checks the outcome against every written rule; `None` when none is written.
    pub fn check(&self, origin: &str, outcome: &GpuOutcome) -> Option<Result<String, String>> {
        if self.is_empty() {
            return None;
        }
        let at = |line: usize, key: &str| format!("{origin}:{line} ({key})");
        let mut held = Vec::new();
        let mut failed = Vec::new();
        let mut judge = |ok: bool, line: usize, key: &str, what: String| {
            let entry = format!("{what} [{}]", at(line, key));
            if ok {
                held.push(entry)
            } else {
                failed.push(entry)
            }
        };
        if let Some(r) = self.required.as_ref().filter(|r| r.value) {
            judge(
                outcome.ok(),
                r.line,
                r.key,
                match (&outcome.absent, &outcome.malformed) {
                    (Some(why), _) => format!("GPU evidence required, none served ({why})"),
                    (_, Some(why)) => format!("GPU evidence required, unreadable ({why})"),
                    _ if outcome.ok() => "GPU evidence verified and bound".into(),
                    _ => "GPU evidence required, but a GPU link fails".into(),
                },
            );
        }
        if let Some(r) = &self.min_driver_version {
            let min = outcome.min_driver_version();
            let ok = !outcome.gpus.is_empty()
                && outcome.gpus.iter().all(|g| {
                    g.driver_version
                        .as_deref()
                        .is_some_and(|v| compare_versions(v, &r.value).is_ge())
                });
            judge(
                ok,
                r.line,
                r.key,
                format!("driver {} vs minimum {}", min.unwrap_or("unknown"), r.value),
            );
        }
        if let Some(r) = &self.cc_on {
            let on = outcome.cc.map(|c| c.cc_enabled);
            judge(
                on == Some(r.value),
                r.line,
                r.key,
                format!("CC on: {on:?}, wanted {}", r.value),
            );
        }
        if let Some(r) = &self.dev_tools {
            let dev = outcome.cc.map(|c| c.dev_tools);
            judge(
                dev == Some(r.value),
                r.line,
                r.key,
                format!("dev tools: {dev:?}, wanted {}", r.value),
            );
        }
        if let Some(r) = &self.count {
            let n = outcome.gpus.len();
            judge(
                u32::try_from(n).is_ok_and(|n| n == r.value),
                r.line,
                r.key,
                format!("{n} GPUs, wanted {}", r.value),
            );
        }
        Some(if failed.is_empty() {
            Ok(held.join("; "))
        } else {
            Err(failed.join("; "))
        })
    }
}
