//! Shared harness of the client tests: a real anvil with the real contracts deployed by
//! `sealtune_contracts::deploy`, a registered provider service, and a **test fixture** standing in
//! for the provider's HTTP byte path (`/lora` download, `/v1/quote`, `/v1/task/pending`) until the
//! worker exists. The fixture checks the customer's real download signatures; it is not a provider.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use base64::Engine;
use sealtune_client::chain::{Chain, Contracts};
use sealtune_client::flow::Client;
use sealtune_contracts::bindings::FineTuningServing::{self, Quota, VerifierInput};
use sealtune_contracts::{DeployConfig, Deployment, acknowledge_tee_signer, deploy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const GWEI_PRICE: u64 = 1_000;

pub fn ether(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18))
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn start_anvil() -> AnvilInstance {
    let path = repo_root().join("node_modules/.bin/anvil");
    assert!(
        path.exists(),
        "anvil not found at {}: run scripts/setup (it installs the pinned anvil from npm)",
        path.display()
    );
    Anvil::at(path)
        .try_spawn()
        .unwrap_or_else(|e| panic!("starting anvil failed: {e}"))
}

/// A local chain with both contracts and one provider service registered (owner-acknowledged).
pub struct Env {
    pub anvil: AnvilInstance,
    pub deployment: Deployment,
    pub owner: PrivateKeySigner,
    pub provider: PrivateKeySigner,
    pub customer: PrivateKeySigner,
    pub customer2: PrivateKeySigner,
    pub tee: PrivateKeySigner,
    pub fixture: FixtureProvider,
}

impl Env {
    pub async fn new() -> Self {
        let anvil = start_anvil();
        let key = |i: usize| PrivateKeySigner::from(anvil.keys()[i].clone());
        let (owner, provider, customer, customer2) = (key(0), key(1), key(2), key(3));
        let tee = PrivateKeySigner::random();
        let owner_client = wallet_client(&anvil, &owner);
        let deployer = ProviderBuilder::new()
            .wallet(owner.clone())
            .connect_http(anvil.endpoint_url());
        let deployment = deploy(&deployer, &DeployConfig::default())
            .await
            .expect("deploy");
        let fixture = FixtureProvider::start(tee.address()).await;
        let serving = FineTuningServing::new(deployment.serving, wallet_client(&anvil, &provider));
        let receipt = serving
            .addOrUpdateService(
                fixture.url.clone(),
                Quota {
                    cpuCount: U256::from(8u64),
                    nodeMemory: U256::from(32u64),
                    gpuCount: U256::from(1u64),
                    nodeStorage: U256::from(100u64),
                    gpuType: "H100".into(),
                },
                U256::from(GWEI_PRICE),
                false,
                vec!["SmolLM2-135M-Instruct".into()],
                tee.address(),
            )
            .value(ether(100))
            .send()
            .await
            .expect("register")
            .get_receipt()
            .await
            .expect("receipt");
        assert!(receipt.status());
        acknowledge_tee_signer(&owner_client, &deployment, provider.address())
            .await
            .expect("owner acknowledges the TEE signer");
        Env {
            anvil,
            deployment,
            owner,
            provider,
            customer,
            customer2,
            tee,
            fixture,
        }
    }

    pub fn contracts(&self) -> Contracts {
        Contracts {
            ledger: self.deployment.ledger,
            serving: self.deployment.serving,
        }
    }

    pub fn rpc(&self) -> String {
        self.anvil.endpoint()
    }

    pub fn chain(&self, who: Option<&PrivateKeySigner>) -> Chain {
        Chain::connect(&self.rpc(), self.contracts(), who.cloned()).expect("connect")
    }

    pub fn client(&self, who: &PrivateKeySigner) -> Client {
        Client::new(self.chain(Some(who))).expect("client")
    }

    pub fn wallet(&self, who: &PrivateKeySigner) -> DynProvider {
        wallet_client(&self.anvil, who)
    }

    /// As the provider: announce a deliverable for `user`.
    pub async fn add_deliverable(&self, user: Address, id: &str, root: &[u8]) {
        let serving = FineTuningServing::new(self.deployment.serving, self.wallet(&self.provider));
        let r = serving
            .addDeliverable(user, id.into(), Bytes::copy_from_slice(root))
            .send()
            .await
            .expect("addDeliverable")
            .get_receipt()
            .await
            .expect("receipt");
        assert!(r.status(), "addDeliverable reverted");
    }

    /// As the provider: settle `id` with the TEE signature (the worker's job, done by hand here).
    pub async fn settle(
        &self,
        user: Address,
        id: &str,
        root: &[u8],
        secret: &[u8],
        nonce: U256,
        fee: U256,
    ) {
        let message = sealtune_protocol::eip712::VerifierMessage {
            id: id.into(),
            encryptedSecret: Bytes::copy_from_slice(secret),
            modelRootHash: Bytes::copy_from_slice(root),
            nonce,
            taskFee: fee,
            user,
        };
        let chain_id = self.wallet(&self.owner).get_chain_id().await.unwrap();
        let domain = sealtune_protocol::eip712::domain(chain_id, self.deployment.serving);
        let sig = message.sign(self.tee.credential(), &domain);
        let input = VerifierInput {
            id: message.id.clone(),
            encryptedSecret: message.encryptedSecret.clone(),
            modelRootHash: message.modelRootHash.clone(),
            nonce,
            signature: Bytes::copy_from_slice(&sig.to_bytes_v27()),
            taskFee: fee,
            user,
        };
        let serving = FineTuningServing::new(self.deployment.serving, self.wallet(&self.provider));
        let r = serving
            .settleFees(input)
            .send()
            .await
            .map_err(sealtune_contracts::ContractError::from)
            .expect("settleFees")
            .get_receipt()
            .await
            .expect("receipt");
        assert!(r.status(), "settleFees reverted");
    }

    pub async fn increase_time(&self, secs: u64) {
        let p = self.wallet(&self.owner);
        let _: serde_json::Value = p
            .raw_request("evm_increaseTime".into(), (secs,))
            .await
            .unwrap();
        let _: serde_json::Value = p.raw_request("evm_mine".into(), ()).await.unwrap();
    }

    pub async fn tx_count(&self, who: Address) -> u64 {
        self.wallet(&self.owner)
            .get_transaction_count(who)
            .await
            .unwrap()
    }
}

pub fn wallet_client(anvil: &AnvilInstance, who: &PrivateKeySigner) -> DynProvider {
    ProviderBuilder::new()
        .disable_recommended_fillers()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(who.clone())
        .connect_http(anvil.endpoint_url())
        .erased()
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// How the fixture answers `/v1/quote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevQuote {
    /// Dev attestation binding `signer ‖ 0¹² ‖ nonce` (sealtune's fresh layout).
    WithNonce,
    /// Dev attestation in the 0G ASCII layout, ignoring the nonce.
    AsciiLayout,
    /// Dev attestation binding another signer.
    WrongSigner,
}

/// A create-task request the fixture accepted after verifying its signature.
#[derive(Debug, Clone)]
pub struct ReceivedTask {
    pub id: String,
    pub user: Address,
    pub form: sealtune_protocol::request::CreateTaskForm,
    pub fee_ceiling: Option<U256>,
    pub nonce: U256,
    pub dataset_hash: String,
    pub model_hash: String,
    pub training_params: String,
    pub wait: bool,
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

    pub fn serve_file(&self, task_id: &str, path: &Path) {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(task_id.to_owned(), path.to_path_buf());
    }

    pub fn set_quote_mode(&self, mode: DevQuote) {
        *self.quote_mode.lock().unwrap() = mode;
    }

    pub fn downloads(&self) -> u32 {
        self.state.lock().unwrap().downloads
    }

    pub fn tasks(&self) -> Vec<ReceivedTask> {
        self.state.lock().unwrap().tasks.clone()
    }

    pub fn uploads(&self) -> Vec<(String, Vec<u8>)> {
        self.state.lock().unwrap().uploads.clone()
    }

    pub fn set_pending(&self, n: u64) {
        self.state.lock().unwrap().pending = n;
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
            let n = state.lock().unwrap().pending;
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
                        state.lock().unwrap().tasks.len() + 1
                    );
                    state.lock().unwrap().tasks.push(ReceivedTask {
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
        ("GET", ["v1", "quote"]) => {
            let nonce = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("nonce="))
                .and_then(|h| hex::decode(h).ok())
                .unwrap_or_default();
            let mode = *quote_mode.lock().unwrap();
            let mut rd = [0u8; 64];
            match mode {
                DevQuote::WithNonce if nonce.len() == 32 => {
                    rd[..20].copy_from_slice(tee.as_slice());
                    rd[32..].copy_from_slice(&nonce);
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
            let doc = serde_json::json!({
                "dev": true,
                "report_data": base64::engine::general_purpose::STANDARD.encode(rd),
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
            let file = state.lock().unwrap().files.get(*id).cloned();
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
                    state.lock().unwrap().downloads += 1;
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
