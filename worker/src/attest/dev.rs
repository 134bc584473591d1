//! The insecure `dev` source: no TEE. The key lives in clear in the data directory; the quote body
//! carries no quote, marks itself `"dev": true`, and serves the app-compose document with a
//! dstack-shaped event log whose `compose-hash` event is `sha256(app_compose)`, so the official
//! SDK's and the verifier's compose checks run end to end on a machine without TDX.

use std::path::{Path, PathBuf};

use k256::ecdsa::SigningKey;
use rand_core::CryptoRngCore;
use sha2::{Digest as _, Sha256};

use super::{AttestConfig, AttestError, QuoteSource, RawQuote, SourceKind, write_atomic};

/// The shipped `deploy/app-compose.json`, byte for byte (what the dev source serves by default).
/// Not in the image's worker (feature `dev-app-compose` off, scripts/build-worker-release): that file
/// pins the image's digest, so a binary embedding it would change with every pin.
#[cfg(feature = "dev-app-compose")]
pub const DEV_APP_COMPOSE: &str = include_str!("../../../deploy/app-compose.json");

/// File (in the data directory) holding the dev root secret in clear (hex): the dev stand-in for
/// dstack's KMS, from which the TEE signer of each key path is derived.
pub const DEV_KEY_FILE: &str = "tee-signer.dev.key";

use sealtune_protocol::attestation::CONFIG_EVENT;
pub use sealtune_protocol::dstack::runtime_event_digest_v1 as runtime_event_digest;
use sealtune_protocol::dstack::{RUNTIME_EVENT_TYPE, extend_rtmr};

/// The dev event log (a JSON array as a string) and the RTMR3 it replays to: the dstack system
/// events in boot order, all on RTMR3 with V1 digests; `app-id` is the first 20 bytes of the
/// compose hash (dstack's default), `instance-id` is derived from the signer, `key-provider`
/// says `dev`; then the worker's own [`CONFIG_EVENT`] with the config hash, as it emits it on dstack.
pub fn dev_event_log(
    app_compose: &str,
    signer: &[u8; 20],
    config_hash: &[u8; 32],
) -> (String, [u8; 48]) {
    let compose_hash: [u8; 32] = Sha256::digest(app_compose.as_bytes()).into();
    let mut instance = Sha256::new();
    instance.update(b"sealtune-dev-instance:");
    instance.update(signer);
    let instance: [u8; 32] = instance.finalize().into();
    let events: [(&str, Vec<u8>); 9] = [
        ("system-preparing", Vec::new()),
        (
            "app-id",
            compose_hash.get(..20).unwrap_or_default().to_vec(),
        ),
        ("compose-hash", compose_hash.to_vec()),
        (
            "instance-id",
            instance.get(..20).unwrap_or_default().to_vec(),
        ),
        ("boot-mr-done", Vec::new()),
        (
            "key-provider",
            br#"{"name":"dev","id":"sealtune-dev-key-file"}"#.to_vec(),
        ),
        ("storage-fs", b"dev".to_vec()),
        ("system-ready", Vec::new()),
        (CONFIG_EVENT, config_hash.to_vec()),
    ];
    let mut rtmr3 = [0u8; 48];
    let list: Vec<serde_json::Value> = events
        .iter()
        .map(|(name, payload)| {
            let digest = runtime_event_digest(name, payload);
            extend_rtmr(&mut rtmr3, &digest);
            serde_json::json!({
                "imr": 3,
                "event_type": RUNTIME_EVENT_TYPE,
                "digest": hex::encode(digest),
                "event": name,
                "event_payload": hex::encode(payload),
            })
        })
        .collect();
    (serde_json::Value::Array(list).to_string(), rtmr3)
}

/// The dev source.
#[derive(Debug)]
pub struct DevSource {
    event_log: String,
    tcb_info: String,
}

impl DevSource {
    /// Loads (or creates once, from `rng`) the dev root secret, derives the signer for `key_path`,
    /// the dataset key for [`super::dataset_key_path`] and the TLS key's secret for
    /// [`super::tls_key_path`] of it (the dev stand-in for the KMS), and prepares the event log
    /// recording `config_hash`.
    pub(super) fn open(
        config: &AttestConfig,
        data_dir: &Path,
        key_path: &str,
        config_hash: alloy::primitives::B256,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(Self, [SigningKey; 3]), AttestError> {
        tracing::warn!(
            "INSECURE: the `dev` attestation source is in use: no TEE, the TEE signer key is a cleartext \
             file in the data directory, /v1/quote serves no quote. Never run a real provider like this."
        );
        let root_file = data_dir.join(DEV_KEY_FILE);
        let root = load_or_create_key(&root_file, rng)?;
        let key = derive_dev_key(&root, key_path)?;
        let dataset_key = derive_dev_key(&root, &super::dataset_key_path(key_path))?;
        let tls_key = derive_dev_key(&root, &super::tls_key_path(key_path))?;
        let app_compose = match &config.app_compose {
            #[cfg(feature = "dev-app-compose")]
            None => DEV_APP_COMPOSE.to_string(),
            #[cfg(not(feature = "dev-app-compose"))]
            None => {
                return Err(AttestError::File {
                    path: "attestation.app_compose".into(),
                    reason: "this worker does not embed deploy/app-compose.json (built without the \
                             `dev-app-compose` feature, as in the image): set attestation.app_compose"
                        .into(),
                });
            }
            Some(p) => std::fs::read_to_string(p).map_err(|e| AttestError::file(p, e))?,
        };
        let signer = alloy::primitives::Address::from_private_key(&key);
        let (event_log, rtmr3) = dev_event_log(&app_compose, &signer.0.0, &config_hash.0);
        let compose_hash = hex::encode(Sha256::digest(app_compose.as_bytes()));
        let tcb_info = serde_json::json!({
            "app_compose": app_compose,
            "compose_hash": compose_hash,
            "rtmr3": hex::encode(rtmr3),
            "event_log": serde_json::from_str::<serde_json::Value>(&event_log).unwrap_or_default(),
            "dev": true,
        })
        .to_string();
        Ok((
            Self {
                event_log,
                tcb_info,
            },
            [key, dataset_key, tls_key],
        ))
    }
}

impl QuoteSource for DevSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Dev
    }

    async fn quote(&self, _report_data: [u8; 64]) -> Result<RawQuote, AttestError> {
        Ok(RawQuote {
            quote: Vec::new(),
            event_log: Some(self.event_log.clone()),
            vm_config: None,
            tcb_info: Some(self.tcb_info.clone()),
        })
    }
}

/// The dev stand-in for a KMS derivation: `keccak256("sealtune/dev-kms/v1:" ‖ root ‖ ":" ‖ path)`
/// as a secp256k1 key (deterministic per root and path, like dstack's `GetKey`).
fn derive_dev_key(root: &SigningKey, path: &str) -> Result<SigningKey, AttestError> {
    let mut pre = b"sealtune/dev-kms/v1:".to_vec();
    pre.extend_from_slice(&root.to_bytes());
    pre.push(b':');
    pre.extend_from_slice(path.as_bytes());
    let derived = alloy::primitives::keccak256(&pre);
    SigningKey::from_slice(derived.as_slice()).map_err(|_| AttestError::BadKey {
        what: format!("the dev key derived for {path}"),
    })
}

fn load_or_create_key(
    path: &PathBuf,
    rng: &mut impl CryptoRngCore,
) -> Result<SigningKey, AttestError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let t = text.trim();
            let bytes = hex::decode(t.strip_prefix("0x").unwrap_or(t))
                .map_err(|e| AttestError::file(path, format!("dev key is not hex: {e}")))?;
            SigningKey::from_slice(&bytes).map_err(|_| AttestError::BadKey {
                what: path.display().to_string(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::random(rng);
            let hex_key = format!("0x{}\n", hex::encode(key.to_bytes()));
            write_atomic(path, hex_key.as_bytes(), 0o600)?;
            tracing::warn!(path = %path.display(), "created a new dev TEE key file");
            Ok(key)
        }
        Err(e) => Err(AttestError::file(path, e)),
    }
}
