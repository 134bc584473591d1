//! Confidential datasets: the envelope a customer encrypts a dataset in, to the attested worker's
//! dataset key (docs/PROTOCOL.md §8).
//!
//! The worker's **dataset key** is a secp256k1 key derived inside the TEE (dstack KMS `GetKey` under a
//! path that includes the config hash; the dev source simulates it). Its public key is published in
//! [`crate::attestation::TeeKeys`], signed by the TEE signer and bound in the attestation document's
//! `dataset_key_hash` slot. The client seals the dataset to it:
//!
//! ```text
//! header (265 bytes):
//!   magic "sealtune-dataset" (16) ‖ version 1 (1) ‖ log2 chunk length (1)
//!   ‖ owner address (20) ‖ recipient = the dataset public key, SEC1 compressed (33)
//!   ‖ wrapped data key = ECIES(recipient, 32-byte random key) (129)
//!   ‖ owner signature (65): personal_sign over keccak256("sealtune/dataset-envelope/v1" ‖ the 200 bytes before it)
//! chunks: AES-256-GCM, key = HKDF-SHA256(ikm = data key, salt = header digest, info = "sealtune/dataset-chunks/v1"),
//!   nonce = be64(chunk index) ‖ 0 0 0 ‖ last-flag (1 on the last chunk, else 0), no AAD;
//!   every chunk holds exactly the chunk length of plaintext except the last (1 to chunk length; empty only
//!   for an empty dataset), each followed by its 16-byte tag.
//! ```
//!
//! What each part defends:
//!
//! * the chunk key is derived from the header digest, so a chunk (or the whole body) moved under another
//!   header — another owner, another wrapped key — does not authenticate;
//! * the index and the last flag in the nonce refuse reordered, dropped, duplicated or truncated chunks
//!   (the STREAM construction, as in age);
//! * the owner's signature names who may train on it: the worker accepts the envelope only from that
//!   address (upload) and only for that address's tasks (setup), so another customer cannot use a copy
//!   (a 0G Storage root or an upload seen in transit) even though they can read the ciphertext;
//! * the recipient names the key: an envelope for another worker key (another provider, or this one
//!   before a config change) is refused with that reason before anything is decrypted.
//!
//! Both directions stream with one chunk of memory ([`EnvelopeWriter`], [`open`]). [`open`] writes the
//! plaintext of each chunk only once it authenticated, but a later chunk may still fail: write into a
//! temporary file and discard it on error ([`open_file`] does).
//!
//! ```
//! use k256::ecdsa::SigningKey;
//! use sealtune_protocol::envelope::{self, EnvelopeWriter};
//! use sealtune_protocol::sig::address_of;
//!
//! let customer = SigningKey::from_slice(&[0x11; 32]).unwrap();
//! let worker = k256::SecretKey::from_slice(&[0x22; 32]).unwrap();
//! let mut w = EnvelopeWriter::new(Vec::new(), &customer, &worker.public_key(), &mut rand_core::OsRng, envelope::DEFAULT_CHUNK_LOG2).unwrap();
//! std::io::Write::write_all(&mut w, b"{\"text\":\"secret\"}\n").unwrap();
//! let sealed = w.finish().unwrap();
//!
//! let mut plain = Vec::new();
//! let header = envelope::open(&mut sealed.as_slice(), &mut plain, &worker, address_of(customer.verifying_key())).unwrap();
//! assert_eq!(plain, b"{\"text\":\"secret\"}\n");
//! assert_eq!(header.owner, address_of(customer.verifying_key()));
//! ```

use std::io::{self, Read, Write};
use std::path::Path;

use alloy_primitives::{Address, B256, keccak256};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use hkdf::Hkdf;
use k256::ecdsa::SigningKey;
use k256::{PublicKey, SecretKey};
use rand_core::CryptoRngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::request::{self, RequestError};
use crate::sig::{self, Signature};

/// The first 16 bytes of every envelope.
pub const MAGIC: &[u8; 16] = b"sealtune-dataset";
/// The envelope version this module writes and reads.
pub const VERSION: u8 = 1;
/// Domain tag of the header digest the owner signs.
pub const HEADER_DOMAIN: &[u8] = b"sealtune/dataset-envelope/v1";
/// HKDF info of the chunk key.
pub const CHUNK_KEY_INFO: &[u8] = b"sealtune/dataset-chunks/v1";
/// Length of the wrapped data key (eciesjs layout, 32-byte key).
pub const WRAPPED_KEY_LEN: usize = crate::ecies::OVERHEAD + 32;
/// Length of the header before the owner signature.
pub const UNSIGNED_HEADER_LEN: usize = 16 + 1 + 1 + 20 + 33 + WRAPPED_KEY_LEN;
/// Length of the whole header.
pub const HEADER_LEN: usize = UNSIGNED_HEADER_LEN + 65;
/// Length of each chunk's tag.
pub const TAG_LEN: usize = 16;
/// The default chunk length, 2^20 = 1 MiB: memory per open stream, either side.
pub const DEFAULT_CHUNK_LOG2: u8 = 20;
/// Accepted chunk lengths: 2^10 (1 KiB, tests) to 2^24 (16 MiB), so a reader's memory stays bounded
/// whatever the writer chose.
pub const CHUNK_LOG2_RANGE: std::ops::RangeInclusive<u8> = 10..=24;

/// Why an envelope was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Not an envelope (no magic), or a version this code does not read.
    #[error("not a sealtune dataset envelope (version {VERSION}): {0}")]
    Format(String),
    /// The owner's signature over the header does not recover to the owner it names.
    #[error(
        "the envelope's owner signature is not {owner}'s: the header was changed or signed by another key"
    )]
    OwnerSignature {
        /// The owner the header names.
        owner: Address,
    },
    /// The envelope belongs to another address than the one using it.
    #[error(
        "the dataset envelope belongs to {owner}, not {user}: an encrypted dataset is usable only by the address that sealed it"
    )]
    NotOwner {
        /// The owner the header names (and signed).
        owner: Address,
        /// Who tried to use it.
        user: Address,
    },
    /// Sealed to another dataset key.
    #[error(
        "the dataset was encrypted to dataset key {found}, not this worker's {expected}: the provider's configuration (so its dataset key) changed, or it is another provider's; encrypt it again to the key the provider attests now and upload it again"
    )]
    WrongRecipient {
        /// The key the envelope names (SEC1 compressed, hex).
        found: String,
        /// This worker's key (SEC1 compressed, hex).
        expected: String,
    },
    /// The wrapped data key does not open with the recipient's secret key.
    #[error("the envelope's wrapped data key does not open with this worker's dataset key")]
    WrappedKey,
    /// A chunk failed authentication: the ciphertext was changed, swapped, reordered or truncated.
    #[error(
        "chunk {index} of the dataset envelope does not authenticate: the ciphertext was changed, swapped, reordered or truncated"
    )]
    Chunk {
        /// 0-based chunk index.
        index: u64,
    },
    /// Bytes after the last chunk.
    #[error("the dataset envelope has bytes after its last chunk")]
    Trailing,
    /// Reading or writing failed.
    #[error("dataset envelope I/O: {0}")]
    Io(#[from] io::Error),
}

/// The parsed header of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeHeader {
    /// log2 of the plaintext chunk length.
    pub chunk_log2: u8,
    /// The customer the envelope belongs to.
    pub owner: Address,
    /// The dataset public key it is sealed to.
    pub recipient: PublicKey,
    /// ECIES(recipient, data key).
    pub wrapped_key: [u8; WRAPPED_KEY_LEN],
    /// The owner's signature over [`EnvelopeHeader::digest`].
    pub signature: Signature,
}

/// SEC1 compressed form of a public key (33 bytes).
pub fn compressed(key: &PublicKey) -> [u8; 33] {
    let mut out = [0u8; 33];
    let point = k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(key, true);
    if let Some(src) = point.as_bytes().get(..33) {
        out.copy_from_slice(src);
    }
    out
}

impl EnvelopeHeader {
    fn unsigned_bytes(&self) -> Vec<u8> {
        unsigned_bytes(
            self.chunk_log2,
            self.owner,
            &self.recipient,
            &self.wrapped_key,
        )
    }

    /// `keccak256(HEADER_DOMAIN ‖ the header bytes before the signature)`: what the owner signs,
    /// and the salt of the chunk key.
    pub fn digest(&self) -> B256 {
        header_digest(&self.unsigned_bytes())
    }

    /// The plaintext chunk length.
    pub fn chunk_len(&self) -> usize {
        1usize << self.chunk_log2.min(*CHUNK_LOG2_RANGE.end())
    }

    /// The 265 header bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.unsigned_bytes();
        out.extend_from_slice(&self.signature.to_bytes_v27());
        out
    }

    /// Parses the 265 header bytes (format only; [`Self::check_owner`] checks the signature).
    pub fn parse(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let fmt = |m: &str| EnvelopeError::Format(m.to_owned());
        if bytes.len() < HEADER_LEN {
            return Err(fmt("shorter than its header"));
        }
        let take = |from: usize, len: usize| {
            bytes
                .get(from..from.saturating_add(len))
                .ok_or_else(|| fmt("truncated header"))
        };
        if take(0, 16)? != MAGIC {
            return Err(fmt("no `sealtune-dataset` magic"));
        }
        let version = take(16, 1)?.first().copied().unwrap_or_default();
        if version != VERSION {
            return Err(EnvelopeError::Format(format!(
                "version {version} is not supported"
            )));
        }
        let chunk_log2 = take(17, 1)?.first().copied().unwrap_or_default();
        if !CHUNK_LOG2_RANGE.contains(&chunk_log2) {
            return Err(EnvelopeError::Format(format!(
                "chunk length 2^{chunk_log2} is outside 2^10..2^24"
            )));
        }
        let owner = Address::from_slice(take(18, 20)?);
        let recipient = PublicKey::from_sec1_bytes(take(38, 33)?)
            .map_err(|_| fmt("the recipient is not a secp256k1 public key"))?;
        let mut wrapped_key = [0u8; WRAPPED_KEY_LEN];
        wrapped_key.copy_from_slice(take(71, WRAPPED_KEY_LEN)?);
        let signature = Signature::from_bytes(take(UNSIGNED_HEADER_LEN, 65)?)
            .map_err(|e| EnvelopeError::Format(format!("owner signature: {e}")))?;
        Ok(EnvelopeHeader {
            chunk_log2,
            owner,
            recipient,
            wrapped_key,
            signature,
        })
    }

    /// The owner's signature recovers to the owner the header names.
    pub fn check_owner_signature(&self) -> Result<(), EnvelopeError> {
        request::verify_personal_sign(
            &self.digest(),
            &self.signature,
            self.owner,
            "dataset envelope",
        )
        .map(|_| ())
        .map_err(|e| match e {
            RequestError::Signature(_) | RequestError::WrongSigner { .. } => {
                EnvelopeError::OwnerSignature { owner: self.owner }
            }
            other => EnvelopeError::Format(other.to_string()),
        })
    }

    /// Everything checkable without the secret key: the owner's signature, the owner is `user`, the
    /// recipient is `dataset_key`. What the worker checks at upload; [`open`] checks it again.
    pub fn check(&self, user: Address, dataset_key: &PublicKey) -> Result<(), EnvelopeError> {
        self.check_owner_signature()?;
        if self.owner != user {
            return Err(EnvelopeError::NotOwner {
                owner: self.owner,
                user,
            });
        }
        if self.recipient != *dataset_key {
            return Err(EnvelopeError::WrongRecipient {
                found: hex::encode(compressed(&self.recipient)),
                expected: hex::encode(compressed(dataset_key)),
            });
        }
        Ok(())
    }
}

fn unsigned_bytes(
    chunk_log2: u8,
    owner: Address,
    recipient: &PublicKey,
    wrapped: &[u8; WRAPPED_KEY_LEN],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(chunk_log2);
    out.extend_from_slice(owner.as_slice());
    out.extend_from_slice(&compressed(recipient));
    out.extend_from_slice(wrapped);
    out
}

fn header_digest(unsigned: &[u8]) -> B256 {
    let mut pre = Vec::with_capacity(HEADER_DOMAIN.len().saturating_add(unsigned.len()));
    pre.extend_from_slice(HEADER_DOMAIN);
    pre.extend_from_slice(unsigned);
    keccak256(pre)
}

/// Whether `prefix` (the first bytes of a file) starts like an envelope.
pub fn is_envelope(prefix: &[u8]) -> bool {
    prefix.starts_with(MAGIC)
}

/// Whether the file at `path` starts like an envelope.
pub fn is_envelope_file(path: &Path) -> io::Result<bool> {
    let mut f = std::fs::File::open(path)?;
    let mut magic = [0u8; 16];
    let got = read_full(&mut f, &mut magic)?;
    Ok(got == magic.len() && is_envelope(&magic))
}

/// Reads and parses an envelope's header from the start of `r`.
pub fn read_header(r: &mut impl Read) -> Result<EnvelopeHeader, EnvelopeError> {
    let mut bytes = [0u8; HEADER_LEN];
    let got = read_full(r, &mut bytes)?;
    EnvelopeHeader::parse(bytes.get(..got).unwrap_or_default())
}

/// The AES-256-GCM key of an envelope's chunks.
struct ChunkKey(LessSafeKey);

impl ChunkKey {
    fn derive(data_key: &[u8; 32], header_digest: &B256) -> Self {
        let mut okm = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's output limit: expand cannot fail.
        let _ = Hkdf::<Sha256>::new(Some(header_digest.as_slice()), data_key)
            .expand(CHUNK_KEY_INFO, okm.as_mut_slice());
        // A 32-byte key is always valid for AES-256-GCM.
        let key = UnboundKey::new(&AES_256_GCM, okm.as_slice()).unwrap_or_else(|_| unreachable!());
        ChunkKey(LessSafeKey::new(key))
    }

    fn nonce(index: u64, last: bool) -> Nonce {
        let mut n = [0u8; 12];
        if let Some(head) = n.get_mut(..8) {
            head.copy_from_slice(&index.to_be_bytes());
        }
        if let Some(flag) = n.get_mut(11) {
            *flag = u8::from(last);
        }
        Nonce::assume_unique_for_key(n)
    }
}

/// A `Write` that seals what it receives into an envelope on `out`, one chunk in memory.
pub struct EnvelopeWriter<W: Write> {
    out: W,
    key: ChunkKey,
    buf: Zeroizing<Vec<u8>>,
    chunk_len: usize,
    index: u64,
}

impl<W: Write> EnvelopeWriter<W> {
    /// Writes the header for `owner` (who signs it) sealed to `recipient` with a fresh data key
    /// from `rng`, and starts buffering plaintext.
    pub fn new(
        mut out: W,
        owner: &SigningKey,
        recipient: &PublicKey,
        rng: &mut impl CryptoRngCore,
        chunk_log2: u8,
    ) -> Result<Self, EnvelopeError> {
        if !CHUNK_LOG2_RANGE.contains(&chunk_log2) {
            return Err(EnvelopeError::Format(format!(
                "chunk length 2^{chunk_log2} is outside 2^10..2^24"
            )));
        }
        let mut data_key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(data_key.as_mut_slice());
        let wrapped_vec = crate::ecies::encrypt(rng, recipient, data_key.as_slice());
        let mut wrapped = [0u8; WRAPPED_KEY_LEN];
        if wrapped_vec.len() != WRAPPED_KEY_LEN {
            return Err(EnvelopeError::Format(
                "ECIES wrap of the wrong length".into(),
            ));
        }
        wrapped.copy_from_slice(&wrapped_vec);
        let owner_address = sig::address_of(owner.verifying_key());
        let unsigned = unsigned_bytes(chunk_log2, owner_address, recipient, &wrapped);
        let digest = header_digest(&unsigned);
        let signature = request::personal_sign(owner, &digest);
        out.write_all(&unsigned)?;
        out.write_all(&signature.to_bytes_v27())?;
        let chunk_len = 1usize << chunk_log2;
        Ok(EnvelopeWriter {
            out,
            key: ChunkKey::derive(&data_key, &digest),
            buf: Zeroizing::new(Vec::with_capacity(chunk_len)),
            chunk_len,
            index: 0,
        })
    }

    fn seal_chunk(&mut self, last: bool) -> io::Result<()> {
        let tag = self
            .key
            .0
            .seal_in_place_separate_tag(
                ChunkKey::nonce(self.index, last),
                Aad::empty(),
                self.buf.as_mut_slice(),
            )
            .map_err(|_| io::Error::other("AES-GCM refused a chunk"))?;
        self.out.write_all(&self.buf)?;
        self.out.write_all(tag.as_ref())?;
        self.buf.clear();
        self.index = self.index.saturating_add(1);
        Ok(())
    }

    /// Seals the last chunk (possibly empty) and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.seal_chunk(true)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for EnvelopeWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // A full buffer is sealed only once more data arrives, so the last chunk is known at finish.
        if self.buf.len() >= self.chunk_len {
            self.seal_chunk(false)?;
        }
        let room = self.chunk_len.saturating_sub(self.buf.len());
        let take = room.min(data.len());
        self.buf
            .extend_from_slice(data.get(..take).unwrap_or_default());
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Seals everything `input` yields into an envelope on `out` (the client's upload path).
pub fn seal(
    input: &mut impl Read,
    out: impl Write,
    owner: &SigningKey,
    recipient: &PublicKey,
    rng: &mut impl CryptoRngCore,
) -> Result<u64, EnvelopeError> {
    let mut w = EnvelopeWriter::new(out, owner, recipient, rng, DEFAULT_CHUNK_LOG2)?;
    let n = io::copy(input, &mut w)?;
    w.finish()?;
    Ok(n)
}

/// Reads `buf.len()` bytes or up to the end of `r`; returns how many were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0usize;
    while got < buf.len() {
        match r.read(buf.get_mut(got..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => got = got.saturating_add(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Opens an envelope from `input` for `user` with the worker's dataset `secret`, writing the
/// plaintext of each chunk to `out` once it authenticated. Checks, in order: the format, the owner's
/// signature, that the owner is `user`, that it is sealed to `secret`'s public key, the wrapped key,
/// then every chunk, its position and the last flag. On error, what was written to `out` must be
/// discarded (see [`open_file`]).
pub fn open(
    input: &mut impl Read,
    out: &mut impl Write,
    secret: &SecretKey,
    user: Address,
) -> Result<EnvelopeHeader, EnvelopeError> {
    let header = read_header(input)?;
    header.check(user, &secret.public_key())?;
    let data_key = crate::ecies::decrypt(secret, &header.wrapped_key)
        .map_err(|_| EnvelopeError::WrappedKey)?;
    let data_key: &[u8; 32] = data_key
        .as_slice()
        .try_into()
        .map_err(|_| EnvelopeError::WrappedKey)?;
    let key = ChunkKey::derive(data_key, &header.digest());
    let sealed_len = header.chunk_len().saturating_add(TAG_LEN);
    // One byte more than a sealed chunk tells whether this chunk is the last.
    let mut buf = Zeroizing::new(vec![0u8; sealed_len.saturating_add(1)]);
    let mut have = 0usize;
    let mut index = 0u64;
    loop {
        have = have.saturating_add(read_full(input, buf.get_mut(have..).unwrap_or_default())?);
        let last = have <= sealed_len;
        let this = have.min(sealed_len);
        if this < TAG_LEN || (!last && this != sealed_len) {
            return Err(EnvelopeError::Chunk { index });
        }
        let chunk = buf.get_mut(..this).unwrap_or_default();
        let plain = key
            .0
            .open_in_place(ChunkKey::nonce(index, last), Aad::empty(), chunk)
            .map_err(|_| EnvelopeError::Chunk { index })?;
        out.write_all(plain)?;
        if last {
            break;
        }
        // Keep the one byte read ahead as the start of the next chunk.
        buf.copy_within(sealed_len..have, 0);
        have = have.saturating_sub(sealed_len);
        index = index.saturating_add(1);
    }
    let mut probe = [0u8; 1];
    if read_full(input, &mut probe)? != 0 {
        return Err(EnvelopeError::Trailing);
    }
    out.flush()?;
    Ok(header)
}

/// [`open`] from the file `src` into `dst` (created new, mode 0600): written under a temporary name
/// beside it and renamed into place only once every chunk authenticated; removed on any failure.
pub fn open_file(
    src: &Path,
    dst: &Path,
    secret: &SecretKey,
    user: Address,
) -> Result<EnvelopeHeader, EnvelopeError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = dst.with_extension("opening");
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut input = io::BufReader::with_capacity(1 << 16, std::fs::File::open(src)?);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut out = io::BufWriter::with_capacity(1 << 16, file);
        let header = open(&mut input, &mut out, secret, user)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, dst)?;
        Ok(header)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;

    fn keys() -> (SigningKey, SecretKey) {
        (
            SigningKey::from_slice(&[0x11; 32]).unwrap(),
            SecretKey::from_slice(&[0x22; 32]).unwrap(),
        )
    }

    fn seal_bytes(owner: &SigningKey, to: &PublicKey, plain: &[u8], log2: u8) -> Vec<u8> {
        let mut w =
            EnvelopeWriter::new(Vec::new(), owner, to, &mut rand_core::OsRng, log2).unwrap();
        w.write_all(plain).unwrap();
        w.finish().unwrap()
    }

    fn open_bytes(
        sealed: &[u8],
        secret: &SecretKey,
        user: Address,
    ) -> Result<Vec<u8>, EnvelopeError> {
        let mut out = Vec::new();
        open(&mut &sealed[..], &mut out, secret, user).map(|_| out)
    }

    #[test]
    fn round_trips_at_every_chunk_boundary() {
        let (owner, worker) = keys();
        let user = sig::address_of(owner.verifying_key());
        for len in [0usize, 1, 1023, 1024, 1025, 2048, 5000] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = seal_bytes(&owner, &worker.public_key(), &plain, 10);
            let chunks = len.div_ceil(1024).max(1);
            assert_eq!(sealed.len(), HEADER_LEN + len + chunks * TAG_LEN, "{len}");
            assert_eq!(open_bytes(&sealed, &worker, user).unwrap(), plain, "{len}");
        }
    }

    #[test]
    fn swapped_reordered_or_truncated_ciphertext_is_refused() {
        let (owner, worker) = keys();
        let user = sig::address_of(owner.verifying_key());
        let plain = vec![7u8; 3000];
        let a = seal_bytes(&owner, &worker.public_key(), &plain, 10);
        let b = seal_bytes(&owner, &worker.public_key(), &plain, 10);
        let c = 1024 + TAG_LEN;
        // A chunk of another envelope of the same owner, same key, same plaintext.
        let mut swapped = a.clone();
        swapped[HEADER_LEN..HEADER_LEN + c].copy_from_slice(&b[HEADER_LEN..HEADER_LEN + c]);
        assert!(matches!(
            open_bytes(&swapped, &worker, user),
            Err(EnvelopeError::Chunk { index: 0 })
        ));
        // The whole body of another envelope under this header.
        let mut body = a[..HEADER_LEN].to_vec();
        body.extend_from_slice(&b[HEADER_LEN..]);
        assert!(matches!(
            open_bytes(&body, &worker, user),
            Err(EnvelopeError::Chunk { index: 0 })
        ));
        // Two chunks reordered.
        let mut reordered = a.clone();
        let (x, y) = (HEADER_LEN, HEADER_LEN + c);
        let first = a[x..x + c].to_vec();
        reordered[x..x + c].copy_from_slice(&a[y..y + c]);
        reordered[y..y + c].copy_from_slice(&first);
        assert!(matches!(
            open_bytes(&reordered, &worker, user),
            Err(EnvelopeError::Chunk { index: 0 })
        ));
        // Truncated after a full chunk: that chunk was not sealed as the last.
        let truncated = &a[..HEADER_LEN + 2 * c];
        assert!(matches!(
            open_bytes(truncated, &worker, user),
            Err(EnvelopeError::Chunk { index: 1 })
        ));
        // One flipped bit anywhere in the body.
        let mut flipped = a.clone();
        let at = a.len() - 5;
        flipped[at] ^= 1;
        assert!(matches!(
            open_bytes(&flipped, &worker, user),
            Err(EnvelopeError::Chunk { index: 2 })
        ));
        // Appended bytes.
        let mut longer = a.clone();
        longer.push(0);
        assert!(open_bytes(&longer, &worker, user).is_err());
    }

    #[test]
    fn another_users_envelope_is_refused() {
        let (owner, worker) = keys();
        let other = SigningKey::from_slice(&[0x33; 32]).unwrap();
        let other_addr = sig::address_of(other.verifying_key());
        let a = seal_bytes(&owner, &worker.public_key(), b"secret", 10);
        // Used as is by another address.
        assert!(matches!(
            open_bytes(&a, &worker, other_addr),
            Err(EnvelopeError::NotOwner { user, .. }) if user == other_addr
        ));
        // Re-labelled with the other address as owner (the signature no longer matches).
        let mut relabelled = a.clone();
        relabelled[18..38].copy_from_slice(other_addr.as_slice());
        assert!(matches!(
            open_bytes(&relabelled, &worker, other_addr),
            Err(EnvelopeError::OwnerSignature { .. })
        ));
        // Re-labelled and re-signed by the other address: the body no longer authenticates.
        let mut header = EnvelopeHeader::parse(&a).unwrap();
        header.owner = other_addr;
        header.signature = request::personal_sign(&other, &header.digest());
        let mut resigned = header.to_bytes();
        resigned.extend_from_slice(&a[HEADER_LEN..]);
        assert!(matches!(
            open_bytes(&resigned, &worker, other_addr),
            Err(EnvelopeError::Chunk { index: 0 })
        ));
    }

    #[test]
    fn an_envelope_for_another_key_is_refused_before_decrypting() {
        let (owner, worker) = keys();
        let user = sig::address_of(owner.verifying_key());
        let old = SecretKey::from_slice(&[0x44; 32]).unwrap();
        let a = seal_bytes(&owner, &old.public_key(), b"secret", 10);
        assert!(matches!(
            open_bytes(&a, &worker, user),
            Err(EnvelopeError::WrongRecipient { .. })
        ));
        assert!(matches!(
            open_bytes(b"{\"text\":\"plain\"}", &worker, user),
            Err(EnvelopeError::Format(_))
        ));
    }

    #[test]
    fn open_file_leaves_nothing_behind_on_failure() {
        let (owner, worker) = keys();
        let user = sig::address_of(owner.verifying_key());
        let dir = tempfile::tempdir().unwrap();
        let mut sealed = seal_bytes(&owner, &worker.public_key(), &vec![1u8; 5000], 10);
        let src = dir.path().join("in.env");
        std::fs::write(&src, &sealed).unwrap();
        let dst = dir.path().join("plain");
        open_file(&src, &dst, &worker, user).unwrap();
        assert_eq!(std::fs::read(&dst).unwrap(), vec![1u8; 5000]);
        let n = sealed.len();
        sealed[n - 1] ^= 1;
        std::fs::write(&src, &sealed).unwrap();
        let dst2 = dir.path().join("plain2");
        assert!(open_file(&src, &dst2, &worker, user).is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
    }
}
