//! What a policy pins and what it leaves open: the kind of answer it is for (`[policy]`), the
//! values it cannot know and where they come from (`[unpinned]`), and the `UNPINNED` lines of the
//! report for every value it does not pin.

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{Ctx, Policy, PolicyError};
use crate::event_log::EventLogSummary;

/// The kind of answer a policy is for (`policy.attestation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyAttestation {
    /// A provider's TDX quote (the default).
    #[default]
    Tdx,
    /// An answer of the insecure dev (no-TEE) source, and nothing else.
    Dev,
}

impl PolicyAttestation {
    pub(super) fn parse(s: &str) -> Result<Self, String> {
        match s {
            "tdx" => Ok(Self::Tdx),
            "dev" => Ok(Self::Dev),
            other => Err(format!(
                "unknown attestation {other:?} (\"tdx\" or \"dev\")"
            )),
        }
    }
}

/// A value a policy can pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Pinnable {
    /// `measurements.mrtd`.
    Mrtd,
    /// `measurements.rtmr0`.
    Rtmr0,
    /// `measurements.rtmr1`.
    Rtmr1,
    /// `measurements.rtmr2`.
    Rtmr2,
    /// `app.compose_hashes`.
    ComposeHash,
    /// `app.config_hashes`.
    ConfigHash,
    /// `events.app_ids`.
    AppId,
    /// `events.os_image_hashes`.
    OsImageHash,
    /// `events.key_provider_ids`.
    KeyProvider,
}

impl Pinnable {
    /// Every pinnable value, in report order.
    pub const ALL: [Pinnable; 9] = [
        Pinnable::Mrtd,
        Pinnable::Rtmr0,
        Pinnable::Rtmr1,
        Pinnable::Rtmr2,
        Pinnable::ComposeHash,
        Pinnable::ConfigHash,
        Pinnable::AppId,
        Pinnable::OsImageHash,
        Pinnable::KeyProvider,
    ];

    /// How the report names it.
    pub fn label(self) -> &'static str {
        match self {
            Pinnable::Mrtd => "MRTD",
            Pinnable::Rtmr0 => "RTMR0",
            Pinnable::Rtmr1 => "RTMR1",
            Pinnable::Rtmr2 => "RTMR2",
            Pinnable::ComposeHash => "compose hash",
            Pinnable::ConfigHash => "config hash",
            Pinnable::AppId => "app-id",
            Pinnable::OsImageHash => "os-image-hash",
            Pinnable::KeyProvider => "key-provider",
        }
    }

    /// Its key in `[unpinned]`.
    pub fn key(self) -> &'static str {
        match self {
            Pinnable::Mrtd => "mrtd",
            Pinnable::Rtmr0 => "rtmr0",
            Pinnable::Rtmr1 => "rtmr1",
            Pinnable::Rtmr2 => "rtmr2",
            Pinnable::ComposeHash => "compose_hash",
            Pinnable::ConfigHash => "config_hash",
            Pinnable::AppId => "app_id",
            Pinnable::OsImageHash => "os_image_hash",
            Pinnable::KeyProvider => "key_provider_id",
        }
    }

    /// Whether only a hardware quote has it (the TD measurements and the dstack system events a
    /// dev answer only imitates).
    pub fn hardware(self) -> bool {
        !matches!(self, Pinnable::ComposeHash | Pinnable::ConfigHash)
    }

    /// Whether it is a TD measurement (all a hardware-only check looks at).
    pub fn measurement(self) -> bool {
        matches!(
            self,
            Pinnable::Mrtd | Pinnable::Rtmr0 | Pinnable::Rtmr1 | Pinnable::Rtmr2
        )
    }

    fn pinned_by(self, p: &Policy) -> bool {
        let [r0, r1, r2] = &p.rtmr;
        let event = |name: &str| p.events.iter().any(|e| e.event == name);
        match self {
            Pinnable::Mrtd => p.mrtd.is_some(),
            Pinnable::Rtmr0 => r0.is_some(),
            Pinnable::Rtmr1 => r1.is_some(),
            Pinnable::Rtmr2 => r2.is_some(),
            Pinnable::ComposeHash => p.compose_hashes.is_some(),
            Pinnable::ConfigHash => p.config_hashes.is_some(),
            Pinnable::AppId => event("app-id"),
            Pinnable::OsImageHash => event("os-image-hash"),
            Pinnable::KeyProvider => event("key-provider"),
        }
    }
}

/// `[unpinned]`: a sentence per value saying where it comes from.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUnpinned {
    mrtd: Option<Spanned<String>>,
    rtmr0: Option<Spanned<String>>,
    rtmr1: Option<Spanned<String>>,
    rtmr2: Option<Spanned<String>>,
    compose_hash: Option<Spanned<String>>,
    config_hash: Option<Spanned<String>>,
    app_id: Option<Spanned<String>>,
    os_image_hash: Option<Spanned<String>>,
    key_provider_id: Option<Spanned<String>>,
}

/// The `[unpinned]` explanations, refusing one for a value the policy pins (it cannot be both).
pub(super) fn explanations(
    cx: &Ctx<'_>,
    raw: RawUnpinned,
    policy: &Policy,
) -> Result<Vec<(Pinnable, String)>, PolicyError> {
    let given = [
        (Pinnable::Mrtd, raw.mrtd),
        (Pinnable::Rtmr0, raw.rtmr0),
        (Pinnable::Rtmr1, raw.rtmr1),
        (Pinnable::Rtmr2, raw.rtmr2),
        (Pinnable::ComposeHash, raw.compose_hash),
        (Pinnable::ConfigHash, raw.config_hash),
        (Pinnable::AppId, raw.app_id),
        (Pinnable::OsImageHash, raw.os_image_hash),
        (Pinnable::KeyProvider, raw.key_provider_id),
    ];
    let mut out = Vec::new();
    for (what, text) in given {
        let Some(rule) = cx.rule("unpinned", text, Ok::<_, String>)? else {
            continue;
        };
        if what.pinned_by(policy) {
            return Err(PolicyError::Value {
                origin: cx.origin.to_owned(),
                line: rule.line,
                key: "unpinned",
                message: format!(
                    "{} is pinned by this policy and declared unpinned: remove one",
                    what.key()
                ),
            });
        }
        out.push((what, rule.value));
    }
    Ok(out)
}

/// The system events `events.required` may name: those the summary decodes.
const REQUIRABLE: [&str; 10] = [
    "app-id",
    "compose-hash",
    "init-script-hash",
    "gpu-policy-hash",
    "gpu-attestation",
    "instance-id",
    "mr-kms",
    "os-image-hash",
    "key-provider",
    "storage-fs",
];

pub(super) fn required_events(list: Vec<String>) -> Result<Vec<String>, String> {
    match list.iter().find(|n| !REQUIRABLE.contains(&n.as_str())) {
        Some(bad) => Err(format!(
            "{bad:?} is not a dstack system event the log decodes ({})",
            REQUIRABLE.join(", ")
        )),
        None => Ok(list),
    }
}

/// The decoded value of system event `name` in a replayed log, when present.
pub(super) fn event_value(s: &EventLogSummary, name: &str) -> Option<String> {
    s.decoded()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

impl Policy {
    /// The `policy` link: this policy is for this kind of answer (`dev`: the insecure dev
    /// source's answer without a quote).
    pub fn check_kind(&self, dev: bool) -> Result<String, String> {
        let name = self.label();
        match (self.kind(), dev) {
            (PolicyAttestation::Tdx, false) => Ok(format!("policy {name}, for TDX quotes")),
            (PolicyAttestation::Dev, true) => Ok(format!(
                "policy {name}, for the INSECURE dev source only (no TEE: it pins what the \
                 provider says, nothing hardware-backed)"
            )),
            (PolicyAttestation::Tdx, true) => Err(format!(
                "policy {name} is for TDX quotes; this is an answer of the insecure dev source (no \
                 quote): a dev stack is checked with the dev policy (--policy dev)"
            )),
            (PolicyAttestation::Dev, false) => Err(format!(
                "policy {name} is a dev policy (policy.attestation = \"dev\"), refused for a \
                 hardware quote: give a policy for TDX quotes"
            )),
        }
    }

    /// One `UNPINNED` line per value this policy does not pin, saying where it comes from:
    /// `dev` answers have only the compose and config hashes, a hardware-only check only the TD
    /// measurements. `config_hash` is the recorded config hash, shown beside its line.
    pub fn unpinned(
        &self,
        dev: bool,
        hardware_only: bool,
        config_hash: Option<[u8; 32]>,
    ) -> Vec<String> {
        Pinnable::ALL
            .into_iter()
            .filter(|p| applies(*p, dev, hardware_only))
            .filter(|p| !p.pinned_by(self))
            .map(|p| {
                let source = self
                    .unpinned
                    .iter()
                    .find(|(q, _)| *q == p)
                    .map(|(_, s)| s.clone())
                    .unwrap_or_else(|| format!("policy {} does not pin it", self.label()));
                let value = match (p, config_hash) {
                    (Pinnable::ConfigHash, Some(h)) => format!(" (recorded: 0x{})", hex::encode(h)),
                    _ => String::new(),
                };
                format!("UNPINNED {}{value}: {source}", p.label())
            })
            .collect()
    }
}

/// Whether `p` exists in this kind of check: a dev answer has no hardware value, a hardware-only
/// check looks at the measurements only.
fn applies(p: Pinnable, dev: bool, hardware_only: bool) -> bool {
    if dev && p.hardware() {
        return false;
    }
    !hardware_only || p.measurement()
}

/// What a check without any policy leaves open: everything.
pub fn nothing_pinned(dev: bool) -> String {
    let list: Vec<&str> = Pinnable::ALL
        .into_iter()
        .filter(|p| !(dev && p.hardware()))
        .map(Pinnable::label)
        .collect();
    format!(
        "UNPINNED: no policy, nothing is pinned ({})",
        list.join(", ")
    )
}
