// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {VerifierInput} from "./Types.sol";
import {ECDSA} from "../utils/ECDSA.sol";

/// @title VerifierLibrary
/// @notice EIP-712 verification of the TEE signer's settlement message.
/// @dev Domain `EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)`
///      with name "0G Fine-Tuning Serving" and version "1"; struct
///      `VerifierMessage(string id,bytes encryptedSecret,bytes modelRootHash,uint256 nonce,uint256 taskFee,address user)`;
///      digest `keccak256(0x1901 ‖ domainSeparator ‖ hashStruct)`, signed raw (no EIP-191 prefix).
library VerifierLibrary {
    bytes32 internal constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 internal constant NAME_HASH = keccak256("0G Fine-Tuning Serving");
    bytes32 internal constant VERSION_HASH = keccak256("1");
    bytes32 internal constant VERIFIER_MESSAGE_TYPEHASH = keccak256(
        "VerifierMessage(string id,bytes encryptedSecret,bytes modelRootHash,uint256 nonce,uint256 taskFee,address user)"
    );

    function domainSeparator() internal view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    function hashStruct(VerifierInput calldata input) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                VERIFIER_MESSAGE_TYPEHASH,
                keccak256(bytes(input.id)),
                keccak256(input.encryptedSecret),
                keccak256(input.modelRootHash),
                input.nonce,
                input.taskFee,
                input.user
            )
        );
    }

    function digest(VerifierInput calldata input) internal view returns (bytes32) {
        return keccak256(abi.encodePacked(hex"1901", domainSeparator(), hashStruct(input)));
    }

    /// Whether `input.signature` is a valid signature of `input` by `signer` (non-zero).
    function verify(VerifierInput calldata input, address signer) internal view returns (bool) {
        if (signer == address(0)) return false;
        return ECDSA.tryRecover(digest(input), input.signature) == signer;
    }
}
