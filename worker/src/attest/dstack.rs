//! The dstack guest agent (`/var/run/dstack.sock`: `GetKey`, `GetQuote`, `Info`) and the legacy
//! tappd agent (`/var/run/tappd.sock`: `Tappd.DeriveKey`, `Tappd.TdxQuote`, `Tappd.Info`), both
//! JSON over HTTP/1.1 on a unix socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::primitives::{B256, keccak256};
use base64::Engine as _;
use k256::ecdsa::SigningKey;
use sealtune_protocol::attestation::CONFIG_EVENT;
use serde::Deserialize;

use super::{AttestError, QuoteSource, RawQuote, SourceKind};

/// Domain separator for turning tappd's P-256 key material into the secp256k1 TEE signer.
const TAPPD_KEY_DOMAIN: &[u8] = b"sealtune/tappd-tee-signer/v1:";
/// Largest agent answer accepted (a quote with its event log is ~20 KiB).
const MAX_AGENT_RESPONSE: usize = 4 << 20;

/// HTTP-over-unix-socket JSON RPC shared by both agents.
#[derive(Debug)]
struct AgentClient {
    kind: SourceKind,
    socket: PathBuf,
    http: reqwest::Client,
}

impl AgentClient {
    fn new(kind: SourceKind, socket: &Path, timeout_secs: u64) -> Result<Self, AttestError> {
        let http = reqwest::Client::builder()
            .unix_socket(socket)
            .timeout(Duration::from_secs(timeout_secs.max(1)))
            .build()
            .map_err(|e| AttestError::Agent {
                source_kind: kind,
                socket: socket.to_path_buf(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            kind,
            socket: socket.to_path_buf(),
            http,
        })
    }

    fn agent_error(&self, reason: impl std::fmt::Display) -> AttestError {
        AttestError::Agent {
            source_kind: self.kind,
            socket: self.socket.clone(),
            reason: reason.to_string(),
        }
    }

    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        what: &'static str,
        body: &serde_json::Value,
    ) -> Result<T, AttestError> {
        let host = match self.kind {
            SourceKind::Tappd => "tappd",
            _ => "dstack",
        };
        let resp = self
            .http
            .post(format!("http://{host}{path}"))
            .json(body)
            .send()
            .await
            .map_err(|e| self.agent_error(format!("{path}: {e}")))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.agent_error(format!("{path}: reading the answer: {e}")))?;
        if bytes.len() > MAX_AGENT_RESPONSE {
            return Err(self.bad(what, format!("{} bytes is too large", bytes.len())));
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(bytes.get(..512).unwrap_or(&bytes));
            return Err(self.agent_error(format!("{path}: HTTP {status}: {text}")));
        }
        serde_json::from_slice(&bytes).map_err(|e| self.bad(what, e))
    }

    fn bad(&self, what: &'static str, reason: impl std::fmt::Display) -> AttestError {
        AttestError::BadResponse {
            source_kind: self.kind,
            what,
            reason: reason.to_string(),
        }
    }
}

fn decode_hex(s: &str) -> Result<Vec<u8>, hex::FromHexError> {
    let s = s.trim();
    hex::decode(s.strip_prefix("0x").unwrap_or(s))
}

/// `GetQuote` / `TdxQuote` answer.
#[derive(Debug, Deserialize)]
struct QuoteResponse {
    quote: String,
    #[serde(default)]
    event_log: Option<String>,
    #[serde(default)]
    vm_config: Option<serde_json::Value>,
}

/// `Info` answer: only `tcb_info` is used (a JSON string containing `app_compose`).
#[derive(Debug, Deserialize)]
struct InfoResponse {
    #[serde(default)]
    tcb_info: Option<serde_json::Value>,
}

fn tcb_info_string(info: InfoResponse) -> Option<String> {
    match info.tcb_info? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// The dstack guest agent.
#[derive(Debug)]
pub struct DstackSource {
    client: AgentClient,
}

impl DstackSource {
    /// A client of the agent at `socket` (nothing is contacted yet).
    pub fn new(socket: &Path, timeout_secs: u64) -> Result<Self, AttestError> {
        Ok(Self {
            client: AgentClient::new(SourceKind::Dstack, socket, timeout_secs)?,
        })
    }

    /// `GetKey {path, purpose: "signing", algorithm: "secp256k1"}`: the app's key for `path`,
    /// derived by the KMS, the same on every boot of the same app.
    pub async fn get_key(&self, path: &str) -> Result<SigningKey, AttestError> {
        #[derive(Deserialize)]
        struct GetKey {
            key: String,
        }
        let body =
            serde_json::json!({"path": path, "purpose": "signing", "algorithm": "secp256k1"});
        let r: GetKey = self.client.call("/GetKey", "GetKey", &body).await?;
        let bytes = decode_hex(&r.key).map_err(|e| self.client.bad("GetKey", e))?;
        SigningKey::from_slice(&bytes).map_err(|_| AttestError::BadKey {
            what: format!("dstack GetKey({path}) ({} bytes)", bytes.len()),
        })
    }

    /// Records the config hash as the RTMR3 runtime event
    /// [`CONFIG_EVENT`](sealtune_protocol::attestation::CONFIG_EVENT), once per boot: the event log
    /// (read through `GetQuote`) decides. No such event yet: `EmitEvent`; the same hash already
    /// recorded (a worker restart): nothing; another hash: refused, because RTMR3 would then carry
    /// two configs and no verifier could tell which one serves (reboot the CVM to change the config).
    pub async fn record_config(&self, config_hash: B256) -> Result<(), AttestError> {
        let raw = self.quote([0u8; 64]).await?;
        let recorded = config_events(raw.event_log.as_deref())
            .map_err(|e| self.client.bad("GetQuote event_log", e))?;
        let ours = hex::encode(config_hash);
        match recorded.as_slice() {
            [] => {
                let body = serde_json::json!({"event": CONFIG_EVENT, "payload": ours});
                let _: serde_json::Value =
                    self.client.call("/EmitEvent", "EmitEvent", &body).await?;
                tracing::info!(config_hash = %config_hash, "config hash recorded in RTMR3");
                Ok(())
            }
            [one] if one.eq_ignore_ascii_case(&ours) => Ok(()),
            _ => Err(AttestError::ConfigChanged {
                recorded: recorded.join(", "),
                now: ours,
            }),
        }
    }

    /// `Info`: the `tcb_info` JSON string.
    pub async fn tcb_info(&self) -> Result<Option<String>, AttestError> {
        let info: InfoResponse = self
            .client
            .call("/Info", "Info", &serde_json::json!({}))
            .await?;
        Ok(tcb_info_string(info))
    }
}

impl QuoteSource for DstackSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Dstack
    }

    async fn quote(&self, report_data: [u8; 64]) -> Result<RawQuote, AttestError> {
        let body = serde_json::json!({"report_data": hex::encode(report_data)});
        let r: QuoteResponse = self.client.call("/GetQuote", "GetQuote", &body).await?;
        let quote = decode_hex(&r.quote).map_err(|e| self.client.bad("GetQuote", e))?;
        let tcb_info = self.tcb_info().await?;
        Ok(RawQuote {
            quote,
            event_log: r.event_log,
            vm_config: r.vm_config,
            tcb_info,
        })
    }
}

/// The payloads (hex) of the [`CONFIG_EVENT`] runtime events in a dstack event log (a JSON array).
fn config_events(event_log: Option<&str>) -> Result<Vec<String>, String> {
    let Some(text) = event_log.filter(|t| !t.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    let events: Vec<serde_json::Value> =
        serde_json::from_str(text).map_err(|e| format!("not a JSON array of events: {e}"))?;
    Ok(events
        .iter()
        .filter(|e| e.get("event").and_then(|v| v.as_str()) == Some(CONFIG_EVENT))
        .map(|e| {
            e.get("event_payload")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        })
        .collect())
}

/// The legacy tappd agent.
#[derive(Debug)]
pub struct TappdSource {
    client: AgentClient,
}

impl TappdSource {
    /// A client of the agent at `socket` (nothing is contacted yet).
    pub fn new(socket: &Path, timeout_secs: u64) -> Result<Self, AttestError> {
        Ok(Self {
            client: AgentClient::new(SourceKind::Tappd, socket, timeout_secs)?,
        })
    }

    /// `Tappd.DeriveKey {path, subject}` returns a P-256 key as PEM, stable for the app and path;
    /// the TEE signer is `keccak256("sealtune/tappd-tee-signer/v1:" ‖ DER)` as a secp256k1 key.
    pub async fn derive_key(&self, path: &str) -> Result<SigningKey, AttestError> {
        #[derive(Deserialize)]
        struct DeriveKey {
            key: String,
        }
        let body = serde_json::json!({"path": path, "subject": "sealtune-tee-signer"});
        let r: DeriveKey = self
            .client
            .call("/prpc/Tappd.DeriveKey?json", "DeriveKey", &body)
            .await?;
        let der = pem_body(&r.key).ok_or_else(|| {
            self.client
                .bad("DeriveKey", "key is not a PEM document with a base64 body")
        })?;
        let mut input = TAPPD_KEY_DOMAIN.to_vec();
        input.extend_from_slice(&der);
        let seed = keccak256(&input);
        SigningKey::from_slice(seed.as_slice()).map_err(|_| AttestError::BadKey {
            what: format!("tappd DeriveKey({path}) digest"),
        })
    }
}

impl QuoteSource for TappdSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Tappd
    }

    async fn quote(&self, report_data: [u8; 64]) -> Result<RawQuote, AttestError> {
        let body = serde_json::json!({
            "report_data": hex::encode(report_data),
            "hash_algorithm": "raw",
        });
        let r: QuoteResponse = self
            .client
            .call("/prpc/Tappd.TdxQuote?json", "TdxQuote", &body)
            .await?;
        let quote = decode_hex(&r.quote).map_err(|e| self.client.bad("TdxQuote", e))?;
        let info: InfoResponse = self
            .client
            .call("/prpc/Tappd.Info?json", "Info", &serde_json::json!({}))
            .await?;
        Ok(RawQuote {
            quote,
            event_log: r.event_log,
            vm_config: r.vm_config,
            tcb_info: tcb_info_string(info),
        })
    }
}

/// The decoded base64 body of a PEM document (first block).
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let mut inside = false;
    let mut b64 = String::new();
    for line in pem.lines() {
        let line = line.trim();
        if line.starts_with("-----BEGIN") {
            inside = true;
        } else if line.starts_with("-----END") {
            break;
        } else if inside {
            b64.push_str(line);
        }
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .ok()?;
    (!der.is_empty()).then_some(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_body_decodes_the_first_block_only() {
        let pem = "-----BEGIN PRIVATE KEY-----\nAQID\nBA==\n-----END PRIVATE KEY-----\n-----BEGIN X-----\nBQ==\n-----END X-----\n";
        assert_eq!(pem_body(pem), Some(vec![1, 2, 3, 4]));
        assert_eq!(pem_body("no pem here"), None);
        assert_eq!(pem_body("-----BEGIN K-----\n!!\n-----END K-----"), None);
    }
}
