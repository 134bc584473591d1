//! The one error type of the client library, [`ClientError`]: what went wrong, what to do next
//! ([`ClientError::hint`]) and the documented process exit code ([`ClientError::exit_code`]).

use std::path::PathBuf;

use alloy::primitives::{Address, B256};
use alloy::sol_types::SolError;
use sealtune_contracts::bindings::FineTuningServing::FineTuningServingErrors as S;
use sealtune_contracts::bindings::LedgerManager::LedgerManagerErrors as L;
use sealtune_contracts::{ContractError, Revert};

/// Process exit codes of the `sealtune` binary (also documented in `sealtune --help` and
/// docs/customer-guide.md).
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// An unexpected failure (I/O on local files, a bug).
    pub const INTERNAL: i32 = 1;
    /// Bad command line or input (address, amount, file, JSON).
    pub const USAGE: i32 = 2;
    /// Missing or invalid configuration: key, RPC URL, contract addresses, config file.
    pub const CONFIG: i32 = 3;
    /// A contract refused the transaction or call (decoded revert).
    pub const CHAIN: i32 = 4;
    /// The provider answered with an error (HTTP 4xx/5xx) or an unreadable answer.
    pub const PROVIDER: i32 = 5;
    /// A security check failed: attestation, model hash, tag signature, decryption.
    pub const VERIFICATION: i32 = 6;
    /// The RPC node or the provider could not be reached.
    pub const UNREACHABLE: i32 = 7;
    /// Not ready yet: the task, deliverable or settlement is not at the needed stage; retry later.
    pub const NOT_READY: i32 = 8;
}

/// Everything that can go wrong in a customer operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Missing or invalid configuration (key, RPC, contract addresses, config file).
    #[error("configuration: {0}")]
    Config(String),
    /// A bad argument or input file.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A command-line amount that is not an amount (reported as invalid input).
    #[error("invalid input: {0}")]
    Amount(#[from] crate::amount::AmountError),
    /// A contract call or transaction failed; `action` names what was attempted.
    #[error("{action}: {source}")]
    Contract {
        /// What the client was doing, e.g. `"transfer-fund"`.
        action: &'static str,
        /// The decoded failure.
        source: Box<ContractError>,
    },
    /// The address has no fine-tuning service registered on the serving contract.
    #[error("provider {0} has no fine-tuning service on this serving contract")]
    UnknownProvider(Address),
    /// The customer has no sub-account with the provider.
    #[error("no fine-tuning sub-account with provider {0}")]
    NoSubAccount(Address),
    /// The sub-account cannot pay for a task.
    #[error(
        "sub-account with provider {provider} can spend {spendable} neuron (balance minus pending refunds), {needed} needed"
    )]
    BalanceTooLow {
        /// The provider.
        provider: Address,
        /// Balance minus pending refunds, in neuron.
        spendable: alloy::primitives::U256,
        /// What is needed, in neuron.
        needed: alloy::primitives::U256,
    },
    /// The customer has no ledger (parent account).
    #[error("account {0} has no ledger")]
    NoLedger(Address),
    /// The RPC node failed or could not be reached.
    #[error("RPC {action}: {message}")]
    Rpc {
        /// What was attempted.
        action: &'static str,
        /// The transport error.
        message: String,
    },
    /// The provider could not be reached.
    #[error("cannot reach the provider at {url}: {message}")]
    Unreachable {
        /// The request URL.
        url: String,
        /// The transport error.
        message: String,
    },
    /// The provider's HTTPS server presented another key than the one its TEE attested.
    #[error(
        "the provider's TLS key is not the attested one; run verify-provider again ({url} presented a key whose SubjectPublicKeyInfo SHA-256 is {got}; the attested key's is {expected})"
    )]
    TlsKeyNotAttested {
        /// The request URL.
        url: String,
        /// The attested (pinned) key's hash.
        expected: alloy::primitives::B256,
        /// The presented key's hash.
        got: alloy::primitives::B256,
    },
    /// An `https://` provider URL with no attested TLS key pinned for it.
    #[error(
        "the provider is reached over HTTPS ({url}) but no attested TLS key is pinned for it: refused (its TLS could end outside its TEE)"
    )]
    TlsNotPinned {
        /// The provider, when known.
        provider: Option<alloy::primitives::Address>,
        /// Its registered URL.
        url: String,
    },
    /// The provider answered with an HTTP error.
    #[error("provider answered {status} to {method} {url}: {message}")]
    Http {
        /// The HTTP method.
        method: &'static str,
        /// The request URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The `error` field of the JSON body, or the start of the body.
        message: String,
    },
    /// The provider's answer could not be understood.
    #[error("unexpected answer from {url}: {detail}")]
    BadResponse {
        /// The request URL.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// Downloading from 0G Storage failed (`tampered`: a node served a segment that did not
    /// verify against the on-chain root).
    #[error("0G Storage download: {message}")]
    Storage {
        /// What failed.
        message: String,
        /// Whether a node served a segment that did not verify.
        tampered: bool,
    },
    /// The provider's training report did not verify (docs/PROTOCOL.md §9).
    #[error("the provider's training report did not verify: {0}")]
    BadReport(String),
    /// The training report does not meet the customer's threshold: not acknowledged.
    #[error("not acknowledged: {0}")]
    BelowThreshold(String),
    /// The provider's attestation did not verify.
    #[error("provider attestation not verified: {0}")]
    Attestation(String),
    /// A downloaded deliverable does not match the on-chain `modelRootHash`.
    #[error(
        "the downloaded model does not match the on-chain modelRootHash {expected}: keccak256 is {keccak}, 0G storage root is {storage_root}"
    )]
    RootHashMismatch {
        /// The on-chain `modelRootHash` (hex).
        expected: String,
        /// keccak256 of the downloaded file.
        keccak: B256,
        /// 0G Storage root of the downloaded file.
        storage_root: String,
    },
    /// The tag signature or the contents of the deliverable did not check.
    #[error("deliverable check failed: {0}")]
    Deliverable(#[from] sealtune_protocol::deliverable::OpenError),
    /// The encrypted secret could not be opened with the customer key.
    #[error("cannot decrypt the model key with this account's key: {0}")]
    Ecies(#[from] sealtune_protocol::ecies::EciesError),
    /// Extracting the decrypted zip failed.
    #[error("extracting the model: {0}")]
    Unzip(#[from] sealtune_protocol::deliverable::UnzipError),
    /// Counting tokens failed.
    #[error("counting tokens: {0}")]
    Tokens(#[from] sealtune_protocol::tokens::TokenError),
    /// Computing the fee failed.
    #[error("computing the fee: {0}")]
    Fee(#[from] sealtune_protocol::fee::FeeError),
    /// The 0G storage root hash could not be computed.
    #[error("{path}: {source}")]
    RootHash {
        /// The file.
        path: PathBuf,
        /// Why.
        source: sealtune_protocol::storage::StorageError,
    },
    /// A task, deliverable or settlement is not at the needed stage yet.
    #[error("not ready: {0}")]
    NotReady(String),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// `Result` with [`ClientError`].
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

impl ClientError {
    /// A [`ClientError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A [`ClientError::Contract`] for `action`.
    pub fn contract(action: &'static str, source: impl Into<ContractError>) -> Self {
        Self::Contract {
            action,
            source: Box::new(source.into()),
        }
    }

    /// The decoded revert, when a contract refused.
    pub fn revert(&self) -> Option<&Revert> {
        match self {
            Self::Contract { source, .. } => source.revert(),
            _ => None,
        }
    }

    /// Whether a contract refused with the error `E`, e.g.
    /// `e.is_revert::<LedgerManager::LedgerNotExists>()` (see [`Revert::is`]).
    pub fn is_revert<E: SolError>(&self) -> bool {
        self.revert().is_some_and(Revert::is::<E>)
    }

    /// The Solidity error name, when a contract refused (e.g. `"MinimumDepositRequired"`), for
    /// display and `--json`; to test for one error use [`ClientError::is_revert`].
    pub fn revert_name(&self) -> Option<&'static str> {
        self.revert().map(Revert::name)
    }

    /// A short machine-readable kind, used in `--json` error documents.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::InvalidInput(_) | Self::Amount(_) => "invalid_input",
            Self::Contract { .. } => "contract",
            Self::UnknownProvider(_) => "unknown_provider",
            Self::NoSubAccount(_) => "no_sub_account",
            Self::BalanceTooLow { .. } => "balance_too_low",
            Self::NoLedger(_) => "no_ledger",
            Self::Rpc { .. } => "rpc",
            Self::Unreachable { .. } => "unreachable",
            Self::Storage { .. } => "storage",
            Self::Http { .. } => "http",
            Self::BadResponse { .. } => "bad_response",
            Self::Attestation(_) => "attestation",
            Self::TlsKeyNotAttested { .. } => "tls_key_not_attested",
            Self::TlsNotPinned { .. } => "tls_not_pinned",
            Self::RootHashMismatch { .. } => "root_hash_mismatch",
            Self::Deliverable(_) => "deliverable",
            Self::Ecies(_) => "ecies",
            Self::Unzip(_) => "unzip",
            Self::Tokens(_) => "tokens",
            Self::Fee(_) => "fee",
            Self::RootHash { .. } => "root_hash",
            Self::NotReady(_) => "not_ready",
            Self::BadReport(_) => "bad_report",
            Self::BelowThreshold(_) => "below_threshold",
            Self::Io { .. } => "io",
        }
    }

    /// The process exit code (see [`exit`]).
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Config(_) => exit::CONFIG,
            Self::InvalidInput(_) | Self::Amount(_) | Self::Tokens(_) | Self::Fee(_) => exit::USAGE,
            Self::RootHash { source, .. } => match source {
                sealtune_protocol::storage::StorageError::Io(_) => exit::INTERNAL,
                _ => exit::USAGE,
            },
            Self::Contract { source, .. } => match source.as_ref() {
                ContractError::Call(e) if is_transport(e) => exit::UNREACHABLE,
                _ => exit::CHAIN,
            },
            Self::UnknownProvider(_)
            | Self::NoSubAccount(_)
            | Self::NoLedger(_)
            | Self::BalanceTooLow { .. } => exit::CHAIN,
            Self::Rpc { .. } | Self::Unreachable { .. } => exit::UNREACHABLE,
            Self::Storage { tampered: true, .. } => exit::VERIFICATION,
            Self::Storage { .. } => exit::UNREACHABLE,
            Self::Http { .. } | Self::BadResponse { .. } => exit::PROVIDER,
            Self::Attestation(_)
            | Self::TlsKeyNotAttested { .. }
            | Self::TlsNotPinned { .. }
            | Self::RootHashMismatch { .. }
            | Self::Deliverable(_)
            | Self::Ecies(_)
            | Self::Unzip(_)
            | Self::BadReport(_)
            | Self::BelowThreshold(_) => exit::VERIFICATION,
            Self::NotReady(_) => exit::NOT_READY,
            Self::Io { .. } => exit::INTERNAL,
        }
    }

    /// What to do next, as a `sealtune` command line where there is one.
    pub fn hint(&self) -> Option<String> {
        let h = |s: &str| Some(s.to_owned());
        match self {
            Self::Config(_) => h(
                "pass --key (or set SEALTUNE_KEY, or --keystore FILE with SEALTUNE_KEYSTORE_PASSWORD), --rpc, --ledger and --serving, or put rpc/ledger/serving in ~/.config/sealtune/config.toml",
            ),
            Self::Contract { source, .. } => match source.revert() {
                Some(r) => revert_hint(r),
                None => h(
                    "check --rpc and that --ledger/--serving are sealtune or 0G contracts on that chain",
                ),
            },
            Self::UnknownProvider(_) => {
                h("list the registered providers with `sealtune list-service`")
            }
            Self::NoSubAccount(p) => Some(format!(
                "fund a sub-account first: `sealtune transfer-fund --provider {p} --amount 1`"
            )),
            Self::BalanceTooLow {
                provider, needed, ..
            } => Some(format!(
                "balance too low: run `sealtune transfer-fund --provider {provider} --amount {}` (and `sealtune deposit-fund` first if the ledger is short)",
                crate::amount::format_0g(
                    (*needed).max(alloy::primitives::U256::from(crate::amount::NEURON_PER_0G))
                )
            )),
            Self::NoLedger(_) => h("create the ledger first: `sealtune create-account --amount 3`"),
            Self::Rpc { .. } => h("check --rpc (is the node running and reachable?)"),
            Self::Storage { .. } => h(
                "download through the provider instead: `sealtune download-model --download-method tee ...`",
            ),
            Self::Unreachable { .. } => h(
                "the provider's URL is the one registered on chain (`sealtune list-service`); is it online?",
            ),
            Self::Http { status: 404, .. } => {
                h("check the task id with `sealtune query-progress --provider <addr>`")
            }
            Self::Http { status: 413, .. } => h("the dataset is larger than the provider accepts"),
            Self::Attestation(_) => h(
                "do not send money or data to this provider; `sealtune verify-provider --provider <addr>` prints every link",
            ),
            Self::TlsKeyNotAttested { .. } => h(
                "run `sealtune verify-provider --provider <addr>` again: a provider restarted with another configuration has a new key; if verification then fails on the TLS key, something between you and the provider answers in its place (send it nothing)",
            ),
            Self::TlsNotPinned { provider, .. } => Some(format!(
                "run `sealtune verify-provider --provider {}` first: it pins the TLS key the provider's TEE attests; for a provider whose TLS ends outside its TEE (a TLS-terminating gateway), --allow-ca-tls accepts a CA-verified certificate instead",
                provider.map_or_else(|| "<addr>".to_owned(), |p| p.to_string())
            )),
            Self::RootHashMismatch { .. } | Self::Deliverable(_) => h(
                "the model was NOT acknowledged; download it again with `sealtune download-model`, and if it keeps failing do not acknowledge it",
            ),
            Self::Ecies(_) => h("decrypt with the key of the account that created the task"),
            Self::NotReady(_) => {
                h("check the state with `sealtune query-progress` and retry later")
            }
            _ => None,
        }
    }
}

fn is_transport(e: &alloy::contract::Error) -> bool {
    matches!(
        e,
        alloy::contract::Error::TransportError(alloy::transports::RpcError::Transport(_))
    )
}

/// What to do about a decoded revert, as a `sealtune` command where there is one.
fn revert_hint(r: &Revert) -> Option<String> {
    let s = match r {
        Revert::Ledger(L::LedgerNotExists(_)) => {
            "create the ledger first: `sealtune create-account --amount 3`"
        }
        Revert::Ledger(L::LedgerExists(_)) => {
            "the ledger exists already: add funds with `sealtune deposit-fund --amount <0G>`"
        }
        Revert::Ledger(L::InsufficientAvailableBalance(_)) => {
            "balance too low: run `sealtune deposit-fund --amount <0G>` (or `sealtune retrieve-fund` to bring funds back from sub-accounts)"
        }
        Revert::Ledger(L::MinimumDepositRequired(_)) => {
            "create-account needs at least 3 0G, the first transfer-fund to a provider at least 1 0G, and a refund must leave 0 or at least 3 0G"
        }
        Revert::Serving(S::AccountNotExists(_)) => {
            "fund a sub-account first: `sealtune transfer-fund --provider <addr> --amount 1`"
        }
        Revert::Serving(S::ServiceNotExist(_)) => {
            "list the registered providers with `sealtune list-service`"
        }
        Revert::Serving(S::DeliverableNotExists(_)) => {
            "the provider has not delivered this task yet: `sealtune query-progress --provider <addr> --task-id <id>`"
        }
        Revert::Serving(
            S::CannotAcknowledgeSettledDeliverable(_) | S::DeliverableAlreadySettled(_),
        ) => "nothing left to acknowledge: decrypt with `sealtune decrypt-model`",
        Revert::Serving(S::TooManyRefunds(_)) => {
            "wait for the lock time, then `sealtune retrieve-fund` again"
        }
        Revert::Serving(S::CannotRevokeWithNonZeroBalance(_)) => {
            "retrieve the funds first: `sealtune retrieve-fund`"
        }
        Revert::Ledger(L::InvalidServiceType(_) | L::ServiceNotRegistered(_)) => {
            "check --serving and --service-name (the ledger registers fine-tuning as \"fine-tuning-v1.0\")"
        }
        _ => return None,
    };
    Some(s.to_owned())
}

impl From<sealtune_protocol::request::RequestError> for ClientError {
    fn from(e: sealtune_protocol::request::RequestError) -> Self {
        Self::InvalidInput(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_amount_is_invalid_input_with_the_usage_exit_code() {
        let e = ClientError::from(crate::amount::parse_amount("20G").unwrap_err());
        assert_eq!(e.kind(), "invalid_input");
        assert_eq!(e.exit_code(), exit::USAGE);
        assert!(
            e.to_string().starts_with("invalid input: amount \"20G\": "),
            "{e}"
        );
    }
}
