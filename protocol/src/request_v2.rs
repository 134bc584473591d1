//! Create-task request v2 (sealtune): EIP-712 typed data that binds everything the task buys
//! (docs/PROTOCOL.md §2.1).
//!
//! The official create-task signature covers only `(user, nonce, datasetHash)` (and sealtune's
//! fee-bound form adds the fee): whoever relays the request (the host, a TLS-terminating gateway)
//! can rewrite `preTrainedModelHash` or `trainingParams` (`num_train_epochs = 10` triples the fee).
//! The v2 request is signed as EIP-712 typed data (`eth_signTypedData_v4`: raw digest, no EIP-191
//! prefix) under the domain `{name: "sealtune task request", version: "2", chainId, verifyingContract:
//! the serving contract}`:
//!
//! ```text
//! TaskRequest(address user,address provider,bytes32 modelHash,bytes32 trainingParamsHash,
//!             bytes32 optionsHash,bytes32 datasetHash,uint256 feeCeiling,uint256 nonce)
//! ```
//!
//! `trainingParamsHash = keccak256(utf8(trainingParams))` (the JSON string exactly as sent),
//! `optionsHash = keccak256(canonical JSON of sealtune's extra request options)` ([`options_hash`],
//! `{}` today), `modelHash` the model's hash as the provider lists it, `feeCeiling` 0 for none. The
//! body says `"requestVersion": 2`; the worker then accepts only this form, so a rewritten field is a
//! signature that recovers to someone else: refused with [`RequestV2Error::NotSignedOver`]. The
//! official forms stay accepted for requests without `requestVersion`.
//!
//! ```
//! use k256::ecdsa::SigningKey;
//! use sealtune_protocol::request_v2::{self, TaskRequest};
//! use sealtune_protocol::{sig, Address, B256, U256};
//!
//! let customer = SigningKey::from_slice(&[0x42; 32]).unwrap();
//! let domain = request_v2::domain(16602, Address::repeat_byte(0x5e));
//! let request = TaskRequest {
//!     user: sig::address_of(customer.verifying_key()),
//!     provider: Address::repeat_byte(0x77),
//!     modelHash: B256::repeat_byte(1),
//!     trainingParamsHash: request_v2::training_params_hash(r#"{"num_train_epochs":1}"#),
//!     optionsHash: request_v2::options_hash(&Default::default()),
//!     datasetHash: B256::repeat_byte(2),
//!     feeCeiling: U256::ZERO,
//!     nonce: U256::from(7u64),
//! };
//! let signature = request.sign(&customer, &domain);
//! assert!(request.verify(&domain, &signature).is_ok());
//! let rewritten = TaskRequest { trainingParamsHash: request_v2::training_params_hash(r#"{"num_train_epochs":10}"#), ..request };
//! assert!(rewritten.verify(&domain, &signature).is_err());
//! ```

use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_sol_types::{Eip712Domain, SolStruct, eip712_domain, sol};
use k256::ecdsa::{SigningKey, VerifyingKey};
use serde_json::{Map, Value};

use crate::sig::{self, SigError, Signature};

/// The EIP-712 domain name of a v2 request.
pub const DOMAIN_NAME: &str = "sealtune task request";
/// The EIP-712 domain version (and the body's `requestVersion`).
pub const DOMAIN_VERSION: &str = "2";
/// The `requestVersion` a v2 body carries.
pub const REQUEST_VERSION: u32 = 2;

sol! {
    /// What a v2 create-task request binds (docs/PROTOCOL.md §2.1).
    #[derive(Debug, PartialEq, Eq)]
    struct TaskRequest {
        /// The customer (the signer).
        address user;
        /// The provider's address (its service on the serving contract).
        address provider;
        /// The base model's hash.
        bytes32 modelHash;
        /// `keccak256(utf8(trainingParams))`.
        bytes32 trainingParamsHash;
        /// [`options_hash`] of sealtune's extra request options.
        bytes32 optionsHash;
        /// The dataset hash.
        bytes32 datasetHash;
        /// The most the customer pays, in neuron; 0 for none.
        uint256 feeCeiling;
        /// The task nonce.
        uint256 nonce;
    }
}

/// Why a v2 request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestV2Error {
    /// The signature bytes are malformed.
    #[error("invalid v2 request signature: {0}")]
    Signature(#[from] SigError),
    /// The signature does not recover to the user over these fields.
    #[error(
        "the v2 create-task signature was not made by {user} over this request: one of the signed fields (chain, serving contract, provider, model hash {model}, training params hash {params}, options, dataset hash, fee ceiling, nonce) differs from what was signed; a request rewritten after signing (e.g. another preTrainedModelHash or trainingParams) is refused"
    )]
    NotSignedOver {
        /// The user the body names.
        user: Address,
        /// The model hash the worker resolved.
        model: B256,
        /// The hash of the trainingParams received.
        params: B256,
    },
}

/// A v2 request whose signature checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedTaskRequest {
    /// The customer's public key (the ECIES recipient of the model key).
    pub public_key: VerifyingKey,
    /// The signed fee ceiling, `None` when 0.
    pub fee_ceiling: Option<U256>,
}

/// The EIP-712 domain of v2 requests on chain `chain_id` for the serving contract `serving`.
pub fn domain(chain_id: u64, serving: Address) -> Eip712Domain {
    eip712_domain! {
        name: DOMAIN_NAME,
        version: DOMAIN_VERSION,
        chain_id: chain_id,
        verifying_contract: serving,
    }
}

/// `keccak256(utf8(params))`: the training parameters exactly as sent.
pub fn training_params_hash(params: &str) -> B256 {
    keccak256(params.as_bytes())
}

/// Canonical JSON: object keys sorted by their bytes at every level, no whitespace.
pub fn canonical_json(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    if let Some(v) = map.get(k) {
                        write(v, out);
                    }
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(v, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// The one hash of sealtune's extra create-task options (beyond 0G's fields): `keccak256` of
/// their [`canonical_json`] as an object, `{}` when there are none.
pub fn options_hash(options: &Map<String, Value>) -> B256 {
    keccak256(canonical_json(&Value::Object(options.clone())).as_bytes())
}

impl TaskRequest {
    /// The v2 request of a create-task `body` whose 0G fields parsed as `wire`, to `provider`, with
    /// the model hash `preTrainedModelHash` names and the dataset hash: the one rule the client
    /// (signing) and the worker (checking) share. The options hash is over
    /// [`CreateTaskBody::extra_options`](crate::api::CreateTaskBody::extra_options).
    pub fn for_body(
        body: &crate::api::CreateTaskBody,
        wire: &crate::request::CreateTask,
        provider: Address,
        model_hash: B256,
        dataset_hash: B256,
    ) -> Self {
        TaskRequest {
            user: wire.user,
            provider,
            modelHash: model_hash,
            trainingParamsHash: training_params_hash(&body.training_params),
            optionsHash: options_hash(&body.extra_options()),
            datasetHash: dataset_hash,
            feeCeiling: wire.fee,
            nonce: wire.nonce,
        }
    }

    /// The EIP-712 digest under `domain`.
    pub fn digest(&self, domain: &Eip712Domain) -> B256 {
        self.eip712_signing_hash(domain)
    }

    /// Signs the digest as a raw prehash (what `eth_signTypedData_v4` does).
    pub fn sign(&self, key: &SigningKey, domain: &Eip712Domain) -> Signature {
        sig::sign_prehash(key, &self.digest(domain))
    }

    /// Checks that `self.user` signed exactly this request under `domain`.
    pub fn verify(
        &self,
        domain: &Eip712Domain,
        signature: &Signature,
    ) -> Result<VerifiedTaskRequest, RequestV2Error> {
        let key = signature.recover_key(&self.digest(domain))?;
        if sig::address_of(&key) != self.user {
            return Err(RequestV2Error::NotSignedOver {
                user: self.user,
                model: self.modelHash,
                params: self.trainingParamsHash,
            });
        }
        Ok(VerifiedTaskRequest {
            public_key: key,
            fee_ceiling: (!self.feeCeiling.is_zero()).then_some(self.feeCeiling),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn type_string_names_every_bound_field() {
        assert_eq!(
            TaskRequest::eip712_encode_type(),
            "TaskRequest(address user,address provider,bytes32 modelHash,bytes32 trainingParamsHash,bytes32 optionsHash,bytes32 datasetHash,uint256 feeCeiling,uint256 nonce)"
        );
    }

    #[test]
    fn options_hash_is_over_canonical_json() {
        let mut a = Map::new();
        a.insert("b".into(), Value::from(1));
        a.insert("a".into(), serde_json::json!({"y": [1, "x"], "x": null}));
        assert_eq!(
            canonical_json(&Value::Object(a.clone())),
            r#"{"a":{"x":null,"y":[1,"x"]},"b":1}"#
        );
        assert_eq!(options_hash(&Map::new()), keccak256(b"{}"));
        let mut b = Map::new();
        b.insert("a".into(), serde_json::json!({"x": null, "y": [1, "x"]}));
        b.insert("b".into(), Value::from(1));
        assert_eq!(options_hash(&a), options_hash(&b));
    }

    #[test]
    fn every_field_and_the_domain_are_bound() {
        let key = SigningKey::from_slice(&[9u8; 32]).unwrap();
        let domain = domain(1, Address::repeat_byte(1));
        let r = TaskRequest {
            user: sig::address_of(key.verifying_key()),
            provider: Address::repeat_byte(2),
            modelHash: B256::repeat_byte(3),
            trainingParamsHash: B256::repeat_byte(4),
            optionsHash: options_hash(&Map::new()),
            datasetHash: B256::repeat_byte(5),
            feeCeiling: U256::from(6u64),
            nonce: U256::from(7u64),
        };
        let s = r.sign(&key, &domain);
        let ok = r.verify(&domain, &s).unwrap();
        assert_eq!(ok.fee_ceiling, Some(U256::from(6u64)));
        assert_eq!(ok.public_key, *key.verifying_key());
        let variants = [
            TaskRequest {
                provider: Address::repeat_byte(9),
                ..r.clone()
            },
            TaskRequest {
                modelHash: B256::repeat_byte(9),
                ..r.clone()
            },
            TaskRequest {
                trainingParamsHash: B256::repeat_byte(9),
                ..r.clone()
            },
            TaskRequest {
                optionsHash: B256::repeat_byte(9),
                ..r.clone()
            },
            TaskRequest {
                datasetHash: B256::repeat_byte(9),
                ..r.clone()
            },
            TaskRequest {
                feeCeiling: U256::ZERO,
                ..r.clone()
            },
            TaskRequest {
                nonce: U256::from(8u64),
                ..r.clone()
            },
        ];
        for v in variants {
            assert!(
                matches!(
                    v.verify(&domain, &s),
                    Err(RequestV2Error::NotSignedOver { .. })
                ),
                "{v:?}"
            );
        }
        for d in [
            super::domain(2, Address::repeat_byte(1)),
            super::domain(1, Address::repeat_byte(3)),
        ] {
            assert!(r.verify(&d, &s).is_err());
        }
    }
}
