//! ECIES over secp256k1, byte-compatible with `eciesjs` 0.4 in its default configuration (PROTOCOL.md §4 item 4).
//!
//! This is how the deliverable's AES key travels to the customer: the provider encrypts it to the customer's
//! public key and settles the result on chain (`encryptedSecret`); the official client opens it with
//! `eciesjs.decrypt(privateKey, data)`.
//!
//! The construction, as `eciesjs` 0.4.18 does it with its defaults (`isEphemeralKeyCompressed = false`,
//! `isHkdfKeyCompressed = false`, `symmetricAlgorithm = "aes-256-gcm"`, `symmetricNonceLength = 16`):
//!
//! 1. a fresh ephemeral key pair `(e, E)`; `E` serialized uncompressed (65 bytes, `0x04 ‖ X ‖ Y`);
//! 2. the shared point `S = e·R` (receiver public key `R`), serialized uncompressed (65 bytes);
//! 3. `key = HKDF-SHA256(ikm = E ‖ S, salt = none, info = empty)`, 32 bytes;
//! 4. AES-256-GCM with a random 16-byte nonce and no AAD;
//! 5. output `E(65) ‖ nonce(16) ‖ tag(16) ‖ ciphertext` — 129 bytes for a 32-byte deliverable key.
//!
//! Randomness is an input ([`encrypt`] takes the RNG), and [`decrypt`] never panics on any bytes: every
//! failure is an [`EciesError`].
//!
//! ```
//! use k256::SecretKey;
//! use sealtune_protocol::ecies;
//!
//! let mut rng = rand_core::OsRng;
//! let customer = SecretKey::random(&mut rng);
//! let wrapped = ecies::encrypt(&mut rng, &customer.public_key(), b"model key bytes");
//! assert_eq!(wrapped.len(), ecies::OVERHEAD + 15);
//! let opened = ecies::decrypt(&customer, &wrapped).unwrap();
//! assert_eq!(opened.as_slice(), b"model key bytes");
//!
//! // Any change is detected, never returned as plaintext.
//! let mut tampered = wrapped.clone();
//! tampered[100] ^= 1;
//! assert_eq!(ecies::decrypt(&customer, &tampered), Err(ecies::EciesError::Authentication));
//! ```

use aes_gcm::aead::consts::U16;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce, Tag};
use hkdf::Hkdf;
use k256::elliptic_curve::sec1::ToEncodedPoint;
/// The secp256k1 key types of this module, re-exported so callers use this crate's `k256` version.
pub use k256::{PublicKey, SecretKey};
use rand_core::CryptoRngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

/// AES-256-GCM with the 16-byte nonce `eciesjs` uses.
type Aes256Gcm16 = AesGcm<Aes256, U16>;

/// Length of the uncompressed ephemeral public key at the front of the payload.
pub const EPHEMERAL_KEY_LEN: usize = 65;
/// Length of the AES-GCM nonce.
pub const NONCE_LEN: usize = 16;
/// Length of the AES-GCM tag.
pub const TAG_LEN: usize = 16;
/// Bytes added to the plaintext: ephemeral key, nonce and tag (97).
pub const OVERHEAD: usize = EPHEMERAL_KEY_LEN + NONCE_LEN + TAG_LEN;

/// Why an ECIES payload could not be opened (or a public key not parsed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EciesError {
    /// Shorter than the 97 bytes of ephemeral key, nonce and tag.
    #[error(
        "ECIES payload too short: {0} bytes, at least 97 (65-byte ephemeral key, 16-byte nonce, 16-byte tag)"
    )]
    TooShort(usize),
    /// The first 65 bytes are not an uncompressed secp256k1 point.
    #[error(
        "ECIES ephemeral public key is not an uncompressed secp256k1 point (65 bytes starting with 0x04)"
    )]
    InvalidEphemeralKey,
    /// The tag does not authenticate: wrong private key, or the payload was altered.
    #[error("ECIES payload does not authenticate: it was encrypted to another key, or altered")]
    Authentication,
    /// A public key in none of the accepted forms.
    #[error(
        "not a secp256k1 public key (expected 33 compressed, 65 uncompressed or 64 raw X ‖ Y bytes)"
    )]
    InvalidPublicKey,
    /// A decrypted deliverable key that is not 32 bytes.
    #[error("the decrypted deliverable key has {0} bytes, expected 32")]
    KeyLength(usize),
}

/// Parse a receiver public key as `eciesjs` accepts it: 33 bytes compressed, 65 bytes uncompressed, or
/// 64 bytes `X ‖ Y` (the Ethereum form without the `0x04` prefix).
pub fn parse_public_key(bytes: &[u8]) -> Result<PublicKey, EciesError> {
    let parsed = if bytes.len() == 64 {
        let mut full = [0u8; 65];
        full[0] = 0x04;
        full[1..].copy_from_slice(bytes);
        PublicKey::from_sec1_bytes(&full)
    } else {
        PublicKey::from_sec1_bytes(bytes)
    };
    parsed.map_err(|_| EciesError::InvalidPublicKey)
}

/// `HKDF-SHA256(E ‖ S)` with no salt and no info, as `eciesjs` derives the symmetric key.
fn derive_key(ephemeral: &[u8; 65], shared_point: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut ikm = Zeroizing::new([0u8; 130]);
    let (e, s) = ikm.split_at_mut(65);
    e.copy_from_slice(ephemeral);
    s.copy_from_slice(shared_point);
    let mut okm = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's limit of 255 * 32, so expand cannot fail.
    let _ = Hkdf::<Sha256>::new(None, ikm.as_slice()).expand(&[], okm.as_mut_slice());
    okm
}

/// The uncompressed shared point `secret · public` (65 bytes), zeroized on drop.
fn shared_point(secret: &SecretKey, public: &PublicKey) -> Zeroizing<Vec<u8>> {
    // Elliptic-curve scalar multiplication: group arithmetic, no integer overflow.
    #[allow(clippy::arithmetic_side_effects)]
    let point = (public.to_projective() * *secret.to_nonzero_scalar()).to_affine();
    Zeroizing::new(point.to_encoded_point(false).as_bytes().to_vec())
}

fn ephemeral_bytes(public: &PublicKey) -> [u8; 65] {
    let mut out = [0u8; 65];
    let encoded = public.to_encoded_point(false);
    // An uncompressed encoding of a valid (non-identity) point is always 65 bytes.
    if let Some(src) = encoded.as_bytes().get(..65) {
        out.copy_from_slice(src);
    }
    out
}

/// Encrypt `plaintext` to `receiver` (output `E(65) ‖ nonce(16) ‖ tag(16) ‖ ciphertext`).
///
/// The ephemeral key and the nonce come from `rng`.
pub fn encrypt(rng: &mut impl CryptoRngCore, receiver: &PublicKey, plaintext: &[u8]) -> Vec<u8> {
    let ephemeral = SecretKey::random(rng);
    let e_bytes = ephemeral_bytes(&ephemeral.public_key());
    let key = derive_key(&e_bytes, &shared_point(&ephemeral, receiver));
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);

    let mut out = Vec::with_capacity(OVERHEAD.saturating_add(plaintext.len()));
    out.extend_from_slice(&e_bytes);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&[0u8; TAG_LEN]);
    out.extend_from_slice(plaintext);
    let cipher = Aes256Gcm16::new(key.as_slice().into());
    let (head, body) = out.split_at_mut(OVERHEAD);
    // AES-GCM encryption fails only past 64 GiB of plaintext, far beyond any key wrap.
    if let Ok(tag) = cipher.encrypt_in_place_detached(Nonce::<U16>::from_slice(&nonce), &[], body)
        && let Some(slot) = head.get_mut(EPHEMERAL_KEY_LEN + NONCE_LEN..)
    {
        slot.copy_from_slice(&tag);
    }
    out
}

/// Decrypt an `eciesjs` payload with the receiver's secret key.
///
/// The plaintext is returned only when the tag authenticates; it is zeroized when dropped.
pub fn decrypt(receiver: &SecretKey, data: &[u8]) -> Result<Zeroizing<Vec<u8>>, EciesError> {
    if data.len() < OVERHEAD {
        return Err(EciesError::TooShort(data.len()));
    }
    let (e_bytes, rest) = data.split_at(EPHEMERAL_KEY_LEN);
    let (nonce, rest) = rest.split_at(NONCE_LEN);
    let (tag, ciphertext) = rest.split_at(TAG_LEN);
    let e_bytes: &[u8; 65] = e_bytes
        .try_into()
        .map_err(|_| EciesError::InvalidEphemeralKey)?;
    if e_bytes[0] != 0x04 {
        return Err(EciesError::InvalidEphemeralKey);
    }
    let ephemeral =
        PublicKey::from_sec1_bytes(e_bytes).map_err(|_| EciesError::InvalidEphemeralKey)?;
    let key = derive_key(e_bytes, &shared_point(receiver, &ephemeral));
    let cipher = Aes256Gcm16::new(key.as_slice().into());
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    cipher
        .decrypt_in_place_detached(
            Nonce::<U16>::from_slice(nonce),
            &[],
            buf.as_mut_slice(),
            Tag::from_slice(tag),
        )
        .map_err(|_| EciesError::Authentication)?;
    Ok(buf)
}

/// Wrap a 32-byte deliverable key for `receiver` (129 bytes, the on-chain `encryptedSecret`).
pub fn wrap_key(
    rng: &mut impl CryptoRngCore,
    receiver: &PublicKey,
    key: &crate::deliverable::DeliverableKey,
) -> Vec<u8> {
    encrypt(rng, receiver, key.as_bytes())
}

/// Unwrap a deliverable key: [`decrypt`], then check it is exactly 32 bytes.
pub fn unwrap_key(
    receiver: &SecretKey,
    data: &[u8],
) -> Result<crate::deliverable::DeliverableKey, EciesError> {
    let plain = decrypt(receiver, data)?;
    let bytes: [u8; 32] = plain
        .as_slice()
        .try_into()
        .map_err(|_| EciesError::KeyLength(plain.len()))?;
    Ok(crate::deliverable::DeliverableKey::from_bytes(bytes))
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_key_is_129_bytes_and_round_trips() {
        let mut rng = rand_core::OsRng;
        let sk = SecretKey::random(&mut rng);
        let key = crate::deliverable::DeliverableKey::from_bytes([9u8; 32]);
        let wrapped = wrap_key(&mut rng, &sk.public_key(), &key);
        assert_eq!(wrapped.len(), 129);
        assert_eq!(wrapped[0], 0x04);
        assert_eq!(unwrap_key(&sk, &wrapped).unwrap().as_bytes(), &[9u8; 32]);
    }

    #[test]
    fn other_receiver_fails_authentication() {
        let mut rng = rand_core::OsRng;
        let sk = SecretKey::random(&mut rng);
        let other = SecretKey::random(&mut rng);
        let wrapped = encrypt(&mut rng, &sk.public_key(), b"x");
        assert_eq!(decrypt(&other, &wrapped), Err(EciesError::Authentication));
    }

    #[test]
    fn public_key_forms_are_accepted() {
        let sk = SecretKey::from_slice(&[3u8; 32]).unwrap();
        let pk = sk.public_key();
        let unc = pk.to_encoded_point(false);
        let com = pk.to_encoded_point(true);
        assert_eq!(parse_public_key(unc.as_bytes()).unwrap(), pk);
        assert_eq!(parse_public_key(com.as_bytes()).unwrap(), pk);
        assert_eq!(parse_public_key(&unc.as_bytes()[1..]).unwrap(), pk);
        assert_eq!(
            parse_public_key(&[1, 2, 3]),
            Err(EciesError::InvalidPublicKey)
        );
    }

    #[test]
    fn short_and_bad_point_are_typed_errors() {
        let sk = SecretKey::from_slice(&[3u8; 32]).unwrap();
        assert_eq!(decrypt(&sk, &[0u8; 96]), Err(EciesError::TooShort(96)));
        let mut bad = vec![0u8; 129];
        bad[0] = 0x04;
        assert_eq!(decrypt(&sk, &bad), Err(EciesError::InvalidEphemeralKey));
    }
}
