//! `sealtune gateway`: serve the OpenAI-compatible fine-tuning API (see [`crate::gateway`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::{Ctx, Output, VerifyArgs, dev_warning, verify_options};
use crate::config::parse_address;
use crate::error::{ClientError, Result};
use crate::gateway::{Gateway, GatewayConfig, ModelRef, SystemClock};

/// The address the gateway listens on by default: loopback, OPEA's fine-tuning port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8015";

/// Arguments of `sealtune gateway`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Where to listen. Loopback by default: whoever reaches the gateway spends your funds.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Accept a non-loopback --listen address (needs --api-key).
    #[arg(long)]
    pub allow_remote: bool,
    /// Require `Authorization: Bearer <KEY>` on every request (the `api_key` of OpenAI clients).
    #[arg(long, env = "SEALTUNE_GATEWAY_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Where the state (SQLite), the uploads and the decrypted models go
    /// (default: ~/.local/share/sealtune/gateway).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// The provider of models named without one (`model: "<name>"`; else `"<provider>:<name>"`).
    #[arg(long)]
    pub provider: Option<String>,
    /// A model name callers use, as `NAME=[PROVIDER:]MODEL` (repeatable), e.g.
    /// `--model gpt-4o-mini-2024-07-18=SmolLM2-135M-Instruct`.
    #[arg(long = "model", value_name = "NAME=[PROVIDER:]MODEL")]
    pub models: Vec<String>,
    /// How often running jobs poll the provider and the chain, in seconds.
    #[arg(long, default_value_t = 5)]
    pub poll_secs: u64,
    /// Fail a job instead of acknowledging (and so paying for) its model unless the provider's
    /// signed training report shows a tuned `eval_loss` of at most this (a provider that serves no
    /// report, or a report without one, fails the job too).
    #[arg(long)]
    pub max_eval_loss: Option<f64>,
    /// Fail a job instead of acknowledging unless the report's tuned `eval_loss` is below the base
    /// model's `base_eval_loss` (both computed in the TEE on the training file's validation entries).
    #[arg(long)]
    pub require_improvement: bool,
    /// The provider check of every job (never skipped: a local dev stack needs
    /// `--allow-dev-quote --policy dev`).
    #[command(flatten)]
    pub verify: VerifyArgs,
}

fn default_state_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(base.join("sealtune").join("gateway"))
}

/// Parse `NAME=[PROVIDER:]MODEL`.
pub fn parse_alias(text: &str) -> Result<(String, ModelRef)> {
    let (name, target) = text.split_once('=').ok_or_else(|| {
        ClientError::InvalidInput(format!("--model {text:?}: expected NAME=[PROVIDER:]MODEL"))
    })?;
    if name.is_empty() || target.is_empty() {
        return Err(ClientError::InvalidInput(format!(
            "--model {text:?}: expected NAME=[PROVIDER:]MODEL"
        )));
    }
    Ok((name.to_owned(), ModelRef::parse(target)?))
}

impl GatewayArgs {
    /// The gateway's configuration from the arguments. The verification is never skipped: the
    /// insecure dev source is accepted only with the dev policy, and `--no-policy` is refused.
    pub fn config(&self, ctx_env: &super::RunEnv) -> Result<GatewayConfig> {
        if self.verify.no_policy {
            return Err(ClientError::InvalidInput(
                "the gateway verifies every provider against a policy: --no-policy is refused"
                    .into(),
            ));
        }
        if self.verify.allow_dev_quote && self.verify.policy.as_deref() != Some("dev") {
            return Err(ClientError::InvalidInput(
                "--allow-dev-quote is accepted only with --policy dev (a local dev stack): it accepts a provider without a TEE".into(),
            ));
        }
        let state_dir = self
            .state_dir
            .clone()
            .or_else(default_state_dir)
            .ok_or_else(|| ClientError::Config("no --state-dir and no HOME".into()))?;
        let mut config = GatewayConfig::new(
            self.listen,
            state_dir,
            verify_options(&self.verify, ctx_env)?,
        );
        config.allow_remote = self.allow_remote;
        config.api_key = self.api_key.clone().filter(|k| !k.is_empty());
        config.default_provider = self
            .provider
            .as_deref()
            .map(|p| parse_address("--provider", p))
            .transpose()?;
        config.aliases = self
            .models
            .iter()
            .map(|m| parse_alias(m))
            .collect::<Result<BTreeMap<_, _>>>()?;
        config.poll_interval = Duration::from_secs(self.poll_secs.max(1));
        config.thresholds = crate::report::Thresholds {
            max_eval_loss: self.max_eval_loss,
            require_improvement: self.require_improvement,
        };
        config.check_listen()?;
        Ok(config)
    }

    pub(super) async fn run(&self, ctx: &Ctx<'_>) -> Result<Output> {
        let config = self.config(ctx.env)?;
        dev_warning(self.verify.allow_dev_quote);
        let client = ctx.client()?;
        let running = Gateway::start(client, config, Arc::new(SystemClock)).await?;
        eprintln!(
            "sealtune gateway: OpenAI base URL http://{}/v1 (state in {}); Ctrl-C stops it, jobs resume at the next start",
            running.addr,
            running.gateway.config.state_dir.display()
        );
        tokio::select! {
            r = running.serve => {
                let e = match r {
                    Ok(Ok(())) => "the server stopped".to_owned(),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
                Err(ClientError::Config(format!("gateway: {e}")))
            }
            _ = tokio::signal::ctrl_c() => Ok(Output::new(
                json!({ "stopped": true, "listen": running.addr.to_string() }),
                "gateway stopped",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command, RunEnv};

    fn parse(args: &[&str]) -> GatewayArgs {
        let mut all = vec!["sealtune", "gateway"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).unwrap().command {
            Command::Gateway(g) => g,
            other => panic!("{other:?}"),
        }
    }

    fn env() -> RunEnv {
        RunEnv {
            now_ms: 0,
            random: [0; 32],
            progress: false,
        }
    }

    #[test]
    fn it_binds_loopback_by_default() {
        let g = parse(&["--state-dir", "/tmp/gw"]);
        assert_eq!(g.listen, DEFAULT_LISTEN.parse::<SocketAddr>().unwrap());
        let c = g.config(&env()).unwrap();
        assert!(c.listen.ip().is_loopback());
        let e = parse(&["--listen", "0.0.0.0:8015", "--state-dir", "/tmp/gw"])
            .config(&env())
            .unwrap_err();
        assert!(e.to_string().contains("refusing to listen"), "{e}");
    }

    #[test]
    fn verification_cannot_be_switched_off() {
        let e = parse(&["--no-policy"]).config(&env()).unwrap_err();
        assert!(e.to_string().contains("--no-policy is refused"), "{e}");
        let e = parse(&["--allow-dev-quote"]).config(&env()).unwrap_err();
        assert!(e.to_string().contains("only with --policy dev"), "{e}");
        let e = parse(&["--allow-dev-quote", "--policy", "release"])
            .config(&env())
            .unwrap_err();
        assert!(e.to_string().contains("only with --policy dev"), "{e}");
        let c = parse(&[
            "--allow-dev-quote",
            "--policy",
            "dev",
            "--state-dir",
            "/tmp/gw",
        ])
        .config(&env())
        .unwrap();
        assert!(c.verify.allow_dev_quote && c.verify.policy.is_some());
    }

    #[test]
    fn model_aliases() {
        let (n, m) =
            parse_alias("gpt-4o-mini=0x70997970C51812dc3A010C7d01b50e0d17dc79C8:Smol").unwrap();
        assert_eq!(n, "gpt-4o-mini");
        assert_eq!(m.model, "Smol");
        assert!(m.provider.is_some());
        assert!(parse_alias("nothing").is_err());
        assert!(parse_alias("=x").is_err());
    }
}
