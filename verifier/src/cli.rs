//! The `sealtune-verify` command line, as a library so that it is testable; `main.rs` only calls [`run`].

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::dcap::{TcbPolicy, parse_collateral};
use crate::event_log::EventPolicy;
use crate::report_data::{BindingExpectations, parse_address};
use crate::verify::{ExpectedTee, QuoteDocument, VerifyOptions, verify_document};
use sealtune_protocol::evaluation::SignedEvaluation;

/// Errors of the command line (bad arguments, unreadable files, unreachable services).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An argument is malformed.
    #[error("{0}")]
    Arg(String),
    /// Writing the report failed.
    #[error("cannot write the report: {0}")]
    Write(#[from] std::io::Error),
    /// The policy file is unusable.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// The policy is neither built in nor readable.
    #[error(transparent)]
    PolicyLoad(#[from] crate::policy::shipped::LoadError),
    /// The chain could not be read.
    #[error(transparent)]
    Chain(#[from] crate::chain::ChainError),
    /// Collateral could not be obtained.
    #[error(transparent)]
    Collateral(#[from] crate::collateral::CollateralError),
    /// The provider's quote could not be fetched.
    #[error("fetching the quote from {url}: {message}")]
    Fetch {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
}

/// sealtune-verify: check a sealtune / 0G fine-tuning provider's chain of trust.
#[derive(Debug, Parser)]
#[command(name = "sealtune-verify", version)]
pub struct Cli {
    /// What to verify.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Verify a TDX/SGX quote (a GetQuote / `GET /v1/quote` JSON response, a hex quote or a raw quote).
    Quote(QuoteArgs),
    /// Verify a settlement's EIP-712 TEE signature (from a transaction, the chain, or a JSON file).
    Settlement(SettlementArgs),
    /// Verify an encrypted deliverable: tag signature and root hash.
    Deliverable(DeliverableArgs),
    /// Verify a signed training report (`GET …/task/{id}/report`, `sealtune get-report --save`): its
    /// TEE signature, the signer on chain, the deliverable root on chain.
    Report(ReportArgs),
    /// Write policies (`policy from-compose`).
    #[command(subcommand)]
    Policy(PolicyCommand),
}

/// `sealtune-verify policy …`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Write the policy for an app-compose.json: its compose hash, the config-hash rule, the TCB
    /// statuses, the required events, and what is left UNPINNED with where it comes from.
    FromCompose(FromComposeArgs),
}

/// Arguments of `sealtune-verify policy from-compose`.
#[derive(Debug, Args)]
pub struct FromComposeArgs {
    /// The app-compose.json (hashed byte for byte, as dstack measures it).
    pub compose: PathBuf,
    /// A dev policy: for the INSECURE dev attestation source only.
    #[arg(long)]
    pub dev: bool,
    /// A provider's published configuration (`GET /v1/config`'s answer, `sealtune-worker config
    /// check --json`'s, or the document): its config hash, recomputed from the document, is pinned.
    /// Repeatable.
    #[arg(long)]
    pub config: Vec<PathBuf>,
    /// A config hash to pin (0x + 64 hex). Repeatable.
    #[arg(long)]
    pub config_hash: Vec<String>,
    /// Write the policy here instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// Where the chain is (shared by the subcommands).
#[derive(Debug, Args, Clone, Default)]
pub struct ChainArgs {
    /// JSON-RPC endpoint of the chain.
    #[arg(long)]
    pub rpc: Option<String>,
    /// The FineTuningServing contract.
    #[arg(long)]
    pub serving: Option<String>,
    /// The provider's address (its service holds the registered TEE signer).
    #[arg(long)]
    pub provider: Option<String>,
}

/// Arguments of `sealtune-verify quote`.
#[derive(Debug, Args)]
pub struct QuoteArgs {
    /// The quote: GetQuote JSON, hex, or binary.
    #[arg(long, required_unless_present = "url", conflicts_with = "url")]
    pub file: Option<PathBuf>,
    /// Fetch the quote from a provider: `GET <url>/v1/quote?nonce=<fresh nonce>`.
    #[arg(long)]
    pub url: Option<String>,
    /// With --url: do not send a nonce (providers that do not support sealtune's fresh layout).
    #[arg(long, requires = "url")]
    pub no_nonce: bool,
    /// Accept 0G's raw-signer report_data layout (signer at bytes 32..52), which only the expected
    /// signer can recognise: use it only for a provider known to serve that layout.
    #[arg(long)]
    pub zg_raw_layout: bool,
    /// Collateral JSON (dcap-qvl format, as a PCCS serves it).
    #[arg(long)]
    pub collateral: Option<PathBuf>,
    /// PCCS base URL to fetch collateral from (default: Intel PCS).
    #[arg(long, conflicts_with = "collateral")]
    pub pccs: Option<String>,
    /// Collateral cache directory (entries per FMSPC, used until their nextUpdate).
    #[arg(long, conflicts_with = "collateral")]
    pub cache: Option<PathBuf>,
    /// Time of the check: unix seconds or RFC 3339 (default: now).
    #[arg(long)]
    pub at: Option<String>,
    /// Never use the network (collateral from --collateral or the --cache directory).
    #[arg(long, conflicts_with_all = ["url", "pccs"])]
    pub offline: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Accept a response from the insecure dev (no-TEE) attestation source.
    #[arg(long)]
    pub allow_dev_quote: bool,
    /// Check an SGX enclave's quote. A provider's quote must be TDX: without this flag an SGX quote
    /// is refused.
    #[arg(long)]
    pub sgx: bool,
    /// Check the hardware only (the quote, the Intel chain, TCB, QE identity, TD attributes and
    /// measurement policy): for an auditor holding a bare quote. Exits 0 when they hold and says
    /// that no binding (report_data, event log, compose hash) was checked.
    #[arg(long, conflicts_with_all = ["url", "signer", "nonce", "tappd_preimage", "rpc", "allow_app_events"])]
    pub hardware_only: bool,
    /// Expected TEE signer address (0x…).
    #[arg(long)]
    pub signer: Option<String>,
    /// The nonce (64 hex) sent with `GET /v1/quote?nonce=`.
    #[arg(long)]
    pub nonce: Option<String>,
    /// File holding the `data` of a legacy tappd quote (report_data = sha512("app-data:" ‖ data)).
    #[arg(long)]
    pub tappd_preimage: Option<PathBuf>,
    /// Accept OutOfDate TCB levels.
    #[arg(long)]
    pub allow_out_of_date: bool,
    /// Reject dynamic platforms, cached keys and SMT (cloud hosts have them; allowed by default).
    #[arg(long)]
    pub strict_platform: bool,
    /// An application event name allowed in the event log after system-ready (repeatable).
    #[arg(long = "allow-app-event")]
    pub allow_app_events: Vec<String>,
    /// Policy: a built-in name (`release`: deploy/policy.toml; `dev`: deploy/policy-dev.toml, for
    /// the insecure dev source only) or a TOML file (TCB statuses, advisories, MRTD/RTMR0–2,
    /// compose and config hashes, images, events). Without one the report says UNPINNED.
    #[arg(long)]
    pub policy: Option<String>,
    /// Pin the provider's config hash (0x + 64 hex; repeatable): replaces the policy's
    /// `app.config_hashes`. Needs --policy.
    #[arg(long, requires = "policy")]
    pub config_hash: Vec<String>,
    /// An NVIDIA RIM (SWID tag: the driver's, the VBIOS's; repeatable): the GPU measurements must
    /// equal its reference values. Its signing chain must reach NVIDIA's RIM root; its XML
    /// signature is not checked (docs/verifier.md).
    #[arg(long = "rim")]
    pub rims: Vec<PathBuf>,
    /// The chain: with --rpc, --serving and --provider, report_data must bind the provider's
    /// registered, acknowledged teeSignerAddress.
    #[command(flatten)]
    pub chain: ChainArgs,
}

/// Arguments of `sealtune-verify settlement`.
#[derive(Debug, Args)]
pub struct SettlementArgs {
    /// A JSON file with the VerifierInput fields (id, encryptedSecret, modelRootHash, nonce,
    /// signature, taskFee, user; optionally chainId and serving).
    #[arg(long, conflicts_with = "tx")]
    pub input: Option<PathBuf>,
    /// A settleFees transaction hash (needs --rpc).
    #[arg(long, requires = "rpc")]
    pub tx: Option<String>,
    /// With --rpc, --serving and --provider: find the settlement of this deliverable id…
    #[arg(long, requires = "rpc")]
    pub id: Option<String>,
    /// …for this customer.
    #[arg(long, requires = "id")]
    pub user: Option<String>,
    /// Chain id of the EIP-712 domain (default: the file's, or the chain's with --rpc).
    #[arg(long)]
    pub chain_id: Option<u64>,
    /// Expected TEE signer (default: the provider's teeSignerAddress on chain).
    #[arg(long)]
    pub signer: Option<String>,
    /// The chain.
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `sealtune-verify deliverable`.
#[derive(Debug, Args)]
pub struct DeliverableArgs {
    /// The encrypted deliverable file.
    #[arg(long)]
    pub file: PathBuf,
    /// Expected TEE signer (default: the provider's teeSignerAddress on chain).
    #[arg(long)]
    pub signer: Option<String>,
    /// Expected root hash (0x + 64 hex); default: the on-chain modelRootHash with --user and --id.
    #[arg(long)]
    pub root: Option<String>,
    /// The customer (with --rpc, --serving, --provider, --id: read the deliverable on chain).
    #[arg(long)]
    pub user: Option<String>,
    /// The deliverable (task) id.
    #[arg(long, requires = "user")]
    pub id: Option<String>,
    /// The chain.
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `sealtune-verify report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The signed report: the JSON `{document, signature}` the worker serves (a training report), or
    /// the `evaluation_report.json` of a decrypted evaluation (docs/PROTOCOL.md §10).
    #[arg(long)]
    pub file: PathBuf,
    /// The customer the report must be for (default: the one it names).
    #[arg(long)]
    pub user: Option<String>,
    /// The chain (all three required: --rpc, --serving, --provider).
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Print the verification as JSON.
    #[arg(long)]
    pub json: bool,
}

fn read(path: &PathBuf) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|source| CliError::Read {
        path: path.clone(),
        source,
    })
}

/// Parse `--at`: unix seconds or RFC 3339.
pub fn parse_time(s: &str) -> Result<u64, CliError> {
    if let Ok(n) = s.trim().parse::<u64>() {
        return Ok(n);
    }
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .map_err(|e| CliError::Arg(format!("--at {s:?}: not unix seconds or RFC 3339: {e}")))?;
    u64::try_from(t.unix_timestamp())
        .map_err(|_| CliError::Arg(format!("--at {s:?} is before 1970")))
}

fn arg_address(flag: &str, s: &str) -> Result<alloy::primitives::Address, CliError> {
    s.trim().parse().map_err(|_| {
        CliError::Arg(format!(
            "{flag} {s:?} is not an address (0x + 40 hex digits)"
        ))
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Arg(format!("cannot start the async runtime: {e}")))
}

impl ChainArgs {
    fn connect(&self) -> Result<Option<crate::chain::Chain>, CliError> {
        self.rpc
            .as_deref()
            .map(crate::chain::Chain::connect)
            .transpose()
            .map_err(CliError::from)
    }
    fn serving(&self) -> Result<Option<alloy::primitives::Address>, CliError> {
        self.serving
            .as_deref()
            .map(|s| arg_address("--serving", s))
            .transpose()
    }
    fn provider(&self) -> Result<Option<alloy::primitives::Address>, CliError> {
        self.provider
            .as_deref()
            .map(|s| arg_address("--provider", s))
            .transpose()
    }

    /// The registered signer when --rpc, --serving and --provider are all given; an error when only
    /// some are.
    fn registered_signer(
        &self,
        rt: &tokio::runtime::Runtime,
        block: Option<u64>,
    ) -> Result<Option<crate::chain::RegisteredSigner>, CliError> {
        match (self.connect()?, self.serving()?, self.provider()?) {
            (None, None, None) => Ok(None),
            (Some(chain), Some(serving), Some(provider)) => Ok(Some(
                rt.block_on(chain.registered_signer(serving, provider, block))?,
            )),
            _ => Err(CliError::Arg(
                "the on-chain signer check needs all of --rpc, --serving and --provider".into(),
            )),
        }
    }
}

impl QuoteArgs {
    /// The reference values of the `--rim` files, their signing chains checked at `now`.
    fn gpu_reference(&self, now: u64) -> Result<Option<crate::gpu::ReferenceValues>, CliError> {
        if self.rims.is_empty() {
            return Ok(None);
        }
        let mut rims = Vec::new();
        for p in &self.rims {
            let text = String::from_utf8(read(p)?)
                .map_err(|_| CliError::Arg(format!("RIM {} is not UTF-8", p.display())))?;
            let rim = crate::gpu::rim::Rim::parse(&text)
                .map_err(|e| CliError::Arg(format!("{}: {e}", p.display())))?;
            rim.verify_chain(now)
                .map_err(|e| CliError::Arg(format!("{}: {e}", p.display())))?;
            rims.push(rim);
        }
        crate::gpu::rim::reference_values(&rims)
            .map(Some)
            .map_err(|e| CliError::Arg(e.to_string()))
    }

    /// Build the verification options; `now` is used when `--at` is absent. Reads the collateral
    /// and policy files; network sources (PCCS, chain) are resolved by [`run`].
    pub fn options(&self, now: u64) -> Result<VerifyOptions, CliError> {
        let collateral = match &self.collateral {
            Some(p) => Some(parse_collateral(&read(p)?).map_err(|e| CliError::Arg(e.to_string()))?),
            None => None,
        };
        let mut tcb_policy = TcbPolicy {
            allow_out_of_date: self.allow_out_of_date,
            ..TcbPolicy::default()
        };
        if self.strict_platform {
            tcb_policy.allow_dynamic_platform = false;
            tcb_policy.allow_cached_keys = false;
            tcb_policy.allow_smt = false;
        }
        let signer = self
            .signer
            .as_deref()
            .map(parse_address)
            .transpose()
            .map_err(|e| CliError::Arg(e.to_string()))?;
        let nonce = self.nonce.as_deref().map(parse_nonce).transpose()?;
        let tappd_preimage = self.tappd_preimage.as_ref().map(read).transpose()?;
        let policy = match &self.policy {
            Some(p) => {
                let mut policy = crate::policy::shipped::load(p)?;
                policy.pin_config_hashes(parse_config_hashes(&self.config_hash)?);
                Some(policy)
            }
            None => None,
        };
        Ok(VerifyOptions {
            now: self
                .at
                .as_deref()
                .map(parse_time)
                .transpose()?
                .unwrap_or(now),
            collateral,
            root_ca_der: None,
            tcb_policy,
            event_policy: EventPolicy {
                allowed_app_events: self.allow_app_events.clone(),
            },
            binding: BindingExpectations {
                signer,
                nonce,
                tappd_preimage,
                document: None,
                allow_zg_raw: self.zg_raw_layout,
            },
            allow_dev_quote: self.allow_dev_quote,
            policy,
            registered_signer: None,
            tee: if self.sgx {
                ExpectedTee::SgxEnclave
            } else {
                ExpectedTee::ProviderTdx
            },
            hardware_only: self.hardware_only,
            policy_required: false,
            allow_no_freshness: false,
            allow_unacknowledged_signer: false,
            gpu_reference: self.gpu_reference(
                self.at
                    .as_deref()
                    .map(parse_time)
                    .transpose()?
                    .unwrap_or(now),
            )?,
        })
    }
}

/// `--config-hash` values.
fn parse_config_hashes(list: &[String]) -> Result<Vec<[u8; 32]>, CliError> {
    list.iter()
        .map(|h| {
            crate::policy::shipped::parse_config_hash(h)
                .map_err(|e| CliError::Arg(format!("--config-hash: {e}")))
        })
        .collect()
}

fn parse_nonce(n: &str) -> Result<[u8; 32], CliError> {
    hex::decode(n.trim().trim_start_matches("0x"))
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| CliError::Arg(format!("--nonce {n:?} is not 32 bytes of hex")))
}

/// `GET <url>/v1/quote[?nonce=<hex>]`: the document and its `ZG-Quote-Signature` header.
pub async fn fetch_quote(url: &str, nonce: Option<&[u8; 32]>) -> Result<QuoteDocument, CliError> {
    let base = url.trim_end_matches('/');
    let full = match nonce {
        Some(n) => format!("{base}/v1/quote?nonce={}", hex::encode(n)),
        None => format!("{base}/v1/quote"),
    };
    let fail = |message: String| CliError::Fetch {
        url: full.clone(),
        message,
    };
    // Over HTTPS, any key is accepted but recorded (the handshake signature is checked): the `TEE
    // keys` link then requires it to be the attested one. No redirects: they would leave it.
    let recorder = Arc::new(crate::tls_key::SpkiVerifier::new(None));
    let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60));
    if crate::tls_key::is_https(base) {
        let config =
            crate::tls_key::client_config(recorder.clone()).map_err(|e| fail(e.to_string()))?;
        builder = builder
            .tls_backend_preconfigured(config)
            .redirect(reqwest::redirect::Policy::none());
    }
    let client = builder.build().map_err(|e| fail(e.to_string()))?;
    let resp = client
        .get(&full)
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    let header = resp
        .headers()
        .get("ZG-Quote-Signature")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    // A quote response is a few tens of KiB (quote + event log); refuse anything absurd.
    const MAX: usize = 16 << 20;
    let body = resp.bytes().await.map_err(|e| fail(e.to_string()))?;
    if body.len() > MAX {
        return Err(fail(format!(
            "response of {} bytes is too large",
            body.len()
        )));
    }
    let mut doc = QuoteDocument::from_bytes(&body).map_err(|e| fail(e.to_string()))?;
    doc.zg_quote_signature = header;
    doc.tls_keys_seen = recorder.seen().into_iter().map(|k| k.0).collect();
    Ok(doc)
}

fn emit(
    report: &crate::verify::VerificationReport,
    json: bool,
    out: &mut dyn Write,
) -> Result<i32, CliError> {
    if json {
        let text = serde_json::to_string_pretty(report)
            .map_err(|e| CliError::Arg(format!("cannot serialise the report: {e}")))?;
        writeln!(out, "{text}")?;
    } else {
        write!(out, "{}", report.render_human())?;
    }
    Ok(if report.verified { 0 } else { 1 })
}

/// Run the command; returns the process exit code (0 only when every required link holds).
/// A fresh nonce for `quote --url` comes from the OS RNG; see [`run_with`] to choose it.
pub fn run(cli: &Cli, now: u64, out: &mut dyn Write) -> Result<i32, CliError> {
    let mut nonce = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    run_with(cli, now, nonce, out)
}

/// [`run`] with the time and the nonce `quote --url` sends as inputs.
pub fn run_with(
    cli: &Cli,
    now: u64,
    fresh_nonce: [u8; 32],
    out: &mut dyn Write,
) -> Result<i32, CliError> {
    match &cli.command {
        Command::Quote(args) => run_quote(args, now, fresh_nonce, out),
        Command::Settlement(args) => run_settlement(args, now, out),
        Command::Deliverable(args) => run_deliverable(args, now, out),
        Command::Report(args) => run_report(args, now, out),
        Command::Policy(PolicyCommand::FromCompose(args)) => run_from_compose(args, out),
    }
}

fn run_from_compose(args: &FromComposeArgs, out: &mut dyn Write) -> Result<i32, CliError> {
    use crate::policy::shipped::{FromCompose, config_hash_of, from_compose};
    let compose = read(&args.compose)?;
    let mut config_hashes = parse_config_hashes(&args.config_hash)?;
    for path in &args.config {
        let hash = config_hash_of(&read(path)?)
            .map_err(|e| CliError::Arg(format!("--config {}: {e}", path.display())))?;
        config_hashes.push(hash);
    }
    let text = from_compose(&FromCompose {
        compose_path: &args.compose.display().to_string(),
        compose: &compose,
        dev: args.dev,
        config_hashes,
    })
    .map_err(CliError::Arg)?;
    match &args.output {
        Some(p) => std::fs::write(p, &text).map_err(|source| CliError::Read {
            path: p.clone(),
            source,
        })?,
        None => write!(out, "{text}")?,
    }
    Ok(0)
}

fn run_quote(
    args: &QuoteArgs,
    now: u64,
    fresh_nonce: [u8; 32],
    out: &mut dyn Write,
) -> Result<i32, CliError> {
    let mut opts = args.options(now)?;
    let needs_rt = args.url.is_some()
        || args.chain.rpc.is_some()
        || (args.collateral.is_none() && (args.pccs.is_some() || args.cache.is_some()));
    let rt = if needs_rt { Some(runtime()?) } else { None };
    let doc = match (&args.file, &args.url, &rt) {
        (Some(f), _, _) => {
            QuoteDocument::from_bytes(&read(f)?).map_err(|e| CliError::Arg(e.to_string()))?
        }
        (None, Some(url), Some(rt)) => {
            let nonce = if args.no_nonce {
                None
            } else {
                Some(*opts.binding.nonce.get_or_insert(fresh_nonce))
            };
            rt.block_on(fetch_quote(url, nonce.as_ref()))?
        }
        _ => return Err(CliError::Arg("give --file or --url".into())),
    };
    if let Some(rt) = &rt {
        opts.registered_signer = args.chain.registered_signer(rt, None)?;
        if let (Some(given), Some(reg)) = (&opts.binding.signer, &opts.registered_signer)
            && *given != reg.tee_signer.into_array()
        {
            return Err(CliError::Arg(format!(
                "--signer 0x{} differs from the provider's registered teeSignerAddress {}",
                hex::encode(given),
                reg.tee_signer
            )));
        }
        if opts.collateral.is_none() && !doc.quote.is_empty() {
            let source = crate::collateral::CollateralSource {
                pccs_url: args.pccs.clone(),
                cache_dir: args.cache.clone(),
                offline: args.offline,
            };
            let (c, _from) =
                rt.block_on(crate::collateral::obtain(&doc.quote, &source, opts.now))?;
            opts.collateral = Some(c);
        }
    } else if args.chain.serving.is_some() || args.chain.provider.is_some() {
        return Err(CliError::Arg(
            "the on-chain signer check needs all of --rpc, --serving and --provider".into(),
        ));
    }
    let report = verify_document(&doc, &opts);
    emit(&report, args.json, out)
}

fn run_settlement(args: &SettlementArgs, now: u64, out: &mut dyn Write) -> Result<i32, CliError> {
    use crate::settlement::{ExpectedSigner, SettlementCheck, check_settlement};
    let chain = args.chain.connect()?;
    let rt = if chain.is_some() {
        Some(runtime()?)
    } else {
        None
    };
    let online = chain.as_ref().zip(rt.as_ref());
    let given_signer = args
        .signer
        .as_deref()
        .map(|s| arg_address("--signer", s))
        .transpose()?;
    let serving_arg = args.chain.serving()?;
    let provider_arg = args.chain.provider()?;
    let source = settlement_source(args, online, serving_arg, provider_arg)?;
    let chain_id = match (args.chain_id, source.chain_id, online) {
        (Some(c), _, _) => c,
        (None, Some(c), _) => c,
        (None, None, Some((chain, rt))) => rt.block_on(chain.chain_id())?,
        _ => {
            return Err(CliError::Arg(
                "the EIP-712 domain needs the chain id: give --chain-id or --rpc".into(),
            ));
        }
    };
    let serving = serving_arg.or(source.serving).ok_or_else(|| {
        CliError::Arg("the EIP-712 domain needs the serving contract: give --serving".into())
    })?;
    let provider = provider_arg.or(source.provider);
    let expected_signer = match (given_signer, online, provider) {
        (Some(a), _, _) => Some(ExpectedSigner::Given(a)),
        (None, Some((chain, rt)), Some(p)) => Some(ExpectedSigner::OnChain(
            rt.block_on(chain.registered_signer(serving, p, source.block))?,
        )),
        _ => None,
    };
    let onchain_root = match (online, provider) {
        (Some((chain, rt)), Some(p)) => Some(
            rt.block_on(chain.deliverable(serving, source.input.user, p, &source.input.id))?
                .model_root_hash,
        ),
        _ => None,
    };
    let report = check_settlement(
        &SettlementCheck {
            input: source.input,
            chain_id,
            serving,
            expected_signer,
            onchain_root,
            transaction: source.transaction,
        },
        now,
    );
    emit(&report, args.json, out)
}

/// A settlement's input, and what its source says about where it was settled.
struct SettlementSource {
    input: sealtune_protocol::eip712::VerifierInput,
    chain_id: Option<u64>,
    serving: Option<alloy::primitives::Address>,
    provider: Option<alloy::primitives::Address>,
    block: Option<u64>,
    transaction: Option<(String, bool, Option<crate::chain::FeesSettledEvent>)>,
}

impl From<crate::chain::SettlementTx> for SettlementSource {
    fn from(s: crate::chain::SettlementTx) -> Self {
        SettlementSource {
            transaction: Some((format!("{}", s.tx), s.success, s.fees_settled)),
            input: s.input,
            chain_id: Some(s.chain_id),
            serving: Some(s.serving),
            provider: Some(s.provider),
            block: Some(s.block),
        }
    }
}

/// The settlement to check: from `--input FILE`, from the `--tx` transaction, or found on chain by
/// `--id` (with `--serving`, `--provider` and `--user`).
fn settlement_source(
    args: &SettlementArgs,
    online: Option<(&crate::chain::Chain, &tokio::runtime::Runtime)>,
    serving_arg: Option<alloy::primitives::Address>,
    provider_arg: Option<alloy::primitives::Address>,
) -> Result<SettlementSource, CliError> {
    match (&args.input, &args.tx, &args.id, online) {
        (Some(path), _, _, _) => {
            let f = crate::settlement::parse_verifier_input_json(&read(path)?)
                .map_err(|e| CliError::Arg(format!("{}: {e}", path.display())))?;
            Ok(SettlementSource {
                input: f.input,
                chain_id: f.chain_id,
                serving: f.serving,
                provider: provider_arg,
                block: None,
                transaction: None,
            })
        }
        (None, Some(tx), _, Some((chain, rt))) => {
            let hash = tx
                .trim()
                .parse()
                .map_err(|_| CliError::Arg(format!("--tx {tx:?} is not a transaction hash")))?;
            Ok(rt.block_on(chain.settlement(hash))?.into())
        }
        (None, None, Some(id), Some((chain, rt))) => {
            let (Some(serving), Some(provider), Some(user)) = (
                serving_arg,
                provider_arg,
                args.user
                    .as_deref()
                    .map(|u| arg_address("--user", u))
                    .transpose()?,
            ) else {
                return Err(CliError::Arg(
                    "finding a settlement by --id needs --serving, --provider and --user".into(),
                ));
            };
            Ok(rt
                .block_on(chain.find_settlement(serving, user, provider, id))?
                .into())
        }
        _ => Err(CliError::Arg(
            "give --input FILE, or --rpc with --tx HASH, or --rpc with --serving, --provider, --user and --id"
                .into(),
        )),
    }
}

fn run_report(args: &ReportArgs, now: u64, out: &mut dyn Write) -> Result<i32, CliError> {
    use crate::training_report::{ChainFacts, check_report};
    let bytes = read(&args.file)?;
    if let Ok(evaluation) = serde_json::from_slice::<SignedEvaluation>(&bytes)
        && evaluation.report().is_ok()
    {
        return run_evaluation_report(args, &evaluation, now, out);
    }
    let signed: sealtune_protocol::report::SignedReport =
        serde_json::from_slice(&bytes).map_err(|e| {
            CliError::Arg(format!(
                "--file {}: not a signed report {{document, signature}}: {e}",
                args.file.display()
            ))
        })?;
    let (Some(chain), Some(serving), Some(provider)) = (
        args.chain.connect()?,
        args.chain.serving()?,
        args.chain.provider()?,
    ) else {
        return Err(CliError::Arg(
            "a report is checked against the chain: give --rpc, --serving and --provider".into(),
        ));
    };
    let user = args
        .user
        .as_deref()
        .map(|u| arg_address("--user", u))
        .transpose()?;
    // The task and customer whose deliverable is read come from the document; the signature link
    // then fails if the document was edited.
    let named = signed
        .report()
        .map_err(|e| CliError::Arg(format!("--file {}: {e}", args.file.display())))?;
    let rt = runtime()?;
    let facts = rt.block_on(async {
        Ok::<_, crate::chain::ChainError>(ChainFacts {
            chain_id: chain.chain_id().await?,
            serving,
            signer: chain.registered_signer(serving, provider, None).await?,
            deliverable: chain
                .deliverable(serving, named.user, provider, &named.task_id)
                .await?,
        })
    })?;
    let (report, _) = check_report(&signed, &facts, user, now);
    emit(&report, args.json, out)
}

/// [`run_report`] for an evaluation report (docs/PROTOCOL.md §10): the root read from the chain is
/// the evaluated task's.
fn run_evaluation_report(
    args: &ReportArgs,
    signed: &SignedEvaluation,
    now: u64,
    out: &mut dyn Write,
) -> Result<i32, CliError> {
    use crate::training_report::ChainFacts;
    let (Some(chain), Some(serving), Some(provider)) = (
        args.chain.connect()?,
        args.chain.serving()?,
        args.chain.provider()?,
    ) else {
        return Err(CliError::Arg(
            "a report is checked against the chain: give --rpc, --serving and --provider".into(),
        ));
    };
    let user = args
        .user
        .as_deref()
        .map(|u| arg_address("--user", u))
        .transpose()?;
    let named = signed
        .report()
        .map_err(|e| CliError::Arg(format!("--file {}: {e}", args.file.display())))?;
    let facts = runtime()?.block_on(async {
        Ok::<_, crate::chain::ChainError>(ChainFacts {
            chain_id: chain.chain_id().await?,
            serving,
            signer: chain.registered_signer(serving, provider, None).await?,
            deliverable: chain
                .deliverable(serving, named.user, provider, &named.evaluated_task_id)
                .await?,
        })
    })?;
    let (report, _) = crate::evaluation_report::check_evaluation(signed, &facts, user, now);
    emit(&report, args.json, out)
}

fn run_deliverable(args: &DeliverableArgs, now: u64, out: &mut dyn Write) -> Result<i32, CliError> {
    use crate::deliverable::{DeliverableCheck, ExpectedRoot, check_deliverable};
    use crate::settlement::ExpectedSigner;
    if !args.file.is_file() {
        return Err(CliError::Arg(format!(
            "--file {} is not a readable file",
            args.file.display()
        )));
    }
    let chain = args.chain.connect()?;
    let rt = if chain.is_some() {
        Some(runtime()?)
    } else {
        None
    };
    let serving = args.chain.serving()?;
    let provider = args.chain.provider()?;
    let expected_signer = match (&args.signer, &chain, &rt, serving, provider) {
        (Some(s), _, _, _, _) => Some(ExpectedSigner::Given(arg_address("--signer", s)?)),
        (None, Some(chain), Some(rt), Some(sv), Some(p)) => Some(ExpectedSigner::OnChain(
            rt.block_on(chain.registered_signer(sv, p, None))?,
        )),
        _ => None,
    };
    let expected_root = match (
        &args.root, &chain, &rt, serving, provider, &args.user, &args.id,
    ) {
        (Some(r), ..) => {
            let t = r.trim();
            let b = hex::decode(t.strip_prefix("0x").unwrap_or(t))
                .ok()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| CliError::Arg(format!("--root {r:?} is not hex")))?;
            Some(ExpectedRoot::Given(b.into()))
        }
        (None, Some(chain), Some(rt), Some(sv), Some(p), Some(u), Some(id)) => {
            let user = arg_address("--user", u)?;
            let d = rt.block_on(chain.deliverable(sv, user, p, id))?;
            Some(ExpectedRoot::OnChain(
                d.model_root_hash,
                format!("deliverable {id:?} of {user} with provider {p}"),
            ))
        }
        (None, _, _, _, _, Some(_), _) => {
            return Err(CliError::Arg(
                "reading the deliverable on chain needs --rpc, --serving, --provider, --user and --id".into(),
            ));
        }
        _ => None,
    };
    let report = check_deliverable(
        &args.file,
        &DeliverableCheck {
            expected_signer,
            expected_root,
            ..Default::default()
        },
        now,
    );
    emit(&report, args.json, out)
}
