//! `verify-provider`: check a provider's attestation against its on-chain service before any money
//! or data moves.
//!
//! The client picks a fresh 32-byte nonce, fetches `GET /v1/quote?nonce=…` from the service's
//! registered URL, and runs the verifier library (`sealtune_verifier::verify::verify_document`)
//! with the service's on-chain TEE signer, the nonce and a policy. The verifier decides: every
//! link, the order and the verdict are its (docs/verifier.md); this module only gathers the inputs.
//!
//! - Policy: the release policy shipped with the verifier (`deploy/policy.toml`) unless another is
//!   given (`--policy dev` for the main job's dev stack, or a file); `--config-hash` pins the
//!   provider's published config hash. Without any policy (`--no-policy`) the report says UNPINNED.
//! - Freshness: a sealtune provider answers the nonce with an attestation document v2
//!   (docs/PROTOCOL.md §5.1); providers that ignore it (official 0G workers) prove no freshness and
//!   fail the `nonce` link unless `allow_no_freshness`.
//! - The contract owner must have acknowledged the signer (`on-chain signer`), unless
//!   `allow_unacknowledged_signer`.
//! - Collateral for a hardware quote: the given file, else the verifier's cache and a PCCS / Intel
//!   PCS (`sealtune_verifier::collateral::obtain`; offline: the cache only).
//! - A dev answer (no TEE) fails the `dev attestation` link unless `allow_dev_quote`.
//! - TLS: an `https://` provider's quote is fetched over a connection whose key is recorded
//!   (`crate::tls`); when the provider attests a TLS key (`tee_keys.tls_spki_sha256`) every key the
//!   connection presented must be that one ([`ClientError::TlsKeyNotAttested`] otherwise), and the
//!   caller pins it ([`ProviderVerification::tls_pin`]).

use std::path::PathBuf;

use alloy::primitives::{Address, B256};
use sealtune_verifier::collateral::CollateralSource;
use sealtune_verifier::policy::Policy;
use sealtune_verifier::report_data::BindingExpectations;
use sealtune_verifier::verify::{
    QuoteDocument, VerificationReport, VerifyOptions, verify_document,
};
use serde::Serialize;

use crate::api::ProviderApi;
use crate::chain::{Chain, ServiceView};
use crate::error::{ClientError, Result};
use crate::tls::ProviderTls;

/// Inputs of a provider verification. Time and the nonce are inputs.
#[derive(Debug, Clone, Default)]
pub struct VerifyProviderOptions {
    /// Unix time at which collateral validity is judged.
    pub now: u64,
    /// The 32 random bytes sent as `?nonce=`.
    pub nonce: [u8; 32],
    /// DCAP collateral JSON (dcap-qvl format, as a PCCS serves it); without it a hardware quote's
    /// collateral comes from [`collateral_source`](Self::collateral_source).
    pub collateral: Option<Vec<u8>>,
    /// Where collateral comes from when no file is given: a PCCS (default Intel PCS), a cache
    /// directory, or the cache only (`offline`).
    pub collateral_source: CollateralSource,
    /// The policy; `None`: the release policy shipped with the verifier. (Boxed: a policy is large
    /// and these options travel by value in `VerifyMode`.)
    pub policy: Option<Box<Policy>>,
    /// Check without any policy: the report says UNPINNED instead of failing.
    pub no_policy: bool,
    /// The provider's config hashes to pin (`--config-hash`), replacing the policy's.
    pub config_hashes: Vec<[u8; 32]>,
    /// Accept the insecure dev attestation source (local testing only).
    pub allow_dev_quote: bool,
    /// Accept an answer without a freshness proof (no attestation document for our nonce: official
    /// 0G workers). Off: such a provider fails the `nonce` link.
    pub allow_no_freshness: bool,
    /// Accept a TEE signer the contract owner has not acknowledged. Off: it fails the
    /// `on-chain signer` link.
    pub allow_unacknowledged_signer: bool,
    /// Application events allowed in the event log after boot.
    pub allowed_app_events: Vec<String>,
}

/// The default collateral cache: `$XDG_CACHE_HOME/sealtune/collateral`, else
/// `~/.cache/sealtune/collateral`.
pub fn default_collateral_cache() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("sealtune").join("collateral"))
}

/// The outcome of [`verify_provider`].
#[derive(Debug, Clone, Serialize)]
pub struct ProviderVerification {
    /// The provider.
    pub provider: Address,
    /// Its registered URL.
    pub url: String,
    /// The on-chain TEE signer the quote must bind.
    pub tee_signer: Address,
    /// Whether the contract owner acknowledged that signer (settlement requires it).
    pub tee_signer_acknowledged: bool,
    /// Whether the quote carries the nonce this client chose.
    pub fresh: bool,
    /// Whether the answer came from the insecure dev attestation source.
    pub dev_quote: bool,
    /// The `ZG-Quote-Signature` header, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quote_signature_header: Option<String>,
    /// Every required link holds.
    pub verified: bool,
    /// The verifier's report, link by link.
    pub report: VerificationReport,
    /// The raw `/v1/quote` body (for `sealtune-verify quote --file`).
    #[serde(skip)]
    pub raw_quote: Vec<u8>,
    /// The dataset key the provider's TEE publishes (SEC1 compressed, hex), signed by the on-chain
    /// TEE signer and bound by the attestation document for our nonce; datasets are sealed to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_key: Option<String>,
    /// The published keys, checked ([`crate::confidential::tee_keys_of`]); `None` when the
    /// provider publishes none.
    #[serde(skip)]
    pub keys: Option<crate::confidential::ProviderKeys>,
    /// What the connection's TLS was.
    pub tls: TlsCheck,
    /// The attested TLS key (SubjectPublicKeyInfo SHA-256) the connection ended at, when
    /// [`TlsCheck::Attested`]: what later requests pin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_spki_sha256: Option<B256>,
}

/// What `verify-provider` found of the provider's TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsCheck {
    /// Plain HTTP: no TLS (the host and the network read and can change the traffic).
    PlainHttp,
    /// HTTPS ending at the key the provider's TEE attests (pinned for later requests).
    Attested,
    /// HTTPS, but the provider attests no TLS key: it may end outside the TEE (a TLS-terminating
    /// gateway); later requests need `--allow-ca-tls`.
    NotAttested,
}

impl TlsCheck {
    fn describe(self) -> &'static str {
        match self {
            TlsCheck::PlainHttp => {
                "plain HTTP: requests are readable by the host and the network (sealed datasets and v2 requests stay protected)"
            }
            TlsCheck::Attested => {
                "HTTPS ends at the TLS key the provider's TEE attests: pinned for later requests"
            }
            TlsCheck::NotAttested => {
                "HTTPS, but the provider attests no TLS key: its TLS may end outside the TEE (later requests need --allow-ca-tls)"
            }
        }
    }
}

impl ProviderVerification {
    /// One line per link, then the verdict.
    pub fn render_human(&self) -> String {
        let mut out = format!(
            "provider {} at {}\non-chain TEE signer {} (owner-acknowledged: {})\n",
            self.provider, self.url, self.tee_signer, self.tee_signer_acknowledged
        );
        if self.dev_quote {
            out.push_str("WARNING: INSECURE DEV ATTESTATION (no TEE): the provider can read your data and model\n");
        }
        if !self.fresh {
            out.push_str("note: the answer carries no attestation document for our nonce: it could be a replay\n");
        }
        out.push_str(&self.report.render_human());
        out.push_str(&format!("TLS: {}", self.tls.describe()));
        if let Some(k) = self.tls_spki_sha256 {
            out.push_str(&format!(" (key SHA-256 {k})"));
        }
        out.push('\n');
        if let Some(key) = &self.dataset_key {
            out.push_str(&format!(
                "dataset key {key} (signed by the TEE signer, bound by the attestation document): create-task seals datasets to it\n"
            ));
        }
        out
    }

    /// The pin of the attested TLS key, when verified and the connection ended at it.
    pub fn tls_pin(&self, serving: Address, now: u64) -> Option<crate::tls::Pin> {
        if !self.verified {
            return None;
        }
        Some(crate::tls::Pin {
            serving,
            provider: self.provider,
            url: self.url.clone(),
            tee_signer: self.tee_signer,
            tls_spki_sha256: self.tls_spki_sha256?,
            verified_at: now,
        })
    }

    /// `Ok(())` when verified, else a [`ClientError::Attestation`] naming the failed links.
    pub fn require_verified(&self) -> Result<()> {
        if self.verified {
            return Ok(());
        }
        let failed: Vec<String> = self
            .report
            .links
            .iter()
            .filter(|l| l.required && !l.ok)
            .map(|l| format!("{}: {}", l.name, l.detail))
            .collect();
        Err(ClientError::Attestation(failed.join("; ")))
    }
}

/// The policy the check runs under: the one given, else the shipped release policy; none with
/// `no_policy`. `--config-hash` pins replace the policy's.
fn policy_for(opts: &VerifyProviderOptions) -> Result<Option<Policy>> {
    if opts.no_policy {
        if !opts.config_hashes.is_empty() {
            return Err(ClientError::InvalidInput(
                "--config-hash pins a policy value: it needs a policy, not --no-policy".into(),
            ));
        }
        return Ok(None);
    }
    let mut policy = match &opts.policy {
        Some(p) => Policy::clone(p),
        None => sealtune_verifier::policy::shipped::release()
            .map_err(|e| ClientError::InvalidInput(format!("the shipped release policy: {e}")))?,
    };
    policy.pin_config_hashes(opts.config_hashes.clone());
    Ok(Some(policy))
}

/// The collateral for `doc`: the given file, else (a hardware quote) the cache or a PCCS.
async fn collateral_for(
    doc: &QuoteDocument,
    opts: &VerifyProviderOptions,
) -> Result<Option<dcap_qvl::QuoteCollateralV3>> {
    if let Some(bytes) = &opts.collateral {
        return sealtune_verifier::dcap::parse_collateral(bytes)
            .map(Some)
            .map_err(|e| ClientError::InvalidInput(format!("collateral: {e}")));
    }
    if doc.quote.is_empty() {
        return Ok(None);
    }
    let (c, _from) =
        sealtune_verifier::collateral::obtain(&doc.quote, &opts.collateral_source, opts.now)
            .await
            .map_err(|e| ClientError::Attestation(format!("DCAP collateral: {e}")))?;
    Ok(Some(c))
}

/// Verify the quote document `doc` of `service` on `serving` (already fetched with `opts.nonce`),
/// with `collateral` for a hardware quote. Returns the verifier's report and whether the answer
/// carries this client's nonce.
pub fn verify_quote_document(
    service: &ServiceView,
    serving: Address,
    doc: &QuoteDocument,
    collateral: Option<dcap_qvl::QuoteCollateralV3>,
    opts: &VerifyProviderOptions,
) -> Result<(VerificationReport, bool)> {
    let fresh = doc
        .attestation_document
        .as_ref()
        .and_then(|d| sealtune_protocol::attestation::AttestationDocument::from_json(d).ok())
        .is_some_and(|d| d.nonce.as_slice() == opts.nonce.as_slice());
    let vopts = VerifyOptions {
        now: opts.now,
        collateral,
        binding: BindingExpectations {
            signer: Some(service.tee_signer.into_array()),
            nonce: Some(opts.nonce),
            ..Default::default()
        },
        allow_dev_quote: opts.allow_dev_quote,
        event_policy: sealtune_verifier::event_log::EventPolicy {
            allowed_app_events: opts.allowed_app_events.clone(),
        },
        policy: policy_for(opts)?,
        policy_required: !opts.no_policy,
        registered_signer: Some(sealtune_verifier::chain::RegisteredSigner {
            serving,
            provider: service.provider,
            tee_signer: service.tee_signer,
            acknowledged: service.tee_signer_acknowledged,
            url: service.url.clone(),
            block: None,
        }),
        allow_no_freshness: opts.allow_no_freshness,
        allow_unacknowledged_signer: opts.allow_unacknowledged_signer,
        ..Default::default()
    };
    Ok((verify_document(doc, &vopts), fresh))
}

/// Fetch the provider's quote and verify it against its on-chain service.
pub async fn verify_provider(
    chain: &Chain,
    provider: Address,
    opts: &VerifyProviderOptions,
) -> Result<ProviderVerification> {
    let service = chain.service(provider).await?;
    let https = crate::tls::is_https(&service.url);
    let api = ProviderApi::with_tls(&service.url, https.then_some(ProviderTls::Observe))?;
    let quote = api.quote(Some(&opts.nonce)).await?;
    let doc = QuoteDocument::from_bytes(&quote.body).map_err(|e| ClientError::BadResponse {
        url: format!("{}/v1/quote", api.base()),
        detail: e.to_string(),
    })?;
    let collateral = collateral_for(&doc, opts).await?;
    let (report, fresh) =
        verify_quote_document(&service, chain.contracts().serving, &doc, collateral, opts)?;
    let keys = crate::confidential::tee_keys_of(&quote.body, service.tee_signer, &opts.nonce)?;
    let tls = check_tls(&api, keys.as_ref())?;
    Ok(ProviderVerification {
        tls,
        tls_spki_sha256: keys
            .as_ref()
            .and_then(|k| k.tls_spki_sha256)
            .filter(|_| tls == TlsCheck::Attested),
        dataset_key: keys
            .as_ref()
            .map(|k| hex::encode(sealtune_protocol::envelope::compressed(&k.dataset_key))),
        keys,
        provider,
        url: service.url.clone(),
        tee_signer: service.tee_signer,
        tee_signer_acknowledged: service.tee_signer_acknowledged,
        fresh,
        dev_quote: doc.dev,
        quote_signature_header: quote.quote_signature,
        verified: report.verified,
        report,
        raw_quote: quote.body,
    })
}

/// The TLS of the connection `api` fetched the quote over, against the attested `keys`: every key
/// it presented must be the attested one.
fn check_tls(
    api: &ProviderApi,
    keys: Option<&crate::confidential::ProviderKeys>,
) -> Result<TlsCheck> {
    if !crate::tls::is_https(api.base()) {
        return Ok(TlsCheck::PlainHttp);
    }
    let Some(attested) = keys.and_then(|k| k.tls_spki_sha256) else {
        return Ok(TlsCheck::NotAttested);
    };
    let seen = api.tls_keys_seen();
    if let Some(got) = seen.iter().find(|k| **k != attested) {
        return Err(ClientError::TlsKeyNotAttested {
            url: format!("{}/v1/quote", api.base()),
            expected: attested,
            got: *got,
        });
    }
    if seen.is_empty() {
        return Err(ClientError::Attestation(
            "the HTTPS connection presented no TLS key to compare with the attested one".into(),
        ));
    }
    Ok(TlsCheck::Attested)
}
