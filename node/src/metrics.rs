//! Prometheus metrics of a node, on its own port and on `--metrics-listen` (GET /metrics).
//!
//! Per model and version: calls by status, latency histograms (queue, compute, total),
//! batch sizes, calls in flight and queued, readiness and load time. Each event updates
//! its metric where it is logged (the registry and the replica actors); a scrape
//! ([`Scrape`], a prometheus-client collector) writes the families from one sample per
//! loaded model version, so an unloaded model's series go with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use troupe_telemetry::metrics::{
    Collector, ConstCounter, ConstGauge, Counter, DescriptorEncoder, Family, Histogram,
    batch_histogram, family, latency_histogram, metric,
};

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
    pub pooled_rows: Counter,
}

impl Default for ModelMetrics {
    fn default() -> Self {
        Self {
            total: latency_histogram(),
            queue: latency_histogram(),
            compute: latency_histogram(),
            batch: batch_histogram(),
            explain: latency_histogram(),
            tokenize: latency_histogram(),
            pool: latency_histogram(),
            pooled_rows: Counter::default(),
        }
    }
}

/// Audit lines that did not reach the file (counted by the audit log, rendered here).
#[derive(Debug, Default)]
pub struct AuditLosses {
    /// Dropped because the writer was `AUDIT_QUEUE` lines behind.
    pub dropped: AtomicU64,
    /// Lost because the file could not be written (disk full, I/O error).
    pub failed: AtomicU64,
}

/// Family names other parts read too (the dashboard's live figures and gauges).
pub const REQUESTS: &str = "troupe_requests";
pub const REQUEST_DURATION: &str = "troupe_request_duration_seconds";
pub const IN_FLIGHT: &str = "troupe_in_flight";
pub const QUEUE_LENGTH: &str = "troupe_queue_length";
pub const DRIFT_SCORE: &str = "troupe_drift_score";
pub const FEATURE_DRIFT_WINDOWS: &str = "troupe_feature_drift_windows";
pub const OUTLIERS: &str = "troupe_outliers";

/// The labels of a call counted by the node: model, version and status.
type CallLabels = [(&'static str, String); 3];

/// Node-wide counters that outlive a model (calls by model, version and status).
#[derive(Default)]
pub struct NodeMetrics {
    requests: Family<CallLabels, Counter>,
    /// The latest traced calls, for the dashboard.
    pub traces: troupe_telemetry::dashboard::RecentTraces,
}

impl NodeMetrics {
    /// Counts one call. Unknown models are counted under model="" to bound cardinality.
    pub fn count_request(&self, model: &str, version: &str, status: tonic::Code) {
        let key = [
            ("model", model.to_string()),
            ("version", version.to_string()),
            ("status", troupe_proto::codes::code_name(status).to_string()),
        ];
        self.requests.get_or_create(&key).inc();
    }
}

/// What a scrape reads of one loaded model version, taken by the model itself
/// ([`crate::model::LoadedModel::sample`]): the metrics render from values, not from
/// the runtime.
pub struct ModelSample<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub metrics: &'a ModelMetrics,
    pub in_flight: u64,
    pub queued: usize,
    pub ready: bool,
    pub load_seconds: f64,
    /// Whether the model has a text pipeline (it then counts pooled rows).
    pub text: bool,
    pub drift: Option<DriftSample>,
    /// The latest quality report of a model with `[monitoring]`.
    pub quality: Option<troupe_proto::troupe::QualityResponse>,
    /// The drift watch of a model with `[monitoring.drift]`.
    pub feature_drift: Option<FeatureDriftSample>,
    /// Calls queued for review, by reason (outlier, low_score, drift, sample).
    pub reviews: Option<[u64; 4]>,
    /// Webhook alerts: posted, failed (every attempt), dropped (queue full).
    pub alerts: Option<[u64; 3]>,
}

/// The drift watch's state at a scrape.
pub struct FeatureDriftSample {
    pub last: Option<troupe_monitor::watch::WindowResult>,
    pub windows: u64,
    pub alerting: bool,
    pub outliers: u64,
}

/// The drift hook's state at a scrape.
pub struct DriftSample {
    pub score: f64,
    pub alerting: bool,
    pub alerts: u64,
}

/// What a scrape reads: the node's models and counters.
pub struct Scrape(pub Arc<crate::registry::Registry>);

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("node metrics")
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let registry = &self.0;
        let models = registry.list();
        let samples: Vec<_> = models.iter().map(|m| m.sample()).collect();
        let audit = registry.open_audit_log();
        encode_gpus(&mut encoder, &registry.opts.gpus.read())?;
        encode(
            &mut encoder,
            &registry.metrics,
            audit.as_ref().map(|a| a.losses()),
            registry.open_monitoring().map(|m| m.recorder.counts()),
            &samples,
        )
    }
}

/// A per-GPU gauge, named as Triton's: name, help, and how to read it.
type GpuGauge = (
    &'static str,
    &'static str,
    fn(&crate::gpu::GpuReading) -> f64,
);

const GPU_GAUGES: [GpuGauge; 3] = [
    (
        "nv_gpu_memory_total_bytes",
        "GPU total memory, in bytes.",
        |g| g.total_bytes as f64,
    ),
    (
        "nv_gpu_memory_used_bytes",
        "GPU used memory, in bytes (all processes).",
        |g| g.used_bytes as f64,
    ),
    (
        "nv_gpu_utilization",
        "GPU utilization rate, 0.0 to 1.0.",
        |g| g.utilization,
    ),
];

/// The GPU gauges, one series per GPU labelled `gpu_uuid` (none without GPUs).
pub fn encode_gpus(e: &mut DescriptorEncoder, gpus: &[crate::gpu::GpuReading]) -> std::fmt::Result {
    for (name, help, read) in GPU_GAUGES {
        family(
            e,
            name,
            help,
            gpus.iter()
                .map(|g| ([("gpu_uuid", g.uuid.as_str())], ConstGauge::new(read(g)))),
        )?;
    }
    Ok(())
}

/// A histogram of every model: name, help, and which of its histograms.
type HistogramFamily = (&'static str, &'static str, fn(&ModelMetrics) -> &Histogram);

const HISTOGRAM_FAMILIES: [HistogramFamily; 7] = [
    (
        REQUEST_DURATION,
        "Time from a call's arrival at the model to its answer.",
        |m| &m.total,
    ),
    (
        "troupe_queue_duration_seconds",
        "Time a batch's oldest call waited in the queue.",
        |m| &m.queue,
    ),
    (
        "troupe_compute_duration_seconds",
        "Time the backend took per batch.",
        |m| &m.compute,
    ),
    ("troupe_batch_size", "Rows per backend call.", |m| &m.batch),
    (
        "troupe_explain_duration_seconds",
        "Time spent computing explanations (the `explain` parameter).",
        |m| &m.explain,
    ),
    (
        "troupe_tokenize_duration_seconds",
        "Text models: time to tokenize one call.",
        |m| &m.tokenize,
    ),
    (
        "troupe_pool_duration_seconds",
        "Text models: time to pool one batch's hidden states into embeddings.",
        |m| &m.pool,
    ),
];

/// A per-model gauge: name, help, and how to read a sample (`None`: no series).
type Gauge = (&'static str, &'static str, fn(&ModelSample) -> Option<f64>);

const GAUGES: [Gauge; 6] = [
    (IN_FLIGHT, "Calls being run now.", |m| {
        Some(m.in_flight as f64)
    }),
    (QUEUE_LENGTH, "Calls waiting in the model's queue.", |m| {
        Some(m.queued as f64)
    }),
    (
        "troupe_model_ready",
        "1 when at least one instance serves.",
        |m| Some(f64::from(u8::from(m.ready))),
    ),
    (
        "troupe_model_load_seconds",
        "How long the model took to load.",
        |m| Some(m.load_seconds),
    ),
    (
        DRIFT_SCORE,
        "Input drift score of the current window (largest standardized shift over features).",
        |m| m.drift.as_ref().map(|d| d.score),
    ),
    (
        "troupe_drift_alert",
        "1 while the input drift score is above the model's threshold.",
        |m| m.drift.as_ref().map(|d| f64::from(u8::from(d.alerting))),
    ),
];

/// The `model` and `version` labels of a sample.
pub(crate) fn model_labels<'a>(m: &ModelSample<'a>) -> [(&'static str, &'a str); 2] {
    [("model", m.name), ("version", m.version)]
}

/// Every family, from the node's counters and one sample per loaded model version.
pub fn encode(
    e: &mut DescriptorEncoder,
    node: &NodeMetrics,
    audit: Option<&AuditLosses>,
    records: Option<&troupe_monitor::RecordCounts>,
    models: &[ModelSample],
) -> std::fmt::Result {
    metric(
        e,
        REQUESTS,
        "Inference calls by model, version and gRPC status.",
        &node.requests,
    )?;
    if let Some(a) = audit {
        for (name, help, n) in [
            (
                "troupe_audit_dropped",
                "Audit lines dropped because the writer was behind (the queue was full).",
                &a.dropped,
            ),
            (
                "troupe_audit_failed",
                "Audit lines lost because the audit file could not be written.",
                &a.failed,
            ),
        ] {
            metric(e, name, help, &ConstCounter::new(n.load(Ordering::Relaxed)))?;
        }
    }
    if let Some(r) = records {
        encode_records(e, r)?;
    }
    encode_quality(e, models)?;
    encode_feature_drift(e, models)?;
    encode_review_and_alerts(e, models)?;
    for (name, help, pick) in HISTOGRAM_FAMILIES {
        family(
            e,
            name,
            help,
            models
                .iter()
                .map(|m| (model_labels(m), pick(m.metrics).clone())),
        )?;
    }
    for (name, help, read) in GAUGES {
        family(
            e,
            name,
            help,
            models
                .iter()
                .filter_map(|m| read(m).map(|v| (model_labels(m), ConstGauge::new(v)))),
        )?;
    }
    family(
        e,
        "troupe_pooled_rows",
        "Text models: rows pooled into embeddings.",
        models
            .iter()
            .filter(|m| m.text)
            .map(|m| (model_labels(m), m.metrics.pooled_rows.clone())),
    )?;
    family(
        e,
        "troupe_drift_alerts",
        "Calls after which the drift score was above the threshold.",
        models.iter().filter_map(|m| {
            m.drift
                .as_ref()
                .map(|d| (model_labels(m), ConstCounter::new(d.alerts)))
        }),
    )
}

/// What became of the predictions handed to the store's writer.
fn encode_records(e: &mut DescriptorEncoder, r: &troupe_monitor::RecordCounts) -> std::fmt::Result {
    metric(
        e,
        "troupe_predictions_recorded",
        "Predictions written to the prediction store.",
        &ConstCounter::new(r.written.load(Ordering::Relaxed)),
    )?;
    family(
        e,
        "troupe_predictions_dropped",
        "Predictions not stored: the writer was behind (queue_full) or the store refused them (store_error).",
        [
            ("queue_full", &r.dropped_queue_full),
            ("store_error", &r.dropped_store_error),
        ]
        .map(|(reason, n)| {
            (
                [("reason", reason)],
                ConstCounter::new(n.load(Ordering::Relaxed)),
            )
        }),
    )
}

/// What a quality gauge measures (how the dashboard shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Calls.
    Count,
    /// A share from 0 to 1.
    Share,
    /// Anything else (seconds, errors).
    Value,
}

/// A quality gauge: name, help, how to read it from one window, and its unit.
type QualityGauge = (
    &'static str,
    &'static str,
    fn(&troupe_proto::troupe::QualityWindow) -> Option<f64>,
    Unit,
);

pub(crate) const QUALITY_GAUGES: [QualityGauge; 10] = [
    (
        "troupe_quality_calls",
        "Calls in the quality window.",
        |w| Some(w.calls as f64),
        Unit::Count,
    ),
    (
        "troupe_quality_labelled",
        "Calls of the window with ground truth.",
        |w| Some(w.labelled as f64),
        Unit::Count,
    ),
    (
        "troupe_quality_label_coverage",
        "Share of the window's calls with ground truth.",
        |w| Some(w.coverage),
        Unit::Share,
    ),
    (
        "troupe_quality_label_delay_seconds",
        "Mean time from a call to its ground truth.",
        |w| w.label_delay_mean_seconds,
        Unit::Value,
    ),
    (
        "troupe_quality_accuracy",
        "Classifiers: accuracy over the labelled calls of the window.",
        |w| w.accuracy,
        Unit::Share,
    ),
    (
        "troupe_quality_roc_auc",
        "Classifiers: ROC AUC (binary, or one-vs-rest macro average).",
        |w| w.roc_auc,
        Unit::Share,
    ),
    (
        "troupe_quality_ece",
        "Classifiers: expected calibration error (10 bins).",
        |w| w.ece,
        Unit::Share,
    ),
    (
        "troupe_quality_mae",
        "Regression: mean absolute error.",
        |w| w.mae,
        Unit::Value,
    ),
    (
        "troupe_quality_rmse",
        "Regression: root mean squared error.",
        |w| w.rmse,
        Unit::Value,
    ),
    (
        "troupe_quality_unknown_labels",
        "Truths of the window naming no class of the model.",
        |w| Some(w.unknown_labels as f64),
        Unit::Count,
    ),
];

/// Per-class quality gauges: name, help, and how to read one class.
type ClassGauge = (
    &'static str,
    &'static str,
    fn(&troupe_proto::troupe::ClassQuality) -> f64,
);

const CLASS_GAUGES: [ClassGauge; 3] = [
    (
        "troupe_quality_precision",
        "Classifiers: precision of one class.",
        |c| c.precision,
    ),
    (
        "troupe_quality_recall",
        "Classifiers: recall of one class.",
        |c| c.recall,
    ),
    ("troupe_quality_f1", "Classifiers: F1 of one class.", |c| {
        c.f1
    }),
];

/// Calls queued for review by each rule, and what became of webhook alerts.
fn encode_review_and_alerts(e: &mut DescriptorEncoder, models: &[ModelSample]) -> std::fmt::Result {
    let reasons = troupe_monitor::review::Reason::ALL;
    family(
        e,
        "troupe_reviews_queued",
        "Calls a review rule queued for a person (up to the queue's bound).",
        models.iter().flat_map(|m| {
            reasons
                .iter()
                .zip(m.reviews.iter().flatten())
                .map(move |(r, n)| {
                    (
                        (model_labels(m), [("reason", r.as_str())]),
                        ConstCounter::new(*n),
                    )
                })
        }),
    )?;
    family(
        e,
        "troupe_alerts",
        "Alerts for the model's webhook: posted, failed (every attempt), dropped (alerts came faster than it took them).",
        models.iter().flat_map(|m| {
            ["posted", "failed", "dropped"]
                .into_iter()
                .zip(m.alerts.iter().flatten())
                .map(move |(o, n)| ((model_labels(m), [("outcome", o)]), ConstCounter::new(*n)))
        }),
    )
}

/// Per-feature drift of the latest window, the alert, and outliers counted.
fn encode_feature_drift(e: &mut DescriptorEncoder, models: &[ModelSample]) -> std::fmt::Result {
    let watched: Vec<(&ModelSample, &FeatureDriftSample)> = models
        .iter()
        .filter_map(|m| m.feature_drift.as_ref().map(|d| (m, d)))
        .collect();
    family(
        e,
        "troupe_feature_drift_alert",
        "1 while the latest window of a watched input drifted from the reference.",
        watched
            .iter()
            .map(|(m, d)| (model_labels(m), ConstGauge::new(i64::from(d.alerting)))),
    )?;
    for (name, help, read) in [
        (
            FEATURE_DRIFT_WINDOWS,
            "Windows of a watched input tested against the reference.",
            (|d: &FeatureDriftSample| d.windows) as fn(&FeatureDriftSample) -> u64,
        ),
        (
            OUTLIERS,
            "Calls whose outlier score was above the model's threshold.",
            |d| d.outliers,
        ),
    ] {
        family(
            e,
            name,
            help,
            watched
                .iter()
                .map(|(m, d)| (model_labels(m), ConstCounter::new(read(d)))),
        )?;
    }
    for (name, help, read) in [
        (
            "troupe_feature_drift_statistic",
            "The latest window's test statistic per feature (KS distance, or chi-square).",
            (|f: &troupe_monitor::watch::FeatureResult| f.statistic)
                as fn(&troupe_monitor::watch::FeatureResult) -> f64,
        ),
        (
            "troupe_feature_drift_p_value",
            "The latest window's p-value per feature.",
            |f| f.p_value,
        ),
        (
            "troupe_feature_drift_psi",
            "The latest window's population stability index per feature.",
            |f| f.psi,
        ),
    ] {
        family(
            e,
            name,
            help,
            watched.iter().flat_map(|(m, d)| {
                d.last.iter().flat_map(|w| &w.features).map(move |f| {
                    (
                        (
                            model_labels(m),
                            [("feature", f.feature.to_string()), ("test", f.test.clone())],
                        ),
                        ConstGauge::new(read(f)),
                    )
                })
            }),
        )?;
    }
    Ok(())
}

/// The window label of the `i`th window of a quality report.
pub(crate) fn window_label(i: usize) -> &'static str {
    if i == 0 { "calls" } else { "time" }
}

/// Live quality gauges of the models with `[monitoring]`, per window.
fn encode_quality(e: &mut DescriptorEncoder, models: &[ModelSample]) -> std::fmt::Result {
    let windows: Vec<_> = models
        .iter()
        .filter_map(|m| m.quality.as_ref().map(|q| (m, q)))
        .flat_map(|(m, q)| {
            q.windows
                .iter()
                .enumerate()
                .map(move |(i, w)| ((model_labels(m), [("window", window_label(i))]), w))
        })
        .collect();
    for (name, help, read, _) in QUALITY_GAUGES {
        family(
            e,
            name,
            help,
            windows
                .iter()
                .filter_map(|(l, w)| read(w).map(|v| (*l, ConstGauge::new(v)))),
        )?;
    }
    for (name, help, read) in CLASS_GAUGES {
        family(
            e,
            name,
            help,
            windows.iter().flat_map(|(l, w)| {
                w.classes.iter().map(move |c| {
                    (
                        (*l, [("class", c.class.as_str())]),
                        ConstGauge::new(read(c)),
                    )
                })
            }),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::{Fixed, GpuProbe, GpuReading};

    #[derive(Debug)]
    struct Gpus(Vec<GpuReading>);

    impl Collector for Gpus {
        fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
            encode_gpus(&mut e, &self.0)
        }
    }

    #[test]
    fn each_gpu_has_triton_s_memory_and_utilization_gauges() {
        let readings = Fixed(vec![GpuReading {
            index: 0,
            uuid: "GPU-4a7c".into(),
            total_bytes: 80 << 30,
            used_bytes: 3 << 30,
            utilization: 0.25,
        }])
        .read();
        let text =
            troupe_telemetry::metrics::encode(&troupe_telemetry::metrics::registry(Gpus(readings)));
        for line in [
            "nv_gpu_memory_total_bytes{gpu_uuid=\"GPU-4a7c\"} 85899345920",
            "nv_gpu_memory_used_bytes{gpu_uuid=\"GPU-4a7c\"} 3221225472",
            "nv_gpu_utilization{gpu_uuid=\"GPU-4a7c\"} 0.25",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        // No GPUs: no series (and no empty families).
        let none = troupe_telemetry::metrics::encode(&troupe_telemetry::metrics::registry(Gpus(
            Vec::new(),
        )));
        assert!(!none.contains("nv_gpu"), "{none}");
    }
}
