//! The customer's money: the ledger (parent account) and the fine-tuning sub-accounts. Each
//! operation that moves funds returns its transaction together with the balances it changed, read
//! back from the chain afterwards.

use alloy::primitives::{Address, U256};
use serde::Serialize;

use crate::amount::ser_dec;
use crate::chain::{AccountView, LedgerView, TxOutcome};
use crate::error::Result;
use crate::flow::Client;

/// The customer's balances.
#[derive(Debug, Clone, Serialize)]
pub struct AccountSummary {
    /// The customer.
    pub user: Address,
    /// The wallet's native balance, in neuron.
    #[serde(serialize_with = "ser_dec")]
    pub wallet_balance: U256,
    /// The ledger, if any.
    pub ledger: Option<LedgerView>,
    /// The fine-tuning sub-accounts.
    pub sub_accounts: Vec<AccountView>,
}

/// A ledger transaction and the ledger after it.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerChange {
    /// The transaction.
    pub tx: TxOutcome,
    /// The ledger afterwards.
    pub ledger: Option<LedgerView>,
}

/// A transfer into a sub-account, and both balances after it.
#[derive(Debug, Clone, Serialize)]
pub struct Transferred {
    /// The `transferFund` transaction.
    pub tx: TxOutcome,
    /// The sub-account with the provider afterwards.
    pub sub_account: Option<AccountView>,
    /// The ledger afterwards.
    pub ledger: Option<LedgerView>,
}

/// A `retrieveFund` and the balances after it.
#[derive(Debug, Clone, Serialize)]
pub struct Retrieved {
    /// The transaction.
    pub tx: TxOutcome,
    /// The providers whose sub-accounts were retrieved from.
    pub providers: Vec<Address>,
    /// Those sub-accounts afterwards, in the order of `providers`.
    pub sub_accounts: Vec<Option<AccountView>>,
    /// The ledger afterwards.
    pub ledger: Option<LedgerView>,
    /// The refund lock time: what was not retrieved now can be after it.
    pub lock_time_secs: u64,
}

impl Client {
    /// Wallet, ledger and sub-account balances.
    pub async fn account_summary(&self) -> Result<AccountSummary> {
        let user = self.user()?;
        let wallet_balance = self.chain.wallet_balance(user).await?;
        let ledger = self.chain.ledger_of(user).await?;
        let mut sub_accounts = Vec::new();
        if ledger.is_some() {
            for p in self.chain.sub_account_providers(user).await? {
                if let Some(a) = self.chain.account(user, p).await? {
                    sub_accounts.push(a);
                }
            }
        }
        Ok(AccountSummary {
            user,
            wallet_balance,
            ledger,
            sub_accounts,
        })
    }

    /// Open the ledger with `amount` (at least 3 0G; see [`crate::chain::Chain::create_account`]).
    pub async fn create_account(&self, amount: U256, info: &str) -> Result<LedgerChange> {
        let tx = self.chain.create_account(amount, info).await?;
        let ledger = self.chain.ledger_of(self.user()?).await?;
        Ok(LedgerChange { tx, ledger })
    }

    /// Add `amount` to the ledger (see [`crate::chain::Chain::deposit_fund`]).
    pub async fn deposit_fund(&self, amount: U256) -> Result<LedgerChange> {
        let tx = self.chain.deposit_fund(amount).await?;
        let ledger = self.chain.ledger_of(self.user()?).await?;
        Ok(LedgerChange { tx, ledger })
    }

    /// Move `amount` from the ledger into the sub-account with `provider` (see
    /// [`crate::chain::Chain::transfer_fund`]).
    pub async fn transfer_fund(
        &self,
        provider: Address,
        amount: U256,
        service_name: Option<&str>,
    ) -> Result<Transferred> {
        let tx = self
            .chain
            .transfer_fund(provider, amount, service_name)
            .await?;
        let sub_account = self.chain.account(self.user()?, provider).await?;
        let ledger = self.chain.ledger_of(self.user()?).await?;
        Ok(Transferred {
            tx,
            sub_account,
            ledger,
        })
    }

    /// Bring the sub-accounts with `providers` (all when empty) back to the ledger (see
    /// [`crate::chain::Chain::retrieve_fund`]).
    pub async fn retrieve_fund(&self, providers: &[Address]) -> Result<Retrieved> {
        let (providers, tx) = self.chain.retrieve_fund(providers).await?;
        let user = self.user()?;
        let mut sub_accounts = Vec::new();
        for p in &providers {
            sub_accounts.push(self.chain.account(user, *p).await?);
        }
        let ledger = self.chain.ledger_of(user).await?;
        let lock_time_secs = self.chain.lock_time().await?;
        Ok(Retrieved {
            tx,
            providers,
            sub_accounts,
            ledger,
            lock_time_secs,
        })
    }
}
