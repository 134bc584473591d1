//! secp256k1 signatures as the 0G protocol uses them: 65 bytes `r ‖ s ‖ v`, over 32-byte digests.
//!
//! Parsing is strict, because every signature here comes from an untrusted party: exactly 65 bytes,
//! `v` ∈ {0, 1, 27, 28} (no EIP-155 `v`), `r` and `s` non-zero and below the curve order, and `s` in the
//! lower half of the order (a high-`s` signature is the malleable twin of a valid one and is rejected,
//! as the EVM's OpenZeppelin `ECDSA.recover` does).
//!
//! ```
//! use sealtune_protocol::sig::{eip191_hash, sign_prehash, Signature};
//! use k256::ecdsa::SigningKey;
//!
//! let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
//! let digest = eip191_hash(b"hello");
//! let sig = sign_prehash(&key, &digest);
//! let parsed = Signature::from_hex(&sig.to_hex_v27()).unwrap();
//! assert_eq!(parsed.recover_address(&digest).unwrap(), sealtune_protocol::sig::address_of(key.verifying_key()));
//! ```

use alloy_primitives::{Address, B256, U256};
use k256::ecdsa::{SigningKey, VerifyingKey};

/// Why a signature was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// Not valid hex (after an optional `0x`).
    #[error("signature is not valid hex: {0}")]
    Hex(String),
    /// Not 65 bytes.
    #[error("signature must be 65 bytes (r ‖ s ‖ v), got {0}")]
    Length(usize),
    /// `v` outside {0, 1, 27, 28}.
    #[error("signature v must be 0, 1, 27 or 28, got {0}")]
    BadV(u8),
    /// `r` or `s` is zero or not below the curve order.
    #[error("signature r or s is out of range")]
    OutOfRange,
    /// `s` in the upper half of the curve order (malleable form).
    #[error(
        "signature has a high s value (malleable form); sign with a standard library that emits low-s signatures"
    )]
    HighS,
    /// No public key recovers from this signature and digest.
    #[error("no public key can be recovered from this signature")]
    Unrecoverable,
}

/// Half the secp256k1 group order, `n / 2` (a valid low-`s` is `<= HALF_N`).
const HALF_N: U256 = U256::from_be_slice(&[
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0,
]);

/// The secp256k1 group order `n`.
const N: U256 = U256::from_be_slice(&[
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
]);

/// A validated recoverable secp256k1 signature (low `s`, parity known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature(alloy_primitives::Signature);

impl Signature {
    /// Parse 65 bytes `r ‖ s ‖ v` with the strict rules of this module.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SigError> {
        let arr: &[u8; 65] = bytes
            .try_into()
            .map_err(|_| SigError::Length(bytes.len()))?;
        let [rs @ .., v] = arr;
        let parity = match *v {
            0 | 27 => false,
            1 | 28 => true,
            other => return Err(SigError::BadV(other)),
        };
        let (r, s) = rs.split_at(32);
        let r = U256::from_be_slice(r);
        let s = U256::from_be_slice(s);
        if r.is_zero() || s.is_zero() || r >= N || s >= N {
            return Err(SigError::OutOfRange);
        }
        if s > HALF_N {
            return Err(SigError::HighS);
        }
        Ok(Signature(alloy_primitives::Signature::new(r, s, parity)))
    }

    /// Parse a hex string (with or without `0x`) of 65 bytes.
    pub fn from_hex(text: &str) -> Result<Self, SigError> {
        let t = text.trim();
        let t = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        let bytes = hex::decode(t).map_err(|e| SigError::Hex(e.to_string()))?;
        Self::from_bytes(&bytes)
    }

    /// `r ‖ s ‖ v` with `v` = 27/28 (what Ethereum wallets and the contracts use).
    pub fn to_bytes_v27(&self) -> [u8; 65] {
        self.0.as_bytes()
    }

    /// `r ‖ s ‖ v` with `v` = 0/1 (the deliverable tag signature form).
    pub fn to_bytes_v01(&self) -> [u8; 65] {
        let mut b = self.0.as_bytes();
        if let Some(v) = b.last_mut() {
            *v = u8::from(self.0.v());
        }
        b
    }

    /// `0x`-prefixed lowercase hex of [`Signature::to_bytes_v27`].
    pub fn to_hex_v27(&self) -> String {
        format!("0x{}", hex::encode(self.to_bytes_v27()))
    }

    /// The public key that produced this signature over `prehash`.
    pub fn recover_key(&self, prehash: &B256) -> Result<VerifyingKey, SigError> {
        self.0
            .recover_from_prehash(prehash)
            .map_err(|_| SigError::Unrecoverable)
    }

    /// The Ethereum address that produced this signature over `prehash`.
    pub fn recover_address(&self, prehash: &B256) -> Result<Address, SigError> {
        self.recover_key(prehash).map(|k| address_of(&k))
    }

    /// The underlying alloy signature.
    pub fn inner(&self) -> &alloy_primitives::Signature {
        &self.0
    }
}

/// Sign a 32-byte digest as is (no prefix), deterministic (RFC 6979), low `s`.
pub fn sign_prehash(key: &SigningKey, prehash: &B256) -> Signature {
    // A 32-byte prehash is always accepted by k256 and RFC 6979 signing cannot fail for a valid key.
    #[allow(clippy::expect_used)]
    let (sig, recid) = key
        .sign_prehash_recoverable(prehash.as_slice())
        .expect("signing a 32-byte digest with a valid key cannot fail");
    let (sig, recid) = match sig.normalize_s() {
        Some(low) => (low, !recid.is_y_odd()),
        None => (sig, recid.is_y_odd()),
    };
    Signature(alloy_primitives::Signature::from_signature_and_parity(
        sig, recid,
    ))
}

/// The Ethereum address of a public key: the last 20 bytes of `keccak256(uncompressed X ‖ Y)`.
pub fn address_of(key: &VerifyingKey) -> Address {
    Address::from_public_key(key)
}

/// EIP-191 `personal_sign` digest: `keccak256("\x19Ethereum Signed Message:\n" ‖ len ‖ message)`.
pub fn eip191_hash(message: &[u8]) -> B256 {
    alloy_primitives::eip191_hash_message(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::keccak256;

    fn key() -> SigningKey {
        SigningKey::from_slice(&[0x11; 32]).unwrap()
    }

    #[test]
    fn round_trip_both_v_forms() {
        let d = keccak256(b"x");
        let s = sign_prehash(&key(), &d);
        let addr = address_of(key().verifying_key());
        for bytes in [s.to_bytes_v27(), s.to_bytes_v01()] {
            let p = Signature::from_bytes(&bytes).unwrap();
            assert_eq!(p.recover_address(&d).unwrap(), addr);
        }
    }

    #[test]
    fn high_s_twin_is_rejected() {
        let d = keccak256(b"x");
        let s = sign_prehash(&key(), &d).to_bytes_v27();
        let low_s = U256::from_be_slice(&s[32..64]);
        let high_s = N - low_s;
        let mut twin = s;
        twin[32..64].copy_from_slice(&high_s.to_be_bytes::<32>());
        twin[64] = if s[64] == 27 { 28 } else { 27 };
        assert_eq!(Signature::from_bytes(&twin), Err(SigError::HighS));
    }

    #[test]
    fn wrong_v_and_length_are_rejected() {
        let d = keccak256(b"x");
        let mut s = sign_prehash(&key(), &d).to_bytes_v27();
        s[64] = 37;
        assert_eq!(Signature::from_bytes(&s), Err(SigError::BadV(37)));
        assert_eq!(Signature::from_bytes(&s[..64]), Err(SigError::Length(64)));
        assert!(matches!(Signature::from_hex("0xzz"), Err(SigError::Hex(_))));
    }

    #[test]
    fn address_of_known_key() {
        // private key 1 → the well-known address of the generator point
        let k = SigningKey::from_slice(&{
            let mut b = [0u8; 32];
            b[31] = 1;
            b
        })
        .unwrap();
        assert_eq!(
            address_of(k.verifying_key()).to_checksum(None),
            "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
        );
    }
}
