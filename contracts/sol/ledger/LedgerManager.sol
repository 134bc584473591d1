// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {OwnableInitializable} from "../utils/Initializable.sol";
import {IServing, IERC165} from "../fine-tuning/IServing.sol";

/// A customer's unified (parent) account. Locked funds = totalBalance - availableBalance.
struct Ledger {
    address user;
    uint256 availableBalance;
    uint256 totalBalance;
    string additionalInfo;
}

/// A serving contract registered under `serviceType` and `version`; `fullName` = type-version.
struct ServiceInfo {
    address serviceAddress;
    address serviceContract;
    string serviceType;
    string version;
    string fullName;
    string description;
    bool isRecommended;
    uint256 registeredAt;
}

/// @title LedgerManager
/// @notice The customer's parent account: deposits and withdrawals, transfers into per-provider
///         sub-accounts of registered serving contracts, and their retrieval after the lock time.
///         Also the registry the official client resolves service names with.
contract LedgerManager is OwnableInitializable {
    /// Smallest non-zero ledger balance.
    uint256 public constant MIN_ACCOUNT_BALANCE = 3 ether;
    /// Smallest transfer that may create a sub-account.
    uint256 public constant MIN_TRANSFER_AMOUNT = 1 ether;
    /// Most providers per `retrieveFund` call.
    uint256 public constant MAX_PROVIDERS_PER_BATCH = 20;
    /// Most sub-accounts a customer may hold with one serving contract.
    uint256 public constant MAX_PROVIDERS_PER_USER_PER_SERVICE = 100;
    /// Most serving contracts in the registry.
    uint256 public constant MAX_SERVICES = 50;
    /// Longest `additionalInfo`.
    uint256 public constant MAX_ADDITIONAL_INFO_LENGTH = 4096;

    error AdditionalInfoTooLong(uint256 length, uint256 max);
    error CallFailed();
    error CallerNotRegisteredService(address caller);
    error DirectDepositsDisabled();
    error InsufficientAvailableBalance(uint256 available, uint256 required);
    error InsufficientBalance(address user);
    error InvalidServiceAddress(address serviceAddress);
    error InvalidServiceType(string serviceType);
    error LedgerExists(address user);
    error LedgerLocked();
    error LedgerNotExists(address user);
    error MinimumDepositRequired(uint256 provided, uint256 required);
    error MustWithdrawAllFundsFirst(uint256 remainingBalance);
    error NoRecommendedService(string serviceType);
    error ServiceAlreadyRegistered(address serviceAddress);
    error ServiceMustImplementIServing(address serviceAddress);
    error ServiceNameExists(string serviceName);
    error ServiceNotFound(address serviceAddress);
    error ServiceNotRegistered(address serviceAddress);
    error ServiceRegistryLimitReached(uint256 limit);
    error ServiceTypeRequired();
    error TooManyProviders(uint256 requested, uint256 maximum);
    error TooManyProvidersForService(uint256 current, uint256 maximum);
    error TransferFailed();
    error VersionRequired();
    error ZeroAddressNotAllowed();
    error ZeroAmountNotAllowed();

    event FundSpent(address indexed user, address indexed service, uint256 amount);
    event LedgerInfoUpdated(address indexed user, string additionalInfo);
    event RecommendedServiceUpdated(string serviceType, string version, address serviceAddress);
    event ServiceRegistered(address indexed serviceAddress, string serviceName);

    mapping(address => Ledger) private ledgerOf;
    address[] private ledgerUsers;
    mapping(address => uint256) private ledgerPos; // index + 1
    // user => service => providers with a sub-account
    mapping(address => mapping(address => address[])) private subProviders;
    mapping(address => mapping(address => mapping(address => uint256))) private subPos; // index + 1

    address[] private serviceList;
    mapping(address => ServiceInfo) private serviceInfo;
    mapping(bytes32 => address) private serviceByFullName;
    mapping(bytes32 => address[]) private servicesByType;
    mapping(bytes32 => address) private recommended;

    bool private locked;

    constructor() {}

    modifier nonReentrant() {
        if (locked) revert LedgerLocked();
        locked = true;
        _;
        locked = false;
    }

    modifier withLedger() {
        if (ledgerPos[msg.sender] == 0) revert LedgerNotExists(msg.sender);
        _;
    }

    /// @notice One-shot set-up.
    function initialize(address owner) external initializer {
        if (owner == address(0)) revert OwnableInvalidOwner(address(0));
        _transferOwnership(owner);
    }

    /// @notice Only registered serving contracts send funds here (refunds returning to ledgers).
    receive() external payable {
        if (serviceInfo[msg.sender].serviceAddress == address(0)) revert DirectDepositsDisabled();
    }

    // ================================================================ ledger

    /// @notice Opens the caller's ledger with at least MIN_ACCOUNT_BALANCE.
    function addLedger(string calldata additionalInfo) external payable nonReentrant returns (uint256, uint256) {
        if (ledgerPos[msg.sender] != 0) revert LedgerExists(msg.sender);
        _create(msg.sender, msg.value, additionalInfo);
        return (msg.value, msg.value);
    }

    /// @notice Adds to the caller's ledger, opening it (MIN_ACCOUNT_BALANCE) if missing.
    function depositFund() external payable nonReentrant {
        _deposit(msg.sender);
    }

    /// @notice Adds to `recipient`'s ledger, opening it (MIN_ACCOUNT_BALANCE) if missing.
    function depositFundFor(address recipient) external payable nonReentrant {
        if (recipient == address(0)) revert ZeroAddressNotAllowed();
        _deposit(recipient);
    }

    /// @notice Withdraws `amount` of available funds; the ledger must keep 0 or at least
    ///         MIN_ACCOUNT_BALANCE. At 0 the (empty) sub-accounts are deleted.
    function refund(uint256 amount) external nonReentrant withLedger {
        if (amount == 0) revert ZeroAmountNotAllowed();
        Ledger storage l = ledgerOf[msg.sender];
        if (l.availableBalance < amount) revert InsufficientAvailableBalance(l.availableBalance, amount);
        uint256 remaining = l.totalBalance - amount;
        if (remaining != 0 && remaining < MIN_ACCOUNT_BALANCE) {
            revert MinimumDepositRequired(remaining, MIN_ACCOUNT_BALANCE);
        }
        l.availableBalance -= amount;
        l.totalBalance = remaining;
        if (remaining == 0) _deleteSubAccounts(msg.sender);
        _send(msg.sender, amount);
    }

    /// @notice Closes the caller's ledger, which must hold nothing.
    function deleteLedger() external nonReentrant withLedger {
        Ledger storage l = ledgerOf[msg.sender];
        if (l.totalBalance != 0) revert MustWithdrawAllFundsFirst(l.totalBalance);
        _deleteSubAccounts(msg.sender);
        delete ledgerOf[msg.sender];
        uint256 i = ledgerPos[msg.sender] - 1;
        uint256 last = ledgerUsers.length - 1;
        if (i != last) {
            address moved = ledgerUsers[last];
            ledgerUsers[i] = moved;
            ledgerPos[moved] = i + 1;
        }
        ledgerUsers.pop();
        delete ledgerPos[msg.sender];
    }

    /// @notice Replaces the caller's ledger `additionalInfo`.
    function updateAdditionalInfo(string calldata additionalInfo) external withLedger {
        _checkInfo(additionalInfo);
        ledgerOf[msg.sender].additionalInfo = additionalInfo;
        emit LedgerInfoUpdated(msg.sender, additionalInfo);
    }

    /// @notice Moves `amount` into the caller's sub-account with `provider` on service `serviceName`
    ///         (a full name such as "fine-tuning-v1.0", or a service type resolved to its recommended
    ///         version). Creates the sub-account (at least MIN_TRANSFER_AMOUNT) or tops it up,
    ///         cancelling up to `amount` of its pending refunds first.
    function transferFund(address provider, string calldata serviceName, uint256 amount)
        external
        nonReentrant
        withLedger
    {
        address service = _resolve(serviceName);
        Ledger storage l = ledgerOf[msg.sender];
        IServing s = IServing(service);
        if (!s.accountExists(msg.sender, provider)) {
            if (amount < MIN_TRANSFER_AMOUNT) revert MinimumDepositRequired(amount, MIN_TRANSFER_AMOUNT);
            if (l.availableBalance < amount) revert InsufficientAvailableBalance(l.availableBalance, amount);
            address[] storage list = subProviders[msg.sender][service];
            if (subPos[msg.sender][service][provider] == 0) {
                if (list.length >= MAX_PROVIDERS_PER_USER_PER_SERVICE) {
                    revert TooManyProvidersForService(list.length, MAX_PROVIDERS_PER_USER_PER_SERVICE);
                }
                list.push(provider);
                subPos[msg.sender][service][provider] = list.length;
            }
            l.availableBalance -= amount;
            s.addAccount{value: amount}(msg.sender, provider, l.additionalInfo);
        } else {
            uint256 pending = s.getPendingRefund(msg.sender, provider);
            uint256 cancel = amount < pending ? amount : pending;
            uint256 send = amount - cancel;
            if (l.availableBalance < send) revert InsufficientAvailableBalance(l.availableBalance, send);
            l.availableBalance -= send;
            s.depositFund{value: send}(msg.sender, provider, cancel);
        }
    }

    /// @notice For each provider: collects matured refunds back into the available balance, then
    ///         requests a refund of the rest (which matures after the serving contract's lock time).
    function retrieveFund(address[] calldata providers, string calldata serviceName)
        external
        nonReentrant
        withLedger
    {
        if (providers.length > MAX_PROVIDERS_PER_BATCH) {
            revert TooManyProviders(providers.length, MAX_PROVIDERS_PER_BATCH);
        }
        address service = _resolve(serviceName);
        IServing s = IServing(service);
        Ledger storage l = ledgerOf[msg.sender];
        for (uint256 i = 0; i < providers.length; i++) {
            if (!s.accountExists(msg.sender, providers[i])) continue;
            (uint256 total,,) = s.processRefund(msg.sender, providers[i]);
            l.availableBalance += total;
            s.requestRefundAll(msg.sender, providers[i]);
        }
    }

    /// @notice Records that a registered serving contract paid `amount` of `user`'s locked funds to a provider.
    function spendFund(address user, uint256 amount) external {
        if (serviceInfo[msg.sender].serviceAddress == address(0)) revert CallerNotRegisteredService(msg.sender);
        if (ledgerPos[user] == 0) revert LedgerNotExists(user);
        Ledger storage l = ledgerOf[user];
        if (l.totalBalance - l.availableBalance < amount) revert InsufficientBalance(user);
        l.totalBalance -= amount;
        emit FundSpent(user, msg.sender, amount);
    }

    /// @notice `user`'s ledger.
    function getLedger(address user) external view returns (Ledger memory) {
        if (ledgerPos[user] == 0) revert LedgerNotExists(user);
        return ledgerOf[user];
    }

    /// @notice Page of all ledgers.
    function getAllLedgers(uint256 offset, uint256 limit)
        external
        view
        returns (Ledger[] memory ledgers, uint256 total)
    {
        total = ledgerUsers.length;
        if (offset >= total) return (new Ledger[](0), total);
        uint256 end = limit > total - offset ? total : offset + limit;
        ledgers = new Ledger[](end - offset);
        for (uint256 i = offset; i < end; i++) {
            ledgers[i - offset] = ledgerOf[ledgerUsers[i]];
        }
    }

    /// @notice Providers with which `user` holds a sub-account on `serviceName`.
    function getLedgerProviders(address user, string calldata serviceName) external view returns (address[] memory) {
        return subProviders[user][_resolve(serviceName)];
    }

    function _create(address user, uint256 amount, string memory info) private {
        if (amount < MIN_ACCOUNT_BALANCE) revert MinimumDepositRequired(amount, MIN_ACCOUNT_BALANCE);
        _checkInfo(info);
        ledgerUsers.push(user);
        ledgerPos[user] = ledgerUsers.length;
        ledgerOf[user] = Ledger({user: user, availableBalance: amount, totalBalance: amount, additionalInfo: info});
    }

    function _deposit(address user) private {
        if (msg.value == 0) revert ZeroAmountNotAllowed();
        if (ledgerPos[user] == 0) {
            _create(user, msg.value, "");
        } else {
            ledgerOf[user].availableBalance += msg.value;
            ledgerOf[user].totalBalance += msg.value;
        }
    }

    function _checkInfo(string memory info) private pure {
        if (bytes(info).length > MAX_ADDITIONAL_INFO_LENGTH) {
            revert AdditionalInfoTooLong(bytes(info).length, MAX_ADDITIONAL_INFO_LENGTH);
        }
    }

    function _deleteSubAccounts(address user) private {
        for (uint256 i = 0; i < serviceList.length; i++) {
            address service = serviceList[i];
            address[] storage list = subProviders[user][service];
            for (uint256 j = 0; j < list.length; j++) {
                if (IServing(service).accountExists(user, list[j])) IServing(service).deleteAccount(user, list[j]);
                delete subPos[user][service][list[j]];
            }
            delete subProviders[user][service];
        }
    }

    function _send(address to, uint256 amount) private {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert TransferFailed();
    }

    // ================================================================ service registry

    /// @notice Registers serving contract `serviceAddress` as `serviceType`-`version` (e.g. "fine-tuning", "v1.0").
    ///         The first version of a type becomes its recommended one.
    function registerService(
        string calldata serviceType,
        string calldata version,
        address serviceAddress,
        string calldata description
    ) external onlyOwner {
        if (bytes(serviceType).length == 0) revert ServiceTypeRequired();
        if (bytes(version).length == 0) revert VersionRequired();
        if (serviceAddress == address(0)) revert ZeroAddressNotAllowed();
        if (serviceAddress.code.length == 0) revert InvalidServiceAddress(serviceAddress);
        if (serviceInfo[serviceAddress].serviceAddress != address(0)) revert ServiceAlreadyRegistered(serviceAddress);
        if (serviceList.length >= MAX_SERVICES) revert ServiceRegistryLimitReached(MAX_SERVICES);
        bool ok;
        try IERC165(serviceAddress).supportsInterface(type(IServing).interfaceId) returns (bool yes) {
            ok = yes;
        } catch {}
        if (!ok) revert ServiceMustImplementIServing(serviceAddress);
        string memory fullName = string.concat(serviceType, "-", version);
        bytes32 nameHash = keccak256(bytes(fullName));
        if (serviceByFullName[nameHash] != address(0)) revert ServiceNameExists(fullName);
        serviceByFullName[nameHash] = serviceAddress;
        serviceList.push(serviceAddress);
        bytes32 typeHash = keccak256(bytes(serviceType));
        servicesByType[typeHash].push(serviceAddress);
        serviceInfo[serviceAddress] = ServiceInfo({
            serviceAddress: serviceAddress,
            serviceContract: serviceAddress,
            serviceType: serviceType,
            version: version,
            fullName: fullName,
            description: description,
            isRecommended: false,
            registeredAt: block.timestamp
        });
        emit ServiceRegistered(serviceAddress, fullName);
        if (recommended[typeHash] == address(0)) {
            recommended[typeHash] = serviceAddress;
            emit RecommendedServiceUpdated(serviceType, version, serviceAddress);
        }
    }

    /// @notice Makes `version` the recommended one of `serviceType`.
    function setRecommendedService(string calldata serviceType, string calldata version) external onlyOwner {
        bytes32 typeHash = keccak256(bytes(serviceType));
        if (servicesByType[typeHash].length == 0) revert InvalidServiceType(serviceType);
        address service = serviceByFullName[keccak256(bytes(string.concat(serviceType, "-", version)))];
        if (service == address(0)) revert ServiceNotFound(address(0));
        recommended[typeHash] = service;
        emit RecommendedServiceUpdated(serviceType, version, service);
    }

    /// @notice Registry entry of `serviceAddress`.
    function getServiceInfo(address serviceAddress) external view returns (ServiceInfo memory) {
        if (serviceInfo[serviceAddress].serviceAddress == address(0)) revert ServiceNotFound(serviceAddress);
        return _info(serviceAddress);
    }

    /// @notice Address registered under full name `serviceName`, or address(0).
    function getServiceAddressByName(string calldata serviceName) external view returns (address) {
        return serviceByFullName[keccak256(bytes(serviceName))];
    }

    /// @notice Every registered serving contract.
    function getAllActiveServices() external view returns (ServiceInfo[] memory) {
        ServiceInfo[] memory out = new ServiceInfo[](serviceList.length);
        for (uint256 i = 0; i < out.length; i++) {
            out[i] = _info(serviceList[i]);
        }
        return out;
    }

    /// @notice Every version of `serviceType`, in registration order.
    function getAllVersions(string calldata serviceType)
        external
        view
        returns (string[] memory versions, address[] memory addresses, bool[] memory isRecommendedFlags)
    {
        address[] storage list = servicesByType[keccak256(bytes(serviceType))];
        versions = new string[](list.length);
        addresses = list;
        isRecommendedFlags = new bool[](list.length);
        for (uint256 i = 0; i < list.length; i++) {
            ServiceInfo memory info = _info(list[i]);
            versions[i] = info.version;
            isRecommendedFlags[i] = info.isRecommended;
        }
    }

    /// @notice The recommended version of `serviceType`.
    function getRecommendedService(string calldata serviceType)
        external
        view
        returns (string memory version, address serviceAddress)
    {
        serviceAddress = recommended[keccak256(bytes(serviceType))];
        if (serviceAddress == address(0)) revert NoRecommendedService(serviceType);
        version = serviceInfo[serviceAddress].version;
    }

    /// @notice Whether `version` is the recommended version of `serviceType`.
    function isRecommendedVersion(string calldata serviceType, string calldata version) external view returns (bool) {
        address service = recommended[keccak256(bytes(serviceType))];
        return service != address(0) && keccak256(bytes(serviceInfo[service].version)) == keccak256(bytes(version));
    }

    function _info(address service) private view returns (ServiceInfo memory info) {
        info = serviceInfo[service];
        info.isRecommended = recommended[keccak256(bytes(info.serviceType))] == service;
    }

    /// Full name first, else a service type resolved to its recommended version.
    function _resolve(string calldata serviceName) private view returns (address service) {
        bytes32 h = keccak256(bytes(serviceName));
        service = serviceByFullName[h];
        if (service == address(0)) service = recommended[h];
        if (service == address(0)) revert InvalidServiceType(serviceName);
    }
}
