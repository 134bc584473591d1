//! Typed task rows: the task states, the typed values of a task, and the one place where a stored
//! row is parsed into them (and typed values are written back as the same text as ever).
//!
//! Every column is parsed once, here; a value that does not parse is a [`StoreError::Corrupt`]
//! naming its column. The stored text formats are those of every earlier version (existing
//! databases keep working): addresses of customers in lowercase `0x` hex, the TEE signer in EIP-55
//! form, amounts and nonces in decimal, hashes in lowercase `0x` hex, the wrapped key and the
//! customer's public key in bare hex, and `''` for "not yet" in the seal columns.
use sealtune_protocol::dataset_type::DatasetType;
use std::path::PathBuf;

use alloy::primitives::{Address, B256, Bytes, U256};
use k256::elliptic_curve::sec1::ToEncodedPoint;
use sealtune_protocol::ecies::PublicKey;
use sealtune_protocol::evaluation::EvaluationParams;
use sealtune_protocol::fee::FeeError;
use sealtune_protocol::params::{LoraParams, ParamsError};
use sqlx::Row;

use super::StoreError;
use crate::models::{DataType, ModelConfig, ModelRef, ParamsSchema};

pub use sealtune_protocol::task::{StatePredicate, TaskState};

/// The SQL list `('Init','SettingUp',…)` of `states`, for `progress IN …` (never empty: an empty
/// set is `('')`, which matches no row). The names are the constants of [`TaskState::as_str`], so
/// the text is safe to splice into a statement.
pub(crate) fn sql_list(states: &[TaskState]) -> String {
    let names: Vec<String> = states.iter().map(|s| format!("'{}'", s.as_str())).collect();
    if names.is_empty() {
        "('')".to_owned()
    } else {
        format!("({})", names.join(","))
    }
}

/// The SQL list of the states for which `pred` holds: one rule, in [`TaskState`], for Rust and SQL.
pub(crate) fn sql_set(pred: StatePredicate) -> String {
    sql_list(&TaskState::matching(pred))
}

/// A customer's address as the store writes it and the API answers it: `0x` and lowercase hex.
pub fn address_text(address: Address) -> String {
    format!("{address:#x}")
}

/// `datasetHash`: the 32-byte hash, and the text exactly as the customer sent it (the create-task
/// signature covers the text, and the API answers it back unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetHash {
    hash: B256,
    text: String,
}

impl DatasetHash {
    /// Parses `datasetHash` (32 bytes of hex, `0x` optional, any case); `None` if it is not one.
    pub fn parse(text: &str) -> Option<DatasetHash> {
        Some(DatasetHash {
            hash: text.parse().ok()?,
            text: text.to_owned(),
        })
    }
    /// The hash (the dataset file's keccak256).
    pub fn hash(&self) -> B256 {
        self.hash
    }
    /// The text as sent.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// `trainingParams`: the JSON text exactly as sent (the script reads it, the API answers it back),
/// checked against both parameter schemas once.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingParams {
    text: String,
    lora: Result<LoraParams, ParamsError>,
    free_epochs: Result<u64, FeeError>,
    evaluation: Option<Result<EvaluationParams, String>>,
}

impl TrainingParams {
    /// Reads `text` under both schemas; which one applies is the model's (see [`Self::epochs`]).
    pub fn new(text: &str) -> TrainingParams {
        TrainingParams {
            text: text.to_owned(),
            lora: LoraParams::parse(text),
            free_epochs: sealtune_protocol::fee::epochs_from_training_params(text),
            evaluation: EvaluationParams::parse(text),
        }
    }
    /// The JSON text as sent.
    pub fn as_str(&self) -> &str {
        &self.text
    }
    /// The evaluation this task asks for (its parameters are an evaluation's and well-formed), if
    /// it is one.
    pub fn evaluation(&self) -> Option<&EvaluationParams> {
        self.evaluation.as_ref().and_then(|e| e.as_ref().ok())
    }
    /// The epoch count under `model`'s schema, or why the parameters do not fit it: the stock
    /// LoRA script's five keys in range and its LoRA options within the model's declared
    /// `lora_ranges` (`lora`), any JSON object with a valid `num_train_epochs` (`free`).
    ///
    /// An evaluation (docs/PROTOCOL.md §10) is billed as one pass over its dataset, whatever the
    /// schema.
    pub fn epochs(&self, model: &ModelConfig) -> Result<u64, String> {
        match &self.evaluation {
            Some(Ok(_)) => return Ok(1),
            Some(Err(e)) => return Err(e.clone()),
            None => {}
        }
        match model.params {
            ParamsSchema::Lora => {
                let lora = self.lora.as_ref().map_err(ToString::to_string)?;
                lora.check_offered(&model.lora_ranges())
                    .map_err(|e| e.to_string())?;
                Ok(lora.num_train_epochs)
            }
            ParamsSchema::Free => self.free_epochs.clone().map_err(|e| e.to_string()),
        }
    }
}

/// A new task, as validated by the API.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// UUID with dashes.
    pub id: String,
    /// The customer.
    pub user_address: Address,
    /// `preTrainedModelHash` (a model's hash or name; see `Config::model`).
    pub pre_trained_model_hash: ModelRef,
    /// `datasetHash`.
    pub dataset_hash: DatasetHash,
    /// `trainingParams`.
    pub training_params: TrainingParams,
    /// `fee` (`0` when not sent).
    pub fee: U256,
    /// `nonce`.
    pub nonce: U256,
    /// `signature` as sent.
    pub signature: String,
    /// The customer's public key, recovered from the signature: the model key is wrapped to it.
    pub user_public_key: PublicKey,
    /// The signed fee ceiling.
    pub fee_ceiling: Option<U256>,
    /// `wait`.
    pub wait: bool,
    /// The model's data type.
    pub model_type: DataType,
    /// `datasetType` (sealtune): how rows become records; `None`: 0G's three shapes.
    pub dataset_type: Option<DatasetType>,
}

/// A task row, typed.
#[derive(Debug, Clone)]
pub struct Task {
    /// UUID with dashes.
    pub id: String,
    /// The customer.
    pub user_address: Address,
    /// Accepted at (unix seconds).
    pub created_at: i64,
    /// Last change (unix seconds).
    pub updated_at: i64,
    /// `preTrainedModelHash` (a model's hash or name).
    pub pre_trained_model_hash: ModelRef,
    /// `datasetHash`.
    pub dataset_hash: DatasetHash,
    /// `trainingParams`.
    pub training_params: TrainingParams,
    /// `fee` as sent (`0` when not sent).
    pub fee: U256,
    /// `nonce`.
    pub nonce: U256,
    /// `signature` as sent.
    pub signature: String,
    /// The customer's public key.
    pub user_public_key: PublicKey,
    /// The signed fee ceiling.
    pub fee_ceiling: Option<U256>,
    /// `wait`.
    pub wait: bool,
    /// The model's data type.
    pub model_type: DataType,
    /// `datasetType` (sealtune): how rows become records; `None`: 0G's three shapes.
    pub dataset_type: Option<DatasetType>,
    /// The state.
    pub progress: TaskState,
    /// Why it failed.
    pub fail_reason: Option<String>,
    /// Tokens counted at setup.
    pub token_count: Option<u64>,
    /// The fee computed at setup.
    pub task_fee: Option<U256>,
    /// Training attempts so far.
    pub training_attempts: i64,
    /// The sealed deliverable in the file store.
    pub deliverable_path: Option<PathBuf>,
    /// The sealed deliverable's keccak256 (its root hash on chain).
    pub model_root_hash: Option<B256>,
    /// The model key, ECIES-wrapped to the customer.
    pub encrypted_secret: Option<Bytes>,
    /// The TEE signer that signed the deliverable's tags.
    pub tee_signer: Option<Address>,
    /// The tag digest of the file sealed with `encrypted_secret`'s key, once that file exists: a
    /// sealed file on disk is used only when its tags give this digest.
    pub seal_tag_digest: Option<B256>,
    /// The deliverable's index on chain.
    pub deliver_index: Option<i64>,
    /// Delivered at (unix seconds).
    pub deliver_time: Option<i64>,
    /// The settlement transaction (from its `FeesSettled` event when the settlement was found on chain).
    pub settle_tx: Option<B256>,
    /// The fee charged at settlement.
    pub settled_fee: Option<U256>,
    /// Whether the customer had acknowledged at settlement.
    pub settled_acknowledged: Option<bool>,
    /// When retention deleted the files.
    pub cleaned_at: Option<i64>,
    /// Why the task was stopped during training (a cancel, or the funds retrieved), once it was:
    /// the training lane then settles the cancel and fails the task with this reason.
    pub cancelled: Option<String>,
}

pub(crate) fn corrupt(column: &'static str, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        task: None,
        column,
        reason: reason.into(),
    }
}

/// The text of `column`, parsed by `parse` (which says `None` when the text is not its type).
fn parsed<T>(
    row: &sqlx::sqlite::SqliteRow,
    column: &'static str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let text: String = row.try_get(column)?;
    parse(&text).ok_or_else(|| corrupt(column, format!("cannot read `{text}`")))
}

/// An optional text column: NULL and `''` (the seal columns' "not yet") are `None`.
fn parsed_opt<T>(
    row: &sqlx::sqlite::SqliteRow,
    column: &'static str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>, StoreError> {
    let text: Option<String> = row.try_get(column)?;
    match text.as_deref() {
        None | Some("") => Ok(None),
        Some(t) => parse(t)
            .map(Some)
            .ok_or_else(|| corrupt(column, format!("cannot read `{t}`"))),
    }
}

fn decimal(text: &str) -> Option<U256> {
    sealtune_protocol::request::parse_u256_decimal("", text).ok()
}

fn public_key(text: &str) -> Option<PublicKey> {
    let bytes = hex::decode(text.trim_start_matches("0x")).ok()?;
    sealtune_protocol::ecies::parse_public_key(&bytes).ok()
}

/// The customer's public key as stored: bare hex of the 65-byte uncompressed point.
pub(crate) fn public_key_text(key: &PublicKey) -> String {
    hex::encode(key.to_encoded_point(false).as_bytes())
}

/// The one place a stored row becomes a [`Task`]; a column that does not parse is a
/// [`StoreError::Corrupt`] naming the task and the column.
pub(crate) fn task_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Task, StoreError> {
    let id: String = row.try_get("id")?;
    typed_row(row, id.clone()).map_err(|e| match e {
        StoreError::Corrupt { column, reason, .. } => StoreError::Corrupt {
            task: Some(id),
            column,
            reason,
        },
        other => other,
    })
}

fn typed_row(row: &sqlx::sqlite::SqliteRow, id: String) -> Result<Task, StoreError> {
    let progress: String = row.try_get("progress")?;
    Ok(Task {
        id,
        user_address: parsed(row, "user_address", |t| t.parse().ok())?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        pre_trained_model_hash: parsed(row, "pre_trained_model_hash", |t| Some(ModelRef::new(t)))?,
        dataset_hash: parsed(row, "dataset_hash", DatasetHash::parse)?,
        training_params: parsed(row, "training_params", |t| Some(TrainingParams::new(t)))?,
        fee: parsed(row, "fee", decimal)?,
        nonce: parsed(row, "nonce", decimal)?,
        signature: row.try_get("signature")?,
        user_public_key: parsed(row, "user_public_key", public_key)?,
        fee_ceiling: parsed_opt(row, "fee_ceiling", decimal)?,
        wait: row.try_get::<i64, _>("wait")? != 0,
        model_type: parsed(row, "model_type", DataType::from_name)?,
        dataset_type: parsed_opt(row, "dataset_type", |t| serde_json::from_str(t).ok())?,
        progress: progress
            .parse()
            .map_err(|e: sealtune_protocol::task::UnknownState| {
                corrupt("progress", e.to_string())
            })?,
        fail_reason: row.try_get("fail_reason")?,
        token_count: row
            .try_get::<Option<i64>, _>("token_count")?
            .map(|n| u64::try_from(n).map_err(|_| corrupt("token_count", n.to_string())))
            .transpose()?,
        task_fee: parsed_opt(row, "task_fee", decimal)?,
        training_attempts: row.try_get("training_attempts")?,
        deliverable_path: parsed_opt(row, "deliverable_path", |t| Some(PathBuf::from(t)))?,
        model_root_hash: parsed_opt(row, "model_root_hash", |t| t.parse().ok())?,
        encrypted_secret: parsed_opt(row, "encrypted_secret", |t| {
            hex::decode(t).ok().map(Bytes::from)
        })?,
        tee_signer: parsed_opt(row, "tee_signer", |t| t.parse().ok())?,
        seal_tag_digest: parsed_opt(row, "seal_tag_digest", |t| t.parse().ok())?,
        deliver_index: row.try_get("deliver_index")?,
        deliver_time: row.try_get("deliver_time")?,
        settle_tx: parsed_opt(row, "settle_tx", |t| t.parse().ok())?,
        settled_fee: parsed_opt(row, "settled_fee", decimal)?,
        settled_acknowledged: row
            .try_get::<Option<i64>, _>("settled_acknowledged")?
            .map(|v| v != 0),
        cleaned_at: row.try_get("cleaned_at")?,
        cancelled: row.try_get("cancelled")?,
    })
}
