//! Input drift: running per-feature statistics of one input compared with a reference
//! (`[hooks.drift]` of the model config).
//!
//! Rows are gathered in windows of `window` rows. Once a window holds `min_rows`, each
//! call scores it: the largest, over features, of the standardized mean shift
//! |mean − ref_mean| / ref_std and of |ln(std / ref_std)|. A score above `threshold`
//! sets `troupe_drift_alert{model,version}` to 1, counts
//! `troupe_drift_alerts_total`, and adds a `drift` event (with the score and the feature)
//! to the call's span. `troupe_drift_score` always holds the last score.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use troupe_backends::DataType;

use super::call::{CallCtx, CallHook, Outcome};
use crate::config::DriftCfg;
use crate::error::NodeError;

/// Running sums of one window.
#[derive(Debug, Clone)]
struct Window {
    n: usize,
    sum: Vec<f64>,
    sumsq: Vec<f64>,
}

impl Window {
    fn new(features: usize) -> Self {
        Self {
            n: 0,
            sum: vec![0.0; features],
            sumsq: vec![0.0; features],
        }
    }
}

/// The score of a window against the reference: (score, feature).
pub fn score(n: usize, sum: &[f64], sumsq: &[f64], mean: &[f64], std: &[f64]) -> (f64, usize) {
    let mut best = (0.0f64, 0usize);
    if n == 0 {
        return best;
    }
    let nf = n as f64;
    for f in 0..mean.len().min(sum.len()) {
        let m = sum[f] / nf;
        let var = (sumsq[f] / nf - m * m).max(0.0);
        let sd = var.sqrt().max(1e-12);
        let shift = (m - mean[f]).abs() / std[f];
        let spread = (sd / std[f]).ln().abs();
        let s = shift.max(spread);
        if s > best.0 {
            best = (s, f);
        }
    }
    best
}

/// Watches one model's inputs.
pub struct DriftHook {
    cfg: DriftCfg,
    window: Mutex<Window>,
    /// Last score, f64 bits.
    pub score_bits: AtomicU64,
    pub alerts: AtomicU64,
    pub alerting: AtomicU64,
}

impl DriftHook {
    pub fn new(model: &str, _version: &str, cfg: DriftCfg) -> Result<Self, NodeError> {
        let bad =
            |m: String| NodeError::InvalidArgument(format!("model '{model}': [hooks.drift] {m}"));
        if cfg.reference_mean.is_empty() || cfg.reference_mean.len() != cfg.reference_std.len() {
            return Err(bad(format!(
                "reference_mean ({}) and reference_std ({}) need one value per feature each",
                cfg.reference_mean.len(),
                cfg.reference_std.len()
            )));
        }
        if let Some(s) = cfg
            .reference_std
            .iter()
            .find(|s| !(**s > 0.0 && s.is_finite()))
        {
            return Err(bad(format!(
                "reference_std {s}: every value must be positive"
            )));
        }
        if cfg.threshold.is_nan()
            || cfg.threshold <= 0.0
            || cfg.window == 0
            || cfg.min_rows == 0
            || cfg.min_rows > cfg.window
        {
            return Err(bad(
                "threshold must be positive and 1 <= min_rows <= window".into(),
            ));
        }
        let features = cfg.reference_mean.len();
        Ok(Self {
            cfg,
            window: Mutex::new(Window::new(features)),
            score_bits: AtomicU64::new(0f64.to_bits()),
            alerts: AtomicU64::new(0),
            alerting: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &DriftCfg {
        &self.cfg
    }

    pub fn last_score(&self) -> f64 {
        f64::from_bits(self.score_bits.load(Ordering::Relaxed))
    }

    /// Adds rows (`[rows * features]`) and scores the window; Some((score, feature))
    /// when it crossed the threshold.
    pub fn observe(&self, values: &[f32], rows: usize) -> Option<(f64, usize)> {
        let features = self.cfg.reference_mean.len();
        if rows == 0 || values.len() != rows * features {
            return None;
        }
        let mut w = self.window.lock();
        if w.n >= self.cfg.window {
            *w = Window::new(features);
        }
        for r in 0..rows {
            let row = &values[r * features..(r + 1) * features];
            for (f, &v) in row.iter().enumerate() {
                let v = v as f64;
                w.sum[f] += v;
                w.sumsq[f] += v * v;
            }
        }
        w.n += rows;
        if w.n < self.cfg.min_rows {
            return None;
        }
        let (s, f) = score(
            w.n,
            &w.sum,
            &w.sumsq,
            &self.cfg.reference_mean,
            &self.cfg.reference_std,
        );
        drop(w);
        self.score_bits.store(s.to_bits(), Ordering::Relaxed);
        if s > self.cfg.threshold {
            self.alerts.fetch_add(1, Ordering::Relaxed);
            self.alerting.store(1, Ordering::Relaxed);
            Some((s, f))
        } else {
            self.alerting.store(0, Ordering::Relaxed);
            None
        }
    }
}

#[tonic::async_trait]
impl CallHook for DriftHook {
    fn name(&self) -> &'static str {
        "drift"
    }

    /// Only the outcome matters (`finished`).
    fn wants(&self, _ctx: &CallCtx<'_>) -> bool {
        false
    }

    fn finished(&self, ctx: &CallCtx<'_>, outcome: Outcome<'_>) {
        if outcome.is_err() {
            return;
        }
        let sig = &ctx.model.def().signature;
        let idx = match &self.cfg.input {
            Some(n) => sig.inputs.iter().position(|i| &i.name == n),
            None => Some(0),
        };
        let Some(t) = idx.and_then(|i| ctx.inputs.get(i)) else {
            return;
        };
        if t.dtype != DataType::F32 {
            return;
        }
        let Ok(values) = t.to_f32() else { return };
        let features = self.cfg.reference_mean.len();
        if features == 0 || values.len() % features != 0 {
            return;
        }
        if let Some((score, feature)) = self.observe(&values, values.len() / features) {
            // Inside the call's span: an OpenTelemetry span event.
            tracing::warn!(
                model = %ctx.model.def().name,
                version = %ctx.model.def().version,
                score,
                feature,
                threshold = self.cfg.threshold,
                "drift"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook() -> DriftHook {
        DriftHook::new(
            "m",
            "1",
            DriftCfg {
                input: None,
                reference_mean: vec![0.0, 10.0],
                reference_std: vec![1.0, 2.0],
                threshold: 0.5,
                window: 64,
                min_rows: 8,
            },
        )
        .unwrap()
    }

    /// Deterministic samples with mean ≈ m and std ≈ s.
    fn rows(n: usize, m: [f64; 2], s: [f64; 2]) -> Vec<f32> {
        (0..n)
            .flat_map(|i| {
                let z = if i % 2 == 0 { 1.0 } else { -1.0 };
                [(m[0] + z * s[0]) as f32, (m[1] + z * s[1]) as f32]
            })
            .collect()
    }

    #[test]
    fn reference_like_inputs_raise_nothing_and_shifted_ones_alert() {
        let h = hook();
        assert_eq!(
            h.observe(&rows(4, [0.0, 10.0], [1.0, 2.0]), 4),
            None,
            "below min_rows"
        );
        assert_eq!(h.observe(&rows(16, [0.0, 10.0], [1.0, 2.0]), 16), None);
        assert!(h.last_score() < 0.1);
        let h = hook();
        let (s, f) = h.observe(&rows(16, [0.0, 14.0], [1.0, 2.0]), 16).unwrap();
        assert_eq!(f, 1);
        assert!((s - 2.0).abs() < 1e-6, "{s}");
        assert_eq!(h.alerts.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_spread_change_alone_is_drift() {
        let h = hook();
        assert!(h.observe(&rows(16, [0.0, 10.0], [3.0, 2.0]), 16).is_some());
    }

    #[test]
    fn bad_references_are_refused_with_the_reason() {
        let mut c = hook().cfg.clone();
        c.reference_std = vec![1.0, 0.0];
        let e = DriftHook::new("m", "1", c).err().unwrap().to_string();
        assert!(e.contains("reference_std"), "{e}");
    }
}
