//! Prometheus metrics of a node, served as text on `--metrics-listen` (GET /metrics).
//!
//! Per model and version: calls by status, latency histograms (queue, compute, total),
//! batch sizes, calls in flight and queued, readiness and load time. Each event updates
//! its metric where it is logged (the registry and the replica actors).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::Mutex;
use tokio::net::TcpListener;
pub use troupe_telemetry::metrics::{BATCH_BUCKETS, Histogram, LATENCY_BUCKETS, esc};

use crate::registry::Registry;

/// The histograms of one loaded model version.
pub struct ModelMetrics {
    pub total: Histogram,
    pub queue: Histogram,
    pub compute: Histogram,
    pub batch: Histogram,
    /// Time spent computing explanations.
    pub explain: Histogram,
    /// Text pipelines: time to tokenize one call, and to pool one batch.
    pub tokenize: Histogram,
    pub pool: Histogram,
    /// Text pipelines: rows pooled into embeddings.
    pub pooled_rows: std::sync::atomic::AtomicU64,
}

impl Default for ModelMetrics {
    fn default() -> Self {
        Self {
            total: Histogram::new(&LATENCY_BUCKETS),
            queue: Histogram::new(&LATENCY_BUCKETS),
            compute: Histogram::new(&LATENCY_BUCKETS),
            batch: Histogram::new(&BATCH_BUCKETS),
            explain: Histogram::new(&LATENCY_BUCKETS),
            tokenize: Histogram::new(&LATENCY_BUCKETS),
            pool: Histogram::new(&LATENCY_BUCKETS),
            pooled_rows: Default::default(),
        }
    }
}

/// Node-wide counters that outlive a model (calls by model, version and status).
#[derive(Default)]
pub struct NodeMetrics {
    requests: Mutex<BTreeMap<(String, String, String), u64>>,
}

impl NodeMetrics {
    /// Counts one call. Unknown models are counted under model="" to bound cardinality.
    pub fn count_request(&self, model: &str, version: &str, status: tonic::Code) {
        let key = (
            model.to_string(),
            version.to_string(),
            troupe_proto::codes::code_name(status).to_string(),
        );
        *self.requests.lock().entry(key).or_default() += 1;
    }
}

/// A histogram family: name, type, help, and where each model keeps it.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ModelMetrics) -> &Histogram,
);

/// The text exposition of every metric.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    out.push_str(
        "# HELP troupe_requests_total Inference calls by model, version and gRPC status.\n",
    );
    out.push_str("# TYPE troupe_requests_total counter\n");
    for ((m, v, s), n) in registry.metrics.requests.lock().iter() {
        let _ = writeln!(
            out,
            "troupe_requests_total{{model=\"{}\",version=\"{}\",status=\"{}\"}} {n}",
            esc(m),
            esc(v),
            s
        );
    }
    let models = registry.list();
    let families: [Family; 7] = [
        (
            "troupe_request_duration_seconds",
            "histogram",
            "Time from a call's arrival at the model to its answer.",
            |m| &m.total,
        ),
        (
            "troupe_queue_duration_seconds",
            "histogram",
            "Time a batch's oldest call waited in the queue.",
            |m| &m.queue,
        ),
        (
            "troupe_compute_duration_seconds",
            "histogram",
            "Time the backend took per batch.",
            |m| &m.compute,
        ),
        (
            "troupe_batch_size",
            "histogram",
            "Rows per backend call.",
            |m| &m.batch,
        ),
        (
            "troupe_explain_duration_seconds",
            "histogram",
            "Time spent computing explanations (the `explain` parameter).",
            |m| &m.explain,
        ),
        (
            "troupe_tokenize_duration_seconds",
            "histogram",
            "Text models: time to tokenize one call.",
            |m| &m.tokenize,
        ),
        (
            "troupe_pool_duration_seconds",
            "histogram",
            "Text models: time to pool one batch's hidden states into embeddings.",
            |m| &m.pool,
        ),
    ];
    for (name, kind, help, pick) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for m in &models {
            let labels = format!(
                "model=\"{}\",version=\"{}\"",
                esc(&m.def.name),
                esc(&m.def.version)
            );
            pick(&m.metrics).render(&mut out, name, &labels);
        }
    }
    let gauges: [(&str, &str); 4] = [
        ("troupe_in_flight", "Calls being run now."),
        ("troupe_queue_length", "Calls waiting in the model's queue."),
        ("troupe_model_ready", "1 when at least one instance serves."),
        (
            "troupe_model_load_seconds",
            "How long the model took to load.",
        ),
    ];
    for (i, (name, help)) in gauges.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for m in &models {
            let v = match i {
                0 => m.queue.running() as f64,
                1 => m.queue.len() as f64,
                2 => f64::from(u8::from(m.is_ready())),
                _ => m.load_micros.load(Ordering::Relaxed) as f64 / 1e6,
            };
            let _ = writeln!(
                out,
                "{name}{{model=\"{}\",version=\"{}\"}} {v}",
                esc(&m.def.name),
                esc(&m.def.version)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP troupe_pooled_rows_total Text models: rows pooled into embeddings.\n# TYPE troupe_pooled_rows_total counter"
    );
    for m in models.iter().filter(|m| m.pipeline.is_some()) {
        let _ = writeln!(
            out,
            "troupe_pooled_rows_total{{model=\"{}\",version=\"{}\"}} {}",
            esc(&m.def.name),
            esc(&m.def.version),
            m.metrics.pooled_rows.load(Ordering::Relaxed)
        );
    }
    let drift: [(&str, &str, &str); 3] = [
        (
            "troupe_drift_score",
            "gauge",
            "Input drift score of the current window (largest standardized shift over features).",
        ),
        (
            "troupe_drift_alert",
            "gauge",
            "1 while the input drift score is above the model's threshold.",
        ),
        (
            "troupe_drift_alerts_total",
            "counter",
            "Calls after which the drift score was above the threshold.",
        ),
    ];
    for (i, (name, kind, help)) in drift.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for m in &models {
            let Some(d) = &m.hooks.drift else { continue };
            let v = match i {
                0 => d.last_score(),
                1 => d.alerting.load(Ordering::Relaxed) as f64,
                _ => d.alerts.load(Ordering::Relaxed) as f64,
            };
            let _ = writeln!(
                out,
                "{name}{{model=\"{}\",version=\"{}\"}} {v}",
                esc(&m.def.name),
                esc(&m.def.version)
            );
        }
    }
    out
}

/// Serves GET /metrics until the process ends.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>) {
    troupe_telemetry::metrics::serve(listener, move || render(&registry)).await
}
