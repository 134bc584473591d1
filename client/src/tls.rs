//! TLS to a provider that ends inside its TEE: the key-pinning certificate verifier and the pins
//! (docs/PROTOCOL.md §5.4, docs/customer-guide.md).
//!
//! A sealtune worker serving HTTPS itself publishes the SHA-256 of its TLS key's
//! SubjectPublicKeyInfo in `tee_keys.tls_spki_sha256`, signed by its TEE signer and bound by the
//! attestation document for the customer's nonce. `verify-provider` fetches the quote over a
//! connection whose key it records ([`ProviderTls::Observe`]: any certificate, but the handshake
//! signature is checked, so the server holds that key), then requires that recorded key to be the
//! attested one, and pins it ([`TlsPins`]). Every later HTTPS request to that provider uses
//! [`ProviderTls::Pinned`]: [`SpkiVerifier`] accepts exactly that key (no CA, no host name) and
//! anything else fails with [`ClientError::TlsKeyNotAttested`]. An `https://` provider with no
//! pinned key is refused ([`ClientError::TlsNotPinned`]) unless the customer allows CA-verified TLS
//! explicitly ([`ProviderTls::Ca`], `--allow-ca-tls`: TLS that may end outside the TEE, e.g. at a
//! TLS-terminating gateway).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use alloy::primitives::{Address, B256};
pub use sealtune_verifier::tls_key::{SpkiVerifier, is_https, spki_sha256};
use serde::{Deserialize, Serialize};

use crate::error::{ClientError, Result};

/// How a provider's HTTPS connections are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderTls {
    /// Only the key whose SubjectPublicKeyInfo hashes to this (the attested one).
    Pinned(B256),
    /// Any key, recorded for comparison with the attested one (`verify-provider`'s quote fetch:
    /// the quote proves itself, the recorded key is then checked against it).
    Observe,
    /// CA-verified certificates (the platform's roots) with host names: TLS that may end outside
    /// the TEE. Only when the customer asks for it (`--allow-ca-tls`).
    Ca,
}

/// A rustls client configuration pinned by `verifier`.
pub fn client_config(verifier: Arc<SpkiVerifier>) -> Result<rustls::ClientConfig> {
    sealtune_verifier::tls_key::client_config(verifier)
        .map_err(|e| ClientError::Config(format!("TLS client: {e}")))
}

/// One pinned provider key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// FineTuningServing the provider is registered on.
    pub serving: Address,
    /// The provider.
    pub provider: Address,
    /// The URL it was verified at (the pin holds for this URL only).
    pub url: String,
    /// The TEE signer that signed the key.
    pub tee_signer: Address,
    /// SHA-256 of the attested TLS key's SubjectPublicKeyInfo.
    pub tls_spki_sha256: B256,
    /// When it was verified (unix seconds).
    pub verified_at: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PinFile {
    version: u32,
    pins: Vec<Pin>,
}

/// The customer's pinned provider keys: in memory, and in a JSON file when given one (the CLI's
/// `--tls-pins`, default [`TlsPins::default_path`]), so a pin made by `verify-provider` holds for
/// later commands. Also whether CA-verified TLS is allowed for unpinned providers.
#[derive(Debug, Default)]
pub struct TlsPins {
    file: Option<PathBuf>,
    allow_ca: bool,
    pins: Mutex<BTreeMap<(Address, Address), Pin>>,
}

fn normalized(url: &str) -> &str {
    url.trim().trim_end_matches('/')
}

impl TlsPins {
    /// Pins kept in memory only.
    pub fn in_memory(allow_ca: bool) -> Self {
        TlsPins {
            allow_ca,
            ..Default::default()
        }
    }

    /// `$XDG_STATE_HOME/sealtune/tls-pins.json`, else `~/.local/state/sealtune/tls-pins.json`.
    pub fn default_path() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_STATE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
        Some(base.join("sealtune").join("tls-pins.json"))
    }

    /// The pins in `file` (none when it does not exist yet); new pins are written there.
    pub fn load(file: &Path, allow_ca: bool) -> Result<Self> {
        let pins = match std::fs::read(file) {
            Ok(bytes) => {
                serde_json::from_slice::<PinFile>(&bytes)
                    .map_err(|e| {
                        ClientError::Config(format!("TLS pin file {}: {e}", file.display()))
                    })?
                    .pins
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(ClientError::io(file, e)),
        };
        Ok(TlsPins {
            file: Some(file.to_path_buf()),
            allow_ca,
            pins: Mutex::new(
                pins.into_iter()
                    .map(|p| ((p.serving, p.provider), p))
                    .collect(),
            ),
        })
    }

    /// The pin of `provider` on `serving`, if any.
    pub fn get(&self, serving: Address, provider: Address) -> Option<Pin> {
        self.pins
            .lock()
            .ok()
            .and_then(|m| m.get(&(serving, provider)).cloned())
    }

    /// How to reach `provider` (on `serving`) at its registered `url`: plain HTTP, its pinned key,
    /// or CA-verified TLS when allowed; an `https://` URL with no pin for it is refused.
    pub fn tls_for(
        &self,
        serving: Address,
        provider: Address,
        url: &str,
    ) -> Result<Option<ProviderTls>> {
        if !is_https(url) {
            return Ok(None);
        }
        match self.get(serving, provider) {
            Some(pin) if normalized(&pin.url) == normalized(url) => {
                Ok(Some(ProviderTls::Pinned(pin.tls_spki_sha256)))
            }
            _ if self.allow_ca => Ok(Some(ProviderTls::Ca)),
            _ => Err(ClientError::TlsNotPinned {
                provider: Some(provider),
                url: url.to_owned(),
            }),
        }
    }

    /// Records (or, with `None`, forgets) the verified TLS key of `provider`, and saves the file
    /// when that changed anything (a plain-HTTP provider writes nothing).
    pub fn record(&self, serving: Address, provider: Address, pin: Option<Pin>) -> Result<()> {
        {
            let mut map = self
                .pins
                .lock()
                .map_err(|_| ClientError::Config("TLS pins: poisoned lock".into()))?;
            let changed = match pin {
                Some(p) => map.insert((serving, provider), p.clone()) != Some(p),
                None => map.remove(&(serving, provider)).is_some(),
            };
            if !changed {
                return Ok(());
            }
        }
        self.save()
    }

    fn save(&self) -> Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let pins: Vec<Pin> = self
            .pins
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        let json = serde_json::to_vec_pretty(&PinFile { version: 1, pins })
            .map_err(|e| ClientError::Config(format!("TLS pins: {e}")))?;
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ClientError::io(dir, e))?;
        }
        let tmp = file.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(|e| ClientError::io(&tmp, e))?;
        std::fs::rename(&tmp, file).map_err(|e| ClientError::io(file, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_https_provider_without_a_pin_is_refused_unless_ca_tls_is_allowed() {
        let (s, p) = (Address::repeat_byte(1), Address::repeat_byte(2));
        let strict = TlsPins::in_memory(false);
        assert_eq!(strict.tls_for(s, p, "http://x").unwrap(), None);
        let err = strict.tls_for(s, p, "https://x").unwrap_err();
        assert!(matches!(err, ClientError::TlsNotPinned { .. }), "{err}");
        assert!(
            err.to_string().contains("no attested TLS key is pinned"),
            "{err}"
        );
        assert_eq!(
            TlsPins::in_memory(true).tls_for(s, p, "https://x").unwrap(),
            Some(ProviderTls::Ca)
        );
        let pin = Pin {
            serving: s,
            provider: p,
            url: "https://x/".into(),
            tee_signer: Address::ZERO,
            tls_spki_sha256: B256::repeat_byte(7),
            verified_at: 0,
        };
        strict.record(s, p, Some(pin)).unwrap();
        assert_eq!(
            strict.tls_for(s, p, "https://x").unwrap(),
            Some(ProviderTls::Pinned(B256::repeat_byte(7)))
        );
        // Pinned for another URL: the provider moved, verify again.
        assert!(strict.tls_for(s, p, "https://y").is_err());
        strict.record(s, p, None).unwrap();
        assert!(strict.tls_for(s, p, "https://x").is_err());
    }

    #[test]
    fn pins_survive_in_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/pins.json");
        let (s, p) = (Address::repeat_byte(1), Address::repeat_byte(2));
        let pin = Pin {
            serving: s,
            provider: p,
            url: "https://x".into(),
            tee_signer: Address::ZERO,
            tls_spki_sha256: B256::repeat_byte(7),
            verified_at: 5,
        };
        TlsPins::load(&file, false)
            .unwrap()
            .record(s, p, Some(pin.clone()))
            .unwrap();
        assert_eq!(TlsPins::load(&file, false).unwrap().get(s, p), Some(pin));
    }
}
