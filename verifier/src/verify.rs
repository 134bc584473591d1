//! The whole quote check, link by link: input → [`VerificationReport`].

use serde::Serialize;

use crate::chain::RegisteredSigner;
use crate::dcap::{DcapOutcome, TcbPolicy, verify_dcap};
use crate::event_log::{
    Event, EventLogError, EventLogSummary, EventPolicy, check_compose_hash, parse_event_log,
    verify_event_log,
};
use crate::pck::{PckError, PckInfo, parse_pck_chain};
use crate::quote::ParsedQuote;
use crate::report_data::{
    Binding, BindingExpectations, check_binding, check_json_report_data, decode_json_report_data,
};

/// Why an input document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// JSON without a usable `quote` field.
    #[error("quote JSON: {0}")]
    Json(String),
    /// The quote is neither hex nor binary.
    #[error("quote is not valid hex: {0}")]
    Hex(String),
}

/// A quote as served by `GET /v1/quote` / dstack `GetQuote`, or a bare quote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuoteDocument {
    /// The raw quote.
    pub quote: Vec<u8>,
    /// The JSON `report_data` field, as sent.
    pub report_data: Option<String>,
    /// The event log (a JSON string).
    pub event_log: Option<String>,
    /// `tcb_info` (a JSON string containing `app_compose`).
    pub tcb_info: Option<String>,
    /// The response says it comes from the insecure dev attestation source.
    pub dev: bool,
    /// The `ZG-Quote-Signature` response header, when the quote was fetched from a provider that
    /// sends one (newer 0G brokers); reported, not interpreted.
    pub zg_quote_signature: Option<String>,
    /// The `attestation_document` a sealtune provider declares for a nonce quote (parsed and
    /// checked by the signer-binding link).
    pub attestation_document: Option<serde_json::Value>,
    /// The `nvidia_payload` field as served (GPU evidence, checked by [`crate::gpu`]).
    pub nvidia_payload: Option<serde_json::Value>,
    /// The `tee_keys` a sealtune provider publishes (dataset key, TLS key hash; checked by the
    /// `TEE keys` link).
    pub tee_keys: Option<serde_json::Value>,
    /// SHA-256 of the SubjectPublicKeyInfo of every key the HTTPS connection the document was
    /// fetched over presented (`--url https://…`, [`crate::tls_key`]); empty otherwise.
    pub tls_keys_seen: Vec<[u8; 32]>,
}

impl QuoteDocument {
    /// Read a GetQuote JSON response, a hex quote, or a binary quote.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, InputError> {
        let trimmed = bytes.trim_ascii();
        if trimmed.first() == Some(&b'{') {
            let v: serde_json::Value =
                serde_json::from_slice(trimmed).map_err(|e| InputError::Json(e.to_string()))?;
            let string_or_json = |k: &str| -> Option<String> {
                match v.get(k)? {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                }
            };
            let dev = v.get("dev").and_then(|d| d.as_bool()).unwrap_or(false)
                || v.get("attestation").and_then(|a| a.as_str()) == Some("dev");
            let quote = match v.get("quote").and_then(|q| q.as_str()) {
                Some(q) => decode_hex(q)?,
                None if dev => Vec::new(),
                None => return Err(InputError::Json("no \"quote\" string".into())),
            };
            return Ok(Self {
                quote,
                report_data: string_or_json("report_data"),
                event_log: string_or_json("event_log"),
                tcb_info: string_or_json("tcb_info"),
                dev,
                zg_quote_signature: None,
                attestation_document: v
                    .get("attestation_document")
                    .filter(|d| !d.is_null())
                    .cloned(),
                nvidia_payload: v.get("nvidia_payload").filter(|d| !d.is_null()).cloned(),
                tee_keys: v.get("tee_keys").filter(|d| !d.is_null()).cloned(),
                tls_keys_seen: Vec::new(),
            });
        }
        let is_hex = !trimmed.is_empty()
            && trimmed
                .iter()
                .all(|b| b.is_ascii_hexdigit() || b.is_ascii_whitespace());
        let quote = if is_hex {
            let text: String = trimmed
                .iter()
                .filter(|b| !b.is_ascii_whitespace())
                .map(|b| char::from(*b))
                .collect();
            decode_hex(&text)?
        } else {
            bytes.to_vec()
        };
        Ok(Self {
            quote,
            ..Default::default()
        })
    }
}

fn decode_hex(s: &str) -> Result<Vec<u8>, InputError> {
    let s = s.trim();
    hex::decode(s.strip_prefix("0x").unwrap_or(s)).map_err(|e| InputError::Hex(e.to_string()))
}

/// Everything the check depends on besides the document. Time is an input.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Unix time at which collateral validity is judged.
    pub now: u64,
    /// Collateral; `None` fails the DCAP link. This check never fetches: the caller passes it (the CLI
    /// gets it from `--collateral`, or the cache or a PCCS through [`crate::collateral::obtain`]).
    pub collateral: Option<dcap_qvl::QuoteCollateralV3>,
    /// Trust anchor (DER); `None` is Intel's production root.
    pub root_ca_der: Option<Vec<u8>>,
    /// TCB policy.
    pub tcb_policy: TcbPolicy,
    /// Event log policy.
    pub event_policy: EventPolicy,
    /// Signer / nonce / tappd preimage expectations.
    pub binding: BindingExpectations,
    /// Accept a response from the insecure dev attestation source.
    pub allow_dev_quote: bool,
    /// A measurement / TCB policy file; its rules apply on top of the fields above, and a failure
    /// names the policy line.
    pub policy: Option<crate::policy::Policy>,
    /// The TEE signer registered on chain for the provider: report_data must bind it, and the
    /// owner must have acknowledged it.
    pub registered_signer: Option<crate::chain::RegisteredSigner>,
    /// What the quote must be: a provider's TDX quote (the default), or, asked for explicitly, an
    /// SGX enclave's.
    pub tee: ExpectedTee,
    /// Check the hardware only (quote, Intel chain, TCB, QE identity, TD attributes, measurements):
    /// for an auditor holding a bare quote. report_data, the event log, the compose hash and the
    /// app and event policy are not checked, and the report says so.
    pub hardware_only: bool,
    /// Without a policy, fail the `policy` link (`UNPINNED`); off, the link is informational.
    /// `sealtune verify-provider` sets it unless `--no-policy`.
    pub policy_required: bool,
    /// Accept an answer without a freshness proof when a nonce was sent (no attestation document:
    /// 0G workers ignore the nonce); off, the `nonce` link fails.
    pub allow_no_freshness: bool,
    /// Accept a registered TEE signer the contract owner has not acknowledged; off, the
    /// `on-chain signer` link fails.
    pub allow_unacknowledged_signer: bool,
    /// Reference values for the GPU measurements (from `--rim`); `None`: not compared.
    pub gpu_reference: Option<crate::gpu::ReferenceValues>,
}

/// The kind of quote a check expects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum ExpectedTee {
    /// A provider's quote: TDX (TD attributes, event log and compose hash exist only there).
    #[default]
    ProviderTdx,
    /// An SGX enclave's quote, checked because the user asked for it (`quote --sgx`).
    SgxEnclave,
}

/// What a hardware-only report says of the links it did not check.
pub const HARDWARE_ONLY_NOTE: &str = "hardware only: no binding was checked (report_data, signer, \
nonce, event log, compose hash, app and event policy): the quote shows only that a TD (or, with \
--sgx, an enclave) with these measurements ran on genuine Intel hardware at this TCB";

/// One link of the chain of trust.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    /// Link name.
    pub name: &'static str,
    /// Whether it holds.
    pub ok: bool,
    /// Whether the overall verdict depends on it.
    pub required: bool,
    /// What was found, or why it fails.
    pub detail: String,
}

/// The outcome of checking one quote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerificationReport {
    /// Time used (unix seconds).
    pub now: u64,
    /// The links, in chain order.
    pub links: Vec<Link>,
    /// The independent reading of the quote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quote: Option<ParsedQuote>,
    /// The PCK leaf.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pck: Option<PckInfo>,
    /// dcap-qvl's outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dcap: Option<DcapOutcome>,
    /// The event log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_log: Option<EventLogSummary>,
    /// Every required link holds.
    pub verified: bool,
    /// The GPU evidence (`nvidia_payload`), when the answer carries some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<crate::gpu::GpuOutcome>,
    /// Only the hardware was checked (`quote --hardware-only`): no binding.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hardware_only: bool,
}

impl VerificationReport {
    /// An empty report at time `now`, for checks other than a quote (settlement, deliverable).
    pub fn new(now: u64) -> Self {
        Self {
            now,
            ..Default::default()
        }
    }

    /// Add a required link: `Ok(detail)` holds, `Err(reason)` fails.
    pub fn push_link(&mut self, name: &'static str, result: Result<String, String>) {
        self.push(name, result);
    }

    /// Add an informational link (shown, but the verdict does not depend on it).
    pub fn push_info(&mut self, name: &'static str, result: Result<String, String>) {
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        self.links.push(Link {
            name,
            ok,
            required: false,
            detail,
        });
    }

    /// Set [`verified`](Self::verified) from the links: every required link holds (and there is one).
    pub fn finish(&mut self) {
        self.verified = !self.links.is_empty() && self.links.iter().all(|l| l.ok || !l.required);
    }

    /// The link named `name`, if the report has one.
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    fn push(&mut self, name: &'static str, result: Result<String, String>) {
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        self.links.push(Link {
            name,
            ok,
            required: true,
            detail,
        });
    }

    /// The human report: one line per link.
    pub fn render_human(&self) -> String {
        let mut out = String::new();
        for l in &self.links {
            let mark = if l.ok { "✓" } else { "✗" };
            let opt = if l.required { "" } else { " (informational)" };
            out.push_str(&format!("{mark} {:<22} {}{opt}\n", l.name, l.detail));
        }
        if let Some(q) = &self.quote {
            out.push_str(&format!(
                "  quote v{} {} tee_type={:#x}\n",
                q.header.version,
                q.body.shape(),
                q.header.tee_type
            ));
            if let Some(td) = q.body.td() {
                out.push_str(&format!("  MRTD   {}\n", hex::encode(td.mr_td)));
                for (i, r) in td.rtmr.iter().enumerate() {
                    out.push_str(&format!("  RTMR{i}  {}\n", hex::encode(r)));
                }
            }
            out.push_str(&format!(
                "  report_data {}\n",
                hex::encode(q.body.report_data())
            ));
        }
        if let Some(p) = &self.pck {
            out.push_str(&format!(
                "  PCK FMSPC {} PCESVN {} CPUSVN {} PPID {}\n",
                p.fmspc,
                p.pce_svn,
                p.cpu_svn,
                p.ppid.as_deref().unwrap_or("-")
            ));
        }
        if let Some(e) = &self.event_log {
            for (name, value) in e.decoded() {
                out.push_str(&format!("  {name:<16} {value}\n"));
            }
            for (name, value) in &e.app_events {
                out.push_str(&format!("  app event {name}: {value}\n"));
            }
        }
        out.push_str(match (self.verified, self.hardware_only) {
            (true, false) => "VERIFIED: every required link holds\n",
            (true, true) => {
                "VERIFIED (hardware only): the Intel chain, TCB, QE identity and TD attributes hold; \
                 no binding was checked\n"
            }
            (false, _) => "NOT VERIFIED\n",
        });
        out
    }
}

/// The link names of a quote check, in report order (docs/verifier.md): a link appears only when
/// its check applies, never elsewhere in the list (the per-GPU links, `GPU report` to `GPU versions`,
/// repeat once per GPU).
pub const LINK_ORDER: [&str; 38] = [
    "dev attestation",
    "policy",
    "quote parse",
    "TEE type",
    "quote signature",
    "QE binds key",
    "PCK leaf",
    "QE report signature",
    "TD attributes",
    "DCAP (dcap-qvl)",
    "cross-check",
    "policy advisories",
    "policy measurements",
    "binding",
    "JSON report_data",
    "signer binding",
    "nonce",
    "on-chain signer",
    "TEE keys",
    "ZG-Quote-Signature",
    "event log",
    "compose hash",
    "config hash",
    "policy app",
    "policy events",
    "policy config",
    "GPU evidence",
    "GPU binding",
    "GPU report",
    "GPU chain",
    "GPU signature",
    "GPU FWID",
    "GPU nonce",
    "GPU measurements",
    "GPU versions",
    "policy gpu",
    "dstack GPU events",
    "unpinned",
];

/// Check a quote document: the policy's kind, DCAP, the independent reading and its cross-check,
/// report_data, nonce, on-chain signer, event log, compose and config hashes, the policy's pins,
/// and what it leaves unpinned. The verdict is [`VerificationReport::finish`]'s.
///
/// A dev answer (`"dev": true`, no quote) runs the same chain without the hardware links: its
/// JSON report_data is the binding, its event log replays against the `tcb_info.rtmr3` the
/// provider states itself. Nothing of it is hardware-backed, and the `dev attestation` link
/// fails unless [`VerifyOptions::allow_dev_quote`].
pub fn verify_document(doc: &QuoteDocument, opts: &VerifyOptions) -> VerificationReport {
    let mut rep = VerificationReport::new(opts.now);
    let dev_answer = doc.dev && doc.quote.is_empty();
    if doc.dev {
        rep.push("dev attestation", dev_attestation(opts));
    }
    push_policy_link(&mut rep, opts, doc.dev);
    if dev_answer {
        push_dev_answer_links(&mut rep, doc, opts);
        crate::gpu::links::push_gpu_links(&mut rep, doc, opts);
    } else {
        push_quote_links(&mut rep, doc, opts);
    }
    if let Some(p) = &opts.policy {
        let config = recorded_config_hash(&rep, doc).ok().flatten();
        for line in p.unpinned(doc.dev, rep.hardware_only, config) {
            rep.push_info("unpinned", Err(line));
        }
    }
    rep.finish();
    rep
}

/// `policy`: the policy is for this kind of answer; without one, `UNPINNED` (failing when a
/// policy is required).
fn push_policy_link(rep: &mut VerificationReport, opts: &VerifyOptions, dev: bool) {
    match (&opts.policy, opts.policy_required) {
        (Some(p), _) => rep.push("policy", p.check_kind(dev)),
        (None, true) => rep.push(
            "policy",
            Err(format!(
                "{}; give a policy (sealtune verify-provider uses the release policy unless told \
                 otherwise) or accept this explicitly with --no-policy",
                crate::policy::nothing_pinned(dev)
            )),
        ),
        (None, false) => rep.push_info("policy", Err(crate::policy::nothing_pinned(dev))),
    }
}

/// The links of a hardware quote, in chain order.
fn push_quote_links(rep: &mut VerificationReport, doc: &QuoteDocument, opts: &VerifyOptions) {
    // 1. The independent reading.
    let parsed = match ParsedQuote::parse(&doc.quote) {
        Ok(p) => p,
        Err(e) => {
            rep.push("quote parse", Err(e.to_string()));
            return;
        }
    };
    rep.push("quote parse", Ok(quote_parse(&parsed)));
    rep.push("TEE type", tee_type(&parsed, opts.tee));
    rep.push("quote signature", quote_signature(&parsed, &doc.quote));
    rep.push("QE binds key", qe_binds_key(&parsed));
    let pck = parse_pck_chain(&parsed.cert_data);
    rep.push("PCK leaf", pck_leaf(&pck));
    if let Ok(p) = &pck {
        rep.push("QE report signature", qe_report_signature(&parsed, p));
    }
    rep.push("TD attributes", td_attributes(&parsed));
    // 2. DCAP with dcap-qvl, then the cross-check and the policy.
    push_dcap_links(rep, doc, &parsed, pck.as_ref().ok(), opts);
    if let Some(r) = policy_measurements(&parsed, opts) {
        rep.push("policy measurements", r);
    }
    if opts.hardware_only {
        rep.push_info("binding", Ok(HARDWARE_ONLY_NOTE.into()));
        rep.hardware_only = true;
    } else {
        // 3. report_data, freshness, the on-chain signer.
        push_report_data_links(rep, doc, Some(parsed.body.report_data()), opts);
        // 4. Event log, compose hash, config hash, and the app and event policy.
        if let Some(td) = parsed.body.td() {
            push_event_log_links(rep, doc, Ok(td.rtmr), opts);
        }
        push_config_link(rep, doc);
        push_app_policy_links(rep, doc, opts);
        // 5. The GPUs (crate::gpu): evidence, binding, the `[gpu]` policy.
        crate::gpu::links::push_gpu_links(rep, doc, opts);
    }
    rep.quote = Some(parsed);
    rep.pck = pck.ok();
}

/// The links of a dev answer (no quote): binding through its JSON report_data, freshness, the
/// on-chain signer, the event log against its stated RTMR3, compose and config hashes, the policy.
fn push_dev_answer_links(rep: &mut VerificationReport, doc: &QuoteDocument, opts: &VerifyOptions) {
    push_report_data_links(rep, doc, None, opts);
    push_event_log_links(rep, doc, dev_rtmrs(doc.tcb_info.as_deref()), opts);
    push_config_link(rep, doc);
    push_app_policy_links(rep, doc, opts);
}

/// The registers a dev answer's event log must replay to: RTMR0–2 empty (every dev event is a
/// runtime event) and the `rtmr3` its `tcb_info` states.
fn dev_rtmrs(tcb_info: Option<&str>) -> Result<[[u8; 48]; 4], String> {
    let info: serde_json::Value = tcb_info
        .and_then(|t| serde_json::from_str(t).ok())
        .ok_or("the dev answer has no tcb_info JSON stating its RTMR3")?;
    let text = info
        .get("rtmr3")
        .and_then(|r| r.as_str())
        .ok_or("the dev answer's tcb_info states no rtmr3")?;
    let rtmr3 = hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 48]>::try_from(b.as_slice()).ok())
        .ok_or("the dev answer's tcb_info.rtmr3 is not 48 bytes of hex")?;
    Ok([[0u8; 48], [0u8; 48], [0u8; 48], rtmr3])
}

/// A link's entry: what was found, or why it fails.
pub(crate) type Entry = Result<String, String>;

/// `dev attestation`: the insecure dev source is refused unless allowed.
fn dev_attestation(opts: &VerifyOptions) -> Entry {
    if opts.allow_dev_quote {
        Ok("insecure dev attestation source accepted (--allow-dev-quote): nothing below is hardware-backed".into())
    } else {
        Err("the provider uses the insecure dev attestation source (no TEE); rejected unless --allow-dev-quote".into())
    }
}

/// `TEE type`: a provider's quote is TDX; an SGX quote passes only when an SGX enclave was asked for.
fn tee_type(parsed: &ParsedQuote, expected: ExpectedTee) -> Entry {
    let tee = parsed.header.tee_type;
    match (parsed.body.td().is_some(), expected) {
        (true, ExpectedTee::ProviderTdx) => Ok(format!("TDX (tee_type {tee:#x})")),
        (false, ExpectedTee::ProviderTdx) => Err(format!(
            "SGX quote (tee_type {tee:#x}) refused: a provider's quote must be TDX (TD attributes, \
             event log and compose hash exist only there); check an SGX enclave explicitly with \
             `sealtune-verify quote --sgx`"
        )),
        (false, ExpectedTee::SgxEnclave) => Ok(format!(
            "SGX enclave (tee_type {tee:#x}), checked as asked (--sgx): not a provider's quote"
        )),
        (true, ExpectedTee::SgxEnclave) => Err(format!(
            "--sgx expects an SGX enclave's quote, this one is TDX (tee_type {tee:#x})"
        )),
    }
}

/// `quote parse`: what the independent reading found.
fn quote_parse(parsed: &ParsedQuote) -> String {
    format!(
        "v{} {} ({} signed bytes, {} trailing)",
        parsed.header.version,
        parsed.body.shape(),
        parsed.signed_len,
        parsed.trailing_len
    )
}

/// `quote signature`: the attestation key signs header and body.
fn quote_signature(parsed: &ParsedQuote, quote: &[u8]) -> Entry {
    parsed
        .verify_signature(quote)
        .map(|()| "ECDSA-P256 over header+body verifies with the attestation key".into())
        .map_err(|e| e.to_string())
}

/// `QE binds key`: the quoting enclave's report binds the attestation key.
fn qe_binds_key(parsed: &ParsedQuote) -> Entry {
    parsed
        .verify_qe_binding()
        .map(|()| "QE report_data = sha256(attestation key ‖ QE auth data)".into())
        .map_err(|e| e.to_string())
}

/// `PCK leaf`: the certification data holds a PCK chain.
fn pck_leaf(pck: &Result<PckInfo, PckError>) -> Entry {
    match pck {
        Ok(p) => Ok(format!(
            "FMSPC {} PCESVN {} ({} certificates)",
            p.fmspc,
            p.pce_svn,
            p.chain.len()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// `QE report signature`: the PCK leaf key signs the quoting enclave's report.
fn qe_report_signature(parsed: &ParsedQuote, pck: &PckInfo) -> Entry {
    parsed
        .verify_qe_report_signature(&pck.leaf_public_key)
        .map(|()| "signed by the PCK leaf key".into())
        .map_err(|e| format!("QE report {e}"))
}

/// `DCAP (dcap-qvl)` and, when it holds, `cross-check` (with a PCK leaf) and `policy advisories`
/// (with a policy that names them); dcap-qvl's outcome goes into the report.
fn push_dcap_links(
    rep: &mut VerificationReport,
    doc: &QuoteDocument,
    parsed: &ParsedQuote,
    pck: Option<&PckInfo>,
    opts: &VerifyOptions,
) {
    match dcap(doc, opts) {
        Ok(d) => {
            rep.push(
                "DCAP (dcap-qvl)",
                Ok(format!(
                    "TCB {} advisories [{}] FMSPC {}, collateral valid until {}",
                    d.status,
                    d.advisory_ids.join(", "),
                    d.fmspc,
                    d.collateral_expires
                )),
            );
            if let Some(p) = pck {
                rep.push("cross-check", cross_check(parsed, p, &d));
            }
            if let Some(r) = opts.policy.as_ref().and_then(|p| p.check_advisories(&d)) {
                rep.push("policy advisories", r);
            }
            rep.dcap = Some(d);
        }
        Err(e) => rep.push("DCAP (dcap-qvl)", Err(e)),
    }
}

/// dcap-qvl over the quote and collateral under the TCB policy; a rejection names the policy line
/// to blame when there is one.
fn dcap(doc: &QuoteDocument, opts: &VerifyOptions) -> Result<DcapOutcome, String> {
    let tcb_policy = match &opts.policy {
        Some(p) => p.tcb_policy(&opts.tcb_policy),
        None => opts.tcb_policy.clone(),
    };
    let Some(collateral) = &opts.collateral else {
        return Err(
            "no collateral (give --collateral FILE, or --pccs URL / --cache DIR to fetch it)"
                .into(),
        );
    };
    verify_dcap(
        &doc.quote,
        collateral,
        opts.now,
        &tcb_policy,
        opts.root_ca_der.as_deref(),
    )
    .map_err(|e| {
        let blame = match (&e, &opts.policy) {
            (crate::dcap::DcapError::Policy { status, reason }, Some(p)) => {
                p.blame_dcap_rejection(status, reason)
            }
            _ => None,
        };
        match blame {
            Some(b) => format!("{e}; {b}"),
            None => e.to_string(),
        }
    })
}

/// `cross-check`: the independent reading agrees with dcap-qvl's.
fn cross_check(parsed: &ParsedQuote, pck: &PckInfo, dcap: &DcapOutcome) -> Entry {
    crate::crosscheck::cross_check(parsed, pck, &dcap.claims)
        .map(|n| format!("{n} fields agree with dcap-qvl"))
        .map_err(|e| e.to_string())
}

/// `policy measurements`, when the policy names any: MRTD and RTMR0–2 (an SGX quote has none).
fn policy_measurements(parsed: &ParsedQuote, opts: &VerifyOptions) -> Option<Entry> {
    let p = opts.policy.as_ref()?;
    match parsed.body.td() {
        Some(td) => p.check_measurements(td),
        None if p.mrtd.is_some() || p.rtmr.iter().any(Option::is_some) => Some(Err(format!(
            "policy {} names TD measurements, but this is an SGX quote",
            p.origin
        ))),
        None => None,
    }
}

/// `JSON report_data` (a quote's, when the response has one), `signer binding` (over the quote
/// body's report_data, or a dev answer's JSON report_data), `nonce` (when this verifier sent one),
/// `on-chain signer` (with a registered signer) and the informational `ZG-Quote-Signature`.
fn push_report_data_links(
    rep: &mut VerificationReport,
    doc: &QuoteDocument,
    quote_rd: Option<&[u8; 64]>,
    opts: &VerifyOptions,
) {
    let rd = match (quote_rd, &doc.report_data) {
        (Some(rd), Some(json_rd)) => {
            rep.push(
                "JSON report_data",
                check_json_report_data(json_rd, rd)
                    .map(|()| "equals the quote body's report_data".into())
                    .map_err(|e| e.to_string()),
            );
            Ok(*rd)
        }
        (Some(rd), None) => Ok(*rd),
        (None, json_rd) => json_rd
            .as_deref()
            .and_then(|j| decode_json_report_data(j).ok())
            .ok_or_else(|| "no 64-byte report_data in the dev answer".to_owned()),
    };
    let binding = rd.and_then(|rd| {
        binding_expectations(opts, doc)
            .and_then(|exp| check_binding(&rd, &exp).map_err(|e| e.to_string()))
    });
    rep.push("signer binding", signer_binding(&binding));
    if let Some(sent) = &opts.binding.nonce {
        rep.push("nonce", freshness(doc, sent, opts.allow_no_freshness));
    }
    if let Some(r) = &opts.registered_signer {
        rep.push(
            "on-chain signer",
            onchain_signer(&binding, r, opts.allow_unacknowledged_signer),
        );
    }
    match (&doc.tee_keys, &doc.attestation_document) {
        (Some(keys), Some(_)) => rep.push("TEE keys", tee_keys(keys, doc)),
        // The 0G-layout answer (no nonce) binds no document, hence no keys: shown, not judged.
        (Some(_), None) => rep.push_info(
            "TEE keys",
            Err(
                "served without an attestation document binding them: not checked (ask with a \
                 nonce to check them)"
                    .into(),
            ),
        ),
        (None, _) => {}
    }
    if let Some(sig) = &doc.zg_quote_signature {
        rep.push_info(
            "ZG-Quote-Signature",
            Ok(format!("header present: {sig} (reported, not checked)")),
        );
    }
}

/// `TEE keys`: the published keys (dataset key, and the TLS key's SubjectPublicKeyInfo hash when
/// the worker serves HTTPS itself) are signed by the TEE signer the attestation document names, and
/// the document's `dataset_key_hash` is their hash (docs/PROTOCOL.md §5.4). The document itself is
/// the `signer binding` link's to check against report_data.
fn tee_keys(keys: &serde_json::Value, doc: &QuoteDocument) -> Entry {
    use sealtune_protocol::B256;
    use sealtune_protocol::attestation::{AttestationDocument, TeeKeys};
    let keys: TeeKeys = serde_json::from_value(keys.clone())
        .map_err(|e| format!("the published tee_keys are malformed: {e}"))?;
    let document = doc
        .attestation_document
        .as_ref()
        .ok_or_else(|| "no attestation document binds the published tee_keys".to_owned())
        .and_then(|d| AttestationDocument::from_json(d).map_err(|e| e.to_string()))?;
    keys.verify_bound(&document).map_err(|e| e.to_string())?;
    let seen = &doc.tls_keys_seen;
    let tls = match keys.tls_spki_sha256 {
        Some(h) => {
            if let Some(other) = seen.iter().find(|k| k.as_slice() != h.as_slice()) {
                return Err(format!(
                    "the HTTPS connection this answer came over ended at TLS key {}, not at the \
                     attested one {h}: its TLS ends outside the TEE (a terminating proxy, or a man \
                     in the middle)",
                    B256::from(*other)
                ));
            }
            let ended = if seen.is_empty() {
                ""
            } else {
                ", where this HTTPS connection ended"
            };
            format!("the worker's own HTTPS key (SubjectPublicKeyInfo SHA-256 {h}: pin it{ended})")
        }
        None if !seen.is_empty() => "no TLS key: this HTTPS connection's key is not attested (its \
                                     TLS may end outside the TEE)"
            .to_owned(),
        None => "no TLS key (the worker serves no HTTPS of its own)".to_owned(),
    };
    Ok(format!(
        "dataset key {} and {tls}, signed by the TEE signer {} and bound by the document's dataset_key_hash",
        keys.dataset_key, document.signer
    ))
}

/// `nonce`: the declared attestation document carries the nonce this verifier sent; an answer
/// without one proves no freshness and passes only when `allow_no_freshness`.
fn freshness(doc: &QuoteDocument, sent: &[u8; 32], allow_no_freshness: bool) -> Entry {
    let declared = doc
        .attestation_document
        .as_ref()
        .map(sealtune_protocol::attestation::AttestationDocument::from_json);
    match (declared, allow_no_freshness) {
        (Some(Ok(d)), _) if d.nonce.as_slice() == sent.as_slice() => {
            Ok("the attestation document carries the nonce this verifier chose".into())
        }
        (Some(Ok(d)), _) => Err(format!(
            "the attestation document carries nonce {}, not the one this verifier chose ({}): a \
             stale or relayed answer",
            hex::encode(d.nonce),
            hex::encode(sent)
        )),
        (Some(Err(e)), _) => Err(format!(
            "the declared attestation document is malformed: {e}"
        )),
        (None, true) => Ok(
            "no freshness proof (the provider ignores the nonce, as 0G workers do): accepted as \
             asked (--allow-no-freshness)"
                .into(),
        ),
        (None, false) => Err(
            "the provider cannot prove freshness (no attestation document for this verifier's \
             nonce: it ignores ?nonce=, as official 0G workers do): its quote could be a replay; \
             accept it with --allow-no-freshness (sealtune) or --no-nonce (sealtune-verify)"
                .into(),
        ),
    }
}

/// The binding expectations, with the registered signer when none is given and the attestation
/// document the answer declares (a malformed one fails the link).
pub fn binding_expectations(
    opts: &VerifyOptions,
    doc: &QuoteDocument,
) -> Result<BindingExpectations, String> {
    let mut exp = opts.binding.clone();
    if let Some(r) = &opts.registered_signer
        && exp.signer.is_none()
    {
        exp.signer = Some(r.tee_signer.into_array());
    }
    match &doc.attestation_document {
        Some(d) => {
            exp.document = Some(
                sealtune_protocol::attestation::AttestationDocument::from_json(d)
                    .map_err(|e| e.to_string())?,
            );
        }
        // Without a document, freshness is the `nonce` link's to judge: the binding is checked
        // as the layouts without a nonce allow.
        None => exp.nonce = None,
    }
    Ok(exp)
}

/// `signer binding`: report_data's layout and the signer it binds.
fn signer_binding(binding: &Result<Binding, String>) -> Entry {
    match binding {
        Ok(b) => Ok(format!(
            "{:?} layout binds 0x{}",
            b.layout,
            b.signer.as_deref().unwrap_or("(no signer in preimage)")
        )),
        Err(e) => Err(e.clone()),
    }
}

/// `on-chain signer`: the bound signer is the provider's registered TEE signer, acknowledged by
/// the contract owner (or accepted unacknowledged when `allow_unacknowledged`).
fn onchain_signer(
    binding: &Result<Binding, String>,
    r: &RegisteredSigner,
    allow_unacknowledged: bool,
) -> Entry {
    let bound = binding.as_ref().ok().and_then(|b| b.signer.as_deref());
    let registered = hex::encode(r.tee_signer);
    match bound {
        None => Err(format!(
            "report_data binds no signer to compare with the registered {}",
            r.tee_signer
        )),
        Some(b) if b != registered => Err(format!(
            "report_data binds 0x{b}, but provider {} registered {} on {}",
            r.provider, r.tee_signer, r.serving
        )),
        Some(_) if !r.acknowledged && allow_unacknowledged => Ok(format!(
            "{} is provider {}'s teeSignerAddress on {}, NOT acknowledged by the contract owner \
             (settlements revert until it is): accepted as asked (--allow-unacknowledged-signer)",
            r.tee_signer, r.provider, r.serving
        )),
        Some(_) if !r.acknowledged => Err(format!(
            "{} is provider {}'s teeSignerAddress on {}, but the owner has not acknowledged it \
             (settlements would revert; --allow-unacknowledged-signer to go on anyway)",
            r.tee_signer, r.provider, r.serving
        )),
        Some(_) => Ok(format!(
            "{} is provider {}'s teeSignerAddress on {}, acknowledged",
            r.tee_signer, r.provider, r.serving
        )),
    }
}

/// `event log` (the replay into RTMR0–3, whose summary goes into the report) and `compose hash`;
/// without an event log, only the failing `event log` link.
fn push_event_log_links(
    rep: &mut VerificationReport,
    doc: &QuoteDocument,
    rtmrs: Result<[[u8; 48]; 4], String>,
    opts: &VerifyOptions,
) {
    let Some(log) = &doc.event_log else {
        rep.push(
            "event log",
            Err("no event log: RTMRs cannot be replayed".into()),
        );
        return;
    };
    let events = parse_event_log(log);
    let against = if doc.dev && doc.quote.is_empty() {
        " (dev: against the tcb_info.rtmr3 the provider states itself, nothing hardware-backed)"
    } else {
        ""
    };
    match rtmrs.and_then(|r| replay_event_log(&events, &r, opts).map_err(|e| e.to_string())) {
        Ok(s) => {
            rep.push(
                "event log",
                Ok(format!(
                    "{} events replay into RTMR0–3{against}; digests and system events check",
                    s.events
                )),
            );
            rep.event_log = Some(s);
        }
        Err(e) => rep.push("event log", Err(e)),
    }
    rep.push(
        "compose hash",
        compose_hash(&events, doc.tcb_info.as_deref(), rep.event_log.as_ref()),
    );
}

/// `policy app` (compose hash, images, pins) and `policy events` (pinned system events), when the
/// policy sets them. Without `tcb_info`, the compose hash is the replayed `compose-hash` event's.
fn push_app_policy_links(rep: &mut VerificationReport, doc: &QuoteDocument, opts: &VerifyOptions) {
    let Some(policy) = &opts.policy else { return };
    let measured = rep
        .event_log
        .as_ref()
        .and_then(|e| e.compose_hash.as_deref());
    if let Some(r) = policy.check_app(doc.tcb_info.as_deref(), measured) {
        rep.push("policy app", r);
    }
    if let Some(r) = policy.check_events(rep.event_log.as_ref()) {
        rep.push("policy events", r);
    }
    if let Some(r) = policy.check_config(recorded_config_hash(rep, doc).ok().flatten()) {
        rep.push("policy config", r);
    }
}

/// The measured config hash the evidence records: the replayed `sealtune-config` event, or the
/// declared attestation document's; an error when the two disagree.
fn recorded_config_hash(
    rep: &VerificationReport,
    doc: &QuoteDocument,
) -> Result<Option<[u8; 32]>, String> {
    let from_event = rep
        .event_log
        .as_ref()
        .and_then(|e| e.config_hash.as_deref())
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok());
    let from_document = doc
        .attestation_document
        .as_ref()
        .and_then(|d| sealtune_protocol::attestation::AttestationDocument::from_json(d).ok())
        .map(|d| d.config_hash.0);
    match (from_event, from_document) {
        (Some(e), Some(d)) if e != d => Err(format!(
            "RTMR3 records config hash {} but the attestation document declares {}",
            hex::encode(e),
            hex::encode(d)
        )),
        (e, d) => Ok(e.or(d)),
    }
}

/// `config hash`: what the worker's measured configuration is, and that its records agree.
fn push_config_link(rep: &mut VerificationReport, doc: &QuoteDocument) {
    match recorded_config_hash(rep, doc) {
        Ok(Some(h)) => rep.push_info(
            "config hash",
            Ok(format!("measured config {}", hex::encode(h))),
        ),
        Ok(None) => {}
        Err(e) => rep.push("config hash", Err(e)),
    }
}

/// The event log replayed against the quote's RTMRs under the event policy.
fn replay_event_log(
    events: &Result<Vec<Event>, EventLogError>,
    rtmrs: &[[u8; 48]; 4],
    opts: &VerifyOptions,
) -> Result<EventLogSummary, EventLogError> {
    let event_policy = match &opts.policy {
        Some(p) => p.event_policy(&opts.event_policy),
        None => opts.event_policy.clone(),
    };
    events
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|ev| verify_event_log(ev, rtmrs, &event_policy))
}

/// `compose hash`: sha256 of `tcb_info.app_compose` is the compose-hash event; without `tcb_info`
/// (a raw dstack GetQuote answer), the compose hash is the `compose-hash` event of the replayed log.
fn compose_hash(
    events: &Result<Vec<Event>, EventLogError>,
    tcb_info: Option<&str>,
    replayed: Option<&EventLogSummary>,
) -> Entry {
    match (events, tcb_info) {
        (Err(e), _) => Err(e.to_string()),
        (Ok(_), None) => match replayed {
            None => Err(
                "no tcb_info in the response and the event log does not replay: no compose hash \
                 to trust"
                    .into(),
            ),
            Some(s) => match &s.compose_hash {
                Some(h) => Ok(format!(
                    "{h} from the compose-hash event (replayed into RTMR3); the response has no \
                     tcb_info, so the app-compose itself was not seen"
                )),
                None => Err("no tcb_info in the response and no compose-hash event".into()),
            },
        },
        (Ok(ev), Some(info)) => check_compose_hash(ev, info)
            .map(|h| format!("sha256(app_compose) = compose-hash event = {h}"))
            .map_err(|e| e.to_string()),
    }
}

/// `TD attributes`: not a debug TD (or enclave), not migratable.
fn td_attributes(q: &ParsedQuote) -> Result<String, String> {
    match &q.body {
        crate::quote::Body::Sgx(r) => {
            if r.is_debug() {
                Err("debug enclave".into())
            } else {
                Ok("production enclave".into())
            }
        }
        _ => {
            let td = q.body.td().ok_or("no TD report")?;
            if td.is_debug() {
                Err("debug TD (host can read its memory)".into())
            } else if td.is_migratable() {
                Err("migratable TD".into())
            } else {
                Ok(format!(
                    "not debug, not migratable ({:#018x})",
                    td.td_attributes_u64()
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealtune_protocol::attestation::{AttestationDocument, TeeKeys};
    use sealtune_protocol::{Address, B256};

    /// A dev answer carrying `keys` and a document binding `bound` (the keys' own hash when `None`).
    fn answer(keys: &TeeKeys, bound: Option<B256>) -> QuoteDocument {
        let tee = k256::ecdsa::SigningKey::from_slice(&[5u8; 32]).unwrap();
        let signer = Address::from_private_key(&tee);
        let document = AttestationDocument {
            dataset_key_hash: Some(bound.unwrap_or_else(|| keys.hash())),
            ..AttestationDocument::new(signer, B256::repeat_byte(1), B256::repeat_byte(2))
        };
        QuoteDocument {
            dev: true,
            attestation_document: Some(serde_json::to_value(document).unwrap()),
            tee_keys: Some(serde_json::to_value(keys).unwrap()),
            ..Default::default()
        }
    }

    fn link(doc: &QuoteDocument) -> Link {
        let opts = VerifyOptions {
            allow_dev_quote: true,
            ..Default::default()
        };
        verify_document(doc, &opts)
            .link("TEE keys")
            .cloned()
            .expect("a TEE keys link")
    }

    #[test]
    fn the_tee_keys_link_checks_the_signature_the_binding_and_the_tls_hash() {
        let tee = k256::ecdsa::SigningKey::from_slice(&[5u8; 32]).unwrap();
        let dataset = k256::SecretKey::from_slice(&[6u8; 32])
            .unwrap()
            .public_key();
        let tls = B256::repeat_byte(9);
        let keys = TeeKeys::sign(&tee, &dataset, Some(tls));
        let ok = link(&answer(&keys, None));
        assert!(ok.ok && ok.required, "{ok:?}");
        assert!(ok.detail.contains(&tls.to_string()), "{}", ok.detail);
        // Another TLS key under the TEE signer's signature (a host swapping in its own key), the
        // document re-bound to it: the signature no longer covers it.
        let mut swapped = keys.clone();
        swapped.tls_spki_sha256 = Some(B256::repeat_byte(8));
        let bad = link(&answer(&swapped, None));
        assert!(!bad.ok, "{bad:?}");
        assert!(
            bad.detail.contains("not signed by the TEE signer"),
            "{}",
            bad.detail
        );
        // Genuine keys the document does not bind.
        let unbound = link(&answer(&keys, Some(B256::repeat_byte(3))));
        assert!(
            !unbound.ok && unbound.detail.contains("dataset_key_hash"),
            "{unbound:?}"
        );
        // Keys without any document.
        let mut alone = answer(&keys, None);
        alone.attestation_document = None;
        let alone = link(&alone);
        assert!(
            !alone.ok && !alone.required && alone.detail.contains("not checked"),
            "{alone:?}"
        );
    }
}
