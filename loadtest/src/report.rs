//! What a run measured: the whole run, each step, each model's share. Rendered by
//! [`crate::table`] (text), [`crate::export`] (JSON, CSV) and [`crate::chart`] (SVG).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::format::trim_float;
use crate::stats::{LatencySummary, WindowReport};

/// A whole run: one step, or one per sweep point.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The address under load.
    pub target: String,
    pub models: Vec<ModelInfo>,
    /// Warm-up before each step's measurement (its calls are not counted).
    pub warmup_s: f64,
    /// How each step ends: `"10s"` or `"1000 requests"`.
    pub stop: String,
    /// Deadline of each call.
    pub timeout_s: f64,
    /// Seed of the random inputs and model choice (`--seed` repeats a run's requests).
    pub seed: u64,
    pub sweep: bool,
    /// The run was stopped early (Ctrl-C); the last step is partial.
    pub interrupted: bool,
    pub steps: Vec<StepReport>,
}

/// A model of the run and what its requests carry.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub label: String,
    pub name: String,
    pub version: String,
    pub weight: f64,
    pub inputs: Vec<String>,
}

/// One load level: a concurrency (closed loop) or a rate (open loop).
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// `"closed"` or `"open"`.
    pub mode: String,
    pub concurrency: Option<usize>,
    /// Requests per second asked for (open loop).
    pub rate: Option<f64>,
    /// Measured time: from the end of warm-up to the last answer.
    pub duration_s: f64,
    /// Requests sent (open loop: due) after warm-up. Always `answers + errors`.
    pub sent: u64,
    /// Successful answers.
    pub answers: u64,
    pub errors: u64,
    /// Errors by gRPC status code name (`UNAVAILABLE`, `DEADLINE_EXCEEDED`, ...), plus
    /// `dropped` (open loop: over `--max-outstanding`) and `bad_response`.
    pub errors_by_code: BTreeMap<String, u64>,
    /// The first message seen for each error name.
    pub error_messages: BTreeMap<String, String>,
    /// Successful answers per second.
    pub throughput: f64,
    /// Latency of successful answers. Closed loop: from send to answer. Open loop: from
    /// the intended send time to the answer, so queueing in the client counts too.
    pub latency: LatencySummary,
    /// Open loop: the most a send started after its intended time.
    pub max_schedule_lag_us: Option<u64>,
    /// Per model (one entry when there is one model).
    pub models: Vec<ModelReport>,
    /// Per window of `window_s` seconds after warm-up, by completion time.
    pub window_s: f64,
    pub windows: Vec<WindowReport>,
    pub interrupted: bool,
}

impl StepReport {
    /// `concurrency 4` or `rate 100/s`.
    pub fn label(&self) -> String {
        match (self.concurrency, self.rate) {
            (Some(c), _) => format!("concurrency {c}"),
            (None, Some(r)) => format!("rate {}/s", trim_float(r)),
            _ => self.mode.clone(),
        }
    }

    /// `c=4` or `r=100`, for chart labels.
    pub fn short_label(&self) -> String {
        match (self.concurrency, self.rate) {
            (Some(c), _) => format!("c={c}"),
            (None, Some(r)) => format!("r={}", trim_float(r)),
            _ => self.mode.clone(),
        }
    }
}

/// One model's share of a step.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    pub label: String,
    pub sent: u64,
    pub answers: u64,
    pub errors: u64,
    pub errors_by_code: BTreeMap<String, u64>,
    pub throughput: f64,
    pub latency: LatencySummary,
}
