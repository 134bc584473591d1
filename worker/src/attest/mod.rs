//! Attestation and the TEE signer: quote sources (configfs-tsm, the dstack guest agent, legacy tappd,
//! and the insecure `dev` source), the stable TEE signing key, and the `/v1/quote` body (PROTOCOL.md §5).
//!
//! (Lead's minimal dev-only stand-in so the rest of the worker compiles; replaced by the full module.)
use std::path::Path;

use alloy::primitives::Address;
use sealtune_protocol::deliverable::{OsRng, TeeSigningKey};
use serde::{Deserialize, Serialize};

/// Which quote source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// Insecure development source.
    Dev,
    /// dstack guest agent.
    Dstack,
    /// Legacy tappd.
    Tappd,
    /// Linux configfs-tsm.
    ConfigfsTsm,
}

/// Attestation settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestConfig {
    /// The source.
    pub source: SourceKind,
}

/// An attestation failure.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// I/O.
    #[error("attestation I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Unsupported here.
    #[error("attestation source {0:?} is not available")]
    Unavailable(SourceKind),
}

/// The TEE key and quote source.
pub struct Attestation {
    key: TeeSigningKey,
    previous: Option<Address>,
    source: SourceKind,
}

impl Attestation {
    /// Loads or creates the key.
    pub async fn open(config: &AttestConfig, data_dir: &Path) -> Result<Attestation, AttestError> {
        if config.source != SourceKind::Dev {
            return Err(AttestError::Unavailable(config.source));
        }
        let path = data_dir.join("dev-tee-key");
        let key = match std::fs::read(&path) {
            Ok(b) => TeeSigningKey::from_slice(&b).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "bad dev key")
            })?,
            Err(_) => {
                let k = TeeSigningKey::random(&mut OsRng);
                std::fs::write(&path, k.to_bytes())?;
                k
            }
        };
        Ok(Attestation {
            key,
            previous: None,
            source: config.source,
        })
    }
    /// The TEE signer.
    pub fn signer(&self) -> Address {
        sealtune_protocol::sig::address_of(self.key.verifying_key())
    }
    /// The key.
    pub fn signing_key(&self) -> &TeeSigningKey {
        &self.key
    }
    /// The signer before a change.
    pub fn previous_signer(&self) -> Option<Address> {
        self.previous
    }
    /// Dev source?
    pub fn is_dev(&self) -> bool {
        self.source == SourceKind::Dev
    }
    /// The source.
    pub fn source(&self) -> SourceKind {
        self.source
    }
    /// The `/v1/quote` body.
    pub async fn quote_body(&self, _nonce: Option<[u8; 32]>) -> Result<serde_json::Value, AttestError> {
        Ok(serde_json::json!({"dev": true, "signing_address": self.signer().to_checksum(None)}))
    }
}
