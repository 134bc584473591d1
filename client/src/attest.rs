//! `verify-provider`: check a provider's attestation against its on-chain service before any money
//! or data moves.
//!
//! The client picks a fresh 32-byte nonce, fetches `GET /v1/quote?nonce=…` from the service's
//! registered URL, and runs the verifier library (`sealtune_verifier::verify::verify_document`:
//! DCAP, quote signature chain, event log, compose hash, report_data) with the expectation that the
//! report_data binds the service's on-chain `teeSignerAddress` and the nonce, through the attestation
//! document v2 a sealtune provider declares (docs/PROTOCOL.md §5.1). Providers that ignore the nonce
//! (official 0G workers) answer with the 0G ASCII layout, which binds the signer but proves no
//! freshness: refused unless `allow_no_freshness`. The contract owner must have acknowledged the
//! signer, unless `allow_unacknowledged_signer`.
//!
//! A quote from the insecure dev attestation source (no TEE) is rejected unless
//! `allow_dev_quote` is set; even then its JSON report_data must bind the on-chain signer.

use alloy::primitives::Address;
use base64::Engine;
use sealtune_verifier::report_data::{BindingExpectations, check_binding};
use sealtune_verifier::verify::{
    Link, QuoteDocument, VerificationReport, VerifyOptions, verify_document,
};
use serde::Serialize;

use crate::api::ProviderApi;
use crate::chain::{Chain, ServiceView};
use crate::error::{ClientError, Result};

/// Inputs of a provider verification. Time and the nonce are inputs.
#[derive(Debug, Clone, Default)]
pub struct VerifyProviderOptions {
    /// Unix time at which collateral validity is judged.
    pub now: u64,
    /// The 32 random bytes sent as `?nonce=`.
    pub nonce: [u8; 32],
    /// DCAP collateral JSON (dcap-qvl format, as a PCCS serves it); without it the DCAP link fails
    /// for hardware quotes.
    pub collateral: Option<Vec<u8>>,
    /// Accept the insecure dev attestation source (local testing only).
    pub allow_dev_quote: bool,
    /// Accept an answer without a freshness proof (no attestation document for our nonce: official
    /// 0G workers). Off: such a provider fails the `nonce` link.
    pub allow_no_freshness: bool,
    /// Accept a TEE signer the contract owner has not acknowledged. Off: it fails the
    /// `owner acknowledgement` link.
    pub allow_unacknowledged_signer: bool,
    /// Application events allowed in the event log after boot.
    pub allowed_app_events: Vec<String>,
    /// A verifier policy file (`sealtune-verify quote --policy`): its rules apply, e.g. `[gpu]
    /// required = true` makes GPU evidence, verified and bound in the quote, a requirement.
    pub policy: Option<Box<sealtune_verifier::policy::Policy>>,
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
        out
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

/// Decode the JSON `report_data` (base64 per PROTOCOL.md §5, or 128 hex digits as raw dstack sends).
fn decode_report_data(text: &str) -> Option<[u8; 64]> {
    let t = text.trim();
    let bytes = if t.len() == 128 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(t).ok()?
    } else {
        base64::engine::general_purpose::STANDARD.decode(t).ok()?
    };
    bytes.try_into().ok()
}

/// Whether the answer declares an attestation document v2 (a sealtune provider answering the nonce).
fn declares_document(doc: &QuoteDocument) -> bool {
    doc.attestation_document.is_some()
}

/// The `nonce` link: fresh, or accepted without freshness only when asked.
fn freshness(
    fresh: bool,
    declared: bool,
    opts: &VerifyProviderOptions,
) -> std::result::Result<String, String> {
    match (fresh, declared, opts.allow_no_freshness) {
        (true, _, _) => Ok("the attestation document carries the nonce this client chose".into()),
        (false, true, _) => Err("the attestation document is for another nonce: a stale or relayed answer".into()),
        (false, false, true) => Ok(
            "no freshness proof (the provider ignores ?nonce=, 0G layout): accepted by --allow-no-freshness"
                .into(),
        ),
        (false, false, false) => Err(
            "the provider cannot prove freshness (it ignores ?nonce=; official 0G workers do): its quote could be a replay; pass --allow-no-freshness to accept it"
                .into(),
        ),
    }
}

/// The `owner acknowledgement` link: settlements revert until the owner acknowledges the signer.
fn acknowledgement(service: &ServiceView, allow: bool) -> std::result::Result<String, String> {
    match (service.tee_signer_acknowledged, allow) {
        (true, _) => Ok(format!(
            "the contract owner acknowledged TEE signer {}",
            service.tee_signer
        )),
        (false, true) => Ok(format!(
            "TEE signer {} is NOT acknowledged by the contract owner: accepted by --allow-unacknowledged-signer",
            service.tee_signer
        )),
        (false, false) => Err(format!(
            "TEE signer {} is not acknowledged by the contract owner (settlements would revert); pass --allow-unacknowledged-signer to go on anyway",
            service.tee_signer
        )),
    }
}

/// Verify the quote document `doc` of `service` (already fetched with `opts.nonce`).
pub fn verify_quote_document(
    service: &ServiceView,
    doc: &QuoteDocument,
    opts: &VerifyProviderOptions,
) -> Result<(VerificationReport, bool)> {
    let json_rd = doc.report_data.as_deref().and_then(decode_report_data);
    // A declared document must be for this client's nonce (the binding checks it and names a
    // stale or relayed one); without one the provider cannot prove freshness (0G workers).
    let declared = declares_document(doc);
    let document = match &doc.attestation_document {
        Some(d) => Some(
            sealtune_protocol::attestation::AttestationDocument::from_json(d)
                .map_err(|e| ClientError::Attestation(format!("attestation document: {e}")))?,
        ),
        None => None,
    };
    let fresh = document.is_some_and(|d| d.nonce.as_slice() == opts.nonce.as_slice());
    let collateral = opts
        .collateral
        .as_deref()
        .map(sealtune_verifier::dcap::parse_collateral)
        .transpose()
        .map_err(|e| ClientError::InvalidInput(format!("collateral: {e}")))?;
    let binding = BindingExpectations {
        signer: Some(service.tee_signer.into_array()),
        nonce: declared.then_some(opts.nonce),
        tappd_preimage: None,
        document,
        allow_zg_raw: false,
    };
    let vopts = VerifyOptions {
        now: opts.now,
        collateral,
        binding: binding.clone(),
        allow_dev_quote: opts.allow_dev_quote,
        event_policy: sealtune_verifier::event_log::EventPolicy {
            allowed_app_events: opts.allowed_app_events.clone(),
        },
        policy: opts.policy.as_deref().cloned(),
        ..Default::default()
    };
    let mut report = verify_document(doc, &vopts);
    let mut extra = Vec::new();
    if doc.dev && doc.quote.is_empty() {
        // The verifier stops after the dev link when there is no quote: still require the JSON
        // report_data to bind the on-chain signer, as the official client checks.
        let detail = match &json_rd {
            None => Err("no 64-byte report_data in the dev attestation answer".to_owned()),
            Some(rd) => check_binding(rd, &binding)
                .map(|_| {
                    format!(
                        "dev report_data binds the on-chain TEE signer {}",
                        service.tee_signer
                    )
                })
                .map_err(|e| e.to_string()),
        };
        extra.push(link("signer binding", detail));
    }
    extra.push(link("nonce", freshness(fresh, declared, opts)));
    extra.push(link(
        "owner acknowledgement",
        acknowledgement(service, opts.allow_unacknowledged_signer),
    ));
    report.links.extend(extra);
    report.verified = report.links.iter().all(|l| l.ok || !l.required);
    Ok((report, fresh))
}

fn link(name: &'static str, r: std::result::Result<String, String>) -> Link {
    let (ok, detail) = match r {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    Link {
        name,
        ok,
        required: true,
        detail,
    }
}

/// Fetch the provider's quote and verify it against its on-chain service.
pub async fn verify_provider(
    chain: &Chain,
    provider: Address,
    opts: &VerifyProviderOptions,
) -> Result<ProviderVerification> {
    let service = chain.service(provider).await?;
    let api = ProviderApi::new(&service.url)?;
    let quote = api.quote(Some(&opts.nonce)).await?;
    let doc = QuoteDocument::from_bytes(&quote.body).map_err(|e| ClientError::BadResponse {
        url: format!("{}/v1/quote", api.base()),
        detail: e.to_string(),
    })?;
    let (report, fresh) = verify_quote_document(&service, &doc, opts)?;
    Ok(ProviderVerification {
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
