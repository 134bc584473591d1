//! The AES-256 key of a deliverable and the AES-256-GCM chunk cipher (PROTOCOL.md §4).

use std::io;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use rand_core::CryptoRngCore;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{IV_LEN, TAG_LEN};

/// The 32-byte AES-256 key of one deliverable; zeroized when dropped, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct DeliverableKey([u8; 32]);

impl DeliverableKey {
    /// A fresh key from `rng`.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        let out = DeliverableKey(key);
        key.zeroize();
        out
    }

    /// Wrap known key bytes (e.g. the customer's decrypted `encryptedSecret`).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        DeliverableKey(bytes)
    }

    /// Parse the 64 hex digits (optional `0x`) the official client passes around.
    pub fn from_hex(text: &str) -> Option<Self> {
        let t = text.trim();
        let t = t.strip_prefix("0x").unwrap_or(t);
        let mut key = [0u8; 32];
        hex::decode_to_slice(t, &mut key).ok()?;
        Some(DeliverableKey(key))
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub(crate) fn cipher(&self) -> ChunkCipher {
        // A 32-byte key is always valid for AES-256-GCM.
        let key = UnboundKey::new(&AES_256_GCM, &self.0).unwrap_or_else(|_| unreachable!());
        ChunkCipher(LessSafeKey::new(key))
    }
}

/// AES-256-GCM over one chunk, 12-byte IV, no AAD, 16-byte tag (PROTOCOL.md §4). AWS-LC's
/// assembly implementation (AES-NI/VAES + CLMUL): ~5x the RustCrypto `aes-gcm` crate on the same
/// CPU (BENCHMARKS.md). A unit test below checks it against `aes-gcm` (which ECIES still uses) on
/// chunks of many lengths.
pub(crate) struct ChunkCipher(LessSafeKey);

impl ChunkCipher {
    /// Encrypts `buf` in place and returns the tag.
    pub(crate) fn seal(&self, iv: &[u8; IV_LEN], buf: &mut [u8]) -> io::Result<[u8; TAG_LEN]> {
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*iv), Aad::empty(), buf)
            .map_err(|_| io::Error::other("AES-GCM refused a chunk"))?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypts `ct_and_tag` (the ciphertext followed by its 16-byte tag) in place, leaving the tag
    /// bytes as they were; `false` when it does not authenticate (the ciphertext part's contents
    /// are then unspecified).
    pub(crate) fn open(&self, iv: &[u8; IV_LEN], ct_and_tag: &mut [u8]) -> bool {
        let split = ct_and_tag.len().saturating_sub(TAG_LEN);
        let Some(tag) = ct_and_tag
            .get(split..)
            .and_then(|t| <[u8; TAG_LEN]>::try_from(t).ok())
        else {
            return false;
        };
        let ok = self
            .0
            .open_in_place(Nonce::assume_unique_for_key(*iv), Aad::empty(), ct_and_tag)
            .is_ok();
        if let Some(t) = ct_and_tag.get_mut(split..) {
            t.copy_from_slice(&tag);
        }
        ok
    }
}

impl std::fmt::Debug for DeliverableKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeliverableKey(<redacted>)")
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use crate::deliverable::format::iv_add;

    /// The chunk cipher (AWS-LC) against RustCrypto's `aes-gcm` on the same key, IV and bytes:
    /// same ciphertext and tag, each opens the other's output, a flipped bit is refused and the
    /// tag bytes are left in place.
    #[test]
    fn chunk_cipher_matches_rustcrypto_aes_gcm() {
        use aes_gcm::aead::{AeadInPlace, KeyInit};
        let key = DeliverableKey([0x42; 32]);
        let ours = key.cipher();
        let theirs = aes_gcm::Aes256Gcm::new((&key.0).into());
        let mut iv = [0x17u8; IV_LEN];
        for len in [0usize, 1, 15, 16, 17, 255, 4096, 65_537, 1 << 20] {
            iv_add(&mut iv, 1);
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 253) as u8).collect();
            let mut a = plain.clone();
            let tag_a = ours.seal(&iv, &mut a).unwrap();
            let mut b = plain.clone();
            let tag_b = theirs
                .encrypt_in_place_detached(aes_gcm::Nonce::from_slice(&iv), &[], &mut b)
                .unwrap();
            assert_eq!(a, b, "ciphertext, {len} bytes");
            assert_eq!(tag_a.as_slice(), tag_b.as_slice(), "tag, {len} bytes");

            let mut sealed = [a.as_slice(), tag_a.as_slice()].concat();
            assert!(ours.open(&iv, &mut sealed));
            assert_eq!(&sealed[..len], plain.as_slice());
            assert_eq!(&sealed[len..], tag_a.as_slice(), "tag bytes kept");

            let mut tampered = [b.as_slice(), tag_a.as_slice()].concat();
            let at = tampered.len() / 2;
            tampered[at] ^= 1;
            let tag_before = tampered[len..].to_vec();
            assert!(!ours.open(&iv, &mut tampered), "tampered, {len} bytes");
            assert_eq!(&tampered[len..], tag_before.as_slice(), "tag bytes kept");
            let mut other_iv = iv;
            iv_add(&mut other_iv, 1);
            let mut wrong = [b.as_slice(), tag_a.as_slice()].concat();
            assert!(!ours.open(&other_iv, &mut wrong), "wrong IV");
        }
        assert!(!ours.open(&iv, &mut [0u8; 15]), "shorter than a tag");
    }
}
