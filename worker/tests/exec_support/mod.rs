//! Helpers shared by the executor tests: a task directory with a script, a dataset and params, and a
//! run of the real `sealtune-worker exec` child that collects every event.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use sealtune_protocol::deliverable::{self, DeliverableKey};
use sealtune_protocol::events::{Event, LogLevel};
use sealtune_protocol::sig::address_of;
use sealtune_worker::exec::sandbox::{RuntimeNeeds, Sandbox, SandboxConfig};
use sealtune_worker::exec::{
    self, ChildSealed, DataType, ExecError, ExecLimits, ExecOutcome, ExecSpec, SealSpec,
};
use tokio_util::sync::CancellationToken;

/// A task directory laid out as the pipeline lays it out.
pub struct Task {
    pub dir: tempfile::TempDir,
    pub spec: ExecSpec,
}

impl Task {
    /// A task whose script is `script` (Python source) and whose dataset is `dataset` (JSONL text).
    pub fn new(script: &str, dataset: &str) -> Task {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("train.py"), script).unwrap();
        std::fs::write(root.join("dataset.jsonl"), dataset).unwrap();
        std::fs::write(root.join("config.json"), "{}").unwrap();
        std::fs::create_dir_all(root.join("model")).unwrap();
        let spec = ExecSpec {
            script: root.join("train.py"),
            dataset: root.join("dataset.jsonl"),
            data_type: DataType::Text,
            data_path: root.join("data"),
            model_path: root.join("model"),
            config_path: root.join("config.json"),
            output_dir: root.join("output"),
            seal: None,
            venv: None,
            dataset_type: None,
            checkpoint: None,
        };
        Task { dir, spec }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Seal in the child with a fixed test key.
    pub fn with_seal(mut self) -> Self {
        self.spec.seal = Some(SealSpec {
            key_hex: TEST_KEY_HEX.into(),
            sealed_path: self.root().join("model.sealed"),
        });
        self
    }
}

pub const TEST_KEY_HEX: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

/// The sandbox as the worker detects it (default `[sandbox]`, nothing checked for readability): as
/// root, every run gets its own task uid.
pub fn sandbox() -> Sandbox {
    Sandbox::detect(&SandboxConfig::default(), &RuntimeNeeds::default())
}

/// Run the task in the real executor child, in the sandbox, with `limits`; returns the result.
pub async fn run_limited(task: &Task, limits: &ExecLimits) -> Result<ExecOutcome, ExecError> {
    let (tx, _rx) = tokio::sync::mpsc::channel(1024);
    let jail = sandbox().jail().unwrap();
    exec::spawn(
        Path::new(env!("CARGO_BIN_EXE_sealtune-worker")),
        task.root(),
        &task.spec,
        limits,
        &jail,
        tx,
        CancellationToken::new(),
    )
    .await
}

/// Run the task in the real executor child (in the sandbox); returns the result and every event, in
/// arrival order.
pub async fn run_with(
    task: &Task,
    timeout: Duration,
    cancel: CancellationToken,
) -> (Result<ExecOutcome, ExecError>, Vec<Event>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let collector = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        events
    });
    let limits = ExecLimits {
        timeout,
        memory_limit_bytes: None,
    };
    let jail = sandbox().jail().unwrap();
    let result = exec::spawn(
        Path::new(env!("CARGO_BIN_EXE_sealtune-worker")),
        task.root(),
        &task.spec,
        &limits,
        &jail,
        tx,
        cancel,
    )
    .await;
    let events = tokio::time::timeout(Duration::from_secs(10), collector)
        .await
        .expect("the event channel closes once spawn returns")
        .unwrap();
    (result, events)
}

/// Run the task as `ranks` processes (`exec::spawn_ranks`, in the sandbox); returns the result and
/// every event, in arrival order.
pub async fn run_ranks(
    task: &Task,
    ranks: u32,
    timeout: Duration,
    cancel: CancellationToken,
) -> (Result<ExecOutcome, ExecError>, Vec<Event>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let collector = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        events
    });
    let limits = ExecLimits {
        timeout,
        memory_limit_bytes: None,
    };
    let jail = sandbox().jail().unwrap();
    let launch = exec::Launch {
        worker_exe: Path::new(env!("CARGO_BIN_EXE_sealtune-worker")),
        task_dir: task.root(),
        spec: &task.spec,
        limits: &limits,
        jail: &jail,
    };
    let result = exec::spawn_ranks(launch, ranks, tx, cancel).await;
    let events = tokio::time::timeout(Duration::from_secs(10), collector)
        .await
        .expect("the event channel closes once spawn returns")
        .unwrap();
    (result, events)
}

pub async fn run(task: &Task) -> (Result<ExecOutcome, ExecError>, Vec<Event>) {
    run_with(task, Duration::from_secs(300), CancellationToken::new()).await
}

/// The log lines among the events.
pub fn logs(events: &[Event]) -> Vec<(LogLevel, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Log { level, message } => Some((*level, message.clone())),
            _ => None,
        })
        .collect()
}

/// Events other than logs (their order relative to logs is not defined: separate streams).
pub fn non_logs(events: &[Event]) -> Vec<Event> {
    events
        .iter()
        .filter(|e| !matches!(e, Event::Log { .. }))
        .cloned()
        .collect()
}

/// A small JSONL dataset of the three shapes.
pub const DATASET: &str = concat!(
    r#"{"instruction":"Add","input":"1 2","output":"3"}"#,
    "\n",
    r#"{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}"#,
    "\n",
    r#"{"text":"plain text"}"#,
    "\n",
);

/// The venv's python, for tests that compare with a plain interpreter.
pub fn venv_python() -> PathBuf {
    PathBuf::from(std::env::var_os("VIRTUAL_ENV").expect("run through scripts/env"))
        .join("bin/python")
}

/// The losses of the `progress` events, in order.
pub fn losses(events: &[Event]) -> Vec<f64> {
    non_logs(events)
        .iter()
        .filter_map(|e| match e {
            Event::Progress { loss: Some(l), .. } => Some(*l),
            _ => None,
        })
        .collect()
}

/// What the parent and then the customer do with a model the child sealed (`with_seal`): sign its
/// tag digest with a TEE key made of `tee_byte`, `finish` the file, open it with the test key
/// expecting that signer, and unzip it. Returns the unzipped directory (`output_model/...` inside).
pub fn sign_open_unzip(task: &Task, sealed: &ChildSealed, tee_byte: u8) -> PathBuf {
    let tee = k256::ecdsa::SigningKey::from_slice(&[tee_byte; 32]).unwrap();
    let sealed_path = task.root().join("model.sealed");
    deliverable::finish(
        &sealed_path,
        &deliverable::sign_tags(&tee, &sealed.tag_digest),
    )
    .unwrap();
    let zip = task.root().join("model.zip");
    let key = DeliverableKey::from_hex(TEST_KEY_HEX).unwrap();
    deliverable::open_file(&sealed_path, &zip, &key, address_of(tee.verifying_key())).unwrap();
    let out = task.root().join("opened");
    deliverable::unzip_safely(&zip, &out, &Default::default()).unwrap();
    out
}
