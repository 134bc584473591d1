//! The `sealtune-verify` command line, as a library so that it is testable; `main.rs` only calls [`run`].

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::dcap::{TcbPolicy, parse_collateral};
use crate::event_log::EventPolicy;
use crate::report_data::{BindingExpectations, parse_address};
use crate::verify::{QuoteDocument, VerifyOptions, verify_document};

/// Errors of the command line (bad arguments, unreadable files).
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
}

/// Arguments of `sealtune-verify quote`.
#[derive(Debug, Args)]
pub struct QuoteArgs {
    /// The quote: GetQuote JSON, hex, or binary.
    #[arg(long)]
    pub file: PathBuf,
    /// Collateral JSON (dcap-qvl format, as a PCCS serves it).
    #[arg(long)]
    pub collateral: Option<PathBuf>,
    /// Time of the check: unix seconds or RFC 3339 (default: now).
    #[arg(long)]
    pub at: Option<String>,
    /// Never use the network (collateral must come from --collateral).
    #[arg(long)]
    pub offline: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Accept a response from the insecure dev (no-TEE) attestation source.
    #[arg(long)]
    pub allow_dev_quote: bool,
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

impl QuoteArgs {
    /// Build the verification options; `now` is used when `--at` is absent.
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
        let nonce = self
            .nonce
            .as_deref()
            .map(|n| {
                hex::decode(n.trim_start_matches("0x"))
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                    .ok_or_else(|| CliError::Arg(format!("--nonce {n:?} is not 32 bytes of hex")))
            })
            .transpose()?;
        let tappd_preimage = self.tappd_preimage.as_ref().map(read).transpose()?;
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
            },
            allow_dev_quote: self.allow_dev_quote,
        })
    }
}

/// Run the command; returns the process exit code (0 only when every required link holds).
pub fn run(cli: &Cli, now: u64, out: &mut dyn Write) -> Result<i32, CliError> {
    match &cli.command {
        Command::Quote(args) => {
            let doc = QuoteDocument::from_bytes(&read(&args.file)?)
                .map_err(|e| CliError::Arg(e.to_string()))?;
            let opts = args.options(now)?;
            let report = verify_document(&doc, &opts);
            if args.json {
                let json = serde_json::to_string_pretty(&report)
                    .map_err(|e| CliError::Arg(format!("cannot serialise the report: {e}")))?;
                writeln!(out, "{json}")?;
            } else {
                write!(out, "{}", report.render_human())?;
            }
            Ok(if report.verified { 0 } else { 1 })
        }
    }
}
