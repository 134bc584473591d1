//! The OpenAI fine-tuning API's shapes, framework-free: the objects the gateway answers with
//! (`file`, `fine_tuning.job`, `fine_tuning.job.event`, `fine_tuning.job.checkpoint`, the `list`
//! envelope), the requests it takes, the translation of OpenAI hyperparameters into the provider's
//! `trainingParams`, and the reading of the provider's task log into metrics.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::store::{EventRow, FileRow, JobRow};

/// The provider's defaults for the stock LoRA script (0G's documented training config): what
/// `"auto"` means.
pub mod defaults {
    /// `neftune_noise_alpha`.
    pub const NEFTUNE_NOISE_ALPHA: u64 = 5;
    /// `num_train_epochs`.
    pub const EPOCHS: u64 = 3;
    /// `per_device_train_batch_size`.
    pub const BATCH_SIZE: u64 = 2;
    /// `learning_rate`: the base a `learning_rate_multiplier` multiplies.
    pub const LEARNING_RATE: f64 = 0.0002;
    /// The lowest `learning_rate` the stock script accepts.
    pub const MIN_LEARNING_RATE: f64 = 0.00001;
    /// The highest `learning_rate` the stock script accepts.
    pub const MAX_LEARNING_RATE: f64 = 0.001;
}

/// `"auto"` or a value.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Auto<T> {
    /// A value.
    Value(T),
    /// The literal `"auto"` (any string is refused by [`Hyperparameters::training_params`] but `"auto"`).
    Auto(AutoWord),
}

/// The word `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoWord {
    /// `"auto"`.
    Auto,
}

impl<T> Default for Auto<T> {
    fn default() -> Self {
        Auto::Auto(AutoWord::Auto)
    }
}

impl<T: Copy> Auto<T> {
    fn value(&self) -> Option<T> {
        match self {
            Auto::Value(v) => Some(*v),
            Auto::Auto(_) => None,
        }
    }
}

/// OpenAI's hyperparameters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Hyperparameters {
    /// Epochs → `num_train_epochs`.
    #[serde(default)]
    pub n_epochs: Auto<u64>,
    /// Batch size → `per_device_train_batch_size`.
    #[serde(default)]
    pub batch_size: Auto<u64>,
    /// × the provider's default learning rate → `learning_rate` (clamped to its range).
    #[serde(default)]
    pub learning_rate_multiplier: Auto<f64>,
}

/// The provider's training parameters a job's hyperparameters became, and what was adjusted.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    /// `trainingParams` (JSON text, the learning rate in decimal notation as the stock script requires).
    pub training_params: String,
    /// Notes for the job's events (a clamped learning rate).
    pub notes: Vec<String>,
}

/// A hyperparameter the provider cannot take: (the parameter's name, why).
pub type BadHyperparameter = (&'static str, String);

/// A learning rate in decimal notation (no exponent), at most 10 decimals, trailing zeros cut.
fn decimal(v: f64) -> String {
    let s = format!("{v:.10}");
    let s = s.trim_end_matches('0');
    s.strip_suffix('.').unwrap_or(s).to_owned()
}

impl Hyperparameters {
    /// The provider's `trainingParams` for these hyperparameters, checked against the stock
    /// script's rules (`sealtune_protocol::params::LoraParams`) before anything is paid.
    pub fn training_params(&self) -> Result<Translated, BadHyperparameter> {
        let epochs = self.n_epochs.value().unwrap_or(defaults::EPOCHS);
        let batch = self.batch_size.value().unwrap_or(defaults::BATCH_SIZE);
        let mut notes = Vec::new();
        let lr = match self.learning_rate_multiplier.value() {
            None => defaults::LEARNING_RATE,
            Some(m) if !(m.is_finite() && m > 0.0) => {
                return Err((
                    "hyperparameters.learning_rate_multiplier",
                    format!("learning_rate_multiplier must be a positive number, got {m}"),
                ));
            }
            Some(m) => {
                let wanted = m * defaults::LEARNING_RATE;
                let lr = wanted.clamp(defaults::MIN_LEARNING_RATE, defaults::MAX_LEARNING_RATE);
                if lr != wanted {
                    notes.push(format!(
                        "learning_rate_multiplier {m} × the provider's default learning rate {} = {} is outside the provider's range [{}, {}]: clamped to {}",
                        decimal(defaults::LEARNING_RATE),
                        decimal(wanted),
                        decimal(defaults::MIN_LEARNING_RATE),
                        decimal(defaults::MAX_LEARNING_RATE),
                        decimal(lr)
                    ));
                }
                lr
            }
        };
        let text = format!(
            r#"{{"neftune_noise_alpha":{},"num_train_epochs":{epochs},"per_device_train_batch_size":{batch},"learning_rate":{},"max_steps":-1}}"#,
            defaults::NEFTUNE_NOISE_ALPHA,
            decimal(lr)
        );
        sealtune_protocol::params::LoraParams::parse(&text).map_err(|e| {
            let param = match &e {
                sealtune_protocol::params::ParamsError::Range { key, .. } => match *key {
                    "num_train_epochs" => "hyperparameters.n_epochs",
                    "per_device_train_batch_size" => "hyperparameters.batch_size",
                    _ => "hyperparameters",
                },
                _ => "hyperparameters",
            };
            (
                param,
                format!("the provider refuses these hyperparameters: {e}"),
            )
        })?;
        Ok(Translated {
            training_params: text,
            notes,
        })
    }
}

/// The `method` object of newer OpenAI clients (`{"type":"supervised","supervised":{"hyperparameters":…}}`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Method {
    /// `supervised` (the only kind a provider trains).
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// The supervised method's settings.
    #[serde(default)]
    pub supervised: Option<MethodSettings>,
}

/// A method's settings.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MethodSettings {
    /// Its hyperparameters.
    #[serde(default)]
    pub hyperparameters: Option<Hyperparameters>,
}

/// `POST /v1/fine_tuning/jobs`. Unknown fields (OPEA's `General`, `suffix`, `integrations`,
/// `metadata`) are accepted and named in the job's events as not used.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateJob {
    /// `<model>` (the default provider) or `<provider>:<model>`, or a configured alias.
    pub model: String,
    /// A file id (`file-…`) or, as OPEA sends it, the uploaded file's name.
    pub training_file: String,
    /// Not used by providers (reported in the events).
    #[serde(default)]
    pub validation_file: Option<String>,
    /// The hyperparameters (legacy form).
    #[serde(default)]
    pub hyperparameters: Option<Hyperparameters>,
    /// The method (newer form).
    #[serde(default)]
    pub method: Option<Method>,
    /// Reported back; providers do not take a seed.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Anything else.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

impl CreateJob {
    /// The hyperparameters from either form (`method.supervised` wins).
    pub fn hyperparameters(&self) -> Hyperparameters {
        self.method
            .as_ref()
            .and_then(|m| m.supervised.as_ref())
            .and_then(|s| s.hyperparameters)
            .or(self.hyperparameters)
            .unwrap_or_default()
    }
}

/// OPEA's `{"fine_tuning_job_id": …}` body.
#[derive(Debug, Clone, Deserialize)]
pub struct JobIdBody {
    /// The job.
    pub fine_tuning_job_id: String,
}

/// `?after=&limit=` of the list endpoints.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListQuery {
    /// The last id of the previous page.
    pub after: Option<String>,
    /// Page size (default 20, at most 100).
    pub limit: Option<u32>,
    /// `GET /v1/files?purpose=`.
    pub purpose: Option<String>,
}

impl ListQuery {
    /// The page size.
    pub fn limit(&self) -> u32 {
        self.limit.unwrap_or(20).clamp(1, 100)
    }
}

/// The `list` envelope.
pub fn list(data: Vec<Value>, has_more: bool) -> Value {
    let first = data.first().and_then(|d| d.get("id")).cloned();
    let last = data.last().and_then(|d| d.get("id")).cloned();
    json!({ "object": "list", "data": data, "has_more": has_more, "first_id": first, "last_id": last })
}

/// A `file` object.
pub fn file(f: &FileRow) -> Value {
    json!({
        "object": "file",
        "id": f.id,
        "bytes": f.bytes,
        "created_at": f.created_at,
        "filename": f.filename,
        "purpose": f.purpose,
        "status": "processed",
        "status_details": f.status_details,
        "expires_at": null,
    })
}

/// A `fine_tuning.job` object.
pub fn job(j: &JobRow) -> Value {
    let hyper: Value = serde_json::from_str(&j.hyperparameters).unwrap_or(Value::Null);
    let error: Value = j
        .error
        .as_deref()
        .and_then(|e| serde_json::from_str(e).ok())
        .unwrap_or(Value::Null);
    json!({
        "object": "fine_tuning.job",
        "id": j.id,
        "model": j.model,
        "created_at": j.created_at,
        "finished_at": j.finished_at,
        "fine_tuned_model": j.fine_tuned_model,
        "organization_id": "sealtune-gateway",
        "result_files": j.result_file.iter().collect::<Vec<_>>(),
        "status": j.status,
        "validation_file": j.validation_file,
        "training_file": j.training_file,
        "hyperparameters": hyper,
        "method": { "type": "supervised", "supervised": { "hyperparameters": hyper } },
        "trained_tokens": j.trained_tokens,
        "error": error,
        "seed": j.seed,
        "estimated_finish": null,
        "integrations": [],
        "metadata": { "provider": j.provider, "provider_model": j.provider_model, "task_id": j.task_id },
        "user_provided_suffix": null,
    })
}

/// A `fine_tuning.job.event` object.
pub fn event(e: &EventRow) -> Value {
    let data: Value = e
        .data
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_else(|| json!({}));
    json!({
        "object": "fine_tuning.job.event",
        "id": e.id,
        "created_at": e.created_at,
        "level": e.level,
        "message": e.message,
        "type": e.kind,
        "data": data,
    })
}

/// The job's checkpoints: the one delivered adapter, at the last step the provider reported.
pub fn checkpoints(j: &JobRow, metrics: Option<&EventRow>) -> Vec<Value> {
    let Some(model) = &j.fine_tuned_model else {
        return Vec::new();
    };
    let data: Value = metrics
        .and_then(|m| m.data.as_deref())
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_else(|| json!({}));
    let step = data.get("step").and_then(Value::as_u64).unwrap_or(0);
    vec![json!({
        "object": "fine_tuning.job.checkpoint",
        "id": format!("ftckpt-{}", j.id.trim_start_matches("ftjob-")),
        "created_at": j.finished_at.unwrap_or(j.created_at),
        "fine_tuned_model_checkpoint": model,
        "fine_tuning_job_id": j.id,
        "metrics": data,
        "step_number": step,
    })]
}

/// The OpenAI status of a provider task state (`TaskState` names).
pub fn status_of(state: &str) -> &'static str {
    match state {
        "Init" | "SettingUp" | "SetUp" => "queued",
        "Failed" => "failed",
        _ => "running",
    }
}

/// A `metrics` event's data from a task-log message (`step 3/10 epoch 0.30 loss 2.1234 lr 2.00e-04`,
/// as the worker writes it), `None` for any other line.
pub fn metrics_of(message: &str) -> Option<Value> {
    let rest = message.strip_prefix("step ")?;
    let mut words = rest.split_whitespace();
    let step_text = words.next()?;
    let (step, total) = match step_text.split_once('/') {
        Some((s, t)) => (s.parse::<u64>().ok()?, t.parse::<u64>().ok()),
        None => (step_text.parse::<u64>().ok()?, None),
    };
    let mut data = serde_json::Map::new();
    data.insert("step".into(), json!(step));
    if let Some(t) = total {
        data.insert("total_steps".into(), json!(t));
    }
    while let (Some(k), Some(v)) = (words.next(), words.next()) {
        let Ok(v) = v.parse::<f64>() else { continue };
        let name = match k {
            "loss" => "train_loss",
            "epoch" => "epoch",
            "lr" => "learning_rate",
            _ => continue,
        };
        data.insert(name.into(), json!(v));
    }
    Some(Value::Object(data))
}

/// A log line `[RFC3339] message` split into its message (the whole line when it has no time).
pub fn log_message(line: &str) -> &str {
    match line.strip_prefix('[').and_then(|l| l.split_once("] ")) {
        Some((_, m)) => m,
        None => line,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn hp(json: &str) -> Hyperparameters {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn auto_is_the_providers_defaults() {
        let t = hp(r#"{"n_epochs":"auto","batch_size":"auto","learning_rate_multiplier":"auto"}"#)
            .training_params()
            .unwrap();
        assert_eq!(
            t.training_params,
            r#"{"neftune_noise_alpha":5,"num_train_epochs":3,"per_device_train_batch_size":2,"learning_rate":0.0002,"max_steps":-1}"#
        );
        assert!(t.notes.is_empty());
        assert_eq!(Hyperparameters::default(), hp("{}"));
    }

    #[test]
    fn hyperparameters_map_to_the_providers_names() {
        let t = hp(r#"{"n_epochs":1,"batch_size":4,"learning_rate_multiplier":0.5}"#)
            .training_params()
            .unwrap();
        let v: Value = serde_json::from_str(&t.training_params).unwrap();
        assert_eq!(v["num_train_epochs"], 1);
        assert_eq!(v["per_device_train_batch_size"], 4);
        assert_eq!(v["learning_rate"], 0.0001);
    }

    #[test]
    fn a_learning_rate_outside_the_range_is_clamped_and_said() {
        let t = hp(r#"{"learning_rate_multiplier":0.01}"#)
            .training_params()
            .unwrap();
        assert!(
            t.training_params.contains(r#""learning_rate":0.00001,"#),
            "{}",
            t.training_params
        );
        assert!(t.notes[0].contains("clamped to 0.00001"), "{:?}", t.notes);
        let t = hp(r#"{"learning_rate_multiplier":100}"#)
            .training_params()
            .unwrap();
        assert!(t.training_params.contains(r#""learning_rate":0.001,"#));
        assert!(t.notes[0].contains("clamped to 0.001"), "{:?}", t.notes);
    }

    #[test]
    fn out_of_range_hyperparameters_name_the_parameter() {
        let (param, msg) = hp(r#"{"n_epochs":50}"#).training_params().unwrap_err();
        assert_eq!(param, "hyperparameters.n_epochs");
        assert!(msg.contains("num_train_epochs"), "{msg}");
        let (param, _) = hp(r#"{"batch_size":64}"#).training_params().unwrap_err();
        assert_eq!(param, "hyperparameters.batch_size");
        let (param, _) = hp(r#"{"learning_rate_multiplier":-1}"#)
            .training_params()
            .unwrap_err();
        assert_eq!(param, "hyperparameters.learning_rate_multiplier");
        assert!(serde_json::from_str::<Hyperparameters>(r#"{"n_epochs":"many"}"#).is_err());
        assert!(serde_json::from_str::<Hyperparameters>(r#"{"epochs":2}"#).is_err());
    }

    #[test]
    fn worker_progress_lines_become_metrics() {
        let line = "[2026-12-05T10:00:00Z] step 3/10 epoch 0.30 loss 2.1234 lr 2.00e-04";
        let m = metrics_of(log_message(line)).unwrap();
        assert_eq!(m["step"], 3);
        assert_eq!(m["total_steps"], 10);
        assert_eq!(m["train_loss"], 2.1234);
        assert_eq!(m["learning_rate"], 0.0002);
        assert_eq!(metrics_of("step 7").unwrap()["step"], 7);
        assert!(metrics_of("training started").is_none());
        assert!(metrics_of("step x/10").is_none());
    }

    #[test]
    fn method_hyperparameters_win_over_the_legacy_field() {
        let c: CreateJob = serde_json::from_str(
            r#"{"model":"m","training_file":"f","hyperparameters":{"n_epochs":2},
                "method":{"type":"supervised","supervised":{"hyperparameters":{"n_epochs":1}}},
                "General":{"lora_config":{"r":16}}}"#,
        )
        .unwrap();
        assert_eq!(c.hyperparameters().n_epochs, Auto::Value(1));
        assert!(c.extra.contains_key("General"));
    }
}
