//! Prometheus metrics of a node, served as text on `--metrics-listen` (GET /metrics).
//!
//! Per model and version: calls by status, latency histograms (queue, compute, total),
//! batch sizes, calls in flight and queued, readiness and load time. Each event updates
//! its metric where it is logged (the registry and the replica actors).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
pub use troupe_telemetry::metrics::{BATCH_BUCKETS, Histogram, LATENCY_BUCKETS, esc};

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

/// Audit lines that did not reach the file (counted by the audit log, rendered here).
#[derive(Debug, Default)]
pub struct AuditLosses {
    /// Dropped because the writer was `AUDIT_QUEUE` lines behind.
    pub dropped: AtomicU64,
    /// Lost because the file could not be written (disk full, I/O error).
    pub failed: AtomicU64,
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

/// A family of per-model series: name, type, help, and how to read a sample.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    read: fn(&ModelSample) -> Option<f64>,
}

/// A histogram of every model: name, help, and which of its histograms.
type HistogramFamily = (&'static str, &'static str, fn(&ModelMetrics) -> &Histogram);

const HISTOGRAM_FAMILIES: [HistogramFamily; 7] = [
    (
        "troupe_request_duration_seconds",
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

/// The per-model gauges and counters; a model without the value (`None`) has no series.
const VALUE_FAMILIES: [Family; 8] = [
    Family {
        name: "troupe_in_flight",
        kind: "gauge",
        help: "Calls being run now.",
        read: |m| Some(m.in_flight as f64),
    },
    Family {
        name: "troupe_queue_length",
        kind: "gauge",
        help: "Calls waiting in the model's queue.",
        read: |m| Some(m.queued as f64),
    },
    Family {
        name: "troupe_model_ready",
        kind: "gauge",
        help: "1 when at least one instance serves.",
        read: |m| Some(f64::from(u8::from(m.ready))),
    },
    Family {
        name: "troupe_model_load_seconds",
        kind: "gauge",
        help: "How long the model took to load.",
        read: |m| Some(m.load_seconds),
    },
    Family {
        name: "troupe_pooled_rows_total",
        kind: "counter",
        help: "Text models: rows pooled into embeddings.",
        read: |m| {
            m.text
                .then(|| m.metrics.pooled_rows.load(Ordering::Relaxed) as f64)
        },
    },
    Family {
        name: "troupe_drift_score",
        kind: "gauge",
        help: "Input drift score of the current window (largest standardized shift over features).",
        read: |m| m.drift.as_ref().map(|d| d.score),
    },
    Family {
        name: "troupe_drift_alert",
        kind: "gauge",
        help: "1 while the input drift score is above the model's threshold.",
        read: |m| m.drift.as_ref().map(|d| f64::from(u8::from(d.alerting))),
    },
    Family {
        name: "troupe_drift_alerts_total",
        kind: "counter",
        help: "Calls after which the drift score was above the threshold.",
        read: |m| m.drift.as_ref().map(|d| d.alerts as f64),
    },
];

fn labels(m: &ModelSample) -> String {
    format!("model=\"{}\",version=\"{}\"", esc(m.name), esc(m.version))
}

/// The text exposition of every metric, from the node's counters and one sample per
/// loaded model version.
pub fn render(
    node: &NodeMetrics,
    audit: Option<&AuditLosses>,
    records: Option<&troupe_monitor::RecordCounts>,
    models: &[ModelSample],
) -> String {
    let mut out = String::new();
    out.push_str(
        "# HELP troupe_requests_total Inference calls by model, version and gRPC status.\n",
    );
    out.push_str("# TYPE troupe_requests_total counter\n");
    for ((m, v, s), n) in node.requests.lock().iter() {
        let _ = writeln!(
            out,
            "troupe_requests_total{{model=\"{}\",version=\"{}\",status=\"{}\"}} {n}",
            esc(m),
            esc(v),
            s
        );
    }
    if let Some(a) = audit {
        for (name, help, n) in [
            (
                "troupe_audit_dropped_total",
                "Audit lines dropped because the writer was behind (the queue was full).",
                &a.dropped,
            ),
            (
                "troupe_audit_failed_total",
                "Audit lines lost because the audit file could not be written.",
                &a.failed,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                n.load(Ordering::Relaxed)
            );
        }
    }
    if let Some(r) = records {
        render_records(&mut out, r);
    }
    render_quality(&mut out, models);
    render_feature_drift(&mut out, models);
    render_review_and_alerts(&mut out, models);
    for (name, help, pick) in HISTOGRAM_FAMILIES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for m in models {
            pick(m.metrics).render(&mut out, name, &labels(m));
        }
    }
    for f in &VALUE_FAMILIES {
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} {}",
            f.name, f.help, f.name, f.kind
        );
        for m in models {
            if let Some(v) = (f.read)(m) {
                let _ = writeln!(out, "{}{{{}}} {v}", f.name, labels(m));
            }
        }
    }
    out
}
/// What became of the predictions handed to the store's writer.
fn render_records(out: &mut String, r: &troupe_monitor::RecordCounts) {
    let _ = writeln!(
        out,
        "# HELP troupe_predictions_recorded_total Predictions written to the prediction store.\n\
         # TYPE troupe_predictions_recorded_total counter\n\
         troupe_predictions_recorded_total {}",
        r.written.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP troupe_predictions_dropped_total Predictions not stored: the writer was behind (queue_full) or the store refused them (store_error).\n\
         # TYPE troupe_predictions_dropped_total counter\n\
         troupe_predictions_dropped_total{{reason=\"queue_full\"}} {}\n\
         troupe_predictions_dropped_total{{reason=\"store_error\"}} {}",
        r.dropped_queue_full.load(Ordering::Relaxed),
        r.dropped_store_error.load(Ordering::Relaxed)
    );
}

/// A quality gauge: name, help, and how to read it from one window.
type QualityGauge = (
    &'static str,
    &'static str,
    fn(&troupe_proto::troupe::QualityWindow) -> Option<f64>,
);

const QUALITY_GAUGES: [QualityGauge; 10] = [
    (
        "troupe_quality_calls",
        "Calls in the quality window.",
        |w| Some(w.calls as f64),
    ),
    (
        "troupe_quality_labelled",
        "Calls of the window with ground truth.",
        |w| Some(w.labelled as f64),
    ),
    (
        "troupe_quality_label_coverage",
        "Share of the window's calls with ground truth.",
        |w| Some(w.coverage),
    ),
    (
        "troupe_quality_label_delay_seconds",
        "Mean time from a call to its ground truth.",
        |w| w.label_delay_mean_seconds,
    ),
    (
        "troupe_quality_accuracy",
        "Classifiers: accuracy over the labelled calls of the window.",
        |w| w.accuracy,
    ),
    (
        "troupe_quality_roc_auc",
        "Classifiers: ROC AUC (binary, or one-vs-rest macro average).",
        |w| w.roc_auc,
    ),
    (
        "troupe_quality_ece",
        "Classifiers: expected calibration error (10 bins).",
        |w| w.ece,
    ),
    (
        "troupe_quality_mae",
        "Regression: mean absolute error.",
        |w| w.mae,
    ),
    (
        "troupe_quality_rmse",
        "Regression: root mean squared error.",
        |w| w.rmse,
    ),
    (
        "troupe_quality_unknown_labels",
        "Truths of the window naming no class of the model.",
        |w| Some(w.unknown_labels as f64),
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
fn render_review_and_alerts(out: &mut String, models: &[ModelSample]) {
    let reasons = troupe_monitor::review::Reason::ALL;
    if models.iter().any(|m| m.reviews.is_some()) {
        let _ = writeln!(
            out,
            "# HELP troupe_reviews_queued_total Calls a review rule queued for a person (up to the queue's bound).\n# TYPE troupe_reviews_queued_total counter"
        );
        for m in models {
            for (r, n) in reasons.iter().zip(m.reviews.iter().flatten()) {
                let _ = writeln!(
                    out,
                    "troupe_reviews_queued_total{{{},reason=\"{}\"}} {n}",
                    labels(m),
                    r.as_str()
                );
            }
        }
    }
    if models.iter().any(|m| m.alerts.is_some()) {
        let _ = writeln!(
            out,
            "# HELP troupe_alerts_total Alerts for the model's webhook: posted, failed (every attempt), dropped (alerts came faster than it took them).\n# TYPE troupe_alerts_total counter"
        );
        for m in models {
            for (o, n) in ["posted", "failed", "dropped"]
                .iter()
                .zip(m.alerts.iter().flatten())
            {
                let _ = writeln!(
                    out,
                    "troupe_alerts_total{{{},outcome=\"{o}\"}} {n}",
                    labels(m)
                );
            }
        }
    }
}

/// Per-feature drift of the latest window, the alert, and outliers counted.
fn render_feature_drift(out: &mut String, models: &[ModelSample]) {
    let watched: Vec<(&ModelSample, &FeatureDriftSample)> = models
        .iter()
        .filter_map(|m| m.feature_drift.as_ref().map(|d| (m, d)))
        .collect();
    if watched.is_empty() {
        return;
    }
    for (name, kind, help, read) in [
        (
            "troupe_feature_drift_alert",
            "gauge",
            "1 while the latest window of a watched input drifted from the reference.",
            (|d: &FeatureDriftSample| f64::from(u8::from(d.alerting)))
                as fn(&FeatureDriftSample) -> f64,
        ),
        (
            "troupe_feature_drift_windows_total",
            "counter",
            "Windows of a watched input tested against the reference.",
            |d| d.windows as f64,
        ),
        (
            "troupe_outliers_total",
            "counter",
            "Calls whose outlier score was above the model's threshold.",
            |d| d.outliers as f64,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (m, d) in &watched {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(m), read(d));
        }
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
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (m, d) in &watched {
            for f in d.last.iter().flat_map(|w| &w.features) {
                let _ = writeln!(
                    out,
                    "{name}{{{},feature=\"{}\",test=\"{}\"}} {}",
                    labels(m),
                    f.feature,
                    f.test,
                    read(f)
                );
            }
        }
    }
}

/// The window label of the `i`th window of a quality report.
fn window_label(i: usize) -> &'static str {
    if i == 0 { "calls" } else { "time" }
}

/// Live quality gauges of the models with `[monitoring]`, per window.
fn render_quality(out: &mut String, models: &[ModelSample]) {
    let reports: Vec<(&ModelSample, &troupe_proto::troupe::QualityResponse)> = models
        .iter()
        .filter_map(|m| m.quality.as_ref().map(|q| (m, q)))
        .collect();
    if reports.is_empty() {
        return;
    }
    for (name, help, read) in QUALITY_GAUGES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (m, q) in &reports {
            for (i, w) in q.windows.iter().enumerate() {
                if let Some(v) = read(w) {
                    let _ = writeln!(
                        out,
                        "{name}{{{},window=\"{}\"}} {v}",
                        labels(m),
                        window_label(i)
                    );
                }
            }
        }
    }
    for (name, help, read) in CLASS_GAUGES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (m, q) in &reports {
            for (i, w) in q.windows.iter().enumerate() {
                for c in &w.classes {
                    let _ = writeln!(
                        out,
                        "{name}{{{},window=\"{}\",class=\"{}\"}} {}",
                        labels(m),
                        window_label(i),
                        esc(&c.class),
                        read(c)
                    );
                }
            }
        }
    }
}
