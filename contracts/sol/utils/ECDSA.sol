// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title ECDSA
/// @notice secp256k1 public-key recovery from a 65-byte `r ‖ s ‖ v` signature over a raw digest.
/// @dev Rejects malleable (high-s) signatures and any v other than 27/28 (0/1 are normalised).
///      Returns the zero address instead of reverting, so callers choose their own error.
library ECDSA {
    /// @dev secp256k1 n / 2: signatures with a larger s are the malleable twin of a valid one.
    uint256 private constant HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    /// @notice The signer of `digest`, or address(0) when the signature is malformed or invalid.
    function tryRecover(bytes32 digest, bytes memory signature) internal pure returns (address) {
        if (signature.length != 65) return address(0);
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly {
            r := mload(add(signature, 0x20))
            s := mload(add(signature, 0x40))
            v := byte(0, mload(add(signature, 0x60)))
        }
        if (v < 27) v += 27;
        if (v != 27 && v != 28) return address(0);
        if (uint256(s) > HALF_ORDER) return address(0);
        return ecrecover(digest, v, r, s);
    }
}
