// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title OwnableInitializable
/// @notice One-shot initialisation plus single-owner access control, written for sealtune.
/// @dev Exposes the OpenZeppelin v4-compatible surface the official 0G client expects
///      (`initialized()`, `owner()`, `transferOwnership`, `renounceOwnership`, `Initialized(uint8)`,
///      `OwnershipTransferred`), but every revert is a custom error.
abstract contract OwnableInitializable {
    /// @notice Emitted once, when the contract is initialised.
    event Initialized(uint8 version);
    /// @notice Emitted whenever the owner changes (including initialisation and renouncement).
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    /// @notice `initialize` was called a second time.
    error AlreadyInitialized();
    /// @notice The caller is not the owner.
    error OwnableUnauthorizedAccount(address account);
    /// @notice The zero address cannot own the contract.
    error OwnableInvalidOwner(address owner);

    address private _owner;
    bool private _initialized;

    modifier initializer() {
        if (_initialized) revert AlreadyInitialized();
        _initialized = true;
        _;
        emit Initialized(1);
    }

    modifier onlyOwner() {
        if (msg.sender != _owner) revert OwnableUnauthorizedAccount(msg.sender);
        _;
    }

    /// @notice Whether `initialize` has run.
    function initialized() external view returns (bool) {
        return _initialized;
    }

    /// @notice The current owner.
    function owner() public view returns (address) {
        return _owner;
    }

    /// @notice Hands ownership to `newOwner` (not the zero address).
    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert OwnableInvalidOwner(address(0));
        _transferOwnership(newOwner);
    }

    /// @notice Gives up ownership for good: owner-only calls become impossible.
    function renounceOwnership() external onlyOwner {
        _transferOwnership(address(0));
    }

    function _transferOwnership(address newOwner) internal {
        address old = _owner;
        _owner = newOwner;
        emit OwnershipTransferred(old, newOwner);
    }
}
