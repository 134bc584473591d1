//! The `sealtune` command line: argument definitions (clap) and, per command, one `Args` struct
//! whose `run` parses its arguments, calls the library and formats an [`Output`] (one JSON
//! document for `--json`, text otherwise). The binary only parses, runs and prints.
//!
//! | file | commands |
//! |---|---|
//! | `account.rs` | create-account, deposit-fund, refund, get-account, transfer-fund, retrieve-fund |
//! | `provider.rs` | list-service, verify-provider |
//! | `estimate.rs` | estimate |
//! | `task.rs` | upload-dataset, create-task, query-progress, get-log, cancel-task |
//! | `model.rs` | download-model, acknowledge-model, decrypt-model, root-hash |
//! | `gateway.rs` | gateway (the OpenAI-compatible fine-tuning API) |

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use crate::attest::VerifyProviderOptions;
use crate::chain::{Chain, TxOutcome};
use crate::config::{RawSettings, Settings};
use crate::error::{ClientError, Result};
use crate::flow::Client;

mod account;
mod checkpoints;
mod estimate;
mod evaluate;
mod gateway;
mod model;
mod provider;
mod report;
mod task;

pub use account::{
    CreateAccountArgs, DepositFundArgs, RefundArgs, RetrieveFundArgs, TransferFundArgs,
};
pub use estimate::EstimateArgs;
pub use gateway::{DEFAULT_LISTEN, GatewayArgs};
pub use model::{AcknowledgeModelArgs, DecryptModelArgs, DownloadModelArgs, RootHashArgs};
pub use provider::{ListServiceArgs, VerifyArgs, VerifyProviderArgs};
pub use task::{
    CancelTaskArgs, CreateTaskArgs, GetLogArgs, QueryProgressArgs, TaskArgs, UploadDatasetArgs,
    next_step,
};

const ROOT_AFTER_HELP: &str = "\
The whole flow (amounts are in 0G; `--json` prints one JSON document on stdout):
  sealtune list-service
  sealtune verify-provider --provider 0xPROVIDER
  sealtune create-account --amount 3
  sealtune transfer-fund  --provider 0xPROVIDER --amount 2
  sealtune estimate       --provider 0xPROVIDER --model SmolLM2-135M-Instruct --dataset-path data.jsonl --config-path params.json
  sealtune create-task    --provider 0xPROVIDER --model SmolLM2-135M-Instruct --dataset-path data.jsonl --config-path params.json
  sealtune query-progress --provider 0xPROVIDER
  sealtune download-model --provider 0xPROVIDER --task-id ID --output model.enc     (checks, then acknowledges)
  sealtune decrypt-model  --provider 0xPROVIDER --task-id ID --encrypted model.enc --output model.zip --unzip model/ --wait 300
  sealtune retrieve-fund

Settings: --rpc/--ledger/--serving (or SEALTUNE_RPC/SEALTUNE_LEDGER/SEALTUNE_SERVING, or rpc/ledger/serving
in ~/.config/sealtune/config.toml or --config FILE). The key: --key, SEALTUNE_KEY, or --keystore FILE with
the password in SEALTUNE_KEYSTORE_PASSWORD.

Exit codes: 0 ok; 1 internal/local I/O; 2 bad arguments or input; 3 configuration (key, RPC, addresses);
4 the contract refused (decoded revert); 5 the provider answered an error; 6 a security check failed
(attestation, model hash, tag signature, decryption); 7 RPC node or provider unreachable; 8 not ready yet
(retry later).";

/// The `sealtune` command line.
#[derive(Debug, Parser)]
#[command(
    name = "sealtune",
    version,
    about = "Customer CLI for confidential fine-tuning on the 0G Compute Network (sealtune and 0G providers)",
    after_help = ROOT_AFTER_HELP
)]
pub struct Cli {
    /// Print one JSON document on stdout (errors too) instead of text; hides progress bars.
    #[arg(long, global = true)]
    pub json: bool,
    /// JSON-RPC URL of the chain.
    #[arg(long, global = true, env = "SEALTUNE_RPC")]
    pub rpc: Option<String>,
    /// LedgerManager contract address.
    #[arg(long, global = true, env = "SEALTUNE_LEDGER")]
    pub ledger: Option<String>,
    /// FineTuningServing contract address.
    #[arg(
        long,
        global = true,
        env = "SEALTUNE_SERVING",
        visible_alias = "fine-tuning-ca"
    )]
    pub serving: Option<String>,
    /// The customer's private key (hex). Prefer SEALTUNE_KEY or --keystore: flags are visible to other local users.
    #[arg(long, global = true, env = "SEALTUNE_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// An encrypted JSON keystore holding the customer key (password in SEALTUNE_KEYSTORE_PASSWORD).
    #[arg(long, global = true, env = "SEALTUNE_KEYSTORE")]
    pub keystore: Option<PathBuf>,
    /// The keystore password (from the environment only).
    #[arg(
        long,
        env = "SEALTUNE_KEYSTORE_PASSWORD",
        hide = true,
        hide_env_values = true
    )]
    pub keystore_password: Option<String>,
    /// Config file (default ~/.config/sealtune/config.toml).
    #[arg(long, global = true, env = "SEALTUNE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where verify-provider pins the TLS keys providers' TEEs attest, and later commands read
    /// them (default ~/.local/state/sealtune/tls-pins.json).
    #[arg(long, global = true, env = "SEALTUNE_TLS_PINS")]
    pub tls_pins: Option<PathBuf>,
    /// Reach an https:// provider that has no pinned TLS key with a CA-verified certificate (e.g.
    /// behind a TLS-terminating gateway): that TLS may end OUTSIDE the provider's TEE. Off: such a
    /// provider is refused until verify-provider pins the key its TEE attests.
    #[arg(long, global = true, env = "SEALTUNE_ALLOW_CA_TLS")]
    pub allow_ca_tls: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the ledger (the parent account) with an initial deposit (at least 3 0G).
    #[command(after_help = "Example: sealtune create-account --amount 3")]
    CreateAccount(CreateAccountArgs),
    /// Add funds to the ledger (opens it when missing, then at least 3 0G).
    #[command(after_help = "Example: sealtune deposit-fund --amount 2")]
    DepositFund(DepositFundArgs),
    /// Withdraw available ledger funds to the wallet (the ledger keeps 0 or at least 3 0G).
    Refund(RefundArgs),
    /// Show the wallet, ledger and fine-tuning sub-account balances.
    GetAccount,
    /// List the fine-tuning services registered on chain.
    #[command(after_help = "Example: sealtune list-service --filter SmolLM2")]
    ListService(ListServiceArgs),
    /// Move funds from the ledger into the sub-account with a provider (the first time at least 1 0G).
    #[command(
        after_help = "Example: sealtune transfer-fund --provider 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 --amount 2"
    )]
    TransferFund(TransferFundArgs),
    /// Bring sub-account funds back to the ledger: matured refunds now, the rest after the lock time
    /// (run it again then).
    RetrieveFund(RetrieveFundArgs),
    /// Check a provider's TEE attestation against its on-chain TEE signer.
    #[command(
        after_help = "Examples:\n  sealtune verify-provider --provider 0x7099… --config-hash 0x<the provider's GET /v1/config hash> --save-quote quote.json\n  sealtune verify-provider --provider 0x7099… --allow-dev-quote --policy dev     (a local dev stack only)"
    )]
    VerifyProvider(VerifyProviderArgs),
    /// Count the dataset's tokens with the model's tokenizer and compute the fee, before paying anything.
    #[command(
        after_help = "Examples:\n  sealtune estimate --tokenizer ./SmolLM2/tokenizer.json --dataset-path data.jsonl --price-per-token 1000neuron\n  sealtune estimate --provider 0x7099… --model HuggingFaceTB/SmolLM2-135M-Instruct --dataset-path data.jsonl --config-path params.json"
    )]
    Estimate(EstimateArgs),
    /// Upload a dataset file to the provider's TEE; prints its hash for `create-task --dataset`.
    UploadDataset(UploadDatasetArgs),
    /// Create a fine-tuning task (verifies the provider first unless --no-verify).
    #[command(
        after_help = "Example: sealtune create-task --provider 0x7099… --model SmolLM2-135M-Instruct --dataset-path data.jsonl --config-path params.json --max-fee 0.5"
    )]
    CreateTask(CreateTaskArgs),
    /// Show a task's state (the latest task without --task-id; every task with --all).
    QueryProgress(QueryProgressArgs),
    /// Print a task's progress log.
    GetLog(GetLogArgs),
    /// Show a task's signed training report (eval loss before/after, tokens, steps), checked against
    /// the chain: the TEE signer's signature and the deliverable's root.
    #[command(
        after_help = "Example: sealtune get-report --provider 0x7099… --task-id 6f1c… --save report.json"
    )]
    GetReport(report::GetReportArgs),
    /// Evaluate a delivered model on your own dataset inside the provider's TEE (base vs tuned eval
    /// loss, is_finetune): an ordinary task billed for the dataset's tokens once; its deliverable is
    /// the signed evaluation report.
    #[command(
        after_help = "Example: sealtune evaluate --provider 0x7099… --task-id 6f1c… --dataset-path eval.jsonl --max-fee 0.1
Then download-model, decrypt-model --unzip eval, check-evaluation --file eval"
    )]
    Evaluate(evaluate::EvaluateArgs),
    /// Show a decrypted evaluation report, checked against the chain (TEE signer, evaluated root).
    CheckEvaluation(evaluate::CheckEvaluationArgs),
    /// List a task's sealed training checkpoints (step, loss, time, size): what a training the
    /// provider restarts resumes from.
    #[command(
        after_help = "Example: sealtune list-checkpoints --provider 0x7099… --task 6f1c… --json"
    )]
    ListCheckpoints(checkpoints::ListCheckpointsArgs),
    /// Cancel a task that has not started training.
    CancelTask(CancelTaskArgs),
    /// Download the encrypted model, check its hash and TEE tag signature against the chain, then
    /// acknowledge it on chain (nothing is acknowledged when a check fails).
    #[command(
        after_help = "Example: sealtune download-model --provider 0x7099… --task-id 6f1c… --output model.enc"
    )]
    DownloadModel(DownloadModelArgs),
    /// Acknowledge a deliverable on chain (checking --data-path first when given).
    AcknowledgeModel(AcknowledgeModelArgs),
    /// Decrypt the model with the key released on chain at settlement (streaming), optionally unzip.
    DecryptModel(DecryptModelArgs),
    /// Print the 0G Storage root hash of each file (one 0x… per line).
    RootHash(RootHashArgs),
    /// Serve an OpenAI-compatible fine-tuning API on loopback: each job runs this flow with your key,
    /// which never leaves this process.
    #[command(
        after_help = "Example: sealtune gateway --provider 0x7099… --model gpt-4o-mini-2024-07-18=SmolLM2-135M-Instruct\nThen: OpenAI(base_url=\"http://127.0.0.1:8015/v1\", api_key=\"unused\").fine_tuning.jobs.create(...)"
    )]
    Gateway(GatewayArgs),
}

/// What a command produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The `--json` document.
    pub json: Value,
    /// The text for humans.
    pub human: String,
    /// The process exit code (0, or [`crate::error::exit::VERIFICATION`] for a provider that did not verify).
    pub exit_code: i32,
}

impl Output {
    fn new(json: Value, human: impl Into<String>) -> Self {
        Output {
            json,
            human: human.into(),
            exit_code: 0,
        }
    }
}

/// What the run takes from the outside world: the clock, randomness and the terminal.
#[derive(Debug, Clone)]
pub struct RunEnv {
    /// Milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// Fresh random bytes (the attestation nonce).
    pub random: [u8; 32],
    /// Draw progress bars on stderr.
    pub progress: bool,
}

/// Run one command.
pub async fn run(cli: &Cli, env: &RunEnv) -> Result<Output> {
    let ctx = Ctx { cli, env };
    match &cli.command {
        Command::CreateAccount(a) => a.run(&ctx).await,
        Command::DepositFund(a) => a.run(&ctx).await,
        Command::Refund(a) => a.run(&ctx).await,
        Command::GetAccount => account::get_account(&ctx).await,
        Command::ListService(a) => a.run(&ctx).await,
        Command::TransferFund(a) => a.run(&ctx).await,
        Command::RetrieveFund(a) => a.run(&ctx).await,
        Command::VerifyProvider(a) => a.run(&ctx).await,
        Command::Estimate(a) => a.run(&ctx).await,
        Command::UploadDataset(a) => a.run(&ctx).await,
        Command::CreateTask(a) => a.run(&ctx).await,
        Command::QueryProgress(a) => a.run(&ctx).await,
        Command::GetLog(a) => a.run(&ctx).await,
        Command::GetReport(a) => a.run(&ctx).await,
        Command::Evaluate(a) => a.run(&ctx).await,
        Command::CheckEvaluation(a) => a.run(&ctx).await,
        Command::ListCheckpoints(a) => a.run(&ctx).await,
        Command::CancelTask(a) => a.run(&ctx).await,
        Command::DownloadModel(a) => a.run(&ctx).await,
        Command::AcknowledgeModel(a) => a.run(&ctx).await,
        Command::DecryptModel(a) => a.run(&ctx).await,
        Command::RootHash(a) => a.run(),
        Command::Gateway(a) => a.run(&ctx).await,
    }
}

/// Render an error for `--json` (one JSON document).
pub fn error_json(e: &ClientError) -> Value {
    json!({
        "error": {
            "kind": e.kind(),
            "message": e.to_string(),
            "hint": e.hint(),
            "revert": e.revert_name(),
            "exit_code": e.exit_code(),
        }
    })
}

/// Render a command-line usage error for `--json` (one JSON document; the exit code is 2).
pub fn usage_error_json(e: &clap::Error) -> Value {
    json!({ "error": {
        "kind": "usage",
        "message": e.kind().as_str().unwrap_or("invalid arguments"),
        "detail": e.render().to_string(),
        "hint": "see `sealtune --help` or `sealtune <command> --help`",
        "exit_code": crate::error::exit::USAGE,
    }})
}

/// What every command may use: the global flags and the outside world.
struct Ctx<'a> {
    cli: &'a Cli,
    env: &'a RunEnv,
}

impl Ctx<'_> {
    /// Settings from the flags, the environment and the config file.
    fn settings(&self) -> Result<Settings> {
        let cli = self.cli;
        RawSettings {
            rpc: cli.rpc.clone(),
            ledger: cli.ledger.clone(),
            serving: cli.serving.clone(),
            key: cli.key.clone(),
            keystore: cli.keystore.clone(),
            keystore_password: cli.keystore_password.clone(),
            config: cli.config.clone(),
        }
        .resolve()
    }

    /// A read-only chain connection.
    fn chain(&self) -> Result<Chain> {
        self.settings()?.connect()
    }

    /// The customer (needs the key), with the TLS pins.
    fn client(&self) -> Result<Client> {
        Ok(Client::new(self.settings()?.connect_with_key()?)?.with_tls_pins(self.tls_pins()?))
    }

    /// The TLS pins: `--tls-pins`, else the default file (in memory when there is no home).
    fn tls_pins(&self) -> Result<crate::tls::TlsPins> {
        match self
            .cli
            .tls_pins
            .clone()
            .or_else(crate::tls::TlsPins::default_path)
        {
            Some(file) => crate::tls::TlsPins::load(&file, self.cli.allow_ca_tls),
            None => Ok(crate::tls::TlsPins::in_memory(self.cli.allow_ca_tls)),
        }
    }

    /// Whether to draw progress bars (a terminal, and no `--json`).
    fn show_progress(&self) -> bool {
        self.env.progress && !self.cli.json
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or_else(|e| json!({ "serialization_error": e.to_string() }))
}

/// Read a file named on the command line (a missing or unreadable one is bad input).
fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| ClientError::InvalidInput(format!("{}: {e}", path.display())))
}

/// Read a training parameters file: UTF-8 text holding a JSON object.
fn read_params(path: &Path) -> Result<String> {
    let text = String::from_utf8(read_file(path)?)
        .map_err(|_| ClientError::InvalidInput(format!("{} is not UTF-8", path.display())))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| ClientError::InvalidInput(format!("{}: not JSON: {e}", path.display())))?;
    if !v.is_object() {
        return Err(ClientError::InvalidInput(format!(
            "{}: training parameters must be a JSON object",
            path.display()
        )));
    }
    Ok(text.trim().to_owned())
}

fn verify_options(args: &VerifyArgs, env: &RunEnv) -> Result<VerifyProviderOptions> {
    use sealtune_verifier::policy::shipped;
    let policy = args
        .policy
        .as_deref()
        .map(|p| shipped::load(p).map(Box::new))
        .transpose()
        .map_err(|e| ClientError::InvalidInput(e.to_string()))?;
    let config_hashes = args
        .config_hash
        .iter()
        .map(|h| shipped::parse_config_hash(h))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| ClientError::InvalidInput(format!("--config-hash: {e}")))?;
    Ok(VerifyProviderOptions {
        now: env.now_ms / 1000,
        nonce: env.random,
        collateral: args.collateral.as_deref().map(read_file).transpose()?,
        collateral_source: sealtune_verifier::collateral::CollateralSource {
            pccs_url: args.pccs.clone(),
            cache_dir: args
                .collateral_cache
                .clone()
                .or_else(crate::attest::default_collateral_cache),
            offline: args.offline,
        },
        policy,
        no_policy: args.no_policy,
        config_hashes,
        allow_dev_quote: args.allow_dev_quote,
        allow_no_freshness: args.allow_no_freshness,
        allow_unacknowledged_signer: args.allow_unacknowledged_signer,
        allowed_app_events: args.allow_app_events.clone(),
    })
}

fn tx_line(what: &str, tx: &TxOutcome) -> String {
    format!(
        "{what}: transaction {} (block {})",
        tx.tx_hash,
        tx.block.map_or("?".into(), |b| b.to_string())
    )
}

fn dev_warning(allow: bool) {
    if allow {
        eprintln!(
            "WARNING: --allow-dev-quote accepts a provider WITHOUT a TEE: it can read your dataset and your model. Use it only for local tests."
        );
    }
}
