//! The provider's HTTP API (PROTOCOL.md §2), as a typed client.
//!
//! [`ProviderApi`] knows nothing of keys: callers pass the signatures built with
//! `sealtune_protocol::request`. Bodies from the provider are untrusted: every answer is parsed into
//! a typed value or a [`ClientError::BadResponse`], JSON answers are bounded in size, and downloads
//! stream to disk with bounded memory.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, Keccak256};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{ClientError, Result};
use crate::progress::Progress;
use crate::tls::{ProviderTls, SpkiVerifier};

/// Largest JSON or text answer read into memory (task lists, logs, quotes): 32 MiB.
pub const MAX_JSON_BYTES: usize = 32 << 20;

/// A task as the provider reports it (`GET /v1/user/:addr/task/:id`). Fields the provider does not
/// send are `None`; unknown fields are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// The task id (a UUID).
    pub id: String,
    /// Creation time (RFC 3339).
    #[serde(default)]
    pub created_at: Option<String>,
    /// Last update (RFC 3339).
    #[serde(default)]
    pub updated_at: Option<String>,
    /// The customer.
    #[serde(default)]
    pub user_address: Option<String>,
    /// The base model's hash.
    #[serde(default)]
    pub pre_trained_model_hash: Option<String>,
    /// The dataset hash.
    #[serde(default)]
    pub dataset_hash: Option<String>,
    /// The training parameters (a JSON string).
    #[serde(default)]
    pub training_params: Option<String>,
    /// The fee (decimal neuron), once computed.
    #[serde(default, deserialize_with = "de_lenient_string")]
    pub fee: Option<String>,
    /// The task nonce (decimal).
    #[serde(default, deserialize_with = "de_lenient_string")]
    pub nonce: Option<String>,
    /// The state: `Init`, `SettingUp`, `SetUp`, `Training`, `Trained`, `Delivering`, `Delivered`,
    /// `UserAcknowledged`, `Finished` or `Failed`.
    #[serde(default)]
    pub progress: Option<String>,
    /// Position of the deliverable.
    #[serde(default)]
    pub deliver_index: Option<serde_json::Value>,
    /// When it was delivered.
    #[serde(default)]
    pub deliver_time: Option<serde_json::Value>,
    /// Whether it was queued behind other tasks.
    #[serde(default)]
    pub wait: Option<bool>,
    /// Anything else the provider sent.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn de_lenient_string<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}

pub use sealtune_protocol::api::CreateTaskBody;
use sealtune_protocol::api::SignedBody;

/// A model the provider offers (`GET /v1/model`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelInfo {
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Its hash (what `preTrainedModelHash` carries).
    #[serde(default)]
    pub hash: String,
    /// `text` or `image`.
    #[serde(default)]
    pub data_type: Option<String>,
    /// Its description.
    #[serde(default)]
    pub description: Option<String>,
    /// Its tokenizer (a Hugging Face repo id or similar).
    #[serde(default)]
    pub tokenizer: Option<String>,
    /// Anything else the provider sent.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The answer to a dataset upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetUpload {
    /// `keccak256` of the uploaded bytes, as the provider computed it.
    pub dataset_hash: String,
    /// Anything else the provider sent.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The raw `/v1/quote` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteResponse {
    /// The body as received (GetQuote JSON).
    pub body: Vec<u8>,
    /// The `ZG-Quote-Signature` header of newer 0G brokers, when present.
    pub quote_signature: Option<String>,
}

/// A finished download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Downloaded {
    /// Bytes written.
    pub bytes: u64,
    /// keccak256 of the bytes, computed while streaming.
    pub keccak: B256,
}

/// The provider's HTTP API at one base URL.
#[derive(Debug, Clone)]
pub struct ProviderApi {
    base: String,
    http: reqwest::Client,
    /// The key-pinning verifier of its HTTPS connections ([`ProviderTls::Pinned`] / `Observe`).
    verifier: Option<Arc<SpkiVerifier>>,
}

impl ProviderApi {
    /// A client for the API at a plain `http://` `url` (the service's registered URL, without
    /// `/v1`). An `https://` URL is refused ([`ClientError::TlsNotPinned`]): it needs
    /// [`Self::with_tls`] and a pinned key (`crate::tls`).
    pub fn new(url: &str) -> Result<Self> {
        Self::with_tls(url, None)
    }

    /// A client for the API at `url`, its HTTPS connections checked as `tls` says (`None`: plain
    /// HTTP only).
    pub fn with_tls(url: &str, tls: Option<ProviderTls>) -> Result<Self> {
        let base = url.trim().trim_end_matches('/').to_owned();
        let parsed: reqwest::Url = base.parse().map_err(|e| {
            ClientError::InvalidInput(format!("provider URL {url:?} is not a URL: {e}"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ClientError::InvalidInput(format!(
                "provider URL {url:?} must be http:// or https://"
            )));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            // An idle timeout, not a total one: large models stream for long, stalled ones stop.
            .read_timeout(Duration::from_secs(120))
            .user_agent(concat!("sealtune/", env!("CARGO_PKG_VERSION")));
        let verifier = match tls {
            Some(ProviderTls::Pinned(key)) => Some(Arc::new(SpkiVerifier::new(Some(key)))),
            Some(ProviderTls::Observe) => Some(Arc::new(SpkiVerifier::new(None))),
            Some(ProviderTls::Ca) => None,
            None if crate::tls::is_https(url) => {
                return Err(ClientError::TlsNotPinned {
                    provider: None,
                    url: url.to_owned(),
                });
            }
            None => None,
        };
        if tls.is_some() {
            // A redirect would leave the checked channel (to plain HTTP, or another host).
            builder = builder
                .https_only(true)
                .redirect(reqwest::redirect::Policy::none());
        }
        if let Some(v) = &verifier {
            builder = builder.tls_backend_preconfigured(crate::tls::client_config(v.clone())?);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            base,
            http,
            verifier,
        })
    }

    /// The SubjectPublicKeyInfo hashes of the TLS keys presented so far (`Observe` / `Pinned`).
    pub fn tls_keys_seen(&self) -> Vec<B256> {
        self.verifier.as_ref().map(|v| v.seen()).unwrap_or_default()
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn user_path(user: Address) -> String {
        format!("/v1/user/{}", user.to_checksum(None))
    }

    async fn send(
        &self,
        method: &'static str,
        url: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let resp = req.send().await.map_err(|e| {
            match self
                .verifier
                .as_ref()
                .and_then(|v| Some((v.expected()?, v.refused()?)))
            {
                Some((expected, got)) => ClientError::TlsKeyNotAttested {
                    url: url.to_owned(),
                    expected,
                    got,
                },
                None => ClientError::Unreachable {
                    url: url.to_owned(),
                    message: error_chain(&e),
                },
            }
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = read_limited(resp, 64 * 1024).await.unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(&body);
                let t = text.trim();
                if t.is_empty() {
                    "(empty body)".to_owned()
                } else {
                    t.chars().take(500).collect()
                }
            });
        Err(ClientError::Http {
            method,
            url: url.to_owned(),
            status,
            message,
        })
    }

    async fn get_bytes(&self, path: &str) -> Result<(Vec<u8>, reqwest::header::HeaderMap)> {
        let url = self.url(path);
        let resp = self.send("GET", &url, self.http.get(&url)).await?;
        let headers = resp.headers().clone();
        let body = read_limited(resp, MAX_JSON_BYTES).await.map_err(|detail| {
            ClientError::BadResponse {
                url: url.clone(),
                detail,
            }
        })?;
        Ok((body, headers))
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<T> {
        let (body, _) = self.get_bytes(path).await?;
        parse_json(&self.url(path), &body)
    }

    async fn get_text(&self, path: &str) -> Result<String> {
        let (body, _) = self.get_bytes(path).await?;
        String::from_utf8(body).map_err(|_| ClientError::BadResponse {
            url: self.url(path),
            detail: "not UTF-8 text".into(),
        })
    }

    /// `POST /v1/user/:addr/task`: returns the new task id.
    pub async fn create_task(&self, user: Address, body: &CreateTaskBody) -> Result<String> {
        let url = self.url(&format!("{}/task", Self::user_path(user)));
        let resp = self
            .send("POST", &url, self.http.post(&url).json(body))
            .await?;
        let body = read_limited(resp, MAX_JSON_BYTES).await.map_err(|detail| {
            ClientError::BadResponse {
                url: url.clone(),
                detail,
            }
        })?;
        #[derive(Deserialize)]
        struct Created {
            id: String,
        }
        let created: Created = parse_json(&url, &body)?;
        sealtune_protocol::request::parse_task_id(&created.id).map_err(|_| {
            ClientError::BadResponse {
                url,
                detail: format!("task id {:?} is not a UUID", created.id),
            }
        })?;
        Ok(created.id)
    }

    /// `GET /v1/user/:addr/task/:id`.
    pub async fn task(&self, user: Address, id: &str) -> Result<Task> {
        self.get_json(&format!("{}/task/{id}", Self::user_path(user)))
            .await
    }

    /// `GET /v1/user/:addr/task` (newest first with `latest`).
    pub async fn tasks(&self, user: Address, latest: bool) -> Result<Vec<Task>> {
        let q = if latest { "?latest=true" } else { "" };
        self.get_json(&format!("{}/task{q}", Self::user_path(user)))
            .await
    }

    /// `GET /v1/user/:addr/task/:id/log`: the progress log, lines `[RFC3339] message`.
    pub async fn log(&self, user: Address, id: &str) -> Result<String> {
        self.get_text(&format!("{}/task/{id}/log", Self::user_path(user)))
            .await
    }

    /// `GET /v1/user/:addr/task/:id/report`: the signed training report (unchecked here).
    pub async fn report(
        &self,
        user: Address,
        id: &str,
    ) -> Result<sealtune_protocol::report::SignedReport> {
        self.get_json(&format!("{}/task/{id}/report", Self::user_path(user)))
            .await
    }

    /// `GET /v1/user/:addr/task/:id/checkpoints`: the task's sealed training checkpoints.
    pub async fn checkpoints(
        &self,
        user: Address,
        id: &str,
    ) -> Result<Vec<sealtune_protocol::api::CheckpointInfo>> {
        self.get_json(&format!("{}/task/{id}/checkpoints", Self::user_path(user)))
            .await
    }

    /// `POST /v1/user/:addr/task/:id/cancel` with the cancel signature.
    pub async fn cancel_task(&self, user: Address, id: &str, signature: &str) -> Result<String> {
        let url = self.url(&format!("{}/task/{id}/cancel", Self::user_path(user)));
        let req = self.http.post(&url).json(&SignedBody {
            signature: signature.to_owned(),
            timestamp: None,
        });
        let resp = self.send("POST", &url, req).await?;
        let body = read_limited(resp, 64 * 1024).await.unwrap_or_default();
        Ok(String::from_utf8_lossy(&body).trim().to_owned())
    }

    /// `GET /v1/task/pending`: tasks queued or running at the provider.
    pub async fn pending(&self) -> Result<u64> {
        let text = self.get_text("/v1/task/pending").await?;
        text.trim().parse().map_err(|_| ClientError::BadResponse {
            url: self.url("/v1/task/pending"),
            detail: format!(
                "not an integer: {:?}",
                text.chars().take(40).collect::<String>()
            ),
        })
    }

    /// [`ProviderApi::pending`] of the provider at `url`, `None` when it cannot say (unreachable,
    /// or an unreadable answer).
    pub async fn pending_at(url: &str) -> Option<u64> {
        Self::new(url).ok()?.pending().await.ok()
    }

    /// `GET /v1/model`.
    pub async fn models(&self) -> Result<Vec<ModelInfo>> {
        self.get_json("/v1/model").await
    }

    /// `GET /v1/model/:nameOrHash`.
    pub async fn model(&self, name_or_hash: &str) -> Result<ModelInfo> {
        let enc: String = name_or_hash
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        self.get_json(&format!("/v1/model/{enc}")).await
    }

    /// `GET /v1/quote[?nonce=<64 hex>]`.
    pub async fn quote(&self, nonce: Option<&[u8; 32]>) -> Result<QuoteResponse> {
        let path = match nonce {
            Some(n) => format!("/v1/quote?nonce={}", hex::encode(n)),
            None => "/v1/quote".to_owned(),
        };
        let (body, headers) = self.get_bytes(&path).await?;
        let quote_signature = headers
            .get("ZG-Quote-Signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(QuoteResponse {
            body,
            quote_signature,
        })
    }

    /// `POST /v1/user/:addr/dataset`: stream `path` as the multipart `file` with the upload
    /// signature made at `timestamp` for the checksummed address.
    pub async fn upload_dataset(
        &self,
        user: Address,
        path: &Path,
        signature: &str,
        timestamp: u64,
        progress: Arc<dyn Progress>,
    ) -> Result<DatasetUpload> {
        let url = self.url(&format!("{}/dataset", Self::user_path(user)));
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ClientError::io(path, e))?;
        let len = file
            .metadata()
            .await
            .map_err(|e| ClientError::io(path, e))?
            .len();
        progress.set_total(len);
        let stream =
            futures_util::stream::try_unfold((file, progress.clone()), |(mut f, p)| async move {
                let mut buf = vec![0u8; 256 * 1024];
                let n = f.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<_, std::io::Error>(None);
                }
                buf.truncate(n);
                p.advance(n as u64);
                Ok(Some((buf, (f, p))))
            });
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "dataset.jsonl".into());
        let part =
            reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), len)
                .file_name(name)
                .mime_str("application/octet-stream")
                .map_err(|e| ClientError::InvalidInput(e.to_string()))?;
        let form = reqwest::multipart::Form::new()
            .text("signature", signature.to_owned())
            .text("timestamp", timestamp.to_string())
            .part("file", part);
        let result = self
            .send("POST", &url, self.http.post(&url).multipart(form))
            .await;
        progress.finish();
        let resp = result?;
        let body = read_limited(resp, MAX_JSON_BYTES).await.map_err(|detail| {
            ClientError::BadResponse {
                url: url.clone(),
                detail,
            }
        })?;
        parse_json(&url, &body)
    }

    /// `POST /v1/user/:addr/task/:id/lora`: stream the encrypted deliverable into `dest` (created or
    /// truncated), hashing it on the way. On failure `dest` is removed.
    pub async fn download_lora(
        &self,
        user: Address,
        id: &str,
        signature: &str,
        timestamp: u64,
        dest: &Path,
        progress: &dyn Progress,
    ) -> Result<Downloaded> {
        let url = self.url(&format!("{}/task/{id}/lora", Self::user_path(user)));
        let req = self.http.post(&url).json(&SignedBody {
            signature: signature.to_owned(),
            timestamp: Some(timestamp.into()),
        });
        let resp = self.send("POST", &url, req).await?;
        if let Some(len) = resp.content_length() {
            progress.set_total(len);
        }
        let result = stream_to_file(resp, &url, dest, progress).await;
        progress.finish();
        if result.is_err() {
            let _ = tokio::fs::remove_file(dest).await;
        }
        result
    }
}

async fn stream_to_file(
    mut resp: reqwest::Response,
    url: &str,
    dest: &Path,
    progress: &dyn Progress,
) -> Result<Downloaded> {
    let mut file = tokio::fs::File::create(dest)
        .await
        .map_err(|e| ClientError::io(dest, e))?;
    let mut hasher = Keccak256::new();
    let mut bytes = 0u64;
    loop {
        let chunk = resp.chunk().await.map_err(|e| ClientError::Unreachable {
            url: url.to_owned(),
            message: format!(
                "download interrupted after {bytes} bytes: {}",
                error_chain(&e)
            ),
        })?;
        let Some(chunk) = chunk else { break };
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| ClientError::io(dest, e))?;
        bytes = bytes.saturating_add(chunk.len() as u64);
        progress.advance(chunk.len() as u64);
    }
    file.flush().await.map_err(|e| ClientError::io(dest, e))?;
    file.sync_all()
        .await
        .map_err(|e| ClientError::io(dest, e))?;
    if bytes == 0 {
        return Err(ClientError::BadResponse {
            url: url.to_owned(),
            detail: "empty deliverable".into(),
        });
    }
    Ok(Downloaded {
        bytes,
        keccak: hasher.finalize(),
    })
}

/// Read a response body, refusing more than `limit` bytes.
async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| error_chain(&e))? {
        if out.len().saturating_add(chunk.len()) > limit {
            return Err(format!("answer larger than {limit} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn parse_json<T: for<'de> Deserialize<'de>>(url: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| ClientError::BadResponse {
        url: url.to_owned(),
        detail: format!("invalid JSON: {e}"),
    })
}

/// An error with its sources (reqwest's top-level message hides the cause, e.g. "connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
