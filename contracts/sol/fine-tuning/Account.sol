// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {Account, AccountDetails, AccountSummary, Deliverable, Refund} from "./Types.sol";
import {IFineTuningServingErrors as E} from "./IFineTuningServingErrors.sol";

/// All (user, provider) sub-accounts, with indexes by user, by provider and overall for paging.
struct AccountMap {
    mapping(bytes32 => Account) accounts;
    bytes32[] keys;
    mapping(bytes32 => uint256) keyPos; // index + 1
    mapping(address => bytes32[]) userKeys;
    mapping(bytes32 => uint256) userPos; // index + 1
    mapping(address => bytes32[]) providerKeys;
    mapping(bytes32 => uint256) providerPos; // index + 1
}

/// @title AccountLibrary
/// @notice Sub-account bookkeeping of FineTuningServing: balances, nonces, refunds with a lock
///         time, and the FIFO ring of deliverables.
library AccountLibrary {
    /// At most this many refunds may be pending on one account.
    uint256 internal constant MAX_REFUNDS = 5;
    /// Size of the deliverable ring: the oldest settled deliverable is evicted beyond it.
    uint256 internal constant MAX_DELIVERABLES = 20;
    /// Longest accepted `additionalInfo`.
    uint256 internal constant MAX_ADDITIONAL_INFO_LENGTH = 4096;
    /// Largest page of the paging views.
    uint256 internal constant MAX_PAGE = 50;
    /// Largest `getBatchAccountsByUsers` batch.
    uint256 internal constant MAX_BATCH = 500;

    function key(address user, address provider) internal pure returns (bytes32) {
        return keccak256(abi.encode(user, provider));
    }

    function exists(AccountMap storage map, address user, address provider) internal view returns (bool) {
        return map.keyPos[key(user, provider)] != 0;
    }

    function get(AccountMap storage map, address user, address provider) internal view returns (Account storage acc) {
        bytes32 k = key(user, provider);
        if (map.keyPos[k] == 0) revert E.AccountNotExists(user, provider);
        acc = map.accounts[k];
    }

    // ---------------------------------------------------------------- lifecycle

    function add(AccountMap storage map, address user, address provider, uint256 amount, string calldata info)
        internal
        returns (Account storage acc)
    {
        bytes32 k = key(user, provider);
        if (map.keyPos[k] != 0) revert E.AccountExists(user, provider);
        if (bytes(info).length > MAX_ADDITIONAL_INFO_LENGTH) revert E.AdditionalInfoTooLong();
        map.keys.push(k);
        map.keyPos[k] = map.keys.length;
        map.userKeys[user].push(k);
        map.userPos[k] = map.userKeys[user].length;
        map.providerKeys[provider].push(k);
        map.providerPos[k] = map.providerKeys[provider].length;
        acc = map.accounts[k];
        acc.user = user;
        acc.provider = provider;
        acc.balance = amount;
        acc.additionalInfo = info;
        acc.acknowledged = true;
    }

    /// Removes the account and returns the balance it held.
    function remove(AccountMap storage map, address user, address provider) internal returns (uint256 balance) {
        bytes32 k = key(user, provider);
        if (map.keyPos[k] == 0) revert E.AccountNotExists(user, provider);
        Account storage acc = map.accounts[k];
        balance = acc.balance;
        for (uint256 i = 0; i < acc.deliverables.length; i++) {
            delete acc.deliverableSlot[keccak256(bytes(acc.deliverables[i].id))];
        }
        delete map.accounts[k];
        _unindex(map.keys, map.keyPos, k);
        _unindex(map.userKeys[user], map.userPos, k);
        _unindex(map.providerKeys[provider], map.providerPos, k);
    }

    function _unindex(bytes32[] storage list, mapping(bytes32 => uint256) storage pos, bytes32 k) private {
        uint256 i = pos[k] - 1;
        uint256 last = list.length - 1;
        if (i != last) {
            bytes32 moved = list[last];
            list[i] = moved;
            pos[moved] = i + 1;
        }
        list.pop();
        delete pos[k];
    }

    // ---------------------------------------------------------------- funds and refunds

    /// Cancels up to `amount` of pending refunds, newest first; returns how much was cancelled.
    function cancelRefunds(Account storage acc, uint256 amount) internal returns (uint256 cancelled) {
        while (cancelled < amount && acc.refunds.length > 0) {
            Refund storage r = acc.refunds[acc.refunds.length - 1];
            uint256 take = amount - cancelled;
            if (take >= r.amount) {
                take = r.amount;
                acc.refunds.pop();
            } else {
                r.amount -= take;
            }
            cancelled += take;
        }
        acc.pendingRefund -= cancelled;
    }

    /// Requests a refund of everything not already pending. Returns the new refund's index, or
    /// type(uint256).max when there was nothing to request.
    function requestRefundAll(Account storage acc, uint256 now_) internal returns (uint256 index, uint256 amount) {
        amount = acc.balance - acc.pendingRefund;
        if (amount == 0) return (type(uint256).max, 0);
        if (acc.refunds.length >= MAX_REFUNDS) revert E.TooManyRefunds(acc.user, acc.provider);
        index = acc.refunds.length;
        acc.refunds.push(Refund({index: index, amount: amount, createdAt: now_, _deprecated_processed: false}));
        acc.pendingRefund += amount;
    }

    /// Removes every refund matured at `now_` (created at least `lockTime` ago) and takes its
    /// amount off the balance; returns the total.
    function processRefunds(Account storage acc, uint256 now_, uint256 lockTime) internal returns (uint256 total) {
        uint256 kept = 0;
        uint256 n = acc.refunds.length;
        for (uint256 i = 0; i < n; i++) {
            Refund memory r = acc.refunds[i];
            if (r.createdAt + lockTime <= now_) {
                total += r.amount;
            } else {
                r.index = kept;
                acc.refunds[kept] = r;
                kept++;
            }
        }
        for (uint256 i = kept; i < n; i++) {
            acc.refunds.pop();
        }
        acc.balance -= total;
        acc.pendingRefund -= total;
    }

    // ---------------------------------------------------------------- deliverables

    function checkId(string memory id) internal pure {
        uint256 len = bytes(id).length;
        if (len == 0 || len > 256) revert E.DeliverableIdInvalidLength(len);
    }

    function addDeliverable(Account storage acc, string calldata id, bytes calldata root, uint256 now_)
        internal
        returns (bool evicted, string memory evictedId)
    {
        checkId(id);
        bytes32 idHash = keccak256(bytes(id));
        if (acc.deliverableSlot[idHash] != 0) revert E.DeliverableAlreadyExists(id);
        uint256 count = acc.deliverablesCount;
        if (count > 0) {
            Deliverable storage latest = acc.deliverables[(acc.deliverablesHead + count - 1) % MAX_DELIVERABLES];
            if (!latest.acknowledged && !latest.settled) revert E.PreviousDeliverableNotAcknowledged(latest.id);
        }
        uint256 slot;
        if (count < MAX_DELIVERABLES) {
            slot = (acc.deliverablesHead + count) % MAX_DELIVERABLES;
            acc.deliverablesCount = count + 1;
        } else {
            slot = acc.deliverablesHead;
            Deliverable storage oldest = acc.deliverables[slot];
            if (!oldest.settled) revert E.CannotEvictUnsettledDeliverable(oldest.id);
            evicted = true;
            evictedId = oldest.id;
            delete acc.deliverableSlot[keccak256(bytes(evictedId))];
            acc.deliverablesHead = (slot + 1) % MAX_DELIVERABLES;
        }
        Deliverable memory d = Deliverable({
            id: id,
            modelRootHash: root,
            encryptedSecret: "",
            acknowledged: false,
            timestamp: uint248(now_),
            settled: false
        });
        if (slot == acc.deliverables.length) {
            acc.deliverables.push(d);
        } else {
            acc.deliverables[slot] = d;
        }
        acc.deliverableSlot[idHash] = slot + 1;
    }

    function deliverable(Account storage acc, string memory id) internal view returns (Deliverable storage) {
        uint256 slot = acc.deliverableSlot[keccak256(bytes(id))];
        if (slot == 0) revert E.DeliverableNotExists(id);
        return acc.deliverables[slot - 1];
    }

    /// Deliverables oldest first.
    function orderedDeliverables(Account storage acc) internal view returns (Deliverable[] memory out) {
        uint256 count = acc.deliverablesCount;
        out = new Deliverable[](count);
        for (uint256 i = 0; i < count; i++) {
            out[i] = acc.deliverables[(acc.deliverablesHead + i) % MAX_DELIVERABLES];
        }
    }

    // ---------------------------------------------------------------- views

    function details(Account storage acc) internal view returns (AccountDetails memory) {
        return AccountDetails({
            user: acc.user,
            provider: acc.provider,
            nonce: acc.nonce,
            balance: acc.balance,
            pendingRefund: acc.pendingRefund,
            refunds: acc.refunds,
            additionalInfo: acc.additionalInfo,
            deliverables: acc.deliverables,
            validRefundsLength: acc.refunds.length,
            deliverablesHead: acc.deliverablesHead,
            deliverablesCount: acc.deliverablesCount,
            acknowledged: acc.acknowledged
        });
    }

    function summary(Account storage acc) internal view returns (AccountSummary memory) {
        return AccountSummary({
            user: acc.user,
            provider: acc.provider,
            nonce: acc.nonce,
            balance: acc.balance,
            pendingRefund: acc.pendingRefund,
            additionalInfo: acc.additionalInfo,
            validRefundsLength: acc.refunds.length,
            deliverablesCount: acc.deliverablesCount,
            acknowledged: acc.acknowledged
        });
    }

    function page(AccountMap storage map, bytes32[] storage list, uint256 offset, uint256 limit)
        internal
        view
        returns (AccountSummary[] memory out, uint256 total)
    {
        if (limit > MAX_PAGE) revert E.LimitTooLarge(limit);
        total = list.length;
        if (offset >= total) return (new AccountSummary[](0), total);
        uint256 end = offset + limit > total ? total : offset + limit;
        out = new AccountSummary[](end - offset);
        for (uint256 i = offset; i < end; i++) {
            out[i - offset] = summary(map.accounts[list[i]]);
        }
    }
}
