// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title IServing
/// @notice What LedgerManager needs from a serving contract: the sub-account operations it drives
///         on a customer's behalf. A serving contract advertises it through ERC-165.
interface IServing {
    function accountExists(address user, address provider) external view returns (bool);
    function getPendingRefund(address user, address provider) external view returns (uint256);
    function addAccount(address user, address provider, string calldata additionalInfo) external payable;
    function depositFund(address user, address provider, uint256 cancelRetrievingAmount) external payable;
    function requestRefundAll(address user, address provider) external;
    function processRefund(address user, address provider)
        external
        returns (uint256 totalAmount, uint256 balance, uint256 pendingRefund);
    function deleteAccount(address user, address provider) external;
}

/// @notice ERC-165.
interface IERC165 {
    function supportsInterface(bytes4 interfaceId) external view returns (bool);
}
