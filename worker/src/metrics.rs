//! Prometheus metrics served at `/metrics` (text exposition format).
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of the per-state transition counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// The state entered.
    pub state: String,
}

/// Labels of the HTTP counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabel {
    /// Route template.
    pub route: String,
    /// Status code.
    pub status: u16,
}

/// The worker's metrics.
pub struct Metrics {
    registry: Registry,
    /// Tasks accepted.
    pub tasks_created: Counter,
    /// Tasks entering each state.
    pub task_states: Family<StateLabel, Counter>,
    /// Training steps reported by scripts.
    pub training_steps: Counter,
    /// Tasks queued or running.
    pub pending: Gauge,
    /// HTTP responses.
    pub http: Family<HttpLabel, Counter>,
    /// Bytes of deliverables served.
    pub download_bytes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sealtune");
        let tasks_created = Counter::default();
        let task_states = Family::<StateLabel, Counter>::default();
        let training_steps = Counter::default();
        let pending = Gauge::default();
        let http = Family::<HttpLabel, Counter>::default();
        let download_bytes = Counter::default();
        registry.register("tasks_created", "Tasks accepted", tasks_created.clone());
        registry.register(
            "task_states",
            "Tasks entering each state",
            task_states.clone(),
        );
        registry.register(
            "training_steps",
            "Training steps reported by scripts",
            training_steps.clone(),
        );
        registry.register("pending_tasks", "Tasks queued or running", pending.clone());
        registry.register(
            "http_responses",
            "HTTP responses by route and status",
            http.clone(),
        );
        registry.register(
            "download_bytes",
            "Bytes of encrypted deliverables served",
            download_bytes.clone(),
        );
        Metrics {
            registry,
            tasks_created,
            task_states,
            training_steps,
            pending,
            http,
            download_bytes,
        }
    }
}

impl Metrics {
    /// Counts a state entered.
    pub fn state(&self, state: crate::store::TaskState) {
        self.task_states
            .get_or_create(&StateLabel {
                state: state.as_str().to_owned(),
            })
            .inc();
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
