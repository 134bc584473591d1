// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {OwnableInitializable} from "../utils/Initializable.sol";
import {IFineTuningServingErrors} from "./IFineTuningServingErrors.sol";
import {IServing, IERC165} from "./IServing.sol";
import {
    Account, AccountDetails, AccountSummary, Deliverable, Quota, Service, VerifierInput
} from "./Types.sol";
import {AccountLibrary, AccountMap} from "./Account.sol";
import {ServiceLibrary, ServiceMap} from "./Service.sol";
import {VerifierLibrary} from "./Verifier.sol";

/// @notice What FineTuningServing calls on the ledger.
interface ILedgerSpend {
    function spendFund(address user, uint256 amount) external;
}

/// @title FineTuningServing
/// @notice Entry point of sealtune's fine-tuning settlement contract, ABI-compatible with 0G's.
///         Providers register services (with a stake) and announce deliverables; customers fund
///         sub-accounts through the LedgerManager, acknowledge deliverables and TEE signers; the
///         provider settles each task with a TEE-signed EIP-712 message.
contract FineTuningServing is OwnableInitializable, IFineTuningServingErrors, IServing, IERC165 {
    using AccountLibrary for AccountMap;
    using AccountLibrary for Account;
    using ServiceLibrary for ServiceMap;

    /// Shortest refund lock time.
    uint256 public constant MIN_LOCKTIME = 1 hours;
    /// Longest refund lock time.
    uint256 public constant MAX_LOCKTIME = 7 days;
    /// Stake a provider must send with its first registration; returned on removal.
    uint256 public constant MIN_PROVIDER_STAKE = 100 ether;

    /// Time a refund waits before `processRefund` releases it.
    uint256 public lockTime;
    /// The LedgerManager allowed to manage sub-accountMap.
    address public ledgerAddress;
    /// Share of the task fee charged when the customer never acknowledged the deliverable.
    uint256 public penaltyPercentage;

    AccountMap private accountMap;
    ServiceMap private serviceMap;

    event BalanceUpdated(address indexed user, address indexed provider, uint256 amount, uint256 pendingRefund);
    event RefundRequested(address indexed user, address indexed provider, uint256 indexed index, uint256 timestamp);
    event ServiceUpdated(
        address indexed provider, string url, Quota quota, uint256 pricePerToken, address teeSignerAddress, bool occupied
    );
    event ServiceRemoved(address indexed provider);
    event AccountDeleted(address indexed user, address indexed provider, uint256 refundedAmount);
    event ProviderTEESignerAcknowledged(address indexed provider, address indexed teeSignerAddress, bool acknowledged);
    event ProviderStaked(address indexed provider, uint256 amount);
    event ProviderStakeReturned(address indexed provider, uint256 amount);
    event LockTimeUpdated(uint256 oldLockTime, uint256 newLockTime);
    event DeliverableAdded(
        address indexed user, address indexed provider, string deliverableId, bytes modelRootHash, uint256 timestamp
    );
    event DeliverableAcknowledged(
        address indexed user, address indexed provider, string deliverableId, uint256 timestamp
    );
    event DeliverableEvicted(
        address indexed provider,
        address indexed user,
        string evictedDeliverableId,
        string newDeliverableId,
        uint256 timestamp
    );
    event DeliverableAbandoned(address indexed user, address indexed provider, string deliverableId, uint256 timestamp);
    event FeesSettled(
        address indexed user, address indexed provider, string deliverableId, uint256 fee, bool acknowledged, uint256 nonce
    );

    modifier onlyLedger() {
        if (msg.sender != ledgerAddress) revert CallerNotLedger();
        _;
    }

    /// @notice One-shot set-up: lock time, ledger, owner and penalty percentage.
    function initialize(uint256 _locktime, address _ledgerAddress, address owner, uint256 _penaltyPercentage)
        external
        initializer
    {
        if (_ledgerAddress == address(0)) revert InvalidLedgerAddress();
        if (owner == address(0)) revert OwnableInvalidOwner(address(0));
        _setLockTime(_locktime);
        _setPenalty(_penaltyPercentage);
        ledgerAddress = _ledgerAddress;
        _transferOwnership(owner);
    }

    /// @notice Sub-accounts are funded only through the ledger.
    receive() external payable {
        revert DirectDepositsDisabled();
    }

    /// @inheritdoc IERC165
    function supportsInterface(bytes4 interfaceId) external view returns (bool) {
        // `view` (not `pure`) to match the official ABI; reading `this` keeps the compiler quiet.
        return address(this) != address(0) && interfaceId == type(IServing).interfaceId || interfaceId == type(IERC165).interfaceId;
    }

    // ================================================================ owner

    /// @notice Changes the lock time; it applies to pending refunds too.
    function updateLockTime(uint256 _locktime) external onlyOwner {
        _setLockTime(_locktime);
    }

    /// @notice Changes the penalty percentage (0–100).
    function updatePenaltyPercentage(uint256 _penaltyPercentage) external onlyOwner {
        _setPenalty(_penaltyPercentage);
    }

    /// @notice The owner vouches for `provider`'s current TEE signer (after verifying its attestation).
    function acknowledgeTEESignerByOwner(address provider) external onlyOwner {
        Service storage s = serviceMap.get(provider);
        s.teeSignerAcknowledged = true;
        emit ProviderTEESignerAcknowledged(provider, s.teeSignerAddress, true);
    }

    /// @notice The owner vouches for `signer` as `provider`'s TEE signer (after verifying that signer's
    ///         attestation); reverts `TEESignerMismatch` unless it is the service's current signer, so a
    ///         provider cannot swap in another signer in front of the acknowledgement.
    function acknowledgeTEESignerByOwnerFor(address provider, address signer) external onlyOwner {
        Service storage s = serviceMap.get(provider);
        if (signer == address(0) || s.teeSignerAddress != signer) revert TEESignerMismatch(signer, s.teeSignerAddress);
        s.teeSignerAcknowledged = true;
        emit ProviderTEESignerAcknowledged(provider, signer, true);
    }

    /// @notice The owner withdraws its acknowledgement of `provider`'s TEE signer.
    function revokeTEESignerAcknowledgement(address provider) external onlyOwner {
        Service storage s = serviceMap.get(provider);
        s.teeSignerAcknowledged = false;
        emit ProviderTEESignerAcknowledged(provider, s.teeSignerAddress, false);
    }

    function _setLockTime(uint256 t) private {
        if (t < MIN_LOCKTIME || t > MAX_LOCKTIME) revert LockTimeOutOfRange(t);
        emit LockTimeUpdated(lockTime, t);
        lockTime = t;
    }

    function _setPenalty(uint256 p) private {
        if (p > 100) revert PenaltyPercentageTooHigh(p);
        penaltyPercentage = p;
    }

    // ================================================================ ledger-only

    /// @inheritdoc IServing
    function addAccount(address user, address provider, string calldata additionalInfo)
        external
        payable
        onlyLedger
    {
        accountMap.add(user, provider, msg.value, additionalInfo);
        emit BalanceUpdated(user, provider, msg.value, 0);
    }

    /// @inheritdoc IServing
    function depositFund(address user, address provider, uint256 cancelRetrievingAmount)
        external
        payable
        onlyLedger
    {
        Account storage acc = accountMap.get(user, provider);
        acc.cancelRefunds(cancelRetrievingAmount);
        acc.balance += msg.value;
        acc.acknowledged = true;
        emit BalanceUpdated(user, provider, acc.balance, acc.pendingRefund);
    }

    /// @inheritdoc IServing
    function requestRefundAll(address user, address provider) external onlyLedger {
        Account storage acc = accountMap.get(user, provider);
        (uint256 index, uint256 amount) = acc.requestRefundAll(block.timestamp);
        if (amount == 0) return;
        emit RefundRequested(user, provider, index, block.timestamp);
        emit BalanceUpdated(user, provider, acc.balance, acc.pendingRefund);
    }

    /// @inheritdoc IServing
    function processRefund(address user, address provider)
        external
        onlyLedger
        returns (uint256 totalAmount, uint256 balance, uint256 pendingRefund)
    {
        Account storage acc = accountMap.get(user, provider);
        totalAmount = acc.processRefunds(block.timestamp, lockTime);
        balance = acc.balance;
        pendingRefund = acc.pendingRefund;
        if (totalAmount != 0) {
            emit BalanceUpdated(user, provider, balance, pendingRefund);
            _sendToLedger(totalAmount);
        }
    }

    /// @inheritdoc IServing
    function deleteAccount(address user, address provider) external onlyLedger {
        uint256 balance = accountMap.remove(user, provider);
        emit AccountDeleted(user, provider, balance);
        if (balance != 0) _sendToLedger(balance);
    }

    function _sendToLedger(uint256 amount) private {
        (bool ok,) = ledgerAddress.call{value: amount}("");
        if (!ok) revert TransferToLedgerFailed();
    }

    // ================================================================ customer

    /// @notice The customer accepts (or, at zero balance only, revokes) `provider`'s TEE signer.
    function acknowledgeTEESigner(address provider, bool acknowledged) external {
        Account storage acc = accountMap.get(msg.sender, provider);
        if (!acknowledged && acc.balance != 0) {
            revert CannotRevokeWithNonZeroBalance(msg.sender, provider, acc.balance);
        }
        acc.acknowledged = acknowledged;
    }

    /// @notice The customer confirms it downloaded deliverable `id`; the provider may then settle the full fee.
    function acknowledgeDeliverable(address provider, string calldata id) external {
        Account storage acc = accountMap.get(msg.sender, provider);
        Deliverable storage d = acc.deliverable(id);
        if (d.settled) revert CannotAcknowledgeSettledDeliverable(id);
        d.acknowledged = true;
        emit DeliverableAcknowledged(msg.sender, provider, id, block.timestamp);
    }

    // ================================================================ provider

    /// @notice Registers (with a stake of at least MIN_PROVIDER_STAKE) or updates the caller's service.
    function addOrUpdateService(
        string calldata url,
        Quota calldata quota,
        uint256 pricePerToken,
        bool occupied,
        string[] calldata models,
        address teeSignerAddress
    ) external payable {
        uint256 staked = serviceMap.addOrUpdate(
            msg.sender, url, quota, pricePerToken, occupied, models, teeSignerAddress, msg.value, MIN_PROVIDER_STAKE
        );
        if (staked != 0) emit ProviderStaked(msg.sender, staked);
        emit ServiceUpdated(msg.sender, url, quota, pricePerToken, teeSignerAddress, occupied);
    }

    /// @notice Removes the caller's service and returns its stake.
    function removeService() external {
        uint256 stake = serviceMap.remove(msg.sender);
        emit ServiceRemoved(msg.sender);
        if (stake != 0) {
            emit ProviderStakeReturned(msg.sender, stake);
            _pay(msg.sender, stake);
        }
    }

    /// @notice Announces the encrypted model of task `id` for `user`. The account's latest deliverable
    ///         must be acknowledged or settled; the oldest one is evicted (only if settled) past 20.
    function addDeliverable(address user, string calldata id, bytes calldata modelRootHash) external {
        serviceMap.get(msg.sender);
        Account storage acc = accountMap.get(user, msg.sender);
        (bool evicted, string memory evictedId) = acc.addDeliverable(id, modelRootHash, block.timestamp);
        if (evicted) emit DeliverableEvicted(msg.sender, user, evictedId, id, block.timestamp);
        emit DeliverableAdded(user, msg.sender, id, modelRootHash, block.timestamp);
    }

    /// @notice The provider gives up on an unsettled deliverable: it is closed without any charge
    ///         (and no longer blocks the next one).
    function abandonDeliverable(address user, string calldata id) external {
        Account storage acc = accountMap.get(user, msg.sender);
        Deliverable storage d = acc.deliverable(id);
        if (d.settled) revert DeliverableAlreadySettled(id);
        d.settled = true;
        emit DeliverableAbandoned(user, msg.sender, id, block.timestamp);
    }

    /// @notice Settles a task with the TEE signer's EIP-712 signature (see VerifierLibrary). Charges
    ///         the full fee when the deliverable was acknowledged (the encrypted key is then
    ///         published), else only `taskFee * penaltyPercentage / 100` with an empty secret; the
    ///         balance must hold what is charged (not the full fee on the penalty path).
    function settleFees(VerifierInput calldata verifierInput) external {
        VerifierInput calldata input = verifierInput;
        address provider = msg.sender;
        Service storage s = serviceMap.get(provider);
        Account storage acc = accountMap.get(input.user, provider);
        AccountLibrary.checkId(input.id);
        if (!acc.acknowledged) revert InvalidVerifierInput("user has not acknowledged the TEE signer");
        if (s.teeSignerAddress == address(0) || !s.teeSignerAcknowledged) {
            revert InvalidVerifierInput("TEE signer not acknowledged by the contract owner");
        }
        if (input.nonce <= acc.nonce) revert InvalidVerifierInput("nonce must exceed the account nonce");
        Deliverable storage d = acc.deliverable(input.id);
        if (d.settled) revert DeliverableAlreadySettled(input.id);
        if (keccak256(d.modelRootHash) != keccak256(input.modelRootHash)) {
            revert InvalidVerifierInput("model root hash mismatch");
        }
        if (!VerifierLibrary.verify(input, s.teeSignerAddress)) revert InvalidVerifierInput("invalid TEE signature");

        uint256 fee;
        bool acknowledged = d.acknowledged;
        if (acknowledged) {
            if (input.encryptedSecret.length == 0) revert SecretShouldNotBeEmpty();
            d.encryptedSecret = input.encryptedSecret;
            fee = input.taskFee;
        } else {
            if (input.encryptedSecret.length != 0) revert SecretShouldBeEmpty();
            fee = (input.taskFee * penaltyPercentage) / 100;
        }
        // What is charged must be there (the penalty path needs only the penalty).
        if (acc.balance < fee) revert InvalidVerifierInput("insufficient balance");
        acc.nonce = input.nonce;
        d.settled = true;
        uint256 free = acc.balance - acc.pendingRefund;
        if (fee > free) acc.cancelRefunds(fee - free);
        acc.balance -= fee;
        emit FeesSettled(input.user, provider, input.id, fee, acknowledged, input.nonce);
        emit BalanceUpdated(input.user, provider, acc.balance, acc.pendingRefund);
        if (fee != 0) {
            _pay(provider, fee);
            ILedgerSpend(ledgerAddress).spendFund(input.user, fee);
        }
    }

    function _pay(address to, uint256 amount) private {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert ETHTransferFailed();
    }

    // ================================================================ views

    /// @notice The EIP-712 digest the TEE signer signs for `input` (the signature field is ignored).
    function verifierMessageDigest(VerifierInput calldata input) external view returns (bytes32) {
        return VerifierLibrary.digest(input);
    }

    /// @notice The (user, provider) sub-account; deliverables in ring order (oldest at deliverablesHead).
    function getAccount(address user, address provider) external view returns (AccountDetails memory) {
        return accountMap.get(user, provider).details();
    }

    /// @notice Whether the (user, provider) sub-account exists.
    function accountExists(address user, address provider) external view returns (bool) {
        return accountMap.exists(user, provider);
    }

    /// @notice Amount of the (user, provider) balance waiting in refunds.
    function getPendingRefund(address user, address provider) external view returns (uint256) {
        return accountMap.get(user, provider).pendingRefund;
    }

    /// @notice Page of all sub-accountMap.
    function getAllAccounts(uint256 offset, uint256 limit)
        external
        view
        returns (AccountSummary[] memory accounts, uint256 total)
    {
        return accountMap.page(accountMap.keys, offset, limit);
    }

    /// @notice Page of `user`'s sub-accountMap.
    function getAccountsByUser(address user, uint256 offset, uint256 limit)
        external
        view
        returns (AccountSummary[] memory accounts, uint256 total)
    {
        return accountMap.page(accountMap.userKeys[user], offset, limit);
    }

    /// @notice Page of `provider`'s sub-accountMap.
    function getAccountsByProvider(address provider, uint256 offset, uint256 limit)
        external
        view
        returns (AccountSummary[] memory accounts, uint256 total)
    {
        return accountMap.page(accountMap.providerKeys[provider], offset, limit);
    }

    /// @notice The caller's (as provider) sub-account with each of `users`; an empty summary where none exists.
    function getBatchAccountsByUsers(address[] calldata users)
        external
        view
        returns (AccountSummary[] memory accounts)
    {
        if (users.length > AccountLibrary.MAX_BATCH) revert BatchSizeTooLarge(users.length, AccountLibrary.MAX_BATCH);
        accounts = new AccountSummary[](users.length);
        for (uint256 i = 0; i < users.length; i++) {
            if (accountMap.exists(users[i], msg.sender)) {
                accounts[i] = accountMap.get(users[i], msg.sender).summary();
            }
        }
    }

    /// @notice `provider`'s service.
    function getService(address provider) external view returns (Service memory service) {
        return serviceMap.get(provider);
    }

    /// @notice Every registered service.
    function getAllServices() external view returns (Service[] memory services) {
        return serviceMap.all();
    }

    /// @notice Deliverable `id` of the (user, provider) sub-account.
    function getDeliverable(address user, address provider, string calldata id)
        external
        view
        returns (Deliverable memory)
    {
        return accountMap.get(user, provider).deliverable(id);
    }

    /// @notice The (user, provider) deliverables, oldest first.
    function getDeliverables(address user, address provider) external view returns (Deliverable[] memory) {
        return accountMap.get(user, provider).orderedDeliverables();
    }
}
