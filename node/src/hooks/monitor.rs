//! The monitoring hook: each answered call of a model with `[monitoring]` leaves one
//! prediction per row in the prediction store (through the node's [`Recorder`], off the
//! call path), and the model's live quality is read back from the store every few
//! seconds for the metrics.
//!
//! A call of one row is recorded under its request id (the client's `id`, else one the
//! node made: the answer carries it either way); a call of n > 1 rows under
//! `<id>#0` ... `<id>#<n-1>`.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use sha2::{Digest, Sha256};
use troupe_backends::{DataType, Tensor};
use troupe_monitor::config::{Kind, MAX_VALUES, MonitorCfg};
use troupe_monitor::{Prediction, Recorder, Store, Summary, now_ms};
use troupe_proto::inference::ModelInferResponse;
use troupe_proto::troupe::QualityResponse;

use super::call::{CallCtx, CallHook, Outcome};

/// How often the model's quality is read back from the store for the metrics.
pub const QUALITY_EVERY: Duration = Duration::from_secs(5);

/// The node's prediction store and its recorder (one per node, opened at the first
/// model that monitors, or at start with `--store`).
#[derive(Debug, Clone)]
pub struct Monitoring {
    pub store: Store,
    pub recorder: Recorder,
}

/// Records every answered call of one model.
pub struct MonitorHook {
    cfg: MonitorCfg,
    monitoring: Monitoring,
    node: String,
    /// The latest quality report (None until the first read).
    latest: Arc<Mutex<Option<QualityResponse>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl MonitorHook {
    pub fn new(
        cfg: MonitorCfg,
        monitoring: Monitoring,
        node: &str,
        model: &str,
        version: &str,
    ) -> Self {
        let latest = Arc::new(Mutex::new(None));
        let reader = tokio::spawn(read_quality(
            monitoring.store.clone(),
            cfg.clone(),
            model.to_string(),
            version.to_string(),
            latest.clone(),
        ));
        Self {
            cfg,
            monitoring,
            node: node.to_string(),
            latest,
            reader,
        }
    }

    pub fn cfg(&self) -> &MonitorCfg {
        &self.cfg
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

    fn finished(&self, ctx: &CallCtx<'_>, outcome: Outcome<'_>) {
        let Ok(resp) = outcome else { return };
        let Some(out) = self.output(resp) else {
            return;
        };
        let rows = ctx.rows.max(1);
        if out.numel() == 0 || out.numel() % rows != 0 {
            return;
        }
        let all = out.to_f64_lossy();
        let time_ms = now_ms();
        for row in 0..rows {
            let request_id = if rows == 1 {
                resp.id.clone()
            } else {
                format!("{}#{row}", resp.id)
            };
            self.monitoring.recorder.record(Prediction {
                request_id,
                model: resp.model_name.clone(),
                version: resp.model_version.clone(),
                digest: ctx.model.sha256().to_string(),
                time_ms,
                node: self.node.clone(),
                trace_id: ctx.trace_id.to_string(),
                summary: self.summary(&out, &all, rows, row),
                inputs: self.inputs(ctx, row),
            });
        }
    }
}
