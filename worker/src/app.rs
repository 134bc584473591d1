//! The worker's shared state: configuration, task store, files, chain, attestation, clock.
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::attest::Attestation;
use crate::chain::Chain;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;

/// Time as an input: the pipeline and the API never read the system clock directly.
pub trait Clock: Send + Sync + 'static {
    /// Unix seconds.
    fn now(&self) -> i64 {
        self.now_ms() / 1000
    }
    /// Unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// Named test-only crash points (`SEALTUNE_TEST_CRASH_AT=<name>`): the worker aborts when it reaches
/// the named pipeline stage, so tests can kill it at each stage and restart it; `<name>:kill` sends
/// itself `SIGKILL` there instead (what the kernel's OOM killer or a host does: no handler runs).
/// Never set in production; the worker warns at start when it is set.
#[derive(Debug, Clone, Default)]
pub struct CrashPoints {
    point: Option<String>,
    kill: bool,
}

impl CrashPoints {
    /// Every crash point, in pipeline order. The sealing points (`after-seal-written`,
    /// `-committed`, `-renamed`) are hit both where the executor child sealed (execute) and where
    /// finalize seals the training output.
    pub const ALL: [&'static str; 18] = [
        "after-setup",
        "after-model-key",
        "during-training",
        "after-checkpoint-sealed",
        "after-seal-written",
        "after-seal-committed",
        "after-seal-renamed",
        "after-training",
        "after-sign",
        "after-import",
        "after-seal",
        "after-zg-submit-recorded",
        "after-zg-submit",
        "during-zg-upload",
        "after-zg-upload",
        "after-add-deliverable",
        "before-settle",
        "after-settle",
    ];
    /// From `SEALTUNE_TEST_CRASH_AT`.
    pub fn from_env() -> Self {
        Self::parse(std::env::var("SEALTUNE_TEST_CRASH_AT").ok().as_deref())
    }
    /// From the value of `SEALTUNE_TEST_CRASH_AT`: `<name>` or `<name>:kill`.
    pub fn parse(value: Option<&str>) -> Self {
        let Some(value) = value.filter(|s| !s.is_empty()) else {
            return Self::default();
        };
        let (point, kill) = match value.strip_suffix(":kill") {
            Some(point) => (point, true),
            None => (value, false),
        };
        CrashPoints {
            point: Some(point.to_owned()),
            kill,
        }
    }
    /// The armed point, if any.
    pub fn armed(&self) -> Option<&str> {
        self.point.as_deref()
    }
    /// Aborts the process (or sends it `SIGKILL`) when `name` is armed.
    pub fn hit(&self, name: &str) {
        if self.armed() != Some(name) {
            return;
        }
        if self.kill {
            tracing::error!(crash_point = name, "test crash point reached: SIGKILL");
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
        }
        tracing::error!(crash_point = name, "test crash point reached: aborting");
        std::process::abort();
    }
}

/// Everything the API and the pipeline share.
pub struct Worker {
    /// Configuration.
    pub config: Config,
    /// Task store.
    pub store: Store,
    /// Files: uploads, deliverables.
    pub files: crate::storage::Store,
    /// Chain client.
    pub chain: Chain,
    /// TEE key and quotes.
    pub attest: Attestation,
    /// The measured configuration (its document is served at `/v1/config`).
    pub measured: crate::measured::Measured,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Wakes the pipeline (new task, cancel).
    pub wake: Notify,
    /// The running task's cancel token.
    pub running: std::sync::Mutex<Option<(String, CancellationToken)>>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// This binary (for `exec` children).
    pub exe: PathBuf,
    /// The training sandbox, as detected at start.
    pub sandbox: crate::exec::sandbox::Sandbox,
    /// Test crash points.
    pub crash: CrashPoints,
    /// Download rate limiter: (user, minute) → count.
    pub downloads:
        std::sync::Mutex<std::collections::HashMap<alloy::primitives::Address, (i64, u32)>>,
}

impl Worker {
    /// The directory of one task's files.
    pub fn task_dir(&self, id: &str) -> PathBuf {
        self.config.data_dir.join("tasks").join(id)
    }

    /// Appends a line to a task's log (errors are logged, not returned: the log is best effort).
    pub async fn task_log(&self, id: &str, message: impl AsRef<str>) {
        let message = message.as_ref();
        tracing::info!(task = id, "{message}");
        if let Err(e) = self.store.log(id, message, self.clock.now_ms()).await {
            tracing::warn!(task = id, "cannot write task log: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CrashPoints;

    #[test]
    fn a_crash_point_is_armed_by_name_and_kill_asks_for_sigkill() {
        let p = CrashPoints::parse(Some("after-seal-renamed:kill"));
        assert_eq!((p.armed(), p.kill), (Some("after-seal-renamed"), true));
        let p = CrashPoints::parse(Some("after-sign"));
        assert_eq!((p.armed(), p.kill), (Some("after-sign"), false));
        assert_eq!(CrashPoints::parse(Some("")).armed(), None);
        assert_eq!(CrashPoints::parse(None).armed(), None);
        assert!(CrashPoints::ALL.contains(&"after-seal-committed"));
    }
}
