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
mod error;
mod export;
mod flags;
mod format;
mod inputs;
mod report;
mod runner;
mod scenario;
mod spec;
mod stats;
mod table;
mod target;

pub use error::LoadError;
pub use flags::{parse_duration, parse_shape_arg};
pub use inputs::{DataType, Generate, InputFile, ModelWorkload, Workload};
pub use report::{ModelInfo, ModelReport, Report, StepReport};
pub use runner::{BAD_RESPONSE, DROPPED, Load, Observer, Phase, Progress, RunConfig, Stop, run};
pub use scenario::{load_scenario, parse_scenario};
pub use spec::{InputOptions, ModelSpec};
pub use stats::{LatencySummary, WindowReport};
pub use target::{ConnectOptions, Protocol, Target};
pub use troupe_proto::codes::code_name;
