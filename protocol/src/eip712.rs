//! The EIP-712 `VerifierMessage` the TEE signer signs for settlement (PROTOCOL.md §1).
//!
//! `FineTuningServing.settleFees(VerifierInput)` recomputes
//! `keccak256(0x1901 ‖ domainSeparator ‖ hashStruct(VerifierMessage))` with the domain
//! `EIP712Domain(name "0G Fine-Tuning Serving", version "1", chainId, verifyingContract = the serving
//! contract)` and requires the raw-digest signature (no EIP-191 prefix, `v` = 27/28) to recover to
//! the service's `teeSignerAddress`. The types here come from alloy's `sol!`, so the type string,
//! the struct hash and the ABI encoding of [`VerifierInput`] are derived, not hand-written.
//!
//! ```
//! use k256::ecdsa::SigningKey;
//! use sealtune_protocol::eip712::{self, VerifierMessage};
//! use sealtune_protocol::{sig, Address, U256};
//!
//! let tee = SigningKey::from_slice(&[0x07; 32]).unwrap();
//! let domain = eip712::domain(16602, Address::repeat_byte(0x5e));
//! let message = VerifierMessage {
//!     id: "123e4567-e89b-12d3-a456-426614174000".into(),
//!     encryptedSecret: vec![0xab; 129].into(),
//!     modelRootHash: vec![0xcd; 32].into(),
//!     nonce: U256::from(17_400_000_000_000_040u64),
//!     taskFee: U256::from(1_000_000u64),
//!     user: Address::repeat_byte(0x11),
//! };
//! let input = eip712::sign_verifier_input(&tee, &domain, &message).unwrap();
//! assert!(matches!(input.signature[64], 27 | 28));
//! let signer = eip712::recover_verifier_signer(&domain, &input).unwrap();
//! assert_eq!(signer, sig::address_of(tee.verifying_key()));
//! ```

use alloy_primitives::{Address, B256};
use alloy_sol_types::{Eip712Domain, SolStruct, eip712_domain, sol};
use k256::ecdsa::SigningKey;

use crate::sig::{self, SigError, Signature};

/// The EIP-712 domain name of the fine-tuning serving contract.
pub const DOMAIN_NAME: &str = "0G Fine-Tuning Serving";
/// The EIP-712 domain version of the fine-tuning serving contract.
pub const DOMAIN_VERSION: &str = "1";
/// The contract's bounds on a deliverable id (the task UUID text), in bytes.
pub const ID_LEN: std::ops::RangeInclusive<usize> = 1..=256;

sol! {
    /// The EIP-712 struct the TEE signer signs:
    /// `VerifierMessage(string id,bytes encryptedSecret,bytes modelRootHash,uint256 nonce,uint256 taskFee,address user)`.
    #[derive(Debug, PartialEq, Eq)]
    struct VerifierMessage {
        /// The task id (UUID text with dashes, 1–256 bytes).
        string id;
        /// The ECIES-wrapped model key (129 bytes) if the customer acknowledged, else empty.
        bytes encryptedSecret;
        /// The deliverable's root hash (32 raw bytes), as stored by `addDeliverable`.
        bytes modelRootHash;
        /// The task nonce; must exceed the account's on-chain nonce.
        uint256 nonce;
        /// The task fee (charged in full, or the penalty share when unacknowledged).
        uint256 taskFee;
        /// The customer.
        address user;
    }

    /// The argument of `settleFees`, field order as in the contract ABI (note `signature` before `taskFee`).
    #[derive(Debug, PartialEq, Eq)]
    struct VerifierInput {
        /// The task id.
        string id;
        /// The ECIES-wrapped model key, or empty.
        bytes encryptedSecret;
        /// The deliverable's root hash.
        bytes modelRootHash;
        /// The task nonce.
        uint256 nonce;
        /// The TEE signer's 65-byte signature `r ‖ s ‖ v` (v = 27/28) over the EIP-712 digest.
        bytes signature;
        /// The task fee.
        uint256 taskFee;
        /// The customer.
        address user;
    }
}

/// Why a settlement message could not be built or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Eip712Error {
    /// The id is empty or longer than the contract allows.
    #[error(
        "deliverable id must be 1 to 256 bytes (the task UUID text), got {0} bytes: the contract would revert InvalidVerifierInput"
    )]
    IdLength(usize),
    /// The signature inside a [`VerifierInput`] is malformed.
    #[error("invalid TEE signature in VerifierInput: {0}")]
    Signature(#[from] SigError),
}

/// The EIP-712 domain of the serving contract at `verifying_contract` on chain `chain_id`.
pub fn domain(chain_id: u64, verifying_contract: Address) -> Eip712Domain {
    eip712_domain! {
        name: DOMAIN_NAME,
        version: DOMAIN_VERSION,
        chain_id: chain_id,
        verifying_contract: verifying_contract,
    }
}

impl VerifierMessage {
    /// The digest `keccak256(0x1901 ‖ domainSeparator ‖ hashStruct(self))` the TEE signer signs.
    pub fn digest(&self, domain: &Eip712Domain) -> B256 {
        self.eip712_signing_hash(domain)
    }

    /// Check the id length the contract enforces.
    pub fn check(&self) -> Result<(), Eip712Error> {
        if ID_LEN.contains(&self.id.len()) {
            Ok(())
        } else {
            Err(Eip712Error::IdLength(self.id.len()))
        }
    }

    /// Sign the digest as a raw prehash (no EIP-191 prefix), low `s`.
    pub fn sign(&self, key: &SigningKey, domain: &Eip712Domain) -> Signature {
        sig::sign_prehash(key, &self.digest(domain))
    }

    /// The address whose key produced `signature` over this message.
    pub fn recover_signer(
        &self,
        domain: &Eip712Domain,
        signature: &Signature,
    ) -> Result<Address, SigError> {
        signature.recover_address(&self.digest(domain))
    }

    /// Attach a signature (`v` = 27/28) to form the `settleFees` argument.
    pub fn into_input(self, signature: &Signature) -> VerifierInput {
        VerifierInput {
            id: self.id,
            encryptedSecret: self.encryptedSecret,
            modelRootHash: self.modelRootHash,
            nonce: self.nonce,
            signature: signature.to_bytes_v27().to_vec().into(),
            taskFee: self.taskFee,
            user: self.user,
        }
    }
}

impl VerifierInput {
    /// The signed part of this input.
    pub fn message(&self) -> VerifierMessage {
        VerifierMessage {
            id: self.id.clone(),
            encryptedSecret: self.encryptedSecret.clone(),
            modelRootHash: self.modelRootHash.clone(),
            nonce: self.nonce,
            taskFee: self.taskFee,
            user: self.user,
        }
    }
}

/// Check `message`, sign it with the TEE key and build the `settleFees` argument.
pub fn sign_verifier_input(
    key: &SigningKey,
    domain: &Eip712Domain,
    message: &VerifierMessage,
) -> Result<VerifierInput, Eip712Error> {
    message.check()?;
    let signature = message.sign(key, domain);
    Ok(message.clone().into_input(&signature))
}

/// The address that signed `input` (what the contract compares with `teeSignerAddress`).
pub fn recover_verifier_signer(
    domain: &Eip712Domain,
    input: &VerifierInput,
) -> Result<Address, Eip712Error> {
    let message = input.message();
    message.check()?;
    let signature = Signature::from_bytes(&input.signature)?;
    Ok(message.recover_signer(domain, &signature)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_string_matches_the_contract() {
        assert_eq!(
            VerifierMessage::eip712_encode_type(),
            "VerifierMessage(string id,bytes encryptedSecret,bytes modelRootHash,uint256 nonce,uint256 taskFee,address user)"
        );
    }
}
