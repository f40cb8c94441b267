//! `[monitoring]` of a model config (or `ModelSpec.monitoring`): what a call of the model
//! leaves in the prediction store, and the windows its quality is measured over. Plain
//! data, read by the node (recording) and by nodes and routers (quality reports).

use serde::Deserialize;
use troupe_proto::troupe as pb;

/// Inputs kept per call by default when a call is sampled for them.
pub const MAX_INPUT_BYTES: usize = 4096;
/// Outputs of up to this many values are kept as values; larger ones as a digest.
pub const MAX_VALUES: usize = 64;
/// The count window of quality metrics by default.
pub const WINDOW_CALLS: u32 = 1000;
/// The time window of quality metrics by default (seconds).
pub const WINDOW_SECONDS: u64 = 3600;

/// What a model's answers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Class scores (or probabilities) per row: the class is the highest.
    Classifier,
    /// One value per row.
    Regression,
    /// Anything else: small outputs kept as values, large ones as a digest.
    Outputs,
}

/// `[monitoring]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MonitorCfg {
    pub kind: Kind,
    /// The output recorded (default: the first). A classifier's holds the class scores.
    #[serde(default)]
    pub output: Option<String>,
    /// Class names in score order (default: the class indices, "0", "1", ...).
    #[serde(default)]
    pub classes: Vec<String>,
    /// Share of calls whose inputs are stored too (0 to 1; default 0).
    #[serde(default)]
    pub input_sample: f64,
    #[serde(default = "max_input_bytes")]
    pub max_input_bytes: usize,
    #[serde(default = "window_calls")]
    pub window_calls: u32,
    #[serde(default = "window_seconds")]
    pub window_seconds: u64,
    /// Per-feature drift tests of an input against a reference, and a per-call outlier
    /// score (`[monitoring.drift]`).
    #[serde(default)]
    pub drift: Option<DriftTests>,
    /// Which calls are queued for human review (`[monitoring.review]`).
    #[serde(default)]
    pub review: Option<crate::review::ReviewRules>,
    /// Where alerts are posted (`[monitoring.webhook]`).
    #[serde(default)]
    pub webhook: Option<crate::alert::WebhookCfg>,
}

/// Rows of the reference by default, when it comes from the first calls.
pub const REFERENCE_CALLS: usize = 500;
/// Rows per drift window by default.
pub const DRIFT_WINDOW: usize = 200;
/// A feature drifts when its test's p-value is below this, over the number of features
/// tested (Bonferroni).
pub const DRIFT_P_VALUE: f64 = 0.01;
/// ... or when its PSI is above this.
pub const DRIFT_PSI: f64 = 0.25;

/// `[monitoring.drift]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DriftTests {
    /// The input watched (default: the first); each row of it is one sample of features.
    #[serde(default)]
    pub input: Option<String>,
    /// A `.npy` file of reference rows (a path beside the model's config, or absolute);
    /// without one, the first `reference_calls` rows become the reference. Either way it
    /// is kept in the store and survives restarts.
    #[serde(default)]
    pub reference: Option<String>,
    #[serde(default = "reference_calls")]
    pub reference_calls: usize,
    /// Rows per window (windows follow one another: each is tested once full).
    #[serde(default = "drift_window")]
    pub window: usize,
    #[serde(default = "drift_p_value")]
    pub p_value: f64,
    #[serde(default = "drift_psi")]
    pub psi: f64,
    /// Features (indices in a row) tested as categories with chi-square; the others
    /// with Kolmogorov–Smirnov.
    #[serde(default)]
    pub categorical: Vec<usize>,
    /// Calls whose outlier score (Mahalanobis distance to the reference) is above this
    /// are counted as outliers (none: scored, never counted).
    #[serde(default)]
    pub outlier_threshold: Option<f64>,
}

fn reference_calls() -> usize {
    REFERENCE_CALLS
}
fn drift_window() -> usize {
    DRIFT_WINDOW
}
fn drift_p_value() -> f64 {
    DRIFT_P_VALUE
}
fn drift_psi() -> f64 {
    DRIFT_PSI
}

fn max_input_bytes() -> usize {
    MAX_INPUT_BYTES
}
fn window_calls() -> u32 {
    WINDOW_CALLS
}
fn window_seconds() -> u64 {
    WINDOW_SECONDS
}

impl MonitorCfg {
    /// Checks what serde cannot: a share in [0, 1], windows above zero.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.input_sample) {
            return Err(format!(
                "[monitoring] input_sample must be within 0 and 1, not {}",
                self.input_sample
            ));
        }
        if self.window_calls == 0 || self.window_seconds == 0 {
            return Err("[monitoring] windows must hold at least one call and one second".into());
        }
        if self.classes.iter().any(String::is_empty) {
            return Err("[monitoring] classes must not be empty names".into());
        }
        if let Some(r) = &self.review {
            r.validate()?;
            if r.outlier_above.is_some() && self.drift.is_none() {
                return Err("[monitoring.review] outlier_above needs [monitoring.drift] (the outlier score is measured against its reference)".into());
            }
        }
        if let Some(w) = &self.webhook {
            w.validate()?;
        }
        if let Some(d) = &self.drift {
            let max = crate::drift::MAX_SAMPLE;
            if d.window < 2 || d.window > max || d.reference_calls < 2 || d.reference_calls > max {
                return Err(format!(
                    "[monitoring.drift] window and reference_calls must be within 2 and {max}"
                ));
            }
            if !(d.p_value > 0.0 && d.p_value < 1.0) || d.psi <= 0.0 {
                return Err(
                    "[monitoring.drift] p_value must be within 0 and 1, psi above 0".into(),
                );
            }
        }
        Ok(())
    }

    /// The name of class `i`.
    pub fn class_name(&self, i: usize) -> String {
        self.classes
            .get(i)
            .cloned()
            .unwrap_or_else(|| i.to_string())
    }

    /// The index of the class named `name` (a name from `classes`, else an index).
    pub fn class_index(&self, name: &str) -> Option<usize> {
        if self.classes.is_empty() {
            name.trim().parse().ok()
        } else {
            self.classes.iter().position(|c| c == name)
        }
    }

    /// From the wire `Monitoring` (zeros mean the defaults); None when monitoring is off.
    pub fn from_spec(m: &pb::Monitoring) -> Option<Self> {
        let kind = match pb::MonitoredKind::try_from(m.kind).ok()? {
            pb::MonitoredKind::Unspecified => return None,
            pb::MonitoredKind::Classifier => Kind::Classifier,
            pb::MonitoredKind::Regression => Kind::Regression,
            pb::MonitoredKind::Outputs => Kind::Outputs,
        };
        Some(MonitorCfg {
            kind,
            output: (!m.output.is_empty()).then(|| m.output.clone()),
            classes: m.classes.clone(),
            input_sample: m.input_sample,
            max_input_bytes: if m.max_input_bytes > 0 {
                m.max_input_bytes as usize
            } else {
                MAX_INPUT_BYTES
            },
            window_calls: if m.window_calls > 0 {
                m.window_calls
            } else {
                WINDOW_CALLS
            },
            window_seconds: if m.window_seconds > 0 {
                u64::from(m.window_seconds)
            } else {
                WINDOW_SECONDS
            },
            drift: m.drift.as_ref().map(|d| DriftTests {
                input: (!d.input.is_empty()).then(|| d.input.clone()),
                reference: (!d.reference.is_empty()).then(|| d.reference.clone()),
                reference_calls: if d.reference_calls > 0 {
                    d.reference_calls as usize
                } else {
                    REFERENCE_CALLS
                },
                window: if d.window > 0 {
                    d.window as usize
                } else {
                    DRIFT_WINDOW
                },
                p_value: if d.p_value > 0.0 {
                    d.p_value
                } else {
                    DRIFT_P_VALUE
                },
                psi: if d.psi > 0.0 { d.psi } else { DRIFT_PSI },
                categorical: d.categorical.iter().map(|&c| c as usize).collect(),
                outlier_threshold: d.outlier_threshold,
            }),
            review: m.review.as_ref().map(|r| crate::review::ReviewRules {
                outlier_above: r.outlier_above,
                score_below: r.score_below,
                while_drifting: r.while_drifting,
                sample: r.sample,
                max_queued: if r.max_queued > 0 {
                    r.max_queued
                } else {
                    crate::review::MAX_QUEUED
                },
            }),
            webhook: m.webhook.as_ref().map(crate::alert::WebhookCfg::from_spec),
        })
    }

    /// To the wire `Monitoring`.
    pub fn to_spec(&self) -> pb::Monitoring {
        pb::Monitoring {
            kind: match self.kind {
                Kind::Classifier => pb::MonitoredKind::Classifier,
                Kind::Regression => pb::MonitoredKind::Regression,
                Kind::Outputs => pb::MonitoredKind::Outputs,
            } as i32,
            output: self.output.clone().unwrap_or_default(),
            classes: self.classes.clone(),
            input_sample: self.input_sample,
            max_input_bytes: self.max_input_bytes.min(u32::MAX as usize) as u32,
            window_calls: self.window_calls,
            window_seconds: self.window_seconds.min(u64::from(u32::MAX)) as u32,
            drift: self.drift.as_ref().map(|d| pb::DriftTests {
                input: d.input.clone().unwrap_or_default(),
                reference: d.reference.clone().unwrap_or_default(),
                reference_calls: d.reference_calls as u32,
                window: d.window as u32,
                p_value: d.p_value,
                psi: d.psi,
                categorical: d.categorical.iter().map(|&c| c as u32).collect(),
                outlier_threshold: d.outlier_threshold,
            }),
            review: self.review.as_ref().map(|r| pb::ReviewRules {
                outlier_above: r.outlier_above,
                score_below: r.score_below,
                while_drifting: r.while_drifting,
                sample: r.sample,
                max_queued: r.max_queued,
            }),
            webhook: self.webhook.as_ref().map(crate::alert::WebhookCfg::to_spec),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_wire_agree() {
        let c: MonitorCfg = toml::from_str(
            "kind = \"classifier\"\noutput = \"probabilities\"\nclasses = [\"a\", \"b\"]\ninput_sample = 0.5\n\
             [drift]\nwindow = 100\ncategorical = [2]\noutlier_threshold = 9.5\n\
             [review]\nscore_below = 0.6\nsample = 0.01\n\
             [webhook]\nurl = \"http://127.0.0.1:9/hook\"\n",
        )
        .unwrap();
        assert_eq!(c.drift.as_ref().unwrap().reference_calls, REFERENCE_CALLS);
        assert_eq!(c.window_calls, WINDOW_CALLS);
        assert_eq!(MonitorCfg::from_spec(&c.to_spec()), Some(c.clone()));
        assert_eq!(c.class_index("b"), Some(1));
        assert_eq!(c.class_index("c"), None);
        assert_eq!(c.class_name(1), "b");
        assert!(MonitorCfg::from_spec(&pb::Monitoring::default()).is_none());
        let bad = MonitorCfg {
            input_sample: 2.0,
            ..c
        };
        assert!(bad.validate().unwrap_err().contains("input_sample"));
    }
}
