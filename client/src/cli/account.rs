//! The ledger and sub-account commands: create-account, deposit-fund, refund, get-account,
//! transfer-fund, retrieve-fund.

use alloy::primitives::U256;
use clap::Args;
use serde_json::json;

use super::{Ctx, Output, to_json, tx_line};
use crate::amount::{format_0g, parse_amount};
use crate::chain::LedgerView;
use crate::config::parse_address;
use crate::error::Result;
use crate::funds::AccountSummary;

/// Arguments of `sealtune create-account`.
#[derive(Debug, Args)]
pub struct CreateAccountArgs {
    /// Amount in 0G (e.g. 3 or 4.5), or neuron with the suffix `neuron`.
    #[arg(long, visible_alias = "balance")]
    pub amount: String,
    /// Free text stored with the ledger.
    #[arg(long, default_value = "")]
    pub info: String,
}

impl CreateAccountArgs {
    pub(super) async fn run(&self, ctx: &Ctx<'_>) -> Result<Output> {
        let amount = parse_amount(&self.amount)?;
        let c = ctx.client()?;
        let done = c.create_account(amount, &self.info).await?;
        let human = format!(
            "{}\nledger of {}: {} 0G available",
            tx_line("ledger created", &done.tx),
            c.user()?,
            ledger_0g(&done.ledger, |l| l.available_balance)
        );
        Ok(Output::new(to_json(&done), human))
    }
}

/// Arguments of `sealtune deposit-fund`.
#[derive(Debug, Args)]
pub struct DepositFundArgs {
    /// Amount in 0G.
    #[arg(long)]
    pub amount: String,
}

impl DepositFundArgs {
    pub(super) async fn run(&self, ctx: &Ctx<'_>) -> Result<Output> {
        let amount = parse_amount(&self.amount)?;
        let c = ctx.client()?;
        let done = c.deposit_fund(amount).await?;
        let human = format!(
            "{}\nledger: {} 0G available, {} 0G total",
            tx_line("deposited", &done.tx),
            ledger_0g(&done.ledger, |l| l.available_balance),
            ledger_0g(&done.ledger, |l| l.total_balance)
        );
        Ok(Output::new(to_json(&done), human))
    }
}

/// Arguments of `sealtune refund`.
#[derive(Debug, Args)]
pub struct RefundArgs {
    /// Amount in 0G.
    #[arg(long)]
    pub amount: String,
}

impl RefundArgs {
    pub(super) async fn run(&self, ctx: &Ctx<'_>) -> Result<Output> {
        let amount = parse_amount(&self.amount)?;
        let c = ctx.client()?;
        let tx = c.chain.refund(amount).await?;
        Ok(Output::new(
            json!({ "tx": tx }),
            tx_line(&format!("{} 0G back to the wallet", format_0g(amount)), &tx),
        ))
    }
}

/// `sealtune get-account`.
pub(super) async fn get_account(ctx: &Ctx<'_>) -> Result<Output> {
    let a = ctx.client()?.account_summary().await?;
    Ok(Output::new(to_json(&a), render_account(&a)))
}

fn render_account(a: &AccountSummary) -> String {
    let mut h = format!(
        "account {}\nwallet: {} 0G\n",
        a.user,
        format_0g(a.wallet_balance)
    );
    match &a.ledger {
        None => h.push_str("ledger: none (create it with `sealtune create-account --amount 3`)\n"),
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
    h.trim_end().to_owned()
}

/// Arguments of `sealtune transfer-fund`.
#[derive(Debug, Args)]
pub struct TransferFundArgs {
    /// The provider's address.
    #[arg(long)]
    pub provider: String,
    /// Amount in 0G.
    #[arg(long)]
    pub amount: String,
    /// The ledger's service name (default: what the ledger registry says, "fine-tuning-v1.0").
    #[arg(long)]
    pub service_name: Option<String>,
}

impl TransferFundArgs {
    pub(super) async fn run(&self, ctx: &Ctx<'_>) -> Result<Output> {
        let provider = parse_address("--provider", &self.provider)?;
        let amount = parse_amount(&self.amount)?;
        let c = ctx.client()?;
        let done = c
            .transfer_fund(provider, amount, self.service_name.as_deref())
            .await?;
        let human = format!(
            "{}\nsub-account with {provider}: {} 0G; ledger: {} 0G available",
            tx_line("transferred", &done.tx),
            done.sub_account
                .as_ref()
                .map(|a| format_0g(a.balance))
                .unwrap_or_default(),
            ledger_0g(&done.ledger, |l| l.available_balance)
        );
        Ok(Output::new(to_json(&done), human))
    }
}

/// Arguments of `sealtune retrieve-fund`.
#[derive(Debug, Args)]
pub struct RetrieveFundArgs {
    /// Only these providers (repeatable; default: every sub-account).
    #[arg(long)]
    pub provider: Vec<String>,
}

impl RetrieveFundArgs {
    pub(super) async fn run(&self, ctx: &Ctx<'_>) -> Result<Output> {
        let providers = self
            .provider
            .iter()
            .map(|p| parse_address("--provider", p))
            .collect::<Result<Vec<_>>>()?;
        let c = ctx.client()?;
        let done = c.retrieve_fund(&providers).await?;
        let human = format!(
            "{}\nledger: {} 0G available; the rest of each sub-account is pending refund and can be retrieved after {} s (run `sealtune retrieve-fund` again then)",
            tx_line("retrieve requested", &done.tx),
            ledger_0g(&done.ledger, |l| l.available_balance),
            done.lock_time_secs
        );
        Ok(Output::new(to_json(&done), human))
    }
}

/// A ledger amount in 0G for the text output, empty when the ledger could not be read back.
fn ledger_0g(ledger: &Option<LedgerView>, amount: impl Fn(&LedgerView) -> U256) -> String {
    ledger
        .as_ref()
        .map(|l| format_0g(amount(l)))
        .unwrap_or_default()
}
