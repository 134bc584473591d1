//! The measurement and TCB policy, read from a TOML file; every failure names the policy line.
//!
//! ```toml
//! [tcb]
//! accepted_statuses = ["UpToDate", "SWHardeningNeeded"]   # besides OutOfDate, see below
//! allow_out_of_date = false
//! out_of_date_grace_days = 30          # with allow_out_of_date: how long after the TCB date
//! allowed_advisories = ["INTEL-SA-00615"]  # when present: any other advisory fails
//! rejected_advisories = ["INTEL-SA-00289"]
//! allow_dynamic_platform = true        # cloud TDX hosts need these three
//! allow_cached_keys = true
//! allow_smt = true
//! allow_debug = false                  # `true` is refused: a debug TD is never trusted
//!
//! [measurements]                       # accepted values (hex, any of the list)
//! mrtd = ["…96 hex…"]
//! rtmr0 = ["…"]
//! rtmr1 = ["…"]
//! rtmr2 = ["…"]
//!
//! [app]
//! compose_hashes = ["…64 hex…"]        # sha256 of the app-compose.json served with the quote
//! images = ["ghcr.io/org/worker@sha256:…"]  # every image the compose runs must be listed
//! app_events = ["sealtune-ready"]      # application events allowed after system-ready
//! pins = ["SEALTUNE_SCRIPT_SHA256=…"]   # strings the app-compose must contain verbatim (e.g. the
//!                                      # training scripts' hashes it pins)
//! config_hashes = ["…64 hex…"]         # the sealtune worker's measured config hash (its RTMR3
//!                                      # `sealtune-config` event, or its attestation document)
//!
//! require_config_hash = true           # a config hash must be recorded (pinned or not)
//!
//! [events]                             # dstack system events of the replayed log (hex payloads)
//! required = ["os-image-hash", "key-provider"]  # must be in the log, whatever their value
//! app_ids = ["…40 hex…"]
//! os_image_hashes = ["…64 hex…"]
//! key_provider_ids = ["…"]             # the `id` of the key-provider event (the KMS root key)
//! gpu_policy_hashes = ["…64 hex…"]
//! instance_ids = ["…40 hex…"]
//! mr_kms = ["…"]
//!
//! [policy]
//! name = "sealtune-release"            # shown in the report
//! attestation = "tdx"                  # "tdx" (default) or "dev": the kind of answer it is for
//!
//! [unpinned]                           # what the policy leaves open, and where the value comes from
//! mrtd = "the provider's dstack OS release: …"   # also rtmr0–2, compose_hash, config_hash,
//!                                      # app_id, os_image_hash, key_provider_id
//!
//! [gpu]                                # GPU evidence (crate::gpu::policy)
//! required = true
//! min_driver_version = "550.90.07"
//! cc_on = true
//! dev_tools = false
//! count = 8
//! ```
//!
//! Every key is optional; unknown keys are an error (a typo must not silently weaken the policy).
//! A value both pinned and declared in `[unpinned]` is an error. Every value the policy does not pin
//! is reported `UNPINNED` ([`Policy::unpinned`]). The policies shipped with the release
//! (`deploy/policy.toml`, `deploy/policy-dev.toml`) are built in by name ([`shipped`]).

pub mod shipped;
mod unpinned;

pub use unpinned::{Pinnable, PolicyAttestation, nothing_pinned};

use dcap_qvl::TcbStatus;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::dcap::{DcapOutcome, TcbPolicy};
use crate::event_log::{EventLogSummary, EventPolicy};
use crate::quote::TdReport;

/// Why a policy file is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not valid TOML, or an unknown key / wrong type.
    #[error("policy {origin}: {message}")]
    Toml {
        /// File name.
        origin: String,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A value is malformed.
    #[error("policy {origin}:{line} ({key}): {message}")]
    Value {
        /// File name.
        origin: String,
        /// 1-based line.
        line: usize,
        /// `section.key`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// A policy value with the line it was written on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule<T> {
    /// The value.
    pub value: T,
    /// 1-based line in the policy file.
    pub line: usize,
    /// `section.key`.
    pub key: &'static str,
}

/// A parsed policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Where it came from (file name), used in failure messages.
    pub origin: String,
    /// `tcb.accepted_statuses`.
    pub accepted_statuses: Option<Rule<Vec<TcbStatus>>>,
    /// `tcb.allow_out_of_date`.
    pub allow_out_of_date: Option<Rule<bool>>,
    /// `tcb.out_of_date_grace_days`, in seconds.
    pub out_of_date_grace_secs: Option<Rule<u64>>,
    /// `tcb.allowed_advisories`.
    pub allowed_advisories: Option<Rule<Vec<String>>>,
    /// `tcb.rejected_advisories`.
    pub rejected_advisories: Option<Rule<Vec<String>>>,
    /// `tcb.allow_dynamic_platform`.
    pub allow_dynamic_platform: Option<Rule<bool>>,
    /// `tcb.allow_cached_keys`.
    pub allow_cached_keys: Option<Rule<bool>>,
    /// `tcb.allow_smt`.
    pub allow_smt: Option<Rule<bool>>,
    /// `measurements.mrtd`.
    pub mrtd: Option<Rule<Vec<[u8; 48]>>>,
    /// `measurements.rtmr0` … `rtmr2`.
    pub rtmr: [Option<Rule<Vec<[u8; 48]>>>; 3],
    /// `app.compose_hashes`.
    pub compose_hashes: Option<Rule<Vec<[u8; 32]>>>,
    /// `app.images`.
    pub images: Option<Rule<Vec<String>>>,
    /// `app.app_events`.
    pub app_events: Option<Rule<Vec<String>>>,
    /// `app.pins`: strings the app-compose must contain (training-script hashes, image digests…).
    pub pins: Option<Rule<Vec<String>>>,
    /// `app.config_hashes`: the accepted measured config hashes of a sealtune worker.
    pub config_hashes: Option<Rule<Vec<[u8; 32]>>>,
    /// `[events]`: accepted payloads (lowercase hex) of pinned system events.
    pub events: Vec<EventPin>,
    /// `policy.name`.
    pub name: Option<String>,
    /// `policy.attestation`: the kind of answer the policy is for (TDX when absent).
    pub attestation: Option<Rule<PolicyAttestation>>,
    /// `app.require_config_hash`: a config hash must be recorded.
    pub require_config_hash: Option<Rule<bool>>,
    /// `events.required`: system events the replayed log must hold, whatever their value.
    pub required_events: Option<Rule<Vec<String>>>,
    /// `[unpinned]`: where each value the policy leaves open comes from.
    pub unpinned: Vec<(Pinnable, String)>,
    /// `[gpu]`: GPU evidence rules ([`crate::gpu::policy`]).
    pub gpu: crate::gpu::policy::GpuPolicy,
}

/// A pinned system event: the replayed log must hold it, with one of the accepted values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPin {
    /// The dstack event (`os-image-hash`…).
    pub event: &'static str,
    /// The accepted values (lowercase hex), with the policy line.
    pub rule: Rule<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    tcb: RawTcb,
    #[serde(default)]
    measurements: RawMeasurements,
    #[serde(default)]
    app: RawApp,
    #[serde(default)]
    events: RawEvents,
    #[serde(default)]
    gpu: crate::gpu::policy::RawGpu,
    #[serde(default)]
    policy: RawHeader,
    #[serde(default)]
    unpinned: unpinned::RawUnpinned,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: Option<String>,
    attestation: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    required: Option<Spanned<Vec<String>>>,
    app_ids: Option<Spanned<Vec<String>>>,
    instance_ids: Option<Spanned<Vec<String>>>,
    os_image_hashes: Option<Spanned<Vec<String>>>,
    key_provider_ids: Option<Spanned<Vec<String>>>,
    gpu_policy_hashes: Option<Spanned<Vec<String>>>,
    mr_kms: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTcb {
    accepted_statuses: Option<Spanned<Vec<String>>>,
    allow_out_of_date: Option<Spanned<bool>>,
    out_of_date_grace_days: Option<Spanned<u64>>,
    allowed_advisories: Option<Spanned<Vec<String>>>,
    rejected_advisories: Option<Spanned<Vec<String>>>,
    allow_dynamic_platform: Option<Spanned<bool>>,
    allow_cached_keys: Option<Spanned<bool>>,
    allow_smt: Option<Spanned<bool>>,
    allow_debug: Option<Spanned<bool>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMeasurements {
    mrtd: Option<Spanned<Vec<String>>>,
    rtmr0: Option<Spanned<Vec<String>>>,
    rtmr1: Option<Spanned<Vec<String>>>,
    rtmr2: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApp {
    compose_hashes: Option<Spanned<Vec<String>>>,
    images: Option<Spanned<Vec<String>>>,
    app_events: Option<Spanned<Vec<String>>>,
    pins: Option<Spanned<Vec<String>>>,
    config_hashes: Option<Spanned<Vec<String>>>,
    require_config_hash: Option<Spanned<bool>>,
}

/// The 1-based line of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let upto = text.get(..offset).unwrap_or(text);
    upto.bytes()
        .filter(|b| *b == b'\n')
        .count()
        .saturating_add(1)
}

struct Ctx<'a> {
    origin: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn rule<T, U>(
        &self,
        key: &'static str,
        v: Option<Spanned<T>>,
        conv: impl FnOnce(T) -> Result<U, String>,
    ) -> Result<Option<Rule<U>>, PolicyError> {
        let Some(v) = v else { return Ok(None) };
        let line = line_of(self.text, v.span().start);
        let value = conv(v.into_inner()).map_err(|message| PolicyError::Value {
            origin: self.origin.to_owned(),
            line,
            key,
            message,
        })?;
        Ok(Some(Rule { value, line, key }))
    }
}

fn hex_list<const N: usize>(list: Vec<String>) -> Result<Vec<[u8; N]>, String> {
    list.iter()
        .map(|s| {
            let t = s.trim();
            let t = t.strip_prefix("0x").unwrap_or(t);
            hex::decode(t)
                .ok()
                .and_then(|b| <[u8; N]>::try_from(b.as_slice()).ok())
                .ok_or_else(|| format!("{s:?} is not {N} bytes of hex"))
        })
        .collect()
}

/// Hex of any length, normalised to lowercase without `0x`.
fn any_hex_list(list: Vec<String>) -> Result<Vec<String>, String> {
    list.iter()
        .map(|s| {
            let t = s.trim();
            let t = t.strip_prefix("0x").unwrap_or(t);
            hex::decode(t)
                .map(hex::encode)
                .map_err(|_| format!("{s:?} is not hex"))
        })
        .collect()
}

fn ok<T>(v: T) -> Result<T, String> {
    Ok(v)
}

fn statuses(list: Vec<String>) -> Result<Vec<TcbStatus>, String> {
    list.iter()
        .map(|s| {
            serde_json::from_value::<TcbStatus>(serde_json::Value::String(s.clone())).map_err(|_| {
                format!(
                    "unknown TCB status {s:?} (UpToDate, SWHardeningNeeded, ConfigurationNeeded, \
                     ConfigurationAndSWHardeningNeeded, OutOfDate, OutOfDateConfigurationNeeded, Revoked)"
                )
            })
        })
        .collect()
}

impl Policy {
    /// Parse a policy file. `origin` names it in messages (usually the path).
    pub fn from_toml(origin: &str, text: &str) -> Result<Self, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError::Toml {
            origin: origin.to_owned(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        let cx = Ctx { origin, text };
        if let Some(d) = cx.rule("tcb.allow_debug", raw.tcb.allow_debug, ok)?
            && d.value
        {
            return Err(PolicyError::Value {
                origin: origin.to_owned(),
                line: d.line,
                key: d.key,
                message: "a debug TD or enclave is never trusted: the host can read its memory and keys; \
                          remove this line or set it to false"
                    .into(),
            });
        }
        let accepted_statuses =
            cx.rule("tcb.accepted_statuses", raw.tcb.accepted_statuses, statuses)?;
        if let Some(r) = &accepted_statuses
            && r.value.contains(&TcbStatus::Revoked)
        {
            return Err(PolicyError::Value {
                origin: origin.to_owned(),
                line: r.line,
                key: r.key,
                message: "Revoked can never be accepted".into(),
            });
        }
        let mut policy = Policy {
            origin: origin.to_owned(),
            accepted_statuses,
            allow_out_of_date: cx.rule("tcb.allow_out_of_date", raw.tcb.allow_out_of_date, ok)?,
            out_of_date_grace_secs: cx.rule(
                "tcb.out_of_date_grace_days",
                raw.tcb.out_of_date_grace_days,
                |d| {
                    d.checked_mul(86_400)
                        .ok_or_else(|| "grace period too large".to_owned())
                },
            )?,
            allowed_advisories: cx.rule(
                "tcb.allowed_advisories",
                raw.tcb.allowed_advisories,
                ok,
            )?,
            rejected_advisories: cx.rule(
                "tcb.rejected_advisories",
                raw.tcb.rejected_advisories,
                ok,
            )?,
            allow_dynamic_platform: cx.rule(
                "tcb.allow_dynamic_platform",
                raw.tcb.allow_dynamic_platform,
                ok,
            )?,
            allow_cached_keys: cx.rule("tcb.allow_cached_keys", raw.tcb.allow_cached_keys, ok)?,
            allow_smt: cx.rule("tcb.allow_smt", raw.tcb.allow_smt, ok)?,
            mrtd: cx.rule("measurements.mrtd", raw.measurements.mrtd, hex_list::<48>)?,
            rtmr: [
                cx.rule("measurements.rtmr0", raw.measurements.rtmr0, hex_list::<48>)?,
                cx.rule("measurements.rtmr1", raw.measurements.rtmr1, hex_list::<48>)?,
                cx.rule("measurements.rtmr2", raw.measurements.rtmr2, hex_list::<48>)?,
            ],
            compose_hashes: cx.rule(
                "app.compose_hashes",
                raw.app.compose_hashes,
                hex_list::<32>,
            )?,
            images: cx.rule("app.images", raw.app.images, ok)?,
            app_events: cx.rule("app.app_events", raw.app.app_events, ok)?,
            pins: cx.rule("app.pins", raw.app.pins, |v: Vec<String>| {
                if v.iter().any(|p| p.is_empty()) {
                    Err("an empty pin matches anything".to_owned())
                } else {
                    Ok(v)
                }
            })?,
            config_hashes: cx.rule("app.config_hashes", raw.app.config_hashes, hex_list::<32>)?,
            require_config_hash: cx.rule(
                "app.require_config_hash",
                raw.app.require_config_hash,
                ok,
            )?,
            required_events: cx.rule("events.required", raw.events.required.clone(), |v| {
                unpinned::required_events(v)
            })?,
            events: event_pins(&cx, raw.events)?,
            name: raw.policy.name,
            attestation: cx.rule("policy.attestation", raw.policy.attestation, |a| {
                PolicyAttestation::parse(&a)
            })?,
            unpinned: Vec::new(),
            gpu: crate::gpu::policy::GpuPolicy::from_raw(origin, text, raw.gpu)?,
        };
        policy.unpinned = unpinned::explanations(&cx, raw.unpinned, &policy)?;
        Ok(policy)
    }

    /// The measured config hash the quote's evidence records (`None`: none recorded) against
    /// `app.config_hashes` and `app.require_config_hash`. `None` when the file sets neither.
    pub fn check_config(&self, recorded: Option<[u8; 32]>) -> Option<Result<String, String>> {
        let Some(rule) = self.config_hashes.as_ref() else {
            let required = self.require_config_hash.as_ref().filter(|r| r.value)?;
            return Some(match recorded {
                Some(h) => Ok(format!(
                    "config hash {} is recorded, as policy {} requires (its value is not pinned: \
                     see UNPINNED below)",
                    hex::encode(h),
                    self.at(required)
                )),
                None => Err(format!(
                    "no config hash is recorded (no sealtune-config event, no attestation document), \
                     which policy {} requires",
                    self.at(required)
                )),
            });
        };
        Some(match recorded {
            Some(h) if rule.value.contains(&h) => Ok(format!(
                "config hash {} is pinned by policy {}",
                hex::encode(h),
                self.at(rule)
            )),
            Some(h) => Err(format!(
                "config hash {} is not one of the {} value(s) of policy {}",
                hex::encode(h),
                rule.value.len(),
                self.at(rule)
            )),
            None => Err(format!(
                "no config hash is recorded (no sealtune-config event, no attestation document), which policy {} pins",
                self.at(rule)
            )),
        })
    }

    /// Pin the config hashes given on the command line (`--config-hash`): they replace the
    /// file's `app.config_hashes`, if any.
    pub fn pin_config_hashes(&mut self, hashes: Vec<[u8; 32]>) {
        if hashes.is_empty() {
            return;
        }
        self.config_hashes = Some(Rule {
            value: hashes,
            line: 0,
            key: "--config-hash",
        });
        self.unpinned.retain(|(p, _)| *p != Pinnable::ConfigHash);
    }

    /// The name the report uses: `name (origin)`, or the origin.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} ({})", self.origin),
            None => self.origin.clone(),
        }
    }

    /// The kind of answer this policy is for.
    pub fn kind(&self) -> PolicyAttestation {
        self.attestation
            .as_ref()
            .map(|r| r.value)
            .unwrap_or_default()
    }

    fn at<T>(&self, r: &Rule<T>) -> String {
        if r.line == 0 {
            // A rule given on the command line, not in the file.
            return format!("given on the command line ({})", r.key);
        }
        format!("{}:{} ({})", self.origin, r.line, r.key)
    }

    /// The TCB policy this file sets, starting from `base` (what the command line says).
    pub fn tcb_policy(&self, base: &TcbPolicy) -> TcbPolicy {
        let mut p = base.clone();
        if let Some(r) = &self.accepted_statuses {
            p.accepted_statuses = r.value.clone();
        }
        if let Some(r) = &self.allow_out_of_date {
            p.allow_out_of_date = r.value;
        }
        if let Some(r) = &self.out_of_date_grace_secs {
            p.out_of_date_grace_secs = Some(r.value);
        }
        if let Some(r) = &self.rejected_advisories {
            p.rejected_advisories.extend(r.value.iter().cloned());
        }
        if let Some(r) = &self.allow_dynamic_platform {
            p.allow_dynamic_platform = r.value;
        }
        if let Some(r) = &self.allow_cached_keys {
            p.allow_cached_keys = r.value;
        }
        if let Some(r) = &self.allow_smt {
            p.allow_smt = r.value;
        }
        p
    }

    /// The event policy this file sets, starting from `base`.
    pub fn event_policy(&self, base: &EventPolicy) -> EventPolicy {
        let mut p = base.clone();
        if let Some(r) = &self.app_events {
            p.allowed_app_events.extend(r.value.iter().cloned());
        }
        p
    }

    /// Name the policy line behind a dcap-qvl policy rejection (`status`, `reason` as in
    /// [`crate::dcap::DcapError::Policy`]), when this file set it.
    pub fn blame_dcap_rejection(&self, status: &str, reason: &str) -> Option<String> {
        let r = reason.to_ascii_lowercase();
        let line = if r.contains("dynamic") {
            self.allow_dynamic_platform.as_ref().map(|x| self.at(x))
        } else if r.contains("cached") {
            self.allow_cached_keys.as_ref().map(|x| self.at(x))
        } else if r.contains("smt") {
            self.allow_smt.as_ref().map(|x| self.at(x))
        } else if r.contains("advisor") {
            self.rejected_advisories.as_ref().map(|x| self.at(x))
        } else if r.contains("grace") || status.starts_with("OutOfDate") {
            self.allow_out_of_date
                .as_ref()
                .map(|x| self.at(x))
                .or_else(|| self.out_of_date_grace_secs.as_ref().map(|x| self.at(x)))
                .or_else(|| self.accepted_statuses.as_ref().map(|x| self.at(x)))
        } else {
            self.accepted_statuses.as_ref().map(|x| self.at(x))
        };
        line.map(|l| format!("rejected by policy {l}"))
    }

    /// The advisory allow-list (`tcb.allowed_advisories`): every advisory of an accepted quote must be
    /// on it. `None` when the file does not set one.
    pub fn check_advisories(&self, outcome: &DcapOutcome) -> Option<Result<String, String>> {
        let r = self.allowed_advisories.as_ref()?;
        let bad: Vec<&String> = outcome
            .advisory_ids
            .iter()
            .filter(|a| !r.value.contains(a))
            .collect();
        Some(if bad.is_empty() {
            Ok(format!(
                "{} advisories, all allowed by {}",
                outcome.advisory_ids.len(),
                self.at(r)
            ))
        } else {
            Err(format!(
                "advisories {} not allowed by policy {}",
                bad.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                self.at(r)
            ))
        })
    }

    /// MRTD and RTMR0–2 against the accepted values. `None` when the file names none.
    pub fn check_measurements(&self, td: &TdReport) -> Option<Result<String, String>> {
        let names = ["MRTD", "RTMR0", "RTMR1", "RTMR2"];
        let [r0, r1, r2] = &self.rtmr;
        let [t0, t1, t2, _] = &td.rtmr;
        let rules = [(&self.mrtd, &td.mr_td), (r0, t0), (r1, t1), (r2, t2)];
        let mut checked = Vec::new();
        let mut failures = Vec::new();
        for (name, (rule, actual)) in names.iter().zip(rules) {
            let Some(rule) = rule else { continue };
            if rule.value.contains(actual) {
                checked.push(*name);
            } else {
                failures.push(format!(
                    "{name} {} is not one of the {} value(s) of policy {}",
                    hex::encode(actual),
                    rule.value.len(),
                    self.at(rule)
                ));
            }
        }
        if checked.is_empty() && failures.is_empty() {
            return None;
        }
        Some(if failures.is_empty() {
            Ok(format!("{} match the policy", checked.join(", ")))
        } else {
            Err(failures.join("; "))
        })
    }

    /// The compose hash, images and pins against the policy, given `tcb_info` (the JSON string
    /// holding `app_compose`). Without an app-compose, `compose_hashes` is checked against
    /// `measured_compose_hash` (the replayed `compose-hash` event, hex) and images and pins fail.
    /// `None` when the file sets none of them.
    pub fn check_app(
        &self,
        tcb_info: Option<&str>,
        measured_compose_hash: Option<&str>,
    ) -> Option<Result<String, String>> {
        if self.compose_hashes.is_none() && self.images.is_none() && self.pins.is_none() {
            return None;
        }
        if let (None, Some(r), None, None, Some(h)) = (
            tcb_info.and_then(app_compose),
            &self.compose_hashes,
            &self.images,
            &self.pins,
            measured_compose_hash,
        ) {
            return Some(self.check_measured_compose_hash(r, h));
        }
        let Some(compose) = tcb_info.and_then(app_compose) else {
            let rule = self
                .compose_hashes
                .as_ref()
                .map(|r| self.at(r))
                .or_else(|| self.images.as_ref().map(|r| self.at(r)))
                .or_else(|| self.pins.as_ref().map(|r| self.at(r)))
                .unwrap_or_default();
            return Some(Err(format!(
                "policy {rule} needs the app-compose (tcb_info.app_compose), which the response lacks"
            )));
        };
        let mut ok = Vec::new();
        let mut failures = Vec::new();
        if let Some(r) = &self.compose_hashes {
            let h: [u8; 32] = Sha256::digest(compose.as_bytes()).into();
            if r.value.contains(&h) {
                ok.push(format!("compose hash {}", hex::encode(h)));
            } else {
                failures.push(format!(
                    "compose hash {} is not one of the {} of policy {}",
                    hex::encode(h),
                    r.value.len(),
                    self.at(r)
                ));
            }
        }
        if let Some(r) = &self.images {
            let used = compose_images(&compose);
            let unknown: Vec<&String> = used.iter().filter(|i| !r.value.contains(i)).collect();
            if used.is_empty() {
                failures.push(format!(
                    "the app-compose names no image, policy {} expects some",
                    self.at(r)
                ));
            } else if unknown.is_empty() {
                ok.push(format!("{} image(s) allowed", used.len()));
            } else {
                failures.push(format!(
                    "image(s) {} not allowed by policy {}",
                    unknown
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    self.at(r)
                ));
            }
        }
        if let Some(r) = &self.pins {
            let missing: Vec<&str> = r
                .value
                .iter()
                .filter(|p| !compose.contains(p.as_str()))
                .map(String::as_str)
                .collect();
            if missing.is_empty() {
                ok.push(format!("{} pin(s) present", r.value.len()));
            } else {
                failures.push(format!(
                    "the app-compose lacks {} pinned by policy {}",
                    missing.join(", "),
                    self.at(r)
                ));
            }
        }
        Some(if failures.is_empty() {
            Ok(ok.join(", "))
        } else {
            Err(failures.join("; "))
        })
    }
}

impl Policy {
    /// `app.compose_hashes` against the compose hash the event log measured (no app-compose seen).
    fn check_measured_compose_hash(
        &self,
        r: &Rule<Vec<[u8; 32]>>,
        hex_hash: &str,
    ) -> Result<String, String> {
        let allowed = r.value.iter().any(|h| hex::encode(h) == hex_hash);
        if allowed {
            Ok(format!(
                "compose hash {hex_hash} (from the compose-hash event)"
            ))
        } else {
            Err(format!(
                "compose hash {hex_hash} (from the compose-hash event) is not one of the {} of policy {}",
                r.value.len(),
                self.at(r)
            ))
        }
    }

    /// The pinned system events (`[events]`) against the replayed log's summary (`None`: the log
    /// did not replay). `None` when the file pins none.
    pub fn check_events(
        &self,
        summary: Option<&EventLogSummary>,
    ) -> Option<Result<String, String>> {
        if self.events.is_empty() && self.required_events.is_none() {
            return None;
        }
        let mut ok = Vec::new();
        let mut failures = Vec::new();
        if let Some(r) = &self.required_events {
            for name in &r.value {
                match summary.and_then(|s| unpinned::event_value(s, name)) {
                    Some(_) => ok.push(format!("{name} present")),
                    None => failures.push(format!(
                        "no replayed {name} event, which policy {} requires",
                        self.at(r)
                    )),
                }
            }
        }
        for pin in &self.events {
            let value = summary.and_then(|s| pinned_value(s, pin.event));
            match value {
                Some(v) if pin.rule.value.contains(&v) => ok.push(format!("{} {v}", pin.event)),
                Some(v) => failures.push(format!(
                    "{} {v} is not one of the {} value(s) of policy {}",
                    pin.event,
                    pin.rule.value.len(),
                    self.at(&pin.rule)
                )),
                None => failures.push(format!(
                    "no replayed {} event, which policy {} pins",
                    pin.event,
                    self.at(&pin.rule)
                )),
            }
        }
        Some(if failures.is_empty() {
            Ok(ok.join(", "))
        } else {
            Err(failures.join("; "))
        })
    }
}

/// The value a pin compares: the event's payload (hex), or the key provider's `id`.
fn pinned_value(s: &EventLogSummary, event: &str) -> Option<String> {
    match event {
        "app-id" => s.app_id.clone(),
        "instance-id" => s.instance_id.clone(),
        "os-image-hash" => s.os_image_hash.clone(),
        "key-provider" => s.key_provider_id.clone().map(|id| id.to_ascii_lowercase()),
        "gpu-policy-hash" => s.gpu_policy_hash.clone(),
        "mr-kms" => s.mr_kms.clone(),
        _ => None,
    }
}

/// The `[events]` pins, in a fixed order.
fn event_pins(cx: &Ctx<'_>, raw: RawEvents) -> Result<Vec<EventPin>, PolicyError> {
    let keyed = [
        ("app-id", "events.app_ids", raw.app_ids),
        ("instance-id", "events.instance_ids", raw.instance_ids),
        ("mr-kms", "events.mr_kms", raw.mr_kms),
        (
            "os-image-hash",
            "events.os_image_hashes",
            raw.os_image_hashes,
        ),
        (
            "key-provider",
            "events.key_provider_ids",
            raw.key_provider_ids,
        ),
        (
            "gpu-policy-hash",
            "events.gpu_policy_hashes",
            raw.gpu_policy_hashes,
        ),
    ];
    let mut out = Vec::new();
    for (event, key, value) in keyed {
        if let Some(rule) = cx.rule(key, value, any_hex_list)? {
            out.push(EventPin { event, rule });
        }
    }
    Ok(out)
}

/// `app_compose` out of a `tcb_info` JSON string.
pub fn app_compose(tcb_info: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(tcb_info).ok()?;
    v.get("app_compose")?.as_str().map(str::to_owned)
}

/// The images an app-compose runs: the `image:` lines of its `docker_compose_file` (YAML).
pub fn compose_images(app_compose: &str) -> Vec<String> {
    let v: Option<serde_json::Value> = serde_json::from_str(app_compose).ok();
    let yaml = v
        .as_ref()
        .and_then(|v| v.get("docker_compose_file"))
        .and_then(|f| f.as_str())
        .unwrap_or(app_compose);
    let mut out: Vec<String> = yaml
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("image:")?;
            let img = rest.trim().trim_matches(|c| c == '"' || c == '\'').trim();
            (!img.is_empty()).then(|| img.to_owned())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}
