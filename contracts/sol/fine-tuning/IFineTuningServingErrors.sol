// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title IFineTuningServingErrors
/// @notice Every custom error FineTuningServing and its libraries revert with.
interface IFineTuningServingErrors {
    error AccountExists(address user, address provider);
    error AccountNotExists(address user, address provider);
    error AdditionalInfoTooLong();
    error BatchSizeTooLarge(uint256 size, uint256 maxSize);
    error CallerNotLedger();
    error CannotAcknowledgeSettledDeliverable(string id);
    error CannotAddStakeWhenUpdating();
    error CannotEvictUnsettledDeliverable(string id);
    error CannotRevokeWithNonZeroBalance(address user, address provider, uint256 balance);
    error DeliverableAlreadyExists(string id);
    error DeliverableAlreadySettled(string id);
    error DeliverableIdInvalidLength(uint256 length);
    error DeliverableNotExists(string id);
    error DirectDepositsDisabled();
    error ETHTransferFailed();
    error InsufficientStake(uint256 provided, uint256 required);
    error InvalidLedgerAddress();
    error InvalidVerifierInput(string reason);
    error LimitTooLarge(uint256 limit);
    error LockTimeOutOfRange(uint256 lockTime);
    error PenaltyPercentageTooHigh(uint256 percentage);
    error PreviousDeliverableNotAcknowledged(string id);
    error SecretShouldBeEmpty();
    error SecretShouldNotBeEmpty();
    error ServiceNotExist(address provider);
    error TooManyRefunds(address user, address provider);
    error TEESignerInUse(address signer, address provider);
    error TEESignerMismatch(address expected, address current);
    error TransferToLedgerFailed();
}
