//! Customer request signatures (PROTOCOL.md §2): the digests the official client signs, signer and
//! public-key recovery, and the timestamp window.
//!
//! Every customer request to a provider carries an EIP-191 `personal_sign` signature over a
//! 32-byte keccak digest:
//!
//! | request | digest |
//! |---|---|
//! | create task | `keccak256(abi.encodePacked(address user, uint256 nonce, string datasetHash))` |
//! | create task, fee-bound (sealtune) | `keccak256(abi.encodePacked(address user, uint256 nonce, string datasetHash, uint256 fee))` |
//! | cancel | `keccak256(16 raw bytes of the task uuid)` |
//! | LoRA download | `keccak256(utf8(lowercase hex of the uuid bytes, no 0x) ‖ utf8(decimal unix seconds))` |
//! | dataset upload | `keccak256(utf8(address as in the URL) ‖ utf8(decimal unix seconds))` |
//!
//! **How the official SDK (0.9.0) turns the digest into a message.** It calls
//! `signer.signMessage(ethers.toBeArray(hash))`, and `toBeArray` converts the digest to the
//! *minimal* big-endian byte string of its integer value: leading zero bytes are dropped. For the
//! one digest in 256 that starts with `0x00`, the signed message is 31 bytes (or fewer), prefixed
//! `"\x19Ethereum Signed Message:\n31"`, not the 32-byte form most verifiers (including 0G's Go
//! broker) assume. The verifiers here therefore accept both the SDK form
//! ([`MessageForm::TrimmedLeadingZeros`]) and the full 32-byte form ([`MessageForm::Full32`]);
//! both commit to the same digest. The signing helpers emit the full 32-byte form, which every
//! known verifier accepts.
//!
//! Time is an input: the functions that check a timestamp take `now` (unix seconds) as a
//! parameter; the library never reads the clock.
//!
//! ```
//! use k256::ecdsa::SigningKey;
//! use sealtune_protocol::request::{self, CreateTask, CreateTaskForm};
//! use sealtune_protocol::{sig, U256};
//!
//! let customer = SigningKey::from_slice(&[0x42; 32]).unwrap();
//! let task = CreateTask {
//!     user: sig::address_of(customer.verifying_key()),
//!     nonce: U256::from(17_400_000_000_000_040u64),
//!     dataset_hash: "0x1f0b...".to_string(),
//!     fee: U256::ZERO,
//! };
//! let signature = task.sign(&customer, CreateTaskForm::WithoutFee);
//!
//! let verified = task.verify(&signature).unwrap();
//! assert_eq!(verified.form, CreateTaskForm::WithoutFee);
//! assert_eq!(verified.fee_ceiling, None);
//! // the ECIES recipient of the model key
//! assert_eq!(verified.signer.public_key, *customer.verifying_key());
//!
//! // Timestamped requests check the window against a clock the caller passes in.
//! let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
//! let now = 1_760_000_000;
//! let sig = request::sign_lora_download(&customer, &id, now - 10);
//! assert!(request::verify_lora_download(task.user, &id, now - 10, now, &sig).is_ok());
//! assert!(request::verify_lora_download(task.user, &id, now - 10, now + 400, &sig).is_err());
//! ```

use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_sol_types::{SolType, sol_data};
use k256::ecdsa::{SigningKey, VerifyingKey};
use uuid::Uuid;

use crate::sig::{self, SigError, Signature};

/// How far in the past a request timestamp may be, in seconds (inclusive).
pub const MAX_TIMESTAMP_AGE_SECS: u64 = 300;
/// How far in the future a request timestamp may be (clock skew), in seconds (inclusive).
pub const MAX_TIMESTAMP_SKEW_SECS: u64 = 60;

/// Longest decimal text accepted for a `uint256` (2²⁵⁶ − 1 has 78 digits; leading zeros allowed up to this).
const MAX_DECIMAL_LEN: usize = 100;

/// The Solidity types of the create-task digest, in `abi.encodePacked` order.
type CreateTaskPacked = (sol_data::Address, sol_data::Uint<256>, sol_data::String);
/// The fee-bound create-task digest: [`CreateTaskPacked`] followed by `uint256 fee`.
type CreateTaskWithFeePacked = (
    sol_data::Address,
    sol_data::Uint<256>,
    sol_data::String,
    sol_data::Uint<256>,
);

/// Why a customer request was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The signature text or bytes are malformed (see [`SigError`]).
    #[error("invalid request signature: {0}")]
    Signature(#[from] SigError),
    /// An address field is not `0x` followed by 40 hex digits.
    #[error(
        "invalid {field} {input:?}: expected an Ethereum address, 0x followed by 40 hex digits"
    )]
    Address {
        /// Which field.
        field: &'static str,
        /// The offending text (truncated to 100 characters).
        input: String,
    },
    /// A decimal field (nonce, fee, timestamp) is not a plain decimal number in range.
    #[error(
        "invalid {field} {input:?}: expected a non-negative decimal integer (digits only, no sign, no 0x), at most {max}"
    )]
    Decimal {
        /// Which field.
        field: &'static str,
        /// The offending text (truncated to 100 characters).
        input: String,
        /// The largest accepted value, in words.
        max: &'static str,
    },
    /// A task id is not a UUID.
    #[error(
        "invalid task id {input:?}: expected a UUID such as 123e4567-e89b-12d3-a456-426614174000"
    )]
    TaskId {
        /// The offending text (truncated to 100 characters).
        input: String,
    },
    /// The request timestamp is older than [`MAX_TIMESTAMP_AGE_SECS`].
    #[error(
        "request timestamp {timestamp} is {age} s old (at most {MAX_TIMESTAMP_AGE_SECS} s allowed): sign the request again with the current time"
    )]
    TimestampTooOld {
        /// The signed timestamp (unix seconds).
        timestamp: u64,
        /// How old it is, in seconds.
        age: u64,
    },
    /// The request timestamp is further ahead than [`MAX_TIMESTAMP_SKEW_SECS`].
    #[error(
        "request timestamp {timestamp} is {ahead} s in the future (at most {MAX_TIMESTAMP_SKEW_SECS} s allowed): check the client's clock"
    )]
    TimestampInFuture {
        /// The signed timestamp (unix seconds).
        timestamp: u64,
        /// How far ahead of the provider's clock it is, in seconds.
        ahead: u64,
    },
    /// The signature is well formed but was not made by the expected account over this request.
    #[error(
        "the {request} signature was not made by {expected} over this request: sign exactly these fields with that account's key (personal_sign over the keccak digest)"
    )]
    WrongSigner {
        /// Which request kind.
        request: &'static str,
        /// The account that should have signed.
        expected: Address,
    },
}

/// How the 32-byte digest was wrapped into the EIP-191 message that was signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageForm {
    /// `"\x19Ethereum Signed Message:\n32" ‖ digest` (ethers `signMessage(getBytes(hash))`, go-ethereum `TextHash`).
    Full32,
    /// The official SDK's form: `signMessage(toBeArray(hash))`, the digest with its leading zero bytes
    /// removed. Differs from [`MessageForm::Full32`] only when the digest starts with `0x00`.
    TrimmedLeadingZeros,
}

impl MessageForm {
    /// The EIP-191 hash actually signed for `digest` in this form.
    pub fn message_hash(self, digest: &B256) -> B256 {
        match self {
            MessageForm::Full32 => sig::eip191_hash(digest.as_slice()),
            MessageForm::TrimmedLeadingZeros => {
                let first = digest.iter().position(|b| *b != 0).unwrap_or(digest.len());
                sig::eip191_hash(digest.get(first..).unwrap_or_default())
            }
        }
    }
}

/// The message forms worth trying for `digest`: one when it does not start with `0x00`, two otherwise.
fn message_candidates(digest: &B256) -> impl Iterator<Item = (MessageForm, B256)> + '_ {
    let full = MessageForm::Full32.message_hash(digest);
    let trimmed = MessageForm::TrimmedLeadingZeros.message_hash(digest);
    std::iter::once((MessageForm::Full32, full))
        .chain((trimmed != full).then_some((MessageForm::TrimmedLeadingZeros, trimmed)))
}

/// The account behind a verified request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveredSigner {
    /// The signer's address (equal to the expected account).
    pub address: Address,
    /// The signer's public key, recovered from the signature.
    pub public_key: VerifyingKey,
    /// How the digest had been wrapped into the signed message.
    pub message_form: MessageForm,
}

impl RecoveredSigner {
    /// The SEC1 uncompressed public key `0x04 ‖ X ‖ Y` (65 bytes): the ECIES recipient format.
    pub fn uncompressed_public_key(&self) -> [u8; 65] {
        let point = self.public_key.to_encoded_point(false);
        let mut out = [0u8; 65];
        // An uncompressed SEC1 point of a valid key is always 65 bytes.
        if let Some(bytes) = point.as_bytes().get(..65) {
            out.copy_from_slice(bytes);
        }
        out
    }
}

/// Recover the signer of `digest` (in either [`MessageForm`]) and require it to be `expected`.
///
/// This is the primitive behind every `verify_*` function here; use it for a digest of your own.
pub fn verify_personal_sign(
    digest: &B256,
    signature: &Signature,
    expected: Address,
    request: &'static str,
) -> Result<RecoveredSigner, RequestError> {
    recover_matching(digest, signature, expected)?
        .ok_or(RequestError::WrongSigner { request, expected })
}

/// `Ok(Some(_))` when some message form of `digest` recovers to `expected`.
fn recover_matching(
    digest: &B256,
    signature: &Signature,
    expected: Address,
) -> Result<Option<RecoveredSigner>, RequestError> {
    // Recovery fails only when `r` is not the x-coordinate of a curve point, whatever the hash:
    // a recovery error is a malformed signature, not a wrong signer.
    for (form, hash) in message_candidates(digest) {
        let key = signature.recover_key(&hash)?;
        if sig::address_of(&key) == expected {
            return Ok(Some(RecoveredSigner {
                address: expected,
                public_key: key,
                message_form: form,
            }));
        }
    }
    Ok(None)
}

/// Sign `digest` as a customer would: EIP-191 over the full 32 bytes ([`MessageForm::Full32`]).
pub fn personal_sign(key: &SigningKey, digest: &B256) -> Signature {
    sig::sign_prehash(key, &MessageForm::Full32.message_hash(digest))
}

// ---------------------------------------------------------------------------------------------
// Create task

/// Which create-task digest a signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CreateTaskForm {
    /// `keccak256(abi.encodePacked(user, nonce, datasetHash))`: what the official client signs.
    WithoutFee,
    /// `keccak256(abi.encodePacked(user, nonce, datasetHash, fee))`: sealtune's fee-bound form.
    WithFee,
}

/// The signed fields of a create-task request (`POST /v1/user/:addr/task`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTask {
    /// `userAddress`: the customer.
    pub user: Address,
    /// `nonce`: must exceed the on-chain `account.nonce` (checked elsewhere).
    pub nonce: U256,
    /// `datasetHash` exactly as sent (the `0x…` text; it is signed as a string).
    pub dataset_hash: String,
    /// `fee`: the official client sends `0`; non-zero in the fee-bound form is the customer's ceiling.
    pub fee: U256,
}

/// A create-task signature that checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedCreateTask {
    /// The customer; `signer.public_key` is the ECIES recipient of the model key.
    pub signer: RecoveredSigner,
    /// Which digest matched.
    pub form: CreateTaskForm,
    /// The signed fee ceiling: `Some(fee)` when the fee-bound form matched with a non-zero fee.
    pub fee_ceiling: Option<U256>,
}

impl CreateTask {
    /// Parse the wire fields of a create-task body (`userAddress`, `nonce`, `datasetHash`, `fee`).
    pub fn from_wire(
        user_address: &str,
        nonce: &str,
        dataset_hash: &str,
        fee: &str,
    ) -> Result<Self, RequestError> {
        Ok(CreateTask {
            user: parse_address("userAddress", user_address)?,
            nonce: parse_u256_decimal("nonce", nonce)?,
            dataset_hash: dataset_hash.to_owned(),
            fee: parse_u256_decimal("fee", fee)?,
        })
    }

    /// The digest of `form` (before the EIP-191 wrap).
    pub fn digest(&self, form: CreateTaskForm) -> B256 {
        match form {
            CreateTaskForm::WithoutFee => keccak256(CreateTaskPacked::abi_encode_packed(&(
                self.user,
                self.nonce,
                self.dataset_hash.clone(),
            ))),
            CreateTaskForm::WithFee => keccak256(CreateTaskWithFeePacked::abi_encode_packed(&(
                self.user,
                self.nonce,
                self.dataset_hash.clone(),
                self.fee,
            ))),
        }
    }

    /// Sign this request with the customer's key in `form`.
    pub fn sign(&self, key: &SigningKey, form: CreateTaskForm) -> Signature {
        personal_sign(key, &self.digest(form))
    }

    /// Check that `self.user` signed this request, in either form; report which form and the fee ceiling.
    pub fn verify(&self, signature: &Signature) -> Result<VerifiedCreateTask, RequestError> {
        for form in [CreateTaskForm::WithoutFee, CreateTaskForm::WithFee] {
            if let Some(signer) = recover_matching(&self.digest(form), signature, self.user)? {
                let fee_ceiling =
                    (form == CreateTaskForm::WithFee && !self.fee.is_zero()).then_some(self.fee);
                return Ok(VerifiedCreateTask {
                    signer,
                    form,
                    fee_ceiling,
                });
            }
        }
        Err(RequestError::WrongSigner {
            request: "create-task",
            expected: self.user,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Cancel, LoRA download, dataset upload

/// Cancel digest: `keccak256(the 16 raw bytes of the task uuid)`.
pub fn cancel_digest(task_id: &Uuid) -> B256 {
    keccak256(task_id.as_bytes())
}

/// Sign a cancel request (`POST /v1/user/:addr/task/:id/cancel`).
pub fn sign_cancel(key: &SigningKey, task_id: &Uuid) -> Signature {
    personal_sign(key, &cancel_digest(task_id))
}

/// Check that `user` signed the cancellation of `task_id`.
pub fn verify_cancel(
    user: Address,
    task_id: &Uuid,
    signature: &Signature,
) -> Result<RecoveredSigner, RequestError> {
    verify_personal_sign(&cancel_digest(task_id), signature, user, "cancel")
}

/// LoRA download digest: `keccak256(utf8(lowercase hex of the uuid bytes) ‖ utf8(decimal timestamp))`.
pub fn lora_download_digest(task_id: &Uuid, timestamp: u64) -> B256 {
    keccak256(format!("{}{timestamp}", task_id.simple()))
}

/// Sign a LoRA download request (`POST /v1/user/:addr/task/:id/lora`) made at `timestamp`.
pub fn sign_lora_download(key: &SigningKey, task_id: &Uuid, timestamp: u64) -> Signature {
    personal_sign(key, &lora_download_digest(task_id, timestamp))
}

/// Check the timestamp window against `now`, then that `user` signed the download of `task_id`.
pub fn verify_lora_download(
    user: Address,
    task_id: &Uuid,
    timestamp: u64,
    now: u64,
    signature: &Signature,
) -> Result<RecoveredSigner, RequestError> {
    check_timestamp(timestamp, now)?;
    verify_personal_sign(
        &lora_download_digest(task_id, timestamp),
        signature,
        user,
        "LoRA download",
    )
}

/// Dataset upload digest: `keccak256(utf8(address exactly as in the URL) ‖ utf8(decimal timestamp))`.
///
/// The address text is hashed as given (the official client uses its checksummed address), so pass
/// the `:addr` path segment unchanged.
pub fn dataset_upload_digest(user_in_url: &str, timestamp: u64) -> B256 {
    keccak256(format!("{user_in_url}{timestamp}"))
}

/// Sign a dataset upload (`POST /v1/user/:addr/dataset`) made at `timestamp`, for the URL address text.
pub fn sign_dataset_upload(key: &SigningKey, user_in_url: &str, timestamp: u64) -> Signature {
    personal_sign(key, &dataset_upload_digest(user_in_url, timestamp))
}

/// Check the timestamp window against `now`, then that the account in the URL signed the upload.
pub fn verify_dataset_upload(
    user_in_url: &str,
    timestamp: u64,
    now: u64,
    signature: &Signature,
) -> Result<RecoveredSigner, RequestError> {
    let user = parse_address("user address in the URL", user_in_url)?;
    check_timestamp(timestamp, now)?;
    verify_personal_sign(
        &dataset_upload_digest(user_in_url, timestamp),
        signature,
        user,
        "dataset upload",
    )
}

/// Require `timestamp` to be at most [`MAX_TIMESTAMP_AGE_SECS`] before and
/// [`MAX_TIMESTAMP_SKEW_SECS`] after `now` (both unix seconds, bounds inclusive).
pub fn check_timestamp(timestamp: u64, now: u64) -> Result<(), RequestError> {
    let age = now.saturating_sub(timestamp);
    if age > MAX_TIMESTAMP_AGE_SECS {
        return Err(RequestError::TimestampTooOld { timestamp, age });
    }
    let ahead = timestamp.saturating_sub(now);
    if ahead > MAX_TIMESTAMP_SKEW_SECS {
        return Err(RequestError::TimestampInFuture { timestamp, ahead });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Parsers of untrusted text

fn truncated(input: &str) -> String {
    input.chars().take(100).collect()
}

/// Parse an address field: `0x` (or `0X`) then 40 hex digits, any case.
///
/// The EIP-55 checksum is not enforced (the official broker compares addresses case-insensitively);
/// the signature binds the address anyway.
pub fn parse_address(field: &'static str, input: &str) -> Result<Address, RequestError> {
    let err = || RequestError::Address {
        field,
        input: truncated(input),
    };
    let hex_part = input
        .strip_prefix("0x")
        .or_else(|| input.strip_prefix("0X"))
        .ok_or_else(err)?;
    if hex_part.len() != 40 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(err());
    }
    let mut raw = [0u8; 20];
    hex::decode_to_slice(hex_part, &mut raw).map_err(|_| err())?;
    Ok(Address::from(raw))
}

/// Parse a decimal `uint256` field (`nonce`, `fee`): ASCII digits only, no sign, no `0x`, no spaces.
pub fn parse_u256_decimal(field: &'static str, input: &str) -> Result<U256, RequestError> {
    let err = || RequestError::Decimal {
        field,
        input: truncated(input),
        max: "2^256 - 1",
    };
    if input.is_empty()
        || input.len() > MAX_DECIMAL_LEN
        || !input.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(err());
    }
    U256::from_str_radix(input, 10).map_err(|_| err())
}

/// Parse a decimal unix-seconds timestamp (as sent in the multipart `timestamp` field).
pub fn parse_timestamp(input: &str) -> Result<u64, RequestError> {
    let err = || RequestError::Decimal {
        field: "timestamp",
        input: truncated(input),
        max: "2^64 - 1",
    };
    if input.is_empty() || !input.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    input.parse::<u64>().map_err(|_| err())
}

/// Parse a task id (the `:id` path segment): a UUID, hyphenated or not.
pub fn parse_task_id(input: &str) -> Result<Uuid, RequestError> {
    Uuid::try_parse(input).map_err(|_| RequestError::TaskId {
        input: truncated(input),
    })
}

/// Parse a request signature field (hex, 65 bytes, strict rules of [`crate::sig`]).
pub fn parse_signature(input: &str) -> Result<Signature, RequestError> {
    Ok(Signature::from_hex(input)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimmed_form_only_differs_for_leading_zero_digests() {
        let d = B256::repeat_byte(0x11);
        assert_eq!(message_candidates(&d).count(), 1);
        let mut z = d;
        z[0] = 0;
        assert_eq!(message_candidates(&z).count(), 2);
        assert_eq!(
            MessageForm::TrimmedLeadingZeros.message_hash(&z),
            sig::eip191_hash(&z[1..])
        );
        assert_eq!(
            MessageForm::TrimmedLeadingZeros.message_hash(&B256::ZERO),
            sig::eip191_hash(b"")
        );
    }

    #[test]
    fn uncompressed_key_starts_with_04() {
        let k = SigningKey::from_slice(&[3u8; 32]).unwrap();
        let d = cancel_digest(&Uuid::nil());
        let s = sign_cancel(&k, &Uuid::nil());
        let r = verify_personal_sign(&d, &s, sig::address_of(k.verifying_key()), "cancel").unwrap();
        let pk = r.uncompressed_public_key();
        assert_eq!(pk[0], 4);
        assert_eq!(
            &pk[..],
            k.verifying_key().to_encoded_point(false).as_bytes()
        );
    }
}
