//! Attestation and the TEE signer: quote sources (configfs-tsm, the dstack guest agent, legacy tappd,
//! and the insecure `dev` source), the stable TEE signing key, and the `/v1/quote` body (PROTOCOL.md §5).
//!
//! Every source implements [`QuoteSource`]: it yields the TEE signing key and quotes over 64 bytes
//! of report_data. [`Attestation::open`] picks the configured source, loads or derives the key, and
//! compares its address with the signer recorded in the data directory at the previous start, so
//! a signer change is never silent ([`Attestation::previous_signer`]).
//!
//! | source | key | quote | stable across restarts |
//! |---|---|---|---|
//! | `dstack` | guest agent `GetKey` (derived by the KMS for this app) | `GetQuote` + `Info` | yes |
//! | `tappd` | legacy `DeriveKey` (P-256 PEM → domain-separated keccak256 → secp256k1) | `TdxQuote` (raw) + `Info` | yes |
//! | `configfs-tsm` | random at every start, never written | `/sys/kernel/config/tsm/report` | **no** |
//! | `dev` | key file in the data directory (cleartext, dev only) | none: `"dev": true` | yes |
//!
//! The `/v1/quote` body ([`Attestation::quote_body`]) binds the signer in report_data layout (a),
//! the ASCII `0x…` address zero-padded to 64 bytes (what the official SDK checks), or, with a
//! verifier's nonce, the attestation document v2 (`sealtune_protocol::attestation`): signer, nonce
//! and the measured config hash under a domain tag. The worker checks that the quote a source
//! returns carries exactly the report_data it asked for. The TEE signer's key path includes the
//! config hash ([`signer_key_path`]).
//!
//! Beside the signer, every source yields the **dataset key** ([`dataset_key_path`], derived the same
//! way, so a changed config changes it too): customers seal datasets to its public key
//! (`sealtune_protocol::envelope`). It is published as `tee_keys`, signed by the TEE signer, and its
//! hash fills the attestation document's `dataset_key_hash` slot ([`Attestation::tee_keys`]).
//! A third key, at [`tls_key_path`], seeds the worker's own TLS key when it serves HTTPS
//! ([`crate::tls`]); its SubjectPublicKeyInfo hash then joins the published keys
//! ([`Attestation::with_tls_key`]).

mod dev;
mod dstack;
pub mod gpu;
mod tsm;

use std::path::{Path, PathBuf};

use alloy::primitives::{Address, B256};
use base64::Engine as _;
use k256::ecdsa::SigningKey;
use rand_core::CryptoRngCore;
use sealtune_protocol::attestation::{AttestationDocument, TeeKeys};
use sealtune_protocol::deliverable::TeeSigningKey;
use serde::{Deserialize, Serialize};

#[cfg(feature = "dev-app-compose")]
pub use dev::DEV_APP_COMPOSE;
pub use dev::{dev_event_log, runtime_event_digest};
pub use dstack::{DstackSource, TappdSource};
pub use tsm::TsmSource;

/// Default socket of the dstack guest agent.
pub const DEFAULT_DSTACK_SOCKET: &str = "/var/run/dstack.sock";
/// Default socket of the legacy tappd agent.
pub const DEFAULT_TAPPD_SOCKET: &str = "/var/run/tappd.sock";
/// Default configfs-tsm report directory.
pub const DEFAULT_TSM_DIR: &str = "/sys/kernel/config/tsm/report";
/// Key derivation path asked of dstack / tappd for the TEE signer.
pub const DEFAULT_KEY_PATH: &str = "sealtune/tee-signer";
/// File (in the data directory) recording the last TEE signer address.
pub const SIGNER_RECORD_FILE: &str = "tee-signer.json";
/// Environment variable that, set to anything but `0` or empty, refuses the `dev` source. The
/// release image (`deploy/image.toml`) sets it; unsetting it would show in the measured compose.
pub const FORBID_DEV_ENV: &str = "SEALTUNE_FORBID_DEV_ATTESTATION";

/// Which attestation source the worker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum SourceKind {
    /// The insecure development source: no TEE, a key file in the data directory.
    #[serde(rename = "dev")]
    Dev,
    /// The dstack guest agent (`/var/run/dstack.sock`).
    #[serde(rename = "dstack")]
    Dstack,
    /// The legacy dstack agent, tappd (`/var/run/tappd.sock`).
    #[serde(rename = "tappd")]
    Tappd,
    /// Linux configfs-tsm on a bare TDX guest.
    #[serde(rename = "configfs-tsm")]
    ConfigfsTsm,
}

impl SourceKind {
    /// The configuration name (`dev`, `dstack`, `tappd`, `configfs-tsm`).
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Dev => "dev",
            SourceKind::Dstack => "dstack",
            SourceKind::Tappd => "tappd",
            SourceKind::ConfigfsTsm => "configfs-tsm",
        }
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `[attestation]` configuration. `source` has no default: `dev` must be chosen explicitly.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttestConfig {
    /// `"dev" | "dstack" | "tappd" | "configfs-tsm"`.
    pub source: SourceKind,
    /// dstack guest agent socket (default [`DEFAULT_DSTACK_SOCKET`]).
    #[serde(default = "default_dstack_socket")]
    pub dstack_socket: PathBuf,
    /// tappd socket (default [`DEFAULT_TAPPD_SOCKET`]).
    #[serde(default = "default_tappd_socket")]
    pub tappd_socket: PathBuf,
    /// configfs-tsm report directory (default [`DEFAULT_TSM_DIR`]).
    #[serde(default = "default_tsm_dir")]
    pub tsm_dir: PathBuf,
    /// Key derivation path for dstack `GetKey` / tappd `DeriveKey` (default [`DEFAULT_KEY_PATH`]).
    /// Changing it changes the signer.
    #[serde(default = "default_key_path")]
    pub key_path: String,
    /// dev only: the app-compose document served in `tcb_info` and hashed into the dev event log
    /// (default: the shipped `deploy/app-compose.json`, embedded at build time by the default feature
    /// `dev-app-compose`; the image's worker is built without it and needs this set).
    #[serde(default)]
    pub app_compose: Option<PathBuf>,
    /// Seconds to wait for one agent call or one configfs report (default 30).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// `[attestation.gpu]`: where GPU evidence comes from (default NVML; [`gpu`]).
    #[serde(default)]
    pub gpu: gpu::GpuConfig,
}

fn default_dstack_socket() -> PathBuf {
    DEFAULT_DSTACK_SOCKET.into()
}
fn default_tappd_socket() -> PathBuf {
    DEFAULT_TAPPD_SOCKET.into()
}
fn default_tsm_dir() -> PathBuf {
    DEFAULT_TSM_DIR.into()
}
fn default_key_path() -> String {
    DEFAULT_KEY_PATH.into()
}
fn default_timeout_secs() -> u64 {
    30
}

impl AttestConfig {
    /// A configuration for `source` with every other field at its default.
    pub fn new(source: SourceKind) -> Self {
        Self {
            source,
            dstack_socket: default_dstack_socket(),
            tappd_socket: default_tappd_socket(),
            tsm_dir: default_tsm_dir(),
            key_path: default_key_path(),
            app_compose: None,
            timeout_secs: default_timeout_secs(),
            gpu: gpu::GpuConfig::default(),
        }
    }
}

/// Why attestation or the TEE key failed.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// Talking to the guest agent failed (socket missing, connection refused, HTTP error).
    #[error("{source_kind} agent at {socket}: {reason}")]
    Agent {
        /// The source.
        source_kind: SourceKind,
        /// Its socket.
        socket: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The agent answered something unusable.
    #[error("{source_kind} agent answered an invalid {what}: {reason}")]
    BadResponse {
        /// The source.
        source_kind: SourceKind,
        /// Which answer.
        what: &'static str,
        /// Why it is unusable.
        reason: String,
    },
    /// The quote does not carry the report_data the worker asked for.
    #[error(
        "{source_kind} returned a quote whose report_data is {got}, not the requested {expected}"
    )]
    ReportDataMismatch {
        /// The source.
        source_kind: SourceKind,
        /// What was asked (hex).
        expected: String,
        /// What the quote holds (hex, or a reason).
        got: String,
    },
    /// configfs-tsm failed.
    #[error("configfs-tsm at {path}: {reason}")]
    Tsm {
        /// The report entry.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A key file, the signer record or the app-compose file could not be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The `dev` source was configured where it is forbidden ([`FORBID_DEV_ENV`]).
    #[error("the insecure `dev` attestation source is forbidden here ({FORBID_DEV_ENV} is set)")]
    DevForbidden,
    /// RTMR3 already records another config in this boot.
    #[error(
        "this CVM's RTMR3 already records config hash {recorded}, and this worker's config hashes to {now}: a config cannot change within one boot (verifiers require exactly one config record); restore the config or reboot the CVM"
    )]
    ConfigChanged {
        /// What the event log holds (hex, comma-separated).
        recorded: String,
        /// This worker's config hash (hex).
        now: String,
    },
    /// Key material that is not a valid secp256k1 secret key.
    #[error("{what} is not a valid secp256k1 secret key")]
    BadKey {
        /// Where the key came from.
        what: String,
    },
}

impl AttestError {
    fn file(path: &Path, e: impl std::fmt::Display) -> Self {
        Self::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }
}

/// What a source returns for one report_data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawQuote {
    /// The quote bytes (empty for `dev`).
    pub quote: Vec<u8>,
    /// The event log, a JSON string (dstack / tappd / dev).
    pub event_log: Option<String>,
    /// The VM configuration as the agent sent it (a JSON string on dstack).
    pub vm_config: Option<serde_json::Value>,
    /// `tcb_info` as a JSON string containing `app_compose`.
    pub tcb_info: Option<String>,
}

/// One attestation source: the TEE key and quotes. Implemented by `dev::DevSource`,
/// [`DstackSource`], [`TappdSource`] and [`TsmSource`].
pub trait QuoteSource: Send + Sync {
    /// Which source this is.
    fn kind(&self) -> SourceKind;
    /// A quote over `report_data`, with whatever event log / tcb info the source has.
    fn quote(
        &self,
        report_data: [u8; 64],
    ) -> impl std::future::Future<Output = Result<RawQuote, AttestError>> + Send;
}

/// The configured source, dispatching [`QuoteSource`] statically.
#[derive(Debug)]
enum Source {
    Dev(dev::DevSource),
    Dstack(DstackSource),
    Tappd(TappdSource),
    Tsm(TsmSource),
}

impl Source {
    async fn quote(&self, report_data: [u8; 64]) -> Result<RawQuote, AttestError> {
        match self {
            Source::Dev(s) => s.quote(report_data).await,
            Source::Dstack(s) => s.quote(report_data).await,
            Source::Tappd(s) => s.quote(report_data).await,
            Source::Tsm(s) => s.quote(report_data).await,
        }
    }
}

/// The worker's attestation: source, TEE signing key, signer-change detection, `/v1/quote` bodies.
pub struct Attestation {
    source: Source,
    key: TeeSigningKey,
    signer: Address,
    config_hash: B256,
    previous: Option<Address>,
    record_path: PathBuf,
    gpu: std::sync::Arc<dyn gpu::EvidenceSource>,
    dataset_key: k256::SecretKey,
    tee_keys: TeeKeys,
    tls_secret: zeroize::Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Attestation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attestation")
            .field("source", &self.source)
            .field("signer", &self.signer)
            .field("config_hash", &self.config_hash)
            .field("previous", &self.previous)
            .finish_non_exhaustive()
    }
}

/// The signer record kept in the data directory (an address is public; no key is written here).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SignerRecord {
    address: Address,
    source: SourceKind,
}

impl Attestation {
    /// Loads or derives the TEE signing key with the OS RNG (see [`Self::open_with_rng`]).
    pub async fn open(
        config: &AttestConfig,
        data_dir: &Path,
        config_hash: B256,
    ) -> Result<Attestation, AttestError> {
        Self::open_with_rng(config, data_dir, config_hash, &mut rand_core::OsRng).await
    }

    /// Loads or derives the TEE signing key for the measured config `config_hash`, records the
    /// config hash where the source can, and detects a signer change.
    ///
    /// The key path is [`signer_key_path`]`(key_path, config_hash)`: a changed config derives another
    /// signer, which the contract owner must acknowledge again on chain. dstack: `GetKey` from the
    /// guest agent (the same key for this app and config on every boot), and the config hash is
    /// recorded as an RTMR3 event ([`DstackSource::record_config`]); tappd: `DeriveKey`; dev: derived
    /// from the root secret `<data_dir>/tee-signer.dev.key`, created once from `rng` (loud warning);
    /// configfs-tsm: a fresh key from `rng` at every start (it cannot persist a key without writing
    /// it in clear: an error-level log says so, and every restart is a signer change). Sources
    /// without runtime events (tappd, configfs-tsm) bind the config hash only in the attestation
    /// document of a nonce quote; dev writes it into its synthetic event log.
    ///
    /// The address of the previous start is read from `<data_dir>/tee-signer.json`;
    /// [`previous_signer`](Self::previous_signer) is `Some(old)` when it differs. The record is
    /// only rewritten by [`record_signer`](Self::record_signer) (and on the very first start), so
    /// a crash before the old signer's tasks are handled reports the change again.
    pub async fn open_with_rng(
        config: &AttestConfig,
        data_dir: &Path,
        config_hash: B256,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Attestation, AttestError> {
        let key_path = signer_key_path(&config.key_path, config_hash);
        let data_path = dataset_key_path(&key_path);
        let tls_path = tls_key_path(&key_path);
        let (source, key, dataset_key, tls_key) = match config.source {
            SourceKind::Dev if dev_forbidden() => return Err(AttestError::DevForbidden),
            SourceKind::Dev => {
                let (s, [key, dk, tk]) =
                    dev::DevSource::open(config, data_dir, &key_path, config_hash, rng)?;
                (Source::Dev(s), key, dk, tk)
            }
            SourceKind::Dstack => {
                let s = DstackSource::new(&config.dstack_socket, config.timeout_secs)?;
                let key = s.get_key(&key_path).await?;
                let dk = s.get_key(&data_path).await?;
                let tk = s.get_key(&tls_path).await?;
                s.record_config(config_hash).await?;
                (Source::Dstack(s), key, dk, tk)
            }
            SourceKind::Tappd => {
                let s = TappdSource::new(&config.tappd_socket, config.timeout_secs)?;
                let key = s.derive_key(&key_path).await?;
                let dk = s.derive_key(&data_path).await?;
                let tk = s.derive_key(&tls_path).await?;
                (Source::Tappd(s), key, dk, tk)
            }
            SourceKind::ConfigfsTsm => {
                let s = TsmSource::open(&config.tsm_dir, config.timeout_secs)?;
                tracing::error!(
                    tsm_dir = %config.tsm_dir.display(),
                    "configfs-tsm cannot persist the TEE signer: a new key is generated at every start, \
                     so every restart changes the signer (the owner must acknowledge it again on chain, and \
                     deliverables of earlier runs keep the old signer). Use dstack for a stable signer."
                );
                (
                    Source::Tsm(s),
                    SigningKey::random(rng),
                    SigningKey::random(rng),
                    SigningKey::random(rng),
                )
            }
        };
        let tls_secret = zeroize::Zeroizing::new(<[u8; 32]>::from(tls_key.to_bytes()));
        let dataset_key = k256::SecretKey::from(dataset_key.as_nonzero_scalar());
        let tee_keys = TeeKeys::sign(&key, &dataset_key.public_key(), None);
        let signer = Address::from_private_key(&key);
        let record_path = data_dir.join(SIGNER_RECORD_FILE);
        let previous = match read_record(&record_path)? {
            Some(old) if old.address != signer => {
                tracing::warn!(
                    old = %old.address, old_source = %old.source, new = %signer, source = %config.source,
                    "the TEE signer changed since the last start: tasks made under the old signer must be handled"
                );
                Some(old.address)
            }
            Some(_) => None,
            None => {
                write_record(&record_path, signer, config.source)?;
                None
            }
        };
        tracing::info!(source = %config.source, %signer, %config_hash, "TEE signer ready");
        Ok(Attestation {
            source,
            key,
            signer,
            config_hash,
            previous,
            record_path,
            gpu: config.gpu.open().into(),
            dataset_key,
            tee_keys,
            tls_secret,
        })
    }

    /// The key that wraps task `task_id`'s checkpoint keys (`pipeline::checkpoint`): HKDF-SHA256
    /// over the dataset key's secret (derived by the TEE's key source for this config, never on
    /// disk), info [`checkpoint_key_info`]. The same after a restart; another config (another
    /// dataset key), or configfs-tsm's fresh key at every start, gives another key, and the
    /// earlier checkpoints can no longer be opened.
    pub fn checkpoint_key(&self, task_id: &str) -> zeroize::Zeroizing<[u8; 32]> {
        let secret = zeroize::Zeroizing::new(self.dataset_key.to_bytes());
        let hk =
            hkdf::Hkdf::<sha2::Sha256>::new(Some(b"sealtune/checkpoint/v1"), secret.as_slice());
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's limit of 255 * 32.
        let _ = hk.expand(checkpoint_key_info(task_id).as_bytes(), out.as_mut_slice());
        out
    }

    /// The dataset key's secret half: opens the dataset envelopes customers seal to it
    /// (`sealtune_protocol::envelope`). Never give it to the executor child or write it anywhere.
    pub fn dataset_key(&self) -> &k256::SecretKey {
        &self.dataset_key
    }

    /// The keys published beside the quote (`tee_keys`), signed by the TEE signer; their hash is the
    /// attestation document's `dataset_key_hash`.
    pub fn tee_keys(&self) -> &TeeKeys {
        &self.tee_keys
    }

    /// The worker's own TLS identity: its key derived from the source's key for
    /// [`tls_key_path`] (stable per config like the signer; random per start on configfs-tsm).
    pub fn tls_identity(&self) -> Result<crate::tls::TlsIdentity, crate::tls::TlsError> {
        crate::tls::TlsIdentity::from_secret(self.tls_secret.as_slice())
    }

    /// Publishes the SHA-256 of the worker's own TLS key (SubjectPublicKeyInfo) in the TEE keys,
    /// signed again by the TEE signer.
    pub fn with_tls_key(mut self, spki_sha256: B256) -> Self {
        self.tee_keys = TeeKeys::sign(&self.key, &self.dataset_key.public_key(), Some(spki_sha256));
        self
    }

    /// The TEE signer address (bound into report_data, registered as `teeSignerAddress`).
    pub fn signer(&self) -> Address {
        self.signer
    }

    /// The TEE signing key. Never give it to the executor child or write it anywhere.
    pub fn signing_key(&self) -> &TeeSigningKey {
        &self.key
    }

    /// The signer of the previous start when it differs from this one.
    pub fn previous_signer(&self) -> Option<Address> {
        self.previous
    }

    /// Records the current signer as the last one (call once the tasks of the previous signer are
    /// handled); later starts no longer report the change.
    pub fn record_signer(&self) -> Result<(), AttestError> {
        write_record(&self.record_path, self.signer, self.source())
    }

    /// Whether this is the insecure dev source.
    pub fn is_dev(&self) -> bool {
        matches!(self.source, Source::Dev(_))
    }

    /// The source in use.
    pub fn source(&self) -> SourceKind {
        match &self.source {
            Source::Dev(_) => SourceKind::Dev,
            Source::Dstack(_) => SourceKind::Dstack,
            Source::Tappd(_) => SourceKind::Tappd,
            Source::Tsm(_) => SourceKind::ConfigfsTsm,
        }
    }

    /// The measured config hash this worker runs with.
    pub fn config_hash(&self) -> B256 {
        self.config_hash
    }

    /// Whether the config hash is in RTMR3 (a runtime event) besides the attestation document.
    pub fn config_in_rtmr3(&self) -> bool {
        matches!(self.source, Source::Dev(_) | Source::Dstack(_))
    }

    /// Serves GPU evidence from `source` instead of the configured one (tests, the dev source).
    pub fn with_gpu_source(mut self, source: std::sync::Arc<dyn gpu::EvidenceSource>) -> Self {
        self.gpu = source;
        self
    }

    /// The `nvidia_payload` and its hash: evidence over `gpu_nonce(nonce)` with a verifier's
    /// nonce, over a random one without (then unbound, as in 0G's answer).
    async fn gpu_payload(&self, nonce: Option<[u8; 32]>) -> (serde_json::Value, Option<B256>) {
        let gpu_nonce = match nonce {
            Some(n) => sealtune_protocol::attestation::gpu_nonce(&n),
            None => {
                let mut n = [0u8; 32];
                rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut n);
                n
            }
        };
        let source = self.gpu.clone();
        tokio::task::spawn_blocking(move || gpu::payload_value(source.as_ref(), gpu_nonce))
            .await
            .unwrap_or_else(|e| {
                (
                    sealtune_protocol::gpu::NvidiaPayload::absent(&format!(
                        "GPU evidence collection failed: {e}"
                    )),
                    None,
                )
            })
    }

    /// The attestation document v2 a quote over `nonce` binds (its `dataset_key_hash` the hash of
    /// [`Self::tee_keys`]).
    pub fn document(&self, nonce: [u8; 32]) -> AttestationDocument {
        AttestationDocument {
            dataset_key_hash: Some(self.tee_keys.hash()),
            ..AttestationDocument::new(self.signer, B256::from(nonce), self.config_hash)
        }
    }

    /// The report_data this worker puts in its quotes: 0G's layout (a) without a nonce, the
    /// attestation document v2's hash with one (here with an empty GPU slot; [`Self::quote_body`]
    /// fills it with the served evidence's hash).
    pub fn report_data(&self, nonce: Option<[u8; 32]>) -> [u8; 64] {
        match nonce {
            None => ascii_report_data(self.signer),
            Some(n) => self.document(n).report_data(),
        }
    }

    /// The `/v1/quote` JSON (docs/PROTOCOL.md §5): `{quote, event_log, report_data (base64),
    /// vm_config, tcb_info, nvidia_payload}` as 0G serves it, plus `signer`, `source`,
    /// `config_hash`, `config_in_rtmr3` and, with a nonce, `nonce` and `attestation_document`
    /// (its `gpu_evidence_hash` the hash of the `nvidia_payload` served, [`gpu`]). The
    /// dev source adds `"dev": true` and a `warning`, and serves no quote.
    pub async fn quote_body(
        &self,
        nonce: Option<[u8; 32]>,
    ) -> Result<serde_json::Value, AttestError> {
        let (nvidia_payload, gpu_hash) = self.gpu_payload(nonce).await;
        let document = nonce.map(|n| AttestationDocument {
            gpu_evidence_hash: gpu_hash,
            ..self.document(n)
        });
        let rd = match &document {
            Some(d) => d.report_data(),
            None => self.report_data(None),
        };
        let raw = self.source.quote(rd).await?;
        if !self.is_dev() {
            check_quote_report_data(self.source(), &raw.quote, &rd)?;
        }
        let mut body = serde_json::json!({
            "quote": hex::encode(&raw.quote),
            "event_log": raw.event_log,
            "report_data": base64::engine::general_purpose::STANDARD.encode(rd),
            "vm_config": raw.vm_config,
            "tcb_info": raw.tcb_info,
            "nvidia_payload": nvidia_payload,
            "signer": self.signer.to_checksum(None),
            "source": self.source().as_str(),
            "config_hash": self.config_hash.to_string(),
            "config_in_rtmr3": self.config_in_rtmr3(),
            "tee_keys": serde_json::to_value(&self.tee_keys).unwrap_or_default(),
        });
        let Some(obj) = body.as_object_mut() else {
            return Ok(body);
        };
        if let (Some(n), Some(d)) = (nonce, document) {
            obj.insert("nonce".into(), hex::encode(n).into());
            obj.insert(
                "attestation_document".into(),
                serde_json::to_value(d).unwrap_or_default(),
            );
        }
        if self.is_dev() {
            obj.insert("dev".into(), true.into());
            obj.insert("attestation".into(), "dev".into());
            obj.insert(
                "warning".into(),
                "INSECURE dev attestation source: no TEE, no quote; verifiers reject it unless told --allow-dev-quote"
                    .into(),
            );
        }
        Ok(body)
    }
}

/// The HKDF info of a task's checkpoint key: `checkpoint/<task id>` (a key path below the dataset
/// key's, which already names the config).
pub fn checkpoint_key_info(task_id: &str) -> String {
    format!("checkpoint/{task_id}")
}

/// The key derivation path of the dataset key: `<signer key path>/dataset`, so it changes with the
/// config hash as the signer does (a changed config cannot open datasets sealed to the old key).
pub fn dataset_key_path(signer_key_path: &str) -> String {
    format!("{signer_key_path}/dataset")
}

/// The key derivation path of the worker's TLS key: `<signer key path>/tls` (see
/// [`dataset_key_path`]; [`crate::tls`] turns the derived secret into an Ed25519 key).
pub fn tls_key_path(signer_key_path: &str) -> String {
    format!("{signer_key_path}/tls")
}

/// The key derivation path of the TEE signer for the config `config_hash`:
/// `<key_path>/config/<config hash, 64 hex digits>`.
pub fn signer_key_path(key_path: &str, config_hash: B256) -> String {
    format!("{key_path}/config/{}", hex::encode(config_hash))
}

fn dev_forbidden() -> bool {
    std::env::var_os(FORBID_DEV_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Layout (a): the ASCII EIP-55 `0x…` address (42 bytes) zero-padded to 64.
pub fn ascii_report_data(signer: Address) -> [u8; 64] {
    let mut out = [0u8; 64];
    let text = signer.to_checksum(None);
    for (dst, src) in out.iter_mut().zip(text.as_bytes()) {
        *dst = *src;
    }
    out
}

/// The 64 report_data bytes inside a TDX quote v4 or v5 (PROTOCOL.md §7), or `None` when the
/// bytes are too short or not a TDX quote.
pub fn quote_report_data(quote: &[u8]) -> Option<[u8; 64]> {
    let version = u16::from_le_bytes(quote.get(0..2)?.try_into().ok()?);
    let tee_type = u32::from_le_bytes(quote.get(4..8)?.try_into().ok()?);
    if tee_type != 0x81 {
        return None;
    }
    let start = match version {
        4 => 568,
        5 => 574,
        _ => return None,
    };
    quote.get(start..start + 64)?.try_into().ok()
}

fn check_quote_report_data(
    kind: SourceKind,
    quote: &[u8],
    expected: &[u8; 64],
) -> Result<(), AttestError> {
    match quote_report_data(quote) {
        Some(got) if got == *expected => Ok(()),
        got => Err(AttestError::ReportDataMismatch {
            source_kind: kind,
            expected: hex::encode(expected),
            got: got.map_or_else(|| "not a TDX v4/v5 quote".into(), hex::encode),
        }),
    }
}

fn read_record(path: &Path) -> Result<Option<SignerRecord>, AttestError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| AttestError::file(path, format!("corrupt signer record: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AttestError::file(path, e)),
    }
}

fn write_record(path: &Path, address: Address, source: SourceKind) -> Result<(), AttestError> {
    let json = serde_json::to_vec_pretty(&SignerRecord { address, source })
        .map_err(|e| AttestError::file(path, e))?;
    write_atomic(path, &json, 0o644)
}

/// Writes `bytes` to a temporary file next to `path`, syncs it, and renames it over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AttestError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| AttestError::file(dir, e))?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| AttestError::file(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| AttestError::file(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| AttestError::file(path, e))
}
