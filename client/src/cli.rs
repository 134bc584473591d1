//! The `sealtune` command line: argument definitions (clap) and one function per command that
//! calls the library and returns an [`Output`] (one JSON document for `--json`, text otherwise).
//! The binary only parses, runs and prints.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use crate::amount::{format_0g, parse_amount};
use crate::attest::VerifyProviderOptions;
use crate::chain::Chain;
use crate::config::{RawSettings, Settings, parse_address};
use crate::error::{ClientError, Result};
use crate::estimate::{PriceInputs, TokenizerSource};
use crate::flow::{Client, CreateTaskRequest, DatasetSource, VerifyMode};
use crate::progress::{Progress, bar};

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
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// `--provider`.
#[derive(Debug, Args)]
pub struct ProviderArg {
    /// The provider's address (see `sealtune list-service`).
    #[arg(long)]
    pub provider: String,
}

/// `--provider` and `--task-id`.
#[derive(Debug, Args)]
pub struct TaskArgs {
    /// The provider's address.
    #[arg(long)]
    pub provider: String,
    /// The task id (a UUID).
    #[arg(long = "task-id", visible_alias = "task")]
    pub task_id: String,
}

/// Options of the attestation check.
#[derive(Debug, Args, Clone)]
pub struct VerifyArgs {
    /// DCAP collateral JSON (dcap-qvl format, as a PCCS serves it); needed for hardware quotes.
    #[arg(long)]
    pub collateral: Option<PathBuf>,
    /// Accept the INSECURE dev attestation source (no TEE: the provider sees everything). Local tests only.
    #[arg(long)]
    pub allow_dev_quote: bool,
    /// Fail when the provider ignores the nonce (its quote could be a replay).
    #[arg(long)]
    pub require_fresh: bool,
    /// An application event allowed in the event log after boot (repeatable).
    #[arg(long = "allow-app-event")]
    pub allow_app_events: Vec<String>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the ledger (the parent account) with an initial deposit (at least 3 0G).
    #[command(after_help = "Example: sealtune create-account --amount 3")]
    CreateAccount {
        /// Amount in 0G (e.g. 3 or 4.5), or neuron with the suffix `neuron`.
        #[arg(long, visible_alias = "balance")]
        amount: String,
        /// Free text stored with the ledger.
        #[arg(long, default_value = "")]
        info: String,
    },
    /// Add funds to the ledger (opens it when missing, then at least 3 0G).
    #[command(after_help = "Example: sealtune deposit-fund --amount 2")]
    DepositFund {
        /// Amount in 0G.
        #[arg(long)]
        amount: String,
    },
    /// Withdraw available ledger funds to the wallet (the ledger keeps 0 or at least 3 0G).
    Refund {
        /// Amount in 0G.
        #[arg(long)]
        amount: String,
    },
    /// Show the wallet, ledger and fine-tuning sub-account balances.
    GetAccount,
    /// List the fine-tuning services registered on chain.
    #[command(after_help = "Example: sealtune list-service --filter SmolLM2")]
    ListService {
        /// Only services whose URL, GPU type or a model name contains this text (case-insensitive).
        #[arg(long)]
        filter: Option<String>,
        /// Also ask each provider how many tasks it has queued.
        #[arg(long)]
        pending: bool,
    },
    /// Move funds from the ledger into the sub-account with a provider (the first time at least 1 0G).
    #[command(
        after_help = "Example: sealtune transfer-fund --provider 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 --amount 2"
    )]
    TransferFund {
        /// The provider's address.
        #[arg(long)]
        provider: String,
        /// Amount in 0G.
        #[arg(long)]
        amount: String,
        /// The ledger's service name (default: what the ledger registry says, "fine-tuning-v1.0").
        #[arg(long)]
        service_name: Option<String>,
    },
    /// Bring sub-account funds back to the ledger: matured refunds now, the rest after the lock time
    /// (run it again then).
    RetrieveFund {
        /// Only these providers (repeatable; default: every sub-account).
        #[arg(long)]
        provider: Vec<String>,
    },
    /// Check a provider's TEE attestation against its on-chain TEE signer.
    #[command(
        after_help = "Example: sealtune verify-provider --provider 0x7099… --collateral collateral.json --save-quote quote.json"
    )]
    VerifyProvider {
        /// The provider's address.
        #[arg(long)]
        provider: String,
        /// Save the provider's /v1/quote answer here (for `sealtune-verify quote --file`).
        #[arg(long)]
        save_quote: Option<PathBuf>,
        /// Attestation options.
        #[command(flatten)]
        verify: VerifyArgs,
    },
    /// Count the dataset's tokens with the model's tokenizer and compute the fee, before paying anything.
    #[command(
        after_help = "Examples:\n  sealtune estimate --tokenizer ./SmolLM2/tokenizer.json --dataset-path data.jsonl --price-per-token 1000neuron\n  sealtune estimate --provider 0x7099… --model HuggingFaceTB/SmolLM2-135M-Instruct --dataset-path data.jsonl --config-path params.json"
    )]
    Estimate {
        /// The dataset (JSONL or zip).
        #[arg(long)]
        dataset_path: PathBuf,
        /// A tokenizer.json file or the model directory holding it.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// The model: its tokenizer is looked up in the local Hugging Face cache (a repo id, or the
        /// provider's model name whose `tokenizer` field names one).
        #[arg(long)]
        model: Option<String>,
        /// Training parameters JSON file (for num_train_epochs; default 3 epochs).
        #[arg(long)]
        config_path: Option<PathBuf>,
        /// The provider (its on-chain price per token).
        #[arg(long)]
        provider: Option<String>,
        /// Price per token instead of the provider's (in 0G, or neuron with the suffix).
        #[arg(long)]
        price_per_token: Option<String>,
        /// The model's price coefficient (1 on official providers).
        #[arg(long, default_value = "1")]
        price_coefficient: String,
        /// The model's storage fee (0 on official providers).
        #[arg(long, default_value = "0")]
        storage_fee: String,
        /// Also count `instruction` (the documented variant; the fee uses the official count).
        #[arg(long)]
        count_instruction: bool,
    },
    /// Upload a dataset file to the provider's TEE; prints its hash for `create-task --dataset`.
    UploadDataset {
        /// The provider's address.
        #[arg(long)]
        provider: String,
        /// The dataset file (JSONL or zip).
        #[arg(long)]
        data_path: PathBuf,
    },
    /// Create a fine-tuning task (verifies the provider first unless --no-verify).
    #[command(
        after_help = "Example: sealtune create-task --provider 0x7099… --model SmolLM2-135M-Instruct --dataset-path data.jsonl --config-path params.json --max-fee 0.5"
    )]
    CreateTask {
        /// The provider's address.
        #[arg(long)]
        provider: String,
        /// The model name (as the provider lists it) or its hash.
        #[arg(long, visible_alias = "pretrained-model")]
        model: String,
        /// A dataset hash already uploaded.
        #[arg(
            long,
            conflicts_with = "dataset_path",
            required_unless_present = "dataset_path"
        )]
        dataset: Option<String>,
        /// A dataset file to upload to the provider's TEE first.
        #[arg(long)]
        dataset_path: Option<PathBuf>,
        /// Training parameters JSON file.
        #[arg(long)]
        config_path: PathBuf,
        /// The most you agree to pay (in 0G): signed into the request; the task fails before
        /// training if the fee is higher.
        #[arg(long)]
        max_fee: Option<String>,
        /// Queue behind the provider's other tasks if it is busy.
        #[arg(long)]
        wait: bool,
        /// Skip the attestation check (you then trust the provider blindly).
        #[arg(long)]
        no_verify: bool,
        /// Attestation options.
        #[command(flatten)]
        verify: VerifyArgs,
    },
    /// Show a task's state (the latest task without --task-id; every task with --all).
    QueryProgress {
        /// The provider's address.
        #[arg(long)]
        provider: String,
        /// The task id.
        #[arg(long = "task-id", visible_alias = "task")]
        task_id: Option<String>,
        /// List every task with this provider.
        #[arg(long, conflicts_with = "task_id")]
        all: bool,
    },
    /// Print a task's progress log.
    GetLog {
        /// The provider's address.
        #[arg(long)]
        provider: String,
        /// The task id (default: the latest).
        #[arg(long = "task-id", visible_alias = "task")]
        task_id: Option<String>,
    },
    /// Cancel a task that has not started training.
    CancelTask {
        /// The provider and the task.
        #[command(flatten)]
        task: TaskArgs,
    },
    /// Download the encrypted model, check its hash and TEE tag signature against the chain, then
    /// acknowledge it on chain (nothing is acknowledged when a check fails).
    #[command(
        after_help = "Example: sealtune download-model --provider 0x7099… --task-id 6f1c… --output model.enc"
    )]
    DownloadModel {
        /// The provider and the task.
        #[command(flatten)]
        task: TaskArgs,
        /// Where to write the encrypted model (a file, or a directory).
        #[arg(long, visible_alias = "data-path")]
        output: PathBuf,
        /// Download and check only; acknowledge later with `acknowledge-model`.
        #[arg(long)]
        no_acknowledge: bool,
    },
    /// Acknowledge a deliverable on chain (checking --data-path first when given).
    AcknowledgeModel {
        /// The provider and the task.
        #[command(flatten)]
        task: TaskArgs,
        /// The downloaded encrypted model to check before acknowledging.
        #[arg(long)]
        data_path: Option<PathBuf>,
    },
    /// Decrypt the model with the key released on chain at settlement (streaming), optionally unzip.
    DecryptModel {
        /// The provider and the task.
        #[command(flatten)]
        task: TaskArgs,
        /// The encrypted model (from download-model).
        #[arg(long)]
        encrypted: PathBuf,
        /// Where to write the decrypted zip.
        #[arg(long)]
        output: PathBuf,
        /// Also extract the zip into this new directory.
        #[arg(long)]
        unzip: Option<PathBuf>,
        /// Wait up to this many seconds for the provider's settlement.
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// Print the 0G Storage root hash of each file (one 0x… per line).
    RootHash {
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
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

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or_else(|e| json!({ "serialization_error": e.to_string() }))
}

fn settings(cli: &Cli) -> Result<Settings> {
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

fn chain(s: &Settings, with_key: bool) -> Result<Chain> {
    let signer = if with_key {
        Some(s.key.signer()?)
    } else {
        None
    };
    Chain::connect(s.rpc()?, s.contracts()?, signer)
}

fn client(s: &Settings) -> Result<Client> {
    // The key first: a missing key is the first thing to tell, before the chain settings.
    let signer = s.key.signer()?;
    Client::new(Chain::connect(s.rpc()?, s.contracts()?, Some(signer))?)
}

/// Read a file named on the command line (a missing or unreadable one is bad input).
fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| ClientError::InvalidInput(format!("{}: {e}", path.display())))
}

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
    Ok(VerifyProviderOptions {
        now: env.now_ms / 1000,
        nonce: env.random,
        collateral: args.collateral.as_deref().map(read_file).transpose()?,
        allow_dev_quote: args.allow_dev_quote,
        require_fresh: args.require_fresh,
        allowed_app_events: args.allow_app_events.clone(),
    })
}

fn tx_line(what: &str, tx: &crate::chain::TxOutcome) -> String {
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

/// Run one command.
pub async fn run(cli: &Cli, env: &RunEnv) -> Result<Output> {
    let show = env.progress && !cli.json;
    match &cli.command {
        Command::RootHash { files } => root_hash(files),
        Command::CreateAccount { amount, info } => {
            let amount = parse_amount(amount)?;
            let s = settings(cli)?;
            let c = client(&s)?;
            let tx = c.chain.create_account(amount, info).await?;
            let ledger = c.chain.ledger_of(c.user()?).await?;
            Ok(Output::new(
                json!({ "tx": tx, "ledger": ledger }),
                format!(
                    "{}\nledger of {}: {} 0G available",
                    tx_line("ledger created", &tx),
                    c.user()?,
                    ledger
                        .map(|l| format_0g(l.available_balance))
                        .unwrap_or_default()
                ),
            ))
        }
        Command::DepositFund { amount } => {
            let amount = parse_amount(amount)?;
            let s = settings(cli)?;
            let c = client(&s)?;
            let tx = c.chain.deposit_fund(amount).await?;
            let ledger = c.chain.ledger_of(c.user()?).await?;
            Ok(Output::new(
                json!({ "tx": tx, "ledger": ledger }),
                format!(
                    "{}\nledger: {} 0G available, {} 0G total",
                    tx_line("deposited", &tx),
                    ledger
                        .as_ref()
                        .map(|l| format_0g(l.available_balance))
                        .unwrap_or_default(),
                    ledger
                        .as_ref()
                        .map(|l| format_0g(l.total_balance))
                        .unwrap_or_default()
                ),
            ))
        }
        Command::Refund { amount } => {
            let amount = parse_amount(amount)?;
            let s = settings(cli)?;
            let c = client(&s)?;
            let tx = c.chain.refund(amount).await?;
            Ok(Output::new(
                json!({ "tx": tx }),
                tx_line(&format!("{} 0G back to the wallet", format_0g(amount)), &tx),
            ))
        }
        Command::GetAccount => {
            let s = settings(cli)?;
            let c = client(&s)?;
            let a = c.account_summary().await?;
            let mut h = format!(
                "account {}\nwallet: {} 0G\n",
                a.user,
                format_0g(a.wallet_balance)
            );
            match &a.ledger {
                None => h.push_str(
                    "ledger: none (create it with `sealtune create-account --amount 3`)\n",
                ),
                Some(l) => h.push_str(&format!(
                    "ledger: {} 0G available, {} 0G total\n",
                    format_0g(l.available_balance),
                    format_0g(l.total_balance)
                )),
            }
            for sub in &a.sub_accounts {
                h.push_str(&format!(
                    "provider {}: balance {} 0G, pending refund {} 0G, nonce {}, TEE signer acknowledged {}, {} deliverable(s)\n",
                    sub.provider,
                    format_0g(sub.balance),
                    format_0g(sub.pending_refund),
                    sub.nonce,
                    sub.acknowledged,
                    sub.deliverables.len()
                ));
            }
            Ok(Output::new(to_json(&a), h.trim_end()))
        }
        Command::ListService { filter, pending } => {
            let s = settings(cli)?;
            let ch = chain(&s, false)?;
            let mut services = ch.list_services().await?;
            if let Some(f) = filter {
                let f = f.to_lowercase();
                services.retain(|sv| {
                    sv.url.to_lowercase().contains(&f)
                        || sv.quota.gpu_type.to_lowercase().contains(&f)
                        || sv.models.iter().any(|m| m.to_lowercase().contains(&f))
                });
            }
            let mut rows = Vec::new();
            let mut h = String::new();
            for sv in &services {
                let queued = if *pending {
                    match crate::api::ProviderApi::new(&sv.url) {
                        Ok(api) => api.pending().await.ok(),
                        Err(_) => None,
                    }
                } else {
                    None
                };
                let mut row = to_json(sv);
                if *pending && let Value::Object(m) = &mut row {
                    m.insert("pending".into(), json!(queued));
                }
                rows.push(row);
                h.push_str(&format!(
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
                ));
            }
            if services.is_empty() {
                h.push_str("no fine-tuning services registered");
            }
            Ok(Output::new(Value::Array(rows), h.trim_end()))
        }
        Command::TransferFund {
            provider,
            amount,
            service_name,
        } => {
            let provider = parse_address("--provider", provider)?;
            let amount = parse_amount(amount)?;
            let s = settings(cli)?;
            let c = client(&s)?;
            let tx = c
                .chain
                .transfer_fund(provider, amount, service_name.as_deref())
                .await?;
            let account = c.chain.account(c.user()?, provider).await?;
            let ledger = c.chain.ledger_of(c.user()?).await?;
            Ok(Output::new(
                json!({ "tx": tx, "sub_account": account, "ledger": ledger }),
                format!(
                    "{}\nsub-account with {provider}: {} 0G; ledger: {} 0G available",
                    tx_line("transferred", &tx),
                    account.map(|a| format_0g(a.balance)).unwrap_or_default(),
                    ledger
                        .map(|l| format_0g(l.available_balance))
                        .unwrap_or_default()
                ),
            ))
        }
        Command::RetrieveFund { provider } => {
            let providers = provider
                .iter()
                .map(|p| parse_address("--provider", p))
                .collect::<Result<Vec<_>>>()?;
            let s = settings(cli)?;
            let c = client(&s)?;
            let (providers, tx) = c.chain.retrieve_fund(&providers).await?;
            let user = c.user()?;
            let mut subs = Vec::new();
            for p in &providers {
                subs.push(c.chain.account(user, *p).await?);
            }
            let ledger = c.chain.ledger_of(user).await?;
            let lock = c.chain.lock_time().await?;
            Ok(Output::new(
                json!({ "tx": tx, "providers": providers, "sub_accounts": subs, "ledger": ledger, "lock_time_secs": lock }),
                format!(
                    "{}\nledger: {} 0G available; the rest of each sub-account is pending refund and can be retrieved after {} s (run `sealtune retrieve-fund` again then)",
                    tx_line("retrieve requested", &tx),
                    ledger
                        .map(|l| format_0g(l.available_balance))
                        .unwrap_or_default(),
                    lock
                ),
            ))
        }
        Command::VerifyProvider {
            provider,
            save_quote,
            verify,
        } => {
            let provider = parse_address("--provider", provider)?;
            let opts = verify_options(verify, env)?;
            dev_warning(verify.allow_dev_quote);
            let s = settings(cli)?;
            let ch = chain(&s, false)?;
            let v = crate::attest::verify_provider(&ch, provider, &opts).await?;
            if let Some(p) = save_quote {
                std::fs::write(p, &v.raw_quote).map_err(|e| ClientError::io(p, e))?;
            }
            let mut out = Output::new(to_json(&v), v.render_human());
            if !v.verified {
                // The report is the answer; the exit code says it failed.
                out.exit_code = crate::error::exit::VERIFICATION;
            }
            Ok(out)
        }
        Command::Estimate {
            dataset_path,
            tokenizer,
            model,
            config_path,
            provider,
            price_per_token,
            price_coefficient,
            storage_fee,
            count_instruction,
        } => {
            let params = match config_path {
                Some(p) => read_params(p)?,
                None => "{}".to_owned(),
            };
            let coefficient =
                price_coefficient
                    .parse()
                    .map_err(|e: sealtune_protocol::fee::FeeError| {
                        ClientError::InvalidInput(e.to_string())
                    })?;
            let storage_fee = parse_amount(storage_fee)?;
            let provider = provider
                .as_deref()
                .map(|p| parse_address("--provider", p))
                .transpose()?;
            let mut service = None;
            let price_per_token = match (price_per_token, provider) {
                (Some(p), _) => parse_amount(p)?,
                (None, Some(p)) => {
                    let s = settings(cli)?;
                    let sv = chain(&s, false)?.service(p).await?;
                    let price = sv.price_per_token;
                    service = Some(sv);
                    price
                }
                (None, None) => {
                    return Err(ClientError::InvalidInput(
                        "give --provider (its on-chain price) or --price-per-token".into(),
                    ));
                }
            };
            let source = match (tokenizer, model) {
                (Some(t), _) => TokenizerSource::Path(t.clone()),
                (None, Some(m)) => {
                    let mut repo = m.clone();
                    if !m.contains('/')
                        && let Some(sv) = &service
                        && let Ok(api) = crate::api::ProviderApi::new(&sv.url)
                        && let Ok(info) = api.model(m).await
                        && let Some(t) = info.tokenizer.filter(|t| t.contains('/'))
                    {
                        repo = t;
                    }
                    TokenizerSource::HfCache {
                        repo,
                        cache_dir: None,
                    }
                }
                (None, None) => {
                    return Err(ClientError::InvalidInput(
                        "give --tokenizer PATH or --model NAME (its tokenizer from the local Hugging Face cache)".into(),
                    ));
                }
            };
            let price = PriceInputs {
                price_per_token,
                price_coefficient: coefficient,
                storage_fee,
            };
            let dataset = dataset_path.clone();
            let count = *count_instruction;
            let e = tokio::task::spawn_blocking(move || {
                crate::estimate::estimate(&source, &dataset, &params, &price, count)
            })
            .await
            .map_err(|e| ClientError::InvalidInput(format!("estimate task failed: {e}")))??;
            Ok(Output::new(
                to_json(&e),
                format!(
                    "{} records, {} tokens (official count{}), {} epoch(s)\nfee: {} 0G ({} neuron) = {} tokens x {} neuron x {} epochs x {} + {} neuron",
                    e.records,
                    e.tokens,
                    e.tokens_with_instruction
                        .map(|t| format!("; {t} counting instruction"))
                        .unwrap_or_default(),
                    e.epochs,
                    format_0g(e.fee),
                    e.fee,
                    e.tokens,
                    e.price_per_token,
                    e.epochs,
                    e.price_coefficient,
                    e.storage_fee
                ),
            ))
        }
        Command::UploadDataset {
            provider,
            data_path,
        } => {
            let provider = parse_address("--provider", provider)?;
            let s = settings(cli)?;
            let c = client(&s)?;
            let pb: Arc<dyn Progress> = Arc::new(bar("upload", show));
            let up = c
                .upload_dataset(provider, data_path, env.now_ms, pb)
                .await?;
            Ok(Output::new(
                to_json(&up),
                format!(
                    "uploaded {} bytes; dataset hash {}",
                    up.bytes, up.dataset_hash
                ),
            ))
        }
        Command::CreateTask {
            provider,
            model,
            dataset,
            dataset_path,
            config_path,
            max_fee,
            wait,
            no_verify,
            verify,
        } => {
            let provider = parse_address("--provider", provider)?;
            let training_params = read_params(config_path)?;
            let max_fee = max_fee.as_deref().map(parse_amount).transpose()?;
            let dataset = match (dataset, dataset_path) {
                (Some(h), None) => DatasetSource::Hash(h.clone()),
                (None, Some(p)) => DatasetSource::File(p.clone()),
                _ => {
                    return Err(ClientError::InvalidInput(
                        "give exactly one of --dataset HASH and --dataset-path FILE".into(),
                    ));
                }
            };
            let verify_mode = if *no_verify {
                eprintln!("WARNING: --no-verify: the provider's attestation is not checked");
                VerifyMode::Skip
            } else {
                dev_warning(verify.allow_dev_quote);
                VerifyMode::Verify(verify_options(verify, env)?)
            };
            let s = settings(cli)?;
            let c = client(&s)?;
            let req = CreateTaskRequest {
                provider,
                model: model.clone(),
                dataset,
                training_params,
                max_fee,
                wait: *wait,
                verify: verify_mode,
            };
            let pb: Arc<dyn Progress> = Arc::new(bar("upload", show));
            let t = c.create_task(&req, env.now_ms, pb).await?;
            Ok(Output::new(
                to_json(&t),
                format!(
                    "created task {}\n  provider verified: {}{}\n  dataset {}\n  signature: {} form{}\nfollow it with `sealtune query-progress --provider {provider} --task-id {}`",
                    t.task_id,
                    t.provider_verified,
                    if t.dev_quote {
                        " (INSECURE dev attestation)"
                    } else {
                        ""
                    },
                    t.dataset_hash,
                    t.signature_form,
                    t.max_fee
                        .map(|f| format!(", fee ceiling {} 0G", format_0g(f)))
                        .unwrap_or_default(),
                    t.task_id
                ),
            ))
        }
        Command::QueryProgress {
            provider,
            task_id,
            all,
        } => {
            let provider = parse_address("--provider", provider)?;
            let s = settings(cli)?;
            let c = client(&s)?;
            if *all {
                let tasks = c.tasks(provider).await?;
                let h = tasks
                    .iter()
                    .map(|t| {
                        format!(
                            "{}  {}  {}",
                            t.id,
                            t.progress.as_deref().unwrap_or("?"),
                            t.created_at.as_deref().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                return Ok(Output::new(
                    to_json(&tasks),
                    if h.is_empty() { "no tasks".into() } else { h },
                ));
            }
            let t = c.task(provider, task_id.as_deref()).await?;
            let state = t.progress.clone().unwrap_or_else(|| "?".into());
            let next = next_step(&state, provider, &t.id);
            let mut j = to_json(&t);
            if let Value::Object(m) = &mut j {
                m.insert("next".into(), json!(next));
            }
            Ok(Output::new(
                j,
                format!(
                    "task {}: {state}{}\n{next}",
                    t.id,
                    t.fee
                        .as_deref()
                        .filter(|f| *f != "0")
                        .map(|f| format!(" (fee {f} neuron)"))
                        .unwrap_or_default()
                ),
            ))
        }
        Command::GetLog { provider, task_id } => {
            let provider = parse_address("--provider", provider)?;
            let s = settings(cli)?;
            let c = client(&s)?;
            let (id, log) = c.log(provider, task_id.as_deref()).await?;
            Ok(Output::new(
                json!({ "task_id": id, "log": log }),
                log.trim_end(),
            ))
        }
        Command::CancelTask { task } => {
            let provider = parse_address("--provider", &task.provider)?;
            let s = settings(cli)?;
            let c = client(&s)?;
            let answer = c.cancel_task(provider, &task.task_id).await?;
            Ok(Output::new(
                json!({ "task_id": task.task_id, "cancelled": true, "answer": answer }),
                format!("task {} cancelled", task.task_id),
            ))
        }
        Command::DownloadModel {
            task,
            output,
            no_acknowledge,
        } => {
            let provider = parse_address("--provider", &task.provider)?;
            let s = settings(cli)?;
            let c = client(&s)?;
            let pb = bar("download", show);
            let d = c
                .download_model(
                    provider,
                    &task.task_id,
                    output,
                    !no_acknowledge,
                    env.now_ms,
                    &pb,
                )
                .await?;
            Ok(Output::new(
                to_json(&d),
                format!(
                    "downloaded {} bytes to {}\n  hash matches the on-chain modelRootHash ({:?})\n  tag signature by the TEE signer {}\n{}",
                    d.bytes,
                    d.path.display(),
                    d.check.root_kind,
                    d.check.tag_signer,
                    match (&d.acknowledgement, d.acknowledged) {
                        (Some(tx), _) => format!(
                            "{}\nnext: `sealtune decrypt-model --provider {provider} --task-id {} --encrypted {} --output model.zip --wait 300`",
                            tx_line("acknowledged", tx),
                            task.task_id,
                            d.path.display()
                        ),
                        (None, true) => "already acknowledged".to_owned(),
                        (None, false) => format!(
                            "NOT acknowledged (--no-acknowledge): run `sealtune acknowledge-model --provider {provider} --task-id {} --data-path {}`",
                            task.task_id,
                            d.path.display()
                        ),
                    }
                ),
            ))
        }
        Command::AcknowledgeModel { task, data_path } => {
            let provider = parse_address("--provider", &task.provider)?;
            let s = settings(cli)?;
            let c = client(&s)?;
            if data_path.is_none() {
                eprintln!("note: acknowledging without --data-path: the model file is not checked");
            }
            let (check, tx) = c
                .acknowledge_model(provider, &task.task_id, data_path.as_deref())
                .await?;
            Ok(Output::new(
                json!({ "task_id": task.task_id, "checked": check, "tx": tx, "acknowledged": true }),
                match &tx {
                    Some(tx) => tx_line("acknowledged", tx),
                    None => "already acknowledged".to_owned(),
                },
            ))
        }
        Command::DecryptModel {
            task,
            encrypted,
            output,
            unzip,
            wait,
        } => {
            let provider = parse_address("--provider", &task.provider)?;
            let s = settings(cli)?;
            let c = client(&s)?;
            if *wait > 0 {
                c.wait_settled(
                    provider,
                    &task.task_id,
                    Duration::from_secs(*wait),
                    Duration::from_secs(2),
                )
                .await?;
            }
            let pb = bar("decrypt", show);
            let d = c
                .decrypt_model(
                    provider,
                    &task.task_id,
                    encrypted,
                    output,
                    unzip.as_deref(),
                    &pb,
                )
                .await?;
            Ok(Output::new(
                to_json(&d),
                format!(
                    "decrypted {} bytes ({} chunk(s), signed by TEE signer {}) to {}{}",
                    d.zip_bytes,
                    d.chunks,
                    d.tee_signer,
                    d.zip.display(),
                    d.extracted_to
                        .as_ref()
                        .map(|p| format!(
                            "\nextracted {} file(s) into {}",
                            d.files.unwrap_or(0),
                            p.display()
                        ))
                        .unwrap_or_default()
                ),
            ))
        }
    }
}

/// What to do next in a task's state.
pub fn next_step(state: &str, provider: Address, id: &str) -> String {
    match state {
        "Init" | "SettingUp" | "SetUp" | "Training" | "Trained" | "Delivering" => {
            format!(
                "next: wait; check again with `sealtune query-progress --provider {provider} --task-id {id}` (log: `sealtune get-log`)"
            )
        }
        "Delivered" => format!(
            "next: `sealtune download-model --provider {provider} --task-id {id} --output model.enc` (checks, then acknowledges)"
        ),
        "UserAcknowledged" | "Finished" => format!(
            "next: `sealtune decrypt-model --provider {provider} --task-id {id} --encrypted model.enc --output model.zip --wait 300`"
        ),
        "Failed" => format!(
            "the task failed: see why with `sealtune get-log --provider {provider} --task-id {id}`"
        ),
        _ => format!("see `sealtune get-log --provider {provider} --task-id {id}`"),
    }
}

fn root_hash(files: &[PathBuf]) -> Result<Output> {
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    for f in files {
        let meta = std::fs::metadata(f)
            .map_err(|e| ClientError::InvalidInput(format!("{}: {e}", f.display())))?;
        if !meta.is_file() {
            return Err(ClientError::InvalidInput(format!(
                "{} is not a file",
                f.display()
            )));
        }
        let tree = sealtune_protocol::storage::root_hash_file(f).map_err(|source| {
            ClientError::RootHash {
                path: f.clone(),
                source,
            }
        })?;
        let layout = tree.layout();
        rows.push(json!({
            "file": f,
            "root": tree.root().to_string(),
            "size": tree.size(),
            "chunks": layout.chunks(),
            "padded_chunks": layout.padded_chunks(),
            "segments": layout.segments(),
            "sectors": tree.sectors(),
        }));
        lines.push(tree.root().to_string());
    }
    Ok(Output::new(Value::Array(rows), lines.join("\n")))
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
