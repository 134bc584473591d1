// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {Quota, Service} from "./Types.sol";
import {IFineTuningServingErrors as E} from "./IFineTuningServingErrors.sol";

/// Registered provider services and their stakes.
struct ServiceMap {
    mapping(address => Service) services;
    mapping(address => uint256) stakes;
    address[] providers;
    mapping(address => uint256) pos; // index + 1
    mapping(address => address) signerProvider; // TEE signer => the provider it serves
}

/// @title ServiceLibrary
/// @notice Provider registry of FineTuningServing: quota, price, models, TEE signer and stake.
library ServiceLibrary {
    function exists(ServiceMap storage map, address provider) internal view returns (bool) {
        return map.pos[provider] != 0;
    }

    function get(ServiceMap storage map, address provider) internal view returns (Service storage) {
        if (map.pos[provider] == 0) revert E.ServiceNotExist(provider);
        return map.services[provider];
    }

    /// Registers or updates `provider`'s service. Returns the stake received on first registration
    /// (0 for updates). A changed TEE signer loses the owner's acknowledgement. A TEE signer serves
    /// one provider: a signer another provider registered is refused (`TEESignerInUse`).
    function addOrUpdate(
        ServiceMap storage map,
        address provider,
        string calldata url,
        Quota calldata quota,
        uint256 pricePerToken,
        bool occupied,
        string[] calldata models,
        address teeSignerAddress,
        uint256 value,
        uint256 minStake
    ) internal returns (uint256 staked) {
        Service storage s = map.services[provider];
        if (map.pos[provider] == 0) {
            if (value < minStake) revert E.InsufficientStake(value, minStake);
            map.providers.push(provider);
            map.pos[provider] = map.providers.length;
            map.stakes[provider] = value;
            s.provider = provider;
            staked = value;
        } else {
            if (value != 0) revert E.CannotAddStakeWhenUpdating();
            if (s.teeSignerAddress != teeSignerAddress) s.teeSignerAcknowledged = false;
        }
        s.url = url;
        s.quota = quota;
        s.pricePerToken = pricePerToken;
        s.occupied = occupied;
        delete s.models;
        for (uint256 i = 0; i < models.length; i++) {
            s.models.push(models[i]);
        }
        _bindSigner(map, provider, s.teeSignerAddress, teeSignerAddress);
        s.teeSignerAddress = teeSignerAddress;
    }

    /// Moves `provider`'s entry in the signer index from `old` to `signer`, refusing a signer that
    /// another provider holds.
    function _bindSigner(ServiceMap storage map, address provider, address old, address signer) private {
        address holder = map.signerProvider[signer];
        if (holder != address(0) && holder != provider) revert E.TEESignerInUse(signer, holder);
        if (old == signer) return;
        delete map.signerProvider[old];
        if (signer != address(0)) map.signerProvider[signer] = provider;
    }

    /// Removes `provider`'s service and returns its stake.
    function remove(ServiceMap storage map, address provider) internal returns (uint256 stake) {
        uint256 p = map.pos[provider];
        if (p == 0) revert E.ServiceNotExist(provider);
        stake = map.stakes[provider];
        delete map.stakes[provider];
        delete map.signerProvider[map.services[provider].teeSignerAddress];
        delete map.services[provider];
        uint256 last = map.providers.length - 1;
        if (p - 1 != last) {
            address moved = map.providers[last];
            map.providers[p - 1] = moved;
            map.pos[moved] = p;
        }
        map.providers.pop();
        delete map.pos[provider];
    }

    function all(ServiceMap storage map) internal view returns (Service[] memory out) {
        out = new Service[](map.providers.length);
        for (uint256 i = 0; i < out.length; i++) {
            out[i] = map.services[map.providers[i]];
        }
    }
}
