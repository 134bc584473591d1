//! A **test fixture** standing in for a provider's HTTP byte path (`/lora` download, `/v1/quote`,
//! `/v1/task/pending`, create-task and dataset upload) for the customer library's tests: a minimal
//! HTTP/1.1 server on loopback that checks the customer's real signatures with `sealtune_protocol` and
//! records what it accepted. It is not a provider (the worker is; see [`crate::stack`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use alloy::primitives::{Address, U256};
use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How the fixture answers `/v1/quote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevQuote {
    /// Dev attestation binding the attestation document v2 for the client's nonce.
    WithNonce,
    /// Dev attestation in the 0G ASCII layout, ignoring the nonce.
    AsciiLayout,
    /// Dev attestation binding another signer.
    WrongSigner,
    /// A relayed answer: an honest worker's document fetched with the attacker's own nonce
    /// (`attacker ‖ 0¹²`), whatever nonce the client sent.
    Relayed,
    /// Not a dev answer: the real TDX quote `tests/fixtures/tdx/tdx_quote` alone (its collateral is
    /// `tdx/tdx_quote_collateral.json`; it binds no signer and no nonce, and has no event log).
    RecordedHardware,
    /// Not a provider's quote: the real SGX enclave quote `tests/fixtures/tdx/sgx_quote`.
    RecordedSgx,
}

/// A create-task request the fixture accepted after verifying its signature.
#[derive(Debug, Clone)]
pub struct ReceivedTask {
    /// The id the fixture gave it.
    pub id: String,
    /// The signing customer.
    pub user: Address,
    /// Which signed form it used.
    pub form: sealtune_protocol::request::CreateTaskForm,
    /// The fee ceiling it signed, in the fee-bound form.
    pub fee_ceiling: Option<U256>,
    /// The task nonce.
    pub nonce: U256,
    /// The dataset's hash.
    pub dataset_hash: String,
    /// `preTrainedModelHash`.
    pub model_hash: String,
    /// `trainingParams`.
    pub training_params: String,
    /// `wait`.
    pub wait: bool,
}

/// The config hash the fixture's attestation documents carry.
pub const FIXTURE_CONFIG_HASH: alloy::primitives::B256 = alloy::primitives::B256::repeat_byte(0xc0);

/// The app-compose the fixture's dev answers serve: the shipped `deploy/app-compose.json`, as the
/// worker's dev source does, so the dev policy's compose hash holds.
pub const FIXTURE_APP_COMPOSE: &str = include_str!("../../deploy/app-compose.json");

/// The `event_log` and `tcb_info` (JSON strings) of a dev answer recording `app_compose` and
/// `config_hash`, built as the worker's dev source builds them (the harness cannot depend on the
/// worker; `worker/tests/attest_dev.rs` checks the two logs are the same): dstack's system events
/// and the `sealtune-config` event on RTMR3 (V1 digests), and `tcb_info.rtmr3` the log replays to.
pub fn dev_attestation_fields(
    app_compose: &str,
    signer: Address,
    config_hash: alloy::primitives::B256,
) -> (String, String) {
    use sealtune_protocol::dstack::{RUNTIME_EVENT_TYPE, extend_rtmr, runtime_event_digest_v1};
    let compose_hash =
        sealtune_protocol::attestation::FileDigest::of(app_compose.as_bytes()).sha256;
    let instance_preimage = [b"sealtune-dev-instance:".as_slice(), signer.as_slice()].concat();
    let instance = sealtune_protocol::attestation::FileDigest::of(&instance_preimage).sha256;
    let events: [(&str, Vec<u8>); 9] = [
        ("system-preparing", Vec::new()),
        ("app-id", compose_hash[..20].to_vec()),
        ("compose-hash", compose_hash.to_vec()),
        ("instance-id", instance[..20].to_vec()),
        ("boot-mr-done", Vec::new()),
        (
            "key-provider",
            br#"{"name":"dev","id":"sealtune-dev-key-file"}"#.to_vec(),
        ),
        ("storage-fs", b"dev".to_vec()),
        ("system-ready", Vec::new()),
        (
            sealtune_protocol::attestation::CONFIG_EVENT,
            config_hash.to_vec(),
        ),
    ];
    let mut rtmr3 = [0u8; 48];
    let list: Vec<serde_json::Value> = events
        .iter()
        .map(|(name, payload)| {
            let digest = runtime_event_digest_v1(name, payload);
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
    let tcb_info = serde_json::json!({
        "app_compose": app_compose,
        "compose_hash": hex::encode(compose_hash),
        "rtmr3": hex::encode(rtmr3),
        "dev": true,
    });
    (
        serde_json::Value::Array(list).to_string(),
        tcb_info.to_string(),
    )
}

/// The model hash the fixture serves for `SmolLM2-135M-Instruct`.
pub const MODEL_HASH: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";

#[derive(Default)]
struct FixtureState {
    /// task id → encrypted file served by `/lora`.
    files: HashMap<String, PathBuf>,
    /// Successful `/lora` requests.
    downloads: u32,
    /// Accepted create-task requests.
    tasks: Vec<ReceivedTask>,
    /// Accepted dataset uploads: (file name, bytes).
    uploads: Vec<(String, Vec<u8>)>,
    /// What `/v1/task/pending` answers.
    pending: u64,
}

/// TEST FIXTURE: a minimal HTTP/1.1 server standing in for the provider's byte path only (the
/// full provider is the worker). `/lora` checks the customer's real download signature with
/// `sealtune_protocol::request::verify_lora_download` before serving the registered file.
pub struct FixtureProvider {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    state: Arc<Mutex<FixtureState>>,
    quote_mode: Arc<Mutex<DevQuote>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FixtureProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FixtureProvider {
    /// Serves on a fresh loopback port; `tee` is the signer its dev quotes bind.
    pub async fn start(tee: Address) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(FixtureState::default()));
        let quote_mode = Arc::new(Mutex::new(DevQuote::WithNonce));
        let (s, q) = (state.clone(), quote_mode.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (s, q) = (s.clone(), q.clone());
                tokio::spawn(async move {
                    let _ = serve(sock, s, q, tee).await;
                });
            }
        });
        FixtureProvider {
            url,
            state,
            quote_mode,
            task,
        }
    }

    /// Serves `path` as the sealed model of `task_id` at `/lora`.
    pub fn serve_file(&self, task_id: &str, path: &Path) {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(task_id.to_owned(), path.to_path_buf());
    }

    /// How `/v1/quote` answers from now on.
    pub fn set_quote_mode(&self, mode: DevQuote) {
        *self
            .quote_mode
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = mode;
    }

    /// How many `/lora` requests succeeded.
    pub fn downloads(&self) -> u32 {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .downloads
    }

    /// The create-task requests accepted so far.
    pub fn tasks(&self) -> Vec<ReceivedTask> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tasks
            .clone()
    }

    /// The dataset uploads accepted so far: (file name, bytes).
    pub fn uploads(&self) -> Vec<(String, Vec<u8>)> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .uploads
            .clone()
    }

    /// Forgets everything recorded and served, and answers quotes [`DevQuote::WithNonce`] again (for a
    /// fixture shared by the cases of one test binary).
    pub fn reset(&self) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = FixtureState::default();
        self.set_quote_mode(DevQuote::WithNonce);
    }

    /// What `/v1/task/pending` answers from now on.
    pub fn set_pending(&self, n: u64) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pending = n;
    }
}

async fn serve(
    mut sock: tokio::net::TcpStream,
    state: Arc<Mutex<FixtureState>>,
    quote_mode: Arc<Mutex<DevQuote>>,
    tee: Address,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let chunked = header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let len: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    if chunked {
        while !body.ends_with(b"0\r\n\r\n") {
            let n = sock.read(&mut tmp).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&tmp[..n]);
        }
        body = dechunk(&body);
    } else {
        while body.len() < len {
            let n = sock.read(&mut tmp).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&tmp[..n]);
        }
    }
    let content_type = header("content-type").unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();

    let (status, ctype, payload): (u16, &str, Vec<u8>) = match (method.as_str(), segs.as_slice()) {
        ("GET", ["v1", "task", "pending"]) => {
            let n = state.lock().unwrap_or_else(PoisonError::into_inner).pending;
            (200, "text/plain", n.to_string().into_bytes())
        }
        ("GET", ["v1", "model", "SmolLM2-135M-Instruct"]) => {
            let doc = serde_json::json!({ "name": "SmolLM2-135M-Instruct", "hash": MODEL_HASH,
                "tokenizer": "HuggingFaceTB/SmolLM2-135M-Instruct", "dataType": "text" });
            (200, "application/json", doc.to_string().into_bytes())
        }
        ("POST", ["v1", "user", url_user, "task"]) => {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let field = |k: &str| {
                v.get(k)
                    .and_then(|x| x.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let verified = (|| {
                let task = sealtune_protocol::request::CreateTask::from_wire(
                    &field("userAddress"),
                    &field("nonce"),
                    &field("datasetHash"),
                    &field("fee"),
                )
                .ok()?;
                if !url_user.eq_ignore_ascii_case(&field("userAddress")) {
                    return None;
                }
                let sig = sealtune_protocol::request::parse_signature(&field("signature")).ok()?;
                let ok = task.verify(&sig).ok()?;
                Some((task, ok))
            })();
            match verified {
                None => (
                    400,
                    "application/json",
                    br#"{"error":"invalid create-task signature"}"#.to_vec(),
                ),
                Some((task, ok)) => {
                    let id = format!(
                        "00000000-0000-4000-8000-{:012x}",
                        state
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .tasks
                            .len()
                            + 1
                    );
                    state
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .tasks
                        .push(ReceivedTask {
                            id: id.clone(),
                            user: task.user,
                            form: ok.form,
                            fee_ceiling: ok.fee_ceiling,
                            nonce: task.nonce,
                            dataset_hash: task.dataset_hash,
                            model_hash: field("preTrainedModelHash"),
                            training_params: field("trainingParams"),
                            wait: v.get("wait").and_then(|w| w.as_bool()).unwrap_or(false),
                        });
                    (
                        201,
                        "application/json",
                        serde_json::json!({ "id": id }).to_string().into_bytes(),
                    )
                }
            }
        }
        ("POST", ["v1", "user", url_user, "dataset"]) => {
            let fields = multipart(&content_type, &body);
            let text = |k: &str| {
                fields
                    .iter()
                    .find(|f| f.0 == k)
                    .map(|f| String::from_utf8_lossy(&f.2).into_owned())
                    .unwrap_or_default()
            };
            let ok = (|| {
                let ts: u64 = text("timestamp").parse().ok()?;
                let sig = sealtune_protocol::request::parse_signature(&text("signature")).ok()?;
                sealtune_protocol::request::verify_dataset_upload(
                    url_user,
                    ts,
                    now_ms() / 1000,
                    &sig,
                )
                .ok()
            })();
            match (ok, fields.iter().find(|f| f.0 == "file")) {
                (Some(_), Some((_, name, data))) => {
                    let hash = alloy::primitives::keccak256(data).to_string();
                    state
                        .lock()
                        .unwrap()
                        .uploads
                        .push((name.clone(), data.clone()));
                    (
                        200,
                        "application/json",
                        serde_json::json!({ "datasetHash": hash })
                            .to_string()
                            .into_bytes(),
                    )
                }
                _ => (
                    401,
                    "application/json",
                    br#"{"error":"invalid upload signature or no file"}"#.to_vec(),
                ),
            }
        }
        ("GET", ["v1", "quote"])
            if matches!(
                *quote_mode.lock().unwrap_or_else(PoisonError::into_inner),
                DevQuote::RecordedHardware | DevQuote::RecordedSgx
            ) =>
        {
            let file = match *quote_mode.lock().unwrap_or_else(PoisonError::into_inner) {
                DevQuote::RecordedSgx => "tdx/sgx_quote",
                _ => "tdx/tdx_quote",
            };
            let quote = hex::encode(crate::fixture_bytes(file));
            (
                200,
                "application/json",
                serde_json::json!({ "quote": quote })
                    .to_string()
                    .into_bytes(),
            )
        }
        ("GET", ["v1", "quote"]) => {
            let nonce = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("nonce="))
                .and_then(|h| hex::decode(h).ok())
                .unwrap_or_default();
            let mode = *quote_mode.lock().unwrap_or_else(PoisonError::into_inner);
            let mut rd = [0u8; 64];
            let mut document = serde_json::Value::Null;
            match mode {
                DevQuote::WithNonce if nonce.len() == 32 => {
                    let d = sealtune_protocol::attestation::AttestationDocument::new(
                        tee,
                        alloy::primitives::B256::from_slice(&nonce),
                        FIXTURE_CONFIG_HASH,
                    );
                    rd = d.report_data();
                    document = serde_json::to_value(d).unwrap_or_default();
                }
                DevQuote::Relayed => {
                    let mut attackers = [0u8; 32];
                    attackers[..20].copy_from_slice(Address::repeat_byte(0x66).as_slice());
                    let d = sealtune_protocol::attestation::AttestationDocument::new(
                        tee,
                        attackers.into(),
                        FIXTURE_CONFIG_HASH,
                    );
                    rd = d.report_data();
                    document = serde_json::to_value(d).unwrap_or_default();
                }
                DevQuote::WrongSigner => {
                    let other = Address::repeat_byte(0x11).to_checksum(None);
                    rd[..42].copy_from_slice(other.as_bytes());
                }
                _ => {
                    let a = tee.to_checksum(None);
                    rd[..42].copy_from_slice(a.as_bytes());
                }
            }
            let (event_log, tcb_info) =
                dev_attestation_fields(FIXTURE_APP_COMPOSE, tee, FIXTURE_CONFIG_HASH);
            let doc = serde_json::json!({
                "dev": true,
                "quote": "",
                "report_data": base64::engine::general_purpose::STANDARD.encode(rd),
                "attestation_document": document,
                "event_log": event_log,
                "tcb_info": tcb_info,
            });
            (200, "application/json", doc.to_string().into_bytes())
        }
        ("POST", ["v1", "user", user, "task", id, "lora"]) => {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let sig = v
                .get("signature")
                .and_then(|s| s.as_str())
                .unwrap_or_default();
            let ts = v.get("timestamp").and_then(|t| t.as_u64()).unwrap_or(0);
            let now = now_ms() / 1000;
            let ok = (|| {
                let user: Address = user.parse().ok()?;
                let uuid = sealtune_protocol::request::parse_task_id(id).ok()?;
                let sig = sealtune_protocol::request::parse_signature(sig).ok()?;
                sealtune_protocol::request::verify_lora_download(user, &uuid, ts, now, &sig).ok()
            })();
            let file = state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .files
                .get(*id)
                .cloned();
            match (ok, file) {
                (None, _) => (
                    401,
                    "application/json",
                    br#"{"error":"invalid signature"}"#.to_vec(),
                ),
                (_, None) => (
                    404,
                    "application/json",
                    br#"{"error":"no such deliverable"}"#.to_vec(),
                ),
                (Some(_), Some(f)) => {
                    state
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .downloads += 1;
                    (200, "application/octet-stream", std::fs::read(f)?)
                }
            }
        }
        _ => (
            404,
            "application/json",
            br#"{"error":"not found"}"#.to_vec(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(&payload).await?;
    sock.shutdown().await
}

fn dechunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&rest[..i]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = i + 2;
        out.extend_from_slice(&rest[start..start + size]);
        rest = &rest[start + size + 2..];
    }
    out
}

/// (field name, file name, bytes) of each part of a multipart/form-data body.
fn multipart(content_type: &str, body: &[u8]) -> Vec<(String, String, Vec<u8>)> {
    let Some(boundary) = content_type.split("boundary=").nth(1) else {
        return Vec::new();
    };
    let delim = format!("--{}", boundary.trim_matches('"'));
    let mut out = Vec::new();
    let mut pos = 0;
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + from)
    };
    while let Some(start) = find(body, delim.as_bytes(), pos) {
        let head_start = start + delim.len() + 2;
        if head_start > body.len() || body[start + delim.len()..].starts_with(b"--") {
            break;
        }
        let Some(head_end) = find(body, b"\r\n\r\n", head_start) else {
            break;
        };
        let head = String::from_utf8_lossy(&body[head_start..head_end]).into_owned();
        let Some(next) = find(body, delim.as_bytes(), head_end) else {
            break;
        };
        let data = body[head_end + 4..next - 2].to_vec();
        let attr = |k: &str| {
            head.split(';')
                .filter_map(|p| p.trim().strip_prefix(&format!("{k}=\"")))
                .map(|v| v.split('"').next().unwrap_or_default().to_owned())
                .next()
                .unwrap_or_default()
        };
        out.push((attr("name"), attr("filename"), data));
        pos = next;
    }
    out
}
