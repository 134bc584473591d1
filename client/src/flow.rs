//! The customer's operations that combine the chain, the provider's API and the customer key —
//! the commands of the seed design and the official client's flow, with the checks before money
//! or trust moves:
//!
//! * [`Client::create_task`] verifies the provider's attestation first (unless told not to), checks
//!   the sub-account (acknowledging the TEE signer where the official client does, and that it can
//!   pay), resolves the model, uploads the dataset when given a file, and signs the request. A
//!   provider whose verified attestation publishes a dataset key gets the dataset sealed to that
//!   key (`crate::confidential`) and request v2 (EIP-712 over everything the task buys); other
//!   providers get the file as is and the fee-bound form when a fee ceiling is given, else the 0G form.
//! * [`Client::download_model`] checks the downloaded file's hash against the on-chain
//!   `modelRootHash` and its tag signature against the service's TEE signer **before**
//!   acknowledging.
//! * [`Client::decrypt_model`] opens the on-chain encrypted secret and stream-decrypts.
//!
//! Time is an input: every function that signs a timestamp or picks a nonce takes `now_ms`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use sealtune_contracts::bindings::FineTuningServing;
use sealtune_protocol::dataset_type::DatasetType;
use sealtune_protocol::deliverable::{Opened, Unzipped};
use sealtune_protocol::request::{self, CreateTask, CreateTaskForm};
use serde::Serialize;

use crate::amount::ser_dec;
use crate::api::{CreateTaskBody, ProviderApi, Task};
use crate::attest::{ProviderVerification, VerifyProviderOptions, verify_provider};
use crate::chain::{AccountView, Chain, DeliverableView, ServiceView, TxOutcome};
use crate::error::{ClientError, Result};
use crate::model::{self, DownloadCheck};
use crate::progress::Progress;
use crate::zgs::{DownloadMethod, DownloadSource, StorageNodes};

/// Where the dataset of a new task comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatasetSource {
    /// A dataset hash already known to the provider (`0x` + 64 hex).
    Hash(String),
    /// A local file, uploaded to the provider's TEE first.
    File(PathBuf),
}

/// Which create-task signature is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SignedForm {
    /// 0G's digest, or sealtune's fee-bound one.
    Official(CreateTaskForm),
    /// sealtune's request v2 (EIP-712 over everything the task buys), for providers that attest
    /// a dataset key.
    V2,
}

/// Whether [`Client::create_task`] verifies the provider first.
#[derive(Debug, Clone)]
pub enum VerifyMode {
    /// Verify the attestation (recommended).
    Verify(VerifyProviderOptions),
    /// Skip it (`--no-verify`): the customer trusts the provider blindly.
    Skip,
}

/// A create-task request.
#[derive(Debug, Clone)]
pub struct CreateTaskRequest {
    /// The provider.
    pub provider: Address,
    /// A model name the provider offers, or its hash (`0x` + 64 hex).
    pub model: String,
    /// The dataset.
    pub dataset: DatasetSource,
    /// The training parameters, a JSON object.
    pub training_params: String,
    /// The most the customer agrees to pay, in neuron (signed with the fee-bound form); `None`
    /// signs the official 0G form and lets the provider compute the fee.
    pub max_fee: Option<U256>,
    /// Queue behind the provider's other tasks when it is busy.
    pub wait: bool,
    /// Verify the provider first.
    pub verify: VerifyMode,
    /// How the dataset's rows become records (sealtune's `datasetType`); `None`: 0G's shapes.
    pub dataset_type: Option<DatasetType>,
}

/// A created task.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedTask {
    /// The task id.
    pub task_id: String,
    /// The provider.
    pub provider: Address,
    /// The nonce signed.
    #[serde(serialize_with = "ser_dec")]
    pub nonce: U256,
    /// The dataset hash.
    pub dataset_hash: String,
    /// The base model's hash.
    pub model_hash: String,
    /// The signed fee ceiling in neuron, if any.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_dec"
    )]
    pub max_fee: Option<U256>,
    /// Which digest was signed: `"0g"`, `"fee-bound"` or `"v2"` (sealtune's EIP-712 request).
    pub signature_form: &'static str,
    /// Tasks queued or running at the provider when this one was sent.
    pub queued_behind: u64,
    /// Whether the provider's attestation was verified (false with `--no-verify`).
    pub provider_verified: bool,
    /// Whether that attestation came from the insecure dev source.
    pub dev_quote: bool,
    /// The `acknowledgeTEESigner` transaction, when the sub-account had not acknowledged the signer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tee_signer_acknowledgement: Option<TxOutcome>,
    /// The dataset upload, when a file was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadedDataset>,
}

fn ser_opt_dec<S: serde::Serializer>(
    v: &Option<U256>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(&v.to_string()),
        None => s.serialize_none(),
    }
}

/// A dataset uploaded to the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadedDataset {
    /// The dataset hash (keccak256 of the file), as the provider and this client both computed it.
    pub dataset_hash: String,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Whether the upload was the dataset sealed to the provider's dataset key (an envelope), not
    /// the plaintext.
    pub encrypted: bool,
}

/// A downloaded, checked (and by default acknowledged) model.
#[derive(Debug, Clone, Serialize)]
pub struct DownloadedModel {
    /// The task id.
    pub task_id: String,
    /// Where the encrypted model is.
    pub path: PathBuf,
    /// Bytes downloaded.
    pub bytes: u64,
    /// Where the bytes came from.
    pub source: DownloadSource,
    /// Why 0G Storage was not used when it was tried first (`auto` fell back to the provider).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_error: Option<String>,
    /// What was checked.
    pub check: DownloadCheck,
    /// The acknowledgement transaction (none with `--no-acknowledge` or when already acknowledged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledgement: Option<TxOutcome>,
    /// Whether the deliverable is acknowledged on chain now.
    pub acknowledged: bool,
}

/// A decrypted model.
#[derive(Debug, Clone, Serialize)]
pub struct DecryptedModel {
    /// The task id.
    pub task_id: String,
    /// The decrypted zip.
    pub zip: PathBuf,
    /// Bytes of the zip.
    pub zip_bytes: u64,
    /// Chunks decrypted.
    pub chunks: u64,
    /// The TEE signer the tag signature recovered to.
    pub tee_signer: Address,
    /// Where the zip was extracted, if asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extracted_to: Option<PathBuf>,
    /// Files extracted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<usize>,
}

/// The customer: a chain connection with the customer's key.
#[derive(Debug, Clone)]
pub struct Client {
    /// The chain.
    pub chain: Chain,
    /// Where [`Client::download_model`] looks for 0G Storage nodes (none: the provider only).
    pub storage: StorageNodes,
    /// The providers' pinned TLS keys ([`crate::tls`]): [`Client::verify_provider`] records them,
    /// [`Client::provider_api`] reaches `https://` providers only through them.
    pub tls_pins: Arc<crate::tls::TlsPins>,
    http: reqwest::Client,
}

fn is_hash(s: &str) -> bool {
    s.len() == 66 && s.starts_with("0x") && s.bytes().skip(2).all(|b| b.is_ascii_hexdigit())
}

/// The checks of a create-task request that need nothing but the request.
fn check_request(req: &CreateTaskRequest) -> Result<()> {
    let params: serde_json::Value = serde_json::from_str(&req.training_params)
        .map_err(|e| ClientError::InvalidInput(format!("training parameters are not JSON: {e}")))?;
    if !params.is_object() {
        return Err(ClientError::InvalidInput(
            "training parameters must be a JSON object".into(),
        ));
    }
    sealtune_protocol::fee::epochs_from_training_params(&req.training_params)?;
    if req.max_fee.is_some_and(|f| f.is_zero()) {
        return Err(ClientError::InvalidInput(
            "--max-fee must be above 0 (leave it out to let the provider compute the fee)".into(),
        ));
    }
    match &req.dataset {
        DatasetSource::Hash(h) if !is_hash(h) => Err(ClientError::InvalidInput(format!(
            "dataset hash {h:?} must be 0x followed by 64 hex digits"
        ))),
        DatasetSource::File(p) if !p.is_file() => Err(ClientError::InvalidInput(format!(
            "dataset {} is not a file",
            p.display()
        ))),
        _ => Ok(()),
    }
}

/// The base model's hash: `model` itself when it is one, else the hash the provider lists for it.
async fn model_hash(api: &ProviderApi, model: &str) -> Result<String> {
    if is_hash(model) {
        return Ok(model.to_owned());
    }
    let m = api.model(model).await?;
    if m.hash.is_empty() {
        return Err(ClientError::BadResponse {
            url: format!("{}/v1/model/{model}", api.base()),
            detail: "the model has no hash".into(),
        });
    }
    Ok(m.hash)
}

/// The official client's nonce: milliseconds × 10000 + 40.
pub fn official_nonce(now_ms: u64) -> U256 {
    U256::from(now_ms)
        .saturating_mul(U256::from(10_000u64))
        .saturating_add(U256::from(40u64))
}

/// keccak256 of a file, streaming.
pub fn file_keccak(path: &Path) -> Result<B256> {
    sealtune_protocol::deliverable::encrypted_file_keccak(path)
        .map_err(|e| ClientError::io(path, e))
}

impl Client {
    /// A client over `chain`, which must carry the customer's signer.
    pub fn new(chain: Chain) -> Result<Self> {
        chain.signer()?;
        Ok(Client {
            chain,
            storage: StorageNodes::default(),
            tls_pins: Arc::new(crate::tls::TlsPins::in_memory(false)),
            http: reqwest::Client::new(),
        })
    }

    /// The same client with `pins` (e.g. the CLI's pin file, or `--allow-ca-tls`).
    pub fn with_tls_pins(mut self, pins: crate::tls::TlsPins) -> Self {
        self.tls_pins = Arc::new(pins);
        self
    }

    pub(crate) fn key(&self) -> Result<&k256::ecdsa::SigningKey> {
        Ok(self.chain.signer()?.credential())
    }

    /// The customer's address.
    pub fn user(&self) -> Result<Address> {
        self.chain.user()
    }

    /// The provider's service and an API client for its registered URL: over `https://` only with
    /// the TLS key pinned by [`Self::verify_provider`] (or CA-verified, when the pins allow it).
    pub async fn provider_api(&self, provider: Address) -> Result<(ServiceView, ProviderApi)> {
        let service = self.chain.service(provider).await?;
        let tls = self
            .tls_pins
            .tls_for(self.chain.contracts().serving, provider, &service.url)?;
        let api = ProviderApi::with_tls(&service.url, tls)?;
        Ok((service, api))
    }

    /// Upload a dataset file to the provider's TEE (signature over the checksummed address and
    /// `now`), and check the provider's `datasetHash` equals the file's keccak256.
    pub async fn upload_dataset(
        &self,
        provider: Address,
        path: &Path,
        now_ms: u64,
        progress: Arc<dyn Progress>,
    ) -> Result<UploadedDataset> {
        let meta = std::fs::metadata(path)
            .map_err(|e| ClientError::InvalidInput(format!("dataset {}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(ClientError::InvalidInput(format!(
                "{} is not a file",
                path.display()
            )));
        }
        if meta.len() == 0 {
            return Err(ClientError::InvalidInput(format!(
                "dataset {} is empty",
                path.display()
            )));
        }
        let local = file_keccak(path)?;
        let (_, api) = self.provider_api(provider).await?;
        let user = self.user()?;
        let ts = now_ms / 1000;
        let sig = request::sign_dataset_upload(self.key()?, &user.to_checksum(None), ts);
        let answer = api
            .upload_dataset(user, path, &sig.to_hex_v27(), ts, progress)
            .await?;
        if !answer.dataset_hash.eq_ignore_ascii_case(&local.to_string()) {
            return Err(ClientError::BadResponse {
                url: format!("{}/v1/user/{user}/dataset", api.base()),
                detail: format!(
                    "the provider says the dataset hash is {}, but keccak256 of the file is {local}",
                    answer.dataset_hash
                ),
            });
        }
        Ok(UploadedDataset {
            dataset_hash: local.to_string(),
            bytes: meta.len(),
            encrypted: false,
        })
    }

    /// Seal the dataset at `path` to the provider's attested `dataset_key` (an envelope owned and
    /// signed by this customer, `crate::confidential::seal_dataset`) and upload the ciphertext.
    pub async fn upload_sealed_dataset(
        &self,
        provider: Address,
        path: &Path,
        dataset_key: &k256::PublicKey,
        now_ms: u64,
        progress: Arc<dyn Progress>,
    ) -> Result<UploadedDataset> {
        let (src, key, recipient) = (path.to_owned(), self.key()?.clone(), *dataset_key);
        let sealed = tokio::task::spawn_blocking(move || {
            crate::confidential::seal_dataset(&src, &key, &recipient)
        })
        .await
        .map_err(|e| ClientError::InvalidInput(format!("sealing the dataset: {e}")))??;
        let up = self
            .upload_dataset(provider, sealed.path(), now_ms, progress)
            .await?;
        Ok(UploadedDataset {
            encrypted: true,
            ..up
        })
    }

    /// Verify the provider's attestation against its on-chain service, and pin (or, when it
    /// attests none, forget) its TLS key for later requests.
    pub async fn verify_provider(
        &self,
        provider: Address,
        opts: &VerifyProviderOptions,
    ) -> Result<ProviderVerification> {
        let v = verify_provider(&self.chain, provider, opts).await?;
        record_tls_pin(&self.tls_pins, self.chain.contracts().serving, &v, opts.now)?;
        Ok(v)
    }

    /// Create a fine-tuning task (see the module docs for the checks made first).
    pub async fn create_task(
        &self,
        req: &CreateTaskRequest,
        now_ms: u64,
        upload_progress: Arc<dyn Progress>,
    ) -> Result<CreatedTask> {
        let user = self.user()?;
        // Cheap local checks first: nothing is sent when the input is bad.
        check_request(req)?;
        // Verified first: it pins the provider's attested TLS key the API client then requires.
        let verification = match &req.verify {
            VerifyMode::Verify(opts) => {
                let v = self.verify_provider(req.provider, opts).await?;
                v.require_verified()?;
                Some(v)
            }
            VerifyMode::Skip => None,
        };
        let (_service, api) = self.provider_api(req.provider).await?;
        let (account, tee_ack) = self.paying_sub_account(user, req).await?;
        let model_hash = model_hash(&api, &req.model).await?;
        let queued_behind = api.pending().await?;
        if queued_behind > 0 && !req.wait {
            return Err(ClientError::NotReady(format!(
                "{queued_behind} task(s) are queued or running at the provider: pass --wait to queue behind them"
            )));
        }
        let keys = verification.as_ref().and_then(|v| v.keys.clone());
        let (dataset_hash, upload) = match (&req.dataset, &keys) {
            (DatasetSource::Hash(h), _) => (h.clone(), None),
            (DatasetSource::File(p), Some(keys)) => {
                let up = self
                    .upload_sealed_dataset(
                        req.provider,
                        p,
                        &keys.dataset_key,
                        now_ms,
                        upload_progress,
                    )
                    .await?;
                (up.dataset_hash.clone(), Some(up))
            }
            (DatasetSource::File(p), None) => {
                let up = self
                    .upload_dataset(req.provider, p, now_ms, upload_progress)
                    .await?;
                (up.dataset_hash.clone(), Some(up))
            }
        };
        let task = CreateTask {
            user,
            nonce: official_nonce(now_ms).max(account.nonce.saturating_add(U256::from(1u8))),
            dataset_hash,
            fee: req.max_fee.unwrap_or(U256::ZERO),
        };
        let form = if keys.is_some() {
            // The provider attests a dataset key: a sealtune worker that checks v2 requests.
            SignedForm::V2
        } else if req.max_fee.is_some() {
            SignedForm::Official(CreateTaskForm::WithFee)
        } else {
            SignedForm::Official(CreateTaskForm::WithoutFee)
        };
        let task_id = self.send_task(&api, req, &task, form, &model_hash).await?;
        Ok(CreatedTask {
            task_id,
            provider: req.provider,
            nonce: task.nonce,
            dataset_hash: task.dataset_hash,
            model_hash,
            max_fee: req.max_fee,
            signature_form: match form {
                SignedForm::V2 => "v2",
                SignedForm::Official(CreateTaskForm::WithFee) => "fee-bound",
                SignedForm::Official(CreateTaskForm::WithoutFee) => "0g",
            },
            queued_behind,
            provider_verified: verification.as_ref().is_some_and(|v| v.verified),
            dev_quote: verification.as_ref().is_some_and(|v| v.dev_quote),
            tee_signer_acknowledgement: tee_ack,
            upload,
        })
    }

    /// The sub-account that pays for `req`: it must exist and be able to pay the fee ceiling (or at
    /// least 1 neuron); its TEE signer is acknowledged first when it is not yet, as the official
    /// client does.
    async fn paying_sub_account(
        &self,
        user: Address,
        req: &CreateTaskRequest,
    ) -> Result<(AccountView, Option<TxOutcome>)> {
        let account = self
            .chain
            .account(user, req.provider)
            .await?
            .ok_or(ClientError::NoSubAccount(req.provider))?;
        let need = req.max_fee.unwrap_or(U256::from(1u8));
        if account.spendable() < need {
            return Err(ClientError::BalanceTooLow {
                provider: req.provider,
                spendable: account.spendable(),
                needed: need,
            });
        }
        let tee_ack = if account.acknowledged {
            None
        } else {
            Some(self.chain.acknowledge_tee_signer(req.provider).await?)
        };
        Ok((account, tee_ack))
    }

    /// Sign `task` in `form` and send it to the provider; returns the task id.
    async fn send_task(
        &self,
        api: &ProviderApi,
        req: &CreateTaskRequest,
        task: &CreateTask,
        form: SignedForm,
        model_hash: &str,
    ) -> Result<String> {
        let mut body = CreateTaskBody {
            user_address: task.user.to_checksum(None),
            pre_trained_model_hash: model_hash.to_owned(),
            dataset_hash: task.dataset_hash.clone(),
            training_params: req.training_params.clone(),
            fee: Some(task.fee.to_string()),
            nonce: task.nonce.to_string(),
            signature: String::new(),
            wait: req.wait,
            dataset_type: req.dataset_type.clone(),
            request_version: None,
        };
        let signature = match form {
            SignedForm::Official(form) => task.sign(self.key()?, form),
            SignedForm::V2 => {
                body.request_version = Some(sealtune_protocol::request_v2::REQUEST_VERSION);
                let hash = |what: &str, text: &str| {
                    text.parse::<B256>().map_err(|_| {
                        ClientError::InvalidInput(format!("{what} {text} is not a 32-byte hash"))
                    })
                };
                let request = sealtune_protocol::request_v2::TaskRequest::for_body(
                    &body,
                    task,
                    req.provider,
                    hash("model hash", model_hash)?,
                    hash("dataset hash", &task.dataset_hash)?,
                );
                let domain = sealtune_protocol::request_v2::domain(
                    self.chain.chain_id().await?,
                    self.chain.contracts().serving,
                );
                request.sign(self.key()?, &domain)
            }
        };
        body.signature = signature.to_hex_v27();
        api.create_task(task.user, &body).await
    }

    /// One task (`task_id`), or the latest one when `None`.
    pub async fn task(&self, provider: Address, task_id: Option<&str>) -> Result<Task> {
        let (_, api) = self.provider_api(provider).await?;
        let user = self.user()?;
        match task_id {
            Some(id) => {
                request::parse_task_id(id)?;
                api.task(user, id).await
            }
            None => api
                .tasks(user, true)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| ClientError::NotReady("no task with this provider yet".into())),
        }
    }

    /// All the customer's tasks with the provider.
    pub async fn tasks(&self, provider: Address) -> Result<Vec<Task>> {
        let (_, api) = self.provider_api(provider).await?;
        api.tasks(self.user()?, false).await
    }

    /// The progress log of `task_id` (the latest task when `None`).
    pub async fn log(&self, provider: Address, task_id: Option<&str>) -> Result<(String, String)> {
        let id = match task_id {
            Some(id) => id.to_owned(),
            None => self.task(provider, None).await?.id,
        };
        request::parse_task_id(&id)?;
        let (_, api) = self.provider_api(provider).await?;
        let log = api.log(self.user()?, &id).await?;
        Ok((id, log))
    }

    /// The sealed training checkpoints of `task_id` (oldest first): step, loss, time, size.
    pub async fn checkpoints(
        &self,
        provider: Address,
        task_id: &str,
    ) -> Result<Vec<sealtune_protocol::api::CheckpointInfo>> {
        request::parse_task_id(task_id)?;
        let (_, api) = self.provider_api(provider).await?;
        api.checkpoints(self.user()?, task_id).await
    }

    /// Cancel `task_id`: free before training; during training (sealtune providers) the training
    /// stops and the penalty share of the fee is charged (docs/customer-guide.md).
    pub async fn cancel_task(&self, provider: Address, task_id: &str) -> Result<String> {
        let uuid = request::parse_task_id(task_id)?;
        let (_, api) = self.provider_api(provider).await?;
        let sig = request::sign_cancel(self.key()?, &uuid);
        api.cancel_task(self.user()?, task_id, &sig.to_hex_v27())
            .await
    }

    /// The deliverable of `task_id`, with a clear error when it does not exist yet.
    pub async fn deliverable(&self, provider: Address, task_id: &str) -> Result<DeliverableView> {
        request::parse_task_id(task_id)?;
        match self
            .chain
            .deliverable(self.user()?, provider, task_id)
            .await
        {
            Err(e) if e.is_revert::<FineTuningServing::DeliverableNotExists>() => {
                Err(ClientError::NotReady(format!(
                    "task {task_id} has no deliverable on chain yet (the provider announces it when training is done)"
                )))
            }
            Err(e) if e.is_revert::<FineTuningServing::AccountNotExists>() => {
                Err(ClientError::NoSubAccount(provider))
            }
            other => other,
        }
    }

    /// Download the encrypted model of `task_id` into `out` (a file, or a directory to put
    /// `model_<task>.enc` in), check it against the chain, then acknowledge it unless
    /// `acknowledge` is false. A file that fails a check is deleted and nothing is acknowledged.
    /// From 0G Storage first when [`Self::storage`] names nodes, else from the provider
    /// ([`DownloadMethod::Auto`]).
    pub async fn download_model(
        &self,
        provider: Address,
        task_id: &str,
        out: &Path,
        acknowledge: bool,
        now_ms: u64,
        progress: &dyn Progress,
    ) -> Result<DownloadedModel> {
        self.download_model_by(
            DownloadMethod::Auto,
            provider,
            task_id,
            out,
            acknowledge,
            now_ms,
            progress,
        )
        .await
    }

    /// [`Self::download_model`] by `method`, like the official `acknowledge-model
    /// --download-method`: `auto` tries 0G Storage (when nodes are configured) and falls back to
    /// the provider's TEE, `tee` asks the provider only, `0g-storage` the network only. Either way
    /// the file must match the on-chain root and carry the TEE signer's tag signature.
    #[allow(clippy::too_many_arguments)]
    pub async fn download_model_by(
        &self,
        method: DownloadMethod,
        provider: Address,
        task_id: &str,
        out: &Path,
        acknowledge: bool,
        now_ms: u64,
        progress: &dyn Progress,
    ) -> Result<DownloadedModel> {
        let uuid = request::parse_task_id(task_id)?;
        let deliverable = self.deliverable(provider, task_id).await?;
        if deliverable.settled && !deliverable.acknowledged {
            return Err(ClientError::InvalidInput(format!(
                "task {task_id} was settled without acknowledgement (penalty): its key is never released"
            )));
        }
        let (service, api) = self.provider_api(provider).await?;
        let dest = if out.is_dir() {
            out.join(format!("model_{task_id}.enc"))
        } else {
            out.to_path_buf()
        };
        let mut part = dest.clone().into_os_string();
        part.push(".part");
        let part = PathBuf::from(part);
        let _ = std::fs::remove_file(&part);
        let from_storage = match method {
            DownloadMethod::Tee => None,
            DownloadMethod::Auto if self.storage.is_empty() => None,
            DownloadMethod::Auto | DownloadMethod::ZgStorage => {
                let root = B256::try_from(deliverable.model_root_hash.as_ref()).map_err(|_| {
                    ClientError::InvalidInput(format!(
                        "the on-chain modelRootHash of task {task_id} is not 32 bytes"
                    ))
                })?;
                Some(crate::zgs::download(&self.http, &self.storage, root, &part, progress).await)
            }
        };
        let (keccak, bytes, source, storage_error) = match from_storage {
            Some(Ok((bytes, keccak))) => (keccak, bytes, DownloadSource::ZgStorage, None),
            Some(Err(e)) if method == DownloadMethod::ZgStorage => return Err(e),
            fallback => {
                let user = self.user()?;
                let ts = now_ms / 1000;
                let sig = request::sign_lora_download(self.key()?, &uuid, ts);
                let got = api
                    .download_lora(user, task_id, &sig.to_hex_v27(), ts, &part, progress)
                    .await?;
                let why = fallback.and_then(|r| r.err()).map(|e| e.to_string());
                (got.keccak, got.bytes, DownloadSource::Tee, why)
            }
        };
        let check = match model::check_download(
            &part,
            keccak,
            &deliverable.model_root_hash,
            service.tee_signer,
        ) {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Err(e);
            }
        };
        std::fs::rename(&part, &dest).map_err(|e| ClientError::io(&dest, e))?;
        let acknowledgement = if acknowledge && !deliverable.acknowledged {
            Some(
                self.chain
                    .acknowledge_deliverable(provider, task_id)
                    .await?,
            )
        } else {
            None
        };
        Ok(DownloadedModel {
            task_id: task_id.to_owned(),
            path: dest,
            bytes,
            source,
            storage_error,
            check,
            acknowledged: deliverable.acknowledged || acknowledgement.is_some(),
            acknowledgement,
        })
    }

    /// Acknowledge the deliverable of `task_id`. With `file`, check that file against the chain
    /// first (hash and tag signature); without, acknowledge unchecked (the escape hatch for a
    /// model retrieved some other way). Returns `None` when it was already acknowledged.
    pub async fn acknowledge_model(
        &self,
        provider: Address,
        task_id: &str,
        file: Option<&Path>,
    ) -> Result<(Option<DownloadCheck>, Option<TxOutcome>)> {
        let deliverable = self.deliverable(provider, task_id).await?;
        let check = match file {
            Some(f) if !f.is_file() => {
                return Err(ClientError::InvalidInput(format!(
                    "{} is not a file",
                    f.display()
                )));
            }
            Some(f) => {
                let service = self.chain.service(provider).await?;
                Some(model::check_download(
                    f,
                    file_keccak(f)?,
                    &deliverable.model_root_hash,
                    service.tee_signer,
                )?)
            }
            None => None,
        };
        if deliverable.acknowledged {
            return Ok((check, None));
        }
        let tx = self
            .chain
            .acknowledge_deliverable(provider, task_id)
            .await?;
        Ok((check, Some(tx)))
    }

    /// Poll until the deliverable of `task_id` is settled (at most `timeout`, every `every`).
    pub async fn wait_settled(
        &self,
        provider: Address,
        task_id: &str,
        timeout: Duration,
        every: Duration,
    ) -> Result<DeliverableView> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let d = self.deliverable(provider, task_id).await?;
            if d.settled {
                return Ok(d);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::NotReady(format!(
                    "task {task_id} is not settled after {} s",
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Decrypt the encrypted model `encrypted` of `task_id` into the zip `zip_out`, and extract it
    /// into the new directory `unzip_to` when given. The file is checked against the chain first;
    /// the key comes from the on-chain encrypted secret (available once the provider settled).
    pub async fn decrypt_model(
        &self,
        provider: Address,
        task_id: &str,
        encrypted: &Path,
        zip_out: &Path,
        unzip_to: Option<&Path>,
        progress: &dyn Progress,
    ) -> Result<DecryptedModel> {
        if !encrypted.is_file() {
            return Err(ClientError::InvalidInput(format!(
                "encrypted model {} is not a file (download it with `sealtune download-model`)",
                encrypted.display()
            )));
        }
        let deliverable = self.deliverable(provider, task_id).await?;
        if !deliverable.acknowledged {
            return Err(ClientError::NotReady(format!(
                "task {task_id} is not acknowledged: run `sealtune download-model` (it checks and acknowledges) first"
            )));
        }
        if deliverable.encrypted_secret.is_empty() {
            return Err(ClientError::NotReady(format!(
                "task {task_id} is acknowledged but the provider has not settled yet (the key is released at settlement): retry shortly"
            )));
        }
        if let Some(dir) = unzip_to
            && dir.exists()
        {
            return Err(ClientError::InvalidInput(format!(
                "{} exists already: extract into a new directory",
                dir.display()
            )));
        }
        let service = self.chain.service(provider).await?;
        let check = model::check_download(
            encrypted,
            file_keccak(encrypted)?,
            &deliverable.model_root_hash,
            service.tee_signer,
        )?;
        let key = model::unwrap_secret(self.key()?, &deliverable.encrypted_secret)?;
        let opened: Opened =
            model::decrypt_file(encrypted, zip_out, &key, check.tag_signer, progress)?;
        let unzipped: Option<Unzipped> = match unzip_to {
            Some(dir) => Some(model::unzip(zip_out, dir)?),
            None => None,
        };
        Ok(DecryptedModel {
            task_id: task_id.to_owned(),
            zip: zip_out.to_path_buf(),
            zip_bytes: opened.plaintext_len,
            chunks: opened.chunks,
            tee_signer: opened.signer,
            extracted_to: unzip_to.map(Path::to_path_buf),
            files: unzipped.map(|u| u.files),
        })
    }
}

/// Pins the verified provider's attested TLS key in `pins`; a verified provider that attests none
/// loses an older pin. An unverified answer changes nothing.
pub fn record_tls_pin(
    pins: &crate::tls::TlsPins,
    serving: Address,
    v: &ProviderVerification,
    now: u64,
) -> Result<()> {
    if !v.verified {
        return Ok(());
    }
    pins.record(serving, v.provider, v.tls_pin(serving, now))
}
