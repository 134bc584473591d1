//! Typed errors: custom reverts of both contracts decoded into [`Revert`], which explains what
//! happened and what to do about it.
//!
//! Code that reacts to one particular revert asks with the sol!-generated error type, so the
//! compiler checks the name: [`ContractError::is`] / [`Revert::is`] compare the revert's selector.
//!
//! ```
//! use alloy::primitives::Address;
//! use alloy::sol_types::SolError;
//! use sealtune_contracts::Revert;
//! use sealtune_contracts::bindings::{FineTuningServing, LedgerManager};
//!
//! let data = LedgerManager::LedgerNotExists { user: Address::ZERO }.abi_encode();
//! let revert = Revert::decode(&data);
//! assert!(revert.is::<LedgerManager::LedgerNotExists>());
//! assert!(!revert.is::<FineTuningServing::AccountNotExists>());
//! assert_eq!(revert.name(), "LedgerNotExists");
//! ```

use std::fmt;

use alloy::primitives::{B256, Bytes, U256};
use alloy::sol_types::{Panic, Revert as RevertString, SolError, SolInterface};

use crate::bindings::FineTuningServing::FineTuningServingErrors as S;
use crate::bindings::LedgerManager::LedgerManagerErrors as L;

/// A decoded revert of FineTuningServing or LedgerManager.
#[derive(Debug)]
pub enum Revert {
    /// A custom error of FineTuningServing.
    Serving(S),
    /// A custom error of LedgerManager.
    Ledger(L),
    /// A Solidity panic (arithmetic, assertion, ...), with its code: a contract bug.
    Panic(U256),
    /// A plain `revert("...")` string (not raised by sealtune's contracts).
    Message(String),
    /// Revert data that matches no known error.
    Unknown(Bytes),
}

impl Revert {
    /// Decodes raw revert data. Errors that both contracts declare identically decode as serving errors.
    pub fn decode(data: &[u8]) -> Self {
        if let Ok(e) = S::abi_decode(data) {
            return Self::Serving(e);
        }
        if let Ok(e) = L::abi_decode(data) {
            return Self::Ledger(e);
        }
        if let Ok(p) = Panic::abi_decode(data) {
            return Self::Panic(p.code);
        }
        if let Ok(r) = RevertString::abi_decode(data) {
            return Self::Message(r.reason);
        }
        Self::Unknown(Bytes::copy_from_slice(data))
    }

    /// The 4-byte selector of the error (`None` for revert data that matched no known error).
    pub fn selector(&self) -> Option<[u8; 4]> {
        match self {
            Self::Serving(e) => Some(e.selector()),
            Self::Ledger(e) => Some(e.selector()),
            Self::Panic(_) => Some(Panic::SELECTOR),
            Self::Message(_) => Some(RevertString::SELECTOR),
            Self::Unknown(_) => None,
        }
    }

    /// Whether this is the error `E` (a sol!-generated error of
    /// [`FineTuningServing`](crate::bindings::FineTuningServing) or
    /// [`LedgerManager`](crate::bindings::LedgerManager)), by selector: the name *and* the
    /// parameter types must match. An error both contracts declare identically (e.g.
    /// `DirectDepositsDisabled()`) has one selector, so it is either contract's.
    pub fn is<E: SolError>(&self) -> bool {
        self.selector() == Some(E::SELECTOR)
    }

    /// The Solidity name of the error, e.g. `PreviousDeliverableNotAcknowledged`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Serving(e) => serving_name(e),
            Self::Ledger(e) => ledger_name(e),
            Self::Panic(_) => "Panic",
            Self::Message(_) => "Error",
            Self::Unknown(_) => "unknown",
        }
    }
}

fn serving_name(e: &S) -> &'static str {
    macro_rules! names { ($($v:ident),* $(,)?) => { match e { $(S::$v(_) => stringify!($v),)* } } }
    names!(
        AccountExists,
        AccountNotExists,
        AdditionalInfoTooLong,
        AlreadyInitialized,
        BatchSizeTooLarge,
        CallerNotLedger,
        CannotAcknowledgeSettledDeliverable,
        CannotAddStakeWhenUpdating,
        CannotEvictUnsettledDeliverable,
        CannotRevokeWithNonZeroBalance,
        DeliverableAlreadyExists,
        DeliverableAlreadySettled,
        DeliverableIdInvalidLength,
        DeliverableNotExists,
        DirectDepositsDisabled,
        ETHTransferFailed,
        InsufficientStake,
        InvalidLedgerAddress,
        InvalidVerifierInput,
        LimitTooLarge,
        LockTimeOutOfRange,
        OwnableInvalidOwner,
        OwnableUnauthorizedAccount,
        PenaltyPercentageTooHigh,
        PreviousDeliverableNotAcknowledged,
        SecretShouldBeEmpty,
        SecretShouldNotBeEmpty,
        ServiceNotExist,
        TEESignerInUse,
        TEESignerMismatch,
        TooManyRefunds,
        TransferToLedgerFailed,
    )
}

fn ledger_name(e: &L) -> &'static str {
    macro_rules! names { ($($v:ident),* $(,)?) => { match e { $(L::$v(_) => stringify!($v),)* } } }
    names!(
        AdditionalInfoTooLong,
        AlreadyInitialized,
        CallFailed,
        CallerNotRegisteredService,
        DirectDepositsDisabled,
        InsufficientAvailableBalance,
        InsufficientBalance,
        InvalidServiceAddress,
        InvalidServiceType,
        LedgerExists,
        LedgerLocked,
        LedgerNotExists,
        MinimumDepositRequired,
        MustWithdrawAllFundsFirst,
        NoRecommendedService,
        OwnableInvalidOwner,
        OwnableUnauthorizedAccount,
        ServiceAlreadyRegistered,
        ServiceMustImplementIServing,
        ServiceNameExists,
        ServiceNotFound,
        ServiceNotRegistered,
        ServiceRegistryLimitReached,
        ServiceTypeRequired,
        TooManyProviders,
        TooManyProvidersForService,
        TransferFailed,
        VersionRequired,
        ZeroAddressNotAllowed,
        ZeroAmountNotAllowed,
    )
}

fn serving_explain(e: &S) -> String {
    match e {
        S::AccountExists(x) => format!("account of user {} with provider {} already exists: top it up with transferFund instead", x.user, x.provider),
        S::AccountNotExists(x) => format!("user {} has no account with provider {}: the user must transferFund to this provider first", x.user, x.provider),
        S::AdditionalInfoTooLong(_) => "additionalInfo is too long: shorten it (at most 4096 bytes)".into(),
        S::AlreadyInitialized(_) => "contract already initialised: deploy a fresh one".into(),
        S::BatchSizeTooLarge(x) => format!("batch of {} users is over the maximum of {}: split it", x.size, x.maxSize),
        S::CallerNotLedger(_) => "only the LedgerManager may call this: go through the ledger (transferFund/retrieveFund)".into(),
        S::CannotAcknowledgeSettledDeliverable(x) => format!("deliverable {} is already settled and can no longer be acknowledged", x.id),
        S::CannotAddStakeWhenUpdating(_) => "the service is already registered: send no value with updates".into(),
        S::CannotEvictUnsettledDeliverable(x) => format!("the account's 20-deliverable ring is full and its oldest deliverable {} is unsettled: settle or abandon it first", x.id),
        S::CannotRevokeWithNonZeroBalance(x) => format!("user {} still holds {} wei with provider {}: retrieve the funds before revoking the TEE signer", x.user, x.balance, x.provider),
        S::DeliverableAlreadyExists(x) => format!("deliverable {} already exists for this account: each task id is announced once", x.id),
        S::DeliverableAlreadySettled(x) => format!("deliverable {} is already settled (or abandoned): nothing left to do", x.id),
        S::DeliverableIdInvalidLength(x) => format!("deliverable id has {} bytes; it must have 1 to 256 (the task UUID)", x.length),
        S::DeliverableNotExists(x) => format!("no deliverable {} on this account: addDeliverable must come first", x.id),
        S::DirectDepositsDisabled(_) => "plain transfers are refused: fund accounts through the LedgerManager".into(),
        S::ETHTransferFailed(_) => "paying the provider failed: the provider address must accept plain transfers".into(),
        S::InsufficientStake(x) => format!("first registration needs a stake of {} wei, got {}: send the stake with addOrUpdateService", x.required, x.provided),
        S::InvalidLedgerAddress(_) => "the ledger address must not be zero".into(),
        S::InvalidVerifierInput(x) => format!("settlement rejected: {}", x.reason),
        S::LimitTooLarge(x) => format!("page limit {} is over 50: page in smaller steps", x.limit),
        S::LockTimeOutOfRange(x) => format!("lock time {} s is outside 1 hour ..= 7 days", x.lockTime),
        S::OwnableInvalidOwner(x) => format!("{} cannot own the contract", x.owner),
        S::OwnableUnauthorizedAccount(x) => format!("{} is not the contract owner: use the owner's key", x.account),
        S::PenaltyPercentageTooHigh(x) => format!("penalty percentage {} is over 100", x.percentage),
        S::PreviousDeliverableNotAcknowledged(x) => format!("the previous deliverable {} is neither acknowledged nor settled: the user must acknowledge it, or the provider settle (with penalty) or abandon it", x.id),
        S::SecretShouldBeEmpty(_) => "the deliverable was not acknowledged: settle with an empty encrypted secret (penalty fee)".into(),
        S::SecretShouldNotBeEmpty(_) => "the deliverable was acknowledged: settle with the encrypted model key".into(),
        S::ServiceNotExist(x) => format!("provider {} has no registered service: call addOrUpdateService first", x.provider),
        S::TEESignerInUse(x) => format!("TEE signer {} already serves provider {}: a signer address serves one provider", x.signer, x.provider),
        S::TEESignerMismatch(x) => format!("the service's TEE signer is {}, not {}: verify the current signer's attestation and acknowledge that one", x.current, x.expected),
        S::TooManyRefunds(x) => format!("user {} already has 5 pending refunds with provider {}: wait for the lock time and retrieve them first", x.user, x.provider),
        S::TransferToLedgerFailed(_) => "returning funds to the ledger failed: is the serving contract registered in the ledger?".into(),
    }
}

fn ledger_explain(e: &L) -> String {
    match e {
        L::AdditionalInfoTooLong(x) => format!(
            "additionalInfo has {} bytes, at most {} allowed",
            x.length, x.max
        ),
        L::AlreadyInitialized(_) => "ledger already initialised: deploy a fresh one".into(),
        L::CallFailed(_) => "a call into a serving contract failed".into(),
        L::CallerNotRegisteredService(x) => format!(
            "{} is not a registered serving contract: registerService it first",
            x.caller
        ),
        L::DirectDepositsDisabled(_) => {
            "plain transfers are refused: use addLedger/depositFund".into()
        }
        L::InsufficientAvailableBalance(x) => format!(
            "only {} wei available, {} needed: deposit more or retrieve funds from sub-accounts",
            x.available, x.required
        ),
        L::InsufficientBalance(x) => format!(
            "ledger of {} has too little locked balance for this spend",
            x.user
        ),
        L::InvalidServiceAddress(x) => format!("{} is not a contract", x.serviceAddress),
        L::InvalidServiceType(x) => format!(
            "no service is registered as {:?}: use a full name like \"fine-tuning-v1.0\" or a registered type",
            x.serviceType
        ),
        L::LedgerExists(x) => format!("ledger of {} already exists: use depositFund", x.user),
        L::LedgerLocked(_) => "the ledger is busy (re-entrant call refused)".into(),
        L::LedgerNotExists(x) => {
            format!("{} has no ledger: addLedger (at least 3 0G) first", x.user)
        }
        L::MinimumDepositRequired(x) => format!(
            "amount {} wei is below the required minimum of {}",
            x.provided, x.required
        ),
        L::MustWithdrawAllFundsFirst(x) => format!(
            "{} wei still in the ledger: retrieve and refund everything first",
            x.remainingBalance
        ),
        L::NoRecommendedService(x) => format!("no recommended version of {:?}", x.serviceType),
        L::OwnableInvalidOwner(x) => format!("{} cannot own the contract", x.owner),
        L::OwnableUnauthorizedAccount(x) => {
            format!("{} is not the ledger owner: use the owner's key", x.account)
        }
        L::ServiceAlreadyRegistered(x) => format!("{} is already registered", x.serviceAddress),
        L::ServiceMustImplementIServing(x) => {
            format!("{} does not implement IServing (ERC-165)", x.serviceAddress)
        }
        L::ServiceNameExists(x) => format!(
            "a service named {:?} is already registered: pick another version",
            x.serviceName
        ),
        L::ServiceNotFound(x) => format!(
            "{} is not registered in the ledger: registerService it (the official client needs it)",
            x.serviceAddress
        ),
        L::ServiceNotRegistered(x) => {
            format!("{} is not registered in the ledger", x.serviceAddress)
        }
        L::ServiceRegistryLimitReached(x) => format!("the registry is full ({} services)", x.limit),
        L::ServiceTypeRequired(_) => "serviceType must not be empty".into(),
        L::TooManyProviders(x) => format!(
            "{} providers requested, at most {} per call: split the call",
            x.requested, x.maximum
        ),
        L::TooManyProvidersForService(x) => format!(
            "already {} sub-accounts on this service (maximum {})",
            x.current, x.maximum
        ),
        L::TransferFailed(_) => {
            "sending funds to the caller failed: the receiver must accept plain transfers".into()
        }
        L::VersionRequired(_) => "version must not be empty".into(),
        L::ZeroAddressNotAllowed(_) => "the zero address is not allowed here".into(),
        L::ZeroAmountNotAllowed(_) => "the amount must not be zero".into(),
    }
}

impl fmt::Display for Revert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Serving(e) => write!(
                f,
                "FineTuningServing reverted {}: {}",
                serving_name(e),
                serving_explain(e)
            ),
            Self::Ledger(e) => write!(
                f,
                "LedgerManager reverted {}: {}",
                ledger_name(e),
                ledger_explain(e)
            ),
            Self::Panic(code) => write!(
                f,
                "contract panicked with code {code:#x}: a contract bug, please report it"
            ),
            Self::Message(m) => write!(f, "contract reverted: {m}"),
            Self::Unknown(data) => write!(
                f,
                "contract reverted with unknown data {data}: is the address a sealtune contract?"
            ),
        }
    }
}

/// Everything that can go wrong talking to the contracts.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// The contract reverted (on `eth_call`/gas estimation or on chain) with a decodable reason.
    #[error("{0}")]
    Reverted(Revert),
    /// The RPC call or transaction failed for another reason (transport, node, signing).
    #[error("chain call failed: {0}")]
    Call(alloy::contract::Error),
    /// Waiting for a transaction's receipt failed.
    #[error("waiting for the transaction failed: {0}")]
    Pending(#[from] alloy::providers::PendingTransactionError),
    /// A mined transaction reverted (status 0) without revert data we could read.
    #[error("transaction {0} reverted on chain: replay it with eth_call to see why")]
    Failed(B256),
    /// A deployment produced no contract address.
    #[error("deploying {0} produced no contract address")]
    NoAddress(&'static str),
}

impl ContractError {
    /// The decoded revert, when this error is one.
    pub fn revert(&self) -> Option<&Revert> {
        match self {
            Self::Reverted(r) => Some(r),
            _ => None,
        }
    }

    /// Whether the contract reverted with the error `E` (see [`Revert::is`]), e.g.
    /// `e.is::<LedgerManager::LedgerNotExists>()`.
    pub fn is<E: SolError>(&self) -> bool {
        self.revert().is_some_and(Revert::is::<E>)
    }

    /// The Solidity error name when the contract reverted, e.g. `"TooManyRefunds"` (for display
    /// and JSON; to test for one error use [`ContractError::is`]).
    pub fn revert_name(&self) -> Option<&'static str> {
        self.revert().map(Revert::name)
    }
}

impl From<alloy::contract::Error> for ContractError {
    fn from(e: alloy::contract::Error) -> Self {
        match e.as_revert_data() {
            Some(data) => Self::Reverted(Revert::decode(&data)),
            None => Self::Call(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Address, U256};
    use alloy::sol_types::SolError;

    use super::{ContractError, Revert};
    use crate::bindings::{FineTuningServing as S, LedgerManager as L};

    fn reverted(data: &[u8]) -> ContractError {
        ContractError::Reverted(Revert::decode(data))
    }

    #[test]
    fn revert_predicate_matches_the_error_it_names() {
        let e = reverted(
            &L::LedgerNotExists {
                user: Address::ZERO,
            }
            .abi_encode(),
        );
        assert!(e.is::<L::LedgerNotExists>());
        assert_eq!(e.revert_name(), Some("LedgerNotExists"));
        assert!(!e.is::<L::LedgerExists>());
        assert!(!e.is::<S::AccountNotExists>());

        let e = reverted(&S::DeliverableNotExists { id: "task".into() }.abi_encode());
        assert!(e.is::<S::DeliverableNotExists>());
        assert!(!e.is::<S::DeliverableAlreadyExists>());
        assert!(!e.is::<L::LedgerNotExists>());
    }

    #[test]
    fn revert_predicate_tells_same_named_errors_of_the_two_contracts_apart() {
        // Same name, different parameters: serving's `AdditionalInfoTooLong()` and ledger's
        // `AdditionalInfoTooLong(uint256,uint256)` have different selectors.
        let serving = reverted(&S::AdditionalInfoTooLong {}.abi_encode());
        let ledger = reverted(
            &L::AdditionalInfoTooLong {
                length: U256::from(5000u64),
                max: U256::from(4096u64),
            }
            .abi_encode(),
        );
        assert_eq!(serving.revert_name(), ledger.revert_name());
        assert!(serving.is::<S::AdditionalInfoTooLong>());
        assert!(!serving.is::<L::AdditionalInfoTooLong>());
        assert!(ledger.is::<L::AdditionalInfoTooLong>());
        assert!(!ledger.is::<S::AdditionalInfoTooLong>());
    }

    #[test]
    fn revert_predicate_is_false_for_what_is_not_that_revert() {
        let unknown = reverted(&[0xde, 0xad, 0xbe, 0xef, 0, 1]);
        assert!(!unknown.is::<L::LedgerNotExists>());
        assert_eq!(unknown.revert().unwrap().selector(), None);
        let failed = ContractError::Failed(Default::default());
        assert!(!failed.is::<S::ServiceNotExist>());
        assert_eq!(failed.revert_name(), None);
    }
}
