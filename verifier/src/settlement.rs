//! Settlement signatures (PROTOCOL.md §1): the EIP-712 `VerifierMessage` a provider's TEE signer
//! signed for `settleFees`, checked against the signer expected for that provider.
//!
//! The input comes from a `settleFees` transaction (decoded from its calldata, see
//! [`crate::chain::Chain::settlement`]) or from a JSON file with the `VerifierInput` fields
//! ([`parse_verifier_input_json`]). The digest and recovery are `sealtune_protocol::eip712`'s.

use alloy::primitives::{Address, Bytes, U256};
use sealtune_protocol::eip712::{self, VerifierInput};
use serde::Serialize;

use crate::chain::{FeesSettledEvent, RegisteredSigner};
use crate::verify::{Entry, VerificationReport};

/// Why a settlement JSON file is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettlementInputError {
    /// Not JSON, or not an object.
    #[error("settlement JSON: {0}")]
    Json(String),
    /// A field is missing or malformed.
    #[error("settlement JSON field {field}: {message}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// A settlement JSON file: the `VerifierInput` fields, and optionally where it was settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementFile {
    /// The `settleFees` argument.
    pub input: VerifierInput,
    /// `chainId`, when the file has it.
    pub chain_id: Option<u64>,
    /// `serving` (or `verifyingContract`), when the file has it.
    pub serving: Option<Address>,
}

fn field<'a>(
    v: &'a serde_json::Value,
    names: &[&'static str],
) -> Result<&'a serde_json::Value, SettlementInputError> {
    names
        .iter()
        .find_map(|n| v.get(*n))
        .ok_or(SettlementInputError::Field {
            field: names.first().copied().unwrap_or("?"),
            message: "missing".into(),
        })
}

fn bytes_of(
    v: &serde_json::Value,
    name: &'static str,
    names: &[&'static str],
) -> Result<Bytes, SettlementInputError> {
    let s = field(v, names)?
        .as_str()
        .ok_or(SettlementInputError::Field {
            field: name,
            message: "not a hex string".into(),
        })?;
    let t = s.trim();
    hex::decode(t.strip_prefix("0x").unwrap_or(t))
        .map(Bytes::from)
        .map_err(|e| SettlementInputError::Field {
            field: name,
            message: format!("not hex: {e}"),
        })
}

fn uint_of(
    v: &serde_json::Value,
    name: &'static str,
    names: &[&'static str],
) -> Result<U256, SettlementInputError> {
    let bad = |m: String| SettlementInputError::Field {
        field: name,
        message: m,
    };
    match field(v, names)? {
        serde_json::Value::Number(n) => n.as_u64().map(U256::from).ok_or_else(|| {
            bad(format!(
                "{n} is not an unsigned integer (quote large numbers)"
            ))
        }),
        serde_json::Value::String(s) => {
            let t = s.trim();
            match t.strip_prefix("0x") {
                Some(h) => U256::from_str_radix(h, 16),
                None => U256::from_str_radix(t, 10),
            }
            .map_err(|e| bad(format!("{s:?}: {e}")))
        }
        other => Err(bad(format!("{other} is not a number"))),
    }
}

fn address_of(
    v: &serde_json::Value,
    name: &'static str,
    names: &[&'static str],
) -> Result<Address, SettlementInputError> {
    field(v, names)?
        .as_str()
        .and_then(|s| s.trim().parse().ok())
        .ok_or(SettlementInputError::Field {
            field: name,
            message: "not an address".into(),
        })
}

/// Parse a settlement JSON file: `{id, encryptedSecret, modelRootHash, nonce, signature, taskFee,
/// user}` (bytes as `0x` hex, numbers as JSON integers or decimal / `0x` strings), optionally
/// `chainId` and `serving` (or `verifyingContract`), optionally wrapped as `{"verifierInput": {…}}`.
pub fn parse_verifier_input_json(bytes: &[u8]) -> Result<SettlementFile, SettlementInputError> {
    let outer: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| SettlementInputError::Json(e.to_string()))?;
    if !outer.is_object() {
        return Err(SettlementInputError::Json("not a JSON object".into()));
    }
    let v = outer.get("verifierInput").unwrap_or(&outer);
    let id = field(v, &["id"])?
        .as_str()
        .ok_or(SettlementInputError::Field {
            field: "id",
            message: "not a string".into(),
        })?
        .to_owned();
    let input = VerifierInput {
        id,
        encryptedSecret: bytes_of(v, "encryptedSecret", &["encryptedSecret"])?,
        modelRootHash: bytes_of(v, "modelRootHash", &["modelRootHash"])?,
        nonce: uint_of(v, "nonce", &["nonce"])?,
        signature: bytes_of(v, "signature", &["signature"])?,
        taskFee: uint_of(v, "taskFee", &["taskFee", "fee"])?,
        user: address_of(v, "user", &["user"])?,
    };
    let chain_id = match outer.get("chainId").or_else(|| v.get("chainId")) {
        None => None,
        Some(_) => Some(
            u64::try_from(
                uint_of(&outer, "chainId", &["chainId"])
                    .or_else(|_| uint_of(v, "chainId", &["chainId"]))?,
            )
            .map_err(|_| SettlementInputError::Field {
                field: "chainId",
                message: "too large".into(),
            })?,
        ),
    };
    let serving = ["serving", "verifyingContract"]
        .iter()
        .find_map(|k| outer.get(*k).or_else(|| v.get(*k)))
        .map(|s| {
            s.as_str()
                .and_then(|s| s.trim().parse().ok())
                .ok_or(SettlementInputError::Field {
                    field: "serving",
                    message: "not an address".into(),
                })
        })
        .transpose()?;
    Ok(SettlementFile {
        input,
        chain_id,
        serving,
    })
}

/// Where the expected TEE signer comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ExpectedSigner {
    /// Given by the user (`--signer`).
    Given(Address),
    /// Read from the serving contract.
    OnChain(RegisteredSigner),
}

impl ExpectedSigner {
    /// The address.
    pub fn address(&self) -> Address {
        match self {
            ExpectedSigner::Given(a) => *a,
            ExpectedSigner::OnChain(r) => r.tee_signer,
        }
    }

    fn describe(&self) -> String {
        match self {
            ExpectedSigner::Given(a) => format!("{a} (given)"),
            ExpectedSigner::OnChain(r) => format!(
                "{} (teeSignerAddress of provider {} on {}{})",
                r.tee_signer,
                r.provider,
                r.serving,
                r.block
                    .map(|b| format!(" at block {b}"))
                    .unwrap_or_default()
            ),
        }
    }
}

/// Everything a settlement check uses.
#[derive(Debug, Clone)]
pub struct SettlementCheck {
    /// The `settleFees` argument.
    pub input: VerifierInput,
    /// Chain id of the EIP-712 domain.
    pub chain_id: u64,
    /// The serving contract (the domain's verifying contract).
    pub serving: Address,
    /// The signer the signature must recover to; `None` fails the signer link.
    pub expected_signer: Option<ExpectedSigner>,
    /// The deliverable's on-chain `modelRootHash`, when read.
    pub onchain_root: Option<Bytes>,
    /// The transaction, when the input came from one: (hash, success, FeesSettled event).
    pub transaction: Option<(String, bool, Option<FeesSettledEvent>)>,
}

/// Check a settlement: the message is well formed, its EIP-712 signature recovers to the expected
/// TEE signer (acknowledged on chain when read from there), the root hash is the deliverable's, and
/// the transaction (if any) succeeded with a `FeesSettled` event.
pub fn check_settlement(c: &SettlementCheck, now: u64) -> VerificationReport {
    let mut rep = VerificationReport::new(now);
    let msg = c.input.message();
    rep.push_link("settlement message", settlement_message(&msg));
    let domain = eip712::domain(c.chain_id, c.serving);
    let recovered = eip712::recover_verifier_signer(&domain, &c.input);
    rep.push_link(
        "EIP-712 signature",
        recovered
            .as_ref()
            .map(|a| {
                format!(
                    "VerifierMessage digest 0x{} (chain {}, contract {}) recovers to {a}",
                    hex::encode(msg.digest(&domain)),
                    c.chain_id,
                    c.serving
                )
            })
            .map_err(|e| e.to_string()),
    );
    rep.push_link(
        "TEE signer",
        tee_signer(recovered.as_ref().ok(), c.expected_signer.as_ref()),
    );
    if let Some(ExpectedSigner::OnChain(r)) = &c.expected_signer {
        rep.push_link("signer acknowledged", signer_acknowledged(r));
    }
    if let Some(root) = &c.onchain_root {
        rep.push_link("model root hash", model_root_hash(root, &c.input));
    }
    if let Some((hash, success, event)) = &c.transaction {
        rep.push_link(
            "transaction",
            transaction(hash, *success, event.as_ref(), &msg),
        );
    }
    rep.finish();
    rep
}

/// `settlement message`: the message is well formed.
fn settlement_message(msg: &eip712::VerifierMessage) -> Entry {
    msg.check()
        .map(|()| {
            format!(
                "id {:?} user {} nonce {} fee {} secret {} bytes root 0x{}",
                msg.id,
                msg.user,
                msg.nonce,
                msg.taskFee,
                msg.encryptedSecret.len(),
                hex::encode(&msg.modelRootHash)
            )
        })
        .map_err(|e| e.to_string())
}

/// `TEE signer`: the signature recovers to the expected TEE signer.
fn tee_signer(recovered: Option<&Address>, expected: Option<&ExpectedSigner>) -> Entry {
    match (recovered, expected) {
        (_, None) => Err(
            "no expected TEE signer: give --signer, or --rpc with the serving contract and provider"
                .to_owned(),
        ),
        (None, Some(_)) => Err("no signer recovered".to_owned()),
        (Some(a), Some(e)) if *a == e.address() => {
            Ok(format!("signed by the TEE signer {}", e.describe()))
        }
        (Some(a), Some(e)) => Err(format!(
            "signed by {a}, not by the expected TEE signer {}",
            e.describe()
        )),
    }
}

/// `signer acknowledged`: the contract owner acknowledged the on-chain TEE signer.
fn signer_acknowledged(r: &RegisteredSigner) -> Entry {
    if r.acknowledged {
        Ok("the contract owner acknowledged this TEE signer".into())
    } else {
        Err("the service's TEE signer is not acknowledged by the contract owner".into())
    }
}

/// `model root hash`: the signed root is the deliverable's on-chain `modelRootHash`.
fn model_root_hash(onchain: &Bytes, input: &VerifierInput) -> Entry {
    if onchain == &input.modelRootHash {
        Ok(format!(
            "equals the deliverable's on-chain modelRootHash 0x{}",
            hex::encode(onchain)
        ))
    } else {
        Err(format!(
            "signed root 0x{} differs from the deliverable's on-chain modelRootHash 0x{}",
            hex::encode(&input.modelRootHash),
            hex::encode(onchain)
        ))
    }
}

/// `transaction`: it succeeded with a `FeesSettled` event for this message's deliverable.
fn transaction(
    hash: &str,
    success: bool,
    event: Option<&FeesSettledEvent>,
    msg: &eip712::VerifierMessage,
) -> Entry {
    match (success, event) {
        (false, _) => Err(format!("transaction {hash} reverted")),
        (true, None) => Err(format!("transaction {hash} emitted no FeesSettled event")),
        (true, Some(e)) if e.id != msg.id || e.user != msg.user => Err(format!(
            "FeesSettled is for {:?} / {}, the input for {:?} / {}",
            e.id, e.user, msg.id, msg.user
        )),
        (true, Some(e)) => Ok(format!(
            "{hash}: FeesSettled fee {} ({}), nonce {}",
            e.fee,
            if e.acknowledged {
                "acknowledged, full fee"
            } else {
                "unacknowledged, penalty"
            },
            e.nonce
        )),
    }
}
