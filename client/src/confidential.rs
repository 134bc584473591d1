//! Confidential datasets and the v2 request, the customer's side (docs/PROTOCOL.md §2.1, §8).
//!
//! * [`tee_keys_of`]: the keys a verified sealtune provider publishes beside its quote (`tee_keys`),
//!   accepted only when the on-chain TEE signer signed them and the attestation document for this
//!   client's nonce binds them (`dataset_key_hash`).
//! * [`seal_dataset`]: the dataset file sealed to the provider's dataset key in an envelope named
//!   and signed by the customer (`sealtune_protocol::envelope`), streamed into a temporary file:
//!   what is uploaded (to the TEE or to 0G Storage) is ciphertext only.
//!
//! The v2 request itself is `sealtune_protocol::request_v2::TaskRequest::for_body`, the rule the
//! worker checks with.

use std::path::Path;

use alloy::primitives::{Address, B256};
use k256::ecdsa::SigningKey;
use sealtune_protocol::attestation::{AttestationDocument, TeeKeys};

use crate::error::{ClientError, Result};

/// The keys a provider's TEE published and its attestation bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderKeys {
    /// The dataset key datasets are sealed to.
    pub dataset_key: k256::PublicKey,
    /// The SHA-256 of the provider's own TLS key (SubjectPublicKeyInfo), when it serves HTTPS.
    pub tls_spki_sha256: Option<B256>,
}

/// The provider's published keys in the `/v1/quote` body `raw`, checked against the on-chain
/// `signer` and the attestation document for `nonce`. `Ok(None)` when the provider publishes none
/// (an official 0G broker, an older sealtune worker).
pub fn tee_keys_of(raw: &[u8], signer: Address, nonce: &[u8; 32]) -> Result<Option<ProviderKeys>> {
    let bad = |detail: String| ClientError::Attestation(format!("published TEE keys: {detail}"));
    let body: serde_json::Value =
        serde_json::from_slice(raw).map_err(|e| bad(format!("the quote is not JSON: {e}")))?;
    let Some(keys) = body.get("tee_keys").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let keys: TeeKeys = serde_json::from_value(keys.clone()).map_err(|e| bad(e.to_string()))?;
    let document = body
        .get("attestation_document")
        .ok_or_else(|| bad("no attestation document binds them".into()))
        .and_then(|d| AttestationDocument::from_json(d).map_err(|e| bad(e.to_string())))?;
    if document.nonce.as_slice() != nonce || document.signer != signer {
        return Err(bad(
            "the attestation document is not for this nonce and the on-chain signer".into(),
        ));
    }
    let dataset_key = keys
        .verify_bound(&document)
        .map_err(|e| bad(e.to_string()))?;
    Ok(Some(ProviderKeys {
        dataset_key,
        tls_spki_sha256: keys.tls_spki_sha256,
    }))
}

/// Seals the dataset at `path` to `recipient`, owned and signed by `owner`, into a temporary file
/// (streaming, one chunk in memory).
pub fn seal_dataset(
    path: &Path,
    owner: &SigningKey,
    recipient: &k256::PublicKey,
) -> Result<tempfile::NamedTempFile> {
    let mut input = std::io::BufReader::with_capacity(
        1 << 20,
        std::fs::File::open(path).map_err(|e| ClientError::io(path, e))?,
    );
    let sealed = tempfile::Builder::new()
        .prefix("sealtune-dataset-")
        .suffix(".sealed")
        .tempfile()
        .map_err(|e| ClientError::io(Path::new("temporary file"), e))?;
    let out = std::io::BufWriter::with_capacity(1 << 20, sealed.as_file());
    sealtune_protocol::envelope::seal(&mut input, out, owner, recipient, &mut rand_core::OsRng)
        .map_err(|e| ClientError::InvalidInput(format!("sealing {}: {e}", path.display())))?;
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(keys: &TeeKeys, doc: &AttestationDocument) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "tee_keys": keys,
            "attestation_document": doc,
        }))
        .unwrap()
    }

    /// A relay (or the host) that swaps in its own dataset key, or serves keys the document does not
    /// bind, or an answer for another nonce, is refused: the customer never seals to that key.
    #[test]
    fn only_keys_signed_by_the_signer_and_bound_for_our_nonce_are_used() {
        let tee = SigningKey::from_slice(&[5u8; 32]).unwrap();
        let signer = sealtune_protocol::sig::address_of(tee.verifying_key());
        let nonce = [7u8; 32];
        let real = k256::SecretKey::from_slice(&[6u8; 32])
            .unwrap()
            .public_key();
        let keys = TeeKeys::sign(&tee, &real, None);
        let doc = AttestationDocument {
            dataset_key_hash: Some(keys.hash()),
            ..AttestationDocument::new(signer, nonce.into(), B256::ZERO)
        };
        let got = tee_keys_of(&body(&keys, &doc), signer, &nonce)
            .unwrap()
            .unwrap();
        assert_eq!(got.dataset_key, real);

        let attacker = SigningKey::from_slice(&[8u8; 32]).unwrap();
        let theirs = k256::SecretKey::from_slice(&[9u8; 32])
            .unwrap()
            .public_key();
        // Their key under the TEE's signature; their key signed by themselves.
        let mut swapped = keys.clone();
        swapped.dataset_key = sealtune_protocol::envelope::compressed(&theirs).into();
        let self_signed = TeeKeys::sign(&attacker, &theirs, None);
        for forged in [swapped, self_signed] {
            assert!(tee_keys_of(&body(&forged, &doc), signer, &nonce).is_err());
        }
        // Keys the document does not bind, and a document for another nonce.
        let unbound = AttestationDocument {
            dataset_key_hash: None,
            ..doc
        };
        assert!(tee_keys_of(&body(&keys, &unbound), signer, &nonce).is_err());
        assert!(tee_keys_of(&body(&keys, &doc), signer, &[1u8; 32]).is_err());
        // A TLS key hash the TEE signer did not sign (a relay publishing its own TLS key), with
        // the document re-bound to the edited keys: the signature no longer covers them.
        let tls_keys = TeeKeys::sign(&tee, &real, Some(B256::repeat_byte(1)));
        let tls_doc = AttestationDocument {
            dataset_key_hash: Some(tls_keys.hash()),
            ..doc
        };
        let got = tee_keys_of(&body(&tls_keys, &tls_doc), signer, &nonce)
            .unwrap()
            .unwrap();
        assert_eq!(got.tls_spki_sha256, Some(B256::repeat_byte(1)));
        let mut relayed = tls_keys.clone();
        relayed.tls_spki_sha256 = Some(B256::repeat_byte(2));
        let rebound = AttestationDocument {
            dataset_key_hash: Some(relayed.hash()),
            ..doc
        };
        let err = tee_keys_of(&body(&relayed, &rebound), signer, &nonce).unwrap_err();
        assert!(
            err.to_string().contains("not signed by the TEE signer"),
            "{err}"
        );
        // An official broker publishes none.
        assert_eq!(
            tee_keys_of(b"{\"quote\":\"00\"}", signer, &nonce).unwrap(),
            None
        );
    }
}
