// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

// Data types of FineTuningServing. Field order is ABI: do not reorder.

/// Resources a provider offers.
struct Quota {
    uint256 cpuCount;
    uint256 nodeMemory;
    uint256 gpuCount;
    uint256 nodeStorage;
    string gpuType;
}

/// A provider's registered fine-tuning service.
struct Service {
    address provider;
    string url;
    Quota quota;
    uint256 pricePerToken;
    bool occupied;
    string[] models;
    address teeSignerAddress;
    bool teeSignerAcknowledged;
}

/// A pending refund of a customer's sub-account; it matures at `createdAt + lockTime`.
struct Refund {
    uint256 index;
    uint256 amount;
    uint256 createdAt;
    bool _deprecated_processed;
}

/// An encrypted model announced by the provider for one task (`id` is the task UUID).
struct Deliverable {
    string id;
    bytes modelRootHash;
    bytes encryptedSecret;
    bool acknowledged;
    uint248 timestamp;
    bool settled;
}

/// Storage form of a (user, provider) sub-account.
struct Account {
    address user;
    address provider;
    uint256 nonce;
    uint256 balance;
    uint256 pendingRefund;
    Refund[] refunds;
    string additionalInfo;
    Deliverable[] deliverables; // ring buffer of at most MAX_DELIVERABLES, oldest at deliverablesHead
    uint256 deliverablesHead;
    uint256 deliverablesCount;
    bool acknowledged;
    mapping(bytes32 => uint256) deliverableSlot; // keccak256(id) => ring index + 1
}

/// View form of a sub-account (`getAccount`).
struct AccountDetails {
    address user;
    address provider;
    uint256 nonce;
    uint256 balance;
    uint256 pendingRefund;
    Refund[] refunds;
    string additionalInfo;
    Deliverable[] deliverables;
    uint256 validRefundsLength;
    uint256 deliverablesHead;
    uint256 deliverablesCount;
    bool acknowledged;
}

/// Compact view of a sub-account (paging views).
struct AccountSummary {
    address user;
    address provider;
    uint256 nonce;
    uint256 balance;
    uint256 pendingRefund;
    string additionalInfo;
    uint256 validRefundsLength;
    uint256 deliverablesCount;
    bool acknowledged;
}

/// What the provider submits to `settleFees`, signed by its TEE signer (EIP-712 `VerifierMessage`).
struct VerifierInput {
    string id;
    bytes encryptedSecret;
    bytes modelRootHash;
    uint256 nonce;
    bytes signature;
    uint256 taskFee;
    address user;
}
