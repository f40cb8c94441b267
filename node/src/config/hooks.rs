//! `[hooks]` of a model config: which call hooks a model runs (docs/hooks.md). Plain
//! data: the hooks themselves (`crate::hooks`) are built from it at load.

use serde::Deserialize;
use troupe_proto::troupe as pb;

/// `[hooks]` of a model config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HooksCfg {
    /// Calls may ask for explanations (default true).
    #[serde(default = "yes")]
    pub explain: bool,
    /// One JSON line per call in the node's `--audit-log`.
    #[serde(default)]
    pub audit: bool,
    /// Watch the inputs for drift from a reference.
    #[serde(default)]
    pub drift: Option<DriftCfg>,
}

fn yes() -> bool {
    true
}

impl Default for HooksCfg {
    fn default() -> Self {
        Self {
            explain: true,
            audit: false,
            drift: None,
        }
    }
}

/// Drift defaults, one definition for the TOML file and the wire spec.
pub const DRIFT_THRESHOLD: f64 = 0.5;
pub const DRIFT_WINDOW: usize = 256;
pub const DRIFT_MIN_ROWS: usize = 32;

/// `[hooks.drift]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DriftCfg {
    /// The watched input (default: the first).
    #[serde(default)]
    pub input: Option<String>,
    pub reference_mean: Vec<f64>,
    pub reference_std: Vec<f64>,
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    #[serde(default = "default_window")]
    pub window: usize,
    #[serde(default = "default_min_rows")]
    pub min_rows: usize,
}

fn default_threshold() -> f64 {
    DRIFT_THRESHOLD
}
fn default_window() -> usize {
    DRIFT_WINDOW
}
fn default_min_rows() -> usize {
    DRIFT_MIN_ROWS
}

impl HooksCfg {
    /// From the wire `Hooks` (zeros mean the defaults).
    pub fn from_spec(h: &pb::Hooks) -> Self {
        let or = |v: u32, d: usize| if v > 0 { v as usize } else { d };
        HooksCfg {
            explain: !h.explain_disabled,
            audit: h.audit,
            drift: h.drift.as_ref().map(|d| DriftCfg {
                input: (!d.input.is_empty()).then(|| d.input.clone()),
                reference_mean: d.reference_mean.clone(),
                reference_std: d.reference_std.clone(),
                threshold: if d.threshold > 0.0 {
                    d.threshold
                } else {
                    DRIFT_THRESHOLD
                },
                window: or(d.window, DRIFT_WINDOW),
                min_rows: or(d.min_rows, DRIFT_MIN_ROWS),
            }),
        }
    }

    /// To the wire `Hooks`.
    pub fn to_spec(&self) -> pb::Hooks {
        pb::Hooks {
            explain_disabled: !self.explain,
            audit: self.audit,
            drift: self.drift.as_ref().map(|d| pb::Drift {
                input: d.input.clone().unwrap_or_default(),
                reference_mean: d.reference_mean.clone(),
                reference_std: d.reference_std.clone(),
                threshold: d.threshold,
                window: d.window as u32,
                min_rows: d.min_rows as u32,
            }),
        }
    }
}
