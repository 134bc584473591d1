//! `sealtune gateway`: an OpenAI-compatible fine-tuning API on the customer's side.
//!
//! Code written for OpenAI's fine-tuning API (`client.fine_tuning.jobs.create(...)`) or OPEA's
//! fine-tuning service points its base URL at this local server; each job runs the whole customer
//! flow of [`crate::flow::Client`] against a 0G fine-tuning provider (verify the provider, upload,
//! sign, create the task, follow it, download, check against the chain, acknowledge, decrypt). The
//! customer's key stays in this process: it signs locally and is never sent anywhere.
//!
//! | module | what |
//! |---|---|
//! | [`openai`] | the OpenAI objects, requests, hyperparameter translation, log metrics |
//! | [`routes`] | the HTTP routes (OpenAI's and OPEA's forms) |
//! | [`runner`] | one job through the customer flow, resumable by stage |
//! | [`store`] | the local SQLite state |
//! | [`error`] | the one error type, in OpenAI's error shape |
//!
//! It listens on loopback by default, refuses a non-loopback address unless told
//! ([`GatewayConfig::allow_remote`], with an API key), refuses requests whose `Host` is not a loopback name while on
//! loopback (a web page cannot reach it through DNS rebinding), and checks an API key when one is
//! configured.
//!
//! ```no_run
//! # async fn demo(client: sealtune_client::flow::Client, verify: sealtune_client::attest::VerifyProviderOptions) -> Result<(), Box<dyn std::error::Error>> {
//! use sealtune_client::gateway::{Gateway, GatewayConfig, SystemClock};
//! let config = GatewayConfig::new("127.0.0.1:8015".parse()?, "/tmp/gw".into(), verify);
//! let running = Gateway::start(client, config, std::sync::Arc::new(SystemClock)).await?;
//! println!("OpenAI base URL: http://{}/v1", running.addr);
//! running.serve.await??;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use serde_json::Value;

use crate::attest::VerifyProviderOptions;
use crate::error::ClientError;
use crate::flow::Client;

pub mod error;
pub mod openai;
pub mod routes;
pub mod runner;
pub mod store;

use error::ErrorObject;
use store::{EventRow, Store};

/// Time and randomness, inputs of the gateway (tests pin them).
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// 32 fresh random bytes (an attestation nonce).
    fn random(&self) -> [u8; 32];
}

/// The system clock and the OS random source.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
    fn random(&self) -> [u8; 32] {
        let mut r = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut r);
        r
    }
}

/// A model a job may name: a provider (or the default one) and the provider's model name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    /// The provider; `None`: the default provider.
    pub provider: Option<Address>,
    /// The model as the provider lists it.
    pub model: String,
}

impl ModelRef {
    /// `<model>` or `<provider>:<model>` (the provider as `0x` + 40 hex).
    pub fn parse(text: &str) -> Result<ModelRef, ClientError> {
        if let Some((p, m)) = text.split_once(':')
            && p.starts_with("0x")
            && p.len() == 42
        {
            return Ok(ModelRef {
                provider: Some(crate::config::parse_address("model provider", p)?),
                model: m.to_owned(),
            });
        }
        Ok(ModelRef {
            provider: None,
            model: text.to_owned(),
        })
    }
}

/// How the gateway runs.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where it listens (loopback by default).
    pub listen: SocketAddr,
    /// Accept a non-loopback `listen` (anyone who reaches it spends the customer's funds).
    pub allow_remote: bool,
    /// Where the SQLite state, the uploads and the models go.
    pub state_dir: PathBuf,
    /// The provider of models named without one.
    pub default_provider: Option<Address>,
    /// Model names callers use (e.g. `gpt-4o-mini-2024-07-18`) → the model to train.
    pub aliases: BTreeMap<String, ModelRef>,
    /// The attestation check of every job (its `now` and `nonce` are set per job).
    pub verify: VerifyProviderOptions,
    /// When set, requests must carry `Authorization: Bearer <it>`.
    pub api_key: Option<String>,
    /// How often a running job polls the provider and the chain.
    pub poll_interval: Duration,
    /// The largest training file accepted.
    pub max_upload_bytes: u64,
    /// What the provider's training report must show before a job's model is acknowledged.
    pub thresholds: crate::report::Thresholds,
}

impl GatewayConfig {
    /// Defaults around the required settings: no default provider, no aliases, no API key, a 2 s
    /// poll interval, 1 GiB uploads.
    pub fn new(listen: SocketAddr, state_dir: PathBuf, verify: VerifyProviderOptions) -> Self {
        GatewayConfig {
            listen,
            allow_remote: false,
            state_dir,
            default_provider: None,
            aliases: BTreeMap::new(),
            verify,
            api_key: None,
            poll_interval: Duration::from_secs(2),
            max_upload_bytes: 1 << 30,
            thresholds: crate::report::Thresholds::default(),
        }
    }

    /// The listening rule: loopback, unless [`GatewayConfig::allow_remote`] with an API key.
    pub fn check_listen(&self) -> Result<(), ClientError> {
        if self.listen.ip().is_loopback() {
            return Ok(());
        }
        if self.allow_remote && self.api_key.is_some() {
            return Ok(());
        }
        if self.allow_remote {
            return Err(ClientError::InvalidInput(format!(
                "listening on {} needs --api-key (SEALTUNE_GATEWAY_API_KEY): without one anyone who reaches it spends your funds",
                self.listen
            )));
        }
        Err(ClientError::InvalidInput(format!(
            "refusing to listen on {}: the gateway spends your funds for whoever reaches it; keep it on loopback (127.0.0.1) or pass --allow-remote with --api-key",
            self.listen
        )))
    }
}

/// The running gateway's shared state.
pub struct Gateway {
    /// The state database.
    pub store: Store,
    /// The customer.
    pub client: Client,
    /// The settings.
    pub config: GatewayConfig,
    /// Time and randomness.
    pub clock: Arc<dyn Clock>,
    /// The job runners, stopped with the gateway.
    runners: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.config.listen)
            .finish_non_exhaustive()
    }
}

/// A started gateway.
#[derive(Debug)]
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The state.
    pub gateway: Arc<Gateway>,
    /// The server task (ends on error only).
    pub serve: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stop serving and stop every job runner where it is (as a crash would: each job's stage is
    /// in the database and the next start resumes it).
    pub fn stop(self) {
        self.serve.abort();
        let runners = std::mem::take(
            &mut *self
                .gateway
                .runners
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for r in runners {
            r.abort();
        }
    }
}

/// A new id with `prefix` (`file`, `ftjob`, `ftevent`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

impl Gateway {
    /// Open the state, bind, resume the unfinished jobs and serve.
    pub async fn start(
        client: Client,
        config: GatewayConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Running, ClientError> {
        config.check_listen()?;
        for sub in ["files", "jobs", "models"] {
            let d = config.state_dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| ClientError::io(&d, e))?;
        }
        let db = config.state_dir.join("gateway.sqlite");
        let store = Store::open(&db)
            .await
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| ClientError::Config(format!("cannot listen on {}: {e}", config.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let gateway = Arc::new(Gateway {
            store,
            client,
            config,
            clock,
            runners: std::sync::Mutex::new(Vec::new()),
        });
        for job in gateway
            .store
            .unfinished_jobs()
            .await
            .map_err(|e| ClientError::Config(e.to_string()))?
        {
            gateway
                .event(&job.id, "info", "the gateway restarted: resuming", None)
                .await;
            gateway.spawn_runner(job.id);
        }
        let app = routes::router(gateway.clone());
        let serve = tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Running {
            addr,
            gateway,
            serve,
        })
    }

    /// Start the runner of job `id`.
    pub fn spawn_runner(self: &Arc<Self>, id: String) {
        let handle = tokio::spawn(runner::run(self.clone(), id)).abort_handle();
        let mut runners = self.runners.lock().unwrap_or_else(|p| p.into_inner());
        runners.retain(|r| !r.is_finished());
        runners.push(handle);
    }

    /// Append a `message` event to job `id`.
    pub async fn event(&self, id: &str, level: &str, message: &str, data: Option<Value>) {
        self.event_kind(id, level, message, "message", data).await;
    }

    /// Append an event of `kind` (`message` or `metrics`) to job `id`.
    pub async fn event_kind(
        &self,
        id: &str,
        level: &str,
        message: &str,
        kind: &str,
        data: Option<Value>,
    ) {
        let e = EventRow {
            id: new_id("ftevent"),
            created_at: self.clock.now_ms() / 1000,
            level: level.into(),
            message: message.into(),
            kind: kind.into(),
            data: data.map(|d| d.to_string()),
        };
        if let Err(err) = self.store.add_event(id, &e).await {
            eprintln!("sealtune gateway: job {id}: event not recorded: {err}");
        }
    }

    /// End job `id` as failed with `err` (and say so in its events).
    pub async fn fail(&self, id: &str, err: &ErrorObject) {
        let text = serde_json::to_string(err).unwrap_or_default();
        match self
            .store
            .finish(
                id,
                "failed",
                Some(&text),
                None,
                None,
                self.clock.now_ms() / 1000,
            )
            .await
        {
            Ok(true) => self.event(id, "error", &err.message, None).await,
            Ok(false) => {}
            Err(e) => eprintln!("sealtune gateway: job {id}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_non_loopback_listen_address_is_refused_unless_allowed() {
        let mut c = GatewayConfig::new(
            "0.0.0.0:8015".parse().unwrap(),
            "/tmp/x".into(),
            VerifyProviderOptions::default(),
        );
        let e = c.check_listen().unwrap_err();
        assert!(
            e.to_string().contains("refusing to listen on 0.0.0.0:8015"),
            "{e}"
        );
        c.allow_remote = true;
        let e = c.check_listen().unwrap_err();
        assert!(e.to_string().contains("needs --api-key"), "{e}");
        c.api_key = Some("k".into());
        c.check_listen().unwrap();
        c.allow_remote = false;
        c.listen = "[::1]:8015".parse().unwrap();
        c.check_listen().unwrap();
    }

    #[test]
    fn model_names_with_and_without_a_provider() {
        let p = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
        let m = ModelRef::parse(&format!("{p}:SmolLM2-135M-Instruct")).unwrap();
        assert_eq!(m.provider, Some(p.parse().unwrap()));
        assert_eq!(m.model, "SmolLM2-135M-Instruct");
        let m = ModelRef::parse("HuggingFaceTB/SmolLM2-135M-Instruct").unwrap();
        assert_eq!(m.provider, None);
        assert!(ModelRef::parse("0x70997970c51812dc3a010c7d01b50e0d17dc79cZ:m").is_err());
    }
}
