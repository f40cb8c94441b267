//! A model version's live quality over its two windows (the last N calls, the last T
//! seconds), from the prediction store: what `troupe.v1.Monitor/Quality`, the Prometheus
//! gauges and `troupe monitor` show.

use std::time::Duration;

use troupe_proto::troupe as pb;

use crate::config::{Kind, MonitorCfg};
use crate::error::MonitorError;
use crate::quality::{self, ClassPair};
use crate::record::TruthValue;
use crate::store::{Store, Window, WindowRow};

/// The quality of `model`/`version` over both windows of `cfg`, at `now_ms`.
pub async fn quality(
    store: &Store,
    cfg: &MonitorCfg,
    model: &str,
    version: &str,
    now_ms: i64,
) -> Result<pb::QualityResponse, MonitorError> {
    let mut windows = Vec::with_capacity(2);
    for (window, label) in [
        (
            Window::Calls(cfg.window_calls),
            format!("last {} calls", cfg.window_calls),
        ),
        (
            Window::Since(Duration::from_secs(cfg.window_seconds)),
            format!("last {} s", cfg.window_seconds),
        ),
    ] {
        let w = store.window(model, version, window, now_ms).await?;
        windows.push(summarize(cfg, label, w.calls, &w.labelled));
    }
    let drift = match &cfg.drift {
        Some(_) => store
            .latest_window(model, version)
            .await?
            .map(|(w, windows)| drift_status(&w, windows)),
        None => None,
    };
    Ok(pb::QualityResponse {
        model: model.to_string(),
        version: version.to_string(),
        kind: cfg.to_spec().kind,
        windows,
        drift,
    })
}

/// A tested drift window on the wire.
pub fn drift_status(w: &crate::watch::WindowResult, windows: u64) -> pb::DriftStatus {
    pb::DriftStatus {
        alerting: w.alerting,
        window_rows: w.window_rows as u64,
        reference_rows: w.reference_rows as u64,
        time_ms: w.time_ms,
        windows,
        features: w
            .features
            .iter()
            .map(|f| pb::FeatureDrift {
                feature: f.feature as u32,
                test: f.test.clone(),
                statistic: f.statistic,
                p_value: f.p_value,
                psi: f.psi,
                drifted: f.drifted,
            })
            .collect(),
    }
}

/// One window's figures: `calls` in it, `labelled` those with a truth.
pub fn summarize(
    cfg: &MonitorCfg,
    label: String,
    calls: u64,
    labelled: &[WindowRow],
) -> pb::QualityWindow {
    let mut delays: Vec<f64> = labelled
        .iter()
        .filter_map(|r| {
            r.truth_time_ms
                .map(|t| (t - r.time_ms).max(0) as f64 / 1000.0)
        })
        .collect();
    delays.sort_by(f64::total_cmp);
    let mut w = pb::QualityWindow {
        window: label,
        calls,
        labelled: labelled.len() as u64,
        coverage: if calls == 0 {
            0.0
        } else {
            labelled.len() as f64 / calls as f64
        },
        label_delay_mean_seconds: (!delays.is_empty())
            .then(|| delays.iter().sum::<f64>() / delays.len() as f64),
        label_delay_p50_seconds: median(&delays),
        ..Default::default()
    };
    match cfg.kind {
        Kind::Classifier => {
            let mut pairs = Vec::with_capacity(labelled.len());
            for r in labelled {
                let truth = match &r.truth {
                    Some(TruthValue::Class(c)) => cfg.class_index(c),
                    // A number given for a classifier: its class index.
                    Some(TruthValue::Value(v)) if v.fract() == 0.0 && *v >= 0.0 => {
                        Some(*v as usize)
                    }
                    _ => None,
                };
                let predicted = r.class.as_deref().and_then(|c| cfg.class_index(c));
                match (truth, predicted) {
                    (Some(truth), Some(predicted)) => pairs.push(ClassPair {
                        predicted,
                        scores: r.scores.clone(),
                        truth,
                    }),
                    _ => w.unknown_labels += 1,
                }
            }
            let classes = pairs.iter().map(|p| p.scores.len()).max().unwrap_or(0);
            if let Some(q) = quality::classifier(&pairs, classes) {
                w.accuracy = Some(q.accuracy);
                w.roc_auc = q.roc_auc;
                w.ece = q.ece;
                w.classes = q
                    .per_class
                    .iter()
                    .map(|(&c, s)| pb::ClassQuality {
                        class: cfg.class_name(c),
                        precision: s.precision,
                        recall: s.recall,
                        f1: s.f1,
                        support: s.support,
                    })
                    .collect();
            }
        }
        Kind::Regression => {
            let pairs: Vec<(f64, f64)> = labelled
                .iter()
                .filter_map(|r| match (&r.truth, r.value) {
                    (Some(TruthValue::Value(t)), Some(p)) => Some((p, *t)),
                    (Some(TruthValue::Class(t)), Some(p)) => {
                        t.trim().parse::<f64>().ok().map(|t| (p, t))
                    }
                    _ => None,
                })
                .collect();
            w.unknown_labels = (labelled.len() - pairs.len()) as u64;
            if let Some(q) = quality::regression(&pairs) {
                w.mae = Some(q.mae);
                w.rmse = Some(q.rmse);
            }
        }
        Kind::Outputs => {}
    }
    w
}

/// The median of sorted values (the mean of the middle two for an even count).
fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: i64, class: &str, scores: &[f64], truth: Option<(&str, i64)>) -> WindowRow {
        WindowRow {
            request_id: format!("r{t}"),
            time_ms: t,
            class: Some(class.into()),
            score: scores.iter().copied().reduce(f64::max),
            value: None,
            scores: scores.to_vec(),
            truth: truth.map(|(l, _)| TruthValue::Class(l.into())),
            truth_time_ms: truth.map(|(_, t)| t),
        }
    }

    #[test]
    fn coverage_delay_and_unknown_labels() {
        let cfg: MonitorCfg =
            toml::from_str("kind = \"classifier\"\nclasses = [\"cat\", \"dog\"]").unwrap();
        let rows = [
            row(0, "cat", &[0.9, 0.1], Some(("cat", 1000))),
            row(0, "dog", &[0.2, 0.8], Some(("dog", 3000))),
            row(0, "dog", &[0.4, 0.6], Some(("bird", 5000))),
            row(0, "cat", &[0.7, 0.3], None),
        ];
        // Four calls in the window, the first three labelled (the store reads those).
        let w = summarize(&cfg, "w".into(), rows.len() as u64, &rows[..3]);
        assert_eq!((w.calls, w.labelled, w.unknown_labels), (4, 3, 1));
        assert!((w.coverage - 0.75).abs() < 1e-12);
        assert_eq!(w.label_delay_p50_seconds, Some(3.0));
        assert_eq!(w.label_delay_mean_seconds, Some(3.0));
        assert_eq!(w.accuracy, Some(1.0));
        assert_eq!(w.classes.len(), 2);
        assert_eq!(w.classes[1].class, "dog");
    }
}
