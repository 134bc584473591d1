//! The provider commands: list-service and verify-provider, and the attestation options that
//! create-task shares.

use std::path::PathBuf;

use clap::Args;
use serde_json::{Value, json};

use super::{Ctx, Output, dev_warning, to_json, verify_options};
use crate::api::ProviderApi;
use crate::chain::ServiceView;
use crate::config::parse_address;
use crate::error::{ClientError, Result, exit};

/// Options of the attestation check.
#[derive(Debug, Args, Clone)]
pub struct VerifyArgs {
    /// The policy: `release` (the default: deploy/policy.toml, shipped with this client), `dev`
    /// (deploy/policy-dev.toml: the insecure dev source only, e.g. the demo's stack) or a TOML file.
    #[arg(long, conflicts_with = "no_policy")]
    pub policy: Option<String>,
    /// Check without any policy: the report says UNPINNED (nothing is pinned) instead of failing.
    #[arg(long)]
    pub no_policy: bool,
    /// Pin the provider's config hash (0x + 64 hex, repeatable): the SHA-256 of the document its
    /// GET /v1/config serves. Replaces the policy's `app.config_hashes`.
    #[arg(long)]
    pub config_hash: Vec<String>,
    /// DCAP collateral JSON (dcap-qvl format, as a PCCS serves it). Default: fetched from a PCCS
    /// (--pccs, default Intel PCS) through the collateral cache.
    #[arg(long)]
    pub collateral: Option<PathBuf>,
    /// PCCS base URL for collateral (default: Intel PCS).
    #[arg(long, conflicts_with = "collateral")]
    pub pccs: Option<String>,
    /// Collateral cache directory (default: ~/.cache/sealtune/collateral), used until each
    /// entry's nextUpdate.
    #[arg(long, conflicts_with = "collateral")]
    pub collateral_cache: Option<PathBuf>,
    /// Never fetch collateral: --collateral or the cache only.
    #[arg(long, conflicts_with = "pccs")]
    pub offline: bool,
    /// Accept the INSECURE dev attestation source (no TEE: the provider sees everything). Local tests only.
    #[arg(long)]
    pub allow_dev_quote: bool,
    /// Accept a provider that cannot prove freshness (it ignores ?nonce=, as official 0G workers
    /// do): its quote could be a replay. Refused by default.
    #[arg(long)]
    pub allow_no_freshness: bool,
    /// Accept a TEE signer the contract owner has not acknowledged (settlements revert until they do).
    /// Refused by default.
    #[arg(long)]
    pub allow_unacknowledged_signer: bool,
    /// An application event allowed in the event log after boot (repeatable).
    #[arg(long = "allow-app-event")]
    pub allow_app_events: Vec<String>,
}

/// Arguments of `sealtune list-service`.
#[derive(Debug, Args)]
pub struct ListServiceArgs {
    /// Only services whose URL, GPU type or a model name contains this text (case-insensitive).
    #[arg(long)]
    pub filter: Option<String>,
    /// Also ask each provider how many tasks it has queued.
    #[arg(long)]
    pub pending: bool,
}

impl ListServiceArgs {
    pub(super) async fn run(&self, ctx: &Ctx<'_>) -> Result<Output> {
        let mut services = ctx.chain()?.list_services().await?;
        if let Some(f) = &self.filter {
            services.retain(|sv| sv.matches(f));
        }
        let mut rows = Vec::new();
        let mut h = String::new();
        for sv in &services {
            let queued = if self.pending {
                ProviderApi::pending_at(&sv.url).await
            } else {
                None
            };
            let mut row = to_json(sv);
            if self.pending
                && let Value::Object(m) = &mut row
            {
                m.insert("pending".into(), json!(queued));
            }
            rows.push(row);
            h.push_str(&service_line(sv, queued));
        }
        if services.is_empty() {
            h.push_str("no fine-tuning services registered");
        }
        Ok(Output::new(Value::Array(rows), h.trim_end()))
    }
}

/// One service of `list-service`, two lines.
fn service_line(sv: &ServiceView, queued: Option<u64>) -> String {
    format!(
        "{}  {}\n  price {} neuron/token, {} x {}, models [{}], TEE signer {}{}{}{}\n",
        sv.provider,
        sv.url,
        sv.price_per_token,
        sv.quota.gpu_count,
        sv.quota.gpu_type,
        sv.models.join(", "),
        sv.tee_signer,
        if sv.tee_signer_acknowledged {
            ""
        } else {
            " (NOT acknowledged by the contract owner)"
        },
        if sv.occupied { ", occupied" } else { "" },
        queued
            .map(|q| format!(", {q} task(s) queued"))
            .unwrap_or_default(),
    )
}

/// Arguments of `sealtune verify-provider`.
#[derive(Debug, Args)]
pub struct VerifyProviderArgs {
    /// The provider's address.
    #[arg(long)]
    pub provider: String,
    /// Save the provider's /v1/quote answer here (for `sealtune-verify quote --file`).
    #[arg(long)]
    pub save_quote: Option<PathBuf>,
    /// Attestation options.
    #[command(flatten)]
    pub verify: VerifyArgs,
}

impl VerifyProviderArgs {
    pub(super) async fn run(&self, ctx: &Ctx<'_>) -> Result<Output> {
        let provider = parse_address("--provider", &self.provider)?;
        let opts = verify_options(&self.verify, ctx.env)?;
        dev_warning(self.verify.allow_dev_quote);
        let chain = ctx.chain()?;
        let v = crate::attest::verify_provider(&chain, provider, &opts).await?;
        crate::flow::record_tls_pin(&ctx.tls_pins()?, chain.contracts().serving, &v, opts.now)?;
        if let Some(p) = &self.save_quote {
            std::fs::write(p, &v.raw_quote).map_err(|e| ClientError::io(p, e))?;
        }
        let mut out = Output::new(to_json(&v), v.render_human());
        if !v.verified {
            // The report is the answer; the exit code says it failed.
            out.exit_code = exit::VERIFICATION;
        }
        Ok(out)
    }
}
