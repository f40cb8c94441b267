//! `troupe-load`: a load generator for any Open Inference Protocol server (KServe v2 /
//! Triton `inference.GRPCInferenceService`), Troupe's own nodes included.
//!
//! The pieces, in the order a run uses them:
//!
//! * [`Target`] wraps the gRPC channel(s) to the server under load.
//! * [`ModelSpec`] says which model(s) to call, with which weight and which inputs
//!   ([`InputOptions`]: random data in the model's declared shapes, or a JSON file);
//!   [`load_scenario`] reads several from a TOML scenario file.
//! * [`Workload::prepare`] asks the server for each model's metadata and builds the
//!   requests to send.
//! * [`run`] drives the load described by a [`RunConfig`] (closed loop at a fixed
//!   concurrency, or open loop at a fixed rate, optionally as a sweep) and returns a
//!   [`Report`]: HDR-histogram latencies, throughput, errors by gRPC status code,
//!   per-model and per-second figures.
//! * [`Report`] renders as a table, JSON, CSV, or an SVG chart ([`chart`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), troupe_load::LoadError> {
//! use std::time::Duration;
//! use troupe_load::*;
//! let target = Target::connect("127.0.0.1:8001", &ConnectOptions::default()).await?;
//! let specs = vec![ModelSpec::new("mlp_onnx")];
//! let workload = Workload::prepare(&target, &specs, 1, Duration::from_secs(10)).await?;
//! let cfg = RunConfig {
//!     steps: vec![Load::Closed { concurrency: 4 }],
//!     stop: Stop::Duration(Duration::from_secs(3)),
//!     ..RunConfig::default()
//! };
//! let report = run(&target, &workload, &cfg, &()).await?;
//! println!("{}", report.table());
//! # Ok(()) }
//! ```

pub mod chart;
mod inputs;
mod report;
mod runner;
mod scenario;
mod stats;
mod target;

use std::path::PathBuf;
use std::time::Duration;

pub use inputs::{DataType, Generate, InputFile, InputOptions, ModelWorkload, Workload};
pub use report::{LatencySummary, ModelInfo, ModelReport, Report, StepReport, WindowReport};
pub use runner::{Load, Observer, Phase, Progress, RunConfig, Stop, run};
pub use scenario::{ModelSpec, load_scenario, parse_scenario};
pub use stats::{BAD_RESPONSE, DROPPED, code_name};
pub use target::{ConnectOptions, Target};

/// What can go wrong before or around a run. Failed calls during a run are not errors:
/// they are counted in the [`Report`].
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A bad flag value, input file or scenario file.
    #[error("{0}")]
    Invalid(String),
    /// A file named on the command line or in a scenario cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No connection could be made to the target.
    #[error("cannot reach the target {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    /// The target refused or failed `ModelMetadata`.
    #[error("ModelMetadata for model '{model}' at {addr} failed: {code}: {message}")]
    Metadata {
        addr: String,
        model: String,
        code: &'static str,
        message: String,
    },
}

impl LoadError {
    /// True for mistakes in what the user asked for (bad arguments or files, a model the
    /// target does not know), as opposed to a target that cannot be reached or fails.
    pub fn is_usage(&self) -> bool {
        match self {
            LoadError::Invalid(_) | LoadError::Read { .. } => true,
            LoadError::Metadata { code, .. } => *code == "NOT_FOUND",
            LoadError::Unreachable { .. } => false,
        }
    }
}

/// Parses a duration: `10s`, `500ms`, `1.5s`, `2m`, `250us`, `1h`; a bare number is
/// seconds.
pub fn parse_duration(s: &str) -> Result<Duration, LoadError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || LoadError::Invalid(format!("bad duration '{s}' (examples: 10s, 500ms, 2m)"));
    let value: f64 = num.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|_| bad())
}

/// Parses `NAME=D1,D2,...` (the `--shape` flag).
pub fn parse_shape_arg(s: &str) -> Result<(String, Vec<i64>), LoadError> {
    let bad =
        |why: &str| LoadError::Invalid(format!("bad --shape '{s}': {why} (example: input=1,16)"));
    let (name, dims) = s.split_once('=').ok_or_else(|| bad("no '='"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(bad("no input name"));
    }
    let dims = dims
        .split(',')
        .map(|d| match d.trim().parse::<i64>() {
            Ok(v) if v >= 0 => Ok(v),
            _ => Err(bad(&format!("'{}' is not a dimension", d.trim()))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name.to_string(), dims))
}

/// Every error in a chain, joined with ": " (tonic's transport errors hide the cause in
/// `source()`).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").ok(), Some(Duration::from_secs(10)));
        assert_eq!(
            parse_duration("500ms").ok(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_duration("1.5s").ok(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_duration("2m").ok(), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("3").ok(), Some(Duration::from_secs(3)));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn shapes() {
        assert_eq!(
            parse_shape_arg("input=1,16").ok(),
            Some(("input".to_string(), vec![1, 16]))
        );
        assert!(parse_shape_arg("input").is_err());
        assert!(parse_shape_arg("input=1,-1").is_err());
        assert!(parse_shape_arg("=1").is_err());
    }
}
