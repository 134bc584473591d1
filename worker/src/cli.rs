//! The `sealtune-worker` command line: `serve`, `exec` (the executor child), `config check`,
//! `config import-0g` (a 0G provider config into sealtune's, [`crate::config_import`]), and
//! `chain deploy` / `chain ack-signer` for local chains.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alloy::primitives::{Address, U256};
use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::app::{CrashPoints, SystemClock, Worker};
use crate::attest::SourceKind;
use crate::chain::{Chain, QuotaSpec, ServiceSpec};
use crate::config::Config;
use crate::exec::sandbox::{RuntimeNeeds, Sandbox};

/// sealtune-worker: the confidential fine-tuning provider service for the 0G Compute Network.
#[derive(Parser, Debug)]
#[command(name = "sealtune-worker", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the provider service (HTTP API, pipeline, settlement).
    Serve {
        /// The config file (TOML); SEALTUNE_* variables override it.
        #[arg(long, short, env = "SEALTUNE_CONFIG")]
        config: PathBuf,
    },
    /// The executor child (started by `serve`, not by hand).
    #[command(hide = true)]
    Exec {
        /// The task directory holding exec.json.
        task_dir: PathBuf,
    },
    /// Kills every process of a task uid (started by `serve`, not by hand).
    #[command(hide = true)]
    SandboxReap {
        /// The task uid.
        uid: u32,
        /// Also delete what the uid left in /tmp, /var/tmp and /dev/shm.
        #[arg(long)]
        clean_tmp: bool,
    },
    /// Configuration tools.
    Config {
        /// What to do.
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Local-chain helpers (development and the end-to-end run).
    Chain {
        /// What to do.
        #[command(subcommand)]
        action: ChainAction,
    },
}

/// `config` subcommands.
#[derive(Subcommand, Debug)]
pub enum ConfigAction {
    /// Load the config, apply the environment, and check everything that can be checked offline.
    Check {
        /// The config file.
        #[arg(long, short, env = "SEALTUNE_CONFIG")]
        config: PathBuf,
        /// Print the effective configuration (without secrets) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Convert a 0G provider config (`config.local.yaml`: servingUrl, privateKeys,
    /// service.customizedModels …) into sealtune's TOML, saying for every key what was carried over,
    /// converted or left out and why, and what is still needed. The wallet keys are never written.
    #[command(name = "import-0g")]
    Import0g {
        /// The 0G provider config (YAML).
        yaml: PathBuf,
        /// Write the TOML here (refused if it exists); without it the TOML goes to stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Where the stock training scripts are (they replace the 0G image's scripts).
        #[arg(long, default_value = crate::config_import::DEFAULT_SCRIPTS_DIR)]
        scripts_dir: PathBuf,
        /// The chain's JSON-RPC URL.
        #[arg(long)]
        rpc: Option<String>,
        /// The FineTuningServing contract.
        #[arg(long)]
        serving: Option<alloy::primitives::Address>,
        /// The LedgerManager contract.
        #[arg(long)]
        ledger: Option<alloy::primitives::Address>,
        /// A 0G Storage indexer URL (models named by their 0G root are fetched through it).
        #[arg(long)]
        storage_indexer: Option<String>,
        /// The attestation source: dstack (a dstack CVM), tappd, configfs-tsm or dev.
        #[arg(long, default_value = "dstack")]
        attestation: String,
        /// Print `{"toml", "notes", "output"}` as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `chain` subcommands.
#[derive(Subcommand, Debug)]
pub enum ChainAction {
    /// Deploy LedgerManager + FineTuningServing (the deployer becomes the owner); prints JSON addresses.
    Deploy {
        /// JSON-RPC URL.
        #[arg(long, env = "SEALTUNE_RPC", default_value = "http://127.0.0.1:8545")]
        rpc: String,
        /// The deployer's private key.
        #[arg(long, env = "SEALTUNE_DEPLOYER_KEY")]
        key: String,
        /// Refund lock time in seconds.
        #[arg(long, default_value_t = sealtune_contracts::DEFAULT_LOCK_TIME_SECS)]
        lock_time: u64,
    },
    /// As the contract owner, acknowledge a provider's current TEE signer (only after verifying its quote).
    AckSigner {
        /// JSON-RPC URL.
        #[arg(long, env = "SEALTUNE_RPC", default_value = "http://127.0.0.1:8545")]
        rpc: String,
        /// The owner's private key.
        #[arg(long, env = "SEALTUNE_OWNER_KEY")]
        key: String,
        /// FineTuningServing address.
        #[arg(long)]
        serving: Address,
        /// LedgerManager address.
        #[arg(long)]
        ledger: Address,
        /// The provider whose signer is acknowledged.
        #[arg(long)]
        provider: Address,
        /// The TEE signer acknowledged: the one whose attestation was verified (e.g. `signer` in the
        /// provider's `GET /v1/quote`). Refused on chain when the service names another signer.
        #[arg(long)]
        signer: Address,
    },
}

/// Runs the command; `exec` returns the child's exit code.
pub fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Exec { task_dir } => Ok(crate::exec::child_main(&task_dir)),
        Command::SandboxReap { uid, clean_tmp } => {
            Ok(crate::exec::sandbox::reap_main(uid, clean_tmp))
        }
        Command::Config {
            action: ConfigAction::Check { config, json },
        } => config_check(config, json),
        Command::Config {
            action:
                ConfigAction::Import0g {
                    yaml,
                    output,
                    scripts_dir,
                    rpc,
                    serving,
                    ledger,
                    storage_indexer,
                    attestation,
                    json,
                },
        } => {
            let opts = crate::config_import::ImportOptions {
                scripts_dir,
                rpc,
                serving,
                ledger,
                storage_indexer,
                attestation,
            };
            config_import_0g(&yaml, output, &opts, json)
        }
        Command::Serve { config } => {
            init_tracing();
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(serve(config))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Chain { action } => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(chain_action(action))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

/// `config check`: the config's problems, the training sandbox's layers (a missing core layer, or a
/// config file that shows the wallet key to task uids, is a problem unless the source is `dev`).
fn config_check(config: PathBuf, json: bool) -> anyhow::Result<std::process::ExitCode> {
    init_tracing();
    let mut cfg = Config::load(&config, &env_map())?;
    let mut problems = cfg.check();
    problems.extend(cfg.sandbox.problems());
    let sandbox = Sandbox::detect(&cfg.sandbox, &RuntimeNeeds::from_config(&cfg));
    let measured = match crate::measured::measure(
        &mut cfg,
        &config,
        crate::measured::Mode::Check,
        sandbox.report().walls(),
    ) {
        Ok(m) => Some(m),
        Err(e) => {
            // A missing file is already among the problems; say it once.
            let shown = e.path().map(|p| p.display().to_string());
            if !shown.is_some_and(|p| problems.iter().any(|q| q.contains(&p))) {
                problems.push(e.to_string());
            }
            None
        }
    };
    let exposed = crate::exec::sandbox::access::config_exposes_key(&config);
    if cfg.attestation.source != SourceKind::Dev {
        problems.extend(exposed.clone());
        problems.extend(
            sandbox
                .report()
                .missing_core()
                .into_iter()
                .map(|m| format!("sandbox core layer missing: {m}")),
        );
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "ok": problems.is_empty(),
                "problems": problems,
                "config": cfg,
                "sandbox": sandbox.report(),
                "config_hash": measured.as_ref().map(|m| m.hash),
                "config_document": measured.as_ref().map(|m| &m.document),
            }))?
        );
    } else {
        if problems.is_empty() {
            println!(
                "config {} is valid ({} models); config hash {}",
                config.display(),
                cfg.service.models.len(),
                measured
                    .as_ref()
                    .map(|m| m.hash.to_string())
                    .unwrap_or_default()
            );
        } else {
            for p in &problems {
                eprintln!("✗ {p}");
            }
        }
        if let (Some(why), SourceKind::Dev) = (&exposed, cfg.attestation.source) {
            eprintln!("⚠ {why}");
        }
        println!("training sandbox:");
        for line in sandbox.report().lines() {
            println!("  {line}");
        }
    }
    Ok(if problems.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

/// `config import-0g`: the TOML to `output` (or stdout), the notes to stderr (or all as JSON).
fn config_import_0g(
    yaml: &Path,
    output: Option<PathBuf>,
    opts: &crate::config_import::ImportOptions,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let text =
        std::fs::read_to_string(yaml).with_context(|| format!("cannot read {}", yaml.display()))?;
    let imported = crate::config_import::import_0g(&text, opts)
        .with_context(|| format!("{}", yaml.display()))?;
    if let Some(out) = &output {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(out)
            .and_then(|mut f| std::io::Write::write_all(&mut f, imported.toml.as_bytes()))
            .with_context(|| {
                format!(
                    "cannot write {} (an existing file is not overwritten)",
                    out.display()
                )
            })?;
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "toml": imported.toml,
                "notes": imported.notes,
                "output": output,
            }))?
        );
    } else {
        if output.is_none() {
            print!("{}", imported.toml);
        }
        for n in &imported.notes {
            eprintln!(
                "{:>9}  {}: {}",
                format!("{:?}", n.outcome).to_lowercase(),
                n.key,
                n.why
            );
        }
        if let Some(out) = &output {
            eprintln!(
                "wrote {}; check it with `sealtune-worker config check --config {}`",
                out.display(),
                out.display()
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn env_map() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("SEALTUNE_"))
        .collect()
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,hyper=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

async fn chain_action(action: ChainAction) -> anyhow::Result<()> {
    use alloy::providers::ProviderBuilder;
    use alloy::signers::local::PrivateKeySigner;
    match action {
        ChainAction::Deploy {
            rpc,
            key,
            lock_time,
        } => {
            let signer: PrivateKeySigner = key.parse().context("--key is not a private key")?;
            let provider = ProviderBuilder::new()
                .wallet(signer)
                .connect_http(rpc.parse()?);
            let d = sealtune_contracts::deploy(
                &provider,
                &sealtune_contracts::DeployConfig {
                    lock_time_secs: lock_time,
                    ..Default::default()
                },
            )
            .await?;
            println!(
                "{}",
                serde_json::json!({"serving": d.serving.to_string(), "ledger": d.ledger.to_string()})
            );
        }
        ChainAction::AckSigner {
            rpc,
            key,
            serving,
            ledger,
            provider: who,
            signer: tee,
        } => {
            let signer: PrivateKeySigner = key.parse().context("--key is not a private key")?;
            let provider = ProviderBuilder::new()
                .wallet(signer)
                .connect_http(rpc.parse()?);
            let d = sealtune_contracts::Deployment { serving, ledger };
            sealtune_contracts::acknowledge_tee_signer(&provider, &d, who, tee).await?;
            println!(
                "{}",
                serde_json::json!({"acknowledged": who.to_string(), "signer": tee.to_string()})
            );
        }
    }
    Ok(())
}

/// The machine's quota, from the config where set, else detected (NVML for GPUs when present).
pub fn detect_quota(cfg: &crate::config::QuotaConfig) -> QuotaSpec {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0);
    let (gpus, gpu_type) = match nvml_wrapper::Nvml::init() {
        Ok(nvml) => {
            let n = nvml.device_count().unwrap_or(0) as u64;
            let name = nvml
                .device_by_index(0)
                .and_then(|d| d.name())
                .unwrap_or_else(|_| "unknown".into());
            (n, name)
        }
        Err(_) => (0, "none".to_owned()),
    };
    QuotaSpec {
        cpu_count: cfg.cpu_count.unwrap_or(cpus),
        node_memory: cfg.node_memory.unwrap_or(memory),
        gpu_count: cfg.gpu_count.unwrap_or(gpus),
        node_storage: cfg.node_storage.unwrap_or(0),
        gpu_type: cfg.gpu_type.clone().unwrap_or(gpu_type),
    }
}

async fn serve(config_path: PathBuf) -> anyhow::Result<()> {
    let mut config = Config::load(&config_path, &env_map())?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    // Measured first: the sandbox checks that the task uid can read what the (rewritten) config
    // points at, the measured copies. The data directory's files exist before the sandbox lays it
    // out. The sandbox's walls are part of the measured config, whose hash the TEE signer's key
    // path takes.
    let started = std::time::Instant::now();
    let measured = crate::measured::measure(
        &mut config,
        &config_path,
        crate::measured::Mode::Keep,
        Vec::new(),
    )?;
    let store = crate::store::Store::open(&config.data_dir.join("worker.sqlite")).await?;
    let files = crate::storage::Store::open(&config.storage, &config.data_dir)?;
    let sandbox = start_sandbox(&config, config.attestation.source == SourceKind::Dev)?;
    let measured = measured.with_walls(sandbox.report().walls());
    tracing::info!(
        config_hash = %measured.hash,
        seconds = started.elapsed().as_secs_f64(),
        "configuration measured: scripts, tokenizers, usage files and weights are served from their measured copies"
    );
    let crash = CrashPoints::from_env();
    if let Some(p) = crash.armed() {
        tracing::warn!(
            "TEST CRASH POINT ARMED ({p}): this worker will abort on purpose; never set SEALTUNE_TEST_CRASH_AT in production"
        );
    }
    let attest =
        crate::attest::Attestation::open(&config.attestation, &config.data_dir, measured.hash)
            .await?;
    let (attest, tls) = tls_identity(attest, config.tls_listen)?;
    if attest.is_dev() {
        tracing::warn!(
            "INSECURE DEV ATTESTATION: this worker has no TDX quote; every verifier rejects it unless told --allow-dev-quote. Never use it with real customers."
        );
    }
    record_signer(&store, &attest).await?;
    if let Some(why) = crate::exec::sandbox::access::config_exposes_key(&config_path) {
        anyhow::ensure!(attest.is_dev(), "{why}");
        tracing::warn!("{why}");
    }
    let chain = register(&config, attest.signer()).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let tls = match tls {
        Some((addr, identity)) => {
            let l = identity.bind(addr).await?;
            tracing::info!(tls_listen = %l.local_addr()?, tls_spki_sha256 = %identity.spki_sha256(), "HTTPS with the TLS key derived in the TEE");
            Some(l)
        }
        None => None,
    };
    tracing::info!(listen = %listener.local_addr()?, provider = %chain.address, tee_signer = %attest.signer(), "sealtune-worker serving");

    let worker = Arc::new(Worker {
        files,
        config,
        store,
        chain,
        attest,
        measured,
        clock: Arc::new(SystemClock),
        wake: Default::default(),
        running: Default::default(),
        metrics: Default::default(),
        exe: std::env::current_exe()?,
        sandbox,
        crash,
        downloads: Default::default(),
    });
    serve_until_shutdown(worker, listener, tls).await
}

/// With `tls_listen` set: the worker's TLS identity (its key derived in the TEE, [`crate::tls`])
/// and the attestation publishing its SubjectPublicKeyInfo hash in `tee_keys`.
fn tls_identity(
    attest: crate::attest::Attestation,
    tls_listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<(
    crate::attest::Attestation,
    Option<(std::net::SocketAddr, crate::tls::TlsIdentity)>,
)> {
    let Some(addr) = tls_listen else {
        return Ok((attest, None));
    };
    let identity = attest.tls_identity()?;
    Ok((
        attest.with_tls_key(identity.spki_sha256()),
        Some((addr, identity)),
    ))
}

/// Detects the training sandbox's layers (after every file of the data directory exists, so that
/// laying it out reaches them all) and logs them; a missing core layer stops the start unless the
/// attestation source is `dev`, which only warns.
fn start_sandbox(config: &Config, dev: bool) -> anyhow::Result<Sandbox> {
    if let Some(p) = config.sandbox.problems().first() {
        anyhow::bail!("{p}");
    }
    let needs = RuntimeNeeds {
        lay_out_data_dir: true,
        ..RuntimeNeeds::from_config(config)
    };
    let sandbox = Sandbox::detect(&config.sandbox, &needs);
    for line in sandbox.report().lines() {
        tracing::info!("training sandbox: {line}");
    }
    let missing = sandbox.report().missing_core();
    if !missing.is_empty() {
        if !dev {
            sandbox.report().require_core()?;
        }
        tracing::warn!(
            "INSECURE TRAINING SANDBOX: core layers are missing ({}); tolerated only because the attestation source is dev",
            missing.join("; ")
        );
    }
    Ok(sandbox)
}

/// Records this worker's TEE signer; when it changed since the last start, says so in the log of
/// every task sealed under the old one and not settled yet.
async fn record_signer(
    store: &crate::store::Store,
    attest: &crate::attest::Attestation,
) -> anyhow::Result<()> {
    let signer = attest.signer();
    match store.meta("tee_signer").await? {
        Some(old) if old != signer.to_string() => {
            tracing::warn!(
                "the TEE signer changed from {old} to {signer}: the service will be re-registered and the owner must acknowledge the new signer"
            );
            for t in store
                .in_states(crate::store::TaskState::is_sealed_unsettled)
                .await?
            {
                store
                    .log(&t.id, &format!("the worker's TEE signer changed from {old} to {signer}; this task's model was sealed under {old}: unless the customer has acknowledged it already, it will be settled without charge (the customer cannot check it against the new signer)"), SystemClock.now_ms_static())
                    .await?;
            }
        }
        _ => {}
    }
    store.set_meta("tee_signer", &signer.to_string()).await?;
    if let Some(old) = attest.previous_signer() {
        tracing::warn!("the attestation source reports a TEE signer change from {old} to {signer}");
    }
    attest.record_signer()?;
    Ok(())
}

/// Connects to the chain and registers (or updates) the service with `signer` as its TEE signer.
async fn register(config: &Config, signer: alloy::primitives::Address) -> anyhow::Result<Chain> {
    let (serving, _ledger) = config.contracts()?;
    let chain = Chain::connect(config.chain.rpc_url(), config.wallet()?, serving).await?;
    let spec = ServiceSpec {
        url: config.serving_url.clone(),
        quota: detect_quota(&config.service.quota),
        price_per_token: config.service.price_per_token,
        models: config
            .service
            .models
            .iter()
            .map(|m| m.name.clone())
            .collect(),
        tee_signer: signer,
    };
    let stake = config
        .chain
        .stake_wei
        .unwrap_or(U256::from(crate::chain::DEFAULT_STAKE_WEI));
    if chain.register_service(&spec, false, stake).await? {
        tracing::info!(provider = %chain.address, "service registered or updated on chain");
    }
    Ok(chain)
}

/// How long a graceful stop waits for open HTTP requests before it closes their connections.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs the three pipeline lanes and the HTTP API (plain, and HTTPS when `tls` is given) until a
/// shutdown signal, then stops a running child (its task is requeued) and waits for the lanes;
/// open HTTP requests get [`SHUTDOWN_GRACE`], so a slow client cannot hold the stop.
async fn serve_until_shutdown(
    worker: Arc<Worker>,
    listener: tokio::net::TcpListener,
    tls: Option<crate::tls::TlsListener>,
) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let lanes = [
        tokio::spawn(crate::pipeline::run_training_lane(
            worker.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(crate::pipeline::run_settle_lane(
            worker.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(crate::pipeline::run_retention_lane(
            worker.clone(),
            shutdown.clone(),
        )),
    ];
    let app = crate::api::router(worker.clone());
    let stop = shutdown.clone();
    // Cancelling `shutdown` also kills a running training child (its token is a child token).
    let signal = tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
    let plain = axum::serve(listener, app.clone())
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let https = async {
        match tls {
            Some(l) => {
                axum::serve(l, app)
                    .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                    .await
            }
            None => Ok(()),
        }
    };
    let grace = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = async { tokio::try_join!(std::future::IntoFuture::into_future(plain), https) } => {
            served?;
        }
        () = grace => tracing::warn!(
            "HTTP requests still open {} s after the stop: closing them",
            SHUTDOWN_GRACE.as_secs()
        ),
    }
    signal.abort();
    for lane in lanes {
        let _ = lane.await;
    }
    Ok(())
}

impl SystemClock {
    fn now_ms_static(&self) -> i64 {
        crate::app::Clock::now_ms(self)
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
