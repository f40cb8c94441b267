//! The monitoring hook: each answered call of a model with `[monitoring]` leaves one
//! prediction per row in the prediction store (through the node's [`Recorder`], off the
//! call path), and the model's live quality is read back from the store every few
//! seconds for the metrics.
//!
//! A call of one row is recorded under its request id (the client's `id`, else one the
//! node made: the answer carries it either way); a call of n > 1 rows under
//! `<id>#0` ... `<id>#<n-1>`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::Rng;
use sha2::{Digest, Sha256};
use troupe_backends::{DataType, Tensor};
use troupe_monitor::alert::{Alert, Alerter};
use troupe_monitor::config::{Kind, MAX_VALUES, MonitorCfg};
use troupe_monitor::review::{Facts, Queued, Reason};
use troupe_monitor::{Prediction, Recorder, Store, Summary, now_ms};
use troupe_proto::inference::ModelInferResponse;
use troupe_proto::troupe::QualityResponse;

use super::call::{CallCtx, CallHook, Outcome};
use crate::error::NodeError;
use std::path::Path;
use troupe_monitor::watch::{DriftWatch, Event};

/// Reference rows from a `.npy` file: a 2-D array (rows × features) of any numeric
/// type (read as the CLI reads its inputs, `troupe_client::read_npy`).
fn read_reference(path: &Path) -> Result<Vec<Vec<f64>>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let t = troupe_client::read_npy("reference", &bytes).map_err(|e| e.to_string())?;
    let [rows, features] = t.shape[..] else {
        return Err(format!(
            "expected a 2-D array (rows x features), not shape {:?}",
            t.shape
        ));
    };
    if rows < 2 || features <= 0 {
        return Err(format!(
            "{rows} rows of {features} features: at least 2 rows are needed"
        ));
    }
    let dtype: DataType = t.datatype.parse().map_err(|_| t.datatype.clone())?;
    let shape = vec![rows as usize, features as usize];
    let values = Tensor::new(dtype, shape, t.data)
        .map_err(|e| e.to_string())?
        .to_f64_lossy();
    Ok(values
        .chunks(features as usize)
        .map(<[f64]>::to_vec)
        .collect())
}

/// How often the model's quality is read back from the store for the metrics.
pub const QUALITY_EVERY: Duration = Duration::from_secs(5);

/// The node's prediction store and its recorder (one per node, opened at the first
/// model that monitors, or at start with `--store`).
#[derive(Debug, Clone)]
pub struct Monitoring {
    pub store: Store,
    pub recorder: Recorder,
}

/// Response parameter: the call's outlier score (the largest of its rows').
pub const OUTLIER_SCORE_PARAM: &str = "troupe.outlier_score";
/// Response parameter of calls of more than one row: each row's score, as JSON.
pub const OUTLIER_SCORES_PARAM: &str = "troupe.outlier_scores";

/// Outlier alerts are raised at most this often (each carries the count since the last).
pub const OUTLIER_ALERT_EVERY: Duration = Duration::from_secs(10);

/// The outlier score of each row of an answer, from its response parameters (NaN where
/// there is none).
fn outlier_scores(resp: &ModelInferResponse, rows: usize) -> Vec<f64> {
    use troupe_proto::inference::infer_parameter::ParameterChoice;
    let param = |k: &str| {
        resp.parameters
            .get(k)
            .and_then(|p| p.parameter_choice.as_ref())
    };
    match (param(OUTLIER_SCORES_PARAM), param(OUTLIER_SCORE_PARAM)) {
        (Some(ParameterChoice::StringParam(json)), _) => {
            serde_json::from_str(json).unwrap_or_else(|_| vec![f64::NAN; rows])
        }
        (_, Some(ParameterChoice::DoubleParam(s))) => vec![*s; rows],
        _ => vec![f64::NAN; rows],
    }
}

/// Records every answered call of one model.
pub struct MonitorHook {
    cfg: MonitorCfg,
    monitoring: Monitoring,
    node: String,
    model: String,
    version: String,
    /// The drift tests and outlier score (`[monitoring.drift]`).
    pub watch: Option<Arc<DriftWatch>>,
    /// Index of the watched input.
    watched: usize,
    /// The latest quality report (None until the first read).
    latest: Arc<Mutex<Option<QualityResponse>>>,
    reader: tokio::task::JoinHandle<()>,
    /// Alerts to the model's webhook (`[monitoring.webhook]`).
    alerter: Option<Alerter>,
    /// Outliers seen since the last outlier alert was raised, and when that was.
    outlier_alert: Mutex<(Option<Instant>, u64, f64)>,
    /// Calls queued for review, by reason (indexed as `Reason::ALL`).
    reviews_queued: [AtomicU64; 4],
}

impl MonitorHook {
    /// The hook of one model version: `inputs` are its input names, `dir` the folder a
    /// relative drift reference file is read from.
    pub fn new(
        cfg: MonitorCfg,
        monitoring: Monitoring,
        node: &str,
        (model, version): (&str, &str),
        inputs: &[String],
        dir: &Path,
    ) -> Result<Self, NodeError> {
        let bad = |m: String| NodeError::FailedPrecondition(format!("model '{model}': {m}"));
        let (watch, watched) = match &cfg.drift {
            Some(d) => {
                let watched = match &d.input {
                    Some(name) => inputs.iter().position(|i| i == name).ok_or_else(|| {
                        bad(format!(
                            "[monitoring.drift] input '{name}' is not an input of the model"
                        ))
                    })?,
                    None => 0,
                };
                let watch = Arc::new(DriftWatch::new(d.clone()));
                let store = monitoring.store.clone();
                let (m, v) = (model.to_string(), version.to_string());
                match &d.reference {
                    Some(file) => {
                        let path = dir.join(file);
                        let rows = read_reference(&path)
                            .map_err(|e| bad(format!("drift reference {}: {e}", path.display())))?;
                        watch.set_reference(rows.clone());
                        tokio::spawn(async move {
                            if let Err(e) = store.save_reference(&m, &v, &rows).await {
                                tracing::warn!(model = %m, error = %e, "drift reference not kept in the store");
                            }
                        });
                    }
                    // A reference made of calls survives restarts in the store.
                    None => {
                        let w = watch.clone();
                        tokio::spawn(async move {
                            match store.load_reference(&m, &v).await {
                                Ok(Some(rows)) => {
                                    tracing::info!(model = %m, version = %v, rows = rows.len(), "drift reference read from the store");
                                    w.set_reference(rows);
                                }
                                Ok(None) => {}
                                Err(e) => {
                                    tracing::warn!(model = %m, error = %e, "drift reference not read from the store")
                                }
                            }
                        });
                    }
                }
                (Some(watch), watched)
            }
            None => (None, 0),
        };
        let latest = Arc::new(Mutex::new(None));
        let reader = tokio::spawn(read_quality(
            monitoring.store.clone(),
            cfg.clone(),
            model.to_string(),
            version.to_string(),
            latest.clone(),
        ));
        Ok(Self {
            alerter: cfg.webhook.clone().map(Alerter::start),
            cfg,
            monitoring,
            node: node.to_string(),
            model: model.to_string(),
            version: version.to_string(),
            watch,
            watched,
            latest,
            reader,
            outlier_alert: Mutex::new((None, 0, 0.0)),
            reviews_queued: Default::default(),
        })
    }

    /// The watched input's rows of a call, as features (None: no such input).
    fn watched_rows(&self, ctx: &CallCtx<'_>) -> Option<Vec<Vec<f64>>> {
        let t = ctx.inputs.get(self.watched)?;
        let all = t.to_f64_lossy();
        let rows = ctx.rows.max(1);
        if all.is_empty() || all.len() % rows != 0 {
            return None;
        }
        Some(all.chunks(all.len() / rows).map(<[f64]>::to_vec).collect())
    }

    /// Feeds the drift watch one call's rows; stores what it hands back, and says when
    /// the alert starts or ends (a log line, and an event on the call's span).
    fn watch(&self, watch: &DriftWatch, ctx: &CallCtx<'_>) {
        let Some(rows) = self.watched_rows(ctx) else {
            return;
        };
        for event in watch.push(rows) {
            let store = self.monitoring.store.clone();
            let (m, v, node) = (self.model.clone(), self.version.clone(), self.node.clone());
            match event {
                Event::ReferenceComplete(rows) => {
                    tracing::info!(model = %m, version = %v, rows = rows.len(), "drift reference made of the first calls");
                    tokio::spawn(async move {
                        if let Err(e) = store.save_reference(&m, &v, &rows).await {
                            tracing::warn!(model = %m, error = %e, "drift reference not kept in the store");
                        }
                    });
                }
                Event::Window { result, changed } => {
                    if changed {
                        self.alert(
                            if result.alerting { "drift" } else { "drift_ended" },
                            serde_json::json!({
                                "window_rows": result.window_rows,
                                "features": result.features.iter().filter(|f| f.drifted).collect::<Vec<_>>(),
                            }),
                        );
                    }
                    if changed && result.alerting {
                        let drifted: Vec<usize> = result
                            .features
                            .iter()
                            .filter(|f| f.drifted)
                            .map(|f| f.feature)
                            .collect();
                        tracing::warn!(model = %m, version = %v, features = ?drifted, "input drift: features differ from the reference");
                    } else if changed {
                        tracing::info!(model = %m, version = %v, "input drift ended: the window matches the reference");
                    }
                    tokio::spawn(async move {
                        if let Err(e) = store.save_window(&m, &v, &node, &result).await {
                            tracing::warn!(model = %m, error = %e, "drift window not kept in the store");
                        }
                    });
                }
            }
        }
    }

    /// Posts an alert to the model's webhook, if it has one (off the call path).
    fn alert(&self, kind: &str, detail: serde_json::Value) {
        if let Some(a) = &self.alerter {
            a.raise(Alert {
                alert: kind.to_string(),
                model: self.model.clone(),
                version: self.version.clone(),
                node: self.node.clone(),
                time_ms: now_ms(),
                detail,
            });
        }
    }

    /// Counts a call's outliers toward an `outliers` alert: at most one per
    /// [`OUTLIER_ALERT_EVERY`], carrying how many came since the last and the top score.
    fn outliers_seen(&self, n: u64, top: f64) {
        let mut g = self.outlier_alert.lock();
        g.1 += n;
        g.2 = g.2.max(top);
        if g.0.is_some_and(|t| t.elapsed() < OUTLIER_ALERT_EVERY) {
            return;
        }
        let (count, max) = (g.1, g.2);
        *g = (Some(Instant::now()), 0, 0.0);
        drop(g);
        // An event on the call's span, and the log line.
        tracing::warn!(model = %self.model, version = %self.version, outliers = count, top_score = max, "outlier scores above the threshold");
        self.alert(
            "outliers",
            serde_json::json!({"outliers": count, "top_score": max}),
        );
    }

    /// What a reviewer sees of one row: its inputs (size-capped), outputs, and the
    /// explanation when the call asked for one (`attribution.*` outputs).
    fn queued(
        &self,
        ctx: &CallCtx<'_>,
        resp: &ModelInferResponse,
        reason: Reason,
        max_queued: u64,
        row: usize,
    ) -> Queued {
        let rows = ctx.rows.max(1);
        let row_json = |names_values: Vec<(String, Vec<f64>)>| {
            let mut map = serde_json::Map::new();
            for (name, all) in names_values {
                let per_row = all.len() / rows;
                let v = all.get(row * per_row..(row + 1) * per_row).unwrap_or(&[]);
                map.insert(name, serde_json::json!(v));
            }
            serde_json::Value::Object(map).to_string()
        };
        let inputs = row_json(
            ctx.inputs
                .iter()
                .zip(&ctx.model.def().signature.inputs)
                .map(|(t, s)| (s.name.clone(), t.to_f64_lossy()))
                .collect(),
        );
        let outs = |explanation: bool| {
            resp.outputs
                .iter()
                .zip(&resp.raw_output_contents)
                .filter(|(o, _)| o.name.starts_with("attribution.") == explanation)
                .filter_map(|(o, raw)| {
                    let dtype: DataType = o.datatype.parse().ok()?;
                    let shape = o.shape.iter().map(|&d| d.max(0) as usize).collect();
                    let t = Tensor::new(dtype, shape, raw.clone()).ok()?;
                    Some((o.name.clone(), t.to_f64_lossy()))
                })
                .collect::<Vec<_>>()
        };
        let explanation = outs(true);
        Queued {
            reason,
            inputs: Some(inputs).filter(|i| i.len() <= self.cfg.max_input_bytes),
            outputs: row_json(outs(false)),
            explanation: (!explanation.is_empty()).then(|| row_json(explanation)),
            max_queued,
        }
    }

    /// Calls queued for review by each rule (None without `[monitoring.review]`).
    pub fn reviews(&self) -> Option<[u64; 4]> {
        self.cfg.review.as_ref().map(|_| {
            self.reviews_queued
                .each_ref()
                .map(|n| n.load(Ordering::Relaxed))
        })
    }

    /// Alerts posted, failed and dropped (None without `[monitoring.webhook]`).
    pub fn alerts(&self) -> Option<[u64; 3]> {
        self.alerter.as_ref().map(|a| {
            let c = a.counts();
            [&c.posted, &c.failed, &c.dropped].map(|n| n.load(Ordering::Relaxed))
        })
    }

    /// The latest quality report of the model.
    pub fn quality(&self) -> Option<QualityResponse> {
        self.latest.lock().clone()
    }

    /// What one row of the recorded output says (`all`: the output's values).
    fn summary(&self, out: &Tensor, all: &[f64], rows: usize, row: usize) -> Summary {
        let per_row = out.numel() / rows.max(1);
        let v = all.get(row * per_row..(row + 1) * per_row).unwrap_or(&[]);
        match self.cfg.kind {
            // One integer per row: a label without scores.
            Kind::Classifier if per_row == 1 && !out.dtype.is_float() => Summary::Class {
                class: self
                    .cfg
                    .class_name(v.first().copied().unwrap_or(0.0).max(0.0) as usize),
                score: None,
                scores: Vec::new(),
            },
            Kind::Classifier => {
                let (best, score) = v
                    .iter()
                    .copied()
                    .enumerate()
                    .fold((0, f64::MIN), |b, (i, s)| if s > b.1 { (i, s) } else { b });
                Summary::Class {
                    class: self.cfg.class_name(best),
                    score: Some(score),
                    scores: v.to_vec(),
                }
            }
            Kind::Regression => Summary::Value(v.first().copied().unwrap_or(f64::NAN)),
            Kind::Outputs if per_row <= MAX_VALUES => Summary::Values(v.to_vec()),
            Kind::Outputs => {
                let size = out.dtype.size().unwrap_or(1) * per_row;
                let bytes = out.data.get(row * size..(row + 1) * size).unwrap_or(&[]);
                Summary::Digest(hex::encode(Sha256::digest(bytes)))
            }
        }
    }

    /// The recorded output of an answer, as a tensor (None when the answer lacks it).
    fn output(&self, resp: &ModelInferResponse) -> Option<Tensor> {
        let i = match &self.cfg.output {
            Some(name) => resp.outputs.iter().position(|o| &o.name == name)?,
            None => 0,
        };
        let o = resp.outputs.get(i)?;
        let dtype: DataType = o.datatype.parse().ok()?;
        let shape = o.shape.iter().map(|&d| d.max(0) as usize).collect();
        Tensor::new(dtype, shape, resp.raw_output_contents.get(i)?.clone()).ok()
    }

    /// The call's inputs as JSON for one row, when sampled and within the cap.
    fn inputs(&self, ctx: &CallCtx<'_>, row: usize) -> Option<String> {
        if self.cfg.input_sample <= 0.0 || rand::rng().random::<f64>() >= self.cfg.input_sample {
            return None;
        }
        let rows = ctx.rows.max(1);
        let mut map = serde_json::Map::new();
        for (t, name) in ctx.inputs.iter().zip(&ctx.model.def().signature.inputs) {
            let all = t.to_f64_lossy();
            let per_row = all.len() / rows;
            let v = all.get(row * per_row..(row + 1) * per_row).unwrap_or(&[]);
            map.insert(name.name.clone(), serde_json::json!(v));
        }
        let text = serde_json::Value::Object(map).to_string();
        (text.len() <= self.cfg.max_input_bytes).then_some(text)
    }
}

impl Drop for MonitorHook {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn read_quality(
    store: Store,
    cfg: MonitorCfg,
    model: String,
    version: String,
    latest: Arc<Mutex<Option<QualityResponse>>>,
) {
    let mut every = tokio::time::interval(QUALITY_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match troupe_monitor::report::quality(&store, &cfg, &model, &version, now_ms()).await {
            Ok(q) => *latest.lock() = Some(q),
            Err(e) => {
                tracing::debug!(model = %model, error = %e, "quality not read from the store")
            }
        }
    }
}

#[tonic::async_trait]
impl CallHook for MonitorHook {
    fn name(&self) -> &'static str {
        "monitor"
    }

    /// Only the outcome matters (`finished`).
    fn wants(&self, _ctx: &CallCtx<'_>) -> bool {
        false
    }

    /// The outlier score of the call's rows against the drift reference.
    fn annotate(&self, ctx: &CallCtx<'_>, resp: &mut ModelInferResponse) {
        use troupe_proto::inference::InferParameter;
        use troupe_proto::inference::infer_parameter::ParameterChoice;
        let Some(watch) = &self.watch else { return };
        let Some(scores) = self.watched_rows(ctx).and_then(|rows| watch.score(&rows)) else {
            return;
        };
        let top = scores.iter().copied().fold(f64::MIN, f64::max);
        if let Some(t) = watch.outlier_threshold() {
            let n = scores.iter().filter(|&&v| v > t).count() as u64;
            if n > 0 {
                self.outliers_seen(n, top);
            }
        }
        resp.parameters.insert(
            OUTLIER_SCORE_PARAM.into(),
            InferParameter {
                parameter_choice: Some(ParameterChoice::DoubleParam(top)),
            },
        );
        if scores.len() > 1 {
            resp.parameters.insert(
                OUTLIER_SCORES_PARAM.into(),
                InferParameter {
                    parameter_choice: Some(ParameterChoice::StringParam(
                        serde_json::to_string(&scores).unwrap_or_default(),
                    )),
                },
            );
        }
    }

    fn finished(&self, ctx: &CallCtx<'_>, outcome: Outcome<'_>) {
        let Ok(resp) = outcome else { return };
        if let Some(w) = &self.watch {
            self.watch(w, ctx);
        }
        let Some(out) = self.output(resp) else {
            return;
        };
        let rows = ctx.rows.max(1);
        if out.numel() == 0 || out.numel() % rows != 0 {
            return;
        }
        let all = out.to_f64_lossy();
        let time_ms = now_ms();
        let outlier_scores = self
            .cfg
            .review
            .as_ref()
            .filter(|r| r.outlier_above.is_some())
            .map(|_| outlier_scores(resp, rows));
        // The watch's lock is taken only for a rule that asks whether drift holds.
        let drifting = self.cfg.review.as_ref().is_some_and(|r| r.while_drifting)
            && self.watch.as_ref().is_some_and(|w| w.alerting());
        for row in 0..rows {
            let summary = self.summary(&out, &all, rows, row);
            let review = self.cfg.review.as_ref().and_then(|rules| {
                let reason = rules.reason(Facts {
                    outlier_score: outlier_scores.as_ref().and_then(|s| s.get(row).copied()),
                    top_score: match &summary {
                        Summary::Class { score, .. } => *score,
                        _ => None,
                    },
                    drifting,
                    draw: rand::rng().random(),
                })?;
                self.reviews_queued[reason as usize].fetch_add(1, Ordering::Relaxed);
                tracing::debug!(model = %self.model, request_id = %resp.id, reason = reason.as_str(), "call queued for review");
                Some(self.queued(ctx, resp, reason, rules.max_queued, row))
            });
            let request_id = if rows == 1 {
                resp.id.clone()
            } else {
                format!("{}#{row}", resp.id)
            };
            self.monitoring.recorder.record(Prediction {
                request_id,
                model: resp.model_name.clone(),
                version: resp.model_version.clone(),
                digest: ctx.model.lineage().digest.clone(),
                time_ms,
                node: self.node.clone(),
                trace_id: ctx.trace_id.to_string(),
                summary,
                inputs: self.inputs(ctx, row),
                review,
            });
        }
    }
}
